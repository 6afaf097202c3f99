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
    # Hash-checked: what installs is byte-for-byte what was locked (scripts/lock_hashes.py).
    "${PIP[@]}" install --require-hashes -r requirements/lock.txt
    # Packages whose declared dependencies must not be followed (see requirements/no-deps.txt).
    "${PIP[@]}" install --require-hashes --no-deps -r requirements/no-deps.txt
    "${PIP[@]}" install --no-deps -e .
    echo "$want" > "$stamp"
fi

# 3. llama.cpp (the embedded LLM): PyPI has only its source, so it is built here, once per
# instruction set, into a wheel cache of our own (pip's cache ignores CMAKE_ARGS). The native
# build enables CPU features this machine kind advertises but cannot run (it segfaults), so the
# x86 extensions are chosen from /proc/cpuinfo instead: AVX-512 (with VNNI, VBMI, BF16 where
# present) evaluates prompts ~40 % faster than the AVX2 baseline on this kind (docs/bench.md).
LLAMA=llama-cpp-python==0.3.36
cpu_has() { local f; for f in "$@"; do grep -qw "$f" /proc/cpuinfo 2>/dev/null || return 1; done; }
cmake_args="-DGGML_NATIVE=OFF"
if cpu_has avx512f avx512cd avx512vl avx512dq avx512bw; then
    cmake_args+=" -DGGML_AVX512=ON"
    cpu_has avx512_vnni && cmake_args+=" -DGGML_AVX512_VNNI=ON"
    cpu_has avx512vbmi && cmake_args+=" -DGGML_AVX512_VBMI=ON"
    cpu_has avx512_bf16 && cmake_args+=" -DGGML_AVX512_BF16=ON"
fi
llama_stamp=$VENV/.affectlens-llama
if [[ ! -f $llama_stamp || $(cat "$llama_stamp") != "$LLAMA $cmake_args" ]]; then
    cache=$("$VENV/bin/python" -c 'from affectlens.settings import user_cache_dir; print(user_cache_dir())')
    wheels=$cache/wheels/$(echo "$LLAMA $cmake_args" | sha256sum | cut -c1-12)
    if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        say "building $LLAMA ($cmake_args; about 5 minutes, once)"
        CMAKE_ARGS="$cmake_args" "${PIP[@]}" wheel --no-deps --no-cache-dir -w "$wheels" "$LLAMA"
    fi
    "${PIP[@]}" install --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl
    echo "$LLAMA $cmake_args" > "$llama_stamp"
fi

# 4. embedded models (verified against affectlens/checksums.json) ----------------------------
"$VENV/bin/affectlens" models assemble
say "ready: $VENV/bin/affectlens"
