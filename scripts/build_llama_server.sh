#!/usr/bin/env bash
# Build llama.cpp's own HTTP server (`llama-server`, OpenAI-compatible, `--parallel N` slots)
# from the llama.cpp sources vendored in llama-cpp-python's sdist, with the same CMake arguments
# as the embedded wheel (affectlens/build.py), into DEST. The batch test of several reasoning
# requests in flight runs against it (tests/test_batch_server.py); `scripts/setup.sh --test`
# calls this once per argument set (about 15 minutes on 2 cores).
#
# Usage: scripts/build_llama_server.sh PYTHON 'llama-cpp-python==X' 'CMAKE ARGS' DEST_DIR
set -euo pipefail
PY=$1 LLAMA=$2 CMAKE_ARGS=$3 DEST=$4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip --disable-pip-version-check -q download --no-binary :all: --no-deps \
    -d "$work" "$LLAMA"
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
# A static, self-contained binary: no web UI download, no OpenSSL (it serves plain HTTP on
# loopback); ggml keeps its x86 baseline only without SOURCE_DATE_EPOCH (see setup.sh).
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of -D arguments
env -u SOURCE_DATE_EPOCH cmake -S "$src" -B "$work/build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release $CMAKE_ARGS \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$work/build" --target llama-server -j "$(nproc)" >/dev/null
mkdir -p "$DEST"
install -m 0755 "$work/build/bin/llama-server" "$DEST/llama-server.tmp"
mv "$DEST/llama-server.tmp" "$DEST/llama-server"
