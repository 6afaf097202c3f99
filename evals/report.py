"""The Markdown report and its plots, regenerated from ``results.json`` alone.

``python -m affectlens.evals.report DIR`` (or ``affectlens eval --report-only DIR``) rewrites
``DIR/report.md`` and the PNGs beside it; nothing is re-run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPORT_FILE = "report.md"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(fig: dict) -> str:
    return f"{_fmt(fig.get('value'))} [{_fmt(fig.get('lo'))}, {_fmt(fig.get('hi'))}]"


def _save(fig, path: Path) -> Path:
    """Every report figure: tight layout, 110 dpi, closed after saving (reports run in loops)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(confusion: dict, path: Path) -> Path:
    labels, matrix = confusion["labels"], confusion["matrix"]
    cols = [*labels, "other"]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xlabel("predicted (dominant)")
    ax.set_ylabel("gold")
    ax.set_title("Basic-emotion confusion")
    return _save(fig, path)


def plot_calibration(calibration: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    curve = calibration.get("curve", [])
    if curve:
        ax.plot(
            [c["confidence"] for c in curve],
            [c["accuracy"] for c in curve],
            "o-",
            label=f"ECE {_fmt(calibration.get('ece'))}",
        )
        for c in curve:
            ax.annotate(
                str(c["count"]),
                (c["confidence"], c["accuracy"]),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_title("Reliability (equal-width bins)")
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_modalities(results: dict, path: Path) -> Path:
    """Left: share of explanation citations per modality. Right: the change in basic accuracy
    and grounded share when a modality group is removed (when robustness was run)."""
    cited = results["metrics"].get("cited_modalities", {})
    robust = results.get("robustness")
    fig, axes = plt.subplots(1, 2 if robust else 1, figsize=(10 if robust else 5, 4))
    axes = axes if robust else [axes]
    total = sum(cited.values()) or 1
    names = sorted(cited)
    axes[0].bar(names, [cited[n] / total for n in names], color="tab:blue")
    axes[0].set_ylabel("share of cited cues")
    axes[0].set_title("Citations per modality")
    if robust:
        conds = [c for c in robust if c != "conditions"]
        keys = ("basic_accuracy", "grounded_share", "mme_cot")
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            axes[1].bar(
                [i + k * width for i in range(len(conds))],
                [robust[c]["delta"].get(key, 0.0) for c in conds],
                width,
                label=key,
            )
        axes[1].set_xticks([i + width for i in range(len(conds))], conds)
        axes[1].axhline(0, color="black", linewidth=0.8)
        axes[1].set_ylabel("change vs all modalities")
        axes[1].set_title("Modality removed")
        axes[1].legend(fontsize=8)
    return _save(fig, path)


def render_markdown(results: dict) -> str:
    ds, run, m = results["dataset"], results["run"], results["metrics"]
    lines = [
        f"# Evaluation: {ds['name']}",
        "",
        f"{m['scored']} of {m['n']} samples scored ({m['failed']} failed); source `{ds['source']}`;"
        f" started {run.get('started')}, {_fmt(run.get('seconds'), 1)} s;"
        f" git `{run.get('git')}`; bootstrap {run.get('resamples')} resamples,"
        f" seed {run.get('seed')}.",
        "",
        "## Models and prompts",
        "",
    ]
    for role, models in sorted(run.get("models", {}).items()):
        lines.append(f"- **{role}**: {', '.join(models)}")
    for role, info in (run.get("prompts") or {}).items():
        lines.append(
            f"- prompt **{role}**: `{info['prompt']}` sha256 `{info['prompt_sha256'][:16]}`"
        )
    lines += [
        "",
        "## Headline figures (95% bootstrap CI)",
        "",
        "| metric | value [lo, hi] |",
        "|---|---|",
    ]
    for name, fig in m.get("headline", {}).items():
        lines.append(f"| {name} | {_ci(fig)} |")
    if m.get("judge"):
        j = m["judge"]
        lines += [
            "",
            f"Judge: {j['n']} judged, {j['failures']} failures"
            + (f" ({'; '.join(e for e in j['errors'] if e)[:300]})" if j["failures"] else ""),
        ]
    rec = m.get("recognition")
    if rec:
        lines += ["", "## Recognition", ""]
        for key in (
            "basic_accuracy",
            "basic_uar",
            "basic_macro_f1",
            "compound_macro_f1",
            "compound_accuracy",
            "compound_dominant_accuracy",
            "compound_secondary_accuracy",
            "compound_parts_f1",
        ):
            if key in rec:
                lines.append(f"- {key}: {_fmt(rec[key])}")
        recall = rec.get("basic_per_class_recall") or {}
        if recall:
            lines.append(
                "- per-class recall: " + ", ".join(f"{k} {_fmt(v, 2)}" for k, v in recall.items())
            )
        if m.get("decisions"):
            lines += ["", "| decision | n | accuracy | UAR |", "|---|---|---|---|"]
            for d, f in m["decisions"].items():
                lines.append(f"| {d} | {f['n']} | {_fmt(f['accuracy'])} | {_fmt(f['uar'])} |")
            lines.append(
                f"\nLLM vs fusion conflicts: {m.get('conflicts', 0)}; samples whose "
                f"speaker the shipped fusion was fitted on (not held out): "
                f"{m.get('seen_in_fit', 0)}\n"
            )
        elif "seen_in_fit" in m:
            lines.append(
                "\nThe LLM explained the fused decision and named no emotion of its own, so the "
                "decision rules are not compared here (run with decision = llm for that); "
                f"samples whose speaker the shipped fusion was fitted on: {m['seen_in_fit']}\n"
            )
        ov = m.get("open_vocab", {})
        lines.append(
            f"- open vocabulary (wheel groups): precision {_fmt(ov.get('precision'))}, "
            f"recall {_fmt(ov.get('recall'))}, F {_fmt(ov.get('f1'))}"
        )
        lines += [
            "",
            "![confusion](confusion.png)",
            "",
            "## Calibration",
            "",
            "![calibration](calibration.png)",
            "",
            "## Modalities",
            "",
            "![modalities](modalities.png)",
        ]
    robust = results.get("robustness")
    if robust:
        conds = [c for c in robust if c != "conditions"]
        keys = sorted({k for c in conds for k in robust[c]["delta"]})
        lines += [
            "",
            "## Robustness (change vs all modalities)",
            "",
            "| metric | " + " | ".join(conds) + " |",
            "|---|" + "---|" * len(conds),
        ]
        for k in keys:
            lines.append(
                f"| {k} | " + " | ".join(_fmt(robust[c]["delta"].get(k)) for c in conds) + " |"
            )
    lines += [
        "",
        "## Per clip",
        "",
        "| id | gold | predicted | conf. | grounded | halluc. | CoT | judge (clue/label) | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.get("samples", []):
        if not r.get("ok"):
            lines.append(
                f"| {r['id']} | {', '.join(r['gold'])} | failed: {r.get('error')} "
                f"| | | | | | {_fmt(r.get('seconds'), 1)} |"
            )
            continue
        j = r.get("judge")
        judge = (
            f"{j['scores']['clue_overlap']}/{j['scores']['label_overlap']}"
            if j and j["ok"]
            else ("failed" if j else "")
        )
        lines.append(
            f"| {r['id']} | {', '.join(r['gold'])} | {r['label']} | {_fmt(r['confidence'], 2)} "
            f"| {_fmt(r['grounding']['grounded_share'], 2)} "
            f"| {_fmt(r['grounding']['hallucinated_rate'], 2)} | {_fmt(r['mme']['cot'], 2)} "
            f"| {judge} | {_fmt(r.get('seconds'), 1)} |"
        )
    lines += ["", "## Explanations", ""]
    for r in results.get("samples", []):
        if r.get("ok"):
            lines.append(f"- **{r['id']}** ({r['label']}): " + " ".join(r["explanation"]))
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path) -> Path:
    """Regenerate ``report.md`` and its plots in ``out_dir`` from ``results.json``."""
    out = Path(out_dir)
    results_file = out / "results.json"
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} not found: run `affectlens eval` first")
    results = json.loads(results_file.read_text())
    m = results["metrics"]
    if m.get("recognition"):
        plot_confusion(m["recognition"]["basic_confusion"], out / "confusion.png")
        plot_calibration(m["calibration"], out / "calibration.png")
        plot_modalities(results, out / "modalities.png")
    path = out / REPORT_FILE
    path.write_text(render_markdown(results))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m affectlens.evals.report RESULTS_DIR")
    print(write_report(sys.argv[1]))
