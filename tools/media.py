"""Open a clip once: validate it, decode 16 kHz mono audio and sample frames with timestamps.

Every tool reads the same decoded ``Media``, so a file is probed and decoded exactly once.
ffprobe/ffmpeg run as subprocesses with argv lists (never a shell), no stdin (``-nostdin``),
a timeout, only the ``file`` protocol, and the path prefixed ``file:`` so an untrusted name
such as ``-i.mp4`` or ``a:b.mp4`` is never read as an option or a protocol. Frames are scaled down
inside ffmpeg (long side <= ``MAX_SIDE``) and capped at ``settings.max_frames``, so memory stays
bounded whatever the resolution or length.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from affectlens.settings import Settings
from affectlens.tools.evidence import MediaInfo

SAMPLE_RATE = 16000
MAX_SIDE = 960
SILENCE_PEAK = 1e-3  # peak amplitude below which a track counts as silent (about -60 dBFS)
PROBE_TIMEOUT_S = 30.0
# Decoding gets a fixed allowance plus a multiple of the clip's length.
DECODE_TIMEOUT_S = 60.0
DECODE_TIMEOUT_PER_S = 2.0
# A damaged file is kept when at least this share of its stated length decodes.
MIN_DECODED_SHARE = 0.5

_INPUT_FLAGS = ("-protocol_whitelist", "file")
# Demuxers probe() accepts (ffprobe's -format_whitelist, checked again on the result). Left
# out on purpose: playlist and indirection demuxers (hls, concat, ffmetadata, dash, tee,
# image sequences read through other names ...), which open further files named inside an
# upload and so could make the server read other local files.
ALLOWED_DEMUXERS = (
    "mov", "mp4", "matroska", "webm", "avi", "flv", "asf", "mpegts", "mpeg", "ogg", "wav", "w64",
    "mp3", "aac", "flac", "aiff", "caf", "amr", "au", "image2", "jpeg_pipe", "png_pipe",
    "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "gif_pipe",
    "srt", "webvtt", "ass",  # subtitles alone: read, then refused as "no usable stream"
)  # fmt: skip
# First bytes of text playlists (HLS, ffconcat, m3u, pls, SDP, ffmetadata): rejected before
# ffprobe opens them.
_PLAYLIST_MAGIC = re.compile(
    rb"^\s*(#EXTM3U|#EXTINF|ffconcat|file\s+\S|\[playlist\]|;FFMETADATA|v=0\s)", re.IGNORECASE
)
# Demuxers that hold a single still picture.
_IMAGE_FORMATS = {"image2"}
_IMAGE_CODECS = {"mjpeg", "png", "bmp", "webp", "tiff", "jpegls", "jpeg2000"}


class MediaError(Exception):
    """A file the app cannot analyse; ``str(error)`` is meant for the user."""


class UnreadableMedia(MediaError):
    """Corrupt, not a media file, or an unsupported codec."""


class PlaylistRejected(UnreadableMedia):
    """A playlist or concat list (HLS, ffconcat ...) or a demuxer outside ``ALLOWED_DEMUXERS``."""


class EmptyMedia(MediaError):
    """Zero-length file or zero duration."""


class TooLarge(MediaError):
    """Over ``settings.max_file_mb``."""


class TooLong(MediaError):
    """Over ``settings.max_duration_s``."""


class NoUsableStream(MediaError):
    """Neither decodable audio nor a video/image stream."""


@dataclass
class Frame:
    t: float  # seconds from the start of the original clip
    image: np.ndarray  # H x W x 3 uint8 RGB, long side <= MAX_SIDE


@dataclass
class Media:
    """A decoded clip.

    ``offset`` is where this media starts in the original clip (non-zero after ``window``);
    audio-based tools add it to their times. Frame times are already absolute.
    """

    path: Path
    info: MediaInfo
    audio: np.ndarray | None  # float32 mono at 16 kHz; None when there is no audio
    frames: list[Frame] = field(default_factory=list)
    sample_rate: int = SAMPLE_RATE
    offset: float = 0.0

    @property
    def audio_duration(self) -> float:
        return 0.0 if self.audio is None else len(self.audio) / self.sample_rate

    def audio_problem(self) -> str | None:
        """Why the audio tools have nothing to hear (no track, a silent one), else None."""
        if self.audio is None or len(self.audio) == 0:
            return "the media has no audio track"
        if float(np.max(np.abs(self.audio))) < SILENCE_PEAK:
            return "the audio track is silent"
        return None

    def window(self, start: float, end: float) -> Media:
        """The same media cut to ``[start, end)`` seconds of the original clip."""
        lo = max(start, self.offset)
        hi = min(end, self.offset + max(self.info.duration_s, self.audio_duration))
        if hi <= lo:
            raise EmptyMedia(f"the window {start:.2f}-{end:.2f} s lies outside the clip")
        audio = None
        if self.audio is not None:
            a = int(round((lo - self.offset) * self.sample_rate))
            b = int(round((hi - self.offset) * self.sample_rate))
            audio = self.audio[a:b]
        if self.info.is_image:
            frames = list(self.frames)
        else:
            frames = [f for f in self.frames if lo <= f.t < hi]
        info = self.info.model_copy(
            update={
                "duration_s": hi - lo,
                "frames_sampled": len(frames),
                "has_audio": audio is not None and len(audio) > 0,
            }
        )
        return replace(self, info=info, audio=audio, frames=frames, offset=lo)


# probing ---------------------------------------------------------------------------------------
def _ffmpeg_input(path: Path, container: str) -> list[str]:
    # A still image's name must not be read as a numbered sequence ("img%d.jpg").
    literal = ["-pattern_type", "none"] if container == "image2" else []
    return [*_INPUT_FLAGS, *literal, "-i", f"file:{path}"]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise UnreadableMedia(f"{argv[0]} took longer than {timeout:.0f} s on this file") from exc
    except FileNotFoundError as exc:  # ffmpeg itself missing
        raise MediaError(f"{argv[0]} is not installed (install ffmpeg)") from exc


def _first_error(stderr: bytes) -> str:
    """ffmpeg's last error line without its "[demuxer @ 0x..]" or "file:/path:" prefix."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return "no detail"
    line = re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", lines[-1])
    return re.sub(r"^file:.*?: ", "", line)[:200]


def _fraction(value: str | None) -> float | None:
    try:
        f = Fraction(value) if value else None
    except (ValueError, ZeroDivisionError):
        return None
    return float(f) if f and f > 0 else None


def _float(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _rotation(stream: dict) -> int:
    """Display rotation in degrees (0/90/180/270) from side data or the legacy tag."""
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    tag = (stream.get("tags") or {}).get("rotate")
    return int(round(float(tag))) % 360 if tag else 0


def _display_size(stream: dict) -> tuple[int, int] | None:
    w, h = stream.get("width"), stream.get("height")
    if not w or not h:
        return None
    sar = _fraction(stream.get("sample_aspect_ratio", "1:1").replace(":", "/")) or 1.0
    w = int(round(w * sar))
    if _rotation(stream) in (90, 270):
        w, h = h, w
    return int(w), int(h)


def target_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _allowed(format_name: str) -> bool:
    """ffprobe names a demuxer by its aliases ("mov,mp4,m4a,3gp,3g2,mj2"): any one will do."""
    return any(name in ALLOWED_DEMUXERS for name in format_name.split(","))


def _reject_playlist(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(512).lstrip(b"\xef\xbb\xbf")  # a UTF-8 BOM
    if _PLAYLIST_MAGIC.match(head):
        raise PlaylistRejected(
            f"{path.name}: a playlist or file list (HLS, concat ...), not a media file; "
            "it is refused because it could make the server read other files"
        )


def _probe_json(path: Path) -> dict:
    _reject_playlist(path)
    argv = [
        "ffprobe", "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", *_INPUT_FLAGS, "-pattern_type", "none",
        "-format_whitelist", ",".join(ALLOWED_DEMUXERS), "-i", f"file:{path}",
    ]  # fmt: skip
    proc = _run(argv, PROBE_TIMEOUT_S)
    if proc.returncode != 0:
        if b"not on whitelist" in proc.stderr:
            raise PlaylistRejected(
                f"{path.name}: the container is not one AffectLens accepts (a playlist, file "
                "list or unusual format); convert it to mp4, mkv, webm, wav or mp3"
            )
        raise UnreadableMedia(
            f"{path.name}: not a readable media file ({_first_error(proc.stderr)})"
        )
    try:
        return json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise UnreadableMedia(f"{path.name}: ffprobe returned no usable description") from exc


def probe(path: str | Path, settings: Settings) -> MediaInfo:
    """Validate a file (existence, size, decodable streams, duration) without decoding it."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UnreadableMedia(f"{path.name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise EmptyMedia(f"{path.name}: the file is empty (0 bytes)")
    if size > settings.max_file_mb * 1024 * 1024:
        raise TooLarge(
            f"{path.name}: {size / 1024 / 1024:.1f} MB is over the limit of "
            f"{settings.max_file_mb:g} MB"
        )
    data = _probe_json(path)
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")  # cover art is not video
        and _display_size(s)
    ]
    video = videos[0] if videos else None
    if audio is None and video is None:
        raise NoUsableStream(f"{path.name}: contains neither an audio nor a video stream")

    format_name = str(fmt.get("format_name", ""))
    if not _allowed(format_name):
        raise PlaylistRejected(f"{path.name}: the {format_name or 'unknown'} container is refused")
    is_image = bool(
        video is not None
        and audio is None
        and (
            format_name in _IMAGE_FORMATS
            or format_name.endswith("_pipe")
            # a still-picture codec in a container, holding exactly one frame
            or (video.get("codec_name") in _IMAGE_CODECS and str(video.get("nb_frames")) == "1")
        )
    )
    durations = [_float(fmt.get("duration"))] + [_float(s.get("duration")) for s in streams]
    duration = 0.0 if is_image else max((d for d in durations if d), default=0.0)
    if not is_image and duration <= 0:
        raise EmptyMedia(f"{path.name}: the media has zero duration")
    if duration > settings.max_duration_s:
        raise TooLong(
            f"{path.name}: {duration:.1f} s is over the limit of {settings.max_duration_s:g} s"
        )

    info = MediaInfo(
        file_name=path.name,
        size_bytes=size,
        container=format_name,
        duration_s=round(duration, 3),
        has_audio=audio is not None,
        has_video=video is not None and not is_image,
        is_image=is_image,
        audio_codec=audio.get("codec_name") if audio else None,
        audio_sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
    )
    if video is not None:
        width, height = _display_size(video)  # type: ignore[misc]
        info.width, info.height = width, height
        info.video_codec = video.get("codec_name")
        if not is_image:
            fps = _fraction(video.get("avg_frame_rate")) or _fraction(video.get("r_frame_rate"))
            info.fps = round(fps, 3) if fps and fps < 1000 else None
    return info


# decoding --------------------------------------------------------------------------------------
def _decode_timeout(info: MediaInfo) -> float:
    return DECODE_TIMEOUT_S + DECODE_TIMEOUT_PER_S * info.duration_s


def _seek(span: tuple[float, float] | None) -> list[str]:
    """Input options that make ffmpeg decode only ``span`` (seconds of the original clip)."""
    return [] if span is None else ["-ss", f"{span[0]:.3f}", "-t", f"{span[1] - span[0]:.3f}"]


def _decode_audio(
    path: Path, info: MediaInfo, span: tuple[float, float] | None = None
) -> tuple[np.ndarray | None, str]:
    """16 kHz mono float32 audio (None when nothing decodes) and ffmpeg's last error."""
    argv = [
        "ffmpeg", "-nostdin", "-v", "error", *_seek(span), *_ffmpeg_input(path, info.container),
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE),
        "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    proc = _run(argv, _decode_timeout(info))
    error = _first_error(proc.stderr) if proc.returncode or proc.stderr.strip() else ""
    audio = np.frombuffer(proc.stdout, dtype="<f4")
    if len(audio) == 0:  # undecodable or empty track
        return None, error or "no audio samples"
    audio = np.nan_to_num(audio.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(audio, -1.0, 1.0), error


def _decode_frames(
    path: Path,
    info: MediaInfo,
    rate: float,
    limit: int,
    span: tuple[float, float] | None = None,
) -> tuple[list[Frame], str]:
    """Frames at ``rate`` scaled in ffmpeg (long side <= MAX_SIDE), and ffmpeg's last error;
    with ``span`` only that window is decoded (frame times stay those of the original clip)."""
    width, height = target_size(info.width or MAX_SIDE, info.height or MAX_SIDE)
    scale = f"scale={width}:{height}:flags=area,setsar=1"
    vf = scale if info.is_image else f"fps={rate:.6f}:round=near:eof_action=pass,{scale}"
    argv = [
        "ffmpeg", "-nostdin", "-v", "error", *_seek(span), *_ffmpeg_input(path, info.container),
        "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, "-frames:v", str(limit),
        "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1",
    ]  # fmt: skip
    proc = _run(argv, _decode_timeout(info))
    error = _first_error(proc.stderr) if proc.returncode or proc.stderr.strip() else ""
    size = width * height * 3
    count = len(proc.stdout) // size
    images = np.frombuffer(proc.stdout, dtype=np.uint8, count=count * size).reshape(
        count, height, width, 3
    )
    start, end = span or (0.0, info.duration_s)
    frames = [Frame(t=round(start + i / rate, 3), image=images[i].copy()) for i in range(count)]
    if not info.is_image and end:
        frames = [f for f in frames if f.t < end] or frames[:1]
    return frames, error


def load(
    path: str | Path,
    settings: Settings,
    *,
    frame_rate: float | None = None,
    window: tuple[float, float] | None = None,
) -> Media:
    """Probe and decode once: 16 kHz mono float32 audio and frames at ``frame_rate``.

    The sampling rate is lowered when needed so that ``settings.max_frames`` frames still cover
    the whole clip; ``info.frame_rate`` records the rate used. A truncated or damaged file
    whose content decodes for at least ``MIN_DECODED_SHARE`` of its stated length is kept
    (``info.duration_s`` becomes what decoded, ``info.warnings`` says so); less is rejected.
    ``window=(start, end)`` decodes only those seconds (chat's closer look at 10 s of a long
    clip): the result is what ``load(...).window(start, end)`` gives, without decoding the rest.
    """
    path = Path(path).expanduser().resolve()
    info = probe(path, settings)
    span = None
    if window is not None and not info.is_image:
        lo, hi = max(0.0, window[0]), min(window[1], info.duration_s or window[1])
        if hi <= lo:
            raise EmptyMedia(f"the window {window[0]:.2f}-{window[1]:.2f} s lies outside the clip")
        span = (lo, hi)
    offset, length = span[0] if span else 0.0, span[1] - span[0] if span else info.duration_s
    audio, audio_error = _decode_audio(path, info, span) if info.has_audio else (None, "")
    if info.has_audio and audio is None:
        info.warnings.append(f"the audio stream could not be decoded ({audio_error})")
    frames: list[Frame] = []
    video_error = ""
    rate = None
    if info.is_image:
        frames, video_error = _decode_frames(path, info, 1.0, 1)
        frames = [Frame(t=0.0, image=f.image) for f in frames[:1]]
    elif info.has_video:
        rate = frame_rate or settings.frame_rate
        if length * rate > settings.max_frames:
            rate = settings.max_frames / length
        frames, video_error = _decode_frames(path, info, rate, settings.max_frames, span)
        info.frame_rate = round(rate, 6)
        if not frames:
            info.warnings.append(f"the video stream could not be decoded ({video_error})")
    if audio is None and not frames:
        raise UnreadableMedia(
            f"{path.name}: neither the audio nor the video could be decoded "
            f"({audio_error or video_error or 'no detail'})"
        )
    if span is not None:
        info.duration_s = round(length, 3)
    if not info.is_image and (audio_error or video_error):
        decoded = max(
            len(audio) / SAMPLE_RATE if audio is not None else 0.0,
            frames[-1].t - offset + 1 / rate if frames and rate else 0.0,
        )
        if decoded < 0.9 * info.duration_s:
            stated = info.duration_s
            if decoded < MIN_DECODED_SHARE * stated:
                raise UnreadableMedia(
                    f"{path.name}: the file is truncated or corrupt: only {decoded:.1f} of "
                    f"{stated:.1f} s could be decoded ({audio_error or video_error})"
                )
            info.duration_s = round(decoded, 3)
            frames = [f for f in frames if f.t - offset < decoded]
            info.warnings.append(
                f"truncated or damaged file: {decoded:.1f} of {stated:.1f} s decoded"
            )
    info.has_audio = audio is not None
    info.has_video = bool(frames) and not info.is_image
    info.frames_sampled = len(frames)
    return Media(path=path, info=info, audio=audio, frames=frames, offset=offset)
