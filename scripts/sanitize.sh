#!/usr/bin/env bash
# Builds the unit tests with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/) and runs them.
# Any report aborts the test that hit it (-fno-sanitize-recover), so ctest fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQE_SANITIZE=ON \
  -DQE_PYTHON_TESTS=OFF -DQE_BUILD_BENCH=OFF ${QE_CMAKE_ARGS:-} >/dev/null
cmake --build build-asan -j "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$(nproc)" "$@"
