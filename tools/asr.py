"""Speech: faster-whisper transcript with segment and word timestamps, language, probabilities.

The embedded default (``asr_model = "whisper-base"``) is the model assembled from PyPI packages
into ``settings.model_dir``; any other value is a faster-whisper model id or a directory. The
model is loaded once per (model, device, compute type, threads) and reused. Silero VAD (shipped
inside faster-whisper) drops non-speech first, so silence and music give "missing", not
hallucinated text.

Language: whisper guesses it from the first seconds of speech, and on emotional speech it can
be wrong (crying Mandarin heard as Korean). ``choose_language`` reads the guess and its
probability over the first ``DETECT_SEGMENTS`` x 30 s of speech; when the guess is below
``settings.asr_language_min_prob`` or outside ``settings.asr_languages`` (when set), the clip
is decoded in the likeliest expected language instead, and ``language_note`` says so.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from affectlens.cache import model_cache
from affectlens.models import REGISTRY, model_path
from affectlens.settings import Settings
from affectlens.tools.evidence import Segment, SpeechEvidence, Word
from affectlens.tools.media import Media

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


DETECT_SEGMENTS = 2


def choose_language(
    probs: dict[str, float], guess: str, settings: Settings
) -> tuple[str | None, str]:
    """The language to decode in (None: let whisper decide) and a note saying why."""
    p = probs.get(guess, 0.0)
    expected = [x.lower() for x in settings.asr_languages]
    sure = p >= settings.asr_language_min_prob
    said = f"whisper guessed {guess} (p {p:.2f})"
    if not expected:
        if sure:
            return guess, f"{said}; kept"
        return (
            guess,
            f"{said}, unsure (< {settings.asr_language_min_prob:.2f}), no expected "
            "languages configured: kept the guess",
        )
    if guess in expected and sure:
        return guess, f"{said}; kept (expected {', '.join(expected)})"
    best = max(expected, key=lambda x: probs.get(x, 0.0))
    why = "not an expected language" if guess not in expected else "unsure"
    return best, (
        f"{said}, {why}; re-decoded as {best} (p {probs.get(best, 0.0):.2f}), the "
        f"likeliest of the expected {', '.join(expected)}"
    )


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
        signal = np.ascontiguousarray(audio, dtype=np.float32)
        with _lock:
            try:
                guess, _, ranked = model.detect_language(
                    signal, vad_filter=True, language_detection_segments=DETECT_SEGMENTS
                )
                probs = dict(ranked)
                language, note = choose_language(probs, guess, settings)
            except Exception as exc:  # no speech for the detector: whisper decides as before
                probs, language, note = {}, None, f"language detection skipped: {exc}"
            segments, info = model.transcribe(
                signal,
                language=language,
                vad_filter=True,
                word_timestamps=True,
                beam_size=5,
                condition_on_previous_text=False,
            )
            segments = list(segments)  # the generator does the work
    except Exception as exc:  # model missing/corrupt, runtime error: report, do not raise
        return ev.finished(started, status="failed", reason=f"speech recognition failed: {exc}")

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
        return ev.finished(
            started, status="missing", reason="no speech detected in the audio", device=device
        )
    return ev.finished(
        started,
        segments=out,
        device=device,
        language=info.language,
        language_probability=round(float(probs.get(info.language, info.language_probability)), 4),
        language_note=note,
    )
