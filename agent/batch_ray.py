"""A batch on a Ray cluster: each worker is an actor holding its models; the driver writes.

``run_on_ray`` starts ``workers`` ``ClipWorker`` actors, keeps ``QUEUED_PER_WORKER`` clips
queued on each (so none waits for the driver between clips) and hands every finished clip to
the caller's ``finish``, which writes its record in the output folder on the driver's machine:
the actors never touch it. Each actor analyses its clips as ``affectlens analyze`` does (the
perception tools, then the reasoning graph) with its own process-wide model caches, so its
models load once. The clips' paths must be readable on every node (shared storage), and an
LLM server named by the settings (``llm_backend='openai'``) is shared by all the actors.

Ray is an optional extra (``pip install affectlens[cluster]``, pinned in
``requirements/cluster.txt``); nothing here imports it before a Ray run is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from affectlens.agent.batch import BatchItem, ClipError, Emit, Outcome, analyse, perceive
from affectlens.agent.schemas import AnalysisResult, Modality

QUEUED_PER_WORKER = 2  # calls queued on an actor: one running, the next one ready
LOCAL = "local"
# The driver's environment variables the workers get too (offline model hubs, the config file).
PASSED_ON = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "AFFECTLENS_CONFIG",
)  # --ray local: start a Ray instance on this machine for this run


class RayMissingError(RuntimeError):
    """Ray is not installed (it is the optional ``cluster`` extra)."""


class ClipWorker:
    """One worker: a process with its own models, analysing one clip at a time. A plain class
    (wrapped by ``ray.remote`` in ``run_on_ray``) so it is usable and testable without Ray."""

    def __init__(self, ctx: Any, skip: list[Modality]):
        self.ctx = ctx
        self.skip = skip

    def analyse(self, item: BatchItem) -> tuple[str | None, dict | None, float]:
        """(the result as JSON, the error as a dict, seconds): plain values over the wire."""
        outcome = analyse(perceive(item, self.ctx, self.skip), self.ctx)
        result = outcome.result.model_dump_json() if outcome.result is not None else None
        error = outcome.error.model_dump() if outcome.error is not None else None
        return result, error, outcome.seconds

    def peak_rss_mb(self) -> float:
        """This worker's peak resident memory (Linux ru_maxrss is in KiB)."""
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def outcome_of(item: BatchItem, reply: tuple[str | None, dict | None, float]) -> Outcome:
    result, error, seconds = reply
    return Outcome(
        item,
        AnalysisResult.model_validate_json(result) if result is not None else None,
        ClipError.model_validate(error) if error is not None else None,
        seconds,
    )


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError(
            "--ray needs Ray, the optional cluster extra: pip install 'affectlens[cluster]' "
            "(or pip install -r requirements/cluster.txt in a checkout)"
        ) from exc
    return ray


def _code_path() -> str:
    """The folder that holds the ``affectlens`` package this driver imported (a checkout or
    site-packages), so local workers import the same code whatever their working folder."""
    import affectlens

    return str(Path(affectlens.__file__).resolve().parents[1])


def connect(address: str, workers: int) -> bool:
    """``ray.init`` for ``address``; True when this call started the Ray instance (then the
    caller shuts it down). ``local``: a new instance here with ``workers`` CPUs; ``auto`` or
    an address: a running cluster (Ray's own meaning of them)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    path = os.pathsep.join(p for p in (_code_path(), os.environ.get("PYTHONPATH")) if p)
    env_vars = {"PYTHONPATH": path}
    env_vars.update({k: os.environ[k] for k in PASSED_ON if k in os.environ})
    env = {"env_vars": env_vars}
    if address == LOCAL:
        ray.init(num_cpus=workers, include_dashboard=False, runtime_env=env, log_to_driver=False)
    else:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    return True


def start_workers(ctx: Any, skip: list[Modality], workers: int) -> list[Any]:
    """``workers`` actors, one CPU each, each running its models on that CPU's share."""
    ray = _import_ray()
    settings = ctx.settings.model_copy(update={"threads": 1})  # threads are not in a reading
    remote = ray.remote(num_cpus=1)(ClipWorker)
    worker_ctx = type(ctx)(settings=settings, llm=ctx.llm, save=ctx.save)
    return [remote.remote(worker_ctx, skip) for _ in range(workers)]


def run_on_ray(
    todo: Iterable[BatchItem], ctx: Any, skip: list[Modality], finish: Emit, *, address: str,
    workers: int,
) -> list[float]:  # fmt: skip
    """Analyse ``todo`` on ``workers`` actors; ``finish`` gets each clip as it comes back.
    Returns each worker's peak resident memory in MB."""
    if workers < 1:
        raise ValueError("a Ray run needs at least one worker")
    ray = _import_ray()
    started = connect(address, workers)
    actors: list[Any] = []
    try:
        actors = start_workers(ctx, skip, workers)
        pending: dict[Any, tuple[BatchItem, Any]] = {}
        queue = iter(todo)

        def submit(actor: Any) -> None:
            item = next(queue, None)
            if item is not None:
                pending[actor.analyse.remote(item)] = (item, actor)

        for _ in range(QUEUED_PER_WORKER):
            for actor in actors:
                submit(actor)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            item, actor = pending.pop(ref)
            try:
                outcome = outcome_of(item, ray.get(ref))
            except ray.exceptions.RayError as exc:  # the actor died (memory, a crash)
                error = ClipError(type=type(exc).__name__, message=str(exc)[:500], stage="worker")
                outcome = Outcome(item, None, error, 0.0)
            finish(outcome)
            submit(actor)
        return [float(mb) for mb in ray.get([a.peak_rss_mb.remote() for a in actors])]
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
