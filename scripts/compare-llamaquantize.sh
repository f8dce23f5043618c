#!/usr/bin/env bash
# qconvert against llama-quantize, byte for byte: both quantize the same source GGUF to each type, with
# and without an importance matrix, and every tensor is compared by name (type, shape, data bytes), as
# is general.file_type (and with --strict the whole file). Prints a Markdown table (type x imatrix:
# identical tensors / total, whether the whole files are identical, the first differing tensor with both
# types and its first differing block) and exits 1 on any difference or failure.
#
#   scripts/compare-llamaquantize.sh SRC.gguf [--imatrix FILE] [options]
#   scripts/compare-llamaquantize.sh --smollm2 [options]
#   scripts/compare-llamaquantize.sh --synthetic 1.1b|163m|tiny|tiny576 [options]
#
#   --types "Q4_K_M Q6_K"  llama-quantize type names (default: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M
#                          Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS)
#   --imatrix FILE         also run every type with this imatrix (llama-imatrix's GGUF or .dat)
#   --imatrix-only         only the imatrix runs;  --no-imatrix: only the plain runs
#   --pure                 passed to both tools (no mixes: every matrix in the named type)
#   --strict               also require the whole files to be identical (tensor and key order, padding)
#   -t N                   threads for both tools (default 2; the bytes do not depend on it)
#   --work DIR             keeps sources, imatrix and logs there (reused on a rerun); default a temp dir,
#                          removed at exit unless --keep. Outputs are deleted once compared unless --keep.
#   --json FILE            the rows as JSON
#   --smollm2              SRC = models/SmolLM2-135M-Instruct.Q4_1.gguf exported to f32 (qconvert --to-hf
#                          --type f32, then qconvert DIR --type f32); imatrix = llama-imatrix on
#                          scripts/make-texts.sh's calib.txt (-c 512 --chunks 20)
#   --synthetic SHAPE      SRC and imatrix from scripts/make-synthetic-llama.py (random weights, seed 1234)
#
# Env: QE_BUILD_DIR (default build), QE_LLAMACPP_TOOLS (default .venv/llama.cpp-tools), PYTHON (default
# .venv/bin/python, else python3; needs numpy and gguf).
set -euo pipefail
{  # parsed whole before it runs: editing this file during a (long) run cannot derail the run

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/${QE_BUILD_DIR:-build}/bin
LLAMA_BIN=${QE_LLAMACPP_TOOLS:-$REPO/.venv/llama.cpp-tools}/bin
[[ $LLAMA_BIN == /* ]] || LLAMA_BIN=$REPO/$LLAMA_BIN
PY=${PYTHON:-$REPO/.venv/bin/python}
[[ -x $PY ]] || PY=python3

TYPES="Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS"
SRC="" IMATRIX="" WORK="" JSON="" KEEP=0 THREADS=2 PURE=0 STRICT=0 PLAIN=1 WITH_IM=1 PRESET=""
die() { echo "compare-llamaquantize.sh: $*" >&2; exit 2; }
need_val() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --types) need_val "$@"; TYPES=$2; shift 2 ;;
    --imatrix) need_val "$@"; IMATRIX=$2; shift 2 ;;
    --imatrix-only) PLAIN=0; shift ;;
    --no-imatrix) WITH_IM=0; shift ;;
    --pure) PURE=1; shift ;;
    --strict) STRICT=1; shift ;;
    -t|--threads) need_val "$@"; THREADS=$2; shift 2 ;;
    --work) need_val "$@"; WORK=$2; shift 2 ;;
    --json) need_val "$@"; JSON=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --smollm2) PRESET=smollm2; shift ;;
    --synthetic) need_val "$@"; PRESET=synthetic:$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z $SRC ]] || die "one SRC only"; SRC=$1; shift ;;
  esac
done
[[ -n $SRC || -n $PRESET ]] || die "usage: compare-llamaquantize.sh SRC.gguf | --smollm2 | --synthetic SHAPE [options] (see --help)"
[[ -z $SRC || -z $PRESET ]] || die "SRC and --smollm2 / --synthetic exclude each other"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "-t must be a positive integer, got '$THREADS'"
[[ $PLAIN == 1 || $WITH_IM == 1 ]] || die "--imatrix-only and --no-imatrix exclude each other"
[[ -x $BIN/qconvert ]] || die "$BIN/qconvert missing: build it (QE_BUILD_DIR picks the build dir)"
[[ -x $LLAMA_BIN/llama-quantize ]] || die "$LLAMA_BIN/llama-quantize missing: run scripts/build-llamacpp-tools.sh"
"$PY" -c "import gguf, numpy" 2>/dev/null || die "$PY cannot import gguf and numpy"

if [[ -z $WORK ]]; then
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-llamaquantize.XXXXXX")
  [[ $KEEP == 1 ]] || trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
echo "compare-llamaquantize.sh: work dir $WORK" >&2

# step LOG CMD...: prints the command, runs it with stdout+stderr in LOG; on failure prints the log's tail.
step() {
  local log=$1; shift
  echo "+ $(printf '%q ' "$@")" >&2
  if ! "$@" >"$log" 2>&1; then
    tail -20 "$log" >&2
    return 1
  fi
}
# first_error LOG: the line that says why a tool failed (both print progress too).
first_error() {
  local l
  l=$(grep -m1 -iE "error|abort|not written|failed|cannot|can't|invalid|unknown|refus|missing|unsupported|unable" "$1" || true)
  [[ -n $l ]] || l=$(tail -1 "$1")
  echo "${l:0:200}"
}

# ---- Sources.
case $PRESET in
  smollm2)
    model=$REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf
    [[ -f $model ]] || step "$WORK/get-model.log" bash "$REPO/scripts/get-model.sh" || die "cannot fetch $model"
    SRC=$WORK/smollm2-f32.gguf
    if [[ ! -f $SRC ]]; then
      rm -rf "$WORK/smollm2-hf"
      step "$WORK/smollm2-hf.log" "$BIN/qconvert" "$model" --to-hf "$WORK/smollm2-hf" --type f32 -t "$THREADS" \
        || die "qconvert --to-hf failed"
      step "$WORK/smollm2-f32.log" "$BIN/qconvert" "$WORK/smollm2-hf" -o "$SRC.tmp" --type f32 -t "$THREADS" --force \
        || die "qconvert HF -> f32 failed"
      mv "$SRC.tmp" "$SRC"
    else
      echo "compare-llamaquantize.sh: reusing $SRC" >&2
    fi
    if [[ -z $IMATRIX && $WITH_IM == 1 ]]; then
      IMATRIX=$WORK/smollm2.imatrix.gguf
      if [[ ! -f $IMATRIX ]]; then
        [[ -x $LLAMA_BIN/llama-imatrix ]] || die "$LLAMA_BIN/llama-imatrix missing: run scripts/build-llamacpp-tools.sh"
        [[ -f $WORK/texts/calib.txt ]] || step "$WORK/texts.log" bash "$REPO/scripts/make-texts.sh" "$WORK/texts" \
          || die "make-texts.sh failed"
        step "$WORK/imatrix.log" "$LLAMA_BIN/llama-imatrix" -m "$SRC" -f "$WORK/texts/calib.txt" -c 512 --chunks 20 \
          -o "$IMATRIX.tmp.gguf" --no-ppl -t "$THREADS" || die "llama-imatrix failed"
        mv "$IMATRIX.tmp.gguf" "$IMATRIX"
      else
        echo "compare-llamaquantize.sh: reusing $IMATRIX" >&2
      fi
    fi
    ;;
  synthetic:*)
    shape=${PRESET#synthetic:}
    SRC=$WORK/synthetic-$shape-f32.gguf
    im=$WORK/synthetic-$shape.imatrix.gguf
    if [[ ! -f $SRC || ! -f $im ]]; then
      step "$WORK/synthetic.log" "$PY" "$REPO/scripts/make-synthetic-llama.py" --shape "$shape" -o "$SRC.tmp" \
        --imatrix "$im.tmp" || die "make-synthetic-llama.py --shape $shape failed"
      mv "$SRC.tmp" "$SRC"
      mv "$im.tmp" "$im"
    else
      echo "compare-llamaquantize.sh: reusing $SRC and $im" >&2
    fi
    [[ -n $IMATRIX ]] || IMATRIX=$im
    ;;
esac
[[ -f $SRC ]] || die "SRC $SRC is not a file"
SRC=$(realpath "$SRC")
if [[ $WITH_IM == 1 && -n $IMATRIX ]]; then
  [[ -f $IMATRIX ]] || die "imatrix $IMATRIX is not a file"
  IMATRIX=$(realpath "$IMATRIX")
else
  [[ $PLAIN == 1 ]] || die "--imatrix-only needs an imatrix"
  IMATRIX=""
fi
VARIANTS=()
[[ $PLAIN == 1 ]] && VARIANTS+=(plain)
[[ -n $IMATRIX ]] && VARIANTS+=(imatrix)
PUREARG=()
[[ $PURE == 1 ]] && PUREARG=(--pure)

# ---- Quantize and compare, one type and variant at a time (outputs deleted once compared: a 1.1b
# model's pair is ~1.5 GB).
ROWS=$WORK/rows.jsonl
: >"$ROWS"
for type in $TYPES; do
  for v in "${VARIANTS[@]}"; do
    tag=$type-$v
    ours=$WORK/ours-$tag.gguf theirs=$WORK/llama-$tag.gguf
    imarg=()
    [[ $v == imatrix ]] && imarg=(--imatrix "$IMATRIX")
    rm -f "$ours" "$theirs"
    err=""
    step "$WORK/llama-$tag.log" "$LLAMA_BIN/llama-quantize" "${PUREARG[@]}" "${imarg[@]}" "$SRC" "$theirs" "$type" "$THREADS" \
      || err="llama-quantize failed: $(first_error "$WORK/llama-$tag.log")"
    if [[ -z $err ]]; then
      step "$WORK/ours-$tag.log" "$BIN/qconvert" "$SRC" -o "$ours" --type "$type" "${PUREARG[@]}" "${imarg[@]}" \
        -t "$THREADS" --force || err="qconvert failed: $(first_error "$WORK/ours-$tag.log")"
    fi
    "$PY" - "$type" "$v" "$ours" "$theirs" "$err" "$STRICT" >>"$ROWS" <<'PY'
import json, sys
import numpy as np
from gguf import GGUFReader, GGML_QUANT_SIZES
from gguf import GGUFValueType as V

qtype, variant, ours, theirs, err, strict = sys.argv[1:]
row = {"type": qtype, "imatrix": variant == "imatrix", "ok": False}
if err:
    row["error"] = err
    print(json.dumps(row)); sys.exit()

def file_type(r):
    f = r.fields.get("general.file_type")
    return None if f is None else int(f.parts[f.data[0]][0])

a, b = GGUFReader(ours), GGUFReader(theirs)
ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
row["total"] = len(tb)
row["file_type"] = [file_type(a), file_type(b)]
counts = {}
for t in b.tensors:
    counts[t.tensor_type.name.lower()] = counts.get(t.tensor_type.name.lower(), 0) + 1
row["llama_types"] = counts
diffs = []
identical = 0
for name in [t.name for t in b.tensors] + sorted(set(ta) - set(tb)):
    x, y = ta.get(name), tb.get(name)
    if x is None or y is None:
        diffs.append({"tensor": name, "why": "only in " + ("llama-quantize's" if x is None else "ours")})
        continue
    tx, ty = x.tensor_type.name.lower(), y.tensor_type.name.lower()
    d = {"tensor": name, "ours": tx, "llama": ty}
    if tx != ty:
        diffs.append(d | {"why": "type"}); continue
    if x.shape.tolist() != y.shape.tolist():
        diffs.append(d | {"why": f"shape {x.shape.tolist()} vs {y.shape.tolist()}"}); continue
    bx = np.frombuffer(x.data.tobytes() if not x.data.flags.c_contiguous else x.data, np.uint8)
    by = np.frombuffer(y.data.tobytes() if not y.data.flags.c_contiguous else y.data, np.uint8)
    if bx.size == by.size and np.array_equal(bx, by):
        identical += 1; continue
    blk, tsz = GGML_QUANT_SIZES[y.tensor_type]
    per_row = int(y.shape[0]) // blk
    neq = np.flatnonzero(bx != by) if bx.size == by.size else np.array([min(bx.size, by.size)])
    first = int(neq[0]) // tsz
    diffs.append(d | {"why": "data", "first_block": first, "row": first // per_row, "block_in_row": first % per_row,
                      "blocks_differing": int(np.unique(neq // tsz).size), "blocks": bx.size // tsz})
row["identical"] = identical
row["diffs"] = diffs
# Beyond the tensors (informational): metadata keys and values other than ours' provenance, whole file.
def kv(r):
    out = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        out[k] = [bytes(f.parts[i]).hex() for i in f.data] if f.types[0] == V.ARRAY else \
            bytes(f.parts[f.data[0]]).hex()
    return out
ka, kb = kv(a), kv(b)
row["kv_differ"] = sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
with open(ours, "rb") as fa, open(theirs, "rb") as fb:
    same = True
    while same:
        ca, cb = fa.read(1 << 24), fb.read(1 << 24)
        same = ca == cb
        if not ca:
            break
row["file_identical"] = same
row["tensor_order_same"] = [t.name for t in a.tensors] == [t.name for t in b.tensors]
row["kv_order_same"] = list(ka) == list(kb)
row["ok"] = not diffs and row["file_type"][0] == row["file_type"][1] and (same or strict == "0")
print(json.dumps(row))
PY
    ok=$(tail -1 "$ROWS" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())["ok"])')
    echo "compare-llamaquantize.sh: $tag: $([[ $ok == True ]] && echo identical || echo DIFFERENT)" >&2
    [[ $KEEP == 1 ]] || rm -f "$ours" "$theirs"
  done
done

# ---- The table.
"$PY" - "$ROWS" "$SRC" "${IMATRIX:-none}" "${JSON:-}" "$PURE" <<'PY'
import json, os, sys
rows_path, src, imatrix, json_path, pure = sys.argv[1:]
rows = [json.loads(l) for l in open(rows_path) if l.strip()]
print(f"qconvert vs llama-quantize on {os.path.basename(src)}; imatrix {os.path.basename(imatrix)}"
      f"{'; --pure' if pure == '1' else ''}")
print()
print("| type | imatrix | identical tensors | file_type ours / llama | whole file | first difference |")
print("|---|---|---:|---|---|---|")
for r in rows:
    im = "yes" if r["imatrix"] else "no"
    if "error" in r:
        print(f"| {r['type']} | {im} | — | — | — | {r['error']} |"); continue
    ft = "{} / {}".format(*r["file_type"])
    why = (["tensor order"] if not r["tensor_order_same"] else []) + \
          (["key order"] if not r["kv_order_same"] else []) + \
          ([f"keys {', '.join(r['kv_differ'][:3])}"] if r["kv_differ"] else [])
    whole = "identical" if r["file_identical"] else "differs" + (f" ({', '.join(why)})" if why else "")
    first = "—"
    if r["diffs"]:
        d = r["diffs"][0]
        first = f"{d['tensor']}: "
        if d["why"] == "data":
            first += (f"{d['ours']} bytes differ from block {d['first_block']} (row {d['row']}, block "
                      f"{d['block_in_row']}); {d['blocks_differing']}/{d['blocks']} blocks differ")
        elif d["why"] == "type":
            first += f"type ours {d['ours']} vs llama {d['llama']}"
        else:
            first += d["why"]
        if len(r["diffs"]) > 1:
            first += f" (+{len(r['diffs']) - 1} more tensors)"
    elif r["file_type"][0] != r["file_type"][1]:
        first = "general.file_type differs"
    print(f"| {r['type']} | {im} | {r['identical']} / {r['total']} | {ft} | {whole} | {first} |")
bad = [r for r in rows if not r["ok"]]
print()
print(f"{len(rows) - len(bad)} of {len(rows)} runs byte-identical" + (f"; differing: "
      + ", ".join(f"{r['type']}{'+imatrix' if r['imatrix'] else ''}" for r in bad) if bad else ""))
if json_path:
    with open(json_path, "w") as f:
        json.dump({"src": src, "imatrix": imatrix, "pure": pure == "1", "rows": rows}, f, indent=1)
sys.exit(1 if bad else 0)
PY
exit
}
