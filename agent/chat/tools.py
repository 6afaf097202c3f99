"""The chat's tools: typed arguments in, a compact ``ToolResult`` out.

The LLM never calls code directly: it fills ``ToolChoice`` (a JSON schema small models follow
reliably), ``run_tool`` validates every argument (modality names, times in the clip, AU codes or
short feature names; no paths, no free commands) and runs one of:

- ``lookup``: the cues of a modality and/or a time range;
- ``rerun``: a perception tool again on a time window at a higher frame rate (new cues X1, X2 ...);
- ``without``: a counterfactual reading that leaves one modality out (``agent.run.reason_again``);
- ``explain``: an action unit or prosody feature from the knowledge base;
- ``similar``: past analyses nearest to this one (chromadb);
- ``answer``: no tool.

A tool never raises into the graph: a bad argument or a failure becomes a result that says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from affectlens.agent.schemas import MODALITIES, AnalysisResult, Cue, EmotionReading, Modality
from affectlens.agent.textualise import cue_line, ts
from affectlens.settings import Settings

ToolName = Literal["lookup", "rerun", "without", "explain", "similar", "answer"]
TOOL_NAMES: tuple[str, ...] = ToolName.__args__  # type: ignore[attr-defined]
NEW_CUE_PREFIX = "X"  # cues measured in the chat, so they never collide with F1, S1 ...
POINT_TOLERANCE_S = 0.5  # "at 0:04" matches cues within half a second
MAX_LOOKUP_CUES = 12
RERUN_FRAME_RATE = 8.0  # frames per second when looking closer (capped by settings.max_frames)
MAX_RERUN_S = 10.0  # longest window a re-run measures
SIMILAR_K = 3
_TERM = re.compile(r"^[A-Za-z][A-Za-z0-9 _+.-]{0,39}$")
_AU = re.compile(r"^\s*AU\s*0*(\d{1,2})\s*$", re.I)


class ToolChoice(BaseModel):
    """What the LLM fills to pick a tool (order matters: the tool first, then its arguments)."""

    tool: ToolName
    modality: Literal["face", "speech", "voice", "scene", "any"] = "any"
    start: float | None = Field(default=None, description="seconds from the clip start")
    end: float | None = Field(default=None, description="seconds from the clip start")
    term: str | None = Field(default=None, description="AU code like AU12, or a voice feature")


class ToolResult(BaseModel):
    """What a tool returns: a summary for the prompt and the UI, plus structured extras."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool = True
    summary: str = ""
    cues: list[Cue] = Field(default_factory=list, description="Cues found or newly measured.")
    new_cues: bool = False
    counterfactual: EmotionReading | None = None
    without: Modality | None = None
    counterfactual_cues: list[str] = Field(default_factory=list)
    counterfactual_probs: dict[str, float] = Field(
        default_factory=dict, description="Fused probabilities without the modality's vote."
    )


# argument helpers --------------------------------------------------------------------------------
_CLOCK = re.compile(r"(?<![\d.])(\d{1,2}):(\d{1,2}(?:\.\d+)?)(?![\d:])")
_SECONDS = re.compile(r"(?<![\d.:])(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)\b", re.I)
_MODALITY_WORDS: dict[Modality, tuple[str, ...]] = {
    # Only words that name one modality: 'say' / 'text' / 'audio' also occur in questions about
    # another one ("what would you say without the face?") and made them look ambiguous.
    "face": (
        "face",
        "faces",
        "facial",
        "expression",
        "expressions",
        "smile",
        "smiling",
        "brow",
        "brows",
        "eyes",
        "mouth",
        "frown",
        "frowning",
    ),
    "speech": ("transcript", "words", "wording", "speech", "spoken"),
    "voice": ("voice", "voices", "prosody", "prosodic", "tone", "pitch", "loudness", "intonation"),
    "scene": ("scene", "background", "setting", "surroundings"),
}
# "what was said", "what did she say", "what they are saying": the words, not the voice.
# (Not "what you said": that is about the reading.)
_WHO = r"(?:he|she|they|someone|somebody|people|the\s+\w+)"
_SAID = re.compile(
    rf"\bwhat\s+(?:(?:was|is|were|gets|got)\s+(?:said|spoken)"
    rf"|(?:did|does|do)\s+{_WHO}\s+say"
    rf"|{_WHO}\s+(?:(?:is|are|was|were)\s+)?(?:said|says|saying))\b",
    re.I,
)


def times_in(text: str) -> list[float]:
    """Explicit times a user wrote, in order: '0:04' -> 4.0, '1:02.5' -> 62.5, '3 s' -> 3.0."""
    found: list[tuple[int, float]] = []
    for m in _CLOCK.finditer(text):
        found.append((m.start(), int(m.group(1)) * 60 + float(m.group(2))))
    for m in _SECONDS.finditer(text):
        found.append((m.start(), float(m.group(1))))
    return [t for _, t in sorted(found)]


def modality_in(text: str) -> Modality | None:
    """The one modality a question names ('ignore the voice' -> voice, 'what was said' ->
    speech); None when it names none or several."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    hits = [
        m
        for m, keys in _MODALITY_WORDS.items()
        if words.intersection(keys) or (m == "speech" and _SAID.search(text))
    ]
    return hits[0] if len(hits) == 1 else None


def _span(choice: ToolChoice, question: str, duration: float) -> tuple[float, float] | None:
    """The time range asked for, clamped to the clip; the user's own times win over the LLM's
    (small models turn '0:04' into 0.04). None when no time was given."""
    said = times_in(question)
    given = [t for t in (choice.start, choice.end) if t is not None]
    if said:
        start, end = said[0], (said[1] if len(said) > 1 else said[0])
    elif given:
        start, end = given[0], given[-1]
    else:
        return None
    start, end = sorted((float(start), float(end)))
    limit = max(duration, 0.0)
    return max(0.0, min(start, limit)), max(0.0, min(end, limit))


def _modality(choice: ToolChoice, question: str) -> Modality | None:
    """The modality a tool acts on: the one the user named wins over the LLM's (small models
    map 'ignore the voice' to speech); the LLM's choice only fills in when the question names
    none or several."""
    named = modality_in(question)
    if named is not None:
        return named
    if choice.modality in MODALITIES:
        return choice.modality
    return None


def next_cue_ids(existing: list[Cue], n: int) -> list[str]:
    """X ids continuing after the highest one this thread already has."""
    used = [
        int(c.id[1:]) for c in existing if c.id.startswith(NEW_CUE_PREFIX) and c.id[1:].isdigit()
    ]
    first = max(used, default=0) + 1
    return [f"{NEW_CUE_PREFIX}{i}" for i in range(first, first + n)]


def _lines(cues: list[Cue]) -> str:
    return "\n".join(cue_line(c) for c in cues)


# tools ------------------------------------------------------------------------------------------
def lookup(
    cues: list[Cue], modality: Modality | None, span: tuple[float, float] | None
) -> ToolResult:
    """Cues of one modality (or all) overlapping a time range (or the whole clip)."""
    args: dict[str, Any] = {
        "modality": modality or "any",
        "start": span[0] if span else None,
        "end": span[1] if span else None,
    }
    found = [c for c in cues if modality is None or c.modality == modality]
    if span is not None:
        lo, hi = span[0] - POINT_TOLERANCE_S, span[1] + POINT_TOLERANCE_S
        found = [c for c in found if c.start <= hi and c.end >= lo]
    where = (
        f" at {ts(span[0])}"
        if span and span[0] == span[1]
        else (f" between {ts(span[0])} and {ts(span[1])}" if span else "")
    )
    what = f"{modality} cues" if modality else "cues"
    if not found:
        return ToolResult(
            tool="lookup", arguments=args, summary=f"No {what}{where}: nothing was measured there."
        )
    found = found[:MAX_LOOKUP_CUES]
    return ToolResult(
        tool="lookup",
        arguments=args,
        cues=found,
        summary=f"{len(found)} {what}{where}:\n{_lines(found)}",
    )


def _source(result: AnalysisResult) -> Path | None:
    """The analysed file, only as the stored record names it (a user never gives a path)."""
    if not result.source:
        return None
    path = Path(result.source)
    if not path.is_file() or path.name != result.media.file_name:
        return None
    return path


def rerun(
    result: AnalysisResult,
    settings: Settings,
    modality: Modality | None,
    span: tuple[float, float] | None,
    existing: list[Cue],
) -> ToolResult:
    """Measure one modality again on a window at ``RERUN_FRAME_RATE``; cues get fresh X ids."""
    from affectlens.agent.registry import TOOLS
    from affectlens.tools.media import MediaError, load

    duration = result.media.duration_s
    if modality is None:
        return ToolResult(
            tool="rerun",
            ok=False,
            summary=("Say which modality to measure again: face, speech, voice or scene."),
        )
    if span is None or span[1] - span[0] < 0.5:
        centre = span[0] if span else duration / 2
        span = (max(0.0, centre - 1.0), min(duration, centre + 1.0))
    start, end = span[0], min(span[1], span[0] + MAX_RERUN_S)
    args = {"modality": modality, "start": round(start, 2), "end": round(end, 2)}
    path = _source(result)
    if path is None:
        return ToolResult(
            tool="rerun",
            arguments=args,
            ok=False,
            summary=(
                "The original file of this analysis is not available any more, so nothing can be "
                "measured again; the stored cues are all there is."
            ),
        )
    tool = TOOLS[modality]
    rate = None
    try:  # decode only the window, not the whole clip at RERUN_FRAME_RATE
        media = load(path, settings, frame_rate=RERUN_FRAME_RATE, window=(start, end))
        rate = media.info.frame_rate if tool.needs == "video" else None
    except MediaError as exc:
        return ToolResult(
            tool="rerun", arguments=args, ok=False, summary=f"Could not re-run: {exc}"
        )
    except Exception as exc:  # noqa: BLE001 - a broken decoder must not end the chat
        return ToolResult(
            tool="rerun",
            arguments=args,
            ok=False,
            summary=f"Could not re-run: {type(exc).__name__}: {exc}"[:300],
        )
    ev = tool.measure(media, settings)  # a broken tool comes back as failed evidence
    how = f" at {rate:g} frames/s" if rate else ""
    if ev.status != "ok":
        return ToolResult(
            tool="rerun",
            arguments=args,
            ok=False,
            summary=(
                f"The {modality} tool found nothing usable in {ts(start)}-{ts(end)}{how}: "
                f"{ev.status} ({ev.reason or 'no reason given'})."
            ),
        )
    fresh = tool.cues(ev, end - start)
    # Clip-wide cues of a window start at 0: move them to the window's place in the clip.
    fixed = []
    for c, new_id in zip(fresh, next_cue_ids(existing, len(fresh))):
        if c.start < start:
            c = c.model_copy(update={"start": c.start + start, "end": min(c.end + start, end)})
        fixed.append(c.model_copy(update={"id": new_id}))
    if not fixed:
        return ToolResult(
            tool="rerun",
            arguments=args,
            summary=(
                f"The {modality} tool ran on {ts(start)}-{ts(end)}{how} and found nothing notable."
            ),
        )
    return ToolResult(
        tool="rerun",
        arguments=args,
        cues=fixed,
        new_cues=True,
        summary=(
            f"Measured the {modality} again on {ts(start)}-{ts(end)}{how}; new cues:\n"
            f"{_lines(fixed)}"
        ),
    )


def without(
    result: AnalysisResult, settings: Settings, modality: Modality | None, llm: Any = None
) -> ToolResult:
    """Re-reason on the stored evidence leaving one modality out: a counterfactual reading."""
    from affectlens.agent.run import reason_again

    present = sorted({c.modality for c in result.cues}, key=MODALITIES.index)
    if modality is None or modality not in present:
        return ToolResult(
            tool="without",
            ok=False,
            arguments={"modality": modality},
            summary=(
                f"Say which modality to leave out; this analysis has cues from: "
                f"{', '.join(present) or 'none'}."
            ),
        )
    again = reason_again(result, settings, without=[modality], llm=llm)
    r = again.reading
    if r is None:
        return ToolResult(
            tool="without",
            ok=False,
            arguments={"modality": modality},
            without=modality,
            summary=(f"Leaving out the {modality} gave no reading: {again.error}."),
        )
    original = result.reading.label if result.reading else "none"
    # The new reading's explanation is not repeated: the answer compares the two readings
    # (agent.chat.replies.counterfactual), it does not retell one of them.
    return ToolResult(
        tool="without",
        arguments={"modality": modality},
        without=modality,
        counterfactual=r,
        counterfactual_cues=[c.id for c in again.cues],
        counterfactual_probs=dict(again.fusion.probs) if again.fusion else {},
        summary=(
            f"Original reading: {original}. Without the {modality} cues: {r.label} "
            f"(valence {r.valence:+.2f}, arousal {r.arousal:+.2f}, confidence "
            f"{r.confidence:.2f})."
        ),
    )


def explain(term: str | None, settings: Settings) -> ToolResult:
    """An AU code (exact entry) or a short feature name (nearest entries) from the knowledge
    base; anything that is not such a term is refused, never used as a path or a query string
    beyond the embedding."""
    from affectlens.agent import knowledge as kb

    if not term or not _TERM.match(term.strip()):
        return ToolResult(
            tool="explain",
            ok=False,
            arguments={"term": term},
            summary=(
                "Name an action unit (like AU12) or a voice feature (like pitch or jitter) to "
                "explain."
            ),
        )
    term = term.strip()
    au = _AU.match(term)
    if au:
        code = f"AU{int(au.group(1))}"
        entries = {e.id: e for e in kb.load_entries()}
        entry = entries.get(f"au-{code.lower()}")
        if entry is None:
            return ToolResult(
                tool="explain",
                ok=False,
                arguments={"term": code},
                summary=(f"{code} is not in the knowledge base."),
            )
        return ToolResult(
            tool="explain",
            arguments={"term": code},
            summary=f"{entry.title}: {entry.text} (source: {entry.source})",
        )
    hits = kb.retrieve([term], settings, k=2)
    if not hits:
        return ToolResult(
            tool="explain",
            ok=False,
            arguments={"term": term},
            summary=f"Nothing in the knowledge base about {term!r}.",
        )
    return ToolResult(
        tool="explain", arguments={"term": term}, summary="\n".join(f"- {h.text}" for h in hits)
    )


def similar(result: AnalysisResult, settings: Settings) -> ToolResult:
    """Past analyses nearest to this one's summary (chromadb memory)."""
    from affectlens.agent import knowledge as kb

    hits = kb.similar_analyses(
        kb.analysis_summary(result), settings, k=SIMILAR_K, exclude=result.id
    )
    if not hits:
        return ToolResult(tool="similar", summary="No other stored analysis to compare with.")
    lines = [f"- {i}: {label or 'no label'} (distance {d:.2f})" for i, label, d in hits]
    return ToolResult(
        tool="similar",
        arguments={"k": SIMILAR_K},
        summary="Most similar past analyses:\n" + "\n".join(lines),
    )


def run_tool(
    choice: ToolChoice,
    question: str,
    result: AnalysisResult,
    settings: Settings,
    thread_cues: list[Cue],
    llm: Any = None,
) -> ToolResult:
    """Validate the LLM's choice against the analysis and run it; never raises."""
    cues = [*result.cues, *thread_cues]
    modality = _modality(choice, question)
    try:
        if choice.tool == "lookup":
            return lookup(cues, modality, _span(choice, question, result.media.duration_s))
        if choice.tool == "rerun":
            return rerun(
                result, settings, modality, _span(choice, question, result.media.duration_s), cues
            )
        if choice.tool == "without":
            return without(result, settings, modality, llm)
        if choice.tool == "explain":
            return explain(choice.term, settings)
        if choice.tool == "similar":
            return similar(result, settings)
    except Exception as exc:  # noqa: BLE001 - a tool failure is reported, not raised
        return ToolResult(
            tool=choice.tool,
            ok=False,
            summary=f"The {choice.tool} tool failed: {type(exc).__name__}: {exc}"[:400],
        )
    return ToolResult(tool="answer")
