"""The emotion knowledge base and the memory of past analyses, in an embedded chromadb.

Knowledge entries (``agent/knowledge/*.jsonl``: id, title, text, source) are indexed once per
data directory and re-indexed when the files change (their hash is kept in the collection's
metadata). The retrieve step queries with the cue sentences. A second collection holds one
short summary per stored analysis for "similar analyses".
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from affectlens.settings import Settings
from agent.embeddings import MiniLMEmbedding
from agent.schemas import AnalysisResult, Cue

KNOWLEDGE_DIR = Path(__file__).with_name("knowledge")
KNOWLEDGE = "knowledge"
ANALYSES = "analyses"
_lock = threading.Lock()


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    text: str
    source: str


def load_entries(folder: Path = KNOWLEDGE_DIR) -> list[Entry]:
    """Every entry of every ``*.jsonl`` file; a duplicate id or a missing field is an error."""
    entries: dict[str, Entry] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"id", "title", "text", "source"} - row.keys()
            if missing:
                raise ValueError(f"{path.name}:{n} lacks {sorted(missing)}")
            if row["id"] in entries:
                raise ValueError(f"{path.name}:{n} repeats id {row['id']!r}")
            entries[row["id"]] = Entry(row["id"], row["title"], row["text"], row["source"])
    return list(entries.values())


def knowledge_hash(folder: Path = KNOWLEDGE_DIR) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=4)
def _client(path: str):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    Path(path).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=path, settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    )


def client(settings: Settings):
    """The embedded chromadb under ``settings.data_dir / "chroma"`` (one per process)."""
    return _client(str(settings.data_dir / "chroma"))


def _collection(settings: Settings, name: str):
    return client(settings).get_or_create_collection(
        name, embedding_function=MiniLMEmbedding(settings), metadata={"hnsw:space": "cosine"}
    )


def knowledge_collection(settings: Settings, folder: Path = KNOWLEDGE_DIR):
    """The indexed knowledge base; (re)built when the files' hash differs from the stored one."""
    with _lock:
        col = _collection(settings, KNOWLEDGE)
        want = knowledge_hash(folder)
        meta = col.metadata or {}
        if meta.get("kb_hash") == want and col.count() > 0:
            return col
        entries = load_entries(folder)
        existing = col.get(include=[])["ids"]
        if existing:
            col.delete(ids=existing)
        col.add(
            ids=[e.id for e in entries],
            documents=[f"{e.title}: {e.text}" for e in entries],
            metadatas=[{"title": e.title, "source": e.source} for e in entries],
        )
        col.modify(metadata={**{k: v for k, v in meta.items() if not k.startswith("hnsw")},
                             "kb_hash": want})
        return col


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    distance: float


def retrieve(queries: list[str], settings: Settings, k: int = 5, per_query: int = 3) -> list[Hit]:
    """Up to ``k`` entries, taken round-robin over the queries' ranked hits (so each cue gets
    its best entry before any cue gets a second one), without repeats."""
    queries = [q for q in queries if q.strip()]
    if not queries:
        return []
    col = knowledge_collection(settings)
    res = col.query(query_texts=queries, n_results=min(per_query, col.count()),
                    include=["documents", "distances"])
    ranked = [[Hit(i, doc, float(d)) for i, doc, d in zip(ids, docs, dists)]
              for ids, docs, dists in zip(res["ids"], res["documents"], res["distances"])]
    out: dict[str, Hit] = {}
    for rank in range(per_query):
        for hits in sorted(ranked, key=lambda h: h[0].distance if h else 9):
            if rank < len(hits) and hits[rank].id not in out and len(out) < k:
                out[hits[rank].id] = hits[rank]
    return list(out.values())


def cue_queries(cues: list[Cue]) -> list[str]:
    """Query texts: the emotion-bearing cue sentences (not transcripts: they are about topics,
    not emotion theory), a prototype query naming the AUs seen together, and the face's top
    expression as a prototype query."""
    qs = [f"{c.name} {c.text}" for c in cues if c.modality != "speech" and c.name != "expression"]
    aus = [c.name for c in cues if c.name.startswith("AU")]
    if aus:
        qs.insert(0, "facial prototype expression " + "+".join(aus))
    expr = next((c for c in cues if c.name == "expression"), None)
    if expr:
        qs.insert(0, f"prototypical facial expression {expr.text.split(':')[-1].strip()}")
    return qs


# memory of past analyses ----------------------------------------------------------------------
def analysis_summary(result: AnalysisResult) -> str:
    """The short text indexed for similarity: label plus the first explanation sentences."""
    r = result.reading
    if r is None:
        return f"{result.media.file_name}: no reading ({result.error or 'unknown'})"
    return f"{r.label}. " + " ".join(r.explanation[:2])


def index_analysis(result: AnalysisResult, settings: Settings) -> None:
    """Add or replace one analysis in the memory collection."""
    label = result.reading.label if result.reading else ""
    _collection(settings, ANALYSES).upsert(
        ids=[result.id], documents=[analysis_summary(result)],
        metadatas=[{"label": label, "file_name": result.media.file_name,
                    "created": result.created.isoformat()}],
    )


def forget_analysis(analysis_id: str, settings: Settings) -> None:
    _collection(settings, ANALYSES).delete(ids=[analysis_id])


def similar_analyses(query_text: str, settings: Settings, k: int = 5,
                     *, exclude: str | None = None) -> list[tuple[str, str, float]]:
    """Past analyses nearest to a text: ``[(id, label, cosine distance)]``, nearest first."""
    col = _collection(settings, ANALYSES)
    n = col.count()
    if n == 0 or not query_text.strip():
        return []
    res = col.query(query_texts=[query_text], n_results=min(n, k + (1 if exclude else 0)),
                    include=["metadatas", "distances"])
    out = [(i, (m or {}).get("label", ""), float(d))
           for i, m, d in zip(res["ids"][0], res["metadatas"][0], res["distances"][0])
           if i != exclude]
    return out[:k]
