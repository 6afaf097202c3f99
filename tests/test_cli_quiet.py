"""A quiet terminal: `affectlens analyze` on a real clip prints only its own stage lines on
stderr and its result on stdout; the libraries' logs (TF Lite/absl from native code, "Loading
weights" bars) land in DATA_DIR/logs/affectlens.log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^[a-z]+\s+(done|failed|missing)\s+\d+\.\d s$")
NOISE = ("TensorFlow", "XNNPACK", "absl", "W0000", "Loading weights", "it/s", "Warning")


@pytest.mark.slow  # the whole pipeline with the 0.5B LLM
def test_analyze_prints_only_its_own_progress(face_clip, tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "affectlens.ui.cli",
            "analyze",
            str(face_clip),
            "--llm-model",
            "qwen2.5-0.5b",
            "--no-save",
            "--data-dir",
            str(data),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert err, proc.stdout
    assert all(STAGE_LINE.match(ln) for ln in err), proc.stderr
    assert {ln.split()[0] for ln in err} >= {"probe", "face", "reason", "store"}
    assert not any(n in proc.stdout for n in NOISE), proc.stdout
    assert face_clip.name in proc.stdout  # the result itself
    log = (data / "logs" / "affectlens.log").read_text(encoding="utf-8", errors="replace")
    assert any(n in log for n in NOISE), log[-2000:]
