"""Greedy JSON-schema decoding for llama-cpp-python without checking the whole vocabulary.

llama-cpp-python puts the grammar in its sampler chain, so every generated token runs the
grammar over all 151,936 Qwen tokens: 17-23 ms a token on 2 cores, 40 % of generation time
(measured in docs/bench.md). llama.cpp's own ``common_sampler`` checks the unconstrained
choice first and only constrains the full vocabulary when that choice is rejected. This does
the same for greedy decoding; the chosen tokens are identical, because the unconstrained argmax,
when the grammar allows it, is also the argmax of the allowed tokens.

Imported only by the embedded backend (``embedded``), when it loads: it needs ``llama_cpp``.
"""

from __future__ import annotations

import ctypes
import math

import llama_cpp
import numpy as np
from llama_cpp import Llama


class CheckFirstGrammarSampler:
    """Stands in for ``llama_cpp._internals.LlamaSampler``: ``Llama.sample`` only calls
    ``sample`` (which, like llama.cpp's chain, also accepts the token into the grammar)."""

    def __init__(self, llama: Llama, grammar: llama_cpp.LlamaGrammar):
        self._grammar = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._grammar:
            raise ValueError("llama.cpp could not parse the grammar")
        self._n_vocab = llama.n_vocab()
        self._one = (llama_cpp.llama_token_data * 1)()
        self._all = (llama_cpp.llama_token_data * self._n_vocab)()
        view = np.ctypeslib.as_array(self._all)  # structured: id, logit, p
        view["id"] = np.arange(self._n_vocab, dtype=np.int32)
        self._all_view = view
        self.rejected = 0  # tokens the grammar refused, so the whole vocabulary was checked

    def _apply(self, data: ctypes.Array, size: int) -> None:
        arr = llama_cpp.llama_token_data_array(
            data=ctypes.cast(data, llama_cpp.llama_token_data_p),
            size=size,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(arr))

    def sample(self, ctx, idx: int = -1) -> int:
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,)
        )
        token = int(np.argmax(logits))
        one = self._one[0]
        one.id, one.logit, one.p = token, float(logits[token]), 0.0  # type: ignore[assignment]
        self._apply(self._one, 1)
        if math.isinf(self._one[0].logit):  # rejected: constrain the whole vocabulary
            self.rejected += 1
            self._all_view["logit"] = logits
            self._apply(self._all, self._n_vocab)
            token = int(np.argmax(self._all_view["logit"]))
        llama_cpp.llama_sampler_accept(self._grammar, token)
        return token

    def close(self) -> None:
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:
        try:
            self.close()
        except TypeError:  # interpreter shutdown: llama_cpp's functions are already gone
            pass


class CheckFirstLlama(Llama):
    """``Llama`` whose greedy, grammar-constrained sampling checks the top token first."""

    def _init_sampler(self, *args, **kwargs):
        plain = (
            kwargs.get("grammar") is not None
            and kwargs.get("temp") == 0.0
            and kwargs.get("repeat_penalty", 1.0) == 1.0
            and kwargs.get("frequency_penalty", 0.0) == 0.0
            and kwargs.get("presence_penalty", 0.0) == 0.0
            and kwargs.get("logits_processor") is None
            and kwargs.get("mirostat_mode", 0) == 0
            and not args
        )
        if plain:
            return CheckFirstGrammarSampler(self, kwargs["grammar"])
        return super()._init_sampler(*args, **kwargs)
