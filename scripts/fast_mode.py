"""Fast mode against the default, clip by clip: the label, whether the explanation passed
verification (grounded, no problems left), reasoning seconds, LLM calls, generated tokens and
generation tokens/s (issue 17: a fast mode with its measured effect on speed and recognition).

    python scripts/fast_mode.py evals/datasets/cremad-av --limit 3

Both runs use ``llm_prompt_cache = "prefix"`` (as the evals do), so the figures do not depend on
which clip ran before. The load average is printed with every row: on a shared machine it
explains most of the spread in seconds, not in tokens.
"""

from __future__ import annotations

import argparse
import os
import statistics

from affectlens.agent.llm import get_llm
from affectlens.agent.run import analyze
from affectlens.evals.bench.machine import machine_info
from affectlens.evals.bench.meter import TokenMeter
from affectlens.evals.datasets import load_dataset
from affectlens.settings import Settings

MODES = {"default": {}, "fast": {"fast": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--modes", default="default,fast")
    args = parser.parse_args()
    clips = [s for s in load_dataset(args.dataset).samples if s.clip is not None][: args.limit]
    m = machine_info()
    print(f"{m['cpu']}, {m['cores']} cores; llama.cpp build: {m.get('llama_build', '-')}")
    print(
        "| mode | clip | gold | label | verified | LLM s | calls | generated | gen tok/s | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        settings = Settings(llm_prompt_cache="prefix", **MODES[mode])
        meter = TokenMeter(get_llm(settings))
        tokens, seconds = [], []
        for sample in clips:
            meter.reset()
            meter.gen_tokens, meter.gen_ms = 0, 0.0
            r = analyze(sample.clip, settings, save=False, llm=meter.llm)
            snap = meter.snapshot()
            ok = r.verification.grounded and not r.verification.problems
            tokens.append(snap["completion_tokens"])
            seconds.append(snap["seconds"])  # every LLM call: repair rounds too
            print(
                f"| {mode} ({settings.llm_model}) | {sample.id} | {'/'.join(sample.labels)} | "
                f"{r.reading.label if r.reading else '-'} | {'yes' if ok else 'no'} | "
                f"{seconds[-1]:.1f} | {snap['calls']} | {snap['completion_tokens']} | "
                f"{snap.get('gen_tokens_per_s', 0.0):.1f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
            for problem in r.verification.problems:
                print(f"|   | problem: {problem[:160]} | | | | | | | | |", flush=True)
        print(
            f"| {mode} median | | | | | {statistics.median(seconds):.1f} | | "
            f"{statistics.median(tokens):.0f} | | |",
            flush=True,
        )


if __name__ == "__main__":
    main()
