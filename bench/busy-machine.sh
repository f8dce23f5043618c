#!/usr/bin/env bash
# Decode speed when the machine is not ours alone: tg128 (qbench -m FILE -p 0 -n 128 -r 3, and
# llama-bench with the same flags) at -t 1 and at -t N (all cores), first on the quiet machine, then
# with exactly one other busy process (a shell loop that never sleeps, started and stopped here).
# A thread team that spins at its barriers loses most when one of its threads is preempted; the ratio
# (-t N) / (-t 1) says whether using every core still pays. --rounds interleave the engines and thread
# counts (a cell is the median over rounds), since a shared host's noise comes in bursts.
#
#   bench/busy-machine.sh [FILE.gguf] [--threads N] [--reps 3] [--rounds 3] [--tg 128] [--models DIR]
#
# FILE defaults to the synthetic 163m q4_0 of bench/vs-llamacpp.sh's cache (--models, default
# .venv/bench-models), made there when missing. N defaults to nproc.
# Env: QE_BUILD_DIR (default build), QE_LLAMACPP_TOOLS (default .venv/llama.cpp-tools).
set -euo pipefail
{
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/${QE_BUILD_DIR:-build}/bin
[[ ${QE_BUILD_DIR:-build} == /* ]] && BIN=$QE_BUILD_DIR/bin
TOOLS=${QE_LLAMACPP_TOOLS:-$REPO/.venv/llama.cpp-tools}
[[ $TOOLS == /* ]] || TOOLS=$REPO/$TOOLS
PY=$REPO/.venv/bin/python
[[ -x $PY ]] || PY=python3
N=$(nproc) REPS=3 ROUNDS=3 TG=128 MODELS=$REPO/.venv/bench-models FILE=""
die() { echo "busy-machine.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads|-t) N=$2; shift 2 ;;
    --reps|-r) REPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --tg|-n) TG=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) FILE=$1; shift ;;
  esac
done
[[ -x $BIN/qbench && -x $BIN/qconvert ]] || die "$BIN/qbench or qconvert missing: build first (QE_BUILD_DIR)"
if [[ -z $FILE ]]; then
  FILE=$MODELS/163m-q4_0.gguf
  if [[ ! -f $FILE ]]; then  # as bench/vs-llamacpp.sh makes and caches it
    mkdir -p "$MODELS"
    src=$MODELS/163m-f16.gguf
    if [[ ! -f $src ]]; then
      "$PY" "$REPO/scripts/make-synthetic-llama.py" --shape 163m --type f16 -o "$src.tmp" >&2 || die "make-synthetic-llama.py failed"
      mv "$src.tmp" "$src"
    fi
    rm -f "$FILE.tmp"
    "$BIN/qconvert" "$src" -o "$FILE.tmp" --type q4_0 2>/dev/null || die "qconvert --type q4_0 failed"
    mv "$FILE.tmp" "$FILE"
  fi
fi
[[ -f $FILE ]] || die "$FILE: no such file"
QE_LLAMACPP_TOOLS=$TOOLS "$REPO/scripts/build-llamacpp-tools.sh" || die "could not build llama-bench (native)"

tmp=$(mktemp -d)
hog=""
cleanup() { [[ -n $hog ]] && kill "$hog" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# One measurement: machine state, engine (ours | llamacpp), threads, round -> $tmp/<state>.<engine>.<t>.<r>.json
measure() {
  local state=$1 engine=$2 t=$3 out="$tmp/$1.$2.$3.$4.json"
  case $engine in
    ours) "$BIN/qbench" -m "$FILE" -p 0 -n "$TG" -r "$REPS" -t "$t" -o json >"$out" ;;
    llamacpp) "$TOOLS/bin/llama-bench" -m "$FILE" -p 0 -n "$TG" -r "$REPS" -t "$t" -o json >"$out" 2>/dev/null ;;
  esac || die "$engine -t $t failed ($state machine)"
}
# Rounds interleave the engines and thread counts, so a burst of host noise lands on all of them.
run_all() {
  for r in $(seq "$ROUNDS"); do
    for t in 1 "$N"; do for e in ours llamacpp; do measure "$1" "$e" "$t" "$r"; done; done
  done
}

load_quiet=$(cut -d' ' -f1-3 /proc/loadavg)
echo "busy-machine.sh: quiet machine (load $load_quiet)" >&2
run_all quiet
bash -c 'while :; do :; done' &
hog=$!
sleep 1
echo "busy-machine.sh: one busy process (pid $hog) running" >&2
run_all busy
kill "$hog" 2>/dev/null || true
wait "$hog" 2>/dev/null || true
hog=""

TMP=$tmp N=$N TG=$TG ROUNDS=$ROUNDS FILE=$FILE LOAD=$load_quiet CPU="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" NPROC=$(nproc) "$PY" - <<'EOF'
import json, os, statistics
env = os.environ
tmp, n, tg, rounds = env["TMP"], env["N"], env["TG"], int(env["ROUNDS"])
ts = lambda state, e, t: statistics.median(
    json.load(open(f"{tmp}/{state}.{e}.{t}.{r}.json"))[0]["avg_ts"] for r in range(1, rounds + 1))
print(f"file: {env['FILE']}; cpu: {env['CPU']} ({env['NPROC']} CPUs); tg{tg} t/s, median over {rounds} rounds of the mean of the repetitions")
print(f"load average before the quiet runs: {env['LOAD']}")
if float(env["LOAD"].split()[0]) > 0.5:
    print("warning: the quiet machine was not quiet: other processes count as busy ones")
print()
print(f"| engine | quiet -t 1 | quiet -t {n} | ratio | busy -t 1 | busy -t {n} | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
names = {"ours": "ours", "llamacpp": "llama.cpp"}
for e, name in names.items():
    q1, qn, b1, bn = ts("quiet", e, 1), ts("quiet", e, n), ts("busy", e, 1), ts("busy", e, n)
    print(f"| {name} | {q1:.1f} | {qn:.1f} | {qn / q1:.2f} | {b1:.1f} | {bn:.1f} | {bn / b1:.2f} |")
EOF
exit
}
