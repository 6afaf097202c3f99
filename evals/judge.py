"""Explanation vs reference: an LLM judge with a fixed rubric, and embedding similarity.

The judge follows EMER's scoring (Lian et al. 2023): an LLM compares the predicted explanation
with the annotators' reference and rates clue overlap and label overlap from 1 to 10. The reply
is decoded into a JSON object and then validated against ``JudgeScores`` (bounded ints): a
value out of range, a missing field or an unparsable reply becomes a recorded failure with its
raw text, never a default score. Every result carries the prompt id, the prompt's SHA-256 and
the judge model, so scores from different judges are never mixed silently.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import cached_property
from typing import Any, TypedDict

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from affectlens import prompts
from affectlens.evals import metrics
from affectlens.settings import Settings

PROMPT = "judge"
JUDGE_MAX_TOKENS = 48  # two small ints in JSON


class JudgeError(ValueError):
    """The judge's reply is not a valid pair of 1-10 scores."""


class JudgeScores(BaseModel):
    """The rubric's two scores; out of range is invalid, not clipped."""

    clue_overlap: int = Field(ge=1, le=10, strict=True)
    label_overlap: int = Field(ge=1, le=10, strict=True)


class _Reply(BaseModel):
    """What the LLM is constrained to emit: the shape only, so a bad value reaches the parser
    and is recorded as such instead of being repaired by the backend."""

    clue_overlap: int
    label_overlap: int


class JudgeResult(BaseModel):
    ok: bool
    scores: JudgeScores | None = None
    error: str | None = None
    raw: str | None = Field(default=None, description="The reply as received.")
    prompt: str
    prompt_sha256: str
    model: str
    seconds: float = 0.0


def parse_judgement(reply: str | dict | BaseModel) -> JudgeScores:
    """Validate a judge reply (JSON text, dict or decoded object) into ``JudgeScores``.

    Raises ``JudgeError`` for unparsable text, missing fields, non-integers (``7.5``, ``"7"``)
    and values outside 1-10.
    """
    if isinstance(reply, BaseModel):
        reply = reply.model_dump()
    if isinstance(reply, str):
        text = reply
        start = text.find("{")
        if start < 0:
            raise JudgeError(f"no JSON object in the judge reply: {text[:120]!r}")
        try:
            reply, _ = json.JSONDecoder().raw_decode(text, start)
        except json.JSONDecodeError as exc:
            raise JudgeError(f"judge reply is not JSON ({exc.msg}): {text[:120]!r}") from exc
    if not isinstance(reply, dict):
        raise JudgeError(f"judge reply is not a JSON object: {reply!r}")
    try:
        return JudgeScores.model_validate(reply)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise JudgeError(f"invalid judge scores ({problems}): {reply!r}") from exc


class PromptInfo(TypedDict):
    prompt: str
    prompt_sha256: str


def prompt_info(version: int | None = None) -> PromptInfo:
    """The judge prompt's id and the SHA-256 of its template file."""
    name = prompts.version(PROMPT, version)
    text = (prompts.DIR / f"{name}.j2").read_bytes()
    return PromptInfo(prompt=name, prompt_sha256=hashlib.sha256(text).hexdigest())


class Judge:
    """The LLM judge. ``llm`` defaults to ``agent.llm.get_llm(settings, role="judge")`` (the
    embedded model unless ``judge_backend``/``judge_model`` say otherwise); loaded lazily."""

    def __init__(self, settings: Settings, llm: Any = None):
        self.settings = settings
        self._llm = llm
        self.info = prompt_info()

    @cached_property
    def llm(self) -> Any:
        if self._llm is None:
            from affectlens.agent.llm import get_llm

            self._llm = get_llm(self.settings, role="judge")
        return self._llm

    @property
    def model_id(self) -> str:
        return getattr(self.llm, "model_id", type(self.llm).__name__)

    def messages(self, explanation: str, reference: str, gold: list[str], label: str) -> list[dict]:
        from affectlens.agent.textualise import neutralise

        # Both texts are data (the explanation is LLM output that may echo a transcript):
        # neutralised, so neither can close its fence or add a line of instructions.
        text = prompts.render(
            PROMPT,
            reference=neutralise(reference),
            gold=neutralise(", ".join(gold)),
            explanation=neutralise(explanation),
            label=neutralise(label),
        )
        return [{"role": "user", "content": text}]

    def score(
        self, explanation: str, reference: str, gold: list[str], label: str = ""
    ) -> JudgeResult:
        """Rate one explanation against its reference; failures are returned, not raised."""
        t0 = time.perf_counter()
        raw: str | None = None
        try:
            model = self.model_id
        except Exception as exc:  # the judge model cannot load: every score fails, with why
            return JudgeResult(ok=False, error=f"judge unavailable: {exc}", model="", **self.info)
        try:
            reply = self.llm.chat(
                self.messages(explanation, reference, gold, label),
                schema=_Reply,
                max_tokens=JUDGE_MAX_TOKENS,
            )
            raw = reply.model_dump_json() if isinstance(reply, BaseModel) else str(reply)
            scores = parse_judgement(reply)
        except Exception as exc:  # LLMError, JudgeError, server errors: all recorded
            return JudgeResult(
                ok=False,
                error=f"{type(exc).__name__}: {exc}",
                raw=raw,
                model=model,
                seconds=time.perf_counter() - t0,
                **self.info,
            )
        return JudgeResult(
            ok=True,
            scores=scores,
            raw=raw,
            model=model,
            seconds=time.perf_counter() - t0,
            **self.info,
        )


class Similarity:
    """Embedding similarity between an explanation and the reference (MiniLM, normalised).

    ``cosine``: explanation text vs reference text; ``clue_coverage``: mean over reference clue
    sentences of the best cosine to an explanation sentence (``metrics.clue_coverage``).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        from affectlens.agent.embeddings import MODEL_NAME

        self.model_id = MODEL_NAME

    @cached_property
    def model(self) -> Any:
        from affectlens.agent.embeddings import sentence_model

        return sentence_model(self.settings)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    def score(self, explanation: list[str], reference: str, clues: list[str]) -> dict[str, float]:
        if not explanation or not (reference or clues):
            return {"cosine": float("nan"), "clue_coverage": float("nan")}
        clues = clues or [reference]
        vecs = self.encode(
            [" ".join(explanation), reference or " ".join(clues), *explanation, *clues]
        )
        n = len(explanation)
        return {
            "cosine": metrics.cosine(vecs[0], vecs[1]),
            "clue_coverage": metrics.clue_coverage(vecs[2 + n :], vecs[2 : 2 + n]),
        }
