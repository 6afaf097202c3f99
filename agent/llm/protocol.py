"""What every backend speaks: the ``LLM`` interface, its error, per-call ``Sampling``, and the
JSON/schema helpers that turn a reply into a validated pydantic object.

Every structured reply is parsed with ``json.JSONDecoder().raw_decode`` and validated by pydantic;
no regex scraping.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from affectlens.settings import Settings


class LLMError(RuntimeError):
    """The LLM could not answer: server unreachable, model missing, or no valid JSON."""


class Sampling(BaseModel):
    """How one call decodes: passed per call, not part of which model is loaded."""

    model_config = ConfigDict(frozen=True)

    max_tokens: int = 384
    temperature: float = 0.0
    seed: int = 0
    prompt_cache: Literal["ram", "prefix", "off"] = "ram"

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
