#!/usr/bin/env bash
# Quantization quality, ours against llama.cpp's, on one held-out text: a Markdown table on stdout and a
# JSON file. Every variant is quantized from the same f32 teacher and scored by qrun on the same EVAL
# text, context and chunks (llama-perplexity's method): PPL, PPL / teacher PPL, mean KL divergence from
# the teacher and same-top-1 %, plus size, bits per weight and greedy decode speed.
#
#   scripts/quality-table.sh SRC CALIB EVAL [--type q4_0] [--chunks 40] [--ctx 512]
#       [--awq-samples 128] [--awq-ctx 512] [--threads N] [--decode-runs 2] [--work DIR] [--json FILE]
#       [--no-llamacpp]
#
# SRC: a GGUF or HF directory. The teacher is SRC itself when it is a GGUF with only f32 tensors, else
# SRC exported to f32 (`qconvert SRC --to-hf DIR --type f32`, then `qconvert DIR --type f32`).
# Variants: teacher; ours (qconvert --type T); ours + AWQ (qconvert --type T --awq CALIB, calibration
# wall time and peak RSS recorded); llama.cpp plain (llama-quantize T) and llama.cpp imatrix (llama-imatrix
# on CALIB with --awq-samples chunks of --awq-ctx tokens, then llama-quantize --imatrix) when
# scripts/build-llamacpp-tools.sh has built the tools; ours with that imatrix (qconvert --imatrix) when
# qconvert has the flag. llama-quantize runs --pure with our token-embedding
# / output types, and the tensor types of every variant are checked against ours. A variant that fails is a
# row "failed: <first line of its error>"; the rest of the table still prints.
# CALIB and EVAL must differ (path and content). All files, logs and the commands run (commands.txt) stay
# in the work dir (default: a fresh mktemp -d; the KL base of 40 chunks takes ~1 GB). With --work DIR the
# teacher, its log-probabilities and the llama.cpp imatrix are reused when their inputs are unchanged.
# Env: QE_BUILD_DIR (default build), QE_LLAMACPP_TOOLS (default .venv/llama.cpp-tools).
set -euo pipefail
{  # parsed whole before it runs: editing this file during a (long) run cannot derail the run

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/${QE_BUILD_DIR:-build}/bin
LLAMA_BIN=${QE_LLAMACPP_TOOLS:-$REPO/.venv/llama.cpp-tools}/bin
[[ $LLAMA_BIN == /* ]] || LLAMA_BIN=$REPO/$LLAMA_BIN

TYPE=q4_0 CHUNKS=40 CTX=512 AWQ_SAMPLES=128 AWQ_CTX=512 THREADS="" WORK="" JSON="" USE_LLAMACPP=1
PROMPT="The Python standard library"
N_PREDICT=64
DECODE_RUNS=2  # the best of N (--decode-runs): the speed column is noisy on a shared machine
pos=()
die() { echo "quality-table.sh: $*" >&2; exit 1; }
need_val() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --type) need_val "$@"; TYPE=$2; shift 2 ;;
    --chunks) need_val "$@"; CHUNKS=$2; shift 2 ;;
    --ctx) need_val "$@"; CTX=$2; shift 2 ;;
    --awq-samples) need_val "$@"; AWQ_SAMPLES=$2; shift 2 ;;
    --awq-ctx) need_val "$@"; AWQ_CTX=$2; shift 2 ;;
    --threads|-t) need_val "$@"; THREADS=$2; shift 2 ;;
    --work) need_val "$@"; WORK=$2; shift 2 ;;
    --json) need_val "$@"; JSON=$2; shift 2 ;;
    --decode-runs) need_val "$@"; DECODE_RUNS=$2; shift 2 ;;
    --no-llamacpp) USE_LLAMACPP=0; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) pos+=("$1"); shift ;;
  esac
done
[[ ${#pos[@]} -eq 3 ]] || die "usage: quality-table.sh SRC CALIB EVAL [options] (see --help)"
SRC=$(realpath "${pos[0]}") CALIB=$(realpath "${pos[1]}") EVAL=$(realpath "${pos[2]}")
for n in CHUNKS CTX AWQ_SAMPLES AWQ_CTX DECODE_RUNS ${THREADS:+THREADS}; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "--${n,,} must be a positive integer, got '${!n}'"
done
case $TYPE in q4_0|q4_1|q8_0|f16|bf16) ;; *) die "--type $TYPE: one of q4_0 q4_1 q8_0 f16 bf16" ;; esac

# ---- Inputs
[[ -e $SRC ]] || die "SRC $SRC does not exist"
[[ -f $CALIB && -s $CALIB ]] || die "CALIB $CALIB is not a non-empty file"
[[ -f $EVAL && -s $EVAL ]] || die "EVAL $EVAL is not a non-empty file"
[[ $CALIB != "$EVAL" ]] || die "CALIB and EVAL are the same file ($CALIB): evaluate on held-out text"
calib_sha=$(sha256sum "$CALIB" | cut -d' ' -f1)
eval_sha=$(sha256sum "$EVAL" | cut -d' ' -f1)
[[ $calib_sha != "$eval_sha" ]] || die "CALIB and EVAL have the same content (sha256 $calib_sha): evaluate on held-out text"
for t in qconvert qrun; do
  [[ -x $BIN/$t ]] || { sleep 5; [[ -x $BIN/$t ]]; } || die "$BIN/$t missing: run scripts/setup.sh"
done
PY=python3
command -v $PY >/dev/null || die "python3 not found"
have_llamacpp=0
if [[ $USE_LLAMACPP == 1 ]]; then
  have_llamacpp=1
  for t in llama-imatrix llama-quantize; do [[ -x $LLAMA_BIN/$t ]] || have_llamacpp=0; done
fi
TIME=/usr/bin/time
[[ -x $TIME ]] || TIME=""

if [[ -z $WORK ]]; then WORK=$(mktemp -d "${TMPDIR:-/tmp}/quality-table.XXXXXX"); fi
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
JSON=${JSON:-$WORK/quality.json}
echo "quality-table.sh: work dir $WORK" >&2
CMDS=$WORK/commands.txt
: >"$CMDS"
TARGS=(${THREADS:+-t "$THREADS"})

# run LOG CMD...: prints the command, appends it to commands.txt, runs it with stdout+stderr in LOG.
run() {
  local log=$1; shift
  local a i
  for a in "$@"; do  # the build's binaries may be relinked under us: wait a little for them
    if [[ $a == "$BIN"/* ]]; then
      for i in $(seq 30); do [[ -x $a ]] && break; sleep 2; done
    fi
  done
  local line; line=$(printf '%q ' "$@")
  echo "+ ${line% }" | tee -a "$CMDS" >&2
  "$@" >"$log" 2>&1
}
# first_error LOG: the line that says why a command failed (qconvert/qrun/llama.cpp print progress too).
first_error() {
  local l
  l=$(grep -m1 -iE "error|not expected|failed|cannot|can't|invalid|unknown|refus|missing|no such|unable|abort" "$1" || true)
  [[ -n $l ]] || l=$(grep -v '^[[:space:]]*$' "$1" | tail -1 || true)
  echo "${l:-no output}" | cut -c1-160
}
# Stamps: a step whose key (inputs, options) is unchanged is reused from an earlier run in this --work.
stamp_ok() { [[ -f $WORK/$1.stamp && $(cat "$WORK/$1.stamp") == "$2" ]]; }
file_key() { stat -c '%n %s %Y' "$@"; }

# ---- Teacher: f32 GGUF and its log-probabilities on EVAL.
TEACHER=$WORK/teacher.gguf
teacher_key="$(file_key "$SRC") $(file_key "$BIN/qconvert")"
if [[ -f $SRC ]] && $BIN/qconvert --info "$SRC" --json 2>/dev/null \
     | $PY -c 'import json,sys; sys.exit(0 if all(t["type"]=="f32" for t in json.load(sys.stdin)["tensors"]) else 1)'; then
  TEACHER=$SRC
  echo "quality-table.sh: SRC is an f32 GGUF: it is the teacher" >&2
elif stamp_ok teacher "$teacher_key" && [[ -f $TEACHER ]]; then
  echo "quality-table.sh: reusing $TEACHER" >&2
else
  rm -rf "$WORK/teacher-hf" "$TEACHER" "$WORK/teacher.stamp"
  if [[ -d $SRC ]]; then
    run "$WORK/teacher.convert.log" "$BIN/qconvert" "$SRC" -o "$TEACHER" --type f32 "${TARGS[@]}" \
      || die "teacher: $(first_error "$WORK/teacher.convert.log") (log $WORK/teacher.convert.log)"
  else
    run "$WORK/teacher.export.log" "$BIN/qconvert" "$SRC" --to-hf "$WORK/teacher-hf" --type f32 "${TARGS[@]}" \
      || die "teacher export: $(first_error "$WORK/teacher.export.log") (log $WORK/teacher.export.log)"
    run "$WORK/teacher.convert.log" "$BIN/qconvert" "$WORK/teacher-hf" -o "$TEACHER" --type f32 "${TARGS[@]}" \
      || die "teacher: $(first_error "$WORK/teacher.convert.log") (log $WORK/teacher.convert.log)"
    rm -rf "$WORK/teacher-hf"
  fi
  echo "$teacher_key" >"$WORK/teacher.stamp"
fi

BASE=$WORK/teacher.kld
base_key="$(file_key "$TEACHER" "$BIN/qrun") $eval_sha $CTX $CHUNKS"
if stamp_ok teacher-ppl "$base_key" && [[ -f $BASE && -f $WORK/teacher.ppl.log ]]; then
  echo "quality-table.sh: reusing $BASE" >&2
else
  rm -f "$WORK/teacher-ppl.stamp"
  run "$WORK/teacher.ppl.log" "$BIN/qrun" -m "$TEACHER" -f "$EVAL" --perplexity -c "$CTX" --chunks "$CHUNKS" \
      --kl-divergence-base "$BASE" "${TARGS[@]}" \
    || die "teacher perplexity: $(first_error "$WORK/teacher.ppl.log") (log $WORK/teacher.ppl.log)"
  echo "$base_key" >"$WORK/teacher-ppl.stamp"
fi

# ---- Variants. Each one: NAME.gguf, NAME.convert.log, NAME.status ("ok" or "failed: ..." or "skipped: ...").
VARIANTS=(teacher ours ours-awq llamacpp llamacpp-imatrix ours-imatrix)
echo ok >"$WORK/teacher.status"
set_status() { echo "$2" >"$WORK/$1.status"; }

if run "$WORK/ours.convert.log" "$BIN/qconvert" "$TEACHER" -o "$WORK/ours.gguf" --type "$TYPE" --force "${TARGS[@]}"; then
  set_status ours ok
else
  set_status ours "failed: $(first_error "$WORK/ours.convert.log")"
fi

awq_cmd=("$BIN/qconvert" "$TEACHER" -o "$WORK/ours-awq.gguf" --type "$TYPE" --force --awq "$CALIB"
         --awq-samples "$AWQ_SAMPLES" --awq-ctx "$AWQ_CTX" "${TARGS[@]}")
[[ -n $TIME ]] && awq_cmd=("$TIME" -f "%e %M" -o "$WORK/ours-awq.time" "${awq_cmd[@]}")
if run "$WORK/ours-awq.convert.log" "${awq_cmd[@]}"; then
  set_status ours-awq ok
else
  set_status ours-awq "failed: $(first_error "$WORK/ours-awq.convert.log")"
fi

if [[ $have_llamacpp == 0 ]]; then
  why="llama.cpp tools not built (scripts/build-llamacpp-tools.sh)"
  [[ $USE_LLAMACPP == 0 ]] && why="--no-llamacpp"
  set_status llamacpp "skipped: $why"
  set_status llamacpp-imatrix "skipped: $why"
else
  # The token-embedding / output types our policy chose, so llama-quantize writes the same.
  read -r EMB_T OUT_T < <($BIN/qconvert --info "$WORK/ours.gguf" --json 2>/dev/null | $PY -c '
import json, sys
t = {x["name"]: x["type"] for x in json.load(sys.stdin)["tensors"]}
e = t.get("token_embd.weight", "q8_0")
print(e, t.get("output.weight", e))' || echo "q8_0 q8_0")
  # --pure: one type for every other 2-D tensor as ours (without it llama-quantize moves the first n_layer/8
  # ffn_down to q4_1 when it has an imatrix, and the tables would compare different sizes).
  LQ_TYPES=(--pure --token-embedding-type "$EMB_T" --output-tensor-type "$OUT_T")
  LT=${THREADS:-$(nproc)}
  if run "$WORK/llamacpp.convert.log" "$LLAMA_BIN/llama-quantize" "${LQ_TYPES[@]}" "$TEACHER" "$WORK/llamacpp.gguf" "$TYPE" "$LT"; then
    set_status llamacpp ok
  else
    set_status llamacpp "failed: $(first_error "$WORK/llamacpp.convert.log")"
  fi

  IMATRIX=$WORK/llamacpp.imatrix.gguf
  imatrix_key="$(file_key "$TEACHER" "$LLAMA_BIN/llama-imatrix") $calib_sha $AWQ_SAMPLES $AWQ_CTX"
  imatrix_ok=1
  if stamp_ok llamacpp-imatrix "$imatrix_key" && [[ -f $IMATRIX ]]; then
    echo "quality-table.sh: reusing $IMATRIX" >&2
  else
    rm -f "$WORK/llamacpp-imatrix.stamp" "$IMATRIX"
    im_cmd=("$LLAMA_BIN/llama-imatrix" -m "$TEACHER" -f "$CALIB" -c "$AWQ_CTX" --chunks "$AWQ_SAMPLES" -o "$IMATRIX"
            --no-ppl -t "$LT")
    [[ -n $TIME ]] && im_cmd=("$TIME" -f "%e %M" -o "$WORK/llamacpp-imatrix.time" "${im_cmd[@]}")
    if run "$WORK/llamacpp-imatrix.imatrix.log" "${im_cmd[@]}" && [[ -f $IMATRIX ]]; then
      echo "$imatrix_key" >"$WORK/llamacpp-imatrix.stamp"
    else
      imatrix_ok=0
      set_status llamacpp-imatrix "failed: llama-imatrix: $(first_error "$WORK/llamacpp-imatrix.imatrix.log")"
    fi
  fi
  if [[ $imatrix_ok == 1 ]]; then
    if run "$WORK/llamacpp-imatrix.convert.log" "$LLAMA_BIN/llama-quantize" --imatrix "$IMATRIX" "${LQ_TYPES[@]}" \
         "$TEACHER" "$WORK/llamacpp-imatrix.gguf" "$TYPE" "$LT"; then
      set_status llamacpp-imatrix ok
    else
      set_status llamacpp-imatrix "failed: $(first_error "$WORK/llamacpp-imatrix.convert.log")"
    fi
  fi
fi

# Ours with llama-imatrix's matrix: the same rounding as llama-quantize --imatrix, so it isolates the
# quantizer from the calibration.
if [[ ! -f $WORK/llamacpp.imatrix.gguf || $(cat "$WORK/llamacpp-imatrix.status") != ok ]]; then
  set_status ours-imatrix "skipped: no llama.cpp imatrix"
elif ! "$BIN/qconvert" --help 2>/dev/null | grep -q -- '--imatrix'; then
  set_status ours-imatrix "skipped: qconvert has no --imatrix"
elif run "$WORK/ours-imatrix.convert.log" "$BIN/qconvert" "$TEACHER" -o "$WORK/ours-imatrix.gguf" --type "$TYPE" --force \
       --imatrix "$WORK/llamacpp.imatrix.gguf" "${TARGS[@]}"; then
  set_status ours-imatrix ok
else
  set_status ours-imatrix "failed: $(first_error "$WORK/ours-imatrix.convert.log")"
fi

# ---- Measure every variant that exists: tensor table, KL divergence against the teacher, decode speed.
for v in "${VARIANTS[@]}"; do
  [[ $(cat "$WORK/$v.status") == ok ]] || continue
  f=$WORK/$v.gguf
  [[ $v == teacher ]] && f=$TEACHER
  if ! $BIN/qconvert --info "$f" --json --hash >"$WORK/$v.info.json" 2>"$WORK/$v.info.err"; then
    set_status "$v" "failed: qconvert --info: $(first_error "$WORK/$v.info.err")"; continue
  fi
  if [[ $v != teacher ]]; then
    if ! run "$WORK/$v.kld.log" "$BIN/qrun" -m "$f" --perplexity --kl-divergence --kl-divergence-base "$BASE" "${TARGS[@]}"; then
      set_status "$v" "failed: qrun --kl-divergence: $(first_error "$WORK/$v.kld.log")"; continue
    fi
  fi
  for r in $(seq 1 $DECODE_RUNS); do
    run "$WORK/$v.decode$r.log" "$BIN/qrun" -m "$f" -p "$PROMPT" -n "$N_PREDICT" --temp 0 "${TARGS[@]}" \
      || echo "quality-table.sh: decode run of $v failed: $(first_error "$WORK/$v.decode$r.log")" >&2
  done
done

# ---- The table and the JSON.
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
$PY - "$WORK" "$JSON" "$TEACHER" "$SRC" "$CALIB" "$EVAL" "$TYPE" "$CTX" "$CHUNKS" "$AWQ_SAMPLES" "$AWQ_CTX" \
    "${THREADS:-default}" "$DECODE_RUNS" "$N_PREDICT" "$PROMPT" "${CPU:-unknown}" "${VARIANTS[@]}" <<'PY'
import json, math, os, re, sys

(work, json_path, teacher, src, calib, evl, qtype, ctx, chunks, awq_samples, awq_ctx, threads, decode_runs,
 n_predict, prompt, cpu, *variants) = sys.argv[1:]
LABEL = {"teacher": "teacher (f32)", "ours": f"ours {qtype}", "ours-awq": f"ours {qtype} + AWQ",
         "llamacpp": f"llama.cpp {qtype}", "llamacpp-imatrix": f"llama.cpp {qtype} + imatrix",
         "ours-imatrix": f"ours {qtype} + llama.cpp imatrix"}
NUM = r"([-+0-9.eE]+|nan|inf)"

def read(name):
    p = os.path.join(work, name)
    return open(p, encoding="utf-8", errors="replace").read() if os.path.exists(p) else ""

def grab(text, pattern):
    m = re.search(pattern, text, re.M)
    return tuple(float(g) for g in m.groups()) if m else None

def tensors(v):
    try:
        return json.loads(read(f"{v}.info.json"))["tensors"]
    except (ValueError, KeyError):
        return None

ours_types = {t["name"]: t["type"] for t in (tensors("ours") or [])}
rows = []
for v in variants:
    status = read(f"{v}.status").strip() or "failed: not run"
    row = {"variant": v, "label": LABEL[v], "status": "ok" if status == "ok" else status.split(":")[0],
           "note": "" if status == "ok" else status}
    path = teacher if v == "teacher" else os.path.join(work, f"{v}.gguf")
    row["file"] = path
    if v in ("ours-awq", "llamacpp-imatrix"):
        t = grab(read(f"{v}.time").strip().splitlines()[-1] if read(f"{v}.time").strip() else "",
                 r"^([0-9.]+) ([0-9]+)$")
        if t:
            row["calib_wall_s"], row["calib_peak_rss_mb"] = t[0], round(t[1] / 1024, 1)
    ts = tensors(v) if status == "ok" else None
    if ts is not None:
        row["size_mb"] = round(os.path.getsize(path) / 1e6, 2)
        n = sum(math.prod(t["shape"]) for t in ts)
        row["bpw"] = round(8 * sum(t["bytes"] for t in ts) / n, 3)
        row["types"] = {}
        for t in ts:
            row["types"][t["type"]] = row["types"].get(t["type"], 0) + 1
        if v != "teacher" and ours_types:
            diff = sorted(t["name"] for t in ts if ours_types.get(t["name"]) != t["type"])
            diff += sorted(set(ours_types) - {t["name"] for t in ts})
            row["types_match_ours"] = not diff
            if diff:
                ex = next((t for t in ts if t["name"] == diff[0]), None)
                row["note"] = (f"{len(diff)} tensor types differ from ours, e.g. {diff[0]} "
                               f"{ex['type'] if ex else 'missing'} vs {ours_types.get(diff[0], 'missing')}")
        # Tensor data identical to an earlier variant's (XXH3 of every tensor): the same rounding.
        hashes = {t["name"]: t.get("xxh3") for t in ts}
        for other in rows:
            if other.get("_hashes") == hashes and None not in hashes.values():
                row["identical_to"] = other["variant"]
                row["note"] = (row["note"] + "; " if row["note"] else "") + f"tensor data identical to {other['label']}"
                break
        row["_hashes"] = hashes
    if status == "ok" and v == "teacher":
        m = grab(read("teacher.ppl.log"), rf"Final estimate: PPL = {NUM} \+/- {NUM}")
        if m:
            row["ppl"], row["ppl_err"] = m
            row["ppl_ratio"], row["kld"], row["same_top1"] = 1.0, 0.0, 100.0
        else:
            row["note"] = "no 'Final estimate' in teacher.ppl.log"
    elif status == "ok":
        log = read(f"{v}.kld.log")
        for key, pat in (("ppl", rf"^Mean PPL\(Q\)\s*:\s*{NUM}\s*±\s*{NUM}"),
                         ("ppl_ratio", rf"^Mean PPL\(Q\)/PPL\(base\)\s*:\s*{NUM}\s*±\s*{NUM}"),
                         ("kld", rf"^Mean\s+KLD:\s*{NUM}\s*±\s*{NUM}"),
                         ("same_top1", rf"^Same top p:\s*{NUM}\s*±\s*{NUM} %")):
            m = grab(log, pat)
            if m:
                row[key], row[key + "_err"] = m
            else:
                row["note"] = (row["note"] + "; " if row["note"] else "") + f"no {key} in {v}.kld.log"
    tps = [g[0] for r in range(1, int(decode_runs) + 1)
           if (g := grab(read(f"{v}.decode{r}.log"), rf"^\S+\s+eval time =.*?{NUM} tokens per second\)"))]
    if tps:
        row["decode_tps"] = max(tps)
        row["decode_tps_runs"] = tps
    rows.append(row)
for r in rows:
    r.pop("_hashes", None)

def pm(r, k, fmt):
    if k not in r:
        return "—"
    return fmt.format(r[k]) + (" ± " + fmt.format(r[k + "_err"]) if (k + "_err") in r else "")

def cell(r, k, fmt):
    return fmt.format(r[k]) if k in r else "—"

print(f"Quality of {qtype}: EVAL {os.path.basename(evl)}, -c {ctx}, {chunks} chunks; CALIB {os.path.basename(calib)} "
      f"({awq_samples} x {awq_ctx} tokens); decode: best of {decode_runs}, {n_predict} tokens, greedy; "
      f"threads {threads}; CPU {cpu}")
print()
print("| variant | size MB | bpw | PPL | PPL / teacher | mean KLD | same top-1 % | decode t/s | note |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    note = r["note"]
    if "calib_wall_s" in r and r["status"] == "ok":
        note = (note + "; " if note else "") + f"calibration {r['calib_wall_s']:.0f} s, {r['calib_peak_rss_mb']:.0f} MB RSS"
    print(f"| {r['label']} | {cell(r, 'size_mb', '{:.1f}')} | {cell(r, 'bpw', '{:.2f}')} | {pm(r, 'ppl', '{:.3f}')} "
          f"| {pm(r, 'ppl_ratio', '{:.4f}')} | {pm(r, 'kld', '{:.4f}')} | {pm(r, 'same_top1', '{:.2f}')} "
          f"| {cell(r, 'decode_tps', '{:.1f}')} | {note} |")

out = {"src": src, "teacher": teacher, "calib": calib, "eval": evl, "type": qtype, "ctx": int(ctx),
       "chunks": int(chunks), "awq_samples": int(awq_samples), "awq_ctx": int(awq_ctx), "threads": threads,
       "cpu": cpu, "decode": {"prompt": prompt, "n_predict": int(n_predict), "runs": int(decode_runs)},
       "work": work, "commands": read("commands.txt").splitlines(), "variants": rows}
tmp = json_path + ".tmp"
with open(tmp, "w") as f:
    json.dump(out, f, indent=1)
os.replace(tmp, json_path)
print(f"\nJSON: {json_path}; commands: {os.path.join(work, 'commands.txt')}", file=sys.stderr)
PY
exit
}
