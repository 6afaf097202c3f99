"""Batch analysis of a corpus: one result file per clip, resumable, perception overlapped.

``run_batch(items, settings, out)`` analyses every clip into ``out/<id>.json`` (a
``ClipRecord``: the settings fingerprint, the seconds, a typed error or the full
``AnalysisResult``), then rebuilds ``results.jsonl`` and ``summary.csv`` from those files. A
rerun skips the clips already done with the same fingerprint (``fingerprint``: the settings
that change a reading) and redoes the others; every file is written atomically (tmp +
``os.replace``), so a kill leaves no half-written file. A clip that fails is recorded and the
run goes on.

Pipelined (the default), one thread perceives the next clip (probe and the tools, the graph
stopped before ``textualise``) while the caller's thread reasons over the current one (the
graph entered at ``textualise`` with that evidence); a queue of one clip keeps memory flat.
The reasoning calls happen in the input order either way, so a pipelined run gives the same
readings as a sequential one.

With ``parallel=N`` (an OpenAI-compatible server's slots) N reasoning threads take clips from
a queue of N, so N requests are in flight; with ``ray=ADDRESS`` the clips run on Ray actors
(``agent/batch_ray.py``). Either way this process writes every record, and the index lists
them in the input's order.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import itertools
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from affectlens.agent.schemas import AnalysisResult, Modality
from affectlens.agent.store import write_atomic
from affectlens.settings import Settings
from affectlens.tools.evidence import BASIC_EMOTIONS

RESULTS_JSONL = "results.jsonl"
SUMMARY_CSV = "summary.csv"
MEDIA_SUFFIXES = {
    ".mp4", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".m4v",
    ".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus",
    ".jpg", ".jpeg", ".png", ".bmp", ".webp",
}  # fmt: skip
# The settings that change a reading; storage, server, limits and thread counts do not.
READING_SETTINGS = (
    "device", "frame_rate", "max_frames", "max_duration_s",
    "asr_model", "asr_compute_type", "asr_languages", "asr_language_min_prob",
    "face_backend", "pyfeat_weights_dir", "clip_model", "clip_pretrained", "ser_model",
    "text_emotion", "llm_backend", "llm_model", "llm_multimodal", "llm_context",
    "llm_max_tokens", "llm_temperature", "llm_seed", "verify_max_rounds", "verify_prune_first",
    "decision",
)  # fmt: skip
# Fitted files a reading depends on: refitting them changes readings like a setting does.
SHARED = 0o644  # a batch's output folder is the user's to share (the store's records stay 0600)
SUMMARY_COLUMNS = (
    "id", "file", "label", "dominant", "secondary",
    *(f"fused_{e}" for e in BASIC_EMOTIONS),
    "confidence", "grounded", "seconds", "error", "gold",
)  # fmt: skip
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class BatchInputError(ValueError):
    """INPUT names no clip: no such file, folder or glob match, or an unreadable manifest."""


@dataclass(frozen=True)
class BatchItem:
    """One clip to analyse; ``id`` names its result file."""

    id: str
    path: Path
    gold: tuple[str, ...] = ()


class ClipError(BaseModel):
    """Why a clip has no reading: the exception's type (``MediaError`` subclasses for bad
    media) and message, and the stage it happened in."""

    type: str
    message: str
    stage: str = Field(
        description="'perception', 'reasoning', 'reading' (no reading made) or 'worker' (a "
        "Ray worker was lost)."
    )


class ClipRecord(BaseModel):
    """What ``out/<id>.json`` holds."""

    id: str
    file: str
    gold: list[str] = []
    fingerprint: str
    settings: dict[str, Any] = Field(description="The fingerprinted settings, readable.")
    finished: datetime = Field(default_factory=lambda: datetime.now(UTC))
    seconds: float = Field(description="Perception plus reasoning time of this clip.")
    error: ClipError | None = None
    result: AnalysisResult | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BatchReport:
    total: int
    skipped: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False  # Ctrl-C, or ``should_stop`` said stop before a clip
    worker_peak_mb: list[float] = field(default_factory=list)  # a Ray run's actors

    @property
    def clips_per_minute(self) -> float:
        """Clips analysed (or failed) in this run per minute; skipped clips do not count."""
        n = len(self.done) + len(self.failed)
        return 60.0 * n / self.seconds if self.seconds > 0 else 0.0


# --- input -----------------------------------------------------------------------------------


def discover(source: str | Path) -> list[BatchItem]:
    """A folder (its ``manifest.jsonl``/``.csv`` when it has one, else every media file under
    it), a manifest file (the evals' format), a single media file, or a glob."""
    path = Path(source).expanduser()
    if path.is_dir():
        if any((path / m).is_file() for m in ("manifest.jsonl", "manifest.csv")):
            return _from_manifest(path)
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_media(p))
        return _named([(p.relative_to(path).with_suffix(""), p, ()) for p in files], path)
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".csv"):
            return _from_manifest(path)
        return _named([(Path(path.stem), path, ())], path)
    matches = sorted(Path(p) for p in glob.glob(str(source), recursive=True))
    files = [p for p in matches if p.is_file() and _is_media(p)]
    if not files:
        raise BatchInputError(f"{source}: no such file or folder, and no media file matches it")
    return from_paths(files)


def from_paths(paths: Iterable[str | Path]) -> list[BatchItem]:
    """Clips named by their file names (a repeated name gets '-2')."""
    return _named([(Path(Path(p).stem), Path(p), ()) for p in paths], "the paths given")


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_SUFFIXES and not path.name.startswith(".")


def _from_manifest(path: Path) -> list[BatchItem]:
    from affectlens.evals.datasets import DatasetError, load_dataset

    try:
        data = load_dataset(path)
    except DatasetError as exc:
        raise BatchInputError(str(exc)) from exc
    return from_samples(data.samples, path)


def from_samples(samples: Iterable[Any], source: Any = "the samples") -> list[BatchItem]:
    """Clips of an eval dataset's samples (``evals.datasets.Sample``), their labels kept as
    gold; text-only samples (no clip) are left out. The evals run their clips through this."""
    rows = [(Path(s.id), s.clip, tuple(s.labels)) for s in samples if s.clip is not None]
    return _named(rows, source)


def _named(rows: Iterable[tuple[Path, Path, tuple[str, ...]]], source: Any) -> list[BatchItem]:
    """Safe, unique ids (they name files): 'sub/clip 1' -> 'sub-clip-1', a repeat gets '-2'."""
    items, seen = [], set()
    for name, path, gold in rows:
        base = _UNSAFE.sub("-", "-".join(name.parts)).strip("-.")[:120] or "clip"
        ident, n = base, 1
        while ident.lower() in seen:
            n += 1
            ident = f"{base}-{n}"
        seen.add(ident.lower())
        items.append(BatchItem(ident, Path(path), gold))
    if not items:
        raise BatchInputError(f"{source}: no clip to analyse")
    return items


# --- the settings fingerprint ----------------------------------------------------------------


def reading_settings(
    settings: Settings, without: Iterable[str] = (), llm: Any = None
) -> dict[str, Any]:
    """The settings a reading depends on, with the prompt versions and the fitted files."""
    from affectlens.agent.fusion import PARAMS_FILE
    from affectlens.agent.reason import prompt_versions
    from affectlens.agent.text_emotion import HEAD_FILE
    from affectlens.tools.face import CALIBRATION_FILE

    out = json.loads(settings.model_dump_json(include=set(READING_SETTINGS)))
    out["without"] = sorted(without)
    out.update(prompt_versions())
    out["fitted"] = {  # each file as its owner names it, keyed "agent/fusion.json" as before
        f"{path.parent.name}/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in (PARAMS_FILE, HEAD_FILE, CALIBRATION_FILE)
        if path.is_file()
    }
    if llm is not None:  # an injected LLM (tests, a caller's own client) replaces the setting
        out["llm_model"] = getattr(llm, "model_id", type(llm).__name__)
    return out


def fingerprint(readable: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(readable, sort_keys=True).encode()).hexdigest()[:16]


# --- files -----------------------------------------------------------------------------------


def record_path(out: Path, item_id: str) -> Path:
    return out / f"{item_id}.json"


def read_record(path: Path) -> ClipRecord | None:
    """The record in ``path``; None when absent or unreadable (then the clip is redone)."""
    try:
        return ClipRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return None


def summary_row(rec: ClipRecord) -> dict[str, Any]:
    result = rec.result
    reading = result.reading if result is not None else None
    fused = result.fusion.probs if result is not None and result.fusion is not None else {}
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, "")
    row.update(id=rec.id, file=rec.file, seconds=round(rec.seconds, 3), gold="|".join(rec.gold))
    if reading is not None:
        row.update(
            label=reading.label,
            dominant=reading.dominant,
            secondary=reading.secondary or "",
            confidence=round(reading.confidence, 4),
        )
    for e in BASIC_EMOTIONS:
        if e in fused:
            row[f"fused_{e}"] = round(fused[e], 4)
    if result is not None:
        row["grounded"] = result.verification.grounded
    if rec.error is not None:
        row["error"] = f"{rec.error.type}: {rec.error.message}"
    return row


def rebuild_index(out: Path, items: list[BatchItem]) -> list[ClipRecord]:
    """``results.jsonl`` and ``summary.csv`` from the per-clip files of ``items``, in the
    input's order (clips not done yet are left out), each written atomically."""
    records = [r for it in items if (r := read_record(record_path(out, it.id))) is not None]
    write_atomic(out / RESULTS_JSONL, "".join(r.model_dump_json() + "\n" for r in records), SHARED)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    writer.writerows(summary_row(r) for r in records)
    write_atomic(out / SUMMARY_CSV, buf.getvalue(), SHARED)
    return records


def _clean_temporaries(out: Path) -> None:
    """Temporary files a killed run left behind (never a finished file)."""
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


# --- the two stages --------------------------------------------------------------------------


@dataclass
class Perceived:
    """One clip's state after perception (the graph stopped before textualise)."""

    item: BatchItem
    state: dict[str, Any] | None
    error: ClipError | None
    seconds: float


def perceive(item: BatchItem, ctx: Any, without: list[Modality]) -> Perceived:
    """probe and the tools of the analysis graph; a bad file becomes a typed error."""
    from affectlens.agent.graph import build_graph
    from affectlens.agent.run import new_id

    t0 = time.perf_counter()
    try:
        state = build_graph("probe").invoke(
            {
                "run_id": uuid.uuid4().hex,
                "path": str(item.path),
                "source": str(item.path.resolve()),
                "without": list(without),
                "result_id": new_id(item.path),
                "rounds": 0,
            },
            context=ctx,
            interrupt_before=["textualise"],
        )
    except Exception as exc:  # noqa: BLE001 - MediaError and anything else: recorded, run goes on
        error = ClipError(type=type(exc).__name__, message=str(exc)[:500], stage="perception")
        return Perceived(item, None, error, time.perf_counter() - t0)
    if not ctx.settings.llm_multimodal:
        state.pop("decoded", None)  # only a vision-language model needs the frames again
    return Perceived(item, dict(state), None, time.perf_counter() - t0)


def reason(perceived: Perceived, ctx: Any) -> tuple[AnalysisResult | None, ClipError | None]:
    """textualise -> retrieve -> reason -> verify -> store on the perceived evidence."""
    from affectlens.agent.graph import build_graph

    if perceived.state is None:
        return None, perceived.error
    keys = ("run_id", "path", "source", "without", "result_id", "rounds", "media", "evidence")
    start = {k: perceived.state[k] for k in keys if k in perceived.state}
    for k in ("models", "timings", "decoded"):
        if perceived.state.get(k) is not None:
            start[k] = perceived.state[k]
    try:
        result = build_graph("textualise").invoke(start, context=ctx)["result"]
    except Exception as exc:  # noqa: BLE001
        return None, ClipError(type=type(exc).__name__, message=str(exc)[:500], stage="reasoning")
    if result.reading is None:
        return result, ClipError(
            type="NoReading", message=(result.error or "no reading")[:500], stage="reading"
        )
    return result, None


# --- the run ---------------------------------------------------------------------------------

OnClip = Callable[[ClipRecord, int, int], None]  # (record, done so far, to do)


@dataclass
class Outcome:
    """One clip analysed, wherever it ran (this process or a Ray actor)."""

    item: BatchItem
    result: AnalysisResult | None
    error: ClipError | None
    seconds: float


Emit = Callable[[Outcome], None]


def analyse(perceived: Perceived, ctx: Any) -> Outcome:
    """The reasoning stage on a perceived clip, timed (perception's seconds added)."""
    t0 = time.perf_counter()
    result, error = reason(perceived, ctx)
    seconds = perceived.seconds + time.perf_counter() - t0
    return Outcome(perceived.item, result, error, round(seconds, 3))


def plan(
    items: list[BatchItem], out: Path, fp: str, *, retry_failed: bool = True
) -> tuple[list[BatchItem], list[BatchItem]]:
    """(to do, skipped): a clip is skipped when its record has this fingerprint and (unless
    ``retry_failed`` is off) no error."""
    todo: list[BatchItem] = []
    skipped: list[BatchItem] = []
    for it in items:
        rec = read_record(record_path(out, it.id))
        done = rec is not None and rec.fingerprint == fp and (rec.ok or not retry_failed)
        (skipped if done else todo).append(it)
    return todo, skipped


def run_batch(
    items: list[BatchItem],
    settings: Settings,
    out: str | Path,
    *,
    pipelined: bool = True,
    parallel: int = 1,
    ray: str | None = None,
    ray_workers: int = 2,
    without: Iterable[str] = (),
    retry_failed: bool = True,
    store: bool = False,
    llm: Any = None,
    on_start: Callable[[int, int], None] | None = None,
    on_clip: OnClip | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchReport:
    """Analyse ``items`` into ``out``; see the module docstring. ``parallel``: reasoning
    requests in flight (an OpenAI-compatible server's slots); ``ray``: run on a Ray cluster
    (``"local"``, ``"auto"`` or an address) with ``ray_workers`` actors. ``on_start(to_do,
    skipped)`` and ``on_clip(record, done, to_do)`` report progress; ``store`` also saves each
    result in the user's analyses (``settings.data_dir``); ``llm`` replaces the configured LLM.
    ``should_stop()`` is asked before each clip is started (perceived, and again before a
    perceived clip is reasoned): once it says True no clip starts, the clips in progress
    finish and the run returns with ``interrupted`` set (a rerun resumes)."""
    from affectlens.agent.run import _without
    from affectlens.agent.state import RunContext

    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    if parallel > 1 and llm is None and settings.llm_backend != "openai":
        raise ValueError(
            "several reasoning requests in flight need an OpenAI-compatible server "
            "(llm_backend='openai'); an in-process model answers one at a time"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_temporaries(out)
    skip = _without(without)
    readable = reading_settings(settings, skip, llm)
    fp = fingerprint(readable)
    todo, skipped = plan(items, out, fp, retry_failed=retry_failed)
    report = BatchReport(total=len(items), skipped=[it.id for it in skipped])
    rebuild_index(out, items)  # a resumed run starts from a consistent index
    if on_start:
        on_start(len(todo), len(skipped))
    ctx = RunContext(settings=settings, llm=llm, save=store)
    written = threading.Lock()  # several reasoning threads finish clips
    stopped = threading.Event()

    def halted() -> bool:
        """Whether ``should_stop`` has said stop (asked from several threads; sticky)."""
        if not stopped.is_set() and should_stop is not None and should_stop():
            stopped.set()
        return stopped.is_set()

    starts = itertools.takewhile(lambda _item: not halted(), todo)  # asked before each clip
    t0 = time.perf_counter()

    def finish(outcome: Outcome) -> None:
        item = outcome.item
        rec = ClipRecord(
            id=item.id,
            file=str(item.path),
            gold=list(item.gold),
            fingerprint=fp,
            settings=readable,
            seconds=outcome.seconds,
            error=outcome.error,
            result=outcome.result,
        )
        with written:
            write_atomic(record_path(out, item.id), rec.model_dump_json(indent=1), SHARED)
            (report.failed if outcome.error else report.done).append(item.id)
            if on_clip:
                on_clip(rec, len(report.done) + len(report.failed), len(todo))

    try:
        if ray is not None:
            from affectlens.agent.batch_ray import run_on_ray

            report.worker_peak_mb = run_on_ray(
                starts, ctx, skip, finish, address=ray, workers=ray_workers
            )
        elif pipelined or parallel > 1:
            _pipelined(starts, ctx, skip, finish, parallel, halted)
        else:
            for item in starts:
                finish(analyse(perceive(item, ctx, skip), ctx))
        report.interrupted = stopped.is_set()
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        report.seconds = time.perf_counter() - t0
        order = {it.id: n for n, it in enumerate(items)}  # clips finish out of order in parallel
        report.done.sort(key=order.__getitem__)
        report.failed.sort(key=order.__getitem__)
        rebuild_index(out, items)
    return report


_END = object()


def _pipelined(
    todo: Iterable[BatchItem],
    ctx: Any,
    skip: list[Modality],
    finish: Emit,
    parallel: int = 1,
    halted: Callable[[], bool] = lambda: False,
) -> None:
    """A perception thread feeds a queue of ``parallel`` clips; ``parallel`` reasoners take
    them (this thread alone when 1, so reasoning runs in the input order). Once ``halted()``
    a perceived clip is dropped instead of reasoned."""
    handoff: queue.Queue = queue.Queue(maxsize=parallel)
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(value, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in todo:
                if stop.is_set() or not put(perceive(item, ctx, skip)):
                    return
        finally:
            for _ in range(parallel):
                put(_END)

    def consume() -> None:
        while not stop.is_set():
            try:
                perceived = handoff.get(timeout=0.2)
            except queue.Empty:
                continue
            if perceived is _END or halted():
                return
            finish(analyse(perceived, ctx))

    worker = threading.Thread(target=produce, name="affectlens-perceive", daemon=True)
    worker.start()
    try:
        if parallel == 1:
            consume()
        else:
            _in_threads(consume, parallel, stop)
    finally:
        stop.set()  # on an exception or Ctrl-C the perception thread stops after its clip


def _in_threads(target: Callable[[], None], n: int, stop: threading.Event) -> None:
    """``target`` in ``n`` daemon threads, waited for here (so Ctrl-C reaches this thread and
    does not wait for requests in flight); the first exception stops the others and is raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failures.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=run, name=f"affectlens-reason-{i}", daemon=True) for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    if failures:
        raise failures[0]
