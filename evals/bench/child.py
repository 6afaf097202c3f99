"""One fresh process per length and device: the parent starts it, the child measures.

The child runs one *cold* analysis (the first in the process: imports and model loading
included) and then the *warm* ones. Settings travel on stdin as JSON (secrets stay off argv);
the child writes its figures to a result file named on its command line:

    python -m affectlens.evals.bench --child RESULT CLIP...
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from affectlens.evals.bench.clips import REPO
from affectlens.evals.bench.meter import TokenMeter
from affectlens.settings import Settings


# the parent ------------------------------------------------------------------------------------
def run_child(clips: list[Path], settings: Settings, timeout: float) -> dict[str, Any]:
    """One fresh process: cold + warm runs. Settings travel on stdin (secrets stay off argv)."""
    payload = settings.model_dump(mode="json")
    payload["llm_api_key"] = settings.llm_api_key.get_secret_value()
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            "-m",
            "affectlens.evals.bench",
            "--child",
            str(result),
            *map(str, clips),
        ]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                input=json.dumps(payload),
                text=True,
                cwd=REPO,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"the benchmark process took longer than {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not result.is_file():
            return {"error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
        out = json.loads(result.read_text())
    out["cold"]["wall_s"] = round(wall, 3)  # includes the interpreter and the warm runs
    return out


# the child -------------------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / 1024 if sys.platform != "darwin" else rss / 1024 / 1024, 1)


def measure_once(path: Path, settings: Settings, meter: TokenMeter | None) -> dict[str, Any]:
    """One analysis: stage seconds, wall time of the parallel perception step, LLM figures."""
    from affectlens.agent.run import analyze

    events: list[tuple[str, str, float]] = []

    def on_stage(stage: str, status: str, _elapsed: float) -> None:
        events.append((stage, status, time.perf_counter()))

    if meter is not None:
        meter.reset()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    # Not injected: the graph takes the same cached instance from get_llm (the meter wraps it
    # in place), and an injected LLM would switch off what only runs without one (the
    # transcript's text-emotion witness: agent.nodes.textualise_node), so the bench would time
    # a lighter pipeline than users run (it did until 2026-12-05).
    result = analyze(path, settings, on_stage=on_stage)
    total = time.perf_counter() - t0
    probe_done = next((t for s, st, t in events if s == "probe" and st != "start"), t0)
    text_start = next((t for s, st, t in events if s == "textualise" and st == "start"), probe_done)
    return {
        "total_s": round(total, 3),
        "duration_s": result.media.duration_s,
        "rtf": round(total / result.media.duration_s, 3) if result.media.duration_s else None,
        "stages": {k: v for k, v in result.timings.items()},
        "perceive_s": round(text_start - probe_done, 3),  # the parallel tools, wall clock
        "llm": meter.snapshot() if meter else {},
        "witnesses": sorted(result.fusion.votes) if result.fusion else [],  # who voted
        "statuses": {
            m: getattr(result, m).status
            for m in ("face", "speech", "voice", "scene")
            if getattr(result, m) is not None
        },
        "label": result.reading.label if result.reading else None,
        "verify_rounds": result.verification.rounds,
        "error": result.error,
        "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rss_mb": _peak_rss_mb(),
    }


def child_main(clips: list[Path], settings: Settings, started: float) -> dict[str, Any]:
    """Cold run on ``clips[0]`` (first analysis of this process), then warm runs on the rest.

    ``started`` is the process's ``perf_counter`` before any heavy import: the cold clock.
    """
    t = time.perf_counter()
    from affectlens.agent.llm import get_llm
    from affectlens.agent.run import analyze  # noqa: F401 - the import is part of the cold cost

    import_s = time.perf_counter() - t
    t = time.perf_counter()
    meter = TokenMeter(get_llm(settings))  # loads the LLM: part of the cold figure
    llm_load_s = time.perf_counter() - t
    startup = time.perf_counter() - started
    cold = measure_once(clips[0], settings, meter)  # the perception models load in here
    cold.update(
        startup_s=round(startup, 3),
        import_s=round(import_s, 3),
        llm_load_s=round(llm_load_s, 3),
        process_s=round(startup + cold["total_s"], 3),
    )
    warm = [measure_once(c, settings, meter) for c in clips[1:]]
    return {
        "cold": cold,
        "warm": warm,
        "peak_rss_mb": _peak_rss_mb(),
        "device": settings.resolved_device,
    }


def child_entry(argv: list[str], started: float) -> None:
    """``python -m affectlens.evals.bench --child RESULT CLIP...``: settings JSON on stdin."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the process's hub mode, not configuration
    result, clips = Path(argv[1]), [Path(a) for a in argv[2:]]
    settings = Settings(**json.loads(sys.stdin.read()))
    out = child_main(clips, settings, started)
    result.write_text(json.dumps(out))
