"""Public entry points: ``analyze`` a file, ``reason_again`` on stored evidence, each also as a
stream of stage events.

>>> result = analyze("clip.mp4", on_stage=lambda stage, status, s: print(stage, status, s))
>>> result.reading.label, result.verification.grounded
>>> for item in analyze_stream("clip.mp4"):  # StageEvent ..., then the AnalysisResult
...     print(item)

Progress is LangGraph's own ``stream_mode="tasks"``: an event when a node's task starts and
one with its writes (or its error) when it ends. The tool nodes run as parallel branches of one
superstep, so their events interleave.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from affectlens.agent.graph import build_graph
from affectlens.agent.schemas import MODALITIES, AnalysisResult, Modality
from affectlens.agent.state import RunContext
from affectlens.settings import Settings, get_settings

StageCallback = Callable[[str, str, float], None]


@dataclass(frozen=True)
class StageEvent:
    """One graph node's progress. ``seconds`` is 0.0 at "start", else the stage's duration: the
    node's own timing (the ``timings`` it writes), or the time since its start when it raised.
    A tool whose evidence came back failed (the tool caught its own error) reports "failed"; one
    that had nothing to measure (no face, no sound, no model installed) "missing", with the
    tool's ``reason``."""

    stage: str
    status: Literal["start", "done", "failed", "missing"]
    seconds: float
    reason: str = ""


Streamed = StageEvent | AnalysisResult


def stream_stages(graph: Any, inputs: dict, context: RunContext) -> Iterator[Streamed]:
    """Run a compiled analysis graph, yielding a ``StageEvent`` as each node starts and ends,
    then the result its store node built. A node's exception is reported "failed", then
    propagates (probe's MediaError)."""
    started: dict[str, float] = {}  # task id -> start (a node that runs twice has two tasks)
    state: dict = {}
    for mode, chunk in graph.stream(inputs, context=context, stream_mode=["tasks", "values"]):
        if mode == "values":  # the state after each superstep; the last is the final state
            state = chunk
            continue
        name = chunk["name"]
        if "result" not in chunk:  # a task starts
            started[chunk["id"]] = time.perf_counter()
            yield StageEvent(name, "start", 0.0)
            continue
        elapsed = time.perf_counter() - started.pop(chunk["id"], time.perf_counter())
        if chunk["error"] is not None:
            yield StageEvent(name, "failed", elapsed)
            continue  # the stream raises it next
        update = chunk["result"]
        seconds = (update.get("timings") or {}).get(name, elapsed)
        ev = (update.get("evidence") or {}).get(name) if name in MODALITIES else None
        if ev is not None and ev.status in ("failed", "missing"):
            yield StageEvent(name, ev.status, seconds, ev.reason or "")
        else:
            yield StageEvent(name, "done", seconds)
    yield state["result"]


def until_result(
    stream: Iterable[Streamed], on_stage: StageCallback | None = None
) -> AnalysisResult:
    """Drain a stage stream, passing each event to ``on_stage(stage, status, seconds)``."""
    for item in stream:
        if isinstance(item, AnalysisResult):
            return item
        if on_stage:
            on_stage(item.stage, item.status, item.seconds)
    raise RuntimeError("the analysis graph ended without a result")


def new_id(path: str | Path) -> str:
    """Sortable and readable: '20261130-102233-clip-1a2b3c'."""
    stem = "".join(ch if ch.isalnum() else "-" for ch in Path(path).stem)[:32].strip("-")
    now = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{now}-{stem or 'media'}-{uuid.uuid4().hex[:6]}"


def _without(without: Iterable[str]) -> list[Modality]:
    out = []
    for m in without:
        if m not in MODALITIES:
            raise ValueError(f"unknown modality {m!r}; choose from {', '.join(MODALITIES)}")
        out.append(m)
    return out


def analyze_stream(
    path: str | Path,
    settings: Settings | None = None,
    *,
    without: Iterable[Modality] = (),
    save: bool = True,
    llm: Any = None,
) -> Iterator[Streamed]:
    """Analyse one video, audio file or photo and (by default) store the result, yielding a
    ``StageEvent`` per stage start and end, then the ``AnalysisResult``.

    ``without`` leaves modalities out (robustness evals, counterfactuals; an unknown one raises
    ValueError here, before anything runs); ``llm`` replaces the configured LLM (an object with
    ``chat``). Iterating raises ``tools.media.MediaError`` for a file that cannot be analysed;
    every later failure is recorded in the result instead.
    """
    settings = settings or get_settings()
    inputs = {
        "run_id": uuid.uuid4().hex,
        "path": str(path),
        "source": str(Path(path).resolve()),
        "without": _without(without),
        "result_id": new_id(path),
        "rounds": 0,
    }
    context = RunContext(settings=settings, llm=llm, save=save)
    return stream_stages(build_graph("probe"), inputs, context)


def analyze(
    path: str | Path,
    settings: Settings | None = None,
    *,
    on_stage: StageCallback | None = None,
    without: Iterable[Modality] = (),
    save: bool = True,
    llm: Any = None,
) -> AnalysisResult:
    """``analyze_stream`` run to its result; ``on_stage(stage, "start" | "done" | "failed",
    seconds)`` sees each stage event."""
    stream = analyze_stream(path, settings, without=without, save=save, llm=llm)
    return until_result(stream, on_stage)


def reason_again_stream(
    result: AnalysisResult,
    settings: Settings | None = None,
    *,
    without: Iterable[Modality] = (),
    save: bool = False,
    llm: Any = None,
) -> Iterator[Streamed]:
    """Re-run textualise -> retrieve -> reason -> verify on a stored result's evidence, leaving
    out ``without`` (the chat's "what if you ignore the voice?"), yielding stage events, then
    the new result (id ``<old id>-without-<modalities>``, not stored unless ``save``).
    Perception is not re-run."""
    settings = settings or get_settings()
    skip = _without(without)
    suffix = "-without-" + "-".join(skip) if skip else "-again"
    evidence = {m: getattr(result, m) for m in MODALITIES if getattr(result, m) is not None}
    inputs = {
        "run_id": uuid.uuid4().hex,
        "path": result.media.file_name,
        "without": skip,
        "source": result.source,
        "media": result.media,
        "evidence": evidence,
        "result_id": f"{result.id}{suffix}"[:128],
        "rounds": 0,
        "models": {m: v for m, v in result.models.items() if m in MODALITIES},
    }
    context = RunContext(settings=settings, llm=llm, save=save)
    return stream_stages(build_graph("textualise"), inputs, context)


def reason_again(
    result: AnalysisResult,
    settings: Settings | None = None,
    *,
    without: Iterable[Modality] = (),
    on_stage: StageCallback | None = None,
    save: bool = False,
    llm: Any = None,
) -> AnalysisResult:
    """``reason_again_stream`` run to its result, passing stage events to ``on_stage``."""
    stream = reason_again_stream(result, settings, without=without, save=save, llm=llm)
    return until_result(stream, on_stage)
