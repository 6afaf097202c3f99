#!/usr/bin/env bash
# One-command set-up: apt packages, the virtual environment, pinned Python packages, the
# embedded models. Idempotent: each step is skipped when its inputs have not changed.
#   scripts/setup.sh          runtime
#   scripts/setup.sh --test   runtime + what the tests need (Chromium for the browser test,
#                             espeak-ng to speak known sentences, Ray for the cluster test,
#                             llama.cpp's server for the batch test against a server)
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
reqs=(requirements/lock.txt requirements/no-deps.txt pyproject.toml)
[[ $WANT_TEST == 1 ]] && reqs+=(requirements/cluster.txt)
want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    say "installing Python packages (pinned in requirements/lock.txt)"
    "${PIP[@]}" install -U pip wheel
    # Hash-checked: what installs is byte-for-byte what was locked (scripts/lock_hashes.py), and a
    # local wheel sharing a version number (a find-links torch) is refused.
    "${PIP[@]}" install --require-hashes -r requirements/lock.txt
    # Packages whose declared dependencies must not be followed (see requirements/no-deps.txt).
    "${PIP[@]}" install --require-hashes --no-deps -r requirements/no-deps.txt
    "${PIP[@]}" install --no-deps -e .
    # Ray, the optional cluster extra (pip install affectlens[cluster]): the tests run on it.
    [[ $WANT_TEST == 1 ]] && "${PIP[@]}" install --require-hashes -r requirements/cluster.txt
    echo "$want" > "$stamp"
fi

# 3. llama.cpp (the embedded LLM): PyPI has only its source, so it is built here, once per
# argument set, into a wheel cache of our own (pip's cache ignores CMAKE_ARGS). The arguments
# come from affectlens/build.py (tested on real CPU flag sets; each rule says why there): never
# the native build, which segfaults in the AMX path on some Intel Xeons; x86 extensions named
# from /proc/cpuinfo instead, AVX-512 (+VNNI, VBMI, BF16) where the CPU has its whole base.
LLAMA=llama-cpp-python==0.3.36
cmake_args=$("$VENV/bin/python" -m affectlens.build cmake-args)
# the stamp's name and format: affectlens.build.LLAMA_STAMP (affectlens bench prints it)
llama_stamp=$VENV/.affectlens-llama
cache_root=$("$VENV/bin/python" -c 'from affectlens.settings import user_cache_dir; print(user_cache_dir())')
if [[ ! -f $llama_stamp || $(cat "$llama_stamp") != "$LLAMA $cmake_args" ]]; then
    wheels=$cache_root/wheels/$(echo "$LLAMA $cmake_args" | sha256sum | cut -c1-12)
    if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        variant=$("$VENV/bin/python" -m affectlens.build variant)
        say "building $LLAMA for $variant ($cmake_args; about 5 minutes, once)"
        # ggml keeps its x86 baseline (AVX2, FMA, F16C...) on only without SOURCE_DATE_EPOCH
        env -u SOURCE_DATE_EPOCH CMAKE_ARGS="$cmake_args" \
            "${PIP[@]}" wheel --no-deps --no-cache-dir -w "$wheels" "$LLAMA"
    fi
    "${PIP[@]}" install --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl
    echo "$LLAMA $cmake_args" > "$llama_stamp"
fi

# 3b. for the tests: llama.cpp's own server (llama-server, `--parallel` slots), built from the
# same sources and arguments, cached like the wheel (tests/test_batch_server.py finds it there).
if [[ $WANT_TEST == 1 ]]; then
    server=$cache_root/llama-server/$(echo "$LLAMA $cmake_args" | sha256sum | cut -c1-12)
    if [[ ! -x $server/llama-server ]]; then
        say "building llama-server from $LLAMA's llama.cpp (about 15 minutes on 2 cores, once)"
        scripts/build_llama_server.sh "$VENV/bin/python" "$LLAMA" "$cmake_args" "$server"
    fi
fi

# 4. embedded models (verified against affectlens/checksums.json) ----------------------------
"$VENV/bin/affectlens" models assemble
say "ready: $VENV/bin/affectlens"
