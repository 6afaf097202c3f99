"""Killing `affectlens analyze` mid-run (kill -9) leaves no half-written record: the store lists
cleanly afterwards and a new analysis saves and indexes fine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent.schemas import AnalysisResult  # noqa: E402
from affectlens.agent.store import AnalysisStore  # noqa: E402
from affectlens.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"
FACE_CLIP = (ROOT / ".." / "shared" / "data" / "pyfeat" / "single_face.mp4").resolve()
LLM = "qwen2.5-0.5b"
START_TIMEOUT_S = 300.0


@pytest.mark.slow  # runs two real analyses with the 0.5B LLM
def test_kill_mid_analysis_leaves_the_store_clean(tmp_path):
    env = {
        **os.environ,
        "AFFECTLENS_DATA_DIR": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "AFFECTLENS_LLM_MODEL": LLM,
    }
    cli = [sys.executable, "-c", "from affectlens.ui.cli import main; main()"]
    proc = subprocess.Popen(
        [*cli, "analyze", str(SAMPLE)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # The chroma index appears at the retrieve step: perception is done, reasoning is next.
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (tmp_path / "chroma").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the analysis never reached the retrieve step"
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.3)  # mid index build or mid reasoning
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    settings = Settings(
        data_dir=tmp_path, llm_model=LLM, llm_max_tokens=512, verify_max_rounds=0, device="cpu"
    )
    store = AnalysisStore(settings)
    assert store.list() == []  # killed before store: nothing, and nothing half-written
    for p in (tmp_path / "analyses").glob("*.json") if (tmp_path / "analyses").is_dir() else []:
        AnalysisResult.model_validate(json.loads(p.read_text()))

    from affectlens.agent.knowledge import similar_analyses
    from affectlens.agent.run import analyze

    result = analyze(FACE_CLIP, settings)  # saves and indexes in the same directory
    listed = store.list()
    assert [a.id for a in listed] == [result.id]
    stored = store.get(result.id)
    assert stored.cues == result.cues and stored.reading == result.reading
    assert similar_analyses(result.reading.label if result.reading else "face", settings, k=1)
