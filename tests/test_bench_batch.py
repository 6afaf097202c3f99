"""`affectlens bench --batch`'s plumbing without an analysis: which modes run, the speed-up
and the readings compared with the sequential run's, the table, the command's options."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from affectlens.evals.bench import batch as bb
from affectlens.settings import Settings


def record(label: str, cues: list[str]) -> str:
    reading = {"label": label, "dominant": label, "secondary": None, "explanation": ["x"]}
    cue_list = [{"text": c} for c in cues]
    return json.dumps({"id": "c", "error": None, "result": {"reading": reading, "cues": cue_list}})


def test_modes_speed_up_and_differing_readings(tmp_path, monkeypatch):
    out, calls = tmp_path / "out", []

    def fake_run_mode(mode, settings, clips, out_dir, parallel, timeout):
        calls.append((mode, settings.llm_backend, settings.llm_base_url, parallel))
        (out_dir / mode).mkdir(parents=True)
        for n, clip in enumerate(clips):
            label = "anger" if (mode, n) != ("server", 1) else "fear"  # one server reading differs
            (out_dir / mode / f"{clip.stem}.json").write_text(record(label, ["cue"]))
        cpm = {"sequential": 1.0, "pipelined": 1.25, "server": 1.5}[mode]
        return {"mode": mode, "parallel": parallel if mode == "server" else 1, "llm": "m",
                "clips": len(clips), "failed": [], "seconds": 60.0, "clips_per_min": cpm,
                "perception_s": 5.0, "reasoning_s": 50.0, "llm_calls": 3, "prompt_tokens": 900,
                "completion_tokens": 210, "peak_rss_mb": 3000,
                "load_before": 2.0, "load_after": 2.5}  # fmt: skip

    monkeypatch.setattr(bb, "run_mode", fake_run_mode)
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    settings = Settings(data_dir=tmp_path / "d")
    without_server = bb.run_batch_bench(settings, clips, out / "1", progress=lambda m: None)
    assert [r["mode"] for r in without_server["runs"]] == ["sequential", "pipelined"]
    report = bb.run_batch_bench(
        settings, clips, out / "2", server="http://127.0.0.1:8080/v1", server_model="q",
        parallel=3, progress=lambda m: None,
    )  # fmt: skip
    assert calls[-1] == ("server", "openai", "http://127.0.0.1:8080/v1", 3)
    runs = {r["mode"]: r for r in report["runs"]}
    assert runs["pipelined"]["speed_up"] == 1.25 and runs["server"]["speed_up"] == 1.5
    assert runs["pipelined"]["differ_from_sequential"] == []
    assert runs["server"]["differ_from_sequential"] == ["b.json"]
    table = bb.render(report)
    assert "| server (3 in flight) |" in table and "1 differ" in table and "| yes |" in table
    assert "| 3 | 900 / 210 |" in table


def test_the_command_passes_its_batch_options(tmp_path, monkeypatch):
    from affectlens.ui.cli import app

    seen = {}

    def fake_main(settings, clips, out, **kw):
        seen.update(settings=settings, clips=clips, out=out, **kw)
        return {}

    monkeypatch.setattr(bb, "main", fake_main)
    clip = tmp_path / "a.mp4"
    args = ["bench", "--batch", "--clip", str(clip), "--server", "http://h:1/v1", "--parallel",
            "4", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "r.json")]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert seen["clips"] == [clip] and seen["server"] == "http://h:1/v1" and seen["parallel"] == 4
    assert seen["out"] == tmp_path / "d" / "bench" / "batch"
    assert seen["report_file"] == tmp_path / "r.json"
    assert seen["modes"] == bb.MODES  # every mode unless --mode picks some
    res = CliRunner().invoke(app, [*args, "--mode", "sequential"])
    assert res.exit_code == 0, res.output
    assert seen["modes"] == ("sequential",)


def test_an_unknown_mode_is_refused(tmp_path):
    import pytest

    with pytest.raises(bb.BenchError, match="unknown mode fast"):
        bb.main(Settings(data_dir=tmp_path), [], tmp_path, modes=("fast",))


def test_default_clips_are_real_test_clips():
    clips = bb.default_clips()
    assert len(clips) >= 6 and all(c.is_file() for c in clips)
