#!/usr/bin/env bash
# Type-check the package with mypy, resolving the namespace exactly as the wheel installs it.
#
# pyproject's [tool.setuptools.package-dir] maps the top-level folders into one package
# (affectlens.agent = agent/, affectlens.tools = tools/, ...). mypy cannot see that mapping in a
# source checkout, so this builds the installed layout from that table as a symlink tree under
# build/typecheck/ and checks `-p affectlens` there (settings: [tool.mypy] in pyproject.toml).
# mypy reports the tree's paths (build/typecheck/affectlens/agent/nodes.py); the output is
# rewritten to the checkout's own (agent/nodes.py), so each line points at the file to edit.
#
# Usage: bash scripts/typecheck.sh [extra mypy arguments]
#   MYPY=path/to/mypy   the mypy to run (default: the project's .venv/bin/mypy, else PATH's)
#   PYTHON=python3.11   the Python that reads pyproject.toml (default: .venv's, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${MYPY:-} ]]; then
    MYPY=mypy
    [[ -x .venv/bin/mypy ]] && MYPY=.venv/bin/mypy
fi
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi
TREE=build/typecheck

# Lines "affectlens.agent agent", ... from the package-dir table (the wheel's own mapping),
# deepest package first: its path must be rewritten before its parent's.
mapping=$("$PYTHON" - <<'PY'
import tomllib

with open("pyproject.toml", "rb") as f:
    package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(package_dir.items(), key=lambda item: -item[0].count(".")):
    print(package, folder.rstrip("/"))
PY
)

rm -rf "$TREE"
rewrite=()
while read -r package folder; do
    target="$TREE/${package//.//}"
    # The relative way back from the link's folder to the repository root.
    up=$(dirname "$target" | sed -E 's#[^/]+#..#g')
    if [[ $package != *.* ]]; then
        # The top package holds the subpackages' links, so it is a real folder of file links
        # (its subpackages, deeper, were linked first).
        mkdir -p "$target"
        for f in "$folder"/*.py; do
            ln -s "../$up/$f" "$target/$(basename "$f")"
        done
    else
        mkdir -p "$(dirname "$target")"
        ln -s "$up/$folder" "$target"
    fi
    rewrite+=(-e "s#$target/#$folder/#g")
done <<<"$mapping"

set +e
MYPYPATH="$TREE" "$MYPY" -p affectlens "$@" 2>&1 | sed "${rewrite[@]}"
exit "${PIPESTATUS[0]}"
