#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each for SECONDS (default 60) from its
# seed corpus in tests/fuzz/corpus/<name>/. New inputs go to a scratch copy, never into the repo.
# Exits non-zero on any finding (crash, sanitizer report, leak, timeout); the reproducer is kept in
# build-fuzz/findings/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DQE_FUZZ=ON -DQE_BUILD_TESTS=OFF -DQE_BUILD_BENCH=OFF >/dev/null
# Only the fuzz targets (and the formats library under them): nothing else needs clang here.
targets=()
for src in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"
mkdir -p build-fuzz/findings
status=0
for t in "${targets[@]}"; do
  bin=build-fuzz/bin/$t
  name=$(basename "$bin"); name=${name#fuzz_}
  work=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  echo "fuzz: $name for ${SECONDS_EACH}s from $(find "$work" -type f | wc -l) seeds"
  if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix=build-fuzz/findings/"$name"- "$work" >"build-fuzz/$name.log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "build-fuzz/$name.log" | sed "s/^/fuzz: $name: /"
    echo "fuzz: $name: no findings"
  else
    tail -40 "build-fuzz/$name.log"
    echo "fuzz: $name: FINDING (reproducer in build-fuzz/findings/)"
    status=1
  fi
  rm -rf "$work"
done
exit $status
