#!/usr/bin/env bash
# The kernels' unrolled bodies are inlined (ctest `kernels_inlined`, optimized builds only). unroll<N>(f)
# (kernels/unroll.h) calls f with std::integral_constant indices so that register arrays stay registers;
# when the compiler keeps such a body as a function of its own instead (GCC 12 did, for five of the
# AVX2 q5_K GEMV's), its vectors travel through the stack on every call: that GEMV ran at 28 instead of
# 37 G multiply-adds/s with the same source. A call to a lambda's operator()<std::integral_constant<...>>
# in the library's symbols is that; mark the lambda __attribute__((always_inline)).
#   scripts/check-kernel-inlining.sh LIBQE_KERNELS
set -euo pipefail
lib="${1:?usage: check-kernel-inlining.sh path/to/libqe_kernels.a}"
[[ -r $lib ]] || { echo "check-kernel-inlining: cannot read $lib" >&2; exit 2; }
syms=$(nm -C --defined-only "$lib" | grep -F 'operator()<std::integral_constant<int' || true)
if [[ -n $syms ]]; then
  echo "check-kernel-inlining: $(wc -l <<<"$syms") unrolled lambda bodies compiled out of line in $lib:" >&2
  cut -c1-300 <<<"$syms" >&2
  exit 1
fi
echo "check-kernel-inlining: ok"
