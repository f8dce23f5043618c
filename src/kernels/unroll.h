// unroll<N>(f): f(std::integral_constant<int, I>{}) for I = 0 .. N - 1, in order, inlined. Micro-kernels
// index their register arrays (accumulators, decoded weights) with these constants so the arrays stay
// registers: GCC 12 keeps a memory copy of an array indexed in a plain loop, and an accumulator chain
// through the stack is bound by store-to-load latency, not by the FMA or the multiply pipe; and
// intrinsics that take a lane index (NEON's multiply-accumulate by element) need a constant.
#pragma once

#include <type_traits>
#include <utility>

namespace qe::kernels {

template <int N, class F>
inline __attribute__((always_inline)) void unroll(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) __attribute__((always_inline)) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

}  // namespace qe::kernels
