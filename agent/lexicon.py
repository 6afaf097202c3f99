"""What an explanation's words assert about the media: facial actions, voice qualities, speech.

The verifier (agent/verify.py) asks of every claim: does each facial action, voice quality or
quoted speech it names belong to a cue it cites? This module answers the first half: which
things a sentence names, and what a cue would have to show for each.

Facial actions are read as (face part, action) pairs ("narrowed eyes", "the chin is raised",
"lip corners pulled down") or single action words ("smile", "frown"). The table of pairs is
derived from the repo's own AU vocabulary, the FACS names in ``tools.face_geometry.AU_NAMES``
and the plain glosses in ``agent.textualise.AU_GLOSS``, parsed by the same reader that reads
explanations, plus the everyday phrasings listed in ``_EXTRA`` (FACS-based: a cheek raise or a
lid tightening narrows the eyes). A pair or word the table does not know is not a claim.

Voice qualities are descriptors (loud, high-pitched, trembling, fast, calm ...); a word that can
describe anything (calm, fast, soft) counts only next to a voice word ("calm voice", "speaks
quickly"). Each quality says which measurement a cue must report (its words in the cue text).
Quoted text is spoken content (or a cue's own words) and must appear in a cited cue. A claim
about what was said without quoting it ("the words are neutral", "what she says") needs a cited
speech cue.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

from pydantic import BaseModel

from affectlens.agent.textualise import AU_GLOSS
from affectlens.tools.face_geometry import AU_NAMES

# -- tokens ------------------------------------------------------------------------------------
PARTS: dict[str, str] = {
    "brow": "brow",
    "brows": "brow",
    "eyebrow": "brow",
    "eyebrows": "brow",
    "forehead": "brow",
    "eye": "eye",
    "eyes": "eye",
    "lid": "lid",
    "lids": "lid",
    "eyelid": "lid",
    "eyelids": "lid",
    "cheek": "cheek",
    "cheeks": "cheek",
    "nose": "nose",
    "lip": "lip",
    "lips": "lip",
    "mouth": "mouth",
    "jaw": "jaw",
    "chin": "chin",
}
# Two-word parts, read before single words ("upper lip" is not "lip").
BIGRAM_PARTS = {
    ("upper", "lip"): "upper_lip",
    ("lip", "corner"): "lip_corner",
    ("lip", "corners"): "lip_corner",
    ("mouth", "corners"): "lip_corner",
    ("mouth", "corner"): "lip_corner",
    ("upper", "lid"): "lid",
    ("upper", "lids"): "lid",
    ("upper", "eyelid"): "lid",
    ("upper", "eyelids"): "lid",
}

_ACTION_STEMS: dict[str, tuple[str, ...]] = {
    "raise": (
        "raise",
        "raised",
        "raising",
        "raiser",
        "raises",
        "lift",
        "lifted",
        "lifting",
        "elevated",
        "up",
    ),
    "lower": (
        "lower",
        "lowered",
        "lowering",
        "lowerer",
        "lowers",
        "drooping",
        "droop",
        "drooped",
        "sagging",
    ),
    "furrow": ("furrow", "furrows", "furrowed", "furrowing", "knit", "knitted"),
    "widen": ("widen", "widens", "widened", "widening", "wide", "wider", "wideness"),
    "narrow": ("narrow", "narrows", "narrowed", "narrowing", "squinted", "squinting", "slitted"),
    "tighten": (
        "tighten",
        "tightens",
        "tightened",
        "tightening",
        "tightener",
        "tight",
        "tense",
        "tensed",
    ),
    "close": ("close", "closes", "closed", "closing", "shut", "closure"),
    "wrinkle": (
        "wrinkle",
        "wrinkles",
        "wrinkled",
        "wrinkling",
        "wrinkler",
        "scrunched",
        "crinkled",
    ),
    "pull": ("pull", "pulls", "pulled", "pulling", "puller", "drawn"),
    "depress": ("depress", "depressed", "depressor", "down", "downturned", "downward"),
    "stretch": ("stretch", "stretches", "stretched", "stretching", "stretcher"),
    "press": ("press", "presses", "pressed", "pressing", "presser", "compressed", "pursed"),
    "open": (
        "open",
        "opens",
        "opened",
        "opening",
        "part",
        "parted",
        "parting",
        "apart",
        "agape",
        "gaping",
    ),
    "drop": ("drop", "drops", "dropped", "dropping", "slack", "hanging"),
    "dimple": ("dimple", "dimpled", "dimpler", "dimpling"),
}
ACTIONS: dict[str, str] = {w: a for a, words in _ACTION_STEMS.items() for w in words}
# "pulled down", "turned up": the particle gives the direction.
_PARTICLE = {
    "down": "depress",
    "up": "raise",
    "downward": "depress",
    "downwards": "depress",
    "upward": "raise",
    "upwards": "raise",
}
_MOVERS = {"pull", "pulled", "pulling", "turn", "turned", "turning", "drawn", "draw"}

_SINGLE_STEMS: dict[str, tuple[str, ...]] = {
    "smile": ("smile", "smiles", "smiled", "smiling", "grin", "grins", "grinning", "beaming"),
    "frown": ("frown", "frowns", "frowned", "frowning", "scowl", "scowls", "scowling"),
    "blink": ("blink", "blinks", "blinked", "blinking"),
    "squint": ("squint", "squints", "squinting"),
    "gape": ("gape", "gaping", "agape"),
}
SINGLES: dict[str, str] = {w: a for a, words in _SINGLE_STEMS.items() for w in words}

NEGATIONS = {
    "no",
    "not",
    "without",
    "never",
    "absent",
    "absence",
    "lack",
    "lacks",
    "lacking",
    "nor",
    "neither",
    "none",
    "isn't",
    "aren't",
    "doesn't",
    "don't",
    "didn't",
    "n't",
}
WINDOW = 3  # an action word pairs with the nearest part at most this many words away

# Everyday phrasings the AU tables do not spell (FACS: AU6 and AU7 narrow the eye aperture,
# AU44 is a squint; a frown is AU4 for FACS and mouth corners down for many writers).
_EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("eye", "narrow"): ("AU06", "AU07", "AU44"),
    ("lid", "narrow"): ("AU07", "AU44"),
    ("eye", "tighten"): ("AU07",),
    ("eye", "close"): ("AU43", "AU45"),
    ("lid", "close"): ("AU43", "AU45"),
    ("lid", "lower"): ("AU41", "AU42", "AU43"),
    ("brow", "furrow"): ("AU04",),
    ("brow", "wrinkle"): ("AU01", "AU02", "AU04"),
    ("brow", "pull"): ("AU04",),
    ("lip_corner", "raise"): ("AU12",),
    ("lip_corner", "lower"): ("AU15",),
    ("lip", "depress"): ("AU15", "AU16"),
    ("mouth", "depress"): ("AU15",),
    ("mouth", "open"): ("AU25", "AU26", "AU27"),
    ("mouth", "widen"): ("AU25", "AU26", "AU27"),
    ("mouth", "drop"): ("AU26", "AU27"),
    ("jaw", "open"): ("AU26", "AU27"),
    ("jaw", "lower"): ("AU26", "AU27"),
    ("chin", "wrinkle"): ("AU17",),
    ("nose", "raise"): ("AU09",),
    ("smile", ""): ("AU12",),
    ("frown", ""): ("AU04", "AU15"),
    ("blink", ""): ("AU45", "AU43"),
    ("squint", ""): ("AU06", "AU07", "AU44"),
    ("gape", ""): ("AU25", "AU26", "AU27"),
}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[,;:.!?()]")  # punctuation marks a clause break


def au_code(name: str) -> str | None:
    """'AU5', 'au05', 'AU 5' -> 'AU05'; None for anything that is not an AU code."""
    m = re.fullmatch(r"\s*AU\s?0*(\d+)\s*", name, re.I)
    return f"AU{int(m[1]):02d}" if m else None


class Mention(BaseModel):
    """Something a sentence names that a cited cue must show."""

    kind: str  # "face" | "voice" | "quote" | "words"
    phrase: str  # the words as written
    start: int  # character span in the sentence
    end: int
    aus: tuple[str, ...] = ()  # face: any of these AUs in a cited face cue supports it
    measures: tuple[str, ...] = ()  # voice: a cited voice cue whose text says one of these
    level: str = ""  # voice: "low" / "high" arousal implied ("calm voice" / "agitated voice")


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m[0], m.start(), m.end()) for m in _WORD.finditer(text.lower().replace("-", " "))]


def _units(tokens: list[tuple[str, int, int]]) -> list[tuple[str, str, int, int]]:
    """(kind, value, start, end): parts (bigrams first), actions (with a direction particle),
    single action words, negations and other words."""
    out: list[tuple[str, str, int, int]] = []
    i = 0
    while i < len(tokens):
        w, s, e = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt and (w, nxt[0]) in BIGRAM_PARTS:
            out.append(("part", BIGRAM_PARTS[(w, nxt[0])], s, nxt[2]))
            i += 2
            continue
        if w in _MOVERS and nxt and nxt[0] in _PARTICLE:
            out.append(("action", _PARTICLE[nxt[0]], s, nxt[2]))
            i += 2
            continue
        if not w[0].isalpha():
            out.append(("break", w, s, e))
        elif w in PARTS:
            out.append(("part", PARTS[w], s, e))
        elif w in SINGLES:
            out.append(("single", SINGLES[w], s, e))
        elif w in ACTIONS:
            out.append(("action", ACTIONS[w], s, e))
        elif w in NEGATIONS or w.endswith("n't"):
            out.append(("neg", w, s, e))
        else:
            out.append(("word", w, s, e))
        i += 1
    return out


def _clause(units, i: int) -> range:
    """Indices within WINDOW of i that are in i's clause (no break in between)."""
    lo, hi = i, i
    while lo > max(0, i - WINDOW) and units[lo - 1][0] != "break":
        lo -= 1
    while hi < min(len(units) - 1, i + WINDOW) and units[hi + 1][0] != "break":
        hi += 1
    return range(lo, hi + 1)


def _negated(units, i: int) -> bool:
    return any(units[j][0] == "neg" for j in _clause(units, i) if j < i)


def read_actions(text: str) -> list[tuple[str, str, int, int]]:
    """(part, action, start, end) for each facial action the text names ('' part for single
    words like 'smile'); negated ones ('no smile', 'not raised') are left out."""
    units = _units(_tokens(text))
    found: list[tuple[str, str, int, int]] = []
    for i, (kind, value, s, e) in enumerate(units):
        if kind == "single" and not _negated(units, i):
            found.append((value, "", s, e))
        if kind != "action" or _negated(units, i):
            continue
        best = None
        for j in _clause(units, i):
            if units[j][0] == "part":
                # nearest part; a tie goes to the part after ("raised chin", not "eyes ... raised")
                key = (abs(j - i), 0 if j > i else 1)
                if best is None or key < best[0]:
                    best = (key, j)
        if best is not None:
            j = best[1]
            found.append((units[j][1], value, min(s, units[j][2]), max(e, units[j][3])))
    return found


@lru_cache(maxsize=1)
def face_table() -> dict[tuple[str, str], frozenset[str]]:
    """(part, action) -> the AUs that show it: every AU name and gloss of the repo's tables,
    read by ``read_actions``, plus ``_EXTRA``."""
    table: dict[tuple[str, str], set[str]] = {}
    for raw, phrase in [*AU_NAMES.items(), *AU_GLOSS.items()]:
        code = cast(str, au_code(raw))  # the tables are keyed by AU code
        for part, action, _, _ in read_actions(phrase):
            table.setdefault((part, action), set()).add(code)
    for key, codes in _EXTRA.items():
        table.setdefault(key, set()).update(codes)
    return {k: frozenset(v) for k, v in table.items()}


# -- voice ---------------------------------------------------------------------------------------
VOICE_NOUNS = {
    "voice",
    "voices",
    "vocal",
    "vocally",
    "tone",
    "speaking",
    "speaks",
    "spoke",
    "speak",
    "talks",
    "talking",
    "talk",
    "delivery",
    "intonation",
    "prosody",
    "pitch",
    "speech",
    "utterance",
    "utterances",
}
# quality -> (descriptor words that need a voice word nearby, words that are voice qualities
# on their own, what a cue must report, implied arousal level)
VOICE_QUALITIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {
    "loudness": (
        (
            "loud",
            "loudly",
            "louder",
            "soft",
            "softly",
            "softer",
            "quiet",
            "quietly",
            "quieter",
            "hushed",
            "booming",
            "raised",
            "muted",
        ),
        (
            "shouting",
            "shouts",
            "shouted",
            "yelling",
            "yells",
            "whispering",
            "whispers",
            "whispered",
            "loudness",
            "volume",
        ),
        ("loud",),
        "",
    ),
    "pitch": (
        ("deep", "deeper", "shrill", "squeaky"),
        ("pitch", "pitched", "shrill", "squeaky"),
        ("pitch",),
        "",
    ),
    "pitch_variation": (
        ("monotone", "monotonous", "flat", "melodic", "singsong", "expressive"),
        ("monotone", "monotonous", "intonation", "singsong"),
        ("pitch variability", "pitch range", "semitones"),
        "",
    ),
    "tempo": (
        (
            "fast",
            "faster",
            "quickly",
            "quick",
            "rapid",
            "rapidly",
            "slow",
            "slower",
            "slowly",
            "hurried",
            "rushed",
            "halting",
        ),
        ("tempo", "pace", "paced"),
        ("rate", "syllables", "tempo"),
        "",
    ),
    "tremor": (
        (
            "trembling",
            "tremulous",
            "shaky",
            "shaking",
            "quavering",
            "quivering",
            "wavering",
            "unsteady",
            "cracking",
            "breathy",
            "hoarse",
            "harsh",
            "rough",
            "creaky",
            "strained",
            "raspy",
        ),
        ("tremor", "jitter", "shimmer", "hnr", "breathiness", "hoarseness"),
        ("jitter", "shimmer", "harsh", "harmonics", "tremor", "breathy"),
        "",
    ),
    "arousal_low": (
        (
            "calm",
            "calmer",
            "calmly",
            "relaxed",
            "subdued",
            "composed",
            "steady",
            "gentle",
            "gently",
            "listless",
        ),
        (),
        ("arousal",),
        "low",
    ),
    "arousal_high": (
        (
            "excited",
            "agitated",
            "tenser",
            "energetic",
            "animated",
            "tense",
            "intense",
            "urgent",
            "forceful",
            "emphatic",
            "lively",
            "heated",
            "aroused",
        ),
        (),
        ("arousal",),
        "high",
    ),
}
_VOICE_WINDOW = 2


def _same_clause(words: list[str]) -> list[str]:
    """The words up to the first punctuation mark (callers pass the words before i reversed)."""
    out = []
    for w in words:
        if not w[0].isalpha():
            break
        out.append(w)
    return out


def read_voice(text: str, taken: Sequence[tuple[int, int]] = ()) -> list[Mention]:
    """Voice qualities the text names: standalone words ('shouting', 'intonation') and
    descriptors next to a voice word ('a calm voice', 'speaks quickly', 'a deep voice').
    Words inside ``taken`` spans (already read as facial actions) are skipped."""
    tokens = _tokens(text)
    words = [t[0] for t in tokens]
    out: list[Mention] = []
    for i, (w, s, e) in enumerate(tokens):
        if any(a <= s < b for a, b in taken):
            continue
        before = _same_clause(words[max(0, i - WINDOW) : i][::-1])
        if any(n in NEGATIONS or n.endswith("n't") for n in before):
            continue
        near = _same_clause(words[max(0, i - _VOICE_WINDOW) : i][::-1]) + _same_clause(
            words[i + 1 : i + 1 + _VOICE_WINDOW]
        )
        for needs_noun, alone, measures, level in VOICE_QUALITIES.values():
            if w in alone or (w in needs_noun and VOICE_NOUNS.intersection(near)):
                out.append(
                    Mention(
                        kind="voice",
                        phrase=text[s:e],
                        start=s,
                        end=e,
                        measures=measures,
                        level=level,
                    )
                )
                break
    return out


# -- quotes ----------------------------------------------------------------------------------------
_QUOTE = re.compile(
    r'"([^"]{2,}?)"|“([^”]{2,}?)”|‘([^’]{2,}?)’|「([^」]+)」|«([^»]{2,}?)»'
    r"|„([^“]{2,}?)“|(?<![\w])\'([^\']{2,}?)\'(?![\w])"
)
_ELLIPSIS = re.compile(r"\.\.\.|…")


def read_quotes(text: str) -> list[Mention]:
    return [
        Mention(kind="quote", phrase=next(g for g in m.groups() if g), start=m.start(), end=m.end())
        for m in _QUOTE.finditer(text)
    ]


def normalise_text(text: str) -> str:
    """Lower case, punctuation dropped, spaces collapsed (works for any script)."""
    kept = "".join(
        " " if unicodedata.category(ch).startswith(("P", "S")) else ch
        for ch in unicodedata.normalize("NFKC", text).lower()
    )
    return " ".join(kept.split())


def quote_in(quote: str, source: str) -> bool:
    """Every piece of the quote (split at '...') appears in the source, ignoring case and
    punctuation."""
    pieces = [normalise_text(p) for p in _ELLIPSIS.split(quote)]
    src = normalise_text(source)
    return all(p in src for p in pieces if p)


# -- what was said, named without a quote ---------------------------------------------------
_WORDS = re.compile(
    r"\b(?:(?:the|his|her|their|these|those|spoken)\s+(?:own\s+)?"
    r"(?:words|transcript|statements?|utterances?|remarks?)"
    r"|what\s+(?:is|was)\s+said|spoken\s+content"
    r"|what\s+(?:he|she|they|the\s+(?:person|speaker))\s+(?:says|said))\b",
    re.I,
)


def read_words(text: str) -> list[Mention]:
    """Claims about the spoken content ("the words", "what she says"): a speech cue shows them."""
    return [
        Mention(kind="words", phrase=m[0], start=m.start(), end=m.end())
        for m in _WORDS.finditer(text)
    ]


# -- all together ------------------------------------------------------------------------------
def mentions(text: str) -> list[Mention]:
    """Everything the text names that a cited cue must show, in order. Quoted passages are
    checked as quotes only (a quoted scene label 'a smiling person' is not a facial claim)."""
    quotes = read_quotes(text)
    blank = text
    for q in quotes:  # keep offsets: blank out quoted text with spaces
        blank = blank[: q.start] + " " * (q.end - q.start) + blank[q.end :]
    table = face_table()
    out: list[Mention] = list(quotes)
    for part, action, s, e in read_actions(blank):
        aus = table.get((part, action))
        if aus:
            out.append(
                Mention(kind="face", phrase=text[s:e], start=s, end=e, aus=tuple(sorted(aus)))
            )
    for m in re.finditer(r"\bAU\s?\d+\b", blank, re.I):
        code = cast(str, au_code(m[0]))  # the pattern is an AU code's
        out.append(Mention(kind="face", phrase=m[0], start=m.start(), end=m.end(), aus=(code,)))
    out += read_voice(blank, [(m.start, m.end) for m in out if m.kind == "face"])
    out += read_words(blank)
    return sorted(out, key=lambda m: m.start)
