#!/usr/bin/env bash
# Cross-builds the formats + kernels libraries and the kernel unit tests for aarch64 (NEON level:
# armv8.2-a + dotprod + fp16) and runs them under qemu-user, so the NEON kernels are really tested on an
# x86 box. Installs the cross compiler and qemu when missing (non-interactive apt).
#   scripts/test-aarch64.sh [build-dir]      (default: build-aarch64)
#   scripts/test-aarch64.sh --install-only   (only the packages: CI fetches them while it compiles)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
install_only=0
if [[ ${1:-} == --install-only ]]; then install_only=1; shift; fi
build="${1:-$root/build-aarch64}"
[[ "$build" = /* ]] || build="$root/$build"

need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[[ -d /usr/src/googletest ]] || need+=(googletest)
if ((${#need[@]})); then
  echo "test-aarch64: installing ${need[*]}"
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
[[ $install_only == 1 ]] && exit 0

# A standalone project: only what the kernels need (no fmt/json/xxhash/hwloc for arm64 required).
proj="$build/project"
mkdir -p "$proj"
cat > "$proj/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(qe_aarch64_kernels C CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(QE_ROOT "$root")
find_package(OpenMP REQUIRED)
add_library(qe_warnings INTERFACE)
target_compile_options(qe_warnings INTERFACE -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror)
file(GLOB block_src \${QE_ROOT}/src/formats/blocks*.cpp)
add_library(qe_formats STATIC \${block_src} \${QE_ROOT}/src/formats/quant_search.cpp
                              \${QE_ROOT}/src/formats/ggml_type.cpp \${QE_ROOT}/src/formats/error.cpp)
target_include_directories(qe_formats PUBLIC \${QE_ROOT}/src)
set(QE_WITH_HWLOC OFF CACHE BOOL "" FORCE)
include(\${QE_ROOT}/cmake/kernels.cmake)
set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
add_subdirectory(/usr/src/googletest \${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)
enable_testing()
file(GLOB tests \${QE_ROOT}/tests/unit/kernels_*_test.cpp)
foreach(src \${tests})
  get_filename_component(name \${src} NAME_WE)
  add_executable(\${name} \${src})
  target_link_libraries(\${name} PRIVATE qe_kernels qe_warnings gtest_main)
  add_test(NAME \${name} COMMAND \${name})
endforeach()
CMAKE

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$proj" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" >/dev/null
cmake --build "$build" -j"$(nproc)"

# qemu's default CPU ("max") has dotprod and fp16, so the NEON level is detected and tested.
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
cd "$build"
status=0
for t in kernels_*_test; do
  echo "== $t (qemu-aarch64)"
  qemu-aarch64 -L /usr/aarch64-linux-gnu "./$t" --gtest_brief=1 || status=1
done
exit $status
