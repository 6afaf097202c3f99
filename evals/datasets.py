"""Evaluation sets: a folder with a manifest, or the label files of public sets.

A manifest (``manifest.jsonl`` or ``manifest.csv``) has one sample per row:

- ``clip``: media path, relative to the manifest (absolute paths work too),
- ``labels``: gold label(s): basic ("surprise"), compound ("happily surprised") or free words;
  a JSON list, or a string split on ``,``/``;``/``|``,
- optional ``id``, ``reference`` (a reference explanation), ``clues`` (list of clue sentences),
  ``valence`` and ``arousal`` in [-1, 1], ``subtitle``.

Known public formats: MELD's CSV (``load_meld``) and EMER's ``gt-eng.csv`` (``load_emer``, text
only). ``load_dataset`` recognises all of them from the path.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator


class DatasetError(ValueError):
    """A dataset cannot be read; the message names the file and the row."""


class Sample(BaseModel):
    id: str
    clip: Path | None = Field(default=None, description="Resolved media path; None: text only.")
    labels: list[str] = Field(min_length=1)
    reference: str | None = None
    clues: list[str] = []
    valence: float | None = Field(default=None, ge=-1, le=1)
    arousal: float | None = Field(default=None, ge=-1, le=1)
    subtitle: str | None = None
    meta: dict[str, Any] = {}

    @field_validator("labels", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_labels(value) if isinstance(value, str) else value


class Dataset(BaseModel):
    name: str
    source: Path = Field(description="The manifest or label file read.")
    format: str
    samples: list[Sample]

    def head(self, limit: int | None) -> Dataset:
        """The first ``limit`` samples (all when None), for quick and CI runs."""
        if limit is None:
            return self
        return self.model_copy(update={"samples": self.samples[: max(limit, 0)]})


def split_labels(value: str) -> list[str]:
    """ "['happy', 'shy']" or "happy, shy" -> ["happy", "shy"]."""
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text.replace("'", '"'))
            return [str(v).strip() for v in parsed if str(v).strip()]
        except json.JSONDecodeError:
            text = text.strip("[]")
    return [p.strip().strip("'\"") for p in re.split(r"[,;|]", text) if p.strip().strip("'\"")]


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset folder (``manifest.jsonl`` / ``manifest.csv``) or a label file; the format
    is recognised from the file's columns."""
    path = Path(path)
    if path.is_dir():
        for name in ("manifest.jsonl", "manifest.csv"):
            if (path / name).is_file():
                return load_dataset(path / name)
        raise DatasetError(f"{path}: no manifest.jsonl or manifest.csv in this folder")
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file or folder")
    if path.suffix == ".jsonl":
        return load_manifest(path)
    if path.suffix == ".csv":
        header = _csv_header(path)
        if {"Utterance", "Emotion", "Dialogue_ID", "Utterance_ID"} <= header:
            return load_meld(path)
        if {"names", "emotions", "reasons"} <= header:
            return load_emer(path)
        return load_manifest(path)
    raise DatasetError(f"{path}: expected a folder, .jsonl or .csv")


def load_manifest(path: str | Path) -> Dataset:
    """A JSONL or CSV manifest; clip paths are resolved against the manifest's folder."""
    path = Path(path)
    rows = list(_read_rows(path))
    samples = []
    for i, row in enumerate(rows, 1):
        clip = row.get("clip") or row.get("path")
        if not clip:
            raise DatasetError(f"{path}:{i}: no 'clip' field")
        resolved = (path.parent / clip).resolve() if not Path(clip).is_absolute() else Path(clip)
        clues = row.get("clues") or []
        if isinstance(clues, str):
            clues = [c.strip() for c in clues.split("|") if c.strip()]
        fields = {
            "id": str(row.get("id") or Path(clip).stem),
            "clip": resolved,
            "labels": row.get("labels") or row.get("label"),
            "reference": row.get("reference") or None,
            "clues": clues,
            "valence": _number(row.get("valence")),
            "arousal": _number(row.get("arousal")),
            "subtitle": row.get("subtitle") or None,
            "meta": {
                k: v for k, v in row.items() if k in ("note", "source", "speaker", "intended")
            },
        }
        samples.append(_sample(path, i, fields))
    return Dataset(name=path.parent.name, source=path, format="manifest", samples=samples)


def load_meld(path: str | Path, clip_dir: str | Path | None = None) -> Dataset:
    """MELD's label CSV (Poria et al. 2019): one utterance a row; the clip is
    ``dia{Dialogue_ID}_utt{Utterance_ID}.mp4`` in ``clip_dir`` (default: beside the CSV).
    Emotion is one of MELD's 7 (neutral, joy, sadness, anger, surprise, fear, disgust);
    Sentiment is kept in ``meta``."""
    path = Path(path)
    clips = Path(clip_dir) if clip_dir else path.parent
    samples = []
    for i, row in enumerate(_read_rows(path), 1):
        try:
            dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{path}:{i}: bad Dialogue_ID/Utterance_ID ({exc})") from exc
        name = f"dia{dia}_utt{utt}"
        fields = {
            "id": name,
            "clip": (clips / f"{name}.mp4").resolve(),
            "labels": [row.get("Emotion", "")],
            "subtitle": row.get("Utterance"),
            "meta": {
                k: row.get(k)
                for k in ("Speaker", "Sentiment", "Season", "Episode", "StartTime", "EndTime")
            },
        }
        samples.append(_sample(path, i, fields))
    return Dataset(name=path.stem, source=path, format="meld", samples=samples)


def load_emer(path: str | Path) -> Dataset:
    """EMER's reference CSV (Lian et al. 2023, ``gt-eng.csv``): ``names, emotions, subtitles,
    reasons``; ``reasons`` is the reference explanation. Text only (no clips)."""
    path = Path(path)
    samples = []
    for i, row in enumerate(_read_rows(path), 1):
        fields = {
            "id": row.get("names") or f"row{i}",
            "clip": None,
            "labels": row.get("emotions"),
            "reference": row.get("reasons") or None,
            "clues": _sentences(row.get("reasons") or ""),
            "subtitle": row.get("subtitles") or None,
        }
        samples.append(_sample(path, i, fields))
    return Dataset(name="emer", source=path, format="emer", samples=samples)


# ---------------------------------------------------------------------------------------------


def _sample(path: Path, line: int, fields: dict[str, Any]) -> Sample:
    try:
        return Sample(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DatasetError(f"{path}:{line}: {problems}") from exc


def _read_rows(path: Path):
    try:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip() and not line.lstrip().startswith("#"):
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise DatasetError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        else:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                yield from csv.DictReader(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def _csv_header(path: Path) -> set[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return {h.strip() for h in next(csv.reader(fh), [])}
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value  # let pydantic report it with the row


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
