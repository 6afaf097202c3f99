"""Greedy JSON-schema decoding for llama-cpp-python without checking the whole vocabulary.

llama-cpp-python puts the grammar in its sampler chain, so every generated token runs the
grammar over all 151,936 Qwen tokens: 17-23 ms a token on 2 cores, 40 % of generation time
(measured in docs/bench.md). llama.cpp's own ``common_sampler`` checks the unconstrained
choice first and only constrains the full vocabulary when that choice is rejected. This does
the same for greedy decoding; the chosen tokens are identical, because the unconstrained argmax,
when the grammar allows it, is also the argmax of the allowed tokens.

It also jumps forward over what the grammar forces (SGLang's "jump-forward decoding"): after
each sampled token, while exactly one non-whitespace character is allowed (a key, a colon,
the quote that opens a value), that text is appended without asking the model, and evaluated
with the sampled token in one batch. On 2 cores a batch of k tokens costs about one decode step
plus a prompt-evaluation step per extra token, so the JSON around the model's words (~40 of
~110 tokens in a reading) stops costing a decode step each. Optional whitespace is written as
the model writes JSON itself (one space after ":" and ","): with the JSON compact instead, the
1.5B's sentences fell apart (bare cue values, cut sentences), because what it read was no
longer what it writes. Its own words and choices are still its greedy ones.

Imported only by the embedded backend (``embedded``), when it loads: it needs ``llama_cpp``.
"""

from __future__ import annotations

import ctypes
import math
import re
from collections import deque

import llama_cpp
import numpy as np
from llama_cpp import Llama


class CheckFirstGrammarSampler:
    """Stands in for ``llama_cpp._internals.LlamaSampler``: ``Llama.sample`` only calls
    ``sample`` (which, like llama.cpp's chain, also accepts the token into the grammar)."""

    def __init__(self, llama: Llama, grammar: llama_cpp.LlamaGrammar, jump: bool = True):
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
        self._chars = _char_tokens(llama)
        self._probe = (llama_cpp.llama_token_data * len(self._chars))()
        self._char_ids = dict(self._chars)
        self._tokenize = llama.tokenize
        self._piece = lambda t: llama.detokenize([t]).decode("utf-8", "replace")
        self.jump = jump
        self._queue: deque[int] = deque()  # forced tokens: already evaluated, not sampled
        self._pending: list[int] | None = None  # forced tokens to evaluate next
        self.forced = 0  # tokens appended without a decode step of their own

    def _apply(self, data: ctypes.Array, size: int, grammar=None) -> None:
        """Mask ``data`` (its first ``size`` entries) with ``grammar`` (the live one unless a
        copy is given): a refused token's logit becomes -inf."""
        arr = llama_cpp.llama_token_data_array(
            data=ctypes.cast(data, llama_cpp.llama_token_data_p),
            size=size,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(grammar or self._grammar, ctypes.byref(arr))

    def take_forced(self) -> list[int] | None:
        """The forced tokens after the last sampled one, once: the caller evaluates them with
        it (``CheckFirstLlama.generate``), then ``sample`` hands them back one by one."""
        pending, self._pending = self._pending, None
        return pending

    def _allowed_chars(self, grammar) -> list[str]:
        for i, (_, tok) in enumerate(self._chars):
            d = self._probe[i]
            d.id, d.logit, d.p = tok, 0.0, 0.0  # type: ignore[assignment]
        self._apply(self._probe, len(self._chars), grammar)
        return [c for i, (c, _) in enumerate(self._chars) if not math.isinf(self._probe[i].logit)]

    def _jump_forward(self, token: int) -> None:
        """Accept the text the grammar forces after ``token`` and queue its tokens. Found on a
        copy of the grammar, then cut back to a token boundary the model itself would make:
        when what may follow is punctuation only, a forced closing quote would otherwise be
        split from the "," or "]" the model writes with it in one token ('",' and '"]'),
        and the 1.5B then cited one cue where it cited two."""
        copy = llama_cpp.llama_sampler_clone(self._grammar)
        text, prev = "", self._piece(token)[-1:]
        try:
            while len(text) < MAX_FORCED_CHARS:
                allowed = self._allowed_chars(copy)
                solid = [c for c in allowed if not c.isspace()]
                if len(solid) != 1:
                    break
                c = " " if prev in (":", ",") and " " in allowed else solid[0]
                llama_cpp.llama_sampler_accept(copy, self._char_ids[c])
                text += c
                prev = c
        finally:
            llama_cpp.llama_sampler_free(copy)
        if not any(c.isalnum() for c in allowed):
            text = _TRAILING_PUNCTUATION.sub("", text)
        if text:
            for c in text:
                llama_cpp.llama_sampler_accept(self._grammar, self._char_ids[c])
            ids = self._tokenize(text.encode(), add_bos=False, special=False)
            self._queue.extend(ids)
            self._pending = ids
            self.forced += len(ids)

    def sample(self, ctx, idx: int = -1) -> int:
        if self._queue:  # a forced position: its token is known and already in the grammar
            return self._queue.popleft()
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
        if self.jump:
            self._jump_forward(token)
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


MAX_FORCED_CHARS = 64  # one jump; the next sampled token starts another
_TRAILING_PUNCTUATION = re.compile(r"[^0-9A-Za-z]+$")


def _char_tokens(llama: Llama) -> list[tuple[str, int]]:
    """(character, token) for every printable ASCII character that is one token: the probe
    set for what the grammar allows next (JSON's structure is ASCII)."""
    out = []
    for code in range(0x20, 0x7F):
        ids = llama.tokenize(chr(code).encode(), add_bos=False, special=False)
        if len(ids) == 1:
            out.append((chr(code), ids[0]))
    return out


class CheckFirstLlama(Llama):
    """``Llama`` whose greedy, grammar-constrained sampling checks the top token first and
    jumps forward over forced text (``jump_forward``)."""

    jump_forward = True

    def generate(self, tokens, *args, **kwargs):
        """``Llama.generate``, sending each sampled token's forced continuation back in, which
        its loop evaluates in the same batch and then yields position by position (the
        sampler returns the known tokens there without reading logits)."""
        inner = super().generate(tokens, *args, **kwargs)
        send: list[int] | None = None
        while True:
            try:
                token = inner.send(send)
            except StopIteration:
                return
            sampler = self._sampler
            send = sampler.take_forced() if isinstance(sampler, CheckFirstGrammarSampler) else None
            if send:
                # never past the context; a forced token left out is handed out by the sampler
                # at the next step and evaluated then (it is already in the grammar)
                send = send[: max(0, self._n_ctx - self.n_tokens - 1)]
            extra = yield token
            if extra:
                send = [*(send or []), *extra]

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
            return CheckFirstGrammarSampler(self, kwargs["grammar"], self.jump_forward)
        return super()._init_sampler(*args, **kwargs)
