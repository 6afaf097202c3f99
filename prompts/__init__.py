"""Prompt templates as versioned Jinja2 files: ``<name>.v<N>.j2``.

``render(name, **vars)`` uses the highest version unless ``version=`` pins one, so a stored
analysis can record exactly which prompt produced it (``version(name)`` -> "reason.v1").
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

DIR = Path(__file__).parent
_FILE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<v>\d+)\.j2$")


@lru_cache(maxsize=1)
def _env() -> Environment:
    # StrictUndefined: a missing variable is a bug, not an empty string in the prompt.
    return Environment(
        loader=FileSystemLoader(DIR),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def versions(name: str) -> list[int]:
    """All versions of a prompt on disk, ascending."""
    found = [int(m["v"]) for p in DIR.glob(f"{name}.v*.j2") if (m := _FILE.match(p.name))]
    return sorted(found)


def _file(name: str, version: int | None) -> str:
    available = versions(name)
    if not available:
        raise KeyError(f"no prompt named {name!r} in {DIR}")
    v = version if version is not None else available[-1]
    if v not in available:
        raise KeyError(f"prompt {name!r} has no version {v} (have {available})")
    return f"{name}.v{v}.j2"


def version(name: str, version: int | None = None) -> str:
    """The id a result records: 'reason.v1'."""
    return _file(name, version).removesuffix(".j2")


def render(name: str, *, version: int | None = None, **variables) -> str:
    """The prompt text; the template's leading ``{# ... #}`` header comment is not rendered."""
    return _env().get_template(_file(name, version)).render(**variables).strip()
