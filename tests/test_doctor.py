"""`affectlens doctor` reports every component and fails when a default model is missing."""

import pytest
from typer.testing import CliRunner

from affectlens import doctor, models
from affectlens.settings import load_settings
from affectlens.ui.cli import app


def test_doctor_reports_missing_models_and_exits_non_zero(tmp_path):
    result = CliRunner().invoke(app, ["doctor", "--model-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1
    for name in models.REGISTRY:
        if not models.REGISTRY[name].in_place:
            assert name in result.output
    assert "missing" in result.output
    assert "NOT ready" in result.output


def test_doctor_rows_cover_packages_system_and_models(tmp_path):
    rows = doctor.check(load_settings(model_dir=tmp_path / "empty"))
    kinds = {r.kind for r in rows}
    # "loaded": models in memory in this process (other tests may have loaded some)
    assert kinds - {"loaded"} == {"device", "package", "system", "model"}
    by_name = {r.name: r for r in rows}
    assert by_name["ffmpeg"].state == "present"
    assert by_name["qwen2.5-1.5b"].state == "missing"
    assert by_name["compute"].device in ("cpu", "cuda")
    assert not doctor.default_pipeline_ready(rows)


def test_doctor_ready_after_assembly(tmp_path):
    """With the models assembled (setup does it in the default dir), the pipeline is ready."""
    settings = load_settings()
    if any(models.status(n, settings.model_dir).state != "present" for n in models.REGISTRY):
        pytest.fail("run `affectlens models assemble` (scripts/setup.sh does) before the tests")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "default pipeline: ready" in result.output


def test_doctor_lists_the_models_this_process_holds(tmp_path):
    from affectlens.cache import model_cache

    @model_cache(maxsize=1)
    def doctor_probe_model(name):
        return object()

    doctor_probe_model("probe")
    rows = doctor.check(load_settings(model_dir=tmp_path / "empty"))
    assert any(r.kind == "loaded" and r.name.endswith("doctor_probe_model") for r in rows)
    doctor_probe_model.evict("probe")
