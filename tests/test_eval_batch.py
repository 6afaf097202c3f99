"""`affectlens eval` on top of `affectlens batch`: the clips are analysed into ``out/clips/``,
so an interrupted eval resumes without redoing the finished clips, two fresh runs give the
same readings, results.json keeps its keys, and a stop hook (the UI's Cancel) ends the batch
before its next clip.

Fast tier: perception is the voice tool alone (openSMILE/Praat, no model file) and the LLM
stand-in ``SchemaFiller`` fills the production schema; no judge, no embedding model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SchemaFiller, stable

from affectlens.agent import batch as bt
from affectlens.evals.datasets import Dataset, Sample
from affectlens.evals.runner import CLIPS_DIR, EvalStopped, run_eval
from affectlens.settings import Settings

VOICE_ONLY = ["face", "speech", "scene"]
CLIPS = {"1001_DFA_ANG_XX": "anger", "1001_DFA_HAP_XX": "happiness", "1001_DFA_SAD_XX": "sadness"}
QUICK = {"use_judge": False, "use_similarity": False, "resamples": 50}
# results.json as the runner wrote it before the clips ran through the batch
TOP_KEYS = {"dataset", "run", "metrics", "samples"}
DATASET_KEYS = {"name", "source", "format", "samples", "limit"}
RUN_KEYS = {"started", "seed", "resamples", "settings", "models", "python", "git", "seconds"}
SCORED_KEYS = {
    "id", "clip", "gold", "gold_valence", "gold_arousal", "ok", "error", "label", "dominant",
    "secondary", "confidence", "valence", "arousal", "correct", "explanation", "grounding",
    "mme", "cited_modalities", "cue_modalities", "modalities", "verified", "timings", "models",
    "seconds", "seen_in_fit",
}  # fmt: skip  # and "fusion" when a witness voted (not on a clip without voice cues)
FAILED_KEYS = {"id", "clip", "gold", "ok", "error", "seconds", "seen_in_fit"}
TEXT_ONLY_KEYS = {"id", "gold", "ok", "error", "seconds", "seen_in_fit"}


@pytest.fixture
def perceived(monkeypatch) -> list[str]:
    """Voice-only perception in every batch run; the ids of the clips perceived, in order."""
    seen: list[str] = []
    perceive = bt.perceive

    def voice_only(item, ctx, skip):
        seen.append(item.id)
        return perceive(item, ctx, [*skip, *VOICE_ONLY])

    monkeypatch.setattr(bt, "perceive", voice_only)
    return seen


@pytest.fixture
def data(tmp_path, test_data) -> Dataset:
    """Three CREMA-D clips, a broken file between the first two and a text-only sample."""
    broken = tmp_path / "broken.mp4"
    broken.write_text("This is not a video, only text named like one.\n" * 20)
    samples = [
        Sample(id=f"cremad/{name}", clip=test_data / "cremad" / f"{name}.flv", labels=[label])
        for name, label in CLIPS.items()
    ]
    samples.insert(1, Sample(id="broken", clip=broken, labels=["fear"]))
    samples.append(Sample(id="text only", labels=["neutral"], reference="A calm voice."))
    return Dataset(name="mini", source=tmp_path / "manifest.jsonl", format="jsonl", samples=samples)


class StopsAt(SchemaFiller):
    """SchemaFiller that raises KeyboardInterrupt (Ctrl-C) on its ``at``-th call."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def chat(self, messages, schema=None, **kw):
        if len(self.calls) + 1 == self.at:
            raise KeyboardInterrupt
        return super().chat(messages, schema, **kw)


def readings(out: Path) -> dict[str, tuple]:
    """Each clip's label, dominant emotion, cue texts and fused probabilities (None when no
    witness voted)."""
    rows = {}
    for line in (out / CLIPS_DIR / bt.RESULTS_JSONL).read_text().splitlines():
        rec = bt.ClipRecord.model_validate_json(line)
        res = rec.result
        if res is None or res.reading is None:
            rows[rec.id] = None
            continue
        fused = res.fusion.probs if res.fusion is not None else None
        rows[rec.id] = (res.reading.label, res.reading.dominant, [c.text for c in res.cues], fused)
    return rows


def clip_ids() -> list[str]:
    return [f"cremad-{n}" for n in CLIPS]


def test_results_keep_their_keys_and_two_fresh_runs_read_alike(tmp_path, data, perceived):
    settings = Settings(data_dir=tmp_path / "d")
    said: list[str] = []
    a = run_eval(data, settings, tmp_path / "a", llm=SchemaFiller(), progress=said.append, **QUICK)
    assert set(a) == TOP_KEYS and set(a["dataset"]) == DATASET_KEYS
    assert set(a["run"]) == RUN_KEYS | {"clips"}
    assert a["run"]["clips"] == {"folder": CLIPS_DIR, "analysed": 4, "reused": 0, "failed": 1}
    assert a["run"]["settings"]["llm_prompt_cache"] == "prefix"
    scored, broken, *rest, text_only = a["samples"]
    assert [r["id"] for r in a["samples"]] == [s.id for s in data.samples]
    for rec in (scored, *rest):
        assert rec["ok"] and set(rec) in (SCORED_KEYS, SCORED_KEYS | {"fusion"}), set(rec)
    assert set(broken) == FAILED_KEYS and broken["error"].startswith("UnreadableMedia: ")
    assert set(text_only) == TEXT_ONLY_KEYS and text_only["error"] == "no clip (text-only sample)"
    assert a["metrics"]["n"] == 5 and a["metrics"]["scored"] == 3
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(saved) == TOP_KEYS and [set(r) for r in saved["samples"]] == [
        set(r) for r in a["samples"]
    ]
    assert (tmp_path / "a" / "report.md").is_file()
    # the per-clip records, named file-safe as `affectlens batch` names them
    names = sorted(p.name for p in (tmp_path / "a" / CLIPS_DIR).glob("*.json"))
    assert names == sorted(f"{i}.json" for i in [*clip_ids(), "broken"])
    assert "0 of 4 clips reused" in said[0] and sum(m.startswith("[") for m in said) == 4

    run_eval(data, settings, tmp_path / "b", llm=SchemaFiller(), **QUICK)
    first = readings(tmp_path / "a")
    assert first == readings(tmp_path / "b")
    assert all(first[i] and first[i][0] for i in clip_ids())  # every clip has a label
    assert any(first[i][2] and first[i][3] for i in clip_ids())  # cues and fused probs compared
    assert stable(tmp_path / "a") == stable(tmp_path / "b")
    # the batch's options pass through: two reasoning threads read the clips alike
    run_eval(data, settings, tmp_path / "c", llm=SchemaFiller(), parallel=2, **QUICK)
    assert readings(tmp_path / "c") == first and stable(tmp_path / "c") == stable(tmp_path / "a")


def test_an_interrupted_eval_resumes_without_redoing_finished_clips(tmp_path, data, perceived):
    settings, out = Settings(data_dir=tmp_path / "d"), tmp_path / "out"
    # Ctrl-C during the LLM's second call: the second clip's (the sad one has no voice cue)
    with pytest.raises(KeyboardInterrupt):
        run_eval(data, settings, out, llm=StopsAt(2), **QUICK)
    assert not (out / "results.json").exists()
    records = {p.stem: bt.read_record(p) for p in (out / CLIPS_DIR).glob("*.json")}
    finished = {i: (out / CLIPS_DIR / f"{i}.json").stat().st_mtime_ns for i, r in records.items()}
    done = [i for i in clip_ids() if i in records and records[i].ok]
    assert 1 <= len(done) < len(CLIPS), records  # some clips finished, not all

    perceived.clear()
    said: list[str] = []
    res = run_eval(data, settings, out, llm=SchemaFiller(), progress=said.append, **QUICK)
    redone = [i for i in [*clip_ids(), "broken"] if i not in done]
    assert sorted(perceived) == sorted(redone)  # the finished clips were not analysed again
    assert all(
        (out / CLIPS_DIR / f"{i}.json").stat().st_mtime_ns == finished[i] for i in done
    )  # their records untouched
    assert res["run"]["clips"] == {
        "folder": CLIPS_DIR, "analysed": len(redone), "reused": len(done), "failed": 1
    }  # fmt: skip
    assert f"{len(done)} of 4 clips reused" in said[0]
    assert [r["id"] for r in res["samples"]] == [s.id for s in data.samples]
    assert [r["ok"] for r in res["samples"]] == [True, False, True, True, False]

    perceived.clear()
    again = run_eval(data, settings, out, llm=SchemaFiller(), **QUICK)
    assert perceived == ["broken"]  # only the failed clip is retried; the rest only re-scored
    assert again["run"]["clips"] == {"folder": CLIPS_DIR, "analysed": 1, "reused": 3, "failed": 1}
    fresh = tmp_path / "fresh"
    run_eval(data, settings, fresh, llm=SchemaFiller(), **QUICK)
    assert readings(out) == readings(fresh) and stable(out) == stable(fresh)


@pytest.mark.parametrize("pipelined", [True, False])
def test_should_stop_ends_the_batch_before_the_next_clip(tmp_path, data, perceived, pipelined):
    items = bt.from_samples(data.samples, "mini")
    assert [it.id for it in items] == [clip_ids()[0], "broken", *clip_ids()[1:]]
    finished: list[str] = []
    report = bt.run_batch(
        items, Settings(data_dir=tmp_path / "d"), tmp_path / "out", llm=SchemaFiller(),
        pipelined=pipelined, on_clip=lambda rec, *_: finished.append(rec.id),
        should_stop=lambda: bool(finished),
    )  # fmt: skip
    assert report.interrupted and report.done == [items[0].id] and finished == [items[0].id]
    # the pipeline perceives ahead (one clip queued, one in hand: dropped, not reasoned) and
    # starts none after the stop; a sequential run perceives none ahead
    assert perceived[0] == items[0].id and len(perceived) <= (3 if pipelined else 1)
    assert items[-1].id not in perceived
    assert [p.stem for p in (tmp_path / "out").glob("*.json")] == [items[0].id]

    perceived.clear()
    report = bt.run_batch(items, Settings(data_dir=tmp_path / "d"), tmp_path / "out",
                          llm=SchemaFiller(), pipelined=pipelined)  # fmt: skip
    assert not report.interrupted and report.skipped == [items[0].id]
    assert perceived == [it.id for it in items[1:]]


def test_an_eval_stopped_by_should_stop_raises_and_keeps_its_clips(tmp_path, data, perceived):
    out, said = tmp_path / "out", []
    with pytest.raises(EvalStopped, match="rerun"):
        run_eval(
            data, Settings(data_dir=tmp_path / "d"), out, llm=SchemaFiller(),
            progress=said.append, should_stop=lambda: any(m.startswith("[") for m in said),
            **QUICK,
        )  # fmt: skip
    assert [p.stem for p in (out / CLIPS_DIR).glob("*.json")] == [clip_ids()[0]]
    assert not (out / "results.json").exists()


def test_cli_eval_resumes_and_checks_the_batch_options(tmp_path, test_data, perceived, monkeypatch):
    from typer.testing import CliRunner

    import affectlens.agent.llm
    from affectlens.ui.cli import app

    monkeypatch.setattr(affectlens.agent.llm, "get_llm", lambda *a, **k: SchemaFiller())
    monkeypatch.setenv("AFFECTLENS_DATA_DIR", str(tmp_path / "d"))
    name = next(iter(CLIPS))
    manifest = tmp_path / "manifest.jsonl"
    clip = test_data / "cremad" / f"{name}.flv"
    manifest.write_text(json.dumps({"id": name, "clip": str(clip), "labels": ["anger"]}) + "\n")
    out = tmp_path / "out"
    args = ["eval", str(manifest), "--out", str(out), "--no-judge", "--resamples", "20"]
    res = CliRunner().invoke(app, [*args, "--sequential"])
    assert res.exit_code == 0, res.output
    assert "clips: 1 analysed, 0 reused, 0 failed" in res.output and "scored 1/1" in res.output
    assert (out / CLIPS_DIR / f"{name}.json").is_file() and perceived == [name]
    res = CliRunner().invoke(app, args)  # pipelined: same fingerprint, the clip is reused
    assert res.exit_code == 0, res.output
    assert "1 of 1 clips reused" in res.output and "clips: 0 analysed, 1 reused" in res.output
    assert perceived == [name]
    res = CliRunner().invoke(app, [*args, "--parallel", "2"])  # the embedded backend: refused
    assert res.exit_code == 2 and "OpenAI-compatible server" in res.output
