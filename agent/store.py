"""Stored analyses: one JSON file each under ``settings.data_dir / "analyses"``, written
atomically, and indexed in chromadb for "similar analyses"."""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from affectlens.agent.schemas import AnalysisResult
from affectlens.settings import Settings

log = logging.getLogger(__name__)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """tmp file in the same folder, fsync, ``os.replace``: a reader (or a rerun after kill -9)
    sees the old file or the new one, never half of one. The one writer of every stored record
    (analyses, batch results)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AnalysisNotFound(KeyError):
    """No stored analysis has this id."""


@dataclass(frozen=True)
class StoredAnalysis:
    id: str
    label: str
    file_name: str
    created: datetime
    owner: str | None = None


class AnalysisStore:
    """save / get / list / delete AnalysisResult JSON files."""

    def __init__(self, settings: Settings, *, index: bool = True):
        self.settings = settings
        self.dir = settings.data_dir / "analyses"
        self.index = index

    def path(self, analysis_id: str) -> Path:
        if not _ID.match(analysis_id):
            raise AnalysisNotFound(f"not a valid analysis id: {analysis_id!r}")
        return self.dir / f"{analysis_id}.json"

    def _write(self, result: AnalysisResult) -> Path:
        path = self.path(result.id)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, result.model_dump_json(indent=1))  # private to the user (0600)
        return path

    def save(self, result: AnalysisResult) -> Path:
        """Write, then index. The JSON is the analysis; the index only serves "similar
        analyses", so an indexing failure is recorded as a warning in the stored result (and
        logged) instead of failing an analysis that was saved."""
        path = self._write(result)
        try:
            self.prune()
        except Exception as exc:  # noqa: BLE001 - retention must not fail a new analysis
            log.warning("pruning old analyses failed: %s", exc)
        if self.index:
            from affectlens.agent.knowledge import index_analysis

            try:
                index_analysis(result, self.settings)
            except Exception as exc:  # noqa: BLE001 - chromadb/embedding failure of any kind
                warning = f"saved, but not indexed for similar analyses: {exc}"
                log.warning("%s: %s", result.id, warning)
                self._write(result.model_copy(update={"warnings": [*result.warnings, warning]}))
        return path

    def get(self, analysis_id: str) -> AnalysisResult:
        path = self.path(analysis_id)
        if not path.is_file():
            raise AnalysisNotFound(f"no analysis {analysis_id!r} in {self.dir}")
        return AnalysisResult.model_validate_json(path.read_text(encoding="utf-8"))

    def list(self) -> list[StoredAnalysis]:
        """Newest first. Unreadable files are skipped (a stored file never breaks the list)."""
        out = []
        for p in self.dir.glob("*.json") if self.dir.is_dir() else []:
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
                reading = data.get("reading") or {}
                out.append(
                    StoredAnalysis(
                        id=data["id"],
                        label=reading.get("label", ""),
                        file_name=data.get("media", {}).get("file_name", ""),
                        created=datetime.fromisoformat(data["created"]),
                        owner=data.get("owner"),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(out, key=lambda a: a.created, reverse=True)

    # builtins.list: in the class body below, ``list`` is the method above
    def list_for(self, owner: str | None) -> builtins.list[StoredAnalysis]:
        """What one web user may see: with auth (``owner`` set) only their own analyses;
        without auth (``owner`` None, a single-user app) all of them."""
        items = self.list()
        return items if owner is None else [a for a in items if a.owner == owner]

    def get_for(self, analysis_id: str, owner: str | None) -> AnalysisResult:
        """``get``, but another user's analysis is "not found" (its existence is not revealed)."""
        result = self.get(analysis_id)
        if owner is not None and result.owner != owner:
            raise AnalysisNotFound(f"no analysis {analysis_id!r}")
        return result

    def set_owner(self, analysis_id: str, owner: str) -> None:
        """Record who ran an analysis (the UI calls this as soon as the run is stored)."""
        self._write(self.get(analysis_id).model_copy(update={"owner": owner}))

    def frames_dir(self, analysis_id: str) -> Path:
        """Where the UI keeps an analysis's key frames and the clip its player shows."""
        self.path(analysis_id)  # validates the id (it becomes a folder name)
        return self.settings.data_dir / "ui" / "frames" / analysis_id

    def delete(self, analysis_id: str) -> bool:
        """Remove everything kept for an analysis: the JSON, its index entry, its chat threads
        and its key frames and kept clip. False when there was no JSON (the rest is removed
        anyway)."""
        path = self.path(analysis_id)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        shutil.rmtree(self.frames_dir(analysis_id), ignore_errors=True)
        if (self.settings.data_dir / "chat.sqlite").is_file():
            from affectlens.agent.chat import delete_threads

            delete_threads(analysis_id, self.settings)
        if self.index and (self.settings.data_dir / "chroma").is_dir():
            from affectlens.agent.knowledge import forget_analysis

            forget_analysis(analysis_id, self.settings)
        return existed

    def prune(self, now: datetime | None = None) -> builtins.list[str]:
        """Delete analyses older than ``settings.retention_days``; returns their ids."""
        days = self.settings.retention_days
        if days is None:
            return []
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        old = [a.id for a in self.list() if _aware(a.created) < cutoff]
        for analysis_id in old:
            self.delete(analysis_id)
        return old


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
