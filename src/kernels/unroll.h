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

// keep(v): an empty asm that GCC must assume reads and changes the vector v. On an integer accumulator
// chain (sum = add(sum, product) per step) it keeps the chain a chain: left alone, GCC reassociates the
// adds into a tree over all of a block's products, which needs every product live at once and spills
// them (measured: half the speed in the AVX2 x16 kernels).
template <class V>
inline __attribute__((always_inline)) void keep(V& v) {
  asm("" : "+x"(v));
}

}  // namespace qe::kernels
