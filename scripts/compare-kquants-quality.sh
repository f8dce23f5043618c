#!/usr/bin/env bash
# qrun against llama.cpp on files llama.cpp wrote: for each file type, llama-quantize makes the file from
# one f32 source, llama-perplexity scores it and saves its log-probabilities (--kl-divergence-base), and
# qrun scores the same file on the same text, context and chunks and measures its KL divergence from
# llama.cpp's log-probabilities (--kl-divergence). Two pairs per file:
#   exact: llama-perplexity built for AVX2 (scripts/build-llamacpp-tools.sh --avx2) against
#          `qrun --numerics llama.cpp`, which reproduces that build's bits (expected: KLD 0, same PPL);
#   fast:  llama-perplexity built natively against qrun's default numerics (informative: on a 135M model
#          rounding-order differences alone are worth a KLD of a few 1e-3; llama.cpp's AVX2 and AVX-512
#          builds differ by as much).
# A Markdown table on stdout, JSON in the work dir. The bars (issue "K-quants"):
# |PPL qrun / PPL llama.cpp - 1| <= 0.5 % and mean KLD <= 0.002 per file (checked on the exact pair, or
# on the fast pair when the AVX2 build is missing).
#
#   scripts/compare-kquants-quality.sh [--source smollm2 | --source synthetic-1.1b | --source F32.gguf]
#       [--types "Q2_K Q3_K_M ..."] [--chunks N] [--ctx 512] [--eval FILE] [--threads N] [--work DIR]
#
# smollm2 (default): the default model exported to f32 (qconvert --to-hf --type f32, then --type f32);
# EVAL defaults to scripts/make-texts.sh's eval.txt. synthetic-1.1b: scripts/make-synthetic-llama.py's
# TinyLlama-shaped model (random weights: its perplexity means nothing, the KLD column does), where every
# matrix of every mix is a k-quant. Exit status 1 when a bar is missed or a step fails.
# Env: QE_BUILD_DIR (default build), QE_LLAMACPP_TOOLS (default .venv/llama.cpp-tools).
set -euo pipefail
{
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/${QE_BUILD_DIR:-build}/bin
LLAMA_BIN=${QE_LLAMACPP_TOOLS:-$REPO/.venv/llama.cpp-tools}/bin
[[ $LLAMA_BIN == /* ]] || LLAMA_BIN=$REPO/$LLAMA_BIN
PY=$REPO/.venv/bin/python
SOURCE=smollm2 TYPES="Q2_K Q3_K_M Q4_K_S Q4_K_M Q5_K_M Q6_K Q5_0 Q5_1 IQ4_NL IQ4_XS" CHUNKS="" CTX=512 EVAL=""
THREADS=$(nproc) WORK=""
die() { echo "compare-kquants-quality.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --source) SOURCE=$2; shift 2 ;;
    --types) TYPES=$2; shift 2 ;;
    --chunks) CHUNKS=$2; shift 2 ;;
    --ctx) CTX=$2; shift 2 ;;
    --eval) EVAL=$(realpath "$2"); shift 2 ;;
    --threads|-t) THREADS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
for t in llama-quantize llama-perplexity; do
  [[ -x $LLAMA_BIN/$t ]] || die "$LLAMA_BIN/$t missing: run scripts/build-llamacpp-tools.sh"
done
LLAMA_AVX2=${LLAMA_BIN%/bin}-avx2/bin/llama-perplexity
[[ -x $LLAMA_AVX2 ]] || { echo "compare-kquants-quality.sh: no $LLAMA_AVX2 (build-llamacpp-tools.sh --avx2): the exact pair is skipped" >&2; LLAMA_AVX2=""; }
for t in qconvert qrun; do [[ -x $BIN/$t ]] || die "$BIN/$t missing: run scripts/setup.sh"; done
[[ -n $WORK ]] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/kquants-quality.XXXXXX")
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
echo "compare-kquants-quality.sh: work dir $WORK" >&2

run() {  # run LOG CMD...: the command goes to stderr and commands.txt, its output to LOG
  local log=$1; shift
  echo "+ $*" | tee -a "$WORK/commands.txt" >&2
  "$@" >"$log" 2>&1 || { echo "failed (log $log):" >&2; tail -5 "$log" >&2; return 1; }
}

# ---- The f32 source and the evaluation text.
case $SOURCE in
  smollm2)
    SRC=$WORK/smollm2-f32.gguf
    if [[ ! -f $SRC ]]; then
      [[ -f $REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || "$REPO/scripts/get-model.sh"
      rm -rf "$WORK/smollm2-hf"
      run "$WORK/export.log" "$BIN/qconvert" "$REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf" --to-hf "$WORK/smollm2-hf" --type f32
      run "$WORK/f32.log" "$BIN/qconvert" "$WORK/smollm2-hf" -o "$SRC" --type f32
      rm -rf "$WORK/smollm2-hf"
    fi
    CHUNKS=${CHUNKS:-20} ;;
  synthetic-1.1b)
    SRC=$WORK/synthetic-1.1b-f32.gguf
    [[ -f $SRC ]] || run "$WORK/synthetic.log" "$PY" "$REPO/scripts/make-synthetic-llama.py" --shape 1.1b "$SRC"
    CHUNKS=${CHUNKS:-4} ;;
  *)
    SRC=$(realpath "$SOURCE"); [[ -f $SRC ]] || die "--source $SOURCE: no such file"
    CHUNKS=${CHUNKS:-20} ;;
esac
if [[ -z $EVAL ]]; then
  [[ -f $WORK/texts/eval.txt ]] || "$REPO/scripts/make-texts.sh" "$WORK/texts" >&2
  EVAL=$WORK/texts/eval.txt
fi

# ---- Per type: llama.cpp writes and scores, qrun scores the same file against llama.cpp's logits.
for T in $TYPES; do
  f=$WORK/$T.gguf
  [[ -f $f ]] || run "$WORK/$T.quantize.log" "$LLAMA_BIN/llama-quantize" "$SRC" "$f" "$T" "$THREADS" || { echo "quantize failed" >"$WORK/$T.status"; continue; }
  status=ok
  for pair in fast exact; do
    lp=$LLAMA_BIN/llama-perplexity numerics=fast
    if [[ $pair == exact ]]; then
      [[ -n $LLAMA_AVX2 ]] || continue
      lp=$LLAMA_AVX2 numerics=llama.cpp
    fi
    run "$WORK/$T.$pair.llamacpp.log" "$lp" -m "$f" -f "$EVAL" -c "$CTX" --chunks "$CHUNKS" \
        -t "$THREADS" --kl-divergence-base "$WORK/$T.kld" || { status="llama-perplexity failed"; break; }
    # The tokens, context and chunks come from llama.cpp's base file (as llama-perplexity --kl-divergence).
    run "$WORK/$T.$pair.qrun.log" "$BIN/qrun" -m "$f" -t "$THREADS" --perplexity --kl-divergence \
        --numerics "$numerics" --kl-divergence-base "$WORK/$T.kld" || { status="qrun failed"; break; }
    rm -f "$WORK/$T.kld"  # ~0.5 GB per type at 20 chunks of the 49k vocabulary
  done
  echo "$status" >"$WORK/$T.status"
done

# ---- The table.
WORK="$WORK" TYPES="$TYPES" SOURCE="$SOURCE" CHUNKS="$CHUNKS" CTX="$CTX" "$PY" - <<'EOF'
import json, os, re, sys
work, types = os.environ["WORK"], os.environ["TYPES"].split()
rows, ok = [], True

def grab(path, pattern):
    try:
        m = re.findall(pattern, open(path, errors="replace").read())
    except FileNotFoundError:
        return None
    return m[-1] if m else None

print(f"source {os.environ['SOURCE']}, {os.environ['CHUNKS']} chunks of {os.environ['CTX']}\n")
print("| file | size MiB | pair | PPL llama.cpp | PPL qrun | Δ PPL | mean KLD qrun vs llama.cpp | same top p | bars |")
print("|---|---|---|---|---|---|---|---|---|")
for t in types:
    status = open(f"{work}/{t}.status").read().strip() if os.path.exists(f"{work}/{t}.status") else "not run"
    size = os.path.getsize(f"{work}/{t}.gguf") / 2**20 if os.path.exists(f"{work}/{t}.gguf") else 0
    pairs = [p for p in ("exact", "fast") if os.path.exists(f"{work}/{t}.{p}.qrun.log")]
    if status != "ok" or not pairs:
        ok = False
        print(f"| {t} | {size:.1f} | | {status} | | | | | ✗ |")
        rows.append({"type": t, "status": status})
        continue
    for pair in pairs:
        pl = grab(f"{work}/{t}.{pair}.llamacpp.log", r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")
        pq = grab(f"{work}/{t}.{pair}.qrun.log", r"Mean PPL\(Q\)\s+:\s+([0-9.]+) ±\s+([0-9.]+)")
        kld = grab(f"{work}/{t}.{pair}.qrun.log", r"Mean    KLD:\s+([-0-9.]+) ±\s+([0-9.]+)")
        top = grab(f"{work}/{t}.{pair}.qrun.log", r"Same top p:\s+([0-9.]+) ±\s+([0-9.]+)")
        if not (pl and pq and kld):
            ok = False
            print(f"| {t} | {size:.1f} | {pair} | output not understood | | | | | ✗ |")
            continue
        d = float(pq[0]) / float(pl[0]) - 1
        good = abs(d) <= 0.005 and float(kld[0]) <= 0.002
        judged = pair == pairs[0]  # the exact pair when it ran
        ok &= good or not judged
        mark = ("✓" if good else "✗") if judged else ("(✓)" if good else "(✗)")
        print(f"| {t} | {size:.1f} | {pair} | {pl[0]} ± {pl[1]} | {pq[0]} ± {pq[1]} | {100 * d:+.3f} % | "
              f"{kld[0]} ± {kld[1]} | {top[0] if top else '?'} % | {mark} |")
        rows.append({"type": t, "pair": pair, "size_mib": size, "ppl_llamacpp": float(pl[0]),
                     "ppl_qrun": float(pq[0]), "ppl_delta": d, "kld": float(kld[0]), "kld_err": float(kld[1]),
                     "same_top": float(top[0]) if top else None, "ok": good, "judged": judged})
json.dump(rows, open(f"{work}/quality.json", "w"), indent=1)
sys.exit(0 if ok else 1)
EOF
exit
}
