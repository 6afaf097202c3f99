"""The report as a table: a rich Table for the terminal, Markdown for docs/bench.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = ("clip", "cold", "warm", "RTF", "probe", "face", "speech", "voice", "scene",
           "perceive", "text+retr", "reason", "verify", "prompt tok/s", "gen tok/s",
           "gen tokens", "peak MB", "load")  # fmt: skip


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    out = []
    for r in report["results"]:
        name = f"{r['length_s']:g} s {r['device']}"
        if "error" in r:
            out.append([name, "failed"] + [""] * (len(COLUMNS) - 2))
            continue
        w, st = r["warm"], r["warm"]["stages"]
        llm = w.get("llm", {})
        gen_tps = llm.get("gen_tokens_per_s") or llm.get("tokens_per_s")  # the latter: no perf
        tr = (st.get("textualise") or 0) + (st.get("retrieve") or 0)
        out.append(
            [
                name,
                f(r["cold"]["process_s"]),
                f(w["total_s"]),
                f(w["rtf"], "{:.2f}"),
                f(st.get("probe"), "{:.2f}"),
                f(st.get("face")),
                f(st.get("speech")),
                f(st.get("voice")),
                f(st.get("scene")),
                f(w.get("perceive_s")),
                f(tr, "{:.2f}"),
                f(st.get("reason")),
                f(st.get("verify"), "{:.2f}"),
                f(llm.get("prompt_tokens_per_s")),
                f(gen_tps),
                f(llm.get("completion_tokens"), "{:.0f}"),
                f(r["peak_rss_mb"], "{:.0f}"),
                f(w.get("loadavg"), "{:.1f}"),
            ]
        )
    return out


def _machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM{gpu}; LLM "
        f"{report['settings']['llm_model']}, {report['runs']} warm runs (median), "
        f"{report['created']}"
    )


def _build_line(report: dict[str, Any]) -> str:
    """The llama.cpp build: set-up's recorded CMake arguments and the features it reports."""
    m = report["machine"]
    build = m.get("llama_build") or "not recorded (no set-up stamp in this environment)"
    features = m.get("llama_features")
    return f"llama.cpp build: {build}" + (
        f"; features on: {' '.join(features)}" if features is not None else ""
    )


def render_table(report: dict[str, Any]):
    """A rich Table of the report (seconds; RTF = warm total / clip length)."""
    from rich.table import Table

    table = Table(
        title="AffectLens benchmark (seconds, warm medians)",
        caption=f"{_machine_line(report)}\n{_build_line(report)}",
    )
    for c in COLUMNS:
        table.add_column(c, justify="left" if c == "clip" else "right")
    for row in table_rows(report):
        table.add_row(*row)
    return table


def render_targets(report: dict[str, Any]) -> list[str]:
    lines = []
    for device, targets in report.get("targets", {}).items():
        for name, t in targets.items():
            mark = "met" if t["met"] else "MISSED"
            lines.append(f"{device}: {name} = {t['value']} (target {t['target']}): {mark}")
    return lines


def cold_lines(report: dict[str, Any]) -> list[str]:
    """Where each cold start's seconds go: the process start (imports, the LLM's load), then
    the first analysis stage by stage (the perception models load inside their stages, which
    run side by side, so their seconds overlap)."""
    lines = []
    for r in report["results"]:
        cold = r.get("cold") or {}
        if "startup_s" not in cold:
            continue
        imports, llm = cold.get("import_s", 0.0), cold.get("llm_load_s", 0.0)
        interpreter = cold["startup_s"] - imports - llm
        stages = ", ".join(
            f"{k} {v:.1f}" for k, v in cold.get("stages", {}).items() if v is not None and v >= 0.05
        )
        lines.append(
            f"cold {r['length_s']:g} s {r['device']}: {cold['process_s']:.1f} s; start "
            f"{cold['startup_s']:.1f} (interpreter {interpreter:.1f}, imports {imports:.1f}, "
            f"LLM load {llm:.1f}); first analysis {cold['total_s']:.1f} ({stages})"
        )
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(r) + " |\n" for r in table_rows(report))
    targets = "".join(f"- {line}\n" for line in render_targets(report))
    cold = "".join(f"- {line}\n" for line in cold_lines(report))
    return (
        f"Machine: {_machine_line(report)}\n\n{_build_line(report)}\n\n{head}{body}\n{targets}"
        + (f"\nCold start, stage by stage:\n\n{cold}" if cold else "")
    )


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """Replace the table between the markers in ``path`` (or write a new file)."""
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    block = f"{start}\n{render_markdown(report)}{end}"
    text = path.read_text() if path.is_file() else f"# Benchmark\n\n{start}\n{end}\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)
