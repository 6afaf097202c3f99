"""What the tools return: pydantic evidence with timestamps (seconds from the clip's start).

This module is the contract between the tools and the agent. Every evidence object says
whether its modality is usable (``status``), why not (``reason``), which model produced it and
how long it took.
"""

from __future__ import annotations

import time
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from affectlens.taxonomy import BASIC

Status = Literal["ok", "missing", "failed"]

# The basic emotions every witness votes over: the domain vocabulary's list, under the name the
# tools' contract has always used.
BASIC_EMOTIONS: tuple[str, ...] = BASIC


class EmotionVote(BaseModel):
    """One modality as a witness: a calibrated distribution over ``BASIC_EMOTIONS`` and how far
    to trust it on this clip (share of frames with a face, voiced share, speech language
    probability...). Fusion (agent) combines votes; a tool only reports its own."""

    probs: dict[str, float] = Field(description="basic emotion -> probability (sums to 1).")
    reliability: float = Field(default=1.0, ge=0, le=1)
    model: str = Field(default="", description="Which scorer (and calibration) produced it.")


class Evidence(BaseModel):
    status: Status = "ok"
    reason: str | None = Field(default=None, description="Why the modality is missing or failed.")
    model: str = ""
    model_version: str = ""
    device: str = "cpu"
    seconds: float = 0.0

    def finished(self, started: float, **update) -> Self:
        """A copy with ``update`` applied and ``seconds`` measured from ``started``
        (``time.perf_counter()`` when the tool began): every exit of a tool is timed."""
        out = self.model_copy(update=update)
        out.seconds = round(time.perf_counter() - started, 3)
        return out


# media ---------------------------------------------------------------------------------------
class MediaInfo(BaseModel):
    file_name: str
    size_bytes: int
    container: str = ""
    duration_s: float = 0.0
    has_audio: bool = False
    has_video: bool = False
    is_image: bool = False
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    frames_sampled: int = 0
    frame_rate: float | None = Field(default=None, description="Sampling rate actually used.")
    warnings: list[str] = Field(
        default_factory=list,
        description="Problems met while decoding (truncated file, undecodable stream).",
    )


# speech --------------------------------------------------------------------------------------
class Word(BaseModel):
    start: float
    end: float
    text: str
    probability: float


class Segment(BaseModel):
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] = []


class SpeechEvidence(Evidence):
    language: str | None = None
    language_probability: float | None = None
    language_note: str | None = Field(
        default=None, description="How the language was chosen (guess, probability, re-decode)."
    )
    segments: list[Segment] = []

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments).strip()


# face ----------------------------------------------------------------------------------------
class Box(BaseModel):
    """Face box in pixels of the sampled frame."""

    x: float
    y: float
    w: float
    h: float
    confidence: float


class FaceFrame(BaseModel):
    """The dominant face in one sampled frame (None fields when no face)."""

    t: float
    faces: int = 0
    box: Box | None = None
    aus: dict[str, float] = Field(default_factory=dict, description="AU code -> intensity 0-1.")
    expressions: dict[str, float] = Field(
        default_factory=dict, description="basic emotion -> probability (sums to 1)."
    )


class AUEvent(BaseModel):
    """An action unit active over a span: onset, peak and offset times."""

    au: str  # "AU12"
    name: str  # "lip corner puller"
    onset: float
    peak: float
    offset: float
    peak_intensity: float
    mean_intensity: float


class FaceEvidence(Evidence):
    backend: str = ""
    frames: list[FaceFrame] = []
    max_faces: int = 0
    au_events: list[AUEvent] = []
    expression_mean: dict[str, float] = Field(default_factory=dict)
    dominant_expression: str | None = None
    vote: EmotionVote | None = Field(
        default=None,
        description="Calibrated expression probabilities as a witness (affectlens.tools.face).",
    )


# scene ---------------------------------------------------------------------------------------
class LabelScore(BaseModel):
    label: str
    score: float


class SceneFrame(BaseModel):
    t: float
    emotions: list[LabelScore] = []
    contexts: list[LabelScore] = []


class SceneEvidence(Evidence):
    frames: list[SceneFrame] = []
    emotion_top: list[LabelScore] = []
    context_top: list[LabelScore] = []


# voice ---------------------------------------------------------------------------------------
class ToneWindow(BaseModel):
    """Prosody over one window of voiced audio."""

    start: float
    end: float
    pitch_hz: float | None = None
    loudness: float | None = None  # eGeMAPS loudness (sone)
    arousal: float | None = None


class ToneFeatures(BaseModel):
    """Clip-level prosody and voice quality, units in the names. One typed model shared by
    tools.tone (writes) and agent.textualise (reads): a misspelt name is an error on both
    sides, not a silently missing cue. None: not measurable on this clip."""

    model_config = ConfigDict(extra="forbid")

    # Praat (parselmouth)
    voiced_s: float | None = None
    voiced_share: float | None = Field(default=None, description="voiced / speech span, 0-1.")
    pitch_mean_hz: float | None = None
    pitch_median_hz: float | None = None
    pitch_p5_hz: float | None = None
    pitch_p95_hz: float | None = None
    pitch_sd_st: float | None = Field(default=None, description="F0 SD in semitones.")
    jitter_local_pct: float | None = None
    shimmer_local_pct: float | None = None
    hnr_db: float | None = None
    syllables: float | None = None
    speech_rate_syl_s: float | None = None
    articulation_rate_syl_s: float | None = None
    pause_count: float | None = None
    pause_total_s: float | None = None
    pause_ratio: float | None = None
    speaking_time_s: float | None = None
    # openSMILE eGeMAPSv02 functionals
    pitch_range_st: float | None = Field(default=None, description="F0 P20-P80, semitones.")
    pitch_mean_st: float | None = None
    pitch_variability: float | None = None
    loudness_mean_sone: float | None = None
    loudness_variability: float | None = None
    loudness_peaks_per_s: float | None = None
    voiced_segments_per_s: float | None = None
    mean_voiced_segment_s: float | None = None
    mean_unvoiced_segment_s: float | None = None
    hammarberg_index_db: float | None = None
    alpha_ratio_db: float | None = None
    sound_level_db: float | None = None
    egemaps_jitter_local: float | None = None
    egemaps_shimmer_db: float | None = None
    egemaps_hnr_db: float | None = None
    # where the speech is, in clip time
    speech_start_s: float | None = None
    speech_end_s: float | None = None

    def present(self) -> dict[str, float]:
        """The measured values only (what the rules in affectlens.tools.tone read)."""
        return self.model_dump(exclude_none=True)


class ToneEvidence(Evidence):
    features: ToneFeatures | None = Field(
        default=None, description="Clip-level prosody; None when the voice is missing."
    )
    windows: list[ToneWindow] = []
    arousal: float | None = Field(default=None, ge=-1, le=1)
    valence: float | None = Field(default=None, ge=-1, le=1)
    rationale: list[str] = Field(
        default_factory=list, description="Which rules set arousal/valence."
    )
    emotion_scores: list[LabelScore] = Field(
        default_factory=list, description="Speech-emotion model output, when one is configured."
    )
    vote: EmotionVote | None = Field(
        default=None,
        description="affectlens.tools.voice_emotion's 7-class vote; reliability from the "
        "voiced share.",
    )
