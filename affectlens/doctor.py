"""`affectlens doctor`: is every component of the default pipeline here and sound?"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
from dataclasses import dataclass

from affectlens import cache, models
from affectlens.settings import Settings

# (distribution, needed by the default pipeline)
PACKAGES: tuple[tuple[str, bool], ...] = (
    ("faster-whisper", True),
    ("mediapipe", True),
    ("ai-edge-litert", True),
    ("opensmile", True),
    ("praat-parselmouth", True),
    ("llama-cpp-python", True),
    ("langgraph", True),
    ("langgraph-checkpoint-sqlite", True),
    ("chromadb", True),
    ("sentence-transformers", True),
    ("gradio", True),
    ("torch", False),
    ("open-clip-torch", False),
    ("transformers", False),
    ("openai", False),
    ("py-feat", False),
)


@dataclass
class Row:
    kind: str
    name: str
    state: str  # present | missing | corrupt | optional-missing
    detail: str = ""
    path: str = ""
    size: str = ""
    device: str = ""

    @property
    def blocking(self) -> bool:
        return self.state in ("missing", "corrupt")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _ffmpeg_row(tool: str) -> Row:
    path = shutil.which(tool)
    if not path:
        return Row("system", tool, "missing", "install with: apt-get install ffmpeg")
    out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=20).stdout
    return Row("system", tool, "present", out.split("\n", 1)[0][:60], path)


def check(settings: Settings, *, deep: bool = False) -> list[Row]:
    """One row per component; ``deep`` re-hashes every assembled model."""
    device = settings.resolved_device
    rows = [
        Row("device", "compute", "present", f"device setting: {settings.device}", device=device)
    ]
    for dist, required in PACKAGES:
        try:
            version = md.version(dist)
            rows.append(Row("package", dist, "present", version))
        except md.PackageNotFoundError:
            rows.append(Row("package", dist, "missing" if required else "optional-missing"))
    rows += [_ffmpeg_row("ffmpeg"), _ffmpeg_row("ffprobe")]
    model_device = {"asr": device, "llm": "cuda" if device == "cuda" else "cpu"}
    for name, spec in models.REGISTRY.items():
        st = models.status(name, settings.model_dir, deep=deep)
        rows.append(
            Row(
                "model",
                name,
                st.state,
                st.detail or spec.description,
                str(st.path),
                _human(st.size_bytes) if st.size_bytes else "",
                model_device.get(spec.role, "cpu"),
            )
        )
    rows += [Row("loaded", loader, "present", which) for loader, which in cache.loaded()]
    return rows


def render(rows: list[Row]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="AffectLens doctor", show_lines=False)
    for col in ("kind", "component", "state", "device", "size", "path / detail"):
        table.add_column(col, overflow="fold")
    colour = {"present": "green", "missing": "red", "corrupt": "red", "optional-missing": "yellow"}
    for r in rows:
        where = (
            f"{r.path}\n{r.detail}"
            if r.path and r.detail and r.state != "present"
            else (r.path or r.detail)
        )
        table.add_row(r.kind, r.name, f"[{colour[r.state]}]{r.state}[/]", r.device, r.size, where)
    console = Console(width=160, record=True)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


def default_pipeline_ready(rows: list[Row]) -> bool:
    return not any(r.blocking for r in rows)
