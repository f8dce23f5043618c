#!/usr/bin/env bash
# Builds if needed, then runs every test through ctest: the gtest unit suite (tests/unit) and the
# Python interop tests against gguf / safetensors / tokenizers (tests/python). Arguments go to ctest,
# e.g. scripts/test.sh -R gguf
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${QE_BUILD_DIR:-build}

if [ ! -x .venv/bin/python ]; then
  echo "test: .venv is missing; run scripts/setup.sh first" >&2
  exit 1
fi
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release ${QE_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)" "$@"
