"""Speech: faster-whisper transcript with segment and word timestamps, language, probabilities.

The embedded default (``asr_model = "whisper-base"``) is the model assembled from PyPI packages
into ``settings.model_dir``; any other value is a faster-whisper model id or a directory. The
model is loaded once per (model, device, compute type, threads) and reused. Silero VAD (shipped
inside faster-whisper) drops non-speech first, so silence and music give "missing", not
hallucinated text.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from affectlens.cache import model_cache
from affectlens.models import REGISTRY, model_path
from affectlens.settings import Settings
from tools.evidence import Segment, SpeechEvidence, Word
from tools.media import Media

_lock = threading.Lock()  # one transcription at a time per process: CTranslate2 uses all threads


def _version() -> str:
    try:
        from faster_whisper import __version__

        return __version__
    except Exception:
        return "unknown"


def resolve_model(settings: Settings) -> str:
    """The directory or id faster-whisper should load for ``settings.asr_model``."""
    name = settings.asr_model
    if name in REGISTRY and REGISTRY[name].role == "asr":
        return str(model_path(name, settings.model_dir))
    path = Path(name).expanduser()
    return str(path) if path.is_dir() else name


def compute_type(settings: Settings, device: str) -> str:
    """``settings.asr_compute_type``; the CPU default int8 becomes float16 on CUDA.

    To run int8 on a GPU, ask for ``int8_float16``.
    """
    if device == "cuda" and settings.asr_compute_type == "int8":
        return "float16"
    return settings.asr_compute_type


@model_cache(maxsize=2)
def _load(model: str, device: str, ctype: str, threads: int):
    from faster_whisper import WhisperModel

    return WhisperModel(model, device=device, compute_type=ctype, cpu_threads=threads)


def load_model(settings: Settings):
    """The cached WhisperModel for these settings, and the device it runs on.

    A CUDA load that fails (no cuDNN, out of memory) falls back to the CPU.
    """
    model = resolve_model(settings)
    device = settings.resolved_device
    try:
        return _load(model, device, compute_type(settings, device), settings.cpu_threads), device
    except Exception:
        if device != "cuda":
            raise
        cpu = compute_type(settings, "cpu")
        return _load(model, "cpu", cpu, settings.cpu_threads), "cpu"


def transcribe(media: Media, settings: Settings) -> SpeechEvidence:
    """Transcribe ``media.audio``; times are seconds in the original clip."""
    started = time.perf_counter()
    label = settings.asr_model
    ev = SpeechEvidence(
        model=label,
        model_version=f"faster-whisper {_version()}; {label}",
        device=settings.resolved_device,
    )

    if problem := media.audio_problem():
        return ev.finished(started, status="missing", reason=problem)
    audio = media.audio
    try:
        model, device = load_model(settings)
        with _lock:
            segments, info = model.transcribe(
                np.ascontiguousarray(audio, dtype=np.float32),
                vad_filter=True,
                word_timestamps=True,
                beam_size=5,
                condition_on_previous_text=False,
            )
            segments = list(segments)  # the generator does the work
    except Exception as exc:  # model missing/corrupt, runtime error: report, do not raise
        return ev.finished(started, status="failed",
                           reason=f"speech recognition failed: {exc}")

    off = media.offset
    out = [
        Segment(
            start=round(s.start + off, 3),
            end=round(s.end + off, 3),
            text=s.text.strip(),
            avg_logprob=float(s.avg_logprob),
            no_speech_prob=float(s.no_speech_prob),
            words=[
                Word(
                    start=round(w.start + off, 3),
                    end=round(w.end + off, 3),
                    text=w.word.strip(),
                    probability=float(w.probability),
                )
                for w in (s.words or [])
            ],
        )
        for s in segments
        if s.text.strip()
    ]
    if not out:  # the language guess on no speech is meaningless: leave it out
        return ev.finished(started, status="missing", reason="no speech detected in the audio",
                           device=device)
    return ev.finished(
        started,
        segments=out,
        device=device,
        language=info.language,
        language_probability=round(float(info.language_probability), 4),
    )
