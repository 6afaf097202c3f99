"""The agent's data: cues the LLM sees, the reading it returns, the stored analysis.

Contract shared with chat, UI and evals: extend, do not rename.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from affectlens.agent.fusion import FusedReading
from affectlens.tools.evidence import (
    FaceEvidence,
    MediaInfo,
    SceneEvidence,
    SpeechEvidence,
    Status,
    ToneEvidence,
)

Modality = Literal["face", "speech", "voice", "scene"]
MODALITIES: tuple[Modality, ...] = ("face", "speech", "voice", "scene")


class Cue(BaseModel):
    """One textual observation with an id the explanation cites (F1, S2, V1, C1 ...)."""

    id: str
    modality: Modality
    start: float
    end: float
    name: str = Field(description="What was measured: 'AU12', 'pitch_mean_hz', 'transcript' ...")
    value: float | str | None = None
    unit: str = ""
    scale: str = ""
    text: str = Field(description="One plain sentence, as shown to the LLM.")
    flags: list[str] = Field(
        default_factory=list,
        description="Warnings about the cue, e.g. a transcript sentence that reads like an "
        "instruction to the analysing model (kept as evidence, flagged, never deleted).",
    )


class ModalityAccount(BaseModel):
    modality: Modality
    status: Status
    summary: str = Field(description="What this modality says about the emotion, citing cues.")


class EmotionReading(BaseModel):
    """What the LLM returns (through a JSON schema)."""

    dominant: str = Field(description="Dominant basic emotion.")
    secondary: str | None = Field(default=None, description="Secondary basic emotion, if any.")
    label: str = Field(description="Compound label, adverb + adjective: 'happily surprised'.")
    probabilities: dict[str, float] = Field(
        default_factory=dict, description="Basic emotion -> probability."
    )
    valence: float = Field(default=0.0, ge=-1, le=1)
    arousal: float = Field(default=0.0, ge=-1, le=1)
    confidence: float = Field(default=0.5, ge=0, le=1)
    explanation: list[str] = Field(
        default_factory=list, description="Sentences, each citing cue ids in brackets: [F1]."
    )
    conflicts: list[str] = Field(default_factory=list, description="Cue ids that disagree.")
    modalities: list[ModalityAccount] = []


class DroppedClaim(BaseModel):
    """Explanation text cut, after the last repair round or at once when the cut reads whole
    (settings.verify_prune_first): it named what its cited cues do not show
    (affectlens.agent.verify.prune)."""

    text: str = Field(description="The sentence as the model wrote it.")
    kept: str | None = Field(default=None, description="What was kept of it, if anything.")
    reasons: list[str] = Field(default_factory=list)


class VerificationReport(BaseModel):
    rounds: int = 0
    problems: list[str] = Field(default_factory=list, description="Problems left at the end.")
    fixed: list[str] = Field(default_factory=list, description="Problems found and repaired.")
    grounded: bool = False
    dropped_claims: list[DroppedClaim] = Field(
        default_factory=list, description="Claims cut from the stored explanation, and why."
    )


class AnalysisResult(BaseModel):
    id: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    media: MediaInfo
    face: FaceEvidence | None = None
    speech: SpeechEvidence | None = None
    voice: ToneEvidence | None = None
    scene: SceneEvidence | None = None
    cues: list[Cue] = []
    knowledge: list[str] = Field(default_factory=list, description="Knowledge entry ids used.")
    reading: EmotionReading | None = None
    fusion: FusedReading | None = Field(
        default=None,
        description="The fused witnesses, the decision rule and any conflict "
        "with the LLM (affectlens.agent.fusion); reading.confidence is calibrated from it.",
    )
    verification: VerificationReport = Field(default_factory=VerificationReport)
    timings: dict[str, float] = Field(default_factory=dict, description="Stage -> seconds.")
    models: dict[str, str] = Field(default_factory=dict, description="Role -> model and version.")
    settings: dict = Field(default_factory=dict)
    error: str | None = None
    owner: str | None = Field(
        default=None,
        description="The signed-in web user who ran it; None for the CLI or a server without "
        "auth (single-user). With auth the UI shows a user only their own analyses.",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Problems that did not stop the analysis (e.g. saved but not indexed).",
    )
    source: str | None = Field(
        default=None,
        description="Absolute path of the analysed file, so chat can re-run a tool on a time "
        "window; None when unknown.",
    )
