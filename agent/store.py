"""Stored analyses: one JSON file each under ``settings.data_dir / "analyses"``, written
atomically, and indexed in chromadb for "similar analyses"."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from affectlens.settings import Settings
from agent.schemas import AnalysisResult

log = logging.getLogger(__name__)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class AnalysisNotFound(KeyError):
    """No stored analysis has this id."""


@dataclass(frozen=True)
class StoredAnalysis:
    id: str
    label: str
    file_name: str
    created: datetime


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
        """tmp file + os.replace, so a reader never sees half a file."""
        path = self.path(result.id)
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{result.id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(result.model_dump_json(indent=1))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def save(self, result: AnalysisResult) -> Path:
        """Write, then index. The JSON is the analysis; the index only serves "similar
        analyses", so an indexing failure is recorded as a warning in the stored result (and
        logged) instead of failing an analysis that was saved."""
        path = self._write(result)
        if self.index:
            from agent.knowledge import index_analysis

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
                out.append(StoredAnalysis(
                    id=data["id"], label=reading.get("label", ""),
                    file_name=data.get("media", {}).get("file_name", ""),
                    created=datetime.fromisoformat(data["created"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(out, key=lambda a: a.created, reverse=True)

    def delete(self, analysis_id: str) -> bool:
        """Remove the file and its index entry; False when there was none."""
        path = self.path(analysis_id)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        if self.index:
            from agent.knowledge import forget_analysis

            forget_analysis(analysis_id, self.settings)
        return existed
