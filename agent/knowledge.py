"""The emotion knowledge base and the memory of past analyses, in an embedded chromadb.

Knowledge entries (``agent/knowledge/*.jsonl``: id, title, text, source) are indexed once per
data directory and re-indexed when the files change (their hash is kept in the collection's
metadata). The retrieve step queries with the cue sentences. A second collection holds one
short summary per stored analysis for "similar analyses".

Several processes may share one data directory (``affectlens ui`` running while
``affectlens analyze`` stores a result). chromadb's PersistentClient keeps its vector index in
memory per process, so a long-lived process would not see (and could later overwrite) what
another wrote. Hence: every write holds a file lock (``chroma.lock``) and then bumps a
generation file (``chroma.gen``); a process that finds a generation other than the one it last
saw reopens its client before reading or writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from affectlens.agent.embeddings import MiniLMEmbedding
from affectlens.agent.schemas import AnalysisResult, Cue
from affectlens.settings import Settings

KNOWLEDGE_DIR = Path(__file__).with_name("knowledge")
KNOWLEDGE = "knowledge"
ANALYSES = "analyses"
_lock = threading.RLock()
LOCK_TIMEOUT_S = 300.0
_clients: dict[str, tuple[Any, str]] = {}  # chroma path -> (client, generation it has seen)


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


def _open(path: str):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    Path(path).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=path, settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    )


def _gen_file(settings: Settings) -> Path:
    return settings.data_dir / "chroma.gen"


def _generation(settings: Settings) -> str:
    try:
        return _gen_file(settings).read_text(encoding="ascii").strip()
    except OSError:
        return ""


def client(settings: Settings):
    """The embedded chromadb under ``settings.data_dir / "chroma"``: one per process, reopened
    when another process has written since (see the module docstring)."""
    path = str(settings.data_dir / "chroma")
    with _lock:
        gen = _generation(settings)
        cached = _clients.get(path)
        if cached is not None and cached[1] == gen:
            return cached[0]
        if cached is not None:
            cached[0].close()  # drops this process's stale in-memory index
        fresh = _open(path)
        _clients[path] = (fresh, gen)
        return fresh


@contextmanager
def writing(settings: Settings) -> Iterator[Any]:
    """The client, for one writer at a time across processes; afterwards the generation moves
    on so other processes reopen before their next use."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _lock, FileLock(str(settings.data_dir / "chroma.lock"), timeout=LOCK_TIMEOUT_S):
        c = client(settings)
        try:
            yield c
        finally:
            gen = uuid.uuid4().hex
            tmp = _gen_file(settings).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(gen, encoding="ascii")
            os.replace(tmp, _gen_file(settings))
            _clients[str(settings.data_dir / "chroma")] = (c, gen)


def _collection(settings: Settings, name: str, chroma: Any = None):
    return (chroma or client(settings)).get_or_create_collection(
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
    with writing(settings) as chroma:
        col = _collection(settings, KNOWLEDGE, chroma)
        meta = col.metadata or {}
        if meta.get("kb_hash") == want and col.count() > 0:  # another process built it
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
        col.modify(
            metadata={
                **{k: v for k, v in meta.items() if not k.startswith("hnsw")},
                "kb_hash": want,
            }
        )
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
    res = col.query(
        query_texts=queries,
        n_results=min(per_query, col.count()),
        include=["documents", "distances", "metadatas"],
    )
    # A hit's text is the entry's own (indexed as "title: text" for retrieval): the titles
    # repeat what every text says first ("AU12 lip corner puller: AU12 (lip corner puller)
    # pulls..."), ~7 prompt tokens an entry.
    ranked = [
        [
            Hit(i, doc.removeprefix(f"{(meta or {}).get('title', '')}: "), float(d))
            for i, doc, meta, d in zip(ids, docs, metas, dists)
        ]
        for ids, docs, metas, dists in zip(
            res["ids"], res["documents"], res["metadatas"], res["distances"]
        )
    ]
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
    with writing(settings) as chroma:
        _collection(settings, ANALYSES, chroma).upsert(
            ids=[result.id],
            documents=[analysis_summary(result)],
            metadatas=[
                {
                    "label": label,
                    "file_name": result.media.file_name,
                    "created": result.created.isoformat(),
                }
            ],
        )


def forget_analysis(analysis_id: str, settings: Settings) -> None:
    with writing(settings) as chroma:
        _collection(settings, ANALYSES, chroma).delete(ids=[analysis_id])


def similar_analyses(
    query_text: str, settings: Settings, k: int = 5, *, exclude: str | None = None
) -> list[tuple[str, str, float]]:
    """Past analyses nearest to a text: ``[(id, label, cosine distance)]``, nearest first."""
    col = _collection(settings, ANALYSES)
    n = col.count()
    if n == 0 or not query_text.strip():
        return []
    res = col.query(
        query_texts=[query_text],
        n_results=min(n, k + (1 if exclude else 0)),
        include=["metadatas", "distances"],
    )
    out = [
        (i, (m or {}).get("label", ""), float(d))
        for i, m, d in zip(res["ids"][0], res["metadatas"][0], res["distances"][0])
        if i != exclude
    ]
    return out[:k]
