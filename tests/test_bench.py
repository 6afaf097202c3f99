"""The benchmark's own plumbing, without running an analysis: the child's entry point and its
settings protocol, the figures and the Markdown block (docs/bench.md)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from affectlens.evals import bench
from affectlens.evals.bench import child

ROOT = Path(__file__).resolve().parents[1]


def test_module_run_by_hand_points_to_the_command():
    proc = subprocess.run(
        [sys.executable, "-m", "affectlens.evals.bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "affectlens bench" in proc.stderr


def test_child_reads_settings_on_stdin_and_writes_its_figures(tmp_path, monkeypatch, settings):
    seen = {}

    def fake_child_main(clips, s, started):
        seen.update(clips=clips, settings=s, started=started)
        return {"cold": {}, "warm": [], "peak_rss_mb": 1.0, "device": "cpu"}

    payload = settings.model_dump(mode="json")  # what run_child sends
    payload["llm_api_key"] = "sk-secret"
    monkeypatch.setattr(child, "child_main", fake_child_main)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(payload)))
    result = tmp_path / "result.json"
    child.child_entry(["--child", str(result), "a.mp4", "b.mp4"], started=12.5)
    assert json.loads(result.read_text())["peak_rss_mb"] == 1.0
    assert seen["clips"] == [Path("a.mp4"), Path("b.mp4")] and seen["started"] == 12.5
    assert seen["settings"].data_dir == settings.data_dir
    assert seen["settings"].llm_api_key.get_secret_value() == "sk-secret"


def test_warm_medians_and_scaling():
    runs = [
        {"total_s": t, "rtf": t / 10, "perceive_s": 1.0, "stages": {"reason": t, "probe": 0.1},
         "llm": {"tokens_per_s": 20.0}, "loadavg": [1.0, 1.0]}
        for t in (3.0, 5.0, 4.0)
    ]  # fmt: skip
    warm = bench.summarise(runs)
    assert warm["total_s"] == 4.0 and list(warm["stages"]) == ["probe", "reason"]
    assert bench.scaling_exponent([(5, 2.0), (10, 4.0), (20, 8.0)]) == pytest.approx(1.0)
    assert bench.scaling_exponent([(5, 2.0)]) is None


def test_markdown_block_is_replaced_between_the_markers(tmp_path):
    report = {
        "created": "2026-01-01T00:00:00+00:00",
        "machine": {"cpu": "cpu", "cores": 2, "ram_gb": 8.0},
        "settings": {"llm_model": "qwen2.5-0.5b"},
        "runs": 1,
        "results": [{"device": "cpu", "length_s": 5, "error": "boom"}],
    }
    doc = tmp_path / "bench.md"
    doc.write_text("# B\n\nbefore\n<!-- bench:start -->\nstale table\n<!-- bench:end -->\nafter\n")
    bench.write_markdown(report, doc)
    text = doc.read_text()
    assert text.startswith("# B\n\nbefore\n<!-- bench:start -->\nMachine: cpu, 2 cores")
    assert "| 5 s cpu | failed |" in text and "stale table" not in text
    assert text.endswith("<!-- bench:end -->\nafter\n")
