"""Voice: prosody and voice quality, turned into arousal and valence with documented rules.

Measured on the speech found by Silero VAD (shipped in faster-whisper), so music or noise
without a voice gives "missing" rather than numbers about the music:

- openSMILE eGeMAPSv02 (Eyben et al. 2016) functionals and low-level descriptors: loudness,
  pitch range in semitones, spectral balance (Hammarberg index), voiced-segment rate;
- Praat via parselmouth: F0 (Hz), jitter, shimmer, HNR, and the intensity contour from which
  syllable nuclei (speech rate, de Jong & Wempe 2009) and pauses are found.

Clip-level arousal and valence compare the clip with population norms. Each rule that fires
adds its weight; the sum is clipped to [-1, 1] (arousal) and [-0.6, 0.6] (valence: prosody
carries valence only weakly, Scherer 2003). Thresholds are for adult connected speech.

=========  ==========================================  ======  ============================
rule       fires when                                  weight  why (literature)
=========  ==========================================  ======  ============================
A-pitch+   pitch_median_hz > 250 Hz                    +0.3    high F0 in anger, fear, joy
                                                               (J&L); adult means ~120 Hz
                                                               men, ~210 Hz women (Titze)
A-pitch-   pitch_median_hz < 90 Hz                     -0.2    low F0 in sadness (J&L)
A-range+   pitch_range_st (P20-P80) > 6 semitones      +0.3    much F0 variability with high
                                                               arousal (J&L)
A-range-   pitch_range_st < 2 semitones                -0.3    monotone: sadness, boredom
A-rate+    speech_rate_syl_s > 5.5 syllables/s         +0.3    fast in anger, fear, joy (J&L);
                                                               typical 4-5 syl/s (de Jong)
A-rate-    speech_rate_syl_s < 3.0 syllables/s         -0.3    slow in sadness (J&L)
A-pause-   pause_ratio > 0.35                          -0.2    many, long pauses in sadness
                                                               (J&L; Scherer)
A-effort+  hammarberg_index_db < 8 dB                  +0.2    strong high frequencies with
                                                               vocal effort (J&L; Scherer)
A-effort-  hammarberg_index_db > 28 dB                 -0.2    steep spectrum: lax voice
V-harsh    jitter_local_pct > 2.5 % or hnr_db < 5 dB   -0.2    harsh, irregular voice in
                                                               anger, fear, disgust (Scherer)
V-bright   pitch_range_st > 5, speech_rate_syl_s >= 4  +0.3    happiness: wide F0 range,
           and hnr_db >= 8 (and not harsh)                     lively rate, clear voice (J&L)
V-low      pitch_range_st < 2.5 and (speech_rate       -0.3    sadness profile (J&L)
           < 3.5 syl/s or pause_ratio > 0.35)
=========  ==========================================  ======  ============================

J&L: Juslin & Laukka 2003, Psychological Bulletin 129(5) (cue summary for discrete emotions).
Scherer: Scherer 2003, Speech Communication 40 (vocal affect expression review). de Jong:
de Jong & Wempe 2009, Behavior Research Methods 41(2). Titze: Titze 1994, Principles of Voice
Production. No rule firing means prosody within the typical range: 0.

Windows (``WINDOW_S`` long) are relative to the clip's own speaker: a window's arousal is
``tanh((dp + dl) / 2)`` with ``dp`` its median pitch minus the clip median in units of
``PITCH_UNIT_ST`` semitones and ``dl`` its mean loudness over the clip median in units of
``LOUDNESS_UNIT`` (log2 of the sone ratio; 0.5 = +5 phon). 0 is the speaker's usual level.

Voice emotion: ``tools.voice_emotion`` scores the same eGeMAPS functionals with a model fitted
on EmoDB (docs/models/voice-emotion.md) and fills ``vote`` (7 basic emotions, reliability from
the voiced share); its arousal/valence go to the rationale, the rules above stay as they are.

Optional speech-emotion model: a local transformers audio-classification directory in
``settings.ser_model`` fills ``emotion_scores`` (off by default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from affectlens.cache import model_cache
from affectlens.settings import Settings
from affectlens.tools import voice_emotion
from affectlens.tools.evidence import LabelScore, ToneEvidence, ToneFeatures, ToneWindow
from affectlens.tools.media import Media

SR = 16000
MIN_VOICED_S = 0.3  # less voiced speech than this is not enough to measure a voice
WINDOW_S = 2.0
PITCH_UNIT_ST = 2.0
LOUDNESS_UNIT = 0.5
PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 60.0, 600.0
SILENCE_DB = -25.0  # below the 99th-percentile intensity: silence (de Jong & Wempe 2009)
MIN_DIP_DB = 2.0
MIN_PAUSE_S = 0.3
SER_CHUNK_S, SER_MAX_S = 10.0, 60.0


# measuring -------------------------------------------------------------------------------------
@model_cache(maxsize=1)
def _smile():
    """eGeMAPSv02 low-level descriptors (the functionals: tools.voice_emotion.functionals)."""
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )


def _versions() -> str:
    import opensmile
    import parselmouth

    return (
        f"opensmile {opensmile.__version__} eGeMAPSv02; parselmouth {parselmouth.__version__} "
        f"(Praat {parselmouth.PRAAT_VERSION})"
    )


def speech_span(audio: np.ndarray) -> tuple[int, int] | None:
    """First and last sample of speech by Silero VAD; None when there is no speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    chunks = get_speech_timestamps(
        audio, VadOptions(min_silence_duration_ms=500, speech_pad_ms=100), sampling_rate=SR
    )
    if not chunks:
        return None
    return int(chunks[0]["start"]), int(chunks[-1]["end"])


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class _Praat:
    times: np.ndarray  # pitch frame times (s, from the span start)
    f0: np.ndarray  # Hz, 0 when unvoiced
    features: dict[str, float]


def _praat(audio: np.ndarray) -> _Praat:
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=SR)
    pitch = snd.to_pitch(time_step=0.01, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
    f0 = pitch.selected_array["frequency"]
    times = pitch.xs()
    voiced = f0[f0 > 0]
    feats: dict[str, float] = {"voiced_s": round(len(voiced) * 0.01, 3)}
    if len(voiced) >= 5:
        st = 12 * np.log2(voiced / np.median(voiced))
        feats |= {
            "pitch_mean_hz": float(np.mean(voiced)),
            "pitch_median_hz": float(np.median(voiced)),
            "pitch_p5_hz": float(np.percentile(voiced, 5)),
            "pitch_p95_hz": float(np.percentile(voiced, 95)),
            "pitch_sd_st": float(np.std(st)),
        }
        pp = call([snd, pitch], "To PointProcess (cc)")
        jitter = _finite(call(pp, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3))
        shimmer = _finite(call([snd, pp], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6))
        harm = call(snd, "To Harmonicity (cc)", 0.01, PITCH_FLOOR_HZ, 0.1, 1.0)
        hnr = _finite(call(harm, "Get mean", 0, 0))
        if jitter is not None:
            feats["jitter_local_pct"] = 100 * jitter
        if shimmer is not None:
            feats["shimmer_local_pct"] = 100 * shimmer
        if hnr is not None:
            feats["hnr_db"] = hnr
    feats |= _rate_and_pauses(snd, times, f0)
    return _Praat(times, f0, feats)


def _rate_and_pauses(snd, ptimes: np.ndarray, f0: np.ndarray) -> dict[str, float]:
    """Syllable nuclei (de Jong & Wempe 2009, simplified) and silent pauses from intensity."""
    intensity = snd.to_intensity(minimum_pitch=PITCH_FLOOR_HZ, time_step=0.01)
    db = intensity.values[0]
    t = intensity.xs()
    if len(db) < 3:
        return {}
    threshold = np.percentile(db, 99) + SILENCE_DB
    sounding = db > threshold
    # peaks above the threshold, each followed by a dip of MIN_DIP_DB before the next peak
    peaks = [i for i in range(1, len(db) - 1) if db[i] >= db[i - 1] and db[i] > db[i + 1]]
    peaks = [i for i in peaks if db[i] > threshold]
    nuclei = []
    for k, i in enumerate(peaks):
        nxt = peaks[k + 1] if k + 1 < len(peaks) else len(db) - 1
        if db[i] - db[i : nxt + 1].min() >= MIN_DIP_DB or k + 1 == len(peaks):
            j = int(np.argmin(np.abs(ptimes - t[i]))) if len(ptimes) else -1
            if j >= 0 and f0[j] > 0:  # a nucleus is voiced
                nuclei.append(t[i])
    idx = np.flatnonzero(sounding)
    if len(idx) == 0:
        return {}
    first, last = idx[0], idx[-1]
    span = max(t[last] - t[first], 0.01)
    quiet = np.concatenate([[0], (~sounding[first : last + 1]).astype(int), [0]])
    edges = np.flatnonzero(np.diff(quiet))  # alternating starts and ends of quiet runs
    runs = (edges[1::2] - edges[0::2]) * 0.01
    pauses = [float(r) for r in runs if r >= MIN_PAUSE_S]
    phonation = max(span - sum(pauses), 0.01)
    return {
        "syllables": float(len(nuclei)),
        "speech_rate_syl_s": len(nuclei) / span,
        "articulation_rate_syl_s": len(nuclei) / phonation,
        "pause_count": float(len(pauses)),
        "pause_total_s": float(sum(pauses)),
        "pause_ratio": float(sum(pauses) / span),
        "speaking_time_s": float(span),
    }


_EGEMAPS = {
    "pitch_range_st": "F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2",
    "pitch_mean_st": "F0semitoneFrom27.5Hz_sma3nz_amean",
    "pitch_variability": "F0semitoneFrom27.5Hz_sma3nz_stddevNorm",
    "loudness_mean_sone": "loudness_sma3_amean",
    "loudness_variability": "loudness_sma3_stddevNorm",
    "loudness_peaks_per_s": "loudnessPeaksPerSec",
    "voiced_segments_per_s": "VoicedSegmentsPerSec",
    "mean_voiced_segment_s": "MeanVoicedSegmentLengthSec",
    "mean_unvoiced_segment_s": "MeanUnvoicedSegmentLength",
    "hammarberg_index_db": "hammarbergIndexV_sma3nz_amean",
    "alpha_ratio_db": "alphaRatioV_sma3nz_amean",
    "sound_level_db": "equivalentSoundLevel_dBp",
    "egemaps_jitter_local": "jitterLocal_sma3nz_amean",
    "egemaps_shimmer_db": "shimmerLocaldB_sma3nz_amean",
    "egemaps_hnr_db": "HNRdBACF_sma3nz_amean",
}


def _opensmile(
    audio: np.ndarray,
) -> tuple[dict[str, float], dict[str, float], np.ndarray, np.ndarray]:
    """Named clip functionals, all 88 functionals (the voice-emotion model's input), and the
    loudness LLD with its frame-centre times (10 ms step)."""
    row = voice_emotion.functionals(audio)
    feats = {k: v for k, col in _EGEMAPS.items() if (v := _finite(row.get(col))) is not None}
    low = _smile().process_signal(audio, SR)
    loud = low["Loudness_sma3"].to_numpy(dtype=float)
    times = np.arange(len(loud)) * 0.01 + 0.01
    return feats, row, times, loud


# interpreting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    name: str
    target: str  # "arousal" | "valence"
    weight: float
    test: Callable[[dict[str, float]], bool]
    says: str  # format string over the features


def _has(f: dict[str, float], *keys: str) -> bool:
    return all(k in f for k in keys)


def _harsh(f: dict[str, float]) -> bool:
    return f.get("jitter_local_pct", 0) > 2.5 or f.get("hnr_db", 99) < 5


RULES: tuple[Rule, ...] = (
    Rule("A-pitch+", "arousal", 0.3, lambda f: f.get("pitch_median_hz", 0) > 250,
         "median pitch {pitch_median_hz:.0f} Hz > 250 Hz: raised voice (J&L 2003)"),
    Rule("A-pitch-", "arousal", -0.2, lambda f: 0 < f.get("pitch_median_hz", 0) < 90,
         "median pitch {pitch_median_hz:.0f} Hz < 90 Hz: low voice (J&L 2003)"),
    Rule("A-range+", "arousal", 0.3, lambda f: f.get("pitch_range_st", 0) > 6,
         "pitch range {pitch_range_st:.1f} st > 6 st: lively intonation (J&L 2003)"),
    Rule("A-range-", "arousal", -0.3, lambda f: 0 < f.get("pitch_range_st", 99) < 2,
         "pitch range {pitch_range_st:.1f} st < 2 st: monotone (J&L 2003)"),
    Rule("A-rate+", "arousal", 0.3, lambda f: f.get("speech_rate_syl_s", 0) > 5.5,
         "speech rate {speech_rate_syl_s:.1f} syl/s > 5.5: fast (J&L 2003)"),
    Rule("A-rate-", "arousal", -0.3, lambda f: 0 < f.get("speech_rate_syl_s", 99) < 3.0,
         "speech rate {speech_rate_syl_s:.1f} syl/s < 3.0: slow (J&L 2003)"),
    Rule("A-pause-", "arousal", -0.2, lambda f: f.get("pause_ratio", 0) > 0.35,
         "pauses fill {pause_ratio:.0%} of the speech > 35% (J&L 2003; Scherer 2003)"),
    Rule("A-effort+", "arousal", 0.2, lambda f: 0 < f.get("hammarberg_index_db", 99) < 8,
         "Hammarberg index {hammarberg_index_db:.1f} dB < 8: strong high frequencies, effort"),
    Rule("A-effort-", "arousal", -0.2, lambda f: f.get("hammarberg_index_db", 0) > 28,
         "Hammarberg index {hammarberg_index_db:.1f} dB > 28: steep spectrum, lax voice"),
    Rule("V-harsh", "valence", -0.2, lambda f: _has(f, "hnr_db") and _harsh(f),
         "jitter {jitter_local_pct:.1f}% / HNR {hnr_db:.1f} dB: harsh voice (Scherer 2003)"),
    Rule("V-bright", "valence", 0.3,
         lambda f: f.get("pitch_range_st", 0) > 5 and f.get("speech_rate_syl_s", 0) >= 4
         and f.get("hnr_db", 0) >= 8 and not _harsh(f),
         "wide range {pitch_range_st:.1f} st, rate {speech_rate_syl_s:.1f} syl/s, clear voice "
         "(HNR {hnr_db:.1f} dB): happy-sounding profile (J&L 2003)"),
    Rule("V-low", "valence", -0.3,
         lambda f: 0 < f.get("pitch_range_st", 99) < 2.5
         and (0 < f.get("speech_rate_syl_s", 99) < 3.5 or f.get("pause_ratio", 0) > 0.35),
         "narrow range {pitch_range_st:.1f} st with slow or halting speech: sad-sounding "
         "profile (J&L 2003)"),
)  # fmt: skip


class _Fmt(dict):
    def __missing__(self, key):  # a feature Praat could not measure prints as nan
        return float("nan")


def interpret(features: ToneFeatures | dict[str, float]) -> tuple[float, float, list[str]]:
    """Clip arousal and valence from the population-norm rules, and the rules that fired."""
    if isinstance(features, dict):
        features = ToneFeatures(**features)  # validate the names the rules read
    features = features.present()
    arousal = valence = 0.0
    fired: list[str] = []
    for rule in RULES:
        if rule.test(features):
            if rule.target == "arousal":
                arousal += rule.weight
            else:
                valence += rule.weight
            fired.append(
                f"{rule.name} ({rule.target} {rule.weight:+.1f}): "
                + rule.says.format_map(_Fmt(features))
            )
    if not fired:
        fired.append(
            "no rule fired: pitch, range, rate and voice quality are in the typical "
            "adult range, so arousal 0 and valence 0"
        )
    return float(np.clip(arousal, -1, 1)), float(np.clip(valence, -0.6, 0.6)), fired


def _windows(
    duration: float, offset: float, praat: _Praat, ltimes: np.ndarray, loud: np.ndarray
) -> list[ToneWindow]:
    """Windows over the speech span, arousal relative to the clip's own medians."""
    edges: list[float] = list(np.arange(0.0, duration, WINDOW_S))
    if len(edges) > 1 and duration - edges[-1] < WINDOW_S / 2:
        edges.pop()  # fold a short tail into the last window
    rows: list[tuple[float, float, float | None, float | None]] = []  # start, end, pitch, loudness
    for k, a in enumerate(edges):
        b = edges[k + 1] if k + 1 < len(edges) else duration
        f0 = praat.f0[(praat.times >= a) & (praat.times < b)]
        f0 = f0[f0 > 0]
        lw = loud[(ltimes >= a) & (ltimes < b)]
        rows.append(
            (
                a,
                b,
                float(np.median(f0)) if len(f0) >= 5 else None,
                float(np.mean(lw)) if len(lw) else None,
            )
        )
    pitches = [p for *_, p, _ in rows if p]
    louds = [v for *_, v in rows if v]
    p_ref = float(np.median(pitches)) if pitches else None
    l_ref = float(np.median(louds)) if louds else None
    out = []
    for a, b, p, v in rows:
        parts = []
        if p and p_ref:
            parts.append(12 * math.log2(p / p_ref) / PITCH_UNIT_ST)
        if v and l_ref and v > 0 and l_ref > 0:
            parts.append(math.log2(v / l_ref) / LOUDNESS_UNIT)
        arousal = math.tanh(sum(parts) / 2) if parts else None
        out.append(ToneWindow(
            start=round(a + offset, 3), end=round(b + offset, 3),
            pitch_hz=round(p, 1) if p else None, loudness=round(v, 3) if v is not None else None,
            arousal=round(arousal, 3) if arousal is not None else None,
        ))  # fmt: skip
    return out


# speech-emotion model (optional) -----------------------------------------------------------------
@model_cache(maxsize=1)
def _ser_pipeline(model: str, device: str):
    from transformers import pipeline

    return pipeline("audio-classification", model=model, device=0 if device == "cuda" else -1)


def speech_emotion(audio: np.ndarray, settings: Settings) -> list[LabelScore]:
    """Class probabilities averaged over SER_CHUNK_S chunks (at most SER_MAX_S of speech)."""
    if not settings.ser_model:
        raise ValueError("no speech-emotion model is set (ser_model)")
    clf = _ser_pipeline(str(Path(settings.ser_model).expanduser()), settings.resolved_device)
    step = int(SER_CHUNK_S * SR)
    chunks = [audio[i : i + step] for i in range(0, min(len(audio), int(SER_MAX_S * SR)), step)]
    chunks = [c for c in chunks if len(c) >= SR // 2] or [audio]
    totals: dict[str, float] = {}
    for chunk in chunks:
        for item in clf({"raw": chunk, "sampling_rate": SR}, top_k=None):
            totals[item["label"]] = totals.get(item["label"], 0.0) + item["score"] / len(chunks)
    return sorted(
        (LabelScore(label=k, score=round(v, 4)) for k, v in totals.items()), key=lambda s: -s.score
    )


# the tool --------------------------------------------------------------------------------------
def analyze_tone(media: Media, settings: Settings) -> ToneEvidence:
    """Prosody, voice quality, windows and arousal/valence for the speech in ``media``."""
    started = time.perf_counter()
    model = "eGeMAPSv02+praat"
    if settings.ser_model:
        model += f"+{Path(settings.ser_model).name}"
    ev = ToneEvidence(model=model, device=settings.resolved_device)

    if problem := media.audio_problem():
        return ev.finished(started, status="missing", reason=problem)
    audio = cast(np.ndarray, media.audio)  # audio_problem() found a track
    try:
        version = _versions()
        span = speech_span(audio)
        if span is None:
            return ev.finished(
                started, status="missing", reason="no speech in the audio", model_version=version
            )
        a, b = span
        speech = np.ascontiguousarray(audio[a:b], dtype=np.float32)
        praat = _praat(speech)
        voiced = praat.features.get("voiced_s", 0.0)
        if voiced < MIN_VOICED_S:
            return ev.finished(
                started,
                status="missing",
                model_version=version,
                reason=f"too little voiced speech ({voiced:.2f} s)",
            )
        smile, egemaps, ltimes, loud = _opensmile(speech)
    except Exception as exc:  # a library failed on this audio: report, do not raise
        return ev.finished(started, status="failed", reason=f"voice analysis failed: {exc}")

    values = {k: round(float(v), 4) for k, v in {**smile, **praat.features}.items()}
    offset = media.offset + a / SR
    values["voiced_share"] = round(min(voiced / max((b - a) / SR, 1e-3), 1.0), 4)
    values["speech_start_s"], values["speech_end_s"] = (
        round(offset, 3),
        round(media.offset + b / SR, 3),
    )
    features = ToneFeatures(**values)  # extra="forbid": a name textualise cannot read fails here
    arousal, valence, rationale = interpret(features)
    windows = _windows(len(speech) / SR, offset, praat, ltimes, loud)
    peaks = sorted(
        ((w, w.arousal) for w in windows if w.arousal is not None), key=lambda wa: -abs(wa[1])
    )
    for w, peak in peaks[:2]:
        if abs(peak) >= 0.3:
            rationale.append(
                f"window {w.start:.1f}-{w.end:.1f} s: arousal {peak:+.2f} relative to this "
                f"speaker's median pitch and loudness in the clip"
            )

    vote = None
    try:
        scored = voice_emotion.score(egemaps, voiced_share=features.voiced_share, voiced_s=voiced)
        vote = scored.vote
        version += f"; {vote.model}"
        rationale.append(
            f"voice-emotion model: arousal {scored.arousal:+.2f}, valence {scored.valence:+.2f} "
            "from its class probabilities"
        )
    except Exception as exc:  # a missing or broken model file: keep the prosody
        rationale.append(f"voice-emotion model not used: {exc}")

    scores: list[LabelScore] = []
    if settings.ser_model:
        try:
            scores = speech_emotion(speech, settings)
            version += f"; speech-emotion model {settings.ser_model}"
        except Exception as exc:
            rationale.append(f"speech-emotion model not used: {exc}")
    return ev.finished(
        started,
        features=features,
        windows=windows,
        arousal=round(arousal, 3),
        valence=round(valence, 3),
        rationale=rationale,
        emotion_scores=scores,
        vote=vote,
        model_version=version,
    )
