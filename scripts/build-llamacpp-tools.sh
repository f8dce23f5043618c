#!/usr/bin/env bash
# llama.cpp's own command-line tools (llama-imatrix, llama-quantize, llama-perplexity, llama-bench,
# llama-cli, llama-server), built from the llama.cpp that llama-cpp-python 0.3.16's sdist vendors (the
# same llama.cpp as scripts/compare-llamacpp.sh), CPU only, Release. They are quality and speed
# witnesses, so the build is native (GGML_NATIVE=ON: the best kernels for this CPU), not the AVX2
# numerics witness that compare-llamacpp.sh builds. Once built, a stamp skips the work.
#
#   scripts/build-llamacpp-tools.sh [--force] [--jobs N] [--avx2]
#
# Output: .venv/llama.cpp-tools/bin/llama-{imatrix,quantize,perplexity,bench,cli,server} (ignored by git with
# .venv/). Needs network access the first time (pip download of the sdist).
# --avx2: instead, llama-perplexity built for the AVX2 level (GGML_NATIVE=OFF, AVX-512 off, as
# compare-llamacpp.sh builds llama-cpp-python) into .venv/llama.cpp-tools-avx2/bin: the llama.cpp whose
# numbers `qrun --numerics llama.cpp` reproduces bit for bit on any x86-64 CPU.
# --with-python (CI): one build of llama.cpp for both witnesses: the tools and shared libraries at the
# AVX2 level (as --avx2), then llama-cpp-python installed over those libraries (its own build switched
# off: LLAMA_BUILD=OFF, so pip compiles nothing). The tools then are AVX2-level ones; a later plain run
# (bench/vs-llamacpp.sh makes one) rebuilds them native, and the bindings keep their copy of the libraries
# (tests/python/test_llamacpp_server_tools.py then compares only llama-server's prompts, not its replies).
# Env: QE_LLAMACPP_TOOLS (default .venv/llama.cpp-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_PYTHON_VERSION=0.3.16  # keep in step with scripts/compare-llamacpp.sh
TARGETS=(llama-imatrix llama-quantize llama-perplexity llama-bench llama-cli llama-server)
ROOT=${QE_LLAMACPP_TOOLS:-.venv/llama.cpp-tools}
SRC_ROOT=$ROOT  # the unpacked sdist, shared by both builds
JOBS=$(nproc)
FORCE=0
LEVEL=(-DGGML_NATIVE=ON)
SHARED=OFF
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) FORCE=1; shift ;;
    --avx2)
      LEVEL=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
             -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF)
      TARGETS=(llama-perplexity)
      ROOT=${ROOT}-avx2
      shift ;;
    --with-python)
      LEVEL=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
             -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF)
      [[ $(uname -m) == x86_64 ]] || LEVEL=(-DGGML_NATIVE=ON)  # compare-llamacpp.sh's choice too
      SHARED=ON
      shift ;;
    --jobs) JOBS=$2; shift 2 ;;
    --jobs=*) JOBS=${1#--jobs=}; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-llamacpp-tools.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

die() { echo "build-llamacpp-tools.sh: $*" >&2; exit 1; }
for t in cmake ninja c++; do command -v $t >/dev/null || die "$t not found: run scripts/setup.sh first"; done

# The stamp names the version, the flags and the targets: a change in any of them rebuilds.
CMAKE_FLAGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release "${LEVEL[@]}" -DGGML_CUDA=OFF -DGGML_METAL=OFF
             -DGGML_VULKAN=OFF -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=$SHARED
             -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON
             -DLLAMA_BUILD_TOOLS=ON)
# Shared libraries find each other (and the tools find them) beside themselves ($ORIGIN), wherever they
# are copied: the tools with them in bin/, the bindings in llama_cpp/lib.
[[ $SHARED == ON ]] && CMAKE_FLAGS+=(-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON)
want_stamp="llama-cpp-python $LLAMA_CPP_PYTHON_VERSION | ${CMAKE_FLAGS[*]} | ${TARGETS[*]}"
if [[ $FORCE == 0 && -f $ROOT/stamp && $(cat "$ROOT/stamp") == "$want_stamp" ]]; then
  ok=1
  for t in "${TARGETS[@]}"; do [[ -x $ROOT/bin/$t ]] || ok=0; done
  if [[ $ok == 1 ]]; then
    echo "build-llamacpp-tools.sh: up to date in $ROOT/bin (--force rebuilds)" >&2
    [[ $SHARED == ON ]] || exit 0
    UP_TO_DATE=1
  fi
fi
SRC=$SRC_ROOT/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION
PY=.venv/bin/python
[[ -x $PY ]] || PY=python3

if [[ ${UP_TO_DATE:-0} == 0 ]]; then  # build (else only the Python package below is checked)
  t0=$(date +%s)
  mkdir -p "$ROOT"
  rm -f "$ROOT/stamp"

  # ---- Sources: the sdist, unpacked once (its vendor/llama.cpp is all we build).
  if [[ ! -f $SRC/vendor/llama.cpp/CMakeLists.txt ]]; then
    dl=$(mktemp -d)
    trap 'rm -rf "$dl"' EXIT
    echo "build-llamacpp-tools.sh: downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist" >&2
    $PY -m pip download --quiet --no-binary :all: --no-deps --dest "$dl" \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" || die "pip download failed (network?)"
    tarball=$(ls "$dl"/llama_cpp_python-*.tar.gz 2>/dev/null | head -1)
    [[ -n $tarball ]] || die "pip download gave no llama_cpp_python-*.tar.gz in $dl"
    rm -rf "$SRC_ROOT/src"
    mkdir -p "$SRC_ROOT/src"
    tar -xzf "$tarball" -C "$SRC_ROOT/src"
    [[ -f $SRC/vendor/llama.cpp/CMakeLists.txt ]] || die "$tarball has no vendor/llama.cpp/CMakeLists.txt"
  fi

  # ---- Configure and build only the tools we need (not the whole tree).
  cmake -S "$SRC/vendor/llama.cpp" -B "$ROOT/build" "${CMAKE_FLAGS[@]}" >"$ROOT/configure.log" 2>&1 \
    || { tail -20 "$ROOT/configure.log" >&2; die "cmake configure failed (log: $ROOT/configure.log)"; }
  cmake --build "$ROOT/build" -j "$JOBS" --target "${TARGETS[@]}" >"$ROOT/build.log" 2>&1 \
    || { tail -30 "$ROOT/build.log" >&2; die "build failed (log: $ROOT/build.log)"; }

  mkdir -p "$ROOT/bin"
  for t in "${TARGETS[@]}"; do
    [[ -x $ROOT/build/bin/$t ]] || die "$ROOT/build/bin/$t was not built"
    cp -f "$ROOT/build/bin/$t" "$ROOT/bin/$t"
  done
  [[ $SHARED == ON ]] && cp -f "$ROOT"/build/bin/lib*.so* "$ROOT/bin/"
  echo "$want_stamp" >"$ROOT/stamp"
  echo "build-llamacpp-tools.sh: built ${TARGETS[*]} in $(( $(date +%s) - t0 )) s ($JOBS jobs) into $ROOT/bin" >&2
fi
[[ $SHARED == ON ]] || exit 0

# ---- --with-python: llama-cpp-python's Python package from the same sdist, over the libraries just built.
# Its loader looks in llama_cpp/lib beside the package, so the libraries are copied there; a package
# that is already there with the very same libllama is left alone.
[[ -x .venv/bin/python ]] || die "--with-python: .venv is missing: run scripts/setup.sh first"
libdir=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')/llama_cpp/lib
have=$($PY -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || true)
if [[ $have != "$LLAMA_CPP_PYTHON_VERSION" ]] || ! cmp -s "$ROOT/build/bin/libllama.so" "$libdir/libllama.so"; then
  $PY -m pip uninstall --quiet -y llama-cpp-python 2>/dev/null || true
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" $PY -m pip install --quiet --no-cache-dir "$SRC" \
    || die "pip install of llama-cpp-python from $SRC failed"
  mkdir -p "$libdir"
  cp -f "$ROOT"/build/bin/lib*.so* "$libdir/"
fi
$PY -c 'import llama_cpp; print("build-llamacpp-tools.sh: llama-cpp-python", llama_cpp.__version__, "|",
llama_cpp.llama_print_system_info().decode().strip())' >&2 || die "llama_cpp does not import over $libdir"
