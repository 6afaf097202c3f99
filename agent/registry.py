"""The perception tools, one entry per modality: the one table the graph, chat's rerun and
textualise read (which function measures it, what evidence it returns, which decoded stream
it needs, how its evidence becomes cues)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from affectlens.agent.schemas import MODALITIES, Cue, Modality
from affectlens.agent.textualise import face_cues, scene_cues, speech_cues, voice_cues
from affectlens.tools.evidence import (
    Evidence,
    FaceEvidence,
    SceneEvidence,
    SpeechEvidence,
    ToneEvidence,
)


@dataclass(frozen=True)
class Tool:
    modality: Modality
    function: str  # "module:function", imported on first use (a tool's imports take seconds)
    evidence: type[Evidence]
    needs: Literal["audio", "video"]
    cues: Callable[[Any, float], list[Cue]]  # (evidence, duration in s) -> cues without ids

    def measure(self, media: Any, settings: Any) -> Evidence:
        """Run the tool; an exception becomes failed evidence, so one tool cannot sink a run."""
        t0 = time.perf_counter()
        try:
            module, func = self.function.split(":")
            return getattr(importlib.import_module(module), func)(media, settings)
        except Exception as exc:  # noqa: BLE001
            return self.evidence(
                status="failed",
                reason=f"{type(exc).__name__}: {exc}"[:300],
                seconds=round(time.perf_counter() - t0, 3),
            )


TOOLS: dict[Modality, Tool] = {
    t.modality: t
    for t in (
        Tool("face", "affectlens.tools.face:analyze_face", FaceEvidence, "video", face_cues),
        Tool(
            "speech",
            "affectlens.tools.asr:transcribe",
            SpeechEvidence,
            "audio",
            lambda ev, _duration: speech_cues(ev),
        ),
        Tool("voice", "affectlens.tools.tone:analyze_tone", ToneEvidence, "audio", voice_cues),
        Tool("scene", "affectlens.tools.scene:match_scene", SceneEvidence, "video", scene_cues),
    )
}
assert tuple(TOOLS) == MODALITIES, "one tool per modality, in the modalities' order"
