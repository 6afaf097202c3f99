"""affectlens.tools.tone on synthesised speech over real media, and the arousal/valence rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlens.settings import Settings
from affectlens.tools.media import load
from affectlens.tools.tone import RULES, analyze_tone, interpret


@pytest.fixture(scope="module")
def talking_tone(talking_clip: Path, tmp_path_factory):
    s = Settings(data_dir=tmp_path_factory.mktemp("tone"))
    media = load(talking_clip, s)
    analyze_tone(media, s)  # load openSMILE once so the timed call below is warm
    return media, analyze_tone(media, s)


def test_voice_features_in_plausible_ranges(talking_tone) -> None:
    media, ev = talking_tone
    assert ev.status == "ok", ev.reason
    f = ev.features
    assert 50 <= f.pitch_p5_hz <= f.pitch_median_hz <= f.pitch_p95_hz <= 500
    assert 0 < f.pitch_range_st < 24
    assert 0 < f.hnr_db < 40
    assert 0 < f.jitter_local_pct < 5
    assert 0 < f.shimmer_local_pct < 40
    assert 2 <= f.speech_rate_syl_s <= 8  # the sentence: 30 syllables in about 6 s
    assert 0 <= f.pause_ratio < 0.5
    assert f.loudness_mean_sone > 0
    assert 0 < f.voiced_share <= 1
    assert 0 <= f.speech_start_s < f.speech_end_s <= media.info.duration_s + 0.01
    assert -1 <= ev.arousal <= 1 and -1 <= ev.valence <= 1 and ev.rationale
    assert "opensmile" in ev.model_version and "Praat" in ev.model_version
    print(f"\ntone: {media.info.duration_s:.1f} s of audio in {ev.seconds:.2f} s (warm)")


def test_windows_cover_the_speech_in_order(talking_tone) -> None:
    _, ev = talking_tone
    assert len(ev.windows) >= 2
    assert ev.windows[0].start == pytest.approx(ev.features.speech_start_s, abs=0.01)
    assert ev.windows[-1].end == pytest.approx(ev.features.speech_end_s, abs=0.01)
    for a, b in zip(ev.windows, ev.windows[1:]):
        assert a.end == pytest.approx(b.start) and a.start < a.end
    voiced = [w for w in ev.windows if w.pitch_hz is not None]
    assert voiced and all(50 <= w.pitch_hz <= 500 and -1 <= w.arousal <= 1 for w in voiced)


def test_slow_low_voice_reads_calmer(two_voices_clip: Path, settings: Settings) -> None:
    """The same sentence spoken fast/normal, then slow and low: every cue moves down."""
    media = load(two_voices_clip, settings)
    whole = analyze_tone(media, settings)
    gap = 6.0 + 0.75  # the sentence lasts about 6 s, then 1.5 s of silence
    first = analyze_tone(media.window(0, gap), settings)
    second = analyze_tone(media.window(gap, media.info.duration_s), settings)
    assert first.status == second.status == "ok"
    assert second.features.speech_start_s > gap  # times stay in clip time
    assert second.features.pitch_median_hz < first.features.pitch_median_hz
    assert second.features.speech_rate_syl_s < first.features.speech_rate_syl_s
    assert second.arousal < first.arousal
    early = [w.arousal for w in whole.windows if w.end <= gap and w.arousal is not None]
    late = [w.arousal for w in whole.windows if w.start >= gap and w.arousal is not None]
    assert np.mean(late) < np.mean(early)  # relative to the speaker's own median


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("silent_clip", "silent"),
        ("pexels_clip", "silent"),
        ("video_only_clip", "no audio"),
        ("face_image", "no audio"),
        ("noise_clip", "no speech"),
    ],
)
def test_no_voice_is_missing(fixture, reason, request, settings: Settings) -> None:
    ev = analyze_tone(load(request.getfixturevalue(fixture), settings), settings)
    assert ev.status == "missing" and reason in ev.reason
    assert ev.features is None and ev.arousal is None


# the rules -------------------------------------------------------------------------------------
TYPICAL = {
    "pitch_median_hz": 150.0, "pitch_range_st": 4.0, "speech_rate_syl_s": 4.5,
    "pause_ratio": 0.1, "hammarberg_index_db": 18.0, "hnr_db": 12.0, "jitter_local_pct": 1.0,
}  # fmt: skip


def test_typical_voice_is_neutral() -> None:
    arousal, valence, why = interpret(TYPICAL)
    assert (arousal, valence) == (0.0, 0.0) and why[0].startswith("no rule fired")


def test_excited_and_sad_profiles() -> None:
    excited = TYPICAL | {"pitch_median_hz": 280.0, "pitch_range_st": 8.0,
                         "speech_rate_syl_s": 6.2, "hammarberg_index_db": 6.0}  # fmt: skip
    arousal, valence, why = interpret(excited)
    assert arousal == pytest.approx(1.0) and valence > 0
    assert {w.split()[0] for w in why} == {"A-pitch+", "A-range+", "A-rate+", "A-effort+",
                                           "V-bright"}  # fmt: skip
    sad = TYPICAL | {"pitch_median_hz": 85.0, "pitch_range_st": 1.5, "speech_rate_syl_s": 2.5,
                     "pause_ratio": 0.45}  # fmt: skip
    arousal, valence, why = interpret(sad)
    assert arousal == pytest.approx(-1.0) and valence == pytest.approx(-0.3)
    assert "V-low" in {w.split()[0] for w in why}
    harsh = excited | {"jitter_local_pct": 3.2, "hnr_db": 4.0}
    _, valence, why = interpret(harsh)
    assert valence == pytest.approx(-0.2) and "V-harsh" in why[-1]


def test_every_rule_can_fire_and_is_documented() -> None:
    import affectlens.tools.tone as tone

    for rule in RULES:
        assert rule.name in tone.__doc__
    extremes = [
        TYPICAL | {"pitch_median_hz": 300, "pitch_range_st": 9, "speech_rate_syl_s": 7,
                   "hammarberg_index_db": 5},
        TYPICAL | {"pitch_median_hz": 80, "pitch_range_st": 1, "speech_rate_syl_s": 2,
                   "pause_ratio": 0.5, "hammarberg_index_db": 30, "hnr_db": 3},
    ]  # fmt: skip
    fired = {w.split()[0] for f in extremes for w in interpret(f)[2]}
    assert fired == {r.name for r in RULES}


def test_rules_read_only_typed_feature_names() -> None:
    """Every name a rule formats is a ToneFeatures field, and a misspelt one is refused."""
    import string

    from affectlens.tools.evidence import ToneFeatures

    named = {f for r in RULES for _, f, _, _ in string.Formatter().parse(r.says) if f}
    assert named and named <= set(ToneFeatures.model_fields)
    with pytest.raises(ValueError, match="loudness_mean"):
        interpret(TYPICAL | {"loudness_mean": 0.4})


# optional speech-emotion model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ser(tmp_path_factory) -> tuple[Path, list[str]]:
    """A randomly initialised wav2vec2 classifier saved locally: the real loading path."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    torch.manual_seed(0)
    labels = ["angry", "happy", "neutral", "sad"]
    config = Wav2Vec2Config(
        vocab_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4),
        num_feat_extract_layers=2, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        classifier_proj_size=8, id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )  # fmt: skip
    out = tmp_path_factory.mktemp("ser") / "tiny-ser"
    Wav2Vec2ForSequenceClassification(config).save_pretrained(out)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(out)
    return out, labels


def test_speech_emotion_model(tiny_ser, speech_en_wav: Path, tmp_path: Path) -> None:
    path, labels = tiny_ser
    s = Settings(data_dir=tmp_path, ser_model=str(path))
    ev = analyze_tone(load(speech_en_wav, s), s)
    assert ev.status == "ok"
    assert sorted(x.label for x in ev.emotion_scores) == labels
    assert sum(x.score for x in ev.emotion_scores) == pytest.approx(1.0, abs=1e-3)
    assert [x.score for x in ev.emotion_scores] == sorted(
        (x.score for x in ev.emotion_scores), reverse=True
    )
    assert ev.model.endswith("tiny-ser") and "speech-emotion model" in ev.model_version


def test_broken_speech_emotion_model_keeps_prosody(speech_en_wav: Path, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, ser_model=str(tmp_path / "no-such-model"))
    ev = analyze_tone(load(speech_en_wav, s), s)
    assert ev.status == "ok" and ev.features and ev.emotion_scores == []
    assert any("speech-emotion model not used" in r for r in ev.rationale)
