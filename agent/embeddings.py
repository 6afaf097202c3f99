"""The bundled MiniLM sentence embeddings as a chromadb embedding function.

chromadb's default embedding function downloads a model (fails offline), so the knowledge base
and the memory of past analyses embed with all-MiniLM-L6-v2 from the model directory, loaded
once per process.
"""

from __future__ import annotations

from typing import Any

from chromadb import Documents, EmbeddingFunction, Embeddings
from chromadb.api.types import Space

from affectlens.cache import model_cache
from affectlens.models import model_path
from affectlens.settings import Settings

MODEL_NAME = "all-MiniLM-L6-v2"


@model_cache(maxsize=2)
def _load(path: str, device: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device, local_files_only=True)


def sentence_model(settings: Settings):
    """The SentenceTransformer, loaded once per (path, device) (``affectlens.cache``)."""
    return _load(str(model_path(MODEL_NAME, settings.model_dir)), settings.resolved_device)


class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """chromadb EmbeddingFunction over the local MiniLM (normalised, cosine space)."""

    def __init__(self, settings: Settings):
        self._settings = settings

    def __call__(self, input: Documents) -> Embeddings:
        model = sentence_model(self._settings)
        vecs = model.encode(list(input), normalize_embeddings=True, convert_to_numpy=True)
        return [v for v in vecs]

    @staticmethod
    def name() -> str:
        return "affectlens-minilm"

    def default_space(self) -> Space:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_NAME}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        from affectlens.settings import get_settings

        return MiniLMEmbedding(get_settings())
