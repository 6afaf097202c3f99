"""What kind of question was asked, decided from its words, before any model runs.

The kind picks how the answer is built (``agent.chat.evidence`` gathers the cues, a per-kind
schema makes the LLM write claims over exactly those): a contrastive question ("why this
emotion and not sadness?") gets the evidence for each side and a verdict from the fused
ranking; a yes/no or "when" question ("is she crying?") gets the cues that show it or speak
against it, with their time spans, or "the cues cannot tell"; a counterfactual ("what would you
say without the voice?") gets the reading before and after. Why-questions and anything else
keep the general cited answer.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from affectlens.agent.chat.tools import modality_in, times_in
from affectlens.agent.schemas import MODALITIES, Modality
from affectlens.taxonomy import BASIC, to_basic

Kind = Literal["contrastive", "yes_no", "when", "counterfactual", "why", "other"]
ANSWERED_BY_SIDES: tuple[str, ...] = ("contrastive", "yes_no", "when")

WHY = re.compile(r"^\W*(why|how come|what makes you)\b", re.I)
LEAVE_OUT = re.compile(r"\b(ignore|ignoring|without|leave out|leaving out|left out)\b", re.I)
_WHEN = re.compile(r"^\W*(when|at what (time|point|moment)|how long)\b", re.I)
# "is she ...", "does the person ...", "are they ...": a yes/no question about the person.
_YES_NO = re.compile(
    r"^\W*(is|are|was|were|does|do|did|has|have|had)\s+"
    r"(she|he|they|it|someone|anyone|there|the\s+\w+|this\s+\w+|that\s+\w+|his\s+\w+|her\s+\w+)\b",
    re.I,
)
# ... about the person (not "is the reading reliable?": a question about the analysis).
_PERSON = re.compile(
    r"^\W*\w+\s+(she|he|they|someone|somebody|anyone|anybody|"
    r"the\s+(person|speaker|man|woman|girl|boy|actor|actress|child|kid|subject|lady|guy|people))\b",
    re.I,
)
_CONTRAST = re.compile(r"\b(not|rather than|instead of|over|versus|vs|or|than|but)\b|\bn't\b", re.I)


class Target(BaseModel):
    """What a yes/no or when question asks about, as things the analysis can measure."""

    name: str = Field(description="The word the user wrote: 'crying', 'sad'.")
    emotions: list[str] = Field(default_factory=list, description="Basic emotions it shows.")
    aus: list[str] = Field(
        default_factory=list,
        description="Action units that show it (none: those of its emotions' prototypes).",
    )
    arousal: Literal["high", "low"] | None = Field(
        default=None, description="A voice level that shows it."
    )
    note: str | None = Field(default=None, description="What the cues cannot see of it.")
    modalities: list[Modality] = Field(
        default_factory=lambda: list(MODALITIES),
        description="Where it can show: a smile in the face, not in the words.",
    )


# Behaviours the cues measure only through their signs (AU codes: Ekman & Friesen's FACS).
_BEHAVIOURS: tuple[tuple[tuple[str, ...], dict], ...] = (
    (
        (
            "cry",
            "cries",
            "crying",
            "cried",
            "tears",
            "tearful",
            "weep",
            "weeping",
            "sob",
            "sobbing",
        ),
        {
            "emotions": ["sadness"],
            "aus": ["AU1", "AU4", "AU15", "AU17", "AU43"],
            "note": "Tears are not measured; these are the signs that go with crying.",
            "modalities": ["face", "voice"],
        },
    ),
    (
        ("smile", "smiles", "smiling", "smiled", "grin", "grins", "grinning"),
        {"emotions": ["happiness"], "aus": ["AU12"], "modalities": ["face"]},
    ),
    (
        ("laugh", "laughs", "laughing", "laughed"),
        {"emotions": ["happiness"], "aus": ["AU6", "AU12"], "modalities": ["face", "voice"]},
    ),
    (("frown", "frowns", "frowning", "frowned"), {"aus": ["AU4"], "modalities": ["face"]}),
    (
        ("shout", "shouts", "shouting", "yell", "yelling", "scream", "screaming"),
        {"arousal": "high", "modalities": ["voice"]},
    ),
)
_EYES_CLOSED = re.compile(r"\beyes?\b.{0,20}\b(closed|close|closing|shut)\b|\bblink", re.I)


class Asked(BaseModel):
    """A question's kind and what it names."""

    kind: Kind
    first: str | None = Field(default=None, description="Contrastive: the emotion defended.")
    second: str | None = Field(default=None, description="Contrastive: the alternative.")
    target: Target | None = None
    modality: Modality | None = Field(default=None, description="Counterfactual: left out.")
    span: tuple[float, float] | None = Field(default=None, description="Times the user gave.")


def emotions_named(question: str) -> list[str]:
    """Basic emotions the question names, in order ('sad or surprised?' -> sadness, surprise)."""
    found = [to_basic(w) for w in re.findall(r"[a-z]+", question.lower())]
    return list(dict.fromkeys(e for e in found if e in BASIC))


def target_in(question: str) -> Target | None:
    """The measurable thing a yes/no or when question is about; None when it names nothing the
    analysis measures ('is she lying?')."""
    words = set(re.findall(r"[a-z]+", question.lower()))
    for keys, what in _BEHAVIOURS:
        hit = words.intersection(keys)
        if hit:
            return Target(name=sorted(hit)[0], **what)
    if _EYES_CLOSED.search(question):
        return Target(name="eyes closed", aus=["AU43", "AU45"], modalities=["face"])
    named = emotions_named(question)
    if named:
        word = next(w for w in re.findall(r"[a-z]+", question.lower()) if to_basic(w) in named)
        return Target(name=word, emotions=named)
    return None


def _span(question: str) -> tuple[float, float] | None:
    said = times_in(question)
    if not said:
        return None
    return (said[0], said[1] if len(said) > 1 else said[0])


def classify(question: str, dominant: str | None) -> Asked:
    """The question's kind from its words; ``dominant`` is the reading's emotion ("this
    emotion"). Never calls a model, so the same question gets the same kind everywhere."""
    why = bool(WHY.match(question))
    modality = modality_in(question)
    if LEAVE_OUT.search(question) and modality is not None and not why:
        return Asked(kind="counterfactual", modality=modality)
    named = emotions_named(question)
    if _CONTRAST.search(question) and (why or _YES_NO.match(question) or len(named) > 1):
        pair = named[:2] if len(named) > 1 else [dominant, *named]
        if len(pair) == 2 and pair[0] and pair[0] != pair[1]:
            return Asked(kind="contrastive", first=pair[0], second=pair[1])
    if why:
        return Asked(kind="why")
    kind: Kind | None = (
        "when" if _WHEN.match(question) else ("yes_no" if _YES_NO.match(question) else None)
    )
    if kind is None:
        return Asked(kind="other")
    target, span = target_in(question), _span(question)
    if target is None and (span is not None or modality is not None):
        return Asked(kind="other")  # "did the face do anything at 0:04?": a cue lookup
    if target is None and not _PERSON.match(question):
        return Asked(kind="other")  # "is the reading reliable?": about the analysis
    return Asked(kind=kind, target=target, span=span)
