"""Deterministic checks of a reading against the cues it claims to rest on.

Every problem is phrased as an instruction the LLM can act on when the graph loops back to
reason. ``grounded`` means: there are citations, every cited id exists, every number quoted next
to a citation appears in the cited cues, every non-concluding sentence cites a cue, and every
facial action, voice quality or quote a sentence names is shown by a cue it cites (``content``,
read through agent/lexicon). Such claims are cut from the stored explanation by ``prune`` (the
offending clause, else the claim) and listed: at once when what is left reads whole
(``reads_whole``), else after the last repair round.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from affectlens.agent import lexicon
from affectlens.agent.citations import (
    CITATION,
    cite,
    cited_ids,
    split_sentences,
    strip_citations,
)
from affectlens.agent.schemas import Cue, DroppedClaim, EmotionReading, Modality
from affectlens.agent.textualise import PREFIX, cue_line
from affectlens.taxonomy import ADJECTIVE, BASIC, labels_in, parse_label

# A number standing alone: not part of an id or AU code (F2, AU12), may be a percentage.
_NUMBER = re.compile(r"(?<![A-Za-z\d.:])(-?\d+(?:\.\d+)?)(%?)(?![A-Za-z\d])")
_AU = re.compile(r"\bAU\s?\d+\b", re.I)
_TIME = re.compile(r"\b\d+:\d+(?:\.\d+)?\b|\b\d+(?:\.\d+)?-\d+(?:\.\d+)?s\b")  # 00:01.2, 1.2-3.4s

GROUNDING_KINDS = frozenset({"unknown-cue", "number", "uncited", "no-citations", "content"})


@dataclass(frozen=True)
class Problem:
    # unknown-cue | number | uncited | no-citations | content | modality | label | agreement
    kind: str
    message: str
    sentence: int | None = None  # the 1-based sentence it is about; None: the whole reading

    def __str__(self) -> str:
        return self.message


def _cited_sentences(explanation: list[str]) -> list[tuple[str, list[str]]]:
    """Each sentence with the ids it rests on. A claim of several sentences cites once, at its
    end ("Sad face. Low voice [F1][V2]."): a sentence without ids rests on those of the next
    cited sentence of the same item (one with none after it stays uncited)."""
    out: list[tuple[str, list[str]]] = []
    for item in explanation:
        pending: list[str] = []
        for s in split_sentences([item]):
            ids = cited_ids(s)
            if ids:
                out += [(p, ids) for p in pending] + [(s, ids)]
                pending = []
            else:
                pending.append(s)
        out += [(p, []) for p in pending]
    return out


def numbers(text: str) -> list[float]:
    """Quoted numbers, percentages as fractions; AU codes and cue ids are not numbers."""
    text = CITATION.sub(" ", _AU.sub(" ", _TIME.sub(" ", text)))
    out = []
    for value, pct in _NUMBER.findall(text):
        x = float(value)
        out.append(x / 100 if pct else x)
    return out


def matches(x: float, allowed: list[float]) -> bool:
    """A quoted number equals a cue's number up to rounding (0.011, or 2 % of large values)."""
    return any(abs(x - a) <= max(0.011, 0.02 * abs(a)) for a in allowed)


def check(
    reading: EmotionReading, cues: list[Cue], available: dict[Modality, bool]
) -> list[Problem]:
    """All problems found; ``available`` says which modalities had usable evidence."""
    problems: list[Problem] = []
    if not cues:  # nothing was observed: the reading may only say so (reason.no_evidence)
        return problems
    by_id = {c.id: c for c in cues}
    valid = ", ".join(by_id) or "none"
    cited = _cited_sentences(reading.explanation)
    sentences = [s for s, _ in cited]
    if not sentences:
        problems.append(
            Problem("no-citations", "The explanation is empty; write 2-4 sentences citing cue ids.")
        )
    all_cited: list[str] = []
    for n, (s, ids) in enumerate(cited, start=1):
        all_cited += ids
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            problems.append(
                Problem(
                    "unknown-cue",
                    f"Sentence {n} cites {', '.join(unknown)}, which do not exist; "
                    f"cite only: {valid}.",
                    n,
                )
            )
        known = [by_id[i] for i in ids if i in by_id]
        if not ids and not (n == len(sentences) and n > 1):
            problems.append(
                Problem("uncited", f"Sentence {n} cites no cue: list the cue ids it relies on.", n)
            )
        if known:
            allowed = [x for c in known for x in numbers(cue_line(c))]
            wrong = [x for x in numbers(s) if not matches(x, allowed)]
            if wrong:
                problems.append(
                    Problem(
                        "number",
                        f"Sentence {n} quotes {', '.join(f'{w:g}' for w in wrong)}, which "
                        f"{'is' if len(wrong) == 1 else 'are'} not in "
                        f"{', '.join(c.id for c in known)}; "
                        "quote the cue values exactly.",
                        n,
                    )
                )
        problems += [
            Problem("content", f"Sentence {n} {why}", n) for _, why in unsupported(s, known, cues)
        ]
    if sentences and not all_cited:
        problems.append(
            Problem(
                "no-citations", "No sentence cites a cue; list the cue ids each claim rests on."
            )
        )
    cited_set = set(all_cited)
    for m, ok in available.items():
        mine = [c.id for c in cues if c.modality == m]
        if ok and mine and not cited_set.intersection(mine):
            problems.append(
                Problem(
                    "modality",
                    f"The {m} cues ({', '.join(mine)}) are not cited; say what the {m} shows.",
                )
            )
    parsed = parse_label(reading.label)
    if reading.dominant not in BASIC or parsed is None:
        problems.append(
            Problem(
                "label",
                f"The label {reading.label!r} is not a compound of the "
                f"basic emotions {', '.join(BASIC)}.",
            )
        )
    elif parsed.dominant != reading.dominant:
        problems.append(
            Problem(
                "label",
                f"The label {reading.label!r} does not have "
                f"{reading.dominant} as its dominant emotion.",
            )
        )
    if sentences and reading.dominant in BASIC and not names_dominant(reading):
        problems.append(
            Problem(
                "agreement",
                f"The conclusion does not name the dominant emotion ({reading.dominant}, "
                f"'{ADJECTIVE[reading.dominant]}'); the last sentence should conclude with it.",
            )
        )
    return problems


def sentences_to_redo(problems: list[Problem]) -> list[int] | None:
    """The sentences a repair round writes again: those a problem is about (the conclusion,
    the last one, is always rewritten besides); None when a problem concerns the whole reading
    (nothing cited, a modality left out), so that all of it is written again. A problem with
    the label or the dominant emotion's name is the conclusion's and the decision's."""
    if any(p.sentence is None and p.kind not in ("label", "agreement") for p in problems):
        return None
    return sorted({p.sentence for p in problems if p.sentence is not None})


def grounded(problems: list[Problem]) -> bool:
    return not any(p.kind in GROUNDING_KINDS for p in problems)


def prefix_modality(cue_id: str) -> Modality | None:
    """'F3' -> 'face'."""
    for m, p in PREFIX.items():
        if cue_id.startswith(p):
            return m
    return None


# -- what a claim names against what its cited cues show ----------------------------------------
def _bare(sentence: str) -> str:
    """The sentence without its citations (mention spans are read on this text)."""
    return strip_citations(sentence)


# The modality whose cues can show a mention of each kind (a quote may be in any cue's words).
_MODALITY: dict[str, Modality] = {"face": "face", "voice": "voice", "words": "speech"}


def _shows(m: lexicon.Mention, cue: Cue) -> bool:
    """Does this cue show what the mention names? A cue's own words always count."""
    text = cue.text.lower().replace("-", " ")
    if m.kind != "quote" and m.phrase.lower().replace("-", " ") in text:
        return True
    if m.kind == "face":
        return cue.modality == "face" and lexicon.au_code(cue.name) in m.aus
    if m.kind == "words":
        return cue.modality == _MODALITY[m.kind]
    if m.kind == "voice":
        if cue.modality != "voice" or not any(k in text for k in m.measures):
            return False
        opposite = {"low": "high arousal", "high": "low arousal"}.get(m.level)
        return not (opposite and opposite in text)
    source = str(cue.value) if cue.modality == "speech" and cue.value else cue.text
    return lexicon.quote_in(m.phrase, source)


def _gist(text: str) -> str:
    """'AU05 upper lid raiser, peak 1.00 (0-1), mean 0.91: widened eyes' ->
    'AU05 upper lid raiser: widened eyes' (what a cue shows, without its numbers)."""
    head, _, tail = text.partition(",")
    tail = tail.rpartition(": ")[2] if ": " in tail else ""
    return f"{head[:60]}: {tail[:40]}" if tail else head[:60]


def _what(m: lexicon.Mention) -> str:
    if m.kind == "face":
        return f"a facial action ({'/'.join(m.aus)})"
    if m.kind == "voice":
        return "a voice quality (" + ("arousal level" if m.level else "/".join(m.measures)) + ")"
    if m.kind == "words":
        return "the spoken content"
    return "a quotation"


def unsupported(
    sentence: str, cited: list[Cue], cues: list[Cue]
) -> list[tuple[lexicon.Mention, str]]:
    """Each mention in the sentence that no cited cue shows, with an instruction that says what
    the cited cues do show and which cue, if any, shows the mention."""
    out = []
    ids = ", ".join(c.id for c in cited) or "none"
    for m in lexicon.mentions(_bare(sentence)):
        if any(_shows(m, c) for c in cited):
            continue
        elsewhere = [c.id for c in cues if c not in cited and _shows(m, c)]
        if m.kind == "quote":
            where = f"cite {', '.join(elsewhere)}" if elsewhere else "quote exactly or drop it"
            out.append(
                (m, f"quotes {m.phrase!r}, which is not in the cited cues ({ids}); {where}.")
            )
            continue
        modality = _MODALITY.get(m.kind)
        shown = "; ".join(
            f"{c.id} {_gist(c.text)}" for c in cited if modality is None or c.modality == modality
        )
        hint = (
            f"{', '.join(elsewhere)} show{'s' if len(elsewhere) == 1 else ''} it: cite that "
            "instead or drop it"
            if elsewhere
            else "no cue shows it: drop it"
        )
        out.append(
            (
                m,
                f"names {m.phrase!r}, {_what(m)} that its cited cues do not show"
                + (f" ({shown})" if shown else f" ({ids})")
                + f"; {hint}.",
            )
        )
    return out


_CLAUSE = re.compile(
    r"(\s*[,;:\u2014\u2013]\s*|\s+(?=(?:and|but|while|with|whereas|although|"
    r"though|as|showing|suggesting|indicating)\b))",
    re.I,
)
_LEAD = re.compile(r"^(?:and|but|while|with|whereas|although|though|as)\s+", re.I)
# "The person is frowning and widening their eyes": the subject and its verb "is" belong to
# the second action too, so cutting the frown keeps them ("The person is widening their eyes").
_SUBJECT = re.compile(r"^([A-Z][\w' ]*?\b(?:is|are|was|were)\s+)$")
_AND_ING = re.compile(r"^and\s+(?=\w+ing\b)", re.I)


def _clauses(text: str) -> list[str]:
    """``_CLAUSE.split(text)`` (clauses at even indices, separators between), never splitting
    inside brackets: "expression (widened eyes, lips down)" stays one clause, so a cut cannot
    leave "lips down)" behind."""
    pieces = _CLAUSE.split(text)
    out = [pieces[0]]
    depth = pieces[0].count("(") - pieces[0].count(")")
    for sep, piece in zip(pieces[1::2], pieces[2::2]):
        if depth > 0:
            out[-1] += sep + piece
        else:
            out += [sep, piece]
        depth += piece.count("(") - piece.count(")")
    return out


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """The text without the clauses that hold any of ``spans`` (a clause: split at commas,
    semicolons, dashes and conjunctions); '' when fewer than two words are left. When the
    opening clause goes and the next one is "and <verb>-ing", that one keeps the opening's
    subject and "is"."""
    pieces = _clauses(text)
    out, pos, subject = "", 0, ""
    for k, piece in enumerate(pieces):
        start, pos = pos, pos + len(piece)
        hits = [a for a, b in spans if a < pos and b > start]
        if k == 0 and hits:
            found = _SUBJECT.match(piece[: max(min(hits) - start, 0)])
            subject = found.group(1) if found else ""
        if k % 2 or hits:
            continue
        if k == 2 and subject and not out and _AND_ING.match(piece):
            piece = subject + _AND_ING.sub("", piece)
        out += (pieces[k - 1] if out and k else "") + piece
    out = _LEAD.sub("", out.strip(" ,;:")).strip(" ,;:")
    return out[:1].upper() + out[1:] if len(re.findall(r"\w+", out)) >= 2 else ""


def prune(reading: EmotionReading, cues: list[Cue]) -> tuple[list[str], list[DroppedClaim]]:
    """The explanation without what its cited cues do not show, and what was cut.

    Per sentence, the clauses naming unsupported things go (the rest keeps its citations); a
    sentence with nothing left goes whole. The conclusion survives: when the cut explanation no
    longer names the dominant emotion, its last claim keeps a plain statement of it."""
    by_id = {c.id: c for c in cues}
    kept: list[str] = []
    dropped: list[DroppedClaim] = []
    last_ids: list[str] = []
    for item in reading.explanation:
        parts: list[str] = []
        ids: list[str] = []
        for s, ids in _cited_sentences([item]):
            cited = [by_id[i] for i in ids if i in by_id]
            bad = unsupported(s, cited, cues)
            if not bad:
                parts.append(s)
                continue
            bare = _bare(s)
            rest = _cut(bare.rstrip(".!?"), [(m.start, m.end) for m, _ in bad])
            if rest and unsupported(rest, cited, cues):
                rest = ""
            if rest:
                parts.append(cite(rest, ids))
            last_ids = ids or last_ids
            dropped.append(
                DroppedClaim(
                    text=s, kept=parts[-1] if rest else None, reasons=[why for _, why in bad]
                )
            )
        if parts and ids and not cited_ids(parts[-1]):
            # the claim cited once, at its end, and that sentence went: the ids move to the
            # new end ("The voice is calm. <dropped> [V1]." -> "The voice is calm [V1].")
            parts[-1] = cite(parts[-1], ids)
        if parts:
            kept.append(" ".join(parts))
    if reading.dominant in BASIC:
        before = labels_in(" ".join(_bare(s) for s in reading.explanation))
        after = labels_in(" ".join(_bare(s) for s in kept))
        if reading.dominant in before and reading.dominant not in after:
            kept.append(cite(f"Overall the person seems {ADJECTIVE[reading.dominant]}", last_ids))
    return kept, dropped


def recite(explanation: list[str], cues: list[Cue]) -> tuple[list[str], list[str]]:
    """The explanation with each word-for-word quote also cited to the cue that holds it, and a
    note per mended claim. The 1.5B's most common slip on clips with speech is to quote the
    transcript (S1) while citing the words' emotion scores (S2): the quote is right, only its
    citation is not, and a repair round (~10 s on 2 cores) to say "cite S1" was the rest of the
    bench's repair rounds. A claim whose sentences cite different ids is left to the repair."""
    by_id = {c.id: c for c in cues}
    out, notes = [], []
    for n, item in enumerate(explanation, start=1):
        groups = _cited_sentences([item])
        ids = groups[0][1] if groups else []
        if not ids or any(g[1] != ids for g in groups):
            out.append(item)
            continue
        cited = [by_id[i] for i in ids if i in by_id]
        extra = [
            c.id
            for s, _ in groups
            for m, _ in unsupported(s, cited, cues)
            if m.kind == "quote"
            for c in cues
            if c not in cited and _shows(m, c)
        ]
        extra = list(dict.fromkeys(extra))
        if not extra:
            out.append(item)
            continue
        out.append(cite(item, [*ids, *extra]))
        notes.append(f"Sentence {n}'s quote is now cited to {', '.join(extra)}, which holds it.")
    return out, notes


def reads_whole(claim: DroppedClaim) -> bool:
    """Whether a cut kept its sentence's opening clause, or at least its subject and verb, so
    what is left still reads as the claim it was ("The person is looking at the camera,
    indicating disgust"; "The person is widening their eyes"). A cut that took the opening
    leaves a fragment ("Indicating disgust."): a repair round rewrites that instead (the node's
    ``verify_prune_first``)."""
    first = _CLAUSE.split(_bare(claim.text).rstrip(".!?"))[0].strip()
    subject = _SUBJECT.match(first[: first.rfind(" ") + 1]) if " " in first else None
    opening = subject.group(1) if subject else first
    return bool(claim.kept and opening and claim.kept.startswith(opening))


def clean_cut(explanation: list[str], cut: list[DroppedClaim]) -> bool:
    """Whether a cut leaves every claim reading as it was meant: each cut sentence keeps its
    opening (``reads_whole``), or goes whole from a claim that keeps another sentence and is
    not the conclusion (a rambling second sentence: "The AU cue for lip corner depressor
    (AU15) is present and has [S2]."). A claim cut to nothing, or a fragment, goes back to
    the LLM instead."""

    def claim_of(d: DroppedClaim) -> int | None:
        return next((i for i, item in enumerate(explanation) if d.text in item), None)

    for d in cut:
        if reads_whole(d):
            continue
        i = claim_of(d)
        if d.kept is not None or i is None or i == len(explanation) - 1:
            return False
        gone = [x.text for x in cut if x.kept is None and claim_of(x) == i]
        if len(split_sentences([explanation[i]])) <= len(gone):
            return False
    return True


def names_dominant(reading: EmotionReading) -> bool:
    """Whether the conclusion (the explanation's last claim) names the dominant emotion. The
    other claims may name any emotion a cue shows (the words "read as neutral, happiness and
    anger"): an emotion named there is not the explanation's conclusion."""
    last = reading.explanation[-1] if reading.explanation else ""
    return reading.dominant in labels_in(_bare(last))


def concluded(reading: EmotionReading) -> list[str]:
    """The explanation closing on the decided emotion. After the last repair round the LLM may
    still conclude with another one (the fused witnesses decided against it, and the conflict is
    recorded): a plain closing statement then names the decision, so a stored explanation never
    ends on an emotion other than its label. It cites nothing: it states the decision, not a cue."""
    if reading.dominant not in BASIC or names_dominant(reading):
        return list(reading.explanation)
    adjective = ADJECTIVE[reading.dominant]
    return [*reading.explanation, f"Weighing every witness together, the person seems {adjective}."]
