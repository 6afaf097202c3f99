"""Deterministic checks of a reading against the cues it claims to rest on.

Every problem is phrased as an instruction the LLM can act on when the graph loops back to
reason. ``grounded`` means: there are citations, every cited id exists, every number quoted next
to a citation appears in the cited cues, and every non-concluding sentence cites a cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.schemas import Cue, EmotionReading, Modality
from agent.taxonomy import ADJECTIVE, BASIC, labels_in, parse_label
from agent.textualise import PREFIX, cue_line

CITATION = re.compile(r"\[([A-Z]\d+(?:\s*[,;]\s*[A-Z]?\d+)*)\]")
_ID = re.compile(r"[A-Z]\d+")
# A number standing alone: not part of an id or AU code (F2, AU12), may be a percentage.
_NUMBER = re.compile(r"(?<![A-Za-z\d.:])(-?\d+(?:\.\d+)?)(%?)(?![A-Za-z\d])")
_AU = re.compile(r"\bAU\s?\d+\b", re.I)
_TIME = re.compile(r"\b\d+:\d+(?:\.\d+)?\b|\b\d+(?:\.\d+)?-\d+(?:\.\d+)?s\b")  # 00:01.2, 1.2-3.4s
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[])")

GROUNDING_KINDS = frozenset({"unknown-cue", "number", "uncited", "no-citations"})


@dataclass(frozen=True)
class Problem:
    kind: str  # unknown-cue | number | uncited | no-citations | modality | label | agreement
    message: str

    def __str__(self) -> str:
        return self.message


def cited_ids(sentence: str, citation: re.Pattern = CITATION,
              cue_id: re.Pattern = _ID) -> list[str]:
    """Ids cited in brackets, '[F1]', '[F1, V2]' or '[F1][S2]', in order, without repeats.
    ``citation`` finds the bracket groups and ``cue_id`` the ids in each (evals/metrics passes
    looser ones for other systems' explanations)."""
    out: list[str] = []
    for group in citation.findall(sentence):
        for i in cue_id.findall(group):
            if i not in out:
                out.append(i)
    return out


def split_sentences(explanation: list[str]) -> list[str]:
    """The explanation as sentences (a model may pack several into one list item)."""
    out: list[str] = []
    for item in explanation:
        out.extend(s.strip() for s in _SENTENCE.split(item.strip()) if s.strip())
    return out


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


def check(reading: EmotionReading, cues: list[Cue],
          available: dict[Modality, bool]) -> list[Problem]:
    """All problems found; ``available`` says which modalities had usable evidence."""
    problems: list[Problem] = []
    if not cues:  # nothing was observed: the reading may only say so (reason.no_evidence)
        return problems
    by_id = {c.id: c for c in cues}
    valid = ", ".join(by_id) or "none"
    cited = _cited_sentences(reading.explanation)
    sentences = [s for s, _ in cited]
    if not sentences:
        problems.append(Problem("no-citations", "The explanation is empty; write 2-4 sentences "
                                                "citing cue ids."))
    all_cited: list[str] = []
    for n, (s, ids) in enumerate(cited, start=1):
        all_cited += ids
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            problems.append(Problem(
                "unknown-cue",
                f"Sentence {n} cites {', '.join(unknown)}, which do not exist; cite only: {valid}."))
        known = [by_id[i] for i in ids if i in by_id]
        if not ids and not (n == len(sentences) and n > 1):
            problems.append(Problem("uncited", f"Sentence {n} cites no cue: list the cue ids it relies "
                                               "on."))
        if known:
            allowed = [x for c in known for x in numbers(cue_line(c))]
            wrong = [x for x in numbers(s) if not matches(x, allowed)]
            if wrong:
                problems.append(Problem(
                    "number",
                    f"Sentence {n} quotes {', '.join(f'{w:g}' for w in wrong)}, which "
                    f"{'is' if len(wrong) == 1 else 'are'} not in {', '.join(c.id for c in known)}; "
                    "quote the cue values exactly."))
    if sentences and not all_cited:
        problems.append(Problem("no-citations", "No sentence cites a cue; list the cue ids each claim rests on."))
    cited_set = set(all_cited)
    for m, ok in available.items():
        mine = [c.id for c in cues if c.modality == m]
        if ok and mine and not cited_set.intersection(mine):
            problems.append(Problem(
                "modality", f"The {m} cues ({', '.join(mine)}) are not cited; say what the {m} "
                            "shows."))
    parsed = parse_label(reading.label)
    if reading.dominant not in BASIC or parsed is None:
        problems.append(Problem("label", f"The label {reading.label!r} is not a compound of the "
                                         f"basic emotions {', '.join(BASIC)}."))
    elif parsed.dominant != reading.dominant:
        problems.append(Problem("label", f"The label {reading.label!r} does not have "
                                         f"{reading.dominant} as its dominant emotion."))
    if sentences and reading.dominant in BASIC:
        named = labels_in(" ".join(CITATION.sub(" ", s) for s in sentences))
        if reading.dominant not in named:
            problems.append(Problem(
                "agreement",
                f"The explanation never names the dominant emotion ({reading.dominant}, "
                f"'{ADJECTIVE[reading.dominant]}'); its last sentence should conclude with it."))
    return problems


def grounded(problems: list[Problem]) -> bool:
    return not any(p.kind in GROUNDING_KINDS for p in problems)


def prefix_modality(cue_id: str) -> Modality | None:
    """'F3' -> 'face'."""
    for m, p in PREFIX.items():
        if cue_id.startswith(p):
            return m
    return None
