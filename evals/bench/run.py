"""The ``affectlens bench`` command: every length on every device, then the table and files."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from affectlens.evals.bench.chat import chat_latency, render_chat, write_chat_markdown
from affectlens.evals.bench.child import run_child
from affectlens.evals.bench.clips import BenchError, build_clip
from affectlens.evals.bench.figures import check_targets, median, summarise
from affectlens.evals.bench.machine import cuda_available, machine_info
from affectlens.evals.bench.table import cold_lines, render_table, render_targets, write_markdown
from affectlens.settings import Settings

DEFAULT_LENGTHS = (5, 15, 30, 60)


def _bench_settings(settings: Settings, device: str) -> Settings:
    return settings.model_copy(
        update={"device": device, "data_dir": settings.data_dir / "bench" / "store"}
    )


def prepare_index(settings: Settings) -> None:
    """Build the knowledge index once, so a cold run measures loading, not one-time indexing."""
    from affectlens.agent.knowledge import knowledge_collection

    knowledge_collection(settings)


def run_bench(
    settings: Settings,
    lengths: tuple[float, ...] = DEFAULT_LENGTHS,
    runs: int = 3,
    devices: tuple[str, ...] | None = None,
    progress=print,
) -> dict[str, Any]:
    """Benchmark every length on every device; returns the JSON-ready report."""
    if runs < 1:
        raise BenchError("runs must be at least 1")
    devices = devices or (("cpu", "cuda") if cuda_available() else ("cpu",))
    cache = settings.data_dir / "bench" / "clips"
    report: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info("cuda" if "cuda" in devices else None),
        "settings": {k: str(getattr(settings, k)) for k in (
            "llm_backend", "llm_model", "llm_max_tokens", "llm_context", "asr_model",
            "asr_compute_type", "face_backend", "frame_rate", "max_frames", "verify_max_rounds",
            "verify_prune_first", "cpu_threads")},
        "runs": runs, "results": [],
    }  # fmt: skip
    progress(f"preparing clips in {cache} ...")
    clips = {L: [build_clip(L, cache, v) for v in range(runs + 1)] for L in lengths}
    for device in devices:
        s = _bench_settings(settings, device)
        progress("building the knowledge index (once) ...")
        prepare_index(s)
        rows = []
        for L in lengths:
            progress(
                f"[{device}] {L:g} s clip: 1 cold + {runs} warm runs "
                f"(load average {os.getloadavg()[0]:.2f}) ..."
            )
            out = run_child(clips[L], s, timeout=600 + (runs + 1) * (120 + 20 * L))
            row: dict[str, Any] = {"device": device, "length_s": L}
            if "error" in out:
                row["error"] = out["error"]
                progress(f"  failed: {out['error'][-300:]}")
            else:
                row.update(
                    cold=out["cold"],
                    warm_runs=out["warm"],
                    warm=summarise(out["warm"]),
                    peak_rss_mb=out["peak_rss_mb"],
                )
                row["warm"]["duration_s"] = median([r["duration_s"] for r in out["warm"]])
                progress(
                    f"  cold {out['cold']['process_s']:.1f} s, warm median "
                    f"{row['warm']['total_s']:.1f} s, peak {out['peak_rss_mb']:.0f} MB"
                )
            rows.append(row)
        report["results"].extend(rows)
        report.setdefault("targets", {})[device] = check_targets(rows)
    return report


def main(
    settings: Settings,
    lengths: tuple[float, ...] = DEFAULT_LENGTHS,
    runs: int = 3,
    out: Path | None = Path("bench.json"),
    devices: tuple[str, ...] | None = None,
    markdown: Path | None = None,
    chat: bool = True,
) -> dict[str, Any]:
    """The ``affectlens bench`` command: run, print the table and targets (then the chat's
    time to first token, ``chat.chat_latency``), write the files."""
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 200)

    def say(msg: str) -> None:
        console.print(msg, markup=False, highlight=False)

    report = run_bench(
        settings,
        lengths,
        runs,
        devices,
        progress=say,
    )
    console.print(render_table(report))
    for line in render_targets(report) + cold_lines(report):
        console.print(line, markup=False, highlight=False)
    if chat:
        report["chat"] = chat_latency(settings, progress=say)
        say(render_chat(report["chat"]))
    if out is not None:
        out.write_text(json.dumps(report, indent=1))
        console.print(f"wrote {out}")
    if markdown is not None:
        write_markdown(report, markdown)
        if chat:
            write_chat_markdown(report["chat"], markdown)
        console.print(f"updated {markdown}")
    return report
