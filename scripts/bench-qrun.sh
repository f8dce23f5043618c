#!/usr/bin/env bash
# qrun vs llama.cpp (llama-cpp-python, built by scripts/compare-llamacpp.sh) speed on the default model:
# a fixed ~100-token prompt, 128 greedy tokens, -t 1 and -t 2, RUNS runs each, qrun and llama.cpp
# interleaved. Prints medians of prompt-eval and decode tokens/s for both, their ratios, qrun's peak RSS
# (/usr/bin/time -v) and the load average, since a busy machine moves every number.
#
#   scripts/bench-qrun.sh [RUNS]          (default 5; env QE_BUILD_DIR, default build; QE_BENCH_THREADS="1 2";
#                                          QE_QRUN_ARGS: more qrun flags, e.g. "--numerics llama.cpp")
#
# qrun's numbers are its own stderr timings (prompt eval time, eval time); llama.cpp's are wall-clock
# times of Llama.eval() (llama_perf_context's counters are unreliable after a reset in 0.3.16): both
# count the same work, the prompt as one batch and 127 single-token decodes after the first token.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BUILD_DIR=${QE_BUILD_DIR:-build}
PY=.venv/bin/python
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf

[[ -x /usr/bin/time ]] || { apt-get install -y time >/dev/null || { echo "bench-qrun.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }; }
$PY -c 'import llama_cpp' 2>/dev/null || { echo "bench-qrun.sh: llama_cpp missing: run scripts/compare-llamacpp.sh first" >&2; exit 1; }
[[ -f $MODEL ]] || scripts/get-model.sh
[[ -f $BUILD_DIR/CMakeCache.txt ]] || cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" --target qrun >&2

QRUN="$BUILD_DIR/bin/qrun" MODEL="$MODEL" RUNS="$RUNS" THREADS="${QE_BENCH_THREADS:-1 2}" exec $PY - <<'EOF'
import os, re, statistics, subprocess, sys, time

import numpy as np
import llama_cpp
from llama_cpp import Llama

QRUN, MODEL, RUNS = os.environ["QRUN"], os.environ["MODEL"], int(os.environ["RUNS"])
THREADS = [int(t) for t in os.environ["THREADS"].split()]
N_PREDICT = 128
PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, a "
          "goldsmith from Mainz, combined movable metal type, oil-based ink and a wooden screw press into a "
          "system that could produce books faster and more cheaply than ever before. Within a few decades, "
          "printing shops had spread to more than two hundred cities across Europe, and the number of books "
          "in circulation grew from thousands to millions. Historians still debate how much this changed")

TIMING = re.compile(r"qrun: +(prompt eval time|eval time) = +([\d.]+) ms / +(\d+)")
RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def run_qrun(t):
    p = subprocess.run(["/usr/bin/time", "-v", QRUN, "-m", MODEL, "-p", PROMPT, "-n", str(N_PREDICT),
                        "--temp", "0", "-t", str(t), "-c", "512", *os.environ.get("QE_QRUN_ARGS", "").split()],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"qrun failed: {p.stderr[-1000:]}")
    tm = {k: (float(ms), int(n)) for k, ms, n in TIMING.findall(p.stderr)}
    (pm, pn), (em, en) = tm["prompt eval time"], tm["eval time"]
    return pn, 1e3 * pn / pm, 1e3 * en / em, int(RSS.search(p.stderr).group(1)) / 1024


def run_llama(llm, ids):
    # Wall clock around eval() (llama_decode plus the bindings' copy of one logits row); the argmax is
    # outside the clock, as qrun's sampling is outside its eval time.
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t_prompt = time.perf_counter() - t0
    t_decode, n_decode = 0.0, 0
    for i in range(N_PREDICT):
        # Without logits_all the bindings keep no scores; read the last row from the context.
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
        tok = int(np.argmax(last))
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
            break
        if i + 1 < N_PREDICT:
            t0 = time.perf_counter()
            llm.eval([tok])
            t_decode += time.perf_counter() - t0
            n_decode += 1
    return len(ids), len(ids) / t_prompt, n_decode / t_decode


rows = []
for t in THREADS:
    llm = Llama(MODEL, n_ctx=512, n_batch=512, n_threads=t, n_threads_batch=t, verbose=False)
    ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    load0 = os.getloadavg()[0]
    q, l = [], []
    run_qrun(t), run_llama(llm, ids)  # warm-up: page cache, CPU clocks
    for r in range(RUNS):
        q.append(run_qrun(t))
        l.append(run_llama(llm, ids))
        print(f"-t {t} run {r + 1}: qrun prompt {q[-1][1]:7.1f} t/s decode {q[-1][2]:6.1f} t/s "
              f"(RSS {q[-1][3]:.0f} MiB) | llama.cpp prompt {l[-1][1]:7.1f} t/s decode {l[-1][2]:6.1f} t/s",
              file=sys.stderr, flush=True)
    load1 = os.getloadavg()[0]
    del llm
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    rows.append((t, q[0][0], med(q, 1), med(l, 1), med(q, 2), med(l, 2), max(x[3] for x in q), load0, load1))

print(f"\nqrun vs llama.cpp (llama-cpp-python {llama_cpp.__version__}), {os.path.basename(MODEL)}: "
      f"{rows[0][1]}-token prompt, {N_PREDICT} greedy tokens, median of {RUNS} runs, {os.cpu_count()} CPUs\n")
print("| threads | prompt t/s qrun | prompt t/s llama.cpp | ratio | decode t/s qrun | decode t/s llama.cpp "
      "| ratio | qrun peak RSS | load avg (1 min) before / after |")
print("|---|---|---|---|---|---|---|---|---|")
for t, n, qp, lp, qd, ld, rss, l0, l1 in rows:
    print(f"| {t} | {qp:.1f} | {lp:.1f} | {qp / lp:.2f} | {qd:.1f} | {ld:.1f} | {qd / ld:.2f} | {rss:.0f} MiB "
          f"| {l0:.2f} / {l1:.2f} |")
EOF
