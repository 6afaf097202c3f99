"""The reason step: prompt -> LLM (JSON schema) -> a normalised EmotionReading.

The LLM fills a compact schema (``LLMReading``: explanation first so it reasons before it
labels, then the two basic emotions, valence, arousal, confidence, conflicts). The rest of the
``EmotionReading`` is derived deterministically: the label from the taxonomy, the basic-emotion
probabilities as a blend of the LLM's choice and the perception models' distribution, and the
per-modality accounts from the sentences citing each modality's cues. A smaller schema means
fewer generated tokens on a CPU model (the full schema roughly doubles them) and fewer ways to
be inconsistent. When the fused witnesses decide (``settings.decision``, the default), the
first turn states their emotion and the LLM explains it: it writes neither the emotion nor a
confidence (the fusion's calibrated one is the reading's).

A repair round writes again only what the verifier found wrong: the claims it named, and the
conclusion with the decision fields when they are at fault (``redo_fields``,
``schema_for(..., only=...)``); the rest stands (``merged``), so a repair costs a fraction of
the first reading's tokens.

Citations are structured, not scraped: each explanation item is ``{"text", "cues"}`` and the
schema sent with each call (``schema_for``) makes ``cues`` an enum of the ids that exist in this
analysis with at least one entry, so the grammar-constrained LLM cannot cite a missing cue or
leave a claim uncited. The stored sentence is the text followed by its ids in brackets.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator
from pydantic.json_schema import SkipJsonSchema

from affectlens import prompts
from affectlens.agent.citations import cite, cited_ids, split_sentences
from affectlens.agent.schemas import MODALITIES, Cue, EmotionReading, Modality, ModalityAccount
from affectlens.agent.textualise import render_cues
from affectlens.taxonomy import BASIC, compound_label, parse_label, to_basic
from affectlens.tools.evidence import Status

Basic = Literal["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
PROMPT = "reason"
SYSTEM = "system"
REPAIR = "repair"
# One claim per modality plus the conclusion: with all four modalities cued a cap of 4 cut the
# conclusion, and verification then found no sentence naming the dominant emotion.
MAX_SENTENCES = len(MODALITIES) + 1
SENTENCE_CHARS = 160
MAX_CITES = 3
LLM_PICK_WEIGHT = 0.6  # share of the probabilities that follows the LLM's choice


# Bounded strings: the grammar then caps every field, so a small model cannot ramble past
# llm_max_tokens (an unbounded 0.5B reply was cut at 384 tokens in testing).
# A claim is one sentence: its JSON schema's pattern allows a stop (. ! ?) only before a
# non-space (0.62, 'gone.') or at its end, so the grammar closes the string where the sentence
# ends. The 1.5B wrote a second sentence into ~half its claims and was cut at SENTENCE_CHARS
# mid-word ("... indicating a m"): ~30 generated tokens a reading that were thrown away
# (docs/bench.md). Schema only (json_schema_extra): a stored or hand-written claim of several
# sentences still validates. Each repeated unit is one or two characters, hence max_length.
ONE_SENTENCE = rf'^([^"\\.!?]|[.!?][^ "\\]){{0,{SENTENCE_CHARS - 1}}}[.!?]?$'
Sentence = Annotated[
    str, Field(max_length=2 * SENTENCE_CHARS, json_schema_extra={"pattern": ONE_SENTENCE})
]
CueId = Annotated[str, Field(max_length=4)]


def finished(text: str) -> str:
    """A claim the grammar cut at ``SENTENCE_CHARS`` ends mid-word ("... low, with a sl"):
    keep its finished sentences, else its whole clauses, else its whole words."""
    if len(text) < SENTENCE_CHARS:
        return text
    for boundary in (r"^.*[.!?](?=\s)", r"^.*(?=[,;:])"):  # greedy: the last one
        m = re.match(boundary, text, flags=re.S)
        if m and len(m.group(0).split()) >= 3:
            return m.group(0).rstrip()
    return text.rsplit(" ", 1)[0]


class Claim(BaseModel):
    """One explanation sentence and the cue ids it rests on."""

    text: Sentence
    cues: list[CueId] = Field(default_factory=list)

    @property
    def sentence(self) -> str:
        """The text with its citations in brackets before the final stop: "Sad face [F1]."."""
        return cite(finished(self.text), self.cues)


class LLMReading(BaseModel):
    """What the LLM is asked to produce; ``schema_for`` narrows it to one analysis's cues."""

    explanation: list[Claim] = Field(
        min_length=1,
        max_length=MAX_SENTENCES,
        description=f"2-{MAX_SENTENCES} claims, each with the cue "
        "ids it rests on; the last one concludes.",
    )
    label: str = Field(
        default="", max_length=40, description="adverb + adjective, e.g. 'sadly angry'"
    )
    dominant: Basic
    secondary: Basic | Literal["none"] = "none"
    valence: float = Field(ge=-1, le=1)
    arousal: float = Field(ge=-1, le=1)
    confidence: float = Field(ge=0, le=1)
    conflicts: list[CueId] = Field(
        default_factory=list, max_length=6, description="ids of cues that disagree"
    )

    @field_validator("explanation", mode="before")
    @classmethod
    def _sentences(cls, value):
        """Accept plain sentences with bracketed ids too (e.g. a stored or hand-written one)."""
        claims = []
        for v in value:
            if isinstance(v, str):
                claims += [{"text": t, "cues": cited_ids(t)} for t in split_sentences([v])]
            else:
                claims.append(v)
        return claims


class ModalityClaims(BaseModel):
    """Base of the per-analysis schema: one claim per modality that has cues, then a
    conclusion, then the emotions (the model writes its evidence before it decides). There is
    no label field: a 1.5B model copied the prompt's example label ("sadly angry") over its own
    conclusion, so the label is composed from dominant and secondary by the taxonomy."""

    if TYPE_CHECKING:  # a field of every schema_for model, declared there with its cue ids
        conclusion: Claim

    def claims(self) -> list[Claim]:
        fields = type(self).model_fields
        return [getattr(self, m) for m in MODALITIES if m in fields] + [self.conclusion]

    @property
    def explanation(self) -> list[Claim]:
        return self.claims()


def schema_for(
    cues: list[Cue], dominant: str | None = None, only: Collection[str] | None = None
) -> type[BaseModel]:
    """The JSON schema for one analysis: a claim for each modality with cues, citing only that
    modality's ids (at least one), and a conclusion citing any ids; conflicts are ids too. So
    every cited id exists and every available modality is accounted for, by construction.
    ``dominant``: the emotion the fused witnesses decided (agent.fusion.decided); the only
    value the schema then allows, the one the conclusion is asked to name, and, like the
    confidence, valence, arousal and conflicts (the fused witnesses' replace them), filled in,
    not generated. ``only``: the
    fields a repair round writes again (``redo_fields``)."""
    if not cues:
        return LLMReading
    ids = tuple(dict.fromkeys(c.id for c in cues))
    Id = Literal[ids]  # type: ignore[valid-type]

    def claim(name: str, allowed: tuple[str, ...], about: str) -> tuple[type, object]:
        Ref = Literal[allowed]  # type: ignore[valid-type]
        model = create_model(
            f"{name.capitalize()}Claim",
            __base__=Claim,
            cues=(list[Ref], Field(min_length=1, max_length=MAX_CITES)),
        )
        return model, Field(description=about)

    # field name -> (annotation, default): annotations built at run time from this analysis
    fields: dict[str, Any] = {}
    for m in MODALITIES:
        mine = tuple(c.id for c in cues if c.modality == m)
        if mine and (only is None or m in only):
            fields[m] = claim(m, mine, f"one sentence: what the {m} cues show")
    fields.update(
        conclusion=claim(
            "conclusion", ids, f"one sentence naming {dominant or 'the emotion'} and its main cues"
        ),
        dominant=(Basic, ...),
        secondary=(Basic | Literal["none"], "none"),
        valence=(float, Field(ge=-1, le=1)),
        arousal=(float, Field(ge=-1, le=1)),
        confidence=(float, Field(ge=0, le=1)),
        conflicts=(
            list[Id],
            Field(default_factory=list, max_length=6, description="ids of cues that disagree"),
        ),
    )
    if dominant:  # decided: not generated (~40 tokens a call); the fused witnesses give the
        # confidence, the conflicts and, through the circumplex, valence and arousal
        # (agent.nodes.decide)
        fields.update(
            dominant=(SkipJsonSchema[Literal[dominant]], dominant),  # type: ignore[misc,valid-type]
            confidence=(SkipJsonSchema[float], 0.0),
            valence=(SkipJsonSchema[float], 0.0),
            arousal=(SkipJsonSchema[float], 0.0),
            conflicts=(SkipJsonSchema[list[str]], Field(default_factory=list)),
        )
    if only is not None:
        return create_model("Repair", **{k: v for k, v in fields.items() if k in only})
    return create_model("Reading", __base__=ModalityClaims, **fields)


def redo_fields(previous: BaseModel, sentences: list[int] | None) -> list[str] | None:
    """The fields a repair round writes again, given the 1-based sentences the verifier
    found wrong (``verify.sentences_to_redo``): those sentences' modality claims; the
    conclusion and the decision fields too when the conclusion is among them or no sentence
    is (a problem with the label or the emotion it names). A claim that named what its cues
    do not show is all a repair writes again (~25 tokens, not ~80). None (write it all again)
    when ``sentences`` is None or ``previous`` is not a per-analysis reading."""
    if sentences is None or not isinstance(previous, ModalityClaims):
        return None
    names = [m for m in MODALITIES if m in type(previous).model_fields] + ["conclusion"]
    claims = [names[n - 1] for n in sentences if 0 < n < len(names)]
    if claims and len(names) not in sentences:
        return claims
    decision = [f for f in written(type(previous)) if f not in names]
    return [*claims, "conclusion", *decision]


def written(schema: type[BaseModel]) -> list[str]:
    """The fields the LLM writes: those in the JSON schema its grammar gets (a decided emotion
    and its confidence are filled in, not written)."""
    return list(schema.model_json_schema()["properties"])


def merged(previous: BaseModel, repair: BaseModel, schema: type[BaseModel]) -> BaseModel:
    """The full reading: ``previous`` with the fields a repair round wrote again replaced."""
    return schema.model_validate({**previous.model_dump(), **repair.model_dump()})


def messages(
    header: str,
    cues: list[Cue],
    knowledge: list[str],
    previous: BaseModel | None = None,
    problems: list[str] | None = None,
    fields: list[str] | None = None,
    decided: str | None = None,
) -> list[dict]:
    """Chat messages for one reasoning round: the constant system turn, then this analysis's
    header, cues, knowledge and ``decided`` (the emotion the fused witnesses decided, which the
    LLM explains; None when it is to choose). A repair round repeats that first prompt (so the
    prompt cache reuses it), the previous JSON as the assistant's turn, then the problems and the
    ``fields`` to write again (all of them when None)."""
    msgs = [
        {"role": "system", "content": prompts.render(SYSTEM)},
        {
            "role": "user",
            "content": prompts.render(
                PROMPT,
                header=header,
                cues=render_cues(cues),
                knowledge=knowledge,
                decided=decided,
            ),
        },
    ]
    if previous is not None and problems:
        every = written(type(previous))
        msgs.append({"role": "assistant", "content": previous.model_dump_json(include=set(every))})
        msgs.append(
            {
                "role": "user",
                "content": prompts.render(REPAIR, problems=problems, fields=fields or every),
            }
        )
    return msgs


def prompt_versions() -> dict[str, str]:
    names = (SYSTEM, PROMPT, REPAIR)
    return {"prompt": "+".join(prompts.version(n) for n in names)}


def _basic(word: str | None) -> str | None:
    if not word or word == "none":
        return None
    return word if word in BASIC else to_basic(word)


def bounded(sentences: list[str]) -> list[str]:
    """At most ``MAX_SENTENCES``, always keeping the last one (the conclusion that names the
    emotion): the claims in between are what gets dropped."""
    if len(sentences) <= MAX_SENTENCES:
        return sentences
    return [*sentences[: MAX_SENTENCES - 1], sentences[-1]]


def normalise(
    raw: LLMReading,
    cues: list[Cue],
    status: dict[Modality, tuple[Status, str]],
    evidence_dist: dict[str, float],
) -> tuple[EmotionReading, list[str]]:
    """The full reading from the LLM's compact one, and the repairs made (as 'fixed' notes)."""
    fixes: list[str] = []
    dominant = _basic(raw.dominant)
    raw_label = getattr(raw, "label", "")  # the per-analysis schema leaves it to the taxonomy
    if dominant is None:
        parsed = parse_label(raw_label)
        dominant = parsed.dominant if parsed else "neutral"
        fixes.append(f"dominant {raw.dominant!r} is not a basic emotion; used {dominant}")
    secondary = _basic(raw.secondary)
    if secondary == dominant:
        secondary = None
    label = compound_label(dominant, secondary)
    if raw_label and raw_label.strip().lower() != label:
        parsed = parse_label(raw_label)
        if parsed is None or parsed.dominant != dominant or (parsed.secondary or None) != secondary:
            fixes.append(f"label {raw_label!r} disagreed with dominant/secondary; set to {label!r}")
    sentences = bounded([c.sentence for c in raw.explanation])
    ids = {c.id for c in cues}
    named = [c.strip().strip("[]").strip() for c in raw.conflicts]
    conflicts = [c for c in dict.fromkeys(named) if c in ids]
    dropped = [c for c in named if c not in ids]
    if dropped:
        fixes.append(f"dropped conflict ids that are not cues: {', '.join(dropped)}")
    return EmotionReading(
        dominant=dominant,
        secondary=secondary,
        label=label,
        probabilities=probabilities(dominant, secondary, evidence_dist),
        valence=_clamp(raw.valence, -1, 1),
        arousal=_clamp(raw.arousal, -1, 1),
        confidence=_clamp(raw.confidence, 0, 1),
        explanation=sentences,
        conflicts=conflicts,
        modalities=accounts(sentences, cues, status),
    ), fixes


def no_evidence(status: dict[Modality, tuple[Status, str]]) -> EmotionReading:
    """The honest reading when no modality produced a cue: neutral, zero confidence, and why
    (asking an LLM here would only invite invented evidence)."""
    why = "; ".join(f"{m} {st}" + (f" ({r})" if r else "") for m, (st, r) in status.items())
    return EmotionReading(
        dominant="neutral",
        secondary=None,
        label=compound_label("neutral", None),
        probabilities={b: round(1 / len(BASIC), 4) for b in BASIC},
        valence=0.0,
        arousal=0.0,
        confidence=0.0,
        explanation=[f"No usable evidence: {why}."],
        modalities=accounts([], [], status),
    )


def _clamp(x: float, lo: float, hi: float) -> float:
    return round(min(hi, max(lo, float(x))), 3)


def probabilities(
    dominant: str, secondary: str | None, evidence_dist: dict[str, float]
) -> dict[str, float]:
    """Blend of the LLM's pick (0.7 dominant / 0.3 secondary, or 1.0) and the perception
    distribution (uniform when there is none); sums to 1 over all basic emotions."""
    pick = {dominant: 0.7, secondary: 0.3} if secondary else {dominant: 1.0}
    base = evidence_dist or {b: 1 / len(BASIC) for b in BASIC}
    mixed = {
        b: LLM_PICK_WEIGHT * pick.get(b, 0.0) + (1 - LLM_PICK_WEIGHT) * base.get(b, 0.0)
        for b in BASIC
    }
    total = sum(mixed.values())
    return {b: round(v / total, 4) for b, v in mixed.items()}


def accounts(
    sentences: list[str], cues: list[Cue], status: dict[Modality, tuple[Status, str]]
) -> list[ModalityAccount]:
    """Per modality: the explanation sentences citing its cues; else its first cue; else why
    it is missing."""
    modality_of = {c.id: c.modality for c in cues}
    out = []
    for m, (st, reason) in status.items():
        mine = [s for s in sentences if any(modality_of.get(i) == m for i in cited_ids(s))]
        first = next((c for c in cues if c.modality == m), None)
        if st == "ok" and mine:
            summary = " ".join(mine)
        elif st == "ok" and first:
            summary = f"Not used in the explanation; [{first.id}] {first.text}."
        elif st == "ok":
            summary = "Analysed, but nothing notable was found."
        else:
            summary = f"{m.capitalize()} {st}: {reason or 'not available'}."
        out.append(
            ModalityAccount(modality=m, status=st if st != "ok" or first else "ok", summary=summary)
        )
    return out
