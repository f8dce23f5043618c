#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/, ASan + UBSan) and runs each for SECONDS (default
# 60) from its seed corpus in tests/fuzz/corpus/<name>/, with tests/fuzz/dict/<name>.dict when there is
# one. Up to JOBS targets (default: nproc) run at once, each on one core, so the wall time is about
# ceil(targets / JOBS) * SECONDS. New inputs go to a scratch copy, never into the repo.
# Prints one row per target: seconds, execs, coverage (libFuzzer's last cov: and ft:), corpus size at
# the end, new units, findings. Exits non-zero on any finding (crash, sanitizer report, leak, timeout,
# out of memory); the reproducer is kept in build-fuzz/findings/ and the log in build-fuzz/<name>.log.
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 tokenizer_bpe model_load
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
JOBS=${JOBS:-$(nproc)}
# -O1 -gline-tables-only: what libFuzzer's docs use; a report's stack trace keeps its lines, and the tree
# builds in about half the time of -O2 -g.
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DQE_FUZZ=ON -DQE_BUILD_TESTS=OFF \
  -DQE_BUILD_BENCH=OFF >/dev/null
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.cpp; do n=$(basename "$src" .cpp); names+=("${n#fuzz_}"); done
fi
# Only the fuzz targets (and the libraries under them): nothing else needs clang here.
cmake --build build-fuzz -j "$(nproc)" --target "${names[@]/#/fuzz_}"
mkdir -p build-fuzz/findings

# One target: runs it, then writes build-fuzz/<name>.result ("seconds execs cov ft corpus new findings").
run_one() {
  local name=$1 work log dict=() start rc=0 findings=0
  work=$(mktemp -d)
  log=build-fuzz/$name.log
  cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  [ -f "tests/fuzz/dict/$name.dict" ] && dict=(-dict="tests/fuzz/dict/$name.dict")
  start=$(date +%s)
  "build-fuzz/bin/fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="build-fuzz/findings/$name-" "$work" >"$log" 2>&1 || rc=$?
  [ $rc -ne 0 ] && findings=1
  local execs new cov ft  # grep -a: a log may hold an input's raw bytes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -ao 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  echo "$(($(date +%s) - start)) ${execs:-?} ${cov:-?} ${ft:-?} $(find "$work" -type f | wc -l) ${new:-?} $findings" \
    >"build-fuzz/$name.result"
  rm -rf "$work"
}

echo "fuzz: ${#names[@]} targets, ${SECONDS_EACH}s each, $JOBS at a time"
for name in "${names[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  rm -f "build-fuzz/$name.result"
  run_one "$name" &
done
wait

status=0
printf 'fuzz: %-16s %7s %12s %7s %7s %7s %6s %8s\n' target seconds execs cov ft corpus new findings
for name in "${names[@]}"; do
  secs=? execs=? cov=? ft=? corpus=? new=? findings=1  # no result: the run itself failed
  [ -f "build-fuzz/$name.result" ] && read -r secs execs cov ft corpus new findings <"build-fuzz/$name.result"
  printf 'fuzz: %-16s %7s %12s %7s %7s %7s %6s %8s\n' "$name" "$secs" "$execs" "$cov" "$ft" "$corpus" "$new" "$findings"
  if [ "$findings" != 0 ]; then
    echo "fuzz: $name: FINDING (reproducer in build-fuzz/findings/, log build-fuzz/$name.log):"
    tail -40 "build-fuzz/$name.log" | sed "s/^/  /"
    status=1
  fi
done
exit $status
