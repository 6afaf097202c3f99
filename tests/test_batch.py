"""`affectlens batch` on real clips: a corrupt clip in the middle is recorded and the run goes
on, summary.csv reads back with csv and pandas, a run killed with SIGKILL resumes without
redoing finished clips, the settings fingerprint decides what is redone, and the pipelined run
gives the sequential run's readings.

Fast tier: only the voice tool runs (openSMILE/Praat, no model file) and the LLM stand-in
``SchemaFiller`` fills the production schema; the last test uses the real tools and LLM."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import SchemaFiller

from affectlens.agent import batch as bt
from affectlens.settings import Settings
from affectlens.tools.evidence import BASIC_EMOTIONS

REPO = Path(__file__).resolve().parents[1]
VOICE_ONLY = ("face", "speech", "scene")
CLIPS = ("1001_DFA_ANG_XX", "1001_DFA_FEA_XX", "1001_DFA_HAP_XX", "1001_DFA_SAD_XX")  # sorted


def clip_folder(test_data: Path, folder: Path, names=CLIPS, broken: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(test_data / "cremad" / f"{name}.flv", folder / f"{name}.flv")
    if broken:
        (folder / broken).write_text("This is not a video, only text named like one.\n" * 20)
    (folder / "notes.txt").write_text("not media: discover() leaves it out")
    return folder


def run(items, out, settings, **kw):
    kw.setdefault("without", VOICE_ONLY)
    return bt.run_batch(items, settings, out, llm=SchemaFiller(), **kw)


def readings(out: Path) -> dict[str, tuple]:
    rows = {}
    for line in (out / bt.RESULTS_JSONL).read_text().splitlines():
        rec = bt.ClipRecord.model_validate_json(line)
        r = rec.result.reading if rec.result else None
        cues = [c.text for c in rec.result.cues] if rec.result else []
        rows[rec.id] = (r.label if r else None, r.explanation if r else None, cues)
    return rows


def test_discover_folder_glob_manifest_and_bad_input(tmp_path, test_data):
    folder = clip_folder(test_data, tmp_path / "in", names=CLIPS[:2])
    (folder / "sub").mkdir()
    shutil.copy(folder / f"{CLIPS[0]}.flv", folder / "sub" / f"{CLIPS[0]}.flv")
    items = bt.discover(folder)
    assert [it.id for it in items] == [*CLIPS[:2], f"sub-{CLIPS[0]}"]
    globbed = bt.discover(str(folder / "*.flv"))
    assert [it.id for it in globbed] == list(CLIPS[:2])
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"id": f"x/{n}", "clip": f"in/{n}.flv", "labels": ["anger", "x"]}) + "\n"
            for n in (CLIPS[0], CLIPS[0])
        )
    )
    items = bt.discover(manifest)
    assert [it.id for it in items] == [f"x-{CLIPS[0]}", f"x-{CLIPS[0]}-2"]  # safe and unique
    assert items[0].path == (folder / f"{CLIPS[0]}.flv").resolve()
    assert items[0].gold == ("anger", "x")
    with pytest.raises(bt.BatchInputError):
        bt.discover(tmp_path / "nowhere" / "*.mp4")


def test_a_failing_clip_in_the_middle_is_recorded_and_the_summary_reads_back(tmp_path, test_data):
    pd = pytest.importorskip("pandas")
    folder = clip_folder(test_data, tmp_path / "in", CLIPS[:2], broken="1001_DFA_BROKEN.mp4")
    items = bt.discover(folder)
    assert [it.id for it in items] == [CLIPS[0], "1001_DFA_BROKEN", CLIPS[1]]
    seen = []
    out = tmp_path / "out"
    report = run(
        items, out, Settings(data_dir=tmp_path / "d"), on_clip=lambda r, *_: seen.append(r)
    )
    assert report.failed == ["1001_DFA_BROKEN"] and report.done == [CLIPS[0], CLIPS[1]]
    assert [r.id for r in seen] == [it.id for it in items]  # the clip after it ran
    bad = bt.read_record(out / "1001_DFA_BROKEN.json")
    assert bad.error.type == "UnreadableMedia" and bad.error.stage == "perception"
    assert bad.result is None and not bad.ok

    with (out / bt.SUMMARY_CSV).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [it.id for it in items]
    assert rows[1]["error"].startswith("UnreadableMedia: ") and rows[1]["label"] == ""
    for row in (rows[0], rows[2]):
        assert row["error"] == "" and row["label"] and row["grounded"] == "True"
        fused = [float(row[f"fused_{e}"]) for e in BASIC_EMOTIONS]
        assert sum(fused) == pytest.approx(1.0, abs=1e-3)
    frame = pd.read_csv(out / bt.SUMMARY_CSV)
    assert list(frame.columns) == list(bt.SUMMARY_COLUMNS) and len(frame) == 3
    assert frame["seconds"].dtype.kind == "f" and frame["error"].isna().sum() == 2
    lines = (out / bt.RESULTS_JSONL).read_text().splitlines()
    assert [bt.ClipRecord.model_validate_json(x).id for x in lines] == [it.id for it in items]
    assert not list(out.glob(".*.tmp"))


def test_the_fingerprint_tells_reading_settings_from_others(tmp_path, test_data):
    base = Settings(data_dir=tmp_path / "a")
    fp = bt.fingerprint(bt.reading_settings(base))
    for other in ({"data_dir": tmp_path / "b"}, {"threads": 1}, {"port": 9999}):
        assert bt.fingerprint(bt.reading_settings(base.model_copy(update=other))) == fp, other
    changes = (
        {"llm_seed": 1},
        {"frame_rate": 4.0},
        {"decision": "llm"},
        {"asr_model": "tiny"},
        {"llm_temperature": 0.7},
        {"llm_max_tokens": 200},
        {"llm_model": "qwen2.5-0.5b"},
    )
    for change in changes:
        assert bt.fingerprint(bt.reading_settings(base.model_copy(update=change))) != fp, change
    assert bt.fingerprint(bt.reading_settings(base, ["voice"])) != fp
    assert "prompt" in bt.reading_settings(base)  # the prompt versions are part of it

    folder = clip_folder(test_data, tmp_path / "in", CLIPS[:2])
    items, out = bt.discover(folder), tmp_path / "out"
    first = run(items, out, base)
    assert first.done == list(CLIPS[:2])
    fp_first = bt.read_record(out / f"{CLIPS[1]}.json").fingerprint
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("1001_*.json")}
    again = run(items, out, Settings(data_dir=tmp_path / "elsewhere", threads=1))
    assert again.done == [] and again.skipped == list(CLIPS[:2])
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("1001_*.json")} == mtimes
    (out / f"{CLIPS[0]}.json").write_text('{"id": "half a fi')  # a damaged record is redone
    redo = run(items, out, base.model_copy(update={"decision": "llm"}))
    assert redo.done == list(CLIPS[:2]) and redo.skipped == []
    recs = [bt.read_record(out / f"{n}.json") for n in CLIPS[:2]]
    assert all(r.settings["decision"] == "llm" and r.fingerprint != fp_first for r in recs)


CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[4])
from conftest import SchemaFiller
from affectlens.agent import batch as bt
from affectlens.settings import Settings

folder, out, ready = sys.argv[1:4]
where = sys.argv[5]
third = bt.discover(folder)[2].id


def stall():
    open(ready, "w").close()
    time.sleep(600)


if where == "reasoning":  # the third clip is perceived, its reasoning never ends
    reason, calls = bt.reason, []

    def slow_reason(perceived, ctx):
        calls.append(perceived.item.id)
        if len(calls) == 3:
            stall()
        return reason(perceived, ctx)

    bt.reason = slow_reason
else:  # its record is written in full to the temporary file; the rename is next
    replace = os.replace
    mine = third + ".json"
    os.replace = lambda src, dst: stall() if str(dst).endswith(mine) else replace(src, dst)
bt.run_batch(bt.discover(folder), Settings(data_dir=out + "-data"), out, llm=SchemaFiller(),
             without=("face", "speech", "scene"))
"""
KILL_WAIT_S = 240.0  # the child imports the tools and the embedder, then runs two clips


@pytest.mark.slow  # a child process that imports the tools and runs real clips (12 s each)
@pytest.mark.parametrize("where", ["reasoning", "before-rename"])
def test_a_run_killed_mid_clip_resumes_without_redoing_finished_clips(tmp_path, test_data, where):
    folder = clip_folder(test_data, tmp_path / "in")
    out, ready = tmp_path / "out", tmp_path / "ready"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), str(out), str(ready), str(REPO / "tests"),
         where],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + KILL_WAIT_S
        while not ready.exists():
            if child.poll() is not None:
                pytest.fail(f"the child ended first: {child.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the child never reached its third clip"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("1001_*.json")}
    assert sorted(finished) == [f"{n}.json" for n in CLIPS[:2]]
    assert all(bt.read_record(out / n).ok for n in finished)  # whole records, nothing half
    if where == "before-rename":
        assert len(list(out.glob(".*.tmp"))) == 1  # the killed write's temporary file

    items = bt.discover(folder)
    report = run(items, out, Settings(data_dir=tmp_path / "out-data"))
    assert report.skipped == list(CLIPS[:2]) and report.done == list(CLIPS[2:])
    assert {n: (out / n).stat().st_mtime_ns for n in finished} == finished  # not redone
    assert not list(out.glob(".*.tmp"))
    assert list(readings(out)) == list(CLIPS)


def test_pipelined_gives_the_sequential_readings(tmp_path, test_data):
    folder = clip_folder(test_data, tmp_path / "in", CLIPS[:3])
    items, settings = bt.discover(folder), Settings(data_dir=tmp_path / "d")
    run(items, tmp_path / "seq", settings, pipelined=False)
    run(items, tmp_path / "pipe", settings, pipelined=True)
    assert readings(tmp_path / "seq") == readings(tmp_path / "pipe")
    assert all(label for label, _, _ in readings(tmp_path / "seq").values())


def test_cli_batch_exit_status_and_files(tmp_path, test_data, monkeypatch):
    from typer.testing import CliRunner

    import affectlens.agent.llm
    from affectlens.ui.cli import app

    monkeypatch.setattr(affectlens.agent.llm, "get_llm", lambda *a, **k: SchemaFiller())
    folder = clip_folder(test_data, tmp_path / "in", CLIPS[:1], broken="zz.mp4")
    out = tmp_path / "out"
    args = ["batch", str(folder), "--out", str(out), "--data-dir", str(tmp_path / "d"),
            *(x for m in VOICE_ONLY for x in ("--without", m))]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output  # one clip failed
    assert "1 analysed, 0 already done, 1 failed" in res.output
    assert (out / bt.SUMMARY_CSV).is_file() and (out / f"{CLIPS[0]}.json").is_file()
    res = CliRunner().invoke(app, [*args, "--limit", "1"])
    assert res.exit_code == 0, res.output  # the good clip alone: done before, skipped
    assert "0 analysed, 1 already done, 0 failed" in res.output
    res = CliRunner().invoke(app, ["batch", str(tmp_path / "none*.mp4"), "--out", str(out)])
    assert res.exit_code == 2 and "input error" in res.output
    res = CliRunner().invoke(app, [*args, "--parallel", "2"])  # the embedded backend
    assert res.exit_code == 2 and "OpenAI-compatible server" in res.output


@pytest.mark.slow  # the real perception tools and the embedded LLM
def test_pipelined_equals_sequential_with_the_real_models(tmp_path, test_data, face_clip):
    folder = clip_folder(test_data, tmp_path / "in", CLIPS[:2])
    shutil.copy(face_clip, folder / "single_face.mp4")
    items = bt.discover(folder)
    settings = Settings(
        data_dir=tmp_path / "d", llm_model="qwen2.5-0.5b", llm_prompt_cache="prefix"
    )
    bt.run_batch(items, settings, tmp_path / "seq", pipelined=False)
    bt.run_batch(items, settings, tmp_path / "pipe", pipelined=True)
    assert readings(tmp_path / "seq") == readings(tmp_path / "pipe")


class InFlight(SchemaFiller):
    """SchemaFiller that counts the calls in flight at once. The first call waits (up to a
    minute) for a second one to start, so the count does not depend on how fast this host
    perceives the next clip; a run that never has two in flight fails after that minute."""

    def __init__(self):
        super().__init__()
        self.now = self.most = 0
        self.lock = threading.Lock()
        self.second = threading.Event()
        self.first = True

    def chat(self, messages, schema=None, **kw):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            first, self.first = self.first, False
            if self.now >= 2:
                self.second.set()
        if first:
            self.second.wait(timeout=60)
        with self.lock:
            self.now -= 1
        return super().chat(messages, schema, **kw)


def test_parallel_reasoning_keeps_several_requests_in_flight_and_the_readings(tmp_path, test_data):
    folder = clip_folder(test_data, tmp_path / "in")
    items, settings = bt.discover(folder), Settings(data_dir=tmp_path / "d")
    run(items, tmp_path / "seq", settings, pipelined=False)
    llm, seen = InFlight(), []
    report = bt.run_batch(
        items, settings, tmp_path / "par", parallel=3, llm=llm, without=VOICE_ONLY,
        on_clip=lambda rec, done, todo: seen.append(done),
    )  # fmt: skip
    assert llm.most >= 2  # a second clip's reasoning started while the first's was running
    assert report.done == list(CLIPS) and seen == [1, 2, 3, 4]
    assert readings(tmp_path / "par") == readings(tmp_path / "seq")
    with pytest.raises(ValueError, match="OpenAI-compatible"):
        bt.run_batch(items, settings, tmp_path / "x", parallel=2)  # an embedded model: refused
