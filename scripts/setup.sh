#!/usr/bin/env bash
# One-command set-up: apt packages, the virtual environment, pinned Python packages, the
# embedded models. Idempotent: each step is skipped when its inputs have not changed.
#   scripts/setup.sh          runtime
#   scripts/setup.sh --test   runtime + what the tests need (Chromium for the browser test,
#                             espeak-ng to speak known sentences)
set -euo pipefail
cd "$(dirname "$0")/.."

WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1
VENV=${AFFECTLENS_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. system packages ------------------------------------------------------------------------
apt_pkgs=(ffmpeg)
[[ $WANT_TEST == 1 ]] && apt_pkgs+=(chromium espeak-ng)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    say "apt: installing ${missing[*]}"
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. virtual environment and pinned packages ------------------------------------------------
[[ -x $VENV/bin/python ]] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
stamp=$VENV/.affectlens-installed
want=$(cat requirements/lock.txt requirements/no-deps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    say "installing Python packages (pinned in requirements/lock.txt)"
    "${PIP[@]}" install -U pip wheel
    "${PIP[@]}" install -r requirements/lock.txt
    # Packages whose declared dependencies must not be followed (see requirements/no-deps.txt).
    "${PIP[@]}" install --no-deps -r requirements/no-deps.txt
    # llama.cpp's native build uses CPU features this machine kind advertises but cannot run.
    CMAKE_ARGS="-DGGML_NATIVE=OFF" "${PIP[@]}" install "llama-cpp-python==0.3.36"
    "${PIP[@]}" install --no-deps -e .
    echo "$want" > "$stamp"
fi

# 3. embedded models (verified against affectlens/checksums.json) ----------------------------
"$VENV/bin/affectlens" models assemble
say "ready: $VENV/bin/affectlens"
