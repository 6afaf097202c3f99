"""Prompt-lookup speculative decoding on the real reasoning calls (issue 17: generate faster).

Runs the analyses of ``--clips`` once to capture their reasoning requests (messages and JSON
schema), then replays each request through plain llama.cpp (greedy, the schema's grammar, no
prompt cache) with no draft and with llama-cpp-python's ``LlamaPromptLookupDecoding`` drafting
``--drafts`` tokens from n-grams of the prompt, printing seconds, tokens and the reply's start.

    python scripts/prompt_lookup_speed.py --drafts 0,2,4,8 \\
        ~/.local/share/affectlens/bench/clips/clip-5s-v1.mp4 ...

The bench clips are written by ``affectlens bench``. A draft needs ``logits_all`` (every
position's logits are kept), which llama-cpp-python 0.3.36 does not set by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from affectlens.agent.llm import get_llm
from affectlens.agent.run import analyze
from affectlens.evals.bench.machine import machine_info
from affectlens.settings import Settings


def captured_requests(clips: list[str], settings: Settings) -> tuple[list[dict], str]:
    """The reasoning requests of analysing ``clips``, and the GGUF they went to."""
    llm = get_llm(settings, role="reason")
    requests: list[dict] = []
    cls = type(llm)
    chat = cls.chat

    def capture(self, messages, schema=None, **kw):
        requests.append({"messages": messages, "schema": schema.model_json_schema()})
        return chat(self, messages, schema, **kw)

    cls.chat = capture
    try:
        for clip in clips:
            analyze(clip, settings=settings, save=False)
    finally:
        cls.chat = chat
    return requests, str(llm.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--drafts", default="0,2,4,8", help="draft lengths; 0 = no draft")
    args = ap.parse_args()
    from llama_cpp import Llama, LlamaGrammar
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    settings = Settings()
    requests, path = captured_requests(args.clips, settings)
    print(machine_info(None)["cpu"], "|", os.path.basename(os.path.dirname(path)), flush=True)
    for n in (int(x) for x in args.drafts.split(",")):
        draft = {"draft_model": LlamaPromptLookupDecoding(num_pred_tokens=n), "logits_all": True}
        llama = Llama(
            model_path=path,
            n_ctx=settings.llm_context,
            n_threads=settings.cpu_threads,
            n_threads_batch=settings.cpu_threads,
            verbose=False,
            **(draft if n else {}),
        )
        for i, req in enumerate(requests):
            grammar = LlamaGrammar.from_json_schema(json.dumps(req["schema"]), verbose=False)
            llama.reset()
            t0 = time.perf_counter()
            out = llama.create_chat_completion(
                req["messages"], grammar=grammar, temperature=0.0, max_tokens=384, seed=0
            )
            usage, text = out["usage"], out["choices"][0]["message"]["content"]
            print(
                f"draft {n} call {i}: {time.perf_counter() - t0:.2f} s, prompt "
                f"{usage['prompt_tokens']}, generated {usage['completion_tokens']}, {text[:60]!r}",
                flush=True,
            )
        del llama


if __name__ == "__main__":
    main()
