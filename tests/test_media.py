"""affectlens.tools.media on real clips and on files built to be awkward or broken."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from affectlens.settings import Settings
from affectlens.tools.media import (
    MAX_SIDE,
    SAMPLE_RATE,
    EmptyMedia,
    MediaError,
    NoUsableStream,
    TooLarge,
    TooLong,
    UnreadableMedia,
    load,
    probe,
)


def _ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         f"file:{path}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout)


def test_probe_pexels_clip(pexels_clip: Path, settings: Settings) -> None:
    info = probe(pexels_clip, settings)
    assert info.file_name == "WolfgangLanger_Pexels.mp4"
    assert info.size_bytes == pexels_clip.stat().st_size
    assert info.duration_s == pytest.approx(19.69, abs=0.05)
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(24000 / 1001, abs=0.01)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.audio_sample_rate == 48000
    assert info.has_audio and info.has_video and not info.is_image
    assert "mp4" in info.container


def test_probe_single_face_clip_and_image(face_clip: Path, face_image: Path, settings) -> None:
    clip = probe(face_clip, settings)
    assert clip.duration_s == pytest.approx(2.43, abs=0.05)
    assert clip.fps == pytest.approx(30.0)
    assert clip.audio_codec == "mp3"
    image = probe(face_image, settings)
    assert image.is_image and not image.has_video and not image.has_audio
    assert (image.width, image.height) == (572, 562)
    assert image.duration_s == 0.0


def test_load_decodes_audio_and_timed_frames(pexels_clip: Path, settings: Settings) -> None:
    media = load(pexels_clip, settings)
    duration = media.info.duration_s
    assert media.audio is not None and media.audio.dtype == np.float32 and media.audio.ndim == 1
    assert media.sample_rate == SAMPLE_RATE
    assert len(media.audio) / SAMPLE_RATE == pytest.approx(duration, abs=0.1)
    # The Pexels clip's audio track is digital silence (checked with ffmpeg volumedetect).
    assert float(np.abs(media.audio).max()) == 0.0
    assert media.info.frame_rate == settings.frame_rate
    assert len(media.frames) == media.info.frames_sampled == math.ceil(duration * 2)
    times = [f.t for f in media.frames]
    assert times == pytest.approx([i / settings.frame_rate for i in range(len(times))])
    assert times[-1] < duration
    frame = media.frames[0].image
    assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
    assert frame.std() > 10  # a real picture, not a blank buffer
    # consecutive sampled frames of a moving scene differ
    assert np.abs(media.frames[0].image.astype(int) - media.frames[-1].image).mean() > 1


def test_frame_rate_override_and_max_frames_cap(pexels_clip: Path, tmp_path: Path) -> None:
    capped = load(pexels_clip, Settings(data_dir=tmp_path, max_frames=10), frame_rate=5)
    assert len(capped.frames) == 10
    assert capped.info.frame_rate == pytest.approx(10 / 19.69, rel=0.01)
    assert capped.frames[-1].t > 15  # the cap lowers the rate, it still spans the clip
    fast = load(pexels_clip, Settings(data_dir=tmp_path, max_frames=500), frame_rate=4)
    assert len(fast.frames) == math.ceil(fast.info.duration_s * 4)


@pytest.mark.parametrize("name", ["audio_wav", "audio_mp3", "audio_m4a"])
def test_audio_only_files(name: str, derived: dict, speech_en_wav: Path, settings) -> None:
    media = load(derived[name], settings)
    assert media.info.has_audio and not media.info.has_video and not media.info.is_image
    assert media.frames == [] and media.info.frames_sampled == 0
    expected = _ffprobe_duration(speech_en_wav)
    assert len(media.audio) / SAMPLE_RATE == pytest.approx(expected, abs=0.15)
    assert float(np.abs(media.audio).max()) > 0.05


def test_image_gives_one_frame(face_image: Path, settings: Settings) -> None:
    media = load(face_image, settings)
    assert media.audio is None
    assert [f.t for f in media.frames] == [0.0]
    assert media.frames[0].image.shape == (562, 572, 3)


def test_large_image_is_scaled_down(shared_data: Path, settings: Settings) -> None:
    media = load(shared_data / "pyfeat" / "BWPictureHuman.jpg", settings)  # 2560 x 1912
    h, w, _ = media.frames[0].image.shape
    assert max(h, w) == MAX_SIDE
    assert w / h == pytest.approx(2560 / 1912, rel=0.01)


@pytest.mark.parametrize("ext", ["webm", "mkv", "avi", "mov"])
def test_common_containers(ext: str, transcodes: dict, settings: Settings) -> None:
    media = load(transcodes[ext], settings)
    assert media.info.has_audio and media.info.has_video
    assert media.info.duration_s == pytest.approx(2.43, abs=0.15)
    assert len(media.frames) == 5
    assert media.frames[0].image.shape == (360, 640, 3)
    assert len(media.audio) / SAMPLE_RATE == pytest.approx(2.4, abs=0.15)


def test_other_real_clips(shared_data: Path, settings: Settings) -> None:
    """HEVC .mov with audio shorter than video (4.0 s vs 6.4 s): both decoded, no warning."""
    media = load(shared_data / "pyfeat" / "face_noface.mov", settings)
    assert media.info.video_codec == "hevc"
    assert media.info.duration_s == pytest.approx(6.4, abs=0.05)
    assert len(media.frames) == 13 and media.info.warnings == []
    assert len(media.audio) / SAMPLE_RATE == pytest.approx(3.97, abs=0.1)


def test_variable_frame_rate(vfr_clip: Path, settings: Settings) -> None:
    media = load(vfr_clip, settings)
    assert media.info.duration_s == pytest.approx(_ffprobe_duration(vfr_clip), abs=0.05)
    times = [f.t for f in media.frames]
    assert np.allclose(np.diff(times), 0.5)
    assert len(times) == math.ceil(media.info.duration_s * 2)


def test_huge_resolution_is_scaled_in_ffmpeg(huge_clip: Path, settings: Settings) -> None:
    media = load(huge_clip, settings)
    assert (media.info.width, media.info.height) == (4000, 3000)
    assert media.frames[0].image.shape == (720, 960, 3)


def test_untrusted_file_name(tricky_name_clip: Path, settings: Settings) -> None:
    assert tricky_name_clip.name.startswith("-") and ":" in tricky_name_clip.name
    media = load(tricky_name_clip, settings)
    assert media.info.has_video and len(media.frames) == 5


def test_image_name_with_percent_is_not_a_sequence(face_image: Path, tmp_path: Path) -> None:
    odd = tmp_path / "img%d.jpg"
    odd.write_bytes(face_image.read_bytes())
    media = load(odd, Settings(data_dir=tmp_path))
    assert media.info.is_image and len(media.frames) == 1


def test_silent_and_video_only(silent_clip: Path, video_only_clip: Path, settings) -> None:
    silent = load(silent_clip, settings)
    assert silent.info.has_audio and silent.audio is not None
    assert float(np.abs(silent.audio).max()) == 0.0
    video_only = load(video_only_clip, settings)
    assert video_only.audio is None and not video_only.info.has_audio
    assert video_only.info.has_video and len(video_only.frames) == 5


def test_window_cuts_audio_and_frames(talking_clip: Path, settings: Settings) -> None:
    media = load(talking_clip, settings)
    part = media.window(1.0, 3.0)
    assert part.offset == 1.0
    assert len(part.audio) == 2 * SAMPLE_RATE
    assert np.array_equal(part.audio, media.audio[SAMPLE_RATE : 3 * SAMPLE_RATE])
    assert [f.t for f in part.frames] == [1.0, 1.5, 2.0, 2.5]
    assert part.info.duration_s == pytest.approx(2.0)
    inner = part.window(2.0, 10.0)  # windows nest in clip time and clamp to the window
    assert inner.offset == 2.0 and len(inner.audio) == SAMPLE_RATE
    with pytest.raises(EmptyMedia):
        media.window(100.0, 101.0)


# rejections ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("zero_byte_mp4", EmptyMedia),
        ("random_mp4", UnreadableMedia),
        ("text_mp4", UnreadableMedia),
        ("truncated_mp4", UnreadableMedia),
    ],
)
def test_broken_files_raise_typed_errors(name, error, derived: dict, settings) -> None:
    path = derived[name]
    with pytest.raises(error) as caught:
        load(path, settings)
    assert isinstance(caught.value, MediaError)
    assert path.name in str(caught.value)  # says which file


def test_missing_file(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(UnreadableMedia, match="no such file"):
        probe(tmp_path / "nope.mp4", settings)


def test_limits(pexels_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(TooLarge, match="over the limit"):
        probe(pexels_clip, Settings(data_dir=tmp_path, max_file_mb=1.0))  # the clip is 1.6 MB
    with pytest.raises(TooLong, match="19.7 s is over the limit of 10 s"):
        load(pexels_clip, Settings(data_dir=tmp_path, max_duration_s=10))


def test_no_usable_stream(tmp_path: Path, settings: Settings) -> None:
    subs = tmp_path / "only_subtitles.srt"
    subs.write_text("1\n00:00:00,000 --> 00:00:02,000\nHello there\n")
    with pytest.raises(NoUsableStream):
        load(subs, settings)


def test_truncated_streamable_mp4(pexels_clip: Path, tmp_path: Path, settings) -> None:
    """moov first, data cut: most of it decodes -> kept with a warning; little -> rejected."""
    data = pexels_clip.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index is at the start
    most, little = tmp_path / "most.mp4", tmp_path / "little.mp4"
    most.write_bytes(data[: int(len(data) * 0.8)])
    little.write_bytes(data[: int(len(data) * 0.3)])
    media = load(most, settings)
    assert 10 < media.info.duration_s < 19
    assert media.info.warnings and "truncated" in media.info.warnings[0]
    assert media.frames[-1].t < media.info.duration_s
    with pytest.raises(UnreadableMedia, match="truncated"):
        load(little, settings)


def test_rotated_phone_video(face_clip: Path, tmp_path: Path, settings: Settings) -> None:
    """A rotation tag (as phones write) is applied: sizes swap, pixels turn, nothing garbles."""
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(face_clip), "-c", "copy",
         "-metadata:s:v", "rotate=90", str(rotated)],
        check=True, timeout=60,
    )  # fmt: skip
    upright, turned = load(face_clip, settings), load(rotated, settings)
    assert (turned.info.width, turned.info.height) == (360, 640)
    image = turned.frames[2].image.astype(int)
    assert image.shape == (640, 360, 3)
    # the frame is the upright one turned a quarter (the way ffmpeg's players show it)
    diffs = sorted(
        np.abs(image - np.rot90(upright.frames[2].image, k=k).astype(int)).mean() for k in (1, -1)
    )
    assert diffs[0] < 3 < 20 < diffs[1]


def test_png_image_and_mjpeg_video(face_image: Path, face_clip: Path, tmp_path, settings) -> None:
    """A PNG is an image; a motion-JPEG video (a still-picture codec) is still a video."""
    png, mjpeg = tmp_path / "face.png", tmp_path / "mjpeg.mkv"
    for args in (["-i", str(face_image), str(png)],
                 ["-i", str(face_clip), "-an", "-c:v", "mjpeg", str(mjpeg)]):  # fmt: skip
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *args], check=True, timeout=60)
    image = load(png, settings)
    assert image.info.is_image and image.frames[0].image.shape == (562, 572, 3)
    video = load(mjpeg, settings)
    assert not video.info.is_image and video.info.video_codec == "mjpeg"
    assert len(video.frames) == 5
