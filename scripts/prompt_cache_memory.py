"""Resident memory of the embedded LLM over a run of distinct prompts, with llama-cpp-python's
stock RAM prompt cache against AffectLens's lean one (``agent/llm/embedded.py``,
``lean_ram_cache``). Each cache runs in a fresh process; the RSS after every call shows whether
memory grows with the number of prompts seen (a batch's clips) or levels off.

    python scripts/prompt_cache_memory.py --model qwen2.5-1.5b --calls 10 --tokens 1500
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(cache: str, model: str, calls: int, tokens: int) -> dict:
    from llama_cpp import LlamaRAMCache

    from affectlens.agent.llm.embedded import PROMPT_CACHE_BYTES, EmbeddedLLM
    from affectlens.settings import Settings

    llm = EmbeddedLLM(Settings(llm_model=model, device="cpu", llm_prompt_cache="ram"))
    if cache == "stock":
        llm._llama.set_cache(LlamaRAMCache(capacity_bytes=PROMPT_CACHE_BYTES))
    words = "face voice words smile frown pitch loud quiet fast slow brow lip eye cheek".split()
    system = {"role": "system", "content": "You explain the emotion of a clip from its cues."}
    after, t0 = [], time.perf_counter()
    for i in range(calls):
        rng = random.Random(i)  # a distinct prompt per call, as each clip's cues are
        cues = " ".join(rng.choice(words) for _ in range(tokens))
        llm.chat([system, {"role": "user", "content": f"Clip {i}: {cues}"}], max_tokens=8)
        after.append(round(rss_mb()))
    return {
        "cache": cache,
        "rss_after_each_call_mb": after,
        "saved_prompts": len(llm._llama.cache.cache_state),
        "cache_counts_mb": round(llm._llama.cache.cache_size / 2**20),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-1.5b")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=1500, help="words of cue text a prompt")
    parser.add_argument("--child", choices=("stock", "lean"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.calls, args.tokens)))
        return
    from affectlens.evals.bench.machine import machine_info

    m = machine_info()
    print(f"{m['cpu']}, {m['cores']} cores; {args.model}, {args.calls} distinct prompts of "
          f"~{args.tokens} words, 8 tokens generated each")  # fmt: skip
    print("| RAM cache | RSS after each call (MB) | prompts kept | counted MB | s | load |")
    print("|---|---|---|---|---|---|")
    for cache in ("stock", "lean"):
        argv = [sys.executable, __file__, "--child", cache, "--model", args.model,
                "--calls", str(args.calls), "--tokens", str(args.tokens)]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        f = json.loads(out.strip().splitlines()[-1])
        rss = ", ".join(map(str, f["rss_after_each_call_mb"]))
        print(f"| {cache} | {rss} | {f['saved_prompts']} | {f['cache_counts_mb']} | "
              f"{f['seconds']} | {os.getloadavg()[0]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
