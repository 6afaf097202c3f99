"""The analysis graph's typed state and its run context.

State holds the run's values (pydantic evidence, cues, readings; the decoded streams in memory
while the tools need them); ``RunContext`` is the run's read-only configuration (settings, an
LLM override, whether to store), passed per run as LangGraph's ``context``. Progress is not
part of either: it comes from LangGraph's stream (``affectlens.agent.run``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from affectlens.agent.fusion import FusedReading
from affectlens.agent.schemas import (
    AnalysisResult,
    Cue,
    EmotionReading,
    Modality,
    VerificationReport,
)
from affectlens.settings import Settings
from affectlens.tools.evidence import Evidence, MediaInfo, Status


def merge(left: dict | None, right: dict | None) -> dict:
    """Reducer: parallel tool branches each add their own key."""
    return {**(left or {}), **(right or {})}


def add_times(left: dict[str, float] | None, right: dict[str, float] | None) -> dict[str, float]:
    """Reducer: a stage that runs twice (reason in the repair loop) adds its seconds up."""
    out = dict(left or {})
    for k, v in (right or {}).items():
        out[k] = round(out.get(k, 0.0) + v, 3)
    return out


class AnalysisState(TypedDict, total=False):
    run_id: str
    path: str
    source: str | None  # absolute path of the analysed file (stored; chat's re-run reopens it)
    without: list[Modality]
    media: MediaInfo
    evidence: Annotated[dict[Modality, Evidence], merge]  # modality -> evidence (None: not run)
    status: dict[Modality, tuple[Status, str]]  # modality -> (status, reason)
    header: str
    cues: list[Cue]
    evidence_dist: dict[str, float]
    fusion: FusedReading | None  # fused votes, then the decision
    knowledge: list[str]  # entry ids
    knowledge_text: list[str]
    raw: Any  # the LLM's last compact reading (affectlens.agent.reason.LLMReading)
    reading: EmotionReading | None
    rounds: int  # reasoning rounds done
    problems: list[str]  # from the last verification
    redo: list[int] | None  # the sentences a repair round writes again (None: all of them)
    seen_problems: Annotated[list[str], operator.add]
    fixed: Annotated[list[str], operator.add]
    verification: VerificationReport
    timings: Annotated[dict[str, float], add_times]  # all but "store" (it writes the record)
    models: Annotated[dict[str, str], merge]
    error: str | None
    result_id: str
    decoded: Any  # affectlens.tools.media.Media from probe: frames and samples, never stored
    result: AnalysisResult  # built once by the store node; what analyze() returns


@dataclass(frozen=True)
class RunContext:
    """Per-run configuration, read-only: settings, an LLM override (tests, or a chat helper
    reusing a loaded model), whether to store the result."""

    settings: Settings
    llm: Any = None
    save: bool = True
