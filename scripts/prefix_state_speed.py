"""What the saved system turn saves (``llm_prompt_cache = "prefix"``): per model, the seconds a
fresh process spends evaluating the reasoning prompt's system turn against loading its saved
state from disk, and the prompt tokens a reasoning call then evaluates itself.

    python scripts/prefix_state_speed.py --models qwen2.5-0.5b,qwen2.5-1.5b

The states are written to a temporary folder, not the model cache. The load average is printed
beside each row: on a shared machine it explains most of the spread.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from affectlens.agent import reason
from affectlens.agent.llm.embedded import EmbeddedLLM
from affectlens.evals.bench.machine import machine_info
from affectlens.settings import Settings


def measure(model: str, store: Path) -> dict[str, float]:
    msgs = reason.messages("Clip: 4.0 s, one person.", [], [])
    t0 = time.perf_counter()
    llm = EmbeddedLLM(Settings(llm_model=model, device="cpu"))
    load = time.perf_counter() - t0
    turns = llm.system_turns()
    turns.store = store
    t0 = time.perf_counter()
    n = turns.restore(msgs)  # nothing saved yet: evaluated, then written
    evaluate = time.perf_counter() - t0
    del llm, turns
    fresh = EmbeddedLLM(Settings(llm_model=model, device="cpu")).system_turns()
    fresh.store = store
    t0 = time.perf_counter()
    fresh.restore(msgs)  # a fresh process: read from disk
    restore = time.perf_counter() - t0
    assert fresh.loaded == 1 and fresh.evaluated == 0
    size = sum(p.stat().st_size for p in store.glob("*.state"))
    return {"tokens": n, "load": load, "evaluate": evaluate, "restore": restore, "mb": size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    args = parser.parse_args()
    m = machine_info()
    print(f"{m['cpu']}, {m['cores']} cores; llama.cpp build: {m.get('llama_build', '-')}")
    print("| model | system turn tokens | model load s | evaluate s | restore from disk s "
          "| state MB | load avg |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            f = measure(model, Path(tmp))
        print(
            f"| {model} | {f['tokens']:.0f} | {f['load']:.2f} | {f['evaluate']:.2f} | "
            f"{f['restore']:.3f} | {f['mb']:.1f} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
