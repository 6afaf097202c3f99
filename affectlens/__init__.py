"""AffectLens: explain human emotion in video, locally."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# The design card keeps agent/, tools/, ui/, evals/ and prompts/ at the top of the repository;
# the wheel installs them inside this package (affectlens.agent, ...). In a source checkout
# (a clone, a git worktree) they are found beside this folder, so the checkout's own code is
# what imports, whatever was installed.
_checkout = _Path(__file__).resolve().parent.parent
if (
    not (_Path(__file__).parent / "agent").is_dir()
    and (_checkout / "agent" / "__init__.py").is_file()
):
    __path__.append(str(_checkout))  # noqa: F821 - the package's own search path

# The public API, imported on first use (``import affectlens`` stays light: the tools import
# this package for its taxonomy and must not pull in the agent).
_API = {
    "analyze": "affectlens.agent.run",
    "reason_again": "affectlens.agent.run",
    "ask": "affectlens.agent.chat",
    "AnalysisResult": "affectlens.agent.schemas",
    "Settings": "affectlens.settings",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'affectlens' has no attribute {name!r}")
