"""The embedded LLM's raw speed, without an analysis: prompt and generation tokens/s of one
short probe per model, with and without the JSON grammar (issue 17: where does generation
time go on a given CPU). Prompt caching is off, so every call evaluates its whole prompt; the
grammar is the generic ``LLMReading`` schema's (an analysis narrows it to its own cue ids).

    python scripts/llm_speed.py --models qwen2.5-0.5b,qwen2.5-1.5b --runs 2

Figures are medians over ``--runs`` calls; the load average is printed beside them because
on a shared machine it explains most of the spread.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from affectlens.agent.llm import get_llm
from affectlens.agent.llm.protocol import LLMError, Sampling
from affectlens.agent.reason import LLMReading
from affectlens.evals.bench.machine import machine_info
from affectlens.evals.bench.meter import TokenMeter
from affectlens.settings import Settings

# A reasoning-like request: a few hundred prompt tokens of cues, a short explanation back.
CUES = (
    "\n".join(
        f"[F{i}] {t:.1f}-{t + 1.5:.1f}s face: AU{au} intensity {0.3 + 0.05 * i:.2f}"
        for i, (t, au) in enumerate(zip(range(0, 30, 2), (1, 4, 6, 12, 15, 17, 20, 25) * 2), 1)
    )
    + '\n[S1] 2.0-6.5s speech: "I did not expect this to happen today, honestly."'
)
MESSAGES = [
    {"role": "system", "content": "You explain a person's emotion from cues. Cite cue ids."},
    {"role": "user", "content": f"Cues:\n{CUES}\n\nWhat does this person feel, and why?"},
]


def probe(meter: TokenMeter, grammar: bool, runs: int, max_tokens: int) -> dict[str, float]:
    """Median prompt and generation tokens/s, and generated tokens, of ``runs`` calls."""
    sampling = Sampling(max_tokens=max_tokens, prompt_cache="off")
    figures: dict[str, list[float]] = {"prompt": [], "gen": [], "tokens": []}
    for _ in range(runs):
        meter.reset()
        try:
            meter.llm.chat(MESSAGES, LLMReading if grammar else None, sampling=sampling)
        except LLMError:
            pass  # a reply cut at max_tokens still measured its tokens
        snap = meter.snapshot()
        figures["prompt"].append(snap.get("prompt_tokens_per_s", 0.0))
        figures["gen"].append(snap.get("gen_tokens_per_s", 0.0))
        figures["tokens"].append(snap["completion_tokens"])
    return {k: statistics.median(v) for k, v in figures.items()} | {
        "prompt_tokens": snap["prompt_tokens"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    m = machine_info()
    print(f"{m['cpu']}, {m['cores']} cores; llama.cpp build: {m.get('llama_build', '-')}")
    print(
        "| model | grammar | prompt tokens | prompt tok/s | generated | gen tok/s | wall s | load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        meter = TokenMeter(get_llm(Settings(llm_backend="embedded", llm_model=model, device="cpu")))
        for grammar in (False, True):
            t0 = time.perf_counter()
            f = probe(meter, grammar, args.runs, args.max_tokens)
            wall = time.perf_counter() - t0
            print(
                f"| {model} | {'JSON' if grammar else 'none'} | {f['prompt_tokens']} | "
                f"{f['prompt']:.1f} | {f['tokens']:.0f} | {f['gen']:.1f} | {wall:.1f} | "
                f"{os.getloadavg()[0]:.1f} |",
                flush=True,
            )
    print(f"CPU time of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.0f} s")


if __name__ == "__main__":
    main()
