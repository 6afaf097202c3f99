"""The LLM's speed: tokens and seconds of every completion call during a run."""

from __future__ import annotations

import time
from typing import Any


class TokenMeter:
    """Counts the LLM's tokens and seconds by wrapping its low-level completion call.

    The backends return the reply's ``usage`` but do not keep it, so the meter wraps the
    instance's ``_complete`` (embedded) or ``_create`` (OpenAI-compatible). For llama.cpp it
    also reads the context's perf counters, which split prompt evaluation from generation.
    """

    def __init__(self, llm: Any):
        self.llm = llm
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.seconds = 0.0
        self.gen_tokens = self.prompt_eval_tokens = 0
        self.gen_ms = self.prompt_eval_ms = 0.0
        for name in ("_complete", "_create"):
            inner = getattr(llm, name, None)
            if inner is not None:
                setattr(llm, name, self._wrap(inner))
                break

    def _perf(self):
        try:
            import llama_cpp

            return llama_cpp, self.llm._llama.ctx
        except Exception:  # noqa: BLE001 - not llama.cpp: usage only
            return None, None

    def _wrap(self, inner):
        def metered(*args, **kwargs):
            lib, ctx = self._perf()
            if lib is not None and ctx is not None:
                lib.llama_perf_context_reset(ctx)
            t0 = time.perf_counter()
            reply = inner(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            usage = reply.get("usage") if isinstance(reply, dict) else getattr(reply, "usage", None)
            if usage is not None:
                get = usage.get if isinstance(usage, dict) else (lambda k: getattr(usage, k, 0))
                self.prompt_tokens += int(get("prompt_tokens") or 0)
                self.completion_tokens += int(get("completion_tokens") or 0)
            if lib is not None and ctx is not None:
                perf = lib.llama_perf_context(ctx)
                self.gen_tokens += perf.n_eval
                self.gen_ms += perf.t_eval_ms
                self.prompt_eval_tokens += perf.n_p_eval
                self.prompt_eval_ms += perf.t_p_eval_ms
            return reply

        return metered

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {
            "calls": self.calls, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
            "tokens_per_s": (
                round(self.completion_tokens / self.seconds, 2) if self.seconds else 0.0
            ),
        }  # fmt: skip
        if self.gen_ms:
            out["gen_tokens_per_s"] = round(self.gen_tokens / (self.gen_ms / 1000), 2)
        if self.prompt_eval_ms:
            out["prompt_eval_tokens"] = self.prompt_eval_tokens
            out["prompt_tokens_per_s"] = round(
                self.prompt_eval_tokens / (self.prompt_eval_ms / 1000), 1
            )
        return out

    def reset(self) -> None:
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.seconds = self.gen_ms = self.prompt_eval_ms = 0.0
        self.gen_tokens = self.prompt_eval_tokens = 0
