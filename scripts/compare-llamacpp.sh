#!/usr/bin/env bash
# qrun against llama.cpp on the default model (SmolLM2-135M-Instruct Q4_1). With qrun --numerics llama.cpp:
# prompt tokens and greedy 128-token continuations of 16 prompts identical, and logits bit-identical
# (float32 bits, Δ = 0) at every prompt position (one batch), at every decode step of the continuations
# (one token each) and at the 512 positions of one perplexity chunk in one batch. With
# the default (fast) numerics, on a ~24k-token text at -c 512: perplexity within 0.5%, and on the first
# 20 chunks mean KL divergence <= 0.005 and the same top-1 at >= 95% of the scored positions. Also
# llama-quantize's q5_0 ... iq4_xs files of a synthetic model, logits bit-identical (when
# scripts/build-llamacpp-tools.sh has built llama-quantize). llama.cpp is llama-cpp-python, built here
# from source (CPU only, x86-64 at the AVX2 level) into .venv, once. Prints two Markdown tables (the
# prompts; perplexity), each ending "N passed, N failed"; non-zero exit on any failure.
#
#   scripts/compare-llamacpp.sh [--out FILE]
#   scripts/compare-llamacpp.sh --install-only   # only build llama-cpp-python (CI: the README's test
#                                                # command then runs the comparison as a ctest test)
#
# Env: QE_BUILD_DIR (default build), QE_PARITY_THREADS (default 2, both engines), QE_PARITY_NUMERICS
# (default llama.cpp; fast runs the token and logit checks with qrun's own kernels, to see how far they are).
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_PYTHON_VERSION=0.3.16  # vendors llama.cpp b6xxx: knows tokenizer.ggml.pre = smollm
BUILD_DIR=${QE_BUILD_DIR:-build}
PY=.venv/bin/python
OUT=""
INSTALL_ONLY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    --install-only) INSTALL_ONLY=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "compare-llamacpp.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

[[ -x $PY ]] || { echo "compare-llamacpp.sh: $PY missing: run scripts/setup.sh first" >&2; exit 1; }

# ---- llama-cpp-python, from source, CPU only (no CUDA/Metal, no curl): the wheel on PyPI is an sdist
# anyway; --no-binary makes sure no foreign prebuilt wheel is picked up. On x86-64 it is built for the
# AVX2 level (GGML_NATIVE=OFF), whatever the CPU: `qrun --numerics llama.cpp` reproduces llama.cpp's AVX2
# backend bit for bit, and a native build on an AVX-512 CPU takes other kernels (other bits). A build of
# another flavour (e.g. an earlier native one) is replaced; --no-cache-dir keeps pip from reusing a wheel
# it cached from a build with other flags.
if [[ $(uname -m) == x86_64 ]]; then
  GGML_LEVEL="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF"
  want_info="AVX2 = 1"
else
  GGML_LEVEL="-DGGML_NATIVE=ON"
  want_info=""
fi
have=$($PY - <<'PY' 2>/dev/null || true
import llama_cpp
print(llama_cpp.__version__, "|", llama_cpp.llama_print_system_info().decode())
PY
)
if [[ ${have%% |*} != "$LLAMA_CPP_PYTHON_VERSION" || $have != *"$want_info"* || $have == *"AVX512 = 1"* ]]; then
  echo "compare-llamacpp.sh: building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from source, $GGML_LEVEL (several minutes)" >&2
  t0=$(date +%s)
  CMAKE_ARGS="$GGML_LEVEL -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    bash -c "$PY -m pip uninstall --quiet -y llama-cpp-python 2>/dev/null; $PY -m pip install --quiet --no-cache-dir \
      --no-binary llama-cpp-python llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  echo "compare-llamacpp.sh: llama-cpp-python built in $(( $(date +%s) - t0 )) s" >&2
fi

[[ $INSTALL_ONLY == 1 ]] && exit 0

# ---- Model and qrun
[[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || scripts/get-model.sh
if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD_DIR" --target qrun

# ---- The comparison: one pytest run of both files (each check is a test), the tables from their fixtures.
tables=$(mktemp -d)
trap 'rm -rf "$tables"' EXIT
rc=0
QE_BIN="$PWD/$BUILD_DIR/bin" QE_PARITY_TABLES="$tables" \
  $PY -m pytest -q -p no:cacheprovider tests/python/test_llamacpp_parity.py \
  tests/python/test_llamacpp_perplexity.py || rc=$?
echo
for t in llamacpp-parity.md llamacpp-perplexity.md; do
  if [[ -s $tables/$t ]]; then
    cat "$tables/$t"
    echo
  else
    echo "compare-llamacpp.sh: the comparison for $t did not run (see pytest's output above)"
    echo "0 passed, 1 failed"
    rc=1
  fi
done
[[ -n $OUT ]] && cat "$tables"/*.md >"$OUT"
exit $rc
