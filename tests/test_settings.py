"""Settings precedence: defaults < TOML file < environment < flags."""

import sys
from pathlib import Path

import pytest

from affectlens.settings import Settings, default_config_file, load_settings


@pytest.fixture
def config_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("AFFECTLENS_CONFIG", str(path))
    for var in ("AFFECTLENS_FRAME_RATE", "AFFECTLENS_PORT", "AFFECTLENS_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_defaults_when_nothing_is_set(config_file):
    s = load_settings()
    assert s.frame_rate == Settings.model_fields["frame_rate"].default
    assert s.llm_backend == "embedded" and s.llm_model == "qwen2.5-1.5b"
    assert s.host == "127.0.0.1"


def test_file_overrides_defaults(config_file):
    config_file.write_text('frame_rate = 5.0\nport = 9000\nllm_model = "qwen2.5-0.5b"\n')
    s = load_settings()
    assert (s.frame_rate, s.port, s.llm_model) == (5.0, 9000, "qwen2.5-0.5b")


def test_environment_overrides_file(config_file, monkeypatch):
    config_file.write_text("frame_rate = 5.0\nport = 9000\n")
    monkeypatch.setenv("AFFECTLENS_FRAME_RATE", "3.5")
    s = load_settings()
    assert s.frame_rate == 3.5
    assert s.port == 9000  # still from the file


def test_flags_override_environment(config_file, monkeypatch):
    config_file.write_text("frame_rate = 5.0\nport = 9000\n")
    monkeypatch.setenv("AFFECTLENS_FRAME_RATE", "3.5")
    monkeypatch.setenv("AFFECTLENS_PORT", "9100")
    s = load_settings(frame_rate=1.0, port=None)  # None = flag not given
    assert s.frame_rate == 1.0
    assert s.port == 9100


def test_invalid_values_are_rejected(config_file, monkeypatch):
    monkeypatch.setenv("AFFECTLENS_FRAME_RATE", "-2")
    with pytest.raises(ValueError):
        load_settings()


def test_paths_expand_user(config_file):
    s = load_settings(data_dir="~/somewhere")
    assert s.data_dir == Path.home() / "somewhere"


def test_device_resolution(config_file):
    assert load_settings(device="cpu").resolved_device == "cpu"
    assert load_settings().resolved_device in ("cpu", "cuda")


@pytest.fixture
def no_folder_overrides(monkeypatch):
    for var in ("AFFECTLENS_CONFIG", "AFFECTLENS_DATA_DIR", "AFFECTLENS_MODEL_DIR"):
        monkeypatch.delenv(var, raising=False)
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout is Linux's")
def test_default_folders_stay_where_they_were_on_linux(no_folder_overrides, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    s = Settings()
    assert s.data_dir == home / ".local" / "share" / "affectlens"
    assert s.model_dir == home / ".cache" / "affectlens" / "models"
    assert default_config_file() == home / ".config" / "affectlens" / "config.toml"


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout is Linux's")
def test_xdg_variables_are_honoured(no_folder_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    config = tmp_path / "config" / "affectlens" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("port = 9123\n")
    s = Settings()
    assert s.data_dir == tmp_path / "data" / "affectlens"
    assert s.model_dir == tmp_path / "cache" / "affectlens" / "models"
    assert s.port == 9123  # the config file was found under $XDG_CONFIG_HOME
