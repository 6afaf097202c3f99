"""Chat threads on disk: one SqliteSaver per data directory (``chat.sqlite``), the chat graph
compiled with it, and threads listed, read and deleted through the checkpointer's own API.

A thread's id is ``f"{analysis_id}:{thread}"`` (thread names have no colon), so a
conversation survives a restart and every thread of an analysis can be found and forgotten.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from functools import lru_cache

from langgraph.checkpoint.sqlite import SqliteSaver

from affectlens.agent.chat.graph import build_graph
from affectlens.agent.chat.state import DEFAULT_THREAD, ChatError, ChatMessage
from affectlens.settings import Settings, get_settings

DB_NAME = "chat.sqlite"
_THREAD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_lock = threading.Lock()


@lru_cache(maxsize=4)
def _saver(db: str) -> SqliteSaver:
    conn = sqlite3.connect(db, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def saver(settings: Settings) -> SqliteSaver:
    """The process-wide checkpointer of this data directory."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _lock:
        return _saver(str(settings.data_dir / DB_NAME))


@lru_cache(maxsize=4)
def _graph(db: str):
    return build_graph(_saver(db))


def persistent_graph(settings: Settings):
    """The chat graph compiled with this data directory's checkpointer."""
    saver(settings)
    return _graph(str(settings.data_dir / DB_NAME))


def thread_id(analysis_id: str, thread: str = DEFAULT_THREAD) -> str:
    if not isinstance(thread, str) or not _THREAD.match(thread):
        raise ChatError(f"not a valid thread name: {thread!r} (letters, digits, _ . -)")
    return f"{analysis_id}:{thread}"


def thread_config(analysis_id: str, thread: str = DEFAULT_THREAD) -> dict:
    """The LangGraph config that names one thread."""
    return {"configurable": {"thread_id": thread_id(analysis_id, thread)}}


def history(
    analysis_id: str, thread: str = DEFAULT_THREAD, settings: Settings | None = None
) -> list[ChatMessage]:
    """The thread's messages in order (empty for a thread never used)."""
    settings = settings or get_settings()
    snapshot = persistent_graph(settings).get_state(thread_config(analysis_id, thread))
    return [ChatMessage.model_validate(m) for m in (snapshot.values or {}).get("messages", [])]


def all_threads(settings: Settings | None = None) -> dict[str, list[str]]:
    """Every analysis's thread names, oldest first, from one pass over the checkpoints."""
    first: dict[str, str] = {}  # thread id -> its first checkpoint id (ids sort by time)
    for checkpoint in saver(settings or get_settings()).list(None):  # newest first
        ids = checkpoint.config["configurable"]
        first[ids["thread_id"]] = ids["checkpoint_id"]
    found: dict[str, list[str]] = {}
    for tid in sorted(first, key=first.__getitem__):
        analysis_id, _, name = tid.rpartition(":")
        found.setdefault(analysis_id, []).append(name)
    return found


def threads(analysis_id: str, settings: Settings | None = None) -> list[str]:
    """Names of the analysis's chat threads, oldest first."""
    return all_threads(settings).get(analysis_id, [])


def delete_threads(analysis_id: str, settings: Settings | None = None) -> int:
    """Forget every thread of an analysis (when the analysis is deleted); returns how many."""
    settings = settings or get_settings()
    names = threads(analysis_id, settings)
    for name in names:
        saver(settings).delete_thread(f"{analysis_id}:{name}")
    return len(names)
