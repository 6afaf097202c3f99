"""HTML pieces of the page (result card, cue chips, stage progress) and the key frames.

Everything that came from the media or a model (file names, transcripts, explanations, reasons)
is untrusted: it goes through ``html.escape`` before it reaches the page.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from html import escape
from pathlib import Path

import numpy as np

from affectlens.agent.citations import CITATION, CUE_ID
from affectlens.agent.schemas import MODALITIES, AnalysisResult, Cue
from affectlens.agent.textualise import ts
from affectlens.tools.evidence import MediaInfo
from affectlens.ui.plots import MODALITY_COLOURS

STAGE_NAMES = {
    "probe": "probe the file",
    "face": "face: action units and expressions",
    "speech": "speech: transcription",
    "voice": "voice: prosody",
    "scene": "scene",
    "textualise": "textualise cues",
    "retrieve": "retrieve knowledge",
    "reason": "reasoning (LLM)",
    "verify": "verification",
    "store": "store",
}
KEY_FRAMES = 4
CAPTIONS = "captions.json"  # beside the key frames


def cue_value(cue: Cue) -> str:
    if cue.value is None:
        return ""
    value = f"{cue.value:.3g}" if isinstance(cue.value, float) else str(cue.value)
    if len(value) > 80:
        value = value[:79] + "…"
    return f"{value} {cue.unit}".strip() + (f" ({cue.scale})" if cue.scale else "")


def chip(cue: Cue | None, cue_id: str) -> str:
    """A cue id as a chip: hovering or focusing it opens one pop-up with the cue's time,
    modality and text (the page's script keeps it inside the window). No ``title``: a second,
    browser-drawn tooltip would repeat it; screen readers get the same words as the chip's
    description."""
    if cue is None:  # cited but unknown: verification flags it, the page shows it plainly
        detail = "no cue has this id"
        return (
            f'<span class="chip chip-unknown" tabindex="0" aria-description="{detail}">'
            f'{escape(cue_id)}<span class="chip-detail">{detail}</span></span>'
        )
    span = f"{ts(cue.start)}-{ts(cue.end)}"
    rest = f"{cue.modality} · {cue.text}"
    colour = MODALITY_COLOURS.get(cue.modality, "#888")
    return (
        f'<span class="chip" tabindex="0" style="border-color:{colour}" '
        f'aria-description="{escape(f"{span} {rest}")}">{escape(cue.id)}'
        f'<span class="chip-detail"><b>{escape(span)}</b> {escape(rest)}</span></span>'
    )


def with_chips(sentence: str, cues: dict[str, Cue]) -> str:
    """Escape a sentence and turn each bracketed citation into chips."""
    out, last = [], 0
    for m in CITATION.finditer(sentence):
        out.append(escape(sentence[last : m.start()]))
        out.append("".join(chip(cues.get(i), i) for i in CUE_ID.findall(m.group(1))))
        last = m.end()
    out.append(escape(sentence[last:]))
    return "".join(out)


def _status_badge(status: str) -> str:
    return f'<span class="badge badge-{escape(status)}">{escape(status)}</span>'


def result_card(result: AnalysisResult) -> str:
    """The reading: label, confidence, valence/arousal, cited explanation, modality status."""
    media = result.media
    cues = {c.id: c for c in result.cues}
    head = (
        f'<div class="card-meta">{escape(media.file_name)} · {media.duration_s:.1f} s'
        f" · analysis <code>{escape(result.id)}</code></div>"
    )
    reading = result.reading
    if reading is None:
        reason = result.error or "the model returned no reading"
        return (
            f'<div class="card">{head}<div class="card-error">No reading: {escape(reason)}</div>'
            f"{_modalities(result)}</div>"
        )
    conf = round(reading.confidence * 100)
    probs = sorted(reading.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:4]
    prob_html = "".join(f'<span class="prob">{escape(k)} {v:.0%}</span>' for k, v in probs if v > 0)
    explanation = "".join(f"<li>{with_chips(s, cues)}</li>" for s in reading.explanation)
    ver = result.verification
    grounded = (
        '<span class="badge badge-ok">grounded</span>'
        if ver.grounded
        else '<span class="badge badge-failed">not fully grounded</span>'
    )
    problems = "".join(f"<li>{escape(p)}</li>" for p in ver.problems) + "".join(
        f"<li>Cut: {escape(d.text)} ({escape('; '.join(d.reasons))})</li>"
        for d in ver.dropped_claims
    )
    conflicts = " ".join(chip(cues.get(i), i) for i in reading.conflicts)
    return (
        f'<div class="card">{head}'
        f'<div class="card-label" id="result-label">{escape(reading.label)}</div>'
        f'<div class="card-figures"><span>confidence <b>{conf}%</b></span>'
        f"<span>valence <b>{reading.valence:+.2f}</b></span>"
        f"<span>arousal <b>{reading.arousal:+.2f}</b></span>{grounded}</div>"
        f'<div class="card-probs">{prob_html}</div>'
        f'<h4>Why</h4><ul class="explanation">{explanation}</ul>'
        + (f'<div class="conflicts">Conflicting cues: {conflicts}</div>' if conflicts else "")
        + (
            f'<details class="problems"><summary>Verification notes</summary><ul>{problems}</ul>'
            "</details>"
            if problems
            else ""
        )
        + f"{_modalities(result)}</div>"
    )


def _modalities(result: AnalysisResult) -> str:
    """One row per modality: status, what it says (from the reading) or why it is missing."""
    accounts = {a.modality: a for a in (result.reading.modalities if result.reading else [])}
    cues = {c.id: c for c in result.cues}
    rows = []
    for m in MODALITIES:
        ev = getattr(result, m)
        account = accounts.get(m)
        status = ev.status if ev is not None else (account.status if account else "missing")
        if status == "missing" and ev is not None and ev.reason:
            what = escape(plain_reason(ev.reason))  # the reading's account repeats the tool's
        elif account and account.summary:
            what = with_chips(account.summary, cues)
        elif ev is not None and ev.reason:
            what = escape(ev.reason)
        else:
            what = "not run" if ev is None else ""
        secs = f"{ev.seconds:.1f} s" if ev is not None and ev.seconds else ""
        rows.append(
            f'<tr><td><span class="dot" style="background:{MODALITY_COLOURS[m]}"></span>{m}</td>'
            f"<td>{_status_badge(status)}</td><td>{what}</td><td>{secs}</td></tr>"
        )
    head = (
        '<thead><tr><th scope="col">modality</th><th scope="col">status</th>'
        '<th scope="col">what it shows</th><th scope="col">analysis time</th></tr></thead>'
    )
    table = f'<table class="modalities">{head}<tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="table-scroll">{table}</div>'  # a phone scrolls the table, not the page


def plain_reason(reason: str) -> str:
    """Why a modality is missing, in a user's words (the tools write for developers)."""
    if reason.startswith("No CLIP weights"):
        return "no scene model is installed (optional)"
    return reason.split(": ", 1)[-1] if reason.startswith("No video frames") else reason


def progress_html(stages: list[tuple], total: float, note: str = "") -> str:
    """The stage list while an analysis runs: each stage with its state and its seconds. The
    page is redrawn when a stage starts or ends, so a running stage pulses ("running…") rather
    than showing a count that would stand still until the next event."""
    rows = []
    for stage, status, secs, *why in stages:  # (stage, status, seconds[, reason])
        icon = {"start": "▸", "done": "✓", "failed": "✗", "missing": "–"}.get(status, "·")
        name = STAGE_NAMES.get(stage, stage)
        if status == "missing":
            name = f"{name} — missing: {plain_reason(why[0] if why else '')}"
        shown = "running…" if status == "start" else f"{secs:.1f} s"
        rows.append(
            f'<li class="stage stage-{escape(status)}"><span class="icon">{icon}</span>'
            f'{escape(name)}<span class="secs">{shown}</span></li>'
        )
    foot = f'<div class="elapsed">elapsed {total:.1f} s {escape(note)}</div>'
    return f'<ul class="stages">{"".join(rows)}</ul>{foot}'


def note_box(message: str) -> str:
    return f'<div class="card-meta" role="status">{escape(message)}</div>'


def error_box(message: str) -> str:
    return f'<div class="error-box" role="alert"><b>Could not analyse:</b> {escape(message)}</div>'


def warning_box(warnings: list[str]) -> str:
    """Problems that did not stop the analysis (it was saved); empty when there are none."""
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return (
        f'<div class="warning-box" role="status"><b>Saved, with warnings:</b><ul>{items}</ul></div>'
    )


# key frames --------------------------------------------------------------------------------
def _grab(path: Path, t: float, width: int, height: int) -> np.ndarray | None:
    """One frame at ``t`` scaled like tools.media's sampled frames (so face boxes line up)."""
    argv = [
        "ffmpeg", "-nostdin", "-v", "error", "-ss", f"{max(t, 0):.3f}",
        "-protocol_whitelist", "file", "-i", f"file:{path}", "-map", "0:v:0", "-frames:v", "1",
        "-vf", f"scale={width}:{height}:flags=area,setsar=1", "-pix_fmt", "rgb24",
        "-f", "rawvideo", "pipe:1",
    ]  # fmt: skip
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        return None
    size = width * height * 3
    if len(proc.stdout) < size:
        return None
    return np.frombuffer(proc.stdout[:size], dtype=np.uint8).reshape(height, width, 3)


# what a browser's <video> plays: container and video codec
PLAYABLE = {(".mp4", "h264"), (".m4v", "h264"), (".mov", "h264"), (".webm", "vp8"),
            (".webm", "vp9"), (".webm", "av1"), (".mp4", "av1"), (".ogv", "theora")}  # fmt: skip
PREVIEW_S = 60  # seconds of a transcoded preview


def browser_preview(path: Path, codec: str | None, out_dir: Path) -> tuple[Path | None, bool]:
    """A video the browser can play for ``path`` (its video ``codec`` as tools.media.probe read
    it): the file itself when its container and codec play in a browser, else a small H.264
    copy (360 p, the first ``PREVIEW_S`` s) in ``out_dir``; (None, False) when ffmpeg cannot
    make one. The second value: transcoded."""
    if (path.suffix.lower(), codec) in PLAYABLE:
        return path, False
    digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_mtime_ns}".encode()).hexdigest()
    out = out_dir / f"{digest[:16]}.mp4"
    if out.is_file():
        return out, True
    return (out, True) if _small_copy(path, out, PREVIEW_S) else (None, False)


def _small_copy(path: Path, out: Path, seconds: float | None, video: bool = True) -> bool:
    """Write a small copy a browser plays (H.264 360 p + AAC in .mp4, or AAC alone in .m4a)
    of the first ``seconds`` (all when None) of ``path`` to ``out``, atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp" + out.suffix)
    head = ["-t", str(seconds)] if seconds else []
    streams = (
        ["-map", "0:v:0", "-map", "0:a:0?", "-vf", "scale=-2:'min(360,ih)',format=yuv420p",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "28"]
        if video
        else ["-map", "0:a:0", "-vn"]
    )  # fmt: skip
    argv = [
        "ffmpeg", "-nostdin", "-v", "error", "-y", "-protocol_whitelist", "file",
        "-i", f"file:{path}", *head, *streams, "-c:a", "aac", "-b:a", "96k",
        "-movflags", "+faststart", str(tmp),
    ]  # fmt: skip
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    except (subprocess.TimeoutExpired, OSError):
        tmp.unlink(missing_ok=True)
        return False
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(out)
    return True


# the player of a reopened analysis: a copy kept beside its key frames (deleted with them)
CLIP = "clip"
KEEP_AS_IS_MB = 50  # a file the browser plays that is larger than this is kept as a small copy
PLAYABLE_AUDIO = {".wav", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".flac"}
PLAYABLE_IMAGE = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}


def keep_clip(path: str | Path, media: MediaInfo, out_dir: Path) -> Path | None:
    """Keep what the player shows when the analysis is reopened: the file itself when a browser
    plays it and it is small, else a small browser-playable copy (the whole clip); None when
    neither can be made."""
    path = Path(path)
    suffix = path.suffix.lower()
    if media.is_image:
        playable = suffix in PLAYABLE_IMAGE
    elif media.has_video:
        playable = (suffix, media.video_codec) in PLAYABLE
    else:
        playable = suffix in PLAYABLE_AUDIO
    for old in out_dir.glob(f"{CLIP}.*"):
        old.unlink()
    small = path.stat().st_size <= KEEP_AS_IS_MB * 1024 * 1024
    if playable and (small or media.is_image):
        out = out_dir / f"{CLIP}{suffix}"
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        return out
    if media.is_image:
        return None
    out = out_dir / (f"{CLIP}.mp4" if media.has_video else f"{CLIP}.m4a")
    return out if _small_copy(path, out, None, video=media.has_video) else None


def kept_clip(out_dir: Path) -> Path | None:
    """The clip ``keep_clip`` kept for an analysis, or None (made before clips were kept, or
    removed)."""
    return next((p for p in sorted(out_dir.glob(f"{CLIP}.*")) if ".tmp" not in p.name), None)


def key_frames(result: AnalysisResult, path: str | Path, out_dir: Path) -> list[tuple[str, str]]:
    """Write up to ``KEY_FRAMES`` JPEGs with the detected face box drawn, spread over the clip
    (preferring the frames where a face was found); returns (file, caption) pairs."""
    from PIL import Image, ImageDraw

    from affectlens.tools.media import target_size

    face, media = result.face, result.media
    if face is None or not face.frames or not media.width or not media.height:
        return []
    with_face = [f for f in face.frames if f.box is not None] or face.frames
    step = max(1, len(with_face) // KEY_FRAMES)
    chosen = with_face[::step][:KEY_FRAMES]
    width, height = target_size(media.width, media.height)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, fr in enumerate(chosen):
        image = _grab(Path(path), fr.t, width, height)
        if image is None:
            continue
        img = Image.fromarray(image)
        caption = f"{ts(fr.t)}"
        if fr.box is not None:
            b = fr.box
            draw = ImageDraw.Draw(img)
            draw.rectangle(
                [b.x, b.y, b.x + b.w, b.y + b.h], outline=(228, 87, 46), width=max(2, width // 200)
            )
            top = max(fr.expressions.items(), key=lambda kv: kv[1], default=None)
            if top:
                caption += f" · {top[0]} {top[1]:.0%}"
        else:
            caption += " · no face"
        img.thumbnail((480, 480))
        file = out_dir / f"key{i}.jpg"
        img.save(file, quality=82)
        out.append((str(file), caption))
    captions = {Path(f).name: c for f, c in out}  # reopening from History shows them again
    (out_dir / CAPTIONS).write_text(json.dumps(captions, ensure_ascii=False), encoding="utf-8")
    return out


def stored_key_frames(out_dir: Path) -> list[tuple[str, str]]:
    """Key frames written earlier for a stored analysis, with their captions (time and top
    expression; the file name where no caption was kept)."""
    if not out_dir.is_dir():
        return []
    try:
        captions = json.loads((out_dir / CAPTIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        captions = {}
    return [(str(p), captions.get(p.name, p.stem)) for p in sorted(out_dir.glob("key*.jpg"))]


def result_card_placeholder(message: str) -> str:
    return f'<div class="card card-meta">{escape(message)}</div>'
