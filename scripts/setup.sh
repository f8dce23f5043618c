#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine, safe to run again: installs the build dependencies
# (apt), creates .venv with the Python test references (pip), configures and builds build/ (Release).
# Extra CMake arguments: QE_CMAKE_ARGS="-DQE_WERROR=ON" scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git unzip  # toolchain (OpenMP = libgomp, part of gcc)
  libhwloc-dev        # physical-core count and thread pinning
  libcli11-dev        # command-line parsing for the tools
  libfmt-dev          # formatting of every message and table
  libxxhash-dev       # XXH3 tensor hashes (--hash, conversion checks)
  libpcre2-dev        # Unicode-aware regex for the BPE pre-tokenizers (\p{L}, \p{N}, lookahead)
  nlohmann-json3-dev  # safetensors headers, HF config.json / tokenizer.json, --json output
  libyaml-cpp-dev     # qconvert --config FILE.yaml: a conversion's flags kept in a file (front end only)
  libcpp-httplib-dev  # qserve's HTTP server (as llama-server uses it; front end only)
  libgtest-dev        # unit tests
  libbenchmark-dev    # qbench
  clang libclang-rt-14-dev  # libFuzzer targets (QE_FUZZ)
  python3 python3-venv python3-pip  # the reference witnesses run in Python
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python references we did not write: gguf (ggml's quantizers, GGUF reader/writer), safetensors,
# tokenizers, numpy. A stamp of the requirements file skips pip when nothing changed. pip (mostly
# downloads and unpacking) runs beside the build (mostly compiling), so neither waits for the other.
REQ=tests/python/requirements.txt
[ -x .venv/bin/python ] || python3 -m venv .venv
pip_pid=""
if ! cmp -s "$REQ" .venv/.requirements.stamp 2>/dev/null; then
  (
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -r "$REQ"
    cp "$REQ" .venv/.requirements.stamp
  ) &
  pip_pid=$!
fi

# shellcheck disable=SC2086
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${QE_CMAKE_ARGS:-} >/dev/null
cmake --build build -j "$(nproc)"
if [ -n "$pip_pid" ] && ! wait "$pip_pid"; then
  echo "setup: pip install -r $REQ failed" >&2
  exit 1
fi
echo "setup: done (binaries in build/bin)"
