"""`affectlens batch --ray`: a local Ray instance with 2 worker actors gives the sequential
run's records (label and cues) on real clips; the worker's wire format round-trips; a missing
Ray says how to install it."""

from __future__ import annotations

import shutil
import sys

import pytest
from conftest import SchemaFiller
from test_batch import CLIPS, VOICE_ONLY, clip_folder, readings

from affectlens.agent import batch as bt
from affectlens.agent import batch_ray
from affectlens.agent.state import RunContext
from affectlens.settings import Settings


def test_a_worker_reply_round_trips_to_the_outcome(tmp_path, test_data):
    folder = clip_folder(test_data, tmp_path / "in", CLIPS[:1], broken="zz.mp4")
    good, bad = bt.discover(folder)
    ctx = RunContext(settings=Settings(data_dir=tmp_path / "d"), llm=SchemaFiller(), save=False)
    worker = batch_ray.ClipWorker(ctx, list(VOICE_ONLY))
    ok = batch_ray.outcome_of(good, worker.analyse(good))
    direct = bt.analyse(bt.perceive(good, ctx, list(VOICE_ONLY)), ctx)
    assert ok.error is None and ok.result.reading.label == direct.result.reading.label
    assert [c.text for c in ok.result.cues] == [c.text for c in direct.result.cues]
    failed = batch_ray.outcome_of(bad, worker.analyse(bad))
    assert failed.result is None and failed.error.type == "UnreadableMedia"
    assert worker.peak_rss_mb() > 0


def test_without_ray_the_error_says_how_to_install_it(tmp_path, test_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    items = bt.discover(clip_folder(test_data, tmp_path / "in", CLIPS[:1]))
    with pytest.raises(batch_ray.RayMissingError, match=r"affectlens\[cluster\]"):
        bt.run_batch(items, Settings(data_dir=tmp_path / "d"), tmp_path / "out", ray="local")


@pytest.mark.slow  # a Ray instance, two actors each loading the tools and the 0.5B LLM
@pytest.mark.timeout(2400)  # two runs of three clips; minutes more on a loaded machine
def test_a_local_ray_run_with_two_workers_equals_the_sequential_run(tmp_path, test_data, face_clip):
    pytest.importorskip("ray", reason="Ray is the cluster extra: scripts/setup.sh --test")
    folder = clip_folder(test_data, tmp_path / "in", CLIPS[:2])
    shutil.copy(face_clip, folder / "single_face.mp4")
    items = bt.discover(folder)
    # the 0.5B, and no text-emotion witness (it reads the 1.5B's log-probs): ~2-3 GB an actor;
    # 'prefix': every prompt computed from the same saved system turn, in any process and order
    settings = Settings(
        data_dir=tmp_path / "d", llm_model="qwen2.5-0.5b", llm_prompt_cache="prefix",
        text_emotion=False,
    )  # fmt: skip
    without = ("scene",)  # CLIP is the one tool left out: each actor loads every other model
    seq = bt.run_batch(items, settings, tmp_path / "seq", pipelined=False, without=without)
    par = bt.run_batch(
        items, settings, tmp_path / "ray", ray="local", ray_workers=2, without=without
    )
    assert par.done == seq.done == [it.id for it in items] and not par.failed
    assert len(par.worker_peak_mb) == 2 and all(mb > 100 for mb in par.worker_peak_mb)
    ray_rows, seq_rows = readings(tmp_path / "ray"), readings(tmp_path / "seq")
    assert list(ray_rows) == list(seq_rows)  # results.jsonl in the input's order
    for clip in seq_rows:
        (label, _, cues), (label_seq, _, cues_seq) = ray_rows[clip], seq_rows[clip]
        assert (label, cues) == (label_seq, cues_seq), clip
    assert any(cues for _, _, cues in seq_rows.values())
    one = bt.read_record(tmp_path / "ray" / f"{items[0].id}.json")
    assert one.fingerprint == bt.read_record(tmp_path / "seq" / f"{items[0].id}.json").fingerprint
