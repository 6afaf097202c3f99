"""Chat's closer look decodes only the asked window of the real talking clip (ffmpeg seeks;
the result matches cutting a full decode), and a decoder that fails in an unexpected way is a
failed re-run, not an UnboundLocalError."""

from __future__ import annotations

import numpy as np
import pytest

import affectlens.tools.media as media_mod
from affectlens.agent.chat.tools import RERUN_FRAME_RATE, rerun
from affectlens.agent.schemas import AnalysisResult
from affectlens.settings import Settings
from affectlens.tools.media import load, probe


@pytest.fixture
def decoded(monkeypatch):
    """Every ffmpeg call load() makes: its argv and how many bytes it produced."""
    calls: list[tuple[list[str], int]] = []
    real = media_mod._run

    def spy(argv, timeout):
        proc = real(argv, timeout)
        calls.append((argv, len(proc.stdout)))
        return proc

    monkeypatch.setattr(media_mod, "_run", spy)
    return calls


def test_load_decodes_only_the_window(talking_clip, decoded):
    settings = Settings()
    full = load(talking_clip, settings, frame_rate=RERUN_FRAME_RATE)
    cut = full.window(1.0, 2.5)
    decoded.clear()
    part = load(talking_clip, settings, frame_rate=RERUN_FRAME_RATE, window=(1.0, 2.5))
    assert part.offset == pytest.approx(1.0) and part.info.duration_s == pytest.approx(1.5)
    assert [f.t for f in part.frames] == [f.t for f in cut.frames]
    for a, b in zip(part.frames, cut.frames):
        assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 8
    assert abs(len(part.audio) - len(cut.audio)) <= 0.02 * 16000
    # ffmpeg was asked for the window only, and produced no more than it
    frame_bytes = part.frames[0].image.nbytes
    video = [(argv, n) for argv, n in decoded if "0:v:0" in argv]
    audio = [(argv, n) for argv, n in decoded if "0:a:0" in argv]
    assert all("-ss" in argv for argv, _ in video + audio)
    assert video[0][1] // frame_bytes == len(part.frames)
    assert audio[0][1] // 4 == pytest.approx(1.5 * 16000, rel=0.02)


def test_rerun_measures_the_window_and_survives_an_unexpected_decoder_error(
    talking_clip, decoded, monkeypatch, tmp_path
):
    settings = Settings(data_dir=tmp_path)
    result = AnalysisResult(
        id="r", media=probe(talking_clip, settings), source=str(talking_clip.resolve())
    )
    out = rerun(result, settings, "voice", (1.0, 3.0), [])
    assert out.ok, out.summary
    assert all(1.0 <= c.start and c.end <= 3.0 + 1e-6 for c in out.cues)
    assert decoded and all("-ss" in argv for argv, _ in decoded if argv[0] == "ffmpeg")

    def broken(*a, **kw):
        raise OSError("pipe broke")  # not a MediaError

    monkeypatch.setattr(media_mod, "_decode_audio", broken)
    failed = rerun(result, settings, "voice", (1.0, 3.0), [])
    assert not failed.ok and "pipe broke" in failed.summary
