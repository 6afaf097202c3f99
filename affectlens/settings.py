"""The one configuration object.

Sources, lowest to highest precedence: defaults < TOML file < environment (``AFFECTLENS_*``)
< command-line flags (passed as keyword arguments). The TOML file is
``$AFFECTLENS_CONFIG`` when set, else ``user_config_dir() / "config.toml"`` when it exists
(``~/.config/affectlens/config.toml`` on Linux).
An unknown key in the file or an unknown ``AFFECTLENS_*`` variable is an error that names it
(a typo must not be silently ignored). ``auth`` is a secret read from the file or the
environment only, never from a command-line flag (visible in ``ps``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "AFFECTLENS_"
# AFFECTLENS_* variables that are not settings: the config file's path, setup.sh's venv.
NON_SETTING_VARS = {"CONFIG", "VENV"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
FAST_LLM_MODEL = "qwen2.5-0.5b"  # the reasoner in fast mode (Settings.fast)


APP_NAME = "affectlens"


# The user's folders, by platformdirs: on Linux the XDG ones ($XDG_DATA_HOME, $XDG_CACHE_HOME,
# $XDG_CONFIG_HOME, else ~/.local/share, ~/.cache, ~/.config), each with "affectlens" appended.
def user_data_dir() -> Path:
    """Where analyses live by default (``Settings.data_dir``)."""
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def user_cache_dir() -> Path:
    """Rebuildable files: the assembled models, llama.cpp wheels, training caches."""
    return platformdirs.user_cache_path(APP_NAME, appauthor=False)


def user_config_dir() -> Path:
    """Where ``config.toml`` is looked for when ``$AFFECTLENS_CONFIG`` is not set."""
    return platformdirs.user_config_path(APP_NAME, appauthor=False)


def default_config_file() -> Path:
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return user_config_dir() / "config.toml"


class Settings(BaseSettings):
    """Model choices and paths, device, sampling, limits, storage and server."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # storage
    data_dir: Path = Field(
        default_factory=user_data_dir,
        description="Analyses, chat threads and the chromadb index.",
    )
    model_dir: Path = Field(
        default_factory=lambda: user_cache_dir() / "models",
        description="Where the embedded models are assembled.",
    )

    # compute
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=0, ge=0, description="CPU threads for models; 0 = all cores.")

    # media
    frame_rate: float = Field(default=2.0, gt=0, le=30, description="Frames sampled per second.")
    max_file_mb: float = Field(default=500.0, gt=0)
    max_duration_s: float = Field(default=600.0, gt=0)
    max_frames: int = Field(default=240, gt=0, description="Cap on sampled frames per clip.")

    # perception models
    asr_model: str = Field(
        default="whisper-base",
        description="'whisper-base' (embedded) or any faster-whisper model id or directory.",
    )
    asr_compute_type: str = "int8"
    asr_languages: list[str] = Field(
        default_factory=list,
        description="Expected spoken languages (ISO 639-1, e.g. ['zh', 'en']); whisper's guess "
        "outside them, or unsure, is re-decoded in the likeliest expected one. Empty: any.",
    )
    asr_language_min_prob: float = Field(
        default=0.6, ge=0, le=1, description="Below this, whisper's language guess is 'unsure'."
    )
    face_backend: Literal["mediapipe", "pyfeat"] = "mediapipe"
    pyfeat_weights_dir: Path | None = None
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = Field(
        default=None, description="open_clip pretrained tag (needs internet) or a local file."
    )
    ser_model: str | None = Field(
        default=None, description="Speech-emotion model directory (transformers); off when unset."
    )
    text_emotion: bool = Field(
        default=True,
        description="Score the transcript's emotion with the embedded LLM's label log-probs "
        "(agent/text_emotion.py, MELD-fitted head): a vote in the fusion and a cue for the LLM.",
    )

    # LLM
    llm_backend: Literal["embedded", "openai", "transformers"] = "embedded"
    llm_model: str = Field(
        default="qwen2.5-1.5b",
        description="Embedded: 'qwen2.5-1.5b', 'qwen2.5-0.5b' or a GGUF path; "
        "openai: the served model name; transformers: a local model directory.",
    )
    llm_base_url: str = "http://127.0.0.1:8000/v1"
    llm_api_key: SecretStr = SecretStr("not-needed")
    llm_multimodal: bool = False
    llm_context: int = Field(default=4096, ge=512)
    llm_max_tokens: int = Field(default=384, ge=16)
    llm_temperature: float = Field(default=0.0, ge=0)
    llm_seed: int = 0
    llm_prompt_cache: Literal["ram", "prefix", "off"] = Field(
        default="ram",
        description="Embedded backend. 'ram': reuse any evaluated prompt prefix the RAM cache "
        "holds (fastest for chat and repair rounds; output may depend on what ran before). "
        "'prefix': restore the saved state after the prompt's system turn before every call "
        "(also saved beside the models for the next process): the same prompt gives the same "
        "output in every run and order (evals use it). 'off': evaluate every prompt from "
        "scratch (reproducible too, slowest).",
    )
    fast: bool = Field(
        default=False,
        description="Fast mode: reason with qwen2.5-0.5b unless llm_model is given too, and "
        "with no repair round unless verify_max_rounds is given too (what the cues do not show "
        "is cut, the decision stated). The label is the fused witnesses' either way (decision = "
        "'fusion'); measured effect on speed and explanations in docs/bench.md, 'Fast mode'.",
    )
    verify_max_rounds: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Repair rounds after the first reading (each is an LLM call).",
    )
    verify_prune_first: bool = Field(
        default=True,
        description="Cut a claim's words that its cited cues do not show (a frown no AU cue "
        "shows) at once, with no repair round, when what is left of each cut sentence still "
        "reads whole (agent/verify.reads_whole) and the reading passes every check; other "
        "problems still go back to the LLM. The bench's repairs of such claims fixed 2 of 9 and "
        "cost 5-8 s each (docs/bench.md).",
    )
    # recognition (agent/fusion.py, docs/models/fusion.md)
    decision: Literal["fusion", "llm", "hybrid"] = Field(
        default="fusion",
        description="Who names the dominant emotion: the fused witnesses, the LLM, or the LLM "
        "unless the fusion is confident and disagrees. A disagreement is always reported.",
    )
    judge_backend: Literal["embedded", "openai", "transformers"] | None = None
    judge_model: str | None = None

    # server
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    auth: SecretStr | None = Field(
        default=None,
        description="'user:password' (or several, comma-separated) for basic auth; from "
        "config.toml or AFFECTLENS_AUTH only. With auth each user sees only their own analyses.",
    )
    allow_remote_without_auth: bool = Field(
        default=False, description="Let `serve` bind a non-loopback host without auth (warned)."
    )
    max_upload_mb: float = Field(default=200.0, gt=0)
    eval_roots: list[Path] = Field(
        default_factory=list,
        description="Folders the Evals tab may read datasets from (besides evals/datasets).",
    )
    retention_days: float | None = Field(
        default=None, gt=0, description="Delete stored analyses older than this; None keeps all."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_env(cls, data: Any) -> Any:
        known = {name.upper() for name in cls.model_fields} | NON_SETTING_VARS
        unknown = sorted(
            k for k in os.environ if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :] not in known
        )
        if unknown:
            raise ValueError(
                f"unknown setting(s) in the environment: {', '.join(unknown)} "
                f"(see `Settings` in affectlens/settings.py for the names)"
            )
        return data

    @model_validator(mode="after")
    def _fast_mode(self) -> Settings:
        """Fast mode picks the small embedded model and no repair round, each unless chosen
        explicitly: the 0.5B's repair rounds left the same problems standing on 5 of 6 CREMA-D
        clips and cost a quarter of its reasoning time (docs/bench.md, 'Fast mode')."""
        if (
            self.fast
            and self.llm_backend == "embedded"
            and "llm_model" not in self.model_fields_set
        ):
            self.llm_model = FAST_LLM_MODEL
        if self.fast and "verify_max_rounds" not in self.model_fields_set:
            self.verify_max_rounds = 0
        return self

    def auth_pairs(self) -> list[tuple[str, str]]:
        """``auth`` as (user, password) pairs; empty without auth."""
        if self.auth is None:
            return []
        pairs = []
        for item in self.auth.get_secret_value().split(","):
            user, sep, password = item.strip().partition(":")
            if not sep or not user or not password:
                raise ValueError("auth must be 'user:password' (comma-separated for several)")
            pairs.append((user, password))
        return pairs

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    @field_validator("data_dir", "model_dir", "pyfeat_weights_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("eval_roots", mode="after")
    @classmethod
    def _resolve_roots(cls, value: list[Path]) -> list[Path]:
        return [p.expanduser().resolve() for p in value]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=default_config_file())
        return (init_settings, env_settings, toml)

    @property
    def resolved_device(self) -> str:
        """'cuda' when asked for or available (auto), else 'cpu'."""
        if self.device != "auto":
            return self.device
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:  # torch missing or broken: the CPU still works
            return "cpu"

    @property
    def cpu_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


def load_settings(**flags: Any) -> Settings:
    """Settings from every source; ``flags`` are command-line values (``None`` = not given)."""
    return Settings(**{k: v for k, v in flags.items() if v is not None})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (from file and environment only)."""
    return Settings()
