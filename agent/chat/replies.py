"""Answers built from sides: the verdict and time spans written by code, the LLM's part only
short claims over the cue ids code put on each side.

``sides_schema`` gives every side a field whose claims cite 1-3 ids from an enum of that side's
cues, so a claim "for sadness" cannot rest on a cue that favours happiness; a side with no cue
has no field, and code says that no measured cue supports it. If the LLM fails, the cues'
own sentences stand in for its claims.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from affectlens import prompts
from affectlens.agent import verify as vf
from affectlens.agent.chat import evidence as ev
from affectlens.agent.chat.questions import Asked
from affectlens.agent.chat.tools import modality_in
from affectlens.agent.reason import SENTENCE_CHARS, Claim
from affectlens.agent.schemas import AnalysisResult, Cue, EmotionReading, Modality
from affectlens.agent.textualise import neutralise, render_cues, ts

PROMPT_SIDES = "chat_sides"
CLAIMS_PER_SIDE = 1  # one claim per side, citing up to 3 of its ids: a small model repeats itself
SIDE_CUES = 6  # the strongest cues per side shown to the LLM (the prompt is the latency)
SIDES_MAX_TOKENS = 200


class Side(BaseModel):
    """One side of an answer: the field the LLM fills, a heading, the cues it may cite."""

    field: str
    heading: str
    cues: list[Cue]
    asks: str = Field(description="What its cues do, for the prompt: 'favour sadness over ...'.")


class Built(BaseModel):
    """A sides answer: the full text, the LLM's part of it (checked against the cues), the
    verdict, and the ids on each side."""

    text: str
    claims_text: str = ""
    verdict: str | None = None
    sides: dict[str, list[str]] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)


def sides_schema(sides: list[Side]) -> type[BaseModel]:
    """One field per side with cues: 1-2 claims, each citing 1-3 of that side's ids."""
    fields: dict[str, Any] = {}
    for side in sides:
        ids = tuple(dict.fromkeys(c.id for c in side.cues))
        if not ids:
            continue
        claim = create_model(
            f"Claim_{side.field}",
            __base__=Claim,
            text=(str, Field(min_length=1, max_length=SENTENCE_CHARS)),
            cues=(list[Literal[ids]], Field(min_length=1, max_length=3)),  # type: ignore[valid-type]
        )
        fields[side.field] = (
            list[claim],  # type: ignore[valid-type]
            Field(min_length=1, max_length=CLAIMS_PER_SIDE, description=f"cues that {side.asks}"),
        )
    if not fields:
        raise ValueError("no side has a cue to cite")
    return create_model("SidesAnswer", **fields)


def _strongest(cues: list[Cue]) -> list[Cue]:
    def weight(c: Cue) -> float:
        return abs(float(c.value)) if isinstance(c.value, (int, float)) else 0.0

    return sorted(cues, key=weight, reverse=True)[:SIDE_CUES]


def _messages(question: str, sides: list[Side]) -> list[dict]:
    shown = [
        (s.field, s.asks, render_cues(_strongest(s.cues)))  # transcripts fenced as data
        for s in sides
        if s.cues
    ]
    return [
        {
            "role": "user",
            "content": prompts.render(PROMPT_SIDES, question=neutralise(question), sides=shown),
        }
    ]


def _lead(text: str) -> str:
    """'The face ...' -> 'the face ...' after a heading; 'AU12 ...' stays."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _quoted(side: Side, cues: list[Cue]) -> str:
    """The code's own claim: the cues' sentences, cited."""
    said = "; ".join(neutralise(c.text) for c in cues)
    return f"{side.heading}: {said} {''.join(f'[{c.id}]' for c in cues)}."


def fits(text: str, cited: list[Cue], cues: list[Cue]) -> bool:
    """Whether a claim names only what its cited cues show: no facial action, voice quality or
    quotation they lack (the verifier's check), and no other modality by name ('the words'
    citing a voice cue)."""
    named = modality_in(text)
    if named is not None and named not in {c.modality for c in cited}:
        return False
    return not vf.unsupported(text, cited, cues)


def claims(question: str, sides: list[Side], llm: Any) -> tuple[dict[str, list[str]], list[str]]:
    """(side field -> rendered sentences, problems). The LLM writes the claims; a claim that
    names what its cues do not show is replaced by those cues' own sentences, and when the LLM
    fails each side's strongest cues are quoted, so the answer never rests on its wording."""
    out: dict[str, list[str]] = {}
    problems: list[str] = []
    if not any(s.cues for s in sides):
        return out, problems
    try:
        reply = llm.chat(
            _messages(question, sides), sides_schema(sides), max_tokens=SIDES_MAX_TOKENS
        )
    except Exception as exc:  # noqa: BLE001 - LLMError: quote the cues instead
        problems.append(f"the LLM wrote no claims ({type(exc).__name__}); the cues are quoted")
        for s in sides:
            if s.cues:
                out[s.field] = [_quoted(s, [c]) for c in _strongest(s.cues)[:2]]
        return out, problems
    for s in sides:
        by_id = {c.id: c for c in s.cues}
        for c in getattr(reply, s.field, None) or []:
            cited = [by_id[i] for i in dict.fromkeys(c.cues)]
            if fits(c.text, cited, s.cues):
                claim = Claim(text=f"{s.heading}: {_lead(c.text.strip())}", cues=c.cues)
                out.setdefault(s.field, []).append(claim.sentence)
            else:
                problems.append(
                    f"a claim for {s.field!r} named what {', '.join(c.id for c in cited)} do "
                    "not show; the cues are quoted instead"
                )
                out.setdefault(s.field, []).append(_quoted(s, cited))
    return out, problems


def contrastive(asked: Asked, analysis: AnalysisResult, cues: list[Cue], llm: Any) -> Built:
    """Evidence for each emotion, cited, and the fused ranking as the verdict."""
    x, y = asked.first or "", asked.second or ""
    for_x, for_y = ev.contrast(cues, x, y)
    sides = [
        Side(field=f"for_{x}", heading=f"For {x}", cues=for_x, asks=f"favour {x} over {y}"),
        Side(field=f"for_{y}", heading=f"For {y}", cues=for_y, asks=f"favour {y} over {x}"),
    ]
    written, problems = claims(f"Why {x} and not {y}?", sides, llm)
    parts, llm_parts = [], []
    for side, other in ((sides[0], y), (sides[1], x)):
        if side.field in written:
            parts += written[side.field]
            llm_parts += written[side.field]
        else:
            parts.append(f"No measured cue favours {side.heading[4:]} over {other}.")
    winner, line = ev.contrast_verdict(analysis, x, y)
    parts.append(line)
    shown = analysis.reading.dominant if analysis.reading else None
    if winner and shown in (x, y) and shown != winner:
        parts.append(f"The card names {shown}, but the ranking puts {winner} higher.")
    return Built(
        text=" ".join(parts),
        claims_text=" ".join(llm_parts),
        verdict=winner or "level",
        sides={x: [c.id for c in for_x], y: [c.id for c in for_y]},
        problems=problems,
    )


def _cited_spans(cues: list[Cue], runs: dict[str, list[tuple[float, float]]] | None = None) -> str:
    """'00:00.0-00:04.0 [F4], 00:04.2-00:06.2 [V4]': each cue's span with its citation, or the
    runs of its frames where ``runs`` has them (a clip-wide expression cue)."""
    runs = runs or {}

    def when(c: Cue) -> list[tuple[float, float]]:
        return runs.get(c.id) or [(c.start, c.end)]

    ordered = sorted(cues, key=lambda c: when(c)[0])
    return ", ".join(
        ", ".join(ts(a) if a == b else f"{ts(a)}-{ts(b)}" for a, b in when(c)) + f" [{c.id}]"
        for c in ordered
    )


def _frames(
    analysis: AnalysisResult, asked: Asked, cues: list[Cue]
) -> tuple[Cue | None, list[tuple[float, float]]]:
    """(the face expression cue, runs of its frames where the asked emotion leads)."""
    t = asked.target
    if t is None or "face" not in t.modalities:
        return None, []
    cue = next((c for c in cues if c.modality == "face" and c.name == "expression"), None)
    if cue is None:
        return None, []
    return cue, ev.frame_spans(analysis.face, t.emotions, asked.span)


def yes_no(asked: Asked, analysis: AnalysisResult, cues: list[Cue], llm: Any) -> Built:
    """The cues that show the thing asked about and those against it, with their time spans
    (and the face frames where the asked emotion leads); 'cannot tell' when none bears on it
    (then no model is asked)."""
    t = asked.target
    shown, against = ev.weigh(cues, t, asked.span)
    expression, runs = _frames(analysis, asked, cues)
    if expression is not None and runs:  # its frames show it, whatever its clip-wide mean
        shown = [*shown, expression] if expression not in shown else shown
        against = [c for c in against if c.id != expression.id]
    verdict = ev.verdict(shown, against)
    if t is None or verdict == "cannot tell":
        what = f"'{t.name}'" if t else "this question"
        where = f" between {ts(asked.span[0])} and {ts(asked.span[1])}" if asked.span else ""
        return Built(
            text=f"The cues cannot tell: nothing the analysis measured{where} bears on {what}.",
            verdict="cannot tell",
            sides={"for": [], "against": []},
        )
    name = f"'{t.name}'"
    at = {expression.id: runs} if expression is not None and runs else {}
    if asked.kind == "when":
        opening = (
            f"The cues show {name} at {_cited_spans(shown, at)}."
            if shown
            else f"No measured cue shows {name}; the cues against it hold at "
            f"{_cited_spans(against)}."
        )
    else:
        opening = {
            "yes": f"Yes, the cues show signs of {name} at {_cited_spans(shown, at)}.",
            "no": f"No, the cues speak against {name}: {_cited_spans(against)}.",
            "mixed": f"The cues disagree about {name}: for it {_cited_spans(shown, at)}; "
            f"against it {_cited_spans(against)}.",
        }[verdict]
    sides = [
        Side(field="shows", heading=f"Showing {t.name}", cues=shown, asks=f"show {name}"),
        Side(
            field="against", heading=f"Against {t.name}", cues=against, asks=f"speak against {name}"
        ),
    ]
    written, problems = claims(f"What do the cues show about '{t.name}'?", sides, llm)
    said = [s for side in sides for s in written.get(side.field, [])]
    note = [t.note] if t.note else []
    return Built(
        text=" ".join([opening, *said, *note]),
        claims_text=" ".join(said),
        verdict=verdict,
        sides={"for": [c.id for c in shown], "against": [c.id for c in against]},
        problems=problems,
    )


def _top(probs: dict[str, float], n: int = 3) -> str:
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v:.2f}" for k, v in ranked)


def _reading(r: EmotionReading | None, probs: dict[str, float], what: str) -> str:
    if r is None:
        return "no reading"
    return f"{r.label} (dominant {r.dominant}; {what} {_top(probs)})" if probs else r.label


def counterfactual(
    analysis: AnalysisResult,
    cues: list[Cue],
    modality: Modality,
    after: EmotionReading,
    after_probs: dict[str, float],
    llm: Any,
) -> Built:
    """The reading before and after leaving ``modality`` out, what moved, and what the left-out
    cues had shown (claims citing only them)."""
    before = analysis.reading
    before_probs, what = ev.ranking(analysis)
    if not after_probs or what != "fused probability":
        after_probs, what = dict(after.probabilities), "reading's probability"
        before_probs = dict(before.probabilities) if before else {}
    parts = [
        f"Before: {_reading(before, before_probs, what)}.",
        f"Without the {modality}: {_reading(after, after_probs, what)}.",
    ]
    if before is not None and before.dominant != after.dominant:
        parts.append(f"The dominant emotion changes from {before.dominant} to {after.dominant}.")
    elif before is not None:
        parts.append(f"The dominant emotion stays {after.dominant}.")
    moved = sorted(
        set(before_probs) | set(after_probs),
        key=lambda k: -abs(after_probs.get(k, 0.0) - before_probs.get(k, 0.0)),
    )[:2]
    shifts = [
        f"{k} {before_probs.get(k, 0.0):.2f} to {after_probs.get(k, 0.0):.2f}"
        for k in moved
        if abs(after_probs.get(k, 0.0) - before_probs.get(k, 0.0)) >= 0.01
    ]
    if shifts:
        parts.append(f"Largest changes: {'; '.join(shifts)}.")
    vote = analysis.fusion.votes.get(modality) if analysis.fusion else None
    if vote is not None:
        weight = analysis.fusion.weights.get(modality) if analysis.fusion else None
        w = f" with weight {weight:.2f}" if weight is not None else ""
        parts.append(f"The {modality} had voted {_top(vote.probs, 2)}{w}; that vote is gone.")
    left_out = [c for c in cues if c.modality == modality]
    side = Side(
        field="left_out",
        heading=f"What the {modality} showed",
        cues=left_out,
        asks=f"were measured in the {modality}, now left out",
    )
    written, problems = claims(f"What did the {modality} show?", [side], llm)
    said = written.get("left_out", [])
    changed = before is None or before.dominant != after.dominant
    return Built(
        text=" ".join([*parts, *said]),
        claims_text=" ".join(said),
        verdict=f"{'changed' if changed else 'unchanged'}: {after.label}",
        sides={"left_out": [c.id for c in left_out]},
        problems=problems,
    )
