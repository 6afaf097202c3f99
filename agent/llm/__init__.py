"""LLM backends behind one interface: ``chat`` (text or a validated pydantic object) and ``stream``.

One module per role:

- ``protocol``: the ``LLM`` interface, ``LLMError``, per-call ``Sampling``, and the JSON/schema
  helpers (``parse_json``, ``validated``); every structured reply is parsed with
  ``json.JSONDecoder().raw_decode`` and validated by pydantic, no regex scraping.
- ``embedded`` (the default backend): llama-cpp-python in-process with a GGUF file; structured
  output through a llama.cpp grammar built from the JSON schema, sampled top token first
  (``grammar_sampler``).
- ``openai_compat`` (backend ``openai``): any OpenAI-compatible server (``vllm serve``,
  llama.cpp's server, Ollama); ``response_format`` ``json_schema``, falling back to
  ``json_object`` plus the schema in the prompt when the server rejects it.
- ``transformers_local`` (backend ``transformers``): a local Hugging Face model directory
  in-process; structured output by validated retry (schema in the prompt, parse, validate,
  feed the error back).
- ``factory``: ``get_llm`` keeps one instance per model per process (bounded, least recently
  used evicted); sampling travels with each call, so callers with other sampling settings share
  the loaded model.
"""

from affectlens.agent.llm.embedded import EmbeddedLLM
from affectlens.agent.llm.factory import LLM_CACHE_SIZE, Sampled, get_llm, role_settings
from affectlens.agent.llm.openai_compat import (
    OpenAILLM,
    classify_error,
    image_data_url,
    with_images,
)
from affectlens.agent.llm.protocol import LLM, LLMError, Sampling, parse_json, validated
from affectlens.agent.llm.transformers_local import TransformersLLM

__all__ = [
    "LLM",
    "LLM_CACHE_SIZE",
    "EmbeddedLLM",
    "LLMError",
    "OpenAILLM",
    "Sampled",
    "Sampling",
    "TransformersLLM",
    "classify_error",
    "get_llm",
    "image_data_url",
    "parse_json",
    "role_settings",
    "validated",
    "with_images",
]
