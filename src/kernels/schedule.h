// Two empty-looking asm statements that hold GCC to a schedule the x86 micro-kernels were measured with.
// x86 only (the prefetch); included by the AVX2 x16 kernels.
#pragma once

#include <cstddef>

namespace qe::kernels {

// keep(v): an empty asm that GCC must assume reads and changes the vector v. On an integer accumulator
// chain (sum = add(sum, product) per step) it keeps the chain a chain: left alone, GCC reassociates the
// adds into a tree over all of a block's products, which needs every product live at once and spills
// them (measured: half the speed in the AVX2 x16 kernels).
template <class V>
inline __attribute__((always_inline)) void keep(V& v) {
  asm("" : "+x"(v));
}

// prefetch_ahead<kAhead>(consumed, anchor): prefetcht0 of the line kAhead bytes past `consumed`, tied to
// the register `anchor` of the step that consumes that line (the asm claims to change it; it does not).
// A plain _mm_prefetch has no operands GCC must wait for, and GCC hoisted a block's prefetches to the
// block's start: a burst of them measured slower than none, one per consumed line faster (the GEMVs that
// use it say by how much).
template <size_t kAhead, class V>
inline __attribute__((always_inline)) void prefetch_ahead(const void* consumed, V& anchor) {
  asm volatile("prefetcht0 %1" : "+x"(anchor) : "m"(*(static_cast<const char*>(consumed) + kAhead)));
}

}  // namespace qe::kernels
