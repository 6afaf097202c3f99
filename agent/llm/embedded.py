"""The ``embedded`` backend: llama-cpp-python in-process with a GGUF file; structured output
through a llama.cpp grammar built from the JSON schema (sampled by ``grammar_sampler``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from affectlens.agent.llm.prefix_state import STATES_DIR, SystemTurns, build_id
from affectlens.agent.llm.protocol import LLMError, Sampling, check_messages, validated
from affectlens.settings import Settings

EMBEDDED_NAMES = ("qwen2.5-1.5b", "qwen2.5-0.5b")
PROMPT_CACHE_BYTES = 256 << 20  # llama.cpp RAM prompt cache: ~8 saved prompts of ~30 MB each
EMBEDDED_ATTEMPTS = 2  # grammar guarantees the shape; one repair for range/constraint errors

# llama.cpp ``general.file_type`` values (llama_ftype) for the model id.
_GGUF_FTYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


def resolve_gguf(settings: Settings) -> tuple[str, Path]:
    """(display name, path) of the GGUF file ``settings.llm_model`` names."""
    name = settings.llm_model
    if name in EMBEDDED_NAMES:
        from affectlens.models import ModelError, model_path

        try:
            return name, model_path(name, settings.model_dir)
        except ModelError as exc:
            raise LLMError(f"{exc}; run: affectlens models assemble") from exc
    path = Path(name).expanduser()
    if not path.is_file():
        raise LLMError(
            f"LLM model {name!r} is neither an embedded name ({', '.join(EMBEDDED_NAMES)}) "
            "nor an existing GGUF file"
        )
    return path.stem, path


def lean_ram_cache(capacity_bytes: int = PROMPT_CACHE_BYTES) -> Any:
    """llama-cpp-python's RAM prompt cache, keeping only what a restore needs and counting
    every byte it keeps.

    Its stock ``LlamaState`` also copies the Python-side logits buffer (n_batch rows of the
    vocabulary: 311 MB a saved prompt for Qwen's 151,936 words) while its capacity counts only
    llama.cpp's own bytes, so a 256 MB cache held ~8 such copies and a worker grew ~700 MB a
    clip up to ~3 GB (docs/bench.md). A restored state is always decoded again from at least its
    last token before anything is sampled (``load_state`` sets ``_requires_eval``), so those
    logits are never read: one zero row, which ``load_state`` broadcasts, stands in for them."""
    from llama_cpp import LlamaRAMCache

    class LeanRAMCache(LlamaRAMCache):
        @property
        def cache_size(self) -> int:
            return sum(
                s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes
                for s in self.cache_state.values()
            )

        def __setitem__(self, key: Any, value: Any) -> None:
            value.scores = np.zeros((1, value.scores.shape[-1]), dtype=value.scores.dtype)
            super().__setitem__(key, value)

    return LeanRAMCache(capacity_bytes=capacity_bytes)


def _load_llama(path: str, n_ctx: int, n_threads: int, n_gpu_layers: int):
    """A Llama and its generation lock (``get_llm``'s cache keeps one per file and shape)."""
    try:
        from affectlens.agent.llm.grammar_sampler import CheckFirstLlama
    except ImportError as exc:
        raise LLMError(
            "the embedded backend needs llama-cpp-python: pip install llama-cpp-python"
        ) from exc
    try:
        llama = CheckFirstLlama(
            model_path=path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_gpu_layers=n_gpu_layers,
            # +5-9 % prompt evaluation on 2 EPYC cores, generation unchanged (docs/bench.md,
            # "Flash attention"); the attention sums in another order, so the saved system
            # turns are keyed by it (``system_turns``)
            flash_attn=True,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise LLMError(f"llama.cpp could not load {path}: {exc}") from exc
    # Saved KV states let a prompt that shares a prefix with any recent one (the same system
    # prompt after a different call in between) skip re-evaluating that prefix.
    llama.set_cache(lean_ram_cache())
    return llama, threading.Lock()


class EmbeddedLLM:
    """llama-cpp-python in-process; JSON-schema grammar for structured output."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sampling = Sampling.of(settings)
        name, path = resolve_gguf(settings)
        self.path = path
        self._llama, self._lock = _load_llama(
            str(path),
            settings.llm_context,
            settings.cpu_threads,
            -1 if settings.resolved_device == "cuda" else 0,
        )
        import llama_cpp  # importable: _load_llama succeeded

        ftype = self._llama.metadata.get("general.file_type")
        quant = _GGUF_FTYPES.get(int(ftype), f"ftype {ftype}") if ftype is not None else "GGUF"
        self.model_id = f"{name} (llama.cpp {llama_cpp.__version__}, {quant})"
        self._turns: SystemTurns | None = None  # built on first use

    def system_turns(self) -> SystemTurns:
        """The saved system turns of this model (``llm_prompt_cache = "prefix"``), keyed by
        everything that changes their state: model file, llama.cpp build, context shape."""
        if self._turns is None:
            from affectlens.models import file_digest

            p = self._llama.context_params
            identity = (
                f"{file_digest(self.path)} {build_id()} ctx={p.n_ctx} batch={p.n_batch} "
                f"ubatch={p.n_ubatch} threads={p.n_threads}/{p.n_threads_batch} "
                f"gpu_layers={self._llama.model_params.n_gpu_layers} "
                f"kv={p.type_k}/{p.type_v} fa={p.flash_attn_type}"
            )
            self._turns = SystemTurns(self._llama, identity, self.settings.model_dir / STATES_DIR)
        return self._turns

    def _seed(self, messages: list[dict]) -> None:
        """In "ram" mode while the RAM cache is empty (a fresh process): start from the saved
        system turn when the context does not hold it, instead of evaluating it (cold start)."""
        llama = self._llama
        if llama.cache is None or llama.cache.cache_size > 0:
            return
        turn = self.system_turns().tokens(messages)
        if turn and llama.input_ids[: min(llama.n_tokens, len(turn))].tolist() != turn:
            self.system_turns().restore(messages)

    @contextmanager
    def _fixed_start(self, messages: list[dict], mode: str) -> Iterator[None]:
        """For "prefix" and "off": the call starts from the saved system turn (or an empty
        context) and the RAM cache is neither read nor written, so the prompt is evaluated the
        same way whatever ran before. A reused prefix of another length is evaluated in other
        batches, which changes the logits in the last bits and so, now and then, a greedy
        token."""
        llama, cache = self._llama, self._llama.cache
        llama.cache = None
        try:
            if mode == "prefix":
                self.system_turns().restore(messages)
            else:
                llama.reset()
            yield
        finally:
            llama.cache = cache

    def _complete(self, messages: list[dict], max_tokens: int, s: Sampling, **kwargs: Any) -> Any:
        if s.prompt_cache == "ram":
            self._seed(messages)
            return self._create(messages, max_tokens, s, **kwargs)
        if kwargs.get("stream"):  # llama-cpp-python starts a stream when it is iterated

            def chunks() -> Iterator[Any]:
                with self._fixed_start(messages, s.prompt_cache):
                    yield from self._create(messages, max_tokens, s, **kwargs)

            return chunks()
        with self._fixed_start(messages, s.prompt_cache):
            return self._create(messages, max_tokens, s, **kwargs)

    def _create(self, messages: list[dict], max_tokens: int, s: Sampling, **kwargs: Any) -> Any:
        try:
            return self._llama.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens,
                temperature=s.temperature,
                seed=s.seed,
                **kwargs,
            )
        except ValueError as exc:  # e.g. "Requested tokens (...) exceed context window"
            raise LLMError(f"{self.model_id}: {exc}") from exc

    def chat(
        self,
        messages: list[dict],
        schema: type[BaseModel] | None = None,
        *,
        images: list[np.ndarray] | None = None,  # text-only model: frames reach it as cues
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> str | BaseModel:
        check_messages(messages)
        s = sampling or self.sampling
        limit = max_tokens or s.max_tokens
        if schema is None:
            with self._lock:
                reply = self._complete(messages, limit, s)
            return reply["choices"][0]["message"]["content"] or ""
        fmt = {"type": "json_object", "schema": schema.model_json_schema()}

        def generate(msgs: list[dict]) -> str:
            with self._lock:
                reply = self._complete(msgs, limit, s, response_format=fmt)
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
            if choice.get("finish_reason") == "length":
                raise LLMError(
                    f"{self.model_id}: the JSON reply was cut at max_tokens={limit}; "
                    "raise llm_max_tokens"
                )
            return text

        return validated(generate, messages, schema, EMBEDDED_ATTEMPTS, self.model_id)

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        """Pieces as llama.cpp makes them. A producer thread holds the model's lock, so a
        stream that is abandoned (never consumed nor closed, e.g. kept by a dropped UI event)
        still releases it after at most ``max_tokens``; closing it stops generation at once."""
        check_messages(messages)
        s = sampling or self.sampling
        limit = max_tokens or s.max_tokens

        def pieces() -> Generator[str, None, None]:
            for chunk in self._complete(messages, limit, s, stream=True):
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece

        return _threaded(pieces, self._lock)


_END = object()


def _threaded(
    pieces: Callable[[], Generator[str, None, None]], lock: threading.Lock
) -> Iterator[str]:
    """Run ``pieces()`` under ``lock`` in a producer thread and hand its items over a queue.
    The lock is never held by the consumer's (suspended) generator frame."""
    out: queue.Queue = queue.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            with lock:
                gen = pieces()
                try:
                    for piece in gen:
                        if stop.is_set():
                            break
                        out.put(piece)
                finally:
                    gen.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            out.put(exc)
        finally:
            out.put(_END)

    worker = threading.Thread(target=produce, daemon=True, name="affectlens-llm-stream")

    def consume() -> Iterator[str]:
        worker.start()
        try:
            while (item := out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    return consume()
