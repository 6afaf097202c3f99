"""The benchmark's own plumbing: the child's entry point and its settings protocol, the figures
and the Markdown block (docs/bench.md); one slow test runs a real measured analysis."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
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


@pytest.mark.slow
def test_a_measured_analysis_runs_the_pipeline_users_run(small_gguf, settings):
    """The bench times what ``affectlens analyze`` runs: the transcript's text-emotion witness
    votes on a clip with speech (it is off only when a test injects an LLM, which the bench
    did until 2026-12-05), and the meter still counts the graph's LLM calls."""
    from affectlens.agent.llm import get_llm
    from affectlens.evals.bench.meter import TokenMeter

    s = settings.model_copy(update={"llm_model": "qwen2.5-0.5b"})
    record = child.measure_once(ROOT / "samples" / "sample.mp4", s, TokenMeter(get_llm(s)))
    assert record["error"] is None and record["statuses"]["speech"] == "ok"
    assert "speech" in record["witnesses"] and "face" in record["witnesses"]
    assert record["llm"]["calls"] >= 1 and record["llm"]["completion_tokens"] > 0


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


def test_targets_are_issue_17s_and_each_is_judged_by_its_own_threshold():
    """The figures of the 2026-12-05 run (docs/bench.md): the 15 s clip at RTF 0.707 misses
    0.7, the repaired 5 s clip's 16.9 s misses 8 s, the 34.9 s cold start misses 30 s, and a
    4.2 GB peak is within 6 GB."""

    def row(length, warm, rtf, cold, peak):
        return {"length_s": length, "peak_rss_mb": peak, "cold": {"process_s": cold},
                "warm": {"duration_s": length, "total_s": warm, "rtf": rtf}}  # fmt: skip

    rows = [row(5, 16.9, 3.39, 27.9, 4084), row(15, 10.6, 0.707, 34.9, 4218)]
    t = bench.check_targets(rows)
    assert {k: v["met"] for k, v in t.items()} == {
        "rtf_15s": False, "warm_5s": False, "peak_rss_mb": True, "cold_s": False,
        "scaling_exponent": True,
    }  # fmt: skip
    assert (t["cold_s"]["value"], t["warm_5s"]["value"], t["rtf_15s"]["clip_s"]) == (34.9, 16.9, 15)
    fast = bench.check_targets([row(5, 7.5, 1.5, 20.0, 4000), row(15, 10.0, 0.66, 29.0, 4100)])
    assert all(v["met"] for v in fast.values()), fast


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


def made_up_report(**machine) -> dict:
    warm = {
        "total_s": 10.0, "rtf": 0.67, "perceive_s": 1.2, "loadavg": 1.5,
        "stages": {"probe": 0.3, "face": 1.0, "reason": 8.5},
        "llm": {"prompt_tokens_per_s": 87.4, "gen_tokens_per_s": 26.7, "tokens_per_s": 20.0,
                "completion_tokens": 131.0},
    }  # fmt: skip
    return {
        "created": "2026-01-01T00:00:00+00:00",
        "machine": {"cpu": "Made-up CPU 9000", "cores": 2, "ram_gb": 8.0, **machine},
        "settings": {"llm_model": "qwen2.5-1.5b"},
        "runs": 3,
        "results": [
            {"device": "cpu", "length_s": 15, "warm": warm, "cold": {"process_s": 27.0},
             "peak_rss_mb": 5100.0},
        ],
    }  # fmt: skip


def test_table_shows_cpu_build_and_llm_speeds():
    build = "llama-cpp-python==0.3.36 -DGGML_NATIVE=OFF -DGGML_AVX512=ON"
    report = made_up_report(llama_build=build, llama_features=["AVX2", "AVX512", "OPENMP"])
    row = dict(zip(bench.table.COLUMNS, bench.table.table_rows(report)[0], strict=True))
    assert (row["prompt tok/s"], row["gen tok/s"], row["gen tokens"]) == ("87.4", "26.7", "131")
    md = bench.render_markdown(report)
    assert "Made-up CPU 9000, 2 cores" in md
    assert f"llama.cpp build: {build}; features on: AVX2 AVX512 OPENMP" in md
    assert "| prompt tok/s | gen tok/s | gen tokens |" in md
    assert "| 87.4 | 26.7 | 131 |" in md

    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(bench.table.render_table(report))
    text = console.export_text()
    assert "Made-up CPU 9000" in text and build in text and "87.4" in text and "131" in text


def test_the_cold_start_is_broken_down_by_stage():
    report = made_up_report()
    assert bench.table.cold_lines(report) == []  # a report without the child's start figures
    report["results"][0]["cold"] = {
        "process_s": 34.9, "startup_s": 9.0, "import_s": 5.5, "llm_load_s": 2.5,
        "total_s": 25.9, "stages": {"probe": 0.3, "face": 6.2, "speech": 7.0, "verify": 0.001,
                                    "reason": 12.1},
    }  # fmt: skip
    (line,) = bench.table.cold_lines(report)
    assert line == (
        "cold 15 s cpu: 34.9 s; start 9.0 (interpreter 1.0, imports 5.5, LLM load 2.5); "
        "first analysis 25.9 (probe 0.3, face 6.2, speech 7.0, reason 12.1)"
    )
    assert f"- {line}" in bench.render_markdown(report)


def test_table_says_when_the_build_is_unknown():
    md = bench.render_markdown(made_up_report())
    assert "llama.cpp build: not recorded" in md and "features on" not in md


def test_llama_features_are_read_from_the_system_info_string():
    from affectlens.evals.bench.machine import llama_features

    info = "CPU : SSE3 = 1 | AVX = 1 | AVX_VNNI = 0 | AVX512 = 1 | AMX_INT8 = 0 | OPENMP = 1 | "
    assert llama_features(info) == ["SSE3", "AVX", "AVX512", "OPENMP"]


def test_machine_info_records_the_installed_build(monkeypatch, tmp_path):
    from affectlens import build
    from affectlens.evals.bench import machine

    (tmp_path / build.LLAMA_STAMP).write_text("llama-cpp-python==0.3.36 -DGGML_NATIVE=OFF\n")
    monkeypatch.setattr(machine, "installed_build", lambda: build.installed_build(tmp_path))
    info = machine.machine_info()
    assert info["llama_build"] == "llama-cpp-python==0.3.36 -DGGML_NATIVE=OFF"
    assert info["cpu"]


class _FakeLLM:
    """A backend whose completion call takes a known time; a stream's first piece comes at
    once, the rest later."""

    def _complete(self, messages, max_tokens, s, **kwargs):
        if kwargs.get("stream"):
            return self._pieces()
        time.sleep(0.05)
        return {"choices": [{"message": {"content": "{}"}}]}

    def _pieces(self):
        yield {"choices": [{"delta": {"content": "a"}}]}
        time.sleep(0.05)
        yield {"choices": [{"delta": {"content": "b"}}]}


def test_the_chat_clock_times_the_first_token_of_a_stream():
    from affectlens.evals.bench.chat import FirstToken

    llm = _FakeLLM()
    clock = FirstToken(llm)
    clock.start()
    assert [c["choices"][0]["delta"]["content"] for c in llm._complete([], 8, None, stream=True)]
    assert clock.first is not None and clock.first < clock.since() and clock.calls == 1
    clock.start()
    llm._complete([], 8, None)  # no llama.cpp perf counters: unknown, not a guess
    assert clock.first is None and clock.calls == 1


def test_the_chat_figures_get_their_own_block_in_the_markdown(tmp_path):
    from affectlens.evals.bench.chat import write_chat_markdown

    rows = [
        {"question": q, "first_token_s": t, "first_words_s": w, "answer_s": w,
         "llm_calls": 2, "load": 1.5}
        for q, t, w in (("Is she crying?", 2.0, 9.0), ("Why?", None, 7.0))
    ]  # fmt: skip
    figures = {"clip": "sample.mp4", "llm_model": "qwen2.5-1.5b", "questions": rows,
               "median": {"first_token_s": 2.0, "first_words_s": 8.0, "answer_s": 8.0},
               "load": 1.5}  # fmt: skip
    doc = tmp_path / "bench.md"
    doc.write_text("# B\n<!-- bench:start -->\nT\n<!-- bench:end -->\n")
    write_chat_markdown(figures, doc)
    write_chat_markdown(figures, doc)  # replaced, not appended twice
    text = doc.read_text()
    assert text.count("<!-- bench-chat:start -->") == 1 and "T\n<!-- bench:end -->" in text
    assert "time to first token **2.0 s**" in text and "(load 1.5)" in text
    assert "- Is she crying? first token 2.0 s" in text and "- Why? first token None s" in text
