"""The package's shape, read from the source: one namespace, every subpackage in the wheel,
no arrow from the tools up to the agent, no private name imported across packages."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("affectlens", "agent", "tools", "ui", "evals", "prompts")


def _package(path: Path) -> str:
    """The installed import name of a source folder: agent/chat -> affectlens.agent.chat."""
    parts = path.relative_to(ROOT).parts
    return ".".join(parts if parts[0] == "affectlens" else ("affectlens", *parts))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _package(path.parent).split(".")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            out.append((mod, [a.name for a in node.names]))
    return out


def _sources(*folders: str) -> list[Path]:
    return [p for f in folders for p in (ROOT / f).rglob("*.py")]


def test_every_subpackage_is_in_the_wheel():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {_package(p.parent) for f in FOLDERS for p in (ROOT / f).rglob("__init__.py")}
    assert set(tool["packages"]) == found
    assert {k: v for k, v in tool["package-dir"].items()} == {
        "affectlens": "affectlens",
        **{f"affectlens.{f}": f for f in FOLDERS[1:]},
    }


def test_no_old_top_level_import_names():
    bare = {"agent", "tools", "ui", "evals", "prompts"}
    bad = [
        (str(p.relative_to(ROOT)), m)
        for p in _sources(*FOLDERS, "scripts", "tests")
        for m, _ in _imports(p)
        if m.split(".")[0] in bare
    ]
    assert bad == []


def test_tools_never_import_the_agent_or_the_ui():
    bad = [
        (str(p.relative_to(ROOT)), m)
        for p in _sources("tools")
        for m, _ in _imports(p)
        if m.startswith(("affectlens.agent", "affectlens.ui", "affectlens.evals"))
    ]
    assert bad == []


def test_no_private_name_is_imported_from_another_package():
    bad = []
    for p in _sources(*FOLDERS):
        mine = _package(p.parent).split(".")[:2]
        for mod, names in _imports(p):
            theirs = mod.split(".")[:2]
            if mod.startswith("affectlens.") and theirs != mine:
                bad += [(str(p.relative_to(ROOT)), f"{mod}.{n}") for n in names if n[:1] == "_"]
    assert bad == []
