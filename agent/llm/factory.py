"""``get_llm``: one loaded instance per model per process (bounded, least recently used
evicted), seen through each caller's sampling, so a caller with other sampling settings shares
the loaded model instead of loading a second copy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, cast

from affectlens.agent.llm.embedded import EmbeddedLLM
from affectlens.agent.llm.openai_compat import OpenAILLM
from affectlens.agent.llm.protocol import LLM, Sampling
from affectlens.agent.llm.transformers_local import TransformersLLM
from affectlens.cache import ModelCache
from affectlens.settings import Settings

LLM_CACHE_SIZE = 2  # loaded models kept per process (reasoner + judge); the oldest is dropped

_BACKENDS: dict[str, Callable[[Settings], LLM]] = {
    "embedded": EmbeddedLLM,
    "openai": OpenAILLM,
    "transformers": TransformersLLM,
}
_VIEWS_LOCK = threading.Lock()


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


def _load(s: Settings) -> tuple[LLM, dict[Sampling, Sampled]]:
    """A backend instance and its per-sampling views."""
    return _BACKENDS[s.llm_backend](s), {}


_INSTANCES = ModelCache(
    _load,
    maxsize=LLM_CACHE_SIZE,
    key=_key,
    describe=lambda k: " ".join(map(str, cast(tuple, k)[:2])),  # no API key
)


def get_llm(settings: Settings, *, role: Literal["reason", "judge"] = "reason") -> LLM:
    """The process-wide LLM for ``role``: one loaded instance per backend and model (at most
    ``LLM_CACHE_SIZE``, least recently used dropped), seen through ``role``'s sampling."""
    s = role_settings(settings, role)
    llm, views = _INSTANCES(s)
    with _VIEWS_LOCK:
        return views.setdefault(Sampling.of(s), Sampled(llm, Sampling.of(s)))
