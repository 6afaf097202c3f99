"""LLM backends behind one interface: ``chat`` (text or a validated pydantic object) and ``stream``.

- ``embedded`` (default): llama-cpp-python in-process with a GGUF file; structured output through
  a llama.cpp grammar built from the JSON schema.
- ``openai``: any OpenAI-compatible server (``vllm serve``, llama.cpp's server, Ollama);
  structured output through ``response_format`` ``json_schema``, falling back to ``json_object``
  plus the schema in the prompt when the server rejects it.
- ``transformers``: a local Hugging Face model directory in-process; structured output by
  validated retry (schema in the prompt, parse, validate, feed the error back).

Every structured reply is parsed with ``json.JSONDecoder().raw_decode`` and validated by pydantic;
no regex scraping. One instance per model is cached per process (bounded, least recently used
evicted); sampling (temperature, seed, max_tokens, prompt cache) travels with each call, so a
caller with other sampling settings shares the loaded model instead of loading a second copy.
"""

from __future__ import annotations

import base64
import io
import json
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from affectlens.settings import Settings

EMBEDDED_NAMES = ("qwen2.5-1.5b", "qwen2.5-0.5b")
PROMPT_CACHE_BYTES = 256 << 20  # llama.cpp RAM prompt cache: ~8 saved KV states of ~30 MB
EMBEDDED_ATTEMPTS = 2  # grammar guarantees the shape; one repair for range/constraint errors
OPENAI_ATTEMPTS = 2  # json_schema or fallback, plus one repair retry
TRANSFORMERS_ATTEMPTS = 3  # unconstrained decoding needs more chances
OPENAI_TIMEOUT_S = 600.0  # a CPU server can take minutes for a long prompt
OPENAI_CONNECT_TIMEOUT_S = 5.0
LLM_CACHE_SIZE = 2  # loaded models kept per process (reasoner + judge); the oldest is dropped

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


class LLMError(RuntimeError):
    """The LLM could not answer: server unreachable, model missing, or no valid JSON."""


class Sampling(BaseModel):
    """How one call decodes: passed per call, not part of which model is loaded."""

    model_config = ConfigDict(frozen=True)

    max_tokens: int = 384
    temperature: float = 0.0
    seed: int = 0
    prompt_cache: bool = True

    @classmethod
    def of(cls, s: Settings) -> Sampling:
        return cls(
            max_tokens=s.llm_max_tokens,
            temperature=s.llm_temperature,
            seed=s.llm_seed,
            prompt_cache=s.llm_prompt_cache,
        )


@runtime_checkable
class LLM(Protocol):
    """What the agent, chat and evals use; ``model_id`` is recorded with every result."""

    model_id: str

    def chat(
        self,
        messages: list[dict],
        schema: type[BaseModel] | None = None,
        *,
        images: list[np.ndarray] | None = None,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> str | BaseModel: ...

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]: ...


# ----------------------------------------------------------------------------- shared helpers


def parse_json(text: str) -> Any:
    """The first JSON object in ``text`` (models sometimes add prose or code fences around it)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the output")
    value, _ = json.JSONDecoder().raw_decode(text, start)
    return value


def schema_prompt(schema: type[BaseModel]) -> str:
    """The instruction that carries the schema when decoding is not constrained by it."""
    return (
        "Reply with one JSON object only, no prose and no code fences, that validates against "
        f"this JSON schema:\n{json.dumps(schema.model_json_schema(), ensure_ascii=False)}"
    )


def with_schema_prompt(messages: list[dict], schema: type[BaseModel]) -> list[dict]:
    """A copy of ``messages`` with the schema instruction appended to the system message."""
    messages = [dict(m) for m in messages]
    if messages and messages[0].get("role") == "system" and isinstance(messages[0]["content"], str):
        messages[0]["content"] = messages[0]["content"].rstrip() + "\n\n" + schema_prompt(schema)
    else:
        messages.insert(0, {"role": "system", "content": schema_prompt(schema)})
    return messages


def check_messages(messages: list[dict]) -> None:
    """Reject malformed input early with a clear message instead of a backend traceback."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content': {m!r}")


def validated(
    generate: Callable[[list[dict]], str],
    messages: list[dict],
    schema: type[BaseModel],
    attempts: int,
    model_id: str,
) -> BaseModel:
    """Generate, parse and validate; on failure feed the error back and try again."""
    error, text = "", ""
    for _ in range(attempts):
        text = generate(messages)
        try:
            return schema.model_validate(parse_json(text))
        except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
            error = str(exc)
        messages = [
            *messages,
            {"role": "assistant", "content": text},
            {
                "role": "user",
                "content": "That reply is not valid: "
                f"{error}\nReply again with the corrected JSON object only.",
            },
        ]
    raise LLMError(
        f"{model_id}: no valid {schema.__name__} JSON after {attempts} attempts; "
        f"last error: {error.splitlines()[0] if error else 'none'}; "
        f"last output: {text[:200]!r}"
    )


def image_data_url(image: np.ndarray, quality: int = 85) -> str:
    """A base64 JPEG data URL for an RGB (or grey) frame, as OpenAI-style servers accept."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8:
        scale = 255.0 if array.size and float(np.nanmax(array)) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(array) * scale, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"an image must be HxW or HxWx3, got shape {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def with_images(messages: list[dict], images: list[np.ndarray]) -> list[dict]:
    """A copy of ``messages`` whose last user message also carries the images as content parts."""
    messages = [dict(m) for m in messages]
    image_parts = [{"type": "image_url", "image_url": {"url": image_data_url(i)}} for i in images]
    for m in reversed(messages):
        if m["role"] == "user":
            parts = (
                m["content"]
                if isinstance(m["content"], list)
                else [{"type": "text", "text": m["content"]}]
            )
            m["content"] = [*parts, *image_parts]
            return messages
    messages.append({"role": "user", "content": image_parts})
    return messages


# ----------------------------------------------------------------------------- embedded


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


def _load_llama(path: str, n_ctx: int, n_threads: int, n_gpu_layers: int):
    """A Llama and its generation lock (``get_llm``'s cache keeps one per file and shape)."""
    try:
        from llama_cpp import LlamaRAMCache

        from affectlens.agent.grammar_sampler import CheckFirstLlama
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
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise LLMError(f"llama.cpp could not load {path}: {exc}") from exc
    # Saved KV states let a prompt that shares a prefix with any recent one (the same system
    # prompt after a different call in between) skip re-evaluating that prefix.
    llama.set_cache(LlamaRAMCache(capacity_bytes=PROMPT_CACHE_BYTES))
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

    def _complete(self, messages: list[dict], max_tokens: int, s: Sampling, **kwargs: Any) -> Any:
        if not s.prompt_cache and not kwargs.get("stream"):
            # A reused prefix is evaluated in other batches than a fresh one, which changes
            # the logits in the last bits and so, now and then, a greedy token.
            llama, cache = self._llama, self._llama.cache
            llama.reset()
            llama.cache = None
            try:
                return self._create(messages, max_tokens, s, **kwargs)
            finally:
                llama.cache = cache
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

        def pieces() -> Iterator[str]:
            for chunk in self._complete(messages, limit, s, stream=True):
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece

        return _threaded(pieces, self._lock)


_END = object()


def _threaded(pieces: Callable[[], Iterator[str]], lock: threading.Lock) -> Iterator[str]:
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


# ----------------------------------------------------------------------------- openai


class OpenAILLM:
    """An OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, ..."""

    def __init__(self, settings: Settings):
        import httpx
        import openai

        self.settings = settings
        self.sampling = Sampling.of(settings)
        self._openai = openai
        self.base_url = settings.llm_base_url
        self.client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout=httpx.Timeout(OPENAI_TIMEOUT_S, connect=OPENAI_CONNECT_TIMEOUT_S),
            max_retries=1,
        )
        self.model_id = f"{settings.llm_model} (openai-compatible at {settings.llm_base_url})"
        self._format: str | None = None  # the first response_format this server accepted

    def _create(self, messages: list[dict], max_tokens: int, s: Sampling, **kwargs: Any) -> Any:
        openai = self._openai
        try:
            return self.client.chat.completions.create(
                model=self.settings.llm_model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=s.temperature,
                seed=s.seed,
                **kwargs,
            )
        except openai.APITimeoutError as exc:
            raise LLMError(f"{self.model_id}: the server did not answer in time") from exc
        except openai.APIConnectionError as exc:
            raise LLMError(
                f"cannot reach the OpenAI-compatible server at {self.base_url}: {exc}; "
                "is it running (e.g. `vllm serve <model>`), and is llm_base_url right?"
            ) from exc
        except openai.NotFoundError as exc:
            raise LLMError(
                f"{self.model_id}: not found (wrong llm_model or llm_base_url?): {exc}"
            ) from exc
        except openai.AuthenticationError as exc:
            raise LLMError(f"{self.model_id}: the server refused llm_api_key: {exc}") from exc

    def _structured(
        self, messages: list[dict], schema: type[BaseModel], limit: int, s: Sampling
    ) -> str:
        """One structured call, trying the strongest response_format the server accepts."""
        openai = self._openai
        json_schema = schema.model_json_schema()
        formats = {
            "json_schema": {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": True},
            },
            # llama.cpp's servers honour "schema" inside json_object; others ignore or reject it
            "json_object+schema": {"type": "json_object", "schema": json_schema},
            "json_object": {"type": "json_object"},
        }
        names = [self._format] if self._format else list(formats)
        last: Exception | None = None
        for name in names:
            msgs = messages if name == "json_schema" else with_schema_prompt(messages, schema)
            try:
                reply = self._create(msgs, limit, s, response_format=formats[name])
            except openai.APIStatusError as exc:
                kind = classify_error(exc)
                if kind == "context":
                    raise LLMError(
                        f"{self.model_id}: the prompt and max_tokens={limit} do not "
                        f"fit the server's context window: {exc}"
                    ) from exc
                if kind != "format":
                    raise LLMError(f"{self.model_id}: {exc}") from exc
                last = exc  # this server does not take that response_format: try the next
                continue
            self._format = name
            choice = reply.choices[0]
            if choice.finish_reason == "length":
                raise LLMError(
                    f"{self.model_id}: the JSON reply was cut at max_tokens={limit}; "
                    "raise llm_max_tokens"
                )
            return choice.message.content or ""
        raise LLMError(f"{self.model_id}: the server rejected every JSON response format: {last}")

    def chat(
        self,
        messages: list[dict],
        schema: type[BaseModel] | None = None,
        *,
        images: list[np.ndarray] | None = None,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> str | BaseModel:
        check_messages(messages)
        s = sampling or self.sampling
        limit = max_tokens or s.max_tokens
        if images and self.settings.llm_multimodal:
            messages = with_images(messages, images)
        if schema is None:
            try:
                reply = self._create(messages, limit, s)
            except self._openai.APIStatusError as exc:
                raise LLMError(f"{self.model_id}: {exc}") from exc
            return reply.choices[0].message.content or ""
        return validated(
            lambda msgs: self._structured(msgs, schema, limit, s),
            messages,
            schema,
            OPENAI_ATTEMPTS,
            self.model_id,
        )

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        check_messages(messages)
        s = sampling or self.sampling
        try:
            chunks = self._create(messages, max_tokens or s.max_tokens, s, stream=True)
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except self._openai.APIStatusError as exc:
            raise LLMError(f"{self.model_id}: {exc}") from exc


# What a server says when the prompt does not fit (vLLM: 400 "This model's maximum context
# length is 4096 tokens. However, you requested ..."; OpenAI: code context_length_exceeded;
# llama.cpp's server: "exceed context window" / "exceeds the available context size").
_CONTEXT_WORDS = (
    "maximum context length",
    "context_length_exceeded",
    "context window",
    "context size",
    "context length",
)
# What it says when it does not take a response_format (OpenAI: param 'response_format';
# llama-cpp-python: a 500 naming the field; vLLM: "json_schema"/"guided decoding" backends).
_FORMAT_WORDS = (
    "response_format",
    "json_schema",
    "guided_json",
    "guided decoding",
    "structured output",
)


def classify_error(exc: Exception) -> Literal["context", "format", "other"]:
    """What a server's error status means for a structured call, read from its body: the
    prompt overflows the context ("context": fatal, another format cannot help), the
    response_format is not supported ("format": try the next one), or anything else."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    text = f"{exc} {json.dumps(body) if body is not None else ''}".lower()
    if status is None or status < 400:
        return "other"
    if any(w in text for w in _CONTEXT_WORDS):
        return "context"
    if status in (400, 422) or status >= 500:
        return "format" if any(w in text for w in _FORMAT_WORDS) else "other"
    return "other"


# ----------------------------------------------------------------------------- transformers


class TransformersLLM:
    """A local Hugging Face model directory in-process; validated retry for JSON. A
    vision-language model (its config has a ``vision_config``: LLaVA, Qwen2-VL ...) is loaded
    with its processor, and the key frames passed as ``images`` go into its prompt."""

    def __init__(self, settings: Settings):
        import torch
        import transformers
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        self.settings = settings
        path = Path(settings.llm_model).expanduser()
        if not (path / "config.json").is_file():
            raise LLMError(
                f"transformers LLM {settings.llm_model!r} is not a local model directory "
                "(no config.json); hub ids are not downloaded here"
            )
        self.device = settings.resolved_device
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.processor = None
        try:
            if getattr(AutoConfig.from_pretrained(path), "vision_config", None) is not None:
                self.processor = AutoProcessor.from_pretrained(path)
                self.tokenizer = self.processor.tokenizer
                auto = AutoModelForImageTextToText
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                auto = AutoModelForCausalLM
            self.model = auto.from_pretrained(path, dtype=dtype).to(self.device)
        except (OSError, ValueError) as exc:
            raise LLMError(f"transformers could not load {path}: {exc}") from exc
        self.model.eval()
        template = self.processor or self.tokenizer
        if template.chat_template is None:
            raise LLMError(f"the {type(template).__name__} in {path} has no chat_template")
        self._torch = torch
        self._lock = threading.Lock()
        self.sampling = Sampling.of(settings)
        self.model_id = f"{path.name} (transformers {transformers.__version__}, {self.device})"

    def _inputs(self, messages: list[dict], images: list[np.ndarray] | None = None) -> Any:
        if self.processor is None:  # text-only: frames reach it as cues
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(self.device)
        return self._vision_inputs(messages, list(images or []))

    def _vision_inputs(self, messages: list[dict], images: list[np.ndarray]) -> Any:
        """Content parts in the processor's format, the images ahead of the last user text."""
        from PIL import Image

        parts = []
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for i, m in enumerate(messages):
            text = (
                [{"type": "text", "text": m["content"]}]
                if isinstance(m["content"], str)
                else list(m["content"])
            )
            pics = [{"type": "image"} for _ in images] if i == last_user else []
            parts.append({"role": m["role"], "content": [*pics, *text]})
        prompt = self.processor.apply_chat_template(
            parts, add_generation_prompt=True, tokenize=False
        )
        pil = [Image.fromarray(np.asarray(im, dtype=np.uint8)).convert("RGB") for im in images]
        return self.processor(text=prompt, images=pil or None, return_tensors="pt").to(self.device)

    def _generate_kwargs(self, inputs: Any, max_tokens: int | None, s: Sampling) -> dict:
        temperature = s.temperature
        pad = self.tokenizer.pad_token_id
        kwargs = dict(
            **inputs,
            max_new_tokens=max_tokens or s.max_tokens,
            do_sample=temperature > 0,
            pad_token_id=pad if pad is not None else self.tokenizer.eos_token_id,
        )
        if temperature > 0:
            kwargs["temperature"] = temperature
        return kwargs

    def _generate(
        self,
        messages: list[dict],
        max_tokens: int | None,
        s: Sampling,
        images: list[np.ndarray] | None = None,
    ) -> str:
        inputs = self._inputs(messages, images)
        with self._lock, self._torch.inference_mode():
            self._torch.manual_seed(s.seed)
            out = self.model.generate(**self._generate_kwargs(inputs, max_tokens, s))
        return self.tokenizer.decode(
            out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )

    def chat(
        self,
        messages: list[dict],
        schema: type[BaseModel] | None = None,
        *,
        images: list[np.ndarray] | None = None,  # used by a vision-language model only
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> str | BaseModel:
        check_messages(messages)
        s = sampling or self.sampling
        if schema is None:
            return self._generate(messages, max_tokens, s, images)
        return validated(
            lambda msgs: self._generate(msgs, max_tokens, s, images),
            with_schema_prompt(messages, schema),
            schema,
            TRANSFORMERS_ATTEMPTS,
            self.model_id,
        )

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        """Pieces as ``generate`` makes them, in a worker thread that holds the lock; closing
        the stream early stops generation at the next token and joins the worker."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        check_messages(messages)
        s = sampling or self.sampling
        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class Stopped(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw) -> bool:
                return stop.is_set()

        kwargs = self._generate_kwargs(inputs, max_tokens, s)
        kwargs["stopping_criteria"] = StoppingCriteriaList([Stopped()])
        failed: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, self._torch.inference_mode():
                    self._torch.manual_seed(s.seed)
                    self.model.generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                failed.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True, name="affectlens-llm-stream")

        def consume() -> Iterator[str]:
            worker.start()
            try:
                yield from (piece for piece in streamer if piece)
                if failed:
                    raise LLMError(f"{self.model_id}: {failed[0]}") from failed[0]
            finally:
                stop.set()
                worker.join()

        return consume()


# ----------------------------------------------------------------------------- factory

_BACKENDS: dict[str, Callable[[Settings], LLM]] = {
    "embedded": EmbeddedLLM,
    "openai": OpenAILLM,
    "transformers": TransformersLLM,
}
_INSTANCES: OrderedDict[tuple, tuple[LLM, dict[Sampling, Sampled]]] = OrderedDict()
_INSTANCES_LOCK = threading.Lock()


class Sampled:
    """A loaded model seen with one caller's sampling settings: ``chat`` and ``stream`` pass
    them per call; everything else (``model_id``, the backend's own attributes) is the model's."""

    def __init__(self, llm: LLM, sampling: Sampling):
        object.__setattr__(self, "llm", llm)
        object.__setattr__(self, "sampling", sampling)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """Patching goes to the model (evals' TokenMeter wraps its ``_complete``)."""
        setattr(self.llm, name, value)

    def chat(self, messages, schema=None, *, images=None, max_tokens=None, sampling=None):
        return self.llm.chat(
            messages,
            schema,
            images=images,
            max_tokens=max_tokens,
            sampling=sampling or self.sampling,
        )

    def stream(self, messages, *, max_tokens=None, sampling=None):
        return self.llm.stream(messages, max_tokens=max_tokens, sampling=sampling or self.sampling)


def role_settings(settings: Settings, role: Literal["reason", "judge"]) -> Settings:
    """The settings ``role`` runs with: the judge's backend/model when set, else the reasoner's."""
    if role == "reason" or (settings.judge_backend is None and settings.judge_model is None):
        return settings
    update: dict[str, Any] = {}
    if settings.judge_backend is not None:
        update["llm_backend"] = settings.judge_backend
    if settings.judge_model is not None:
        update["llm_model"] = settings.judge_model
    return settings.model_copy(update=update)


def _key(s: Settings) -> tuple:
    """Which model is loaded, and how: not how it samples (that goes with each call)."""
    return (
        s.llm_backend,
        s.llm_model,
        s.llm_base_url if s.llm_backend == "openai" else None,
        s.llm_api_key.get_secret_value() if s.llm_backend == "openai" else None,
        s.llm_multimodal,
        s.llm_context,
        s.device,
        s.cpu_threads,
        str(s.model_dir),
    )


def get_llm(settings: Settings, *, role: Literal["reason", "judge"] = "reason") -> LLM:
    """The process-wide LLM for ``role``: one loaded instance per backend and model (at most
    ``LLM_CACHE_SIZE``, least recently used dropped), seen through ``role``'s sampling."""
    s = role_settings(settings, role)
    key, sampling = _key(s), Sampling.of(s)
    with _INSTANCES_LOCK:
        if key in _INSTANCES:
            _INSTANCES.move_to_end(key)
        else:
            _INSTANCES[key] = (_BACKENDS[s.llm_backend](s), {})
            while len(_INSTANCES) > LLM_CACHE_SIZE:
                _INSTANCES.popitem(last=False)  # freed when its last user lets go
        llm, views = _INSTANCES[key]
        return views.setdefault(sampling, Sampled(llm, sampling))
