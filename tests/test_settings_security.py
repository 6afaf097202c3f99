"""Settings that keep the app safe: unknown keys are errors, auth is a secret from env/config
only, a remote host needs auth (or an explicit override), the Evals folder is bounded by
eval_roots, and retention_days prunes old analyses."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.settings import Settings, load_settings  # noqa: E402


@pytest.fixture
def config_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("AFFECTLENS_CONFIG", str(path))
    for var in [k for k in os.environ if k.startswith("AFFECTLENS_") and k != "AFFECTLENS_CONFIG"]:
        monkeypatch.delenv(var)
    return path


def test_unknown_key_in_config_file_is_named(config_file):
    config_file.write_text("frame_rat = 3.0\n")
    with pytest.raises(ValueError, match="frame_rat"):
        load_settings()


def test_unknown_environment_variable_is_named(config_file, monkeypatch):
    monkeypatch.setenv("AFFECTLENS_LLM_MODLE", "qwen2.5-0.5b")
    with pytest.raises(ValueError, match="AFFECTLENS_LLM_MODLE"):
        load_settings()
    monkeypatch.delenv("AFFECTLENS_LLM_MODLE")
    monkeypatch.setenv("AFFECTLENS_VENV", ".venv")  # setup.sh's, not a setting
    assert load_settings().llm_model == "qwen2.5-1.5b"


def test_cli_reports_an_unknown_key_without_a_traceback(config_file, monkeypatch, tmp_path):
    from affectlens.ui.cli import app

    monkeypatch.setenv("AFFECTLENS_DATADIR", str(tmp_path))
    res = CliRunner().invoke(app, ["history"])
    assert res.exit_code == 2
    assert "AFFECTLENS_DATADIR" in res.output and "Traceback" not in res.output


def test_auth_is_a_secret_from_env_and_not_a_cli_flag(config_file, monkeypatch):
    from affectlens.ui.cli import app

    monkeypatch.setenv("AFFECTLENS_AUTH", "ann:s3cret-pw,bob:other")
    s = load_settings()
    assert "s3cret-pw" not in repr(s) and "s3cret-pw" not in str(s.model_dump())
    assert s.auth_pairs() == [("ann", "s3cret-pw"), ("bob", "other")]
    res = CliRunner().invoke(app, ["ui", "--auth", "ann:pw"])
    assert res.exit_code == 2 and "No such option" in res.output
    monkeypatch.setenv("AFFECTLENS_AUTH", "no-colon")
    with pytest.raises(ValueError, match="user:password"):
        load_settings().auth_pairs()


def test_remote_host_needs_auth_or_the_explicit_override(config_file, tmp_path):
    from affectlens.ui.app import ExposureError, check_exposure, serve

    base = {"data_dir": tmp_path}
    assert check_exposure(Settings(**base)) is None  # loopback
    assert check_exposure(Settings(**base, host="0.0.0.0", auth="ann:pw")) is None
    open_ = Settings(**base, host="0.0.0.0")
    with pytest.raises(ExposureError, match="without authentication"):
        check_exposure(open_)
    with pytest.raises(ExposureError):
        serve(open_, block=False, quiet=True)  # refused before anything listens
    warned = check_exposure(Settings(**base, host="0.0.0.0", allow_remote_without_auth=True))
    assert warned and "WITHOUT authentication" in warned


def test_cli_ui_refuses_remote_host_without_auth(config_file, tmp_path):
    from affectlens.ui.cli import app

    res = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--allow-remote-without-auth" in res.output


def test_eval_folder_is_bounded_by_eval_roots(config_file, tmp_path):
    from affectlens.ui.app import DATASETS_DIR, eval_folder

    s = Settings(data_dir=tmp_path / "data")
    for typed in ("/etc", str(tmp_path), str(DATASETS_DIR / ".." / ".." / "..")):
        with pytest.raises(ValueError, match="eval_roots"):
            eval_folder(None, typed, s)
    bundled = next(p for p in DATASETS_DIR.iterdir() if p.is_dir())
    assert eval_folder(str(bundled.relative_to(DATASETS_DIR.parents[1])), "", s) == bundled
    mine = tmp_path / "sets" / "meld"
    mine.mkdir(parents=True)
    allowed = Settings(data_dir=tmp_path / "data", eval_roots=[tmp_path / "sets"])
    assert eval_folder(None, str(mine), allowed) == mine.resolve()


def test_retention_days_prunes_old_analyses(config_file, tmp_path, face_clip):
    from affectlens.agent.schemas import AnalysisResult
    from affectlens.agent.store import AnalysisStore
    from affectlens.tools.media import probe

    s = Settings(data_dir=tmp_path / "data", retention_days=30)
    info = probe(face_clip, s)
    now = datetime.now(UTC)
    old = AnalysisResult(id="old-1", media=info, created=now - timedelta(days=31))
    new = AnalysisResult(id="new-1", media=info, created=now - timedelta(days=29))
    store = AnalysisStore(s, index=False)
    store._write(old)
    store.save(new)  # saving prunes
    assert [a.id for a in store.list()] == ["new-1"]
    assert AnalysisStore(Settings(data_dir=tmp_path / "data"), index=False).prune() == []
