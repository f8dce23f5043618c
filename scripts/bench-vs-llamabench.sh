#!/usr/bin/env bash
# qrun against llama.cpp's llama-bench on the same GGUF files, same threads, runs interleaved:
# prompt processing of a 512-token batch (llama-bench pp512 vs qrun's "prompt eval time" on a 512-token
# prompt) and decode from an empty context, as llama-bench's tg128 measures it (qrun's "eval time" over
# 128 tokens generated after a one-token prompt). Prints medians in tokens/s and the ratios
# qrun / llama.cpp as a Markdown table; run it on a quiet machine.
#
#   scripts/bench-vs-llamabench.sh FILE.gguf... [--runs 3] [--threads 2] [--pp 512] [--tg 128]
#
# The prompt is 512 tokens for the byte-level vocabularies of scripts/make-synthetic-llama.py (one token
# per byte, no merge applies to the text used); for other models qrun's count is printed and used.
# Env: QE_BUILD_DIR (default build), QE_LLAMACPP_TOOLS (default .venv/llama.cpp-tools).
set -euo pipefail
{
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/${QE_BUILD_DIR:-build}/bin
LLAMA_BIN=${QE_LLAMACPP_TOOLS:-$REPO/.venv/llama.cpp-tools}/bin
[[ $LLAMA_BIN == /* ]] || LLAMA_BIN=$REPO/$LLAMA_BIN
RUNS=3 THREADS=2 PP=512 TG=128 files=()
die() { echo "bench-vs-llamabench.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --threads|-t) THREADS=$2; shift 2 ;;
    --pp) PP=$2; shift 2 ;;
    --tg) TG=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) files+=("$(realpath "$1")"); shift ;;
  esac
done
[[ ${#files[@]} -gt 0 ]] || die "give at least one GGUF file"
[[ -x $LLAMA_BIN/llama-bench ]] || die "$LLAMA_BIN/llama-bench missing: run scripts/build-llamacpp-tools.sh"
[[ -x $BIN/qrun ]] || die "$BIN/qrun missing: run scripts/setup.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# PP bytes of digits and spaces: no merge of the synthetic vocabularies applies, so one token per byte.
python3 -c "import sys; s=''.join(str(i % 10) + (' ' if i % 7 == 6 else '') for i in range(10000)); sys.stdout.write(s[:$PP - 1])" >"$tmp/prompt.txt"

echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $THREADS threads, $RUNS runs interleaved, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for f in "${files[@]}"; do
  for r in $(seq "$RUNS"); do
    "$LLAMA_BIN/llama-bench" -m "$f" -p "$PP" -n "$TG" -r 1 -t "$THREADS" -o json >"$tmp/lb.$r.json" 2>/dev/null \
      || die "llama-bench failed on $f"
    # qrun: BOS + the prompt (PP tokens) for pp; then from a one-token prompt, TG tokens sampled for tg
    # (temperature 1: a random model's greedy text could end early at EOS; the count is read back).
    "$BIN/qrun" -m "$f" -f "$tmp/prompt.txt" -n 1 -t "$THREADS" --temp 1 -s "$r" -c $((PP + 8)) \
      >/dev/null 2>"$tmp/qp.$r.log" || { cat "$tmp/qp.$r.log" >&2; die "qrun failed on $f"; }
    "$BIN/qrun" -m "$f" -p "0" -n "$TG" -t "$THREADS" --temp 1 -s "$r" -c $((TG + 8)) \
      >/dev/null 2>"$tmp/qt.$r.log" || { cat "$tmp/qt.$r.log" >&2; die "qrun failed on $f"; }
  done
  F="$f" RUNS="$RUNS" TMP="$tmp" python3 - <<'EOF'
import json, os, re, statistics
f, runs, tmp = os.environ["F"], int(os.environ["RUNS"]), os.environ["TMP"]
lpp, ltg, qpp, qtg, npp = [], [], [], [], []
for r in range(1, runs + 1):
    for row in json.load(open(f"{tmp}/lb.{r}.json")):
        (lpp if row["n_prompt"] > 0 else ltg).append(row["avg_ts"])
    m = re.search(r"prompt eval time =\s+([0-9.]+) ms /\s+(\d+) tokens", open(f"{tmp}/qp.{r}.log").read())
    e = re.search(r" eval time =\s+([0-9.]+) ms /\s+(\d+) runs", open(f"{tmp}/qt.{r}.log").read())
    qpp.append(1e3 * int(m[2]) / float(m[1])); npp.append(int(m[2]))
    qtg.append(1e3 * int(e[2]) / float(e[1]))
med = statistics.median
name = os.path.basename(f)
print(f"| {name} | pp{npp[0]} | {med(qpp):.1f} | {med(lpp):.1f} | {med(qpp) / med(lpp):.2f}x |")
print(f"| {name} | tg | {med(qtg):.1f} | {med(ltg):.1f} | {med(qtg) / med(ltg):.2f}x |")
EOF
done | { echo "| file | test | qrun t/s | llama.cpp t/s | ratio |"; echo "|---|---|---|---|---|"; cat; }
exit
}
