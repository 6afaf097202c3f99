"""A process killed (kill -9) inside the store's write leaves no half-written record: the store
lists cleanly afterwards, and the same analysis saves, reads back whole and is indexed.

The child process stalls at a chosen point of ``AnalysisStore._write`` (half the JSON written
and synced; or the whole temporary file written, the rename next) and signals the test, which
kills it there: the kill lands inside the write by construction, not by timing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SchemaFiller

from affectlens.agent.knowledge import similar_analyses
from affectlens.agent.run import analyze
from affectlens.agent.store import AnalysisStore
from affectlens.settings import Settings

CHILD = r"""
import os, sys, time
from affectlens.agent.schemas import AnalysisResult
from affectlens.agent.store import AnalysisStore
from affectlens.settings import Settings

record, ready, where = sys.argv[1:4]
result = AnalysisResult.model_validate_json(open(record, encoding="utf-8").read())


def stall():
    open(ready, "w").close()
    time.sleep(600)


if where == "mid-write":  # half the JSON is on disk in the temporary file
    fdopen = os.fdopen

    class Half:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

        def write(self, text):
            self.fh.write(text[: len(text) // 2])
            self.fh.flush()
            os.fsync(self.fh.fileno())
            stall()

    os.fdopen = lambda fd, *a, **k: Half(fdopen(fd, *a, **k))
else:  # before-rename: the temporary file is complete, os.replace is next
    os.replace = lambda src, dst: stall()
AnalysisStore(Settings()).save(result)
"""
START_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def record(face_clip, tmp_path_factory):
    """A real analysis (real face, speech, voice tools; the LLM stand-in fills the schema)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("source"), verify_max_rounds=0)
    result = analyze(face_clip, settings, llm=SchemaFiller(), without=["scene"])
    path = AnalysisStore(settings).path(result.id)
    assert path.is_file()
    return result, path


@pytest.mark.slow  # the real perception tools load their models for the record
@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
def test_a_kill_inside_the_write_leaves_no_half_record(record, where, tmp_path):
    result, path = record
    data = tmp_path / "data"
    ready = tmp_path / "ready"
    env = {**os.environ, "AFFECTLENS_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(ready), where],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the store's write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    store = AnalysisStore(Settings(data_dir=data))
    leftovers = list((data / "analyses").iterdir())
    assert leftovers and all(p.name.startswith(".") for p in leftovers)  # the temporary file
    assert store.list() == []  # nothing listed, nothing half-read
    with pytest.raises(Exception, match="no analysis"):
        store.get(result.id)

    settings = Settings(data_dir=data)
    store = AnalysisStore(settings)
    store.save(result)  # the same analysis saves whole afterwards, and is indexed
    assert [a.id for a in store.list()] == [result.id]
    assert store.get(result.id) == result
    assert [s[0] for s in similar_analyses(result.reading.label, settings, k=1)] == [result.id]
