"""The bundled sample clip is real: a face on screen and JFK's real speech on the track.

Loads whisper and the face model (slow tier). The phrases are asserted because the recording
makes them unambiguous (a clean, famous line), not because a model chose them."""

from pathlib import Path

import pytest

from affectlens.tools.asr import transcribe
from affectlens.tools.face import analyze_face
from affectlens.tools.media import load

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"


@pytest.mark.slow
def test_sample_has_a_face_and_the_inaugural_line(settings):
    media = load(SAMPLE, settings)
    assert media.info.has_audio and media.info.has_video
    assert 10.5 < media.info.duration_s < 11.5

    speech = transcribe(media, settings)
    assert speech.status == "ok" and speech.language == "en"
    text = speech.text.lower()
    for phrase in ("fellow americans", "ask not what your country can do for you"):
        assert phrase in text, text

    face = analyze_face(media, settings)
    assert face.status == "ok"
    assert sum(f.faces > 0 for f in face.frames) >= 0.8 * len(face.frames)
