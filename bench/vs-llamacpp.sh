#!/usr/bin/env bash
# This engine against llama.cpp on the same GGUF files, same threads, same tests: our `qbench -m` and
# llama.cpp's `llama-bench` (pp512: one 512-token batch from an empty cache; tg128: 128 tokens decoded
# one at a time from an empty cache), run interleaved (each round: ours then theirs, file by file), and
# decode set against the roofline: the t/s this machine's DRAM read bandwidth allows when every weight
# byte is read once per token.
#
#   bench/vs-llamacpp.sh [--threads 2|1,2,4,...] [--types q4_0,q4_1,q8_0,f16,bf16] [--shapes 1.1b,163m]
#                        [--rounds 3] [--reps 1] [--pp 512] [--tg 128] [--models DIR] [--json FILE]
#                        [FILE.gguf ...]
#
# Without files it benchmarks synthetic llama models made with our own tools and cached in --models
# (default .venv/bench-models): scripts/make-synthetic-llama.py writes SHAPE-f16.gguf (random weights;
# 1.1b = TinyLlama-1.1B's shape, 163m = a SmolLM2-like one; f32 too when asked for) and
# `qconvert SHAPE-f16.gguf -o SHAPE-TYPE.gguf --type TYPE` the other types. The 1.1b f16 takes a few
# minutes and 2.2 GB. With files, those files (any GGUF both engines load).
#
# Each tool runs --reps repetitions after its warm-up in each of --rounds rounds; a cell is the median
# t/s over all rounds' repetitions, and ratio = ours / llama.cpp. tg roofline = DRAM read GB/s / bytes
# of weights read per token (every tensor of the file except token_embd, of which one row is read per
# token; a tied model's output projection reads token_embd whole; the KV cache, small at tg128, is left
# out). The read is timed at the same moments as our decode: our runs are `qbench -m --vs-read`, which
# follows every decoded token with a read of that token's bytes on the same threads (and times the
# tokens alone), because this machine's DRAM bandwidth may drift within a minute (a shared VM's went
# from 62 to 33 GB/s in 5 seconds), and a roofline read minutes away says more about the drift than
# about the kernels. "tg roofline" is the median t/s of those reads, "% roofline" the median of our
# decode's speed against theirs. Prints the CPU, its ISA flags, the threads, the load average and
# qbench's roofline (read once, at the start) above a Markdown table; --json FILE also writes every
# sample.
# Run it on a quiet machine: it warns when the load average says otherwise.
# --threads with a list (1,2,4,8,16) makes a thread-scaling table: every file at every thread count,
# each count with its own roofline (read at that count), interleaved within each round.
#
# llama-bench comes from scripts/build-llamacpp-tools.sh (llama-cpp-python 0.3.16's vendored llama.cpp,
# built native; skipped when already built).
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
THREADS=2 TYPES=q4_0,q4_1,q8_0,f16,bf16 SHAPES=1.1b,163m ROUNDS=3 REPS=1 PP=512 TG=128
MODELS=$REPO/.venv/bench-models JSON_OUT="" files=()
die() { echo "vs-llamacpp.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads|-t) THREADS=$2; shift 2 ;;
    --types) TYPES=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --reps|-r) REPS=$2; shift 2 ;;
    --pp|-p) PP=$2; shift 2 ;;
    --tg|-n) TG=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --json) JSON_OUT=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [[ -f $1 ]] || die "$1: no such file"; files+=("$(realpath "$1")"); shift ;;
  esac
done
for v in ROUNDS REPS PP TG; do [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v,,} ${!v}: not a number"; done
[[ $THREADS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--threads $THREADS: not a number or a comma-separated list"
IFS=, read -ra thread_counts <<<"$THREADS"
for t in "${thread_counts[@]}"; do [[ $t -ge 1 ]] || die "--threads $THREADS: every count must be >= 1"; done
[[ $ROUNDS -ge 1 && $REPS -ge 1 ]] || die "--rounds and --reps must be >= 1"
[[ -x $BIN/qbench && -x $BIN/qconvert ]] || die "$BIN/qbench or qconvert missing: build first (QE_BUILD_DIR)"
"$BIN/qbench" -m /dev/null --help >/dev/null 2>&1 || die "$BIN/qbench has no -m (an old build?)"

# ---- llama-bench: built once, native (the script's stamp makes this a no-op when it is; CI's AVX2-level
# build for the tests, --with-python, is replaced).
QE_LLAMACPP_TOOLS=$TOOLS "$REPO/scripts/build-llamacpp-tools.sh" || die "could not build llama-bench"
LLAMA_BENCH=$TOOLS/bin/llama-bench

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# ---- The synthetic models, cached.
labels=()
if [[ ${#files[@]} -eq 0 ]]; then
  mkdir -p "$MODELS"
  IFS=, read -ra shapes <<<"$SHAPES"
  IFS=, read -ra types <<<"$TYPES"
  for s in "${shapes[@]}"; do
    for t in "${types[@]}"; do
      t=${t,,}
      out=$MODELS/$s-$t.gguf
      if [[ ! -f $out ]]; then
        if [[ $t == f16 || $t == f32 ]]; then
          echo "vs-llamacpp.sh: making $out (synthetic, $t)" >&2
          "$PY" "$REPO/scripts/make-synthetic-llama.py" --shape "$s" --type "$t" -o "$out.tmp" >&2 \
            || die "make-synthetic-llama.py --shape $s failed"
          mv "$out.tmp" "$out"
        else
          src=$MODELS/$s-f16.gguf
          if [[ ! -f $src ]]; then
            echo "vs-llamacpp.sh: making $src (synthetic source)" >&2
            "$PY" "$REPO/scripts/make-synthetic-llama.py" --shape "$s" --type f16 -o "$src.tmp" >&2 \
              || die "make-synthetic-llama.py --shape $s failed"
            mv "$src.tmp" "$src"
          fi
          echo "vs-llamacpp.sh: $src -> $out" >&2
          rm -f "$out.tmp"
          "$BIN/qconvert" "$src" -o "$out.tmp" --type "$t" 2>"$tmp/qconvert.log" \
            || { tail -5 "$tmp/qconvert.log" >&2; die "qconvert --type $t failed"; }
          mv "$out.tmp" "$out"
        fi
      fi
      files+=("$out")
      labels+=("$s|$t")
    done
  done
else
  for f in "${files[@]}"; do labels+=("$(basename "$f" .gguf)|"); done
fi

# ---- The machine.
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512vbmi|avx512_vnni|avx_vnni|avx512_bf16|avx512_fp16|gfni|amx_int8|amx_bf16|asimddp' | tr '\n' ' ' || true)
load=$(cut -d' ' -f1-3 /proc/loadavg)
for t in "${thread_counts[@]}"; do
  echo "vs-llamacpp.sh: measuring the roofline ($t threads)" >&2
  "$BIN/qbench" --roofline --threads="$t" >"$tmp/roofline.$t.json" || die "qbench --roofline failed"
done

# ---- Interleaved rounds: ours then theirs, file by file, thread count by thread count.
for r in $(seq "$ROUNDS"); do
  for t in "${thread_counts[@]}"; do
    for i in "${!files[@]}"; do
      f=${files[$i]}
      echo "vs-llamacpp.sh: round $r/$ROUNDS: $(basename "$f"), $t threads" >&2
      "$BIN/qbench" -m "$f" -p "$PP" -n "$TG" -r "$REPS" -t "$t" --vs-read -o json >"$tmp/q.$i.$t.$r.json" \
        2>"$tmp/q.err" || { cat "$tmp/q.err" >&2; die "qbench -m $f failed"; }
      "$LLAMA_BENCH" -m "$f" -p "$PP" -n "$TG" -r "$REPS" -t "$t" -o json >"$tmp/l.$i.$t.$r.json" 2>"$tmp/l.err" \
        || { tail -5 "$tmp/l.err" >&2; die "llama-bench -m $f failed"; }
    done
  done
done

printf '%s\n' "${files[@]}" >"$tmp/files"
printf '%s\n' "${labels[@]}" >"$tmp/labels"
TMP=$tmp ROUNDS=$ROUNDS THREADS=$THREADS PP=$PP TG=$TG CPU=$cpu FLAGS=$flags LOAD=$load JSON_OUT=$JSON_OUT \
NPROC=$(nproc) "$PY" - <<'EOF'
import json, os, statistics

env = os.environ
tmp, rounds = env["TMP"], int(env["ROUNDS"])
thread_counts = [int(t) for t in env["THREADS"].split(",")]
pp, tg = int(env["PP"]), int(env["TG"])
files = open(f"{tmp}/files").read().split("\n")[:-1]
labels = open(f"{tmp}/labels").read().split("\n")[:-1]
roofs = {t: json.load(open(f"{tmp}/roofline.{t}.json")) for t in thread_counts}
load1 = float(env["LOAD"].split()[0])


def samples(path, n_prompt, n_gen):
    """Every repetition's t/s of one test in one tool's JSON output."""
    out = []
    for row in json.load(open(path)):
        if row["n_prompt"] == n_prompt and row["n_gen"] == n_gen:
            out += row["samples_ts"]
    return out


def vs_read(path, key):
    """Our run's per-repetition --vs-read samples (read t/s, or decode / read) of its tg test."""
    return [x for row in json.load(open(path)) for x in row.get(key, [])]


rows = []
for i, (f, label) in enumerate(zip(files, labels)):
    first = json.load(open(f"{tmp}/q.{i}.{thread_counts[0]}.1.json"))[0]
    shape, typ = label.split("|")
    model = {"file": f, "model": shape or os.path.basename(f),
             "type": typ or first["model_type"].split(" ", 2)[-1], "model_type": first["model_type"]}
    for t in thread_counts:
        r = dict(model, threads=t)
        runs = [f"{tmp}/q.{i}.{t}.{k}.json" for k in range(1, rounds + 1)]
        r["read_ts"] = [x for p in runs for x in vs_read(p, "samples_read_ts")]
        r["vs_read"] = [x for p in runs for x in vs_read(p, "samples_vs_read")]
        for who in ("q", "l"):
            p, g = [], []
            for k in range(1, rounds + 1):
                p += samples(f"{tmp}/{who}.{i}.{t}.{k}.json", pp, 0)
                g += samples(f"{tmp}/{who}.{i}.{t}.{k}.json", 0, tg)
            r["ours" if who == "q" else "llamacpp"] = {f"pp{pp}": p, f"tg{tg}": g}
        rows.append(r)

med = lambda v: statistics.median(v) if v else float("nan")
print(f"cpu: {env['CPU']} ({env['NPROC']} CPUs; {env['FLAGS'].strip()})")
print(roofs[thread_counts[0]]["kernels"])
print(f"threads: {env['THREADS']}; rounds: {rounds} interleaved (ours, then llama.cpp); "
      f"load average: {env['LOAD']}")
for t, roof in roofs.items():
    pair = lambda k: f"{roof[k][0]:.1f}" if t == 1 else f"{roof[k][0]:.1f} / {roof[k][1]:.1f}"
    print(f"roofline: DRAM read {pair('dram_read_gbs')} GB/s, int8 {pair('int8_gmacs')} GMAC/s, "
          f"f32 FMA {pair('fma_gflops')} GFLOP/s ({'1 thread' if t == 1 else f'1 / {t} threads'})")
if load1 > 0.5:
    print(f"warning: load average {load1:.2f}: the machine is not quiet, these numbers are noisy")
print()
print(f"| model | type | threads | pp{pp} ours | llama.cpp | ratio | tg{tg} ours | llama.cpp | ratio | tg roofline "
      "| % roofline |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    op, lp = med(r["ours"][f"pp{pp}"]), med(r["llamacpp"][f"pp{pp}"])
    og, lg = med(r["ours"][f"tg{tg}"]), med(r["llamacpp"][f"tg{tg}"])
    cell = lambda x: "–" if x != x else f"{x:.1f}"
    ratio = lambda a, b: "–" if a != a or b != b or b == 0 else f"{a / b:.2f}x"
    roof, share = med(r["read_ts"]), med(r["vs_read"])
    pct = "–" if share != share else f"{100 * share:.0f}%"
    print(f"| {r['model']} | {r['type']} | {r['threads']} | {cell(op)} | {cell(lp)} | {ratio(op, lp)} | {cell(og)} | {cell(lg)} | "
          f"{ratio(og, lg)} | {cell(roof)} | {pct} |")

if env["JSON_OUT"]:
    doc = {"cpu": env["CPU"], "isa_flags": env["FLAGS"].split(), "threads": thread_counts, "rounds": rounds,
           "load_average": env["LOAD"], "rooflines": {str(t): r for t, r in roofs.items()}, "n_prompt": pp,
           "n_gen": tg, "rows": rows}
    with open(env["JSON_OUT"], "w") as fh:
        json.dump(doc, fh, indent=2)
EOF
exit
}
