// Empty-looking asm statements that hold GCC to a schedule the x86 micro-kernels were measured with.
// x86 only (the prefetches); included by the AVX2 and AVX-512 x16 kernels.
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

// The AVX-512 one-token GEMVs' software prefetch, on the CPUs that want it (gemv_software_prefetch,
// kernel_tables.h): each line twice, prefetcht1 (into L2) kGemvL2Ahead bytes ahead, then prefetcht0
// (into L1) kGemvL1Ahead bytes ahead, anchored as prefetch_ahead is ("+v": any of the 32 vector
// registers). 2-vCPU Xeon (Emerald Rapids), 1.1B ffn_up, 1 thread, against a read at the same moments:
// q4_0 65-67% with none, 84% with prefetcht0 4 KiB ahead, 91-93% with prefetcht1 4 KiB ahead (2 KiB
// 78%, 8 and 16 KiB as 4), 96-97% with prefetcht0 2 KiB ahead as well; every type gained 2-5 points at
// 1 and 2 threads, and 1.1B q4_0 decode 88-90% -> 95-96% of a read at 1 thread, 85-86% -> 92-94% at 2.
// (A standalone q4_0 GEMV, the L1 prefetch 1152 / 2304 / 3072 bytes ahead against none: 93-94% -> 98-102%
// with each. In qbench, three alternating runs: 1024 and 1536 as 2048 or up to 3 points under it, 3072
// under it on every type tried, q4_K 86-88% against 93-94%.)
inline constexpr size_t kGemvL2Ahead = 4096, kGemvL1Ahead = 2048;
template <class V>
inline __attribute__((always_inline)) void prefetch_gemv_ahead(const void* consumed, V& anchor) {
  asm volatile("prefetcht1 %1" : "+v"(anchor) : "m"(*(static_cast<const char*>(consumed) + kGemvL2Ahead)));
  asm volatile("prefetcht0 %1" : "+v"(anchor) : "m"(*(static_cast<const char*>(consumed) + kGemvL1Ahead)));
}

// Step kStep of the kSteps steps that consume one kBytes block: its share of the block's lines, in address
// order (ceil(lines / kSteps) a step), prefetched ahead (prefetch_gemv_ahead), so a block's prefetches spread
// over its arithmetic. Blocks follow each other, so the lines at block + 64 i (i < ceil(kBytes / 64)) of
// every block cover every line, whatever the blocks' offsets from a line.
template <size_t kBytes, int kSteps, int kStep, class V>
inline __attribute__((always_inline)) void prefetch_gemv_share(const void* block, V& anchor) {
  constexpr int kLines = static_cast<int>((kBytes + 63) / 64), kPer = (kLines + kSteps - 1) / kSteps;
#pragma GCC unroll 16
  for (int j = 0; j < kPer; ++j)
    if (kStep * kPer + j < kLines)
      prefetch_gemv_ahead(static_cast<const char*>(block) + 64 * (kStep * kPer + j), anchor);
}

}  // namespace qe::kernels
