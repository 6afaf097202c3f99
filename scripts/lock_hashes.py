"""Add sha256 hashes to requirements/lock.txt, no-deps.txt and cluster.txt (the Ray extra), so
set-up installs with ``pip --require-hashes``: what lands in the venv is byte-for-byte what was
locked (and a local wheel that shares a version number, e.g. ``torch 2.13.0+cpu`` in a
find-links folder, is refused). Reads PyPI's JSON simple API; keeps every file of each pinned
version (all platforms).
A pin may carry extras (``uvicorn[standard]==0.54.0``): hash-checking mode takes nothing unpinned,
so an extra a dependency asks for must be locked with it.

    python scripts/lock_hashes.py            # rewrite both files in place
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "requirements" / f for f in ("lock.txt", "no-deps.txt", "cluster.txt")]
INDEX = "https://pypi.org/simple/{}/"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def hashes(name: str, version: str) -> list[str]:
    """sha256 of every file PyPI holds for ``name==version``."""
    req = urllib.request.Request(
        INDEX.format(normalise(name)), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        files = json.load(r)["files"]
    stem = re.sub(r"[-_.]+", "_", name).lower()
    sdist_version = re.sub(r"[-_.]+", "_", version.lower())
    out = []
    for f in files:
        fn = f["filename"].lower()
        base = re.sub(r"[-_.]+", "_", fn)
        wheel = fn.endswith(".whl") and re.sub(r"[-_.]+", "_", fn.split("-")[0]) == stem
        if wheel and fn.split("-")[1] == version.lower():
            out.append(f["hashes"]["sha256"])
        elif not fn.endswith(".whl") and base.startswith(f"{stem}_{sdist_version}_"):
            out.append(f["hashes"]["sha256"])  # sdist: name-version.tar.gz / .zip
    if not out:
        raise SystemExit(f"no files on PyPI for {name}=={version}")
    return sorted(set(out))


def rewrite(path: Path) -> None:
    lines = [ln for ln in path.read_text().splitlines() if not ln.strip().startswith("--hash")]
    pins = [(i, m) for i, ln in enumerate(lines) if (m := PIN.match(ln.strip()))]
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda im: hashes(im[1][1], im[1][3]), pins))
    for (i, m), hs in zip(pins, found):
        name, extras, version = m[1], m[2] or "", m[3]
        hash_lines = " \\\n".join(f"    --hash=sha256:{h}" for h in hs)
        lines[i] = f"{name}{extras}=={version} \\\n" + hash_lines
    path.write_text("\n".join(lines) + "\n")
    print(f"{path.relative_to(ROOT)}: {len(pins)} pins, {sum(map(len, found))} hashes")


if __name__ == "__main__":
    for f in FILES if len(sys.argv) < 2 else (Path(a).resolve() for a in sys.argv[1:]):
        rewrite(f)
