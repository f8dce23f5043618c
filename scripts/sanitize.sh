#!/usr/bin/env bash
# Builds the unit tests, qrun and qconvert with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/), runs the unit tests, then the thread team's test under ThreadSanitizer (build-tsan/), then
# the Python suites that feed qrun and qconvert hostile input and full disks (tests/python: bad input,
# hostile sources, full disk) against build-asan/bin.
# Any report (ASan, UBSan, LeakSanitizer at exit) aborts the process that hit it (-fno-sanitize-recover,
# halt_on_error, abort_on_error; exitcode=23 where a tool exits instead): the unit test fails, and a Python
# test fails on the report in stderr and on the exit code, which is not the clean exit it expects.
# Arguments go to the unit tests' ctest (e.g. -R gguf); QE_SANITIZE_PYTHON=0 leaves out the Python suites.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
# -O1 -g1: line tables for the reports' stack traces without full debug info, which doubles the build
# time of this tree (the slowest step of CI) and adds nothing a sanitizer report uses.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQE_SANITIZE=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DQE_PYTHON_TESTS=OFF -DQE_BUILD_BENCH=OFF ${QE_CMAKE_ARGS:-} >/dev/null
# What the checks below run: the unit tests, qrun and qconvert (not qserve, nor the Python tests' tools).
targets=(qrun qconvert)
for src in tests/unit/*_test.cpp; do targets+=("$(basename "$src" .cpp)"); done
cmake --build build-asan -j "$(nproc)" --target "${targets[@]}"
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:exitcode=23
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:abort_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$(nproc)" "$@"

# The thread team under ThreadSanitizer (its own test and sources, build-tsan/; seconds), five times over:
# a race in its claims and steals is reported, and the report fails the run.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQE_TSAN_TEAM_TEST=ON \
  -DQE_PYTHON_TESTS=OFF -DQE_BUILD_BENCH=OFF ${QE_CMAKE_ARGS:-} >/dev/null
cmake --build build-tsan --target thread_team_tsan_test
TSAN_OPTIONS=halt_on_error=1:exitcode=66 build-tsan/tests/thread_team_tsan_test --gtest_repeat=5 --gtest_brief=1

[[ "${QE_SANITIZE_PYTHON:-1}" == 0 ]] && exit 0
if [[ ! -x .venv/bin/python ]]; then
  echo "sanitize.sh: .venv/bin/python is missing: run scripts/setup.sh first (or QE_SANITIZE_PYTHON=0)" >&2
  exit 1
fi
QE_BIN="$PWD/build-asan/bin" QE_SOURCE="$PWD" OMP_WAIT_POLICY=passive \
  .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/python/test_qrun_bad_input.py tests/python/test_qconvert_hostile.py \
  tests/python/test_qconvert_hostile_sources.py tests/python/test_full_disk.py
