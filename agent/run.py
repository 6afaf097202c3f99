"""Public entry points: ``analyze`` a file, ``reason_again`` on stored evidence.

>>> result = analyze("clip.mp4", on_stage=lambda stage, status, s: print(stage, status, s))
>>> result.reading.label, result.verification.grounded
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from affectlens.agent.graph import build_graph
from affectlens.agent.schemas import MODALITIES, AnalysisResult, Modality
from affectlens.agent.state import RunContext, StageCallback
from affectlens.settings import Settings, get_settings


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


def analyze(
    path: str | Path,
    settings: Settings | None = None,
    *,
    on_stage: StageCallback | None = None,
    without: Iterable[Modality] = (),
    save: bool = True,
    llm: Any = None,
) -> AnalysisResult:
    """Analyse one video, audio file or photo and (by default) store the result.

    ``on_stage(stage, "start" | "done" | "failed", seconds)`` reports progress; ``without``
    leaves modalities out (robustness evals, counterfactuals); ``llm`` replaces the configured
    LLM (an object with ``chat``). Raises ``tools.media.MediaError`` for a file that cannot be
    analysed; every later failure is recorded in the result instead.
    """
    settings = settings or get_settings()
    ctx = RunContext(settings=settings, on_stage=on_stage, llm=llm, save=save)
    state = build_graph("probe").invoke(
        {
            "run_id": uuid.uuid4().hex,
            "path": str(path),
            "source": str(Path(path).resolve()),
            "without": _without(without),
            "result_id": new_id(path),
            "rounds": 0,
        },
        context=ctx,
    )
    return state["result"]


def reason_again(
    result: AnalysisResult,
    settings: Settings | None = None,
    *,
    without: Iterable[Modality] = (),
    on_stage: StageCallback | None = None,
    save: bool = False,
    llm: Any = None,
) -> AnalysisResult:
    """Re-run textualise -> retrieve -> reason -> verify on a stored result's evidence, leaving
    out ``without`` (the chat's "what if you ignore the voice?"). Perception is not re-run.
    Returns a new result (id ``<old id>-without-<modalities>``), not stored unless ``save``."""
    settings = settings or get_settings()
    skip = _without(without)
    suffix = "-without-" + "-".join(skip) if skip else "-again"
    ctx = RunContext(settings=settings, on_stage=on_stage, llm=llm, save=save)
    evidence = {m: getattr(result, m) for m in MODALITIES if getattr(result, m) is not None}
    state = build_graph("textualise").invoke(
        {
            "run_id": uuid.uuid4().hex,
            "path": result.media.file_name,
            "without": skip,
            "source": result.source,
            "media": result.media,
            "evidence": evidence,
            "result_id": f"{result.id}{suffix}"[:128],
            "rounds": 0,
            "models": {m: v for m, v in result.models.items() if m in MODALITIES},
        },
        context=ctx,
    )
    return state["result"]
