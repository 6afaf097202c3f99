"""The ``openai`` backend: any OpenAI-compatible server (``vllm serve``, llama.cpp's server,
Ollama). Structured output through ``response_format`` ``json_schema``, falling back to
``json_object`` plus the schema in the prompt when the server rejects it; key frames travel as
JPEG ``image_url`` parts when ``llm_multimodal`` is on."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any, Literal, cast

import numpy as np
from pydantic import BaseModel

from affectlens.agent.llm.protocol import (
    LLMError,
    Sampling,
    check_messages,
    validated,
    with_schema_prompt,
)
from affectlens.settings import Settings

OPENAI_ATTEMPTS = 2  # json_schema or fallback, plus one repair retry
OPENAI_TIMEOUT_S = 600.0  # a CPU server can take minutes for a long prompt
OPENAI_CONNECT_TIMEOUT_S = 5.0


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
            # openai's stubs name their own httpx build; it takes httpx.Timeout at run time
            timeout=httpx.Timeout(OPENAI_TIMEOUT_S, connect=OPENAI_CONNECT_TIMEOUT_S),  # type: ignore[arg-type]
            max_retries=1,
        )
        self.model_id = f"{settings.llm_model} (openai-compatible at {settings.llm_base_url})"
        self._format: str | None = None  # the first response_format this server accepted

    def _create(self, messages: list[dict], max_tokens: int, s: Sampling, **kwargs: Any) -> Any:
        openai = self._openai
        try:
            return self.client.chat.completions.create(
                model=self.settings.llm_model,
                messages=cast(Any, messages),  # role/content dicts, checked by check_messages
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
