// x86-64 builds carry ref, avx2 and avx512 tables; each level starts from the one below so an entry
// a level does not specialise still points at working code. A level's fill functions are compiled with
// that level's flags (the compiler may use its vector stores even there), so they only run on a CPU
// that has it.
#include "kernels/kernel_tables.h"

namespace qe::kernels {

// A one-token GEMV reads each weight once, from DRAM, so it runs at the pace its weights arrive. Whether
// software prefetch helps the hardware prefetchers depends on the core (1.1B ffn_up, one token, against a
// read of the same bytes at the same moments, qbench):
//  - Zen 4 (2-vCPU EPYC): its hardware prefetchers alone do best; software prefetch 1-8 KiB ahead made
//    every AVX-512 GEMV slower (q4_0 / q4_1 / q8_0 4-14%, f16 15-20%, q5_K 79% -> 57% of the read).
//  - Intel (2-vCPU Xeon, Emerald Rapids): the hardware prefetchers alone left them at 59-78% of the read
//    (q8_0 74-90%); prefetcht1 4 KiB ahead, a share of each block's lines per step (schedule.h), took
//    them to 89-99%, and prefetcht0 2 KiB ahead of the same lines as well to 91-100%.
// So AMD's cores (and Hygon's, which are Zen) keep to the hardware, every other x86 core prefetches. The
// AVX2 level prefetches everywhere: a Zen 3 core needs it (matmul_x16_avx2.cpp). The int8 GEMMs of one
// slice of 2..8 tokens (a batched decode step), which read each weight once too, prefetch on every core,
// the Zen 4's included: there they gained 1.0-1.2x (q4_0, q4_1, q8_0) and 1.4-2.0x (k-quants)
// (matmul_x16_avx512.cpp, x16_k_avx512.inc). The f16 one did not: 0.78-0.83x on the Zen 4.
bool gemv_software_prefetch(const CpuFeatures& f) {
  return f.vendor != "AuthenticAMD" && f.vendor != "HygonGenuine";
}

// vdpbf16ps does 32 multiply-adds where a 512-bit FMA does 16, and rounds the activations to bf16. On a
// Zen 4 it issues as fast as an FMA: the bf16 GEMM runs ~1.8x the f32-FMA one (1.1B pp512 190 against f16's
// 106 t/s). An Intel core (2-vCPU Xeon, Emerald Rapids) issues one every other cycle, while it has two
// 512-bit FMA pipes: there the f32 path is the faster one, and keeps the activations exact (1.1B ffn_up,
// 512 tokens, 1 / 2 threads: 136-138 / 272-275 GOP/s against vdpbf16ps's 81-88 / 165-173).
bool bf16_dot_pays(const CpuFeatures& f) {
  return f.avx512bf16 && f.vendor != "GenuineIntel";
}

// An Intel core runs vcvtph2ps (f16 -> f32) as two µops on its two FMA ports, so a GEMM panel of 13
// tokens that widens its own weights spends 2 of every 15 FMA-port cycles on it; the blocked product
// widens a block once for every panel of the call and gained 17-25% there (2-vCPU Xeon, Emerald Rapids,
// 1.1B ffn_up, 512 tokens). On a Zen 4 core the panels that widen their own weights already run at 93%
// of its FMA peak (the widening does not hold the FMAs back there), and the blocked product's part sums
// and panel prefetches cost more than they save: 2-9% slower (2-vCPU EPYC Zen 4, f16, 64 and 512 tokens,
// 1 and 2 threads, old and new alternating; slower still with the block widened by every panel instead
// of copied), pp512 4-8%; at the AVX2 level on a Zen 3, pp512 7-24% slower (f16 at 2 threads 52.6
// against 65.1 t/s: matmul_x16_float_avx2.cpp). So AMD's cores (and Hygon's) widen per panel.
bool widen_once_pays(const CpuFeatures& f) {
  return f.vendor != "AuthenticAMD" && f.vendor != "HygonGenuine";
}

Avx512X16Choices avx512_x16_choices(const CpuFeatures& f) {
  return {.gfni = f.gfni,
          .gemv_prefetch = gemv_software_prefetch(f),
          .bf16_dot = bf16_dot_pays(f),
          .widen_once = widen_once_pays(f)};
}

void fill_avx512_x16(KernelTable& t, const Avx512X16Choices& c) {
  kernels::avx512::fill_x16(t, c.gemv_prefetch);
  if (c.gfni) kernels::avx512gfni::fill_x16_k(t, c.gemv_prefetch);
  kernels::avx512::fill_x16_float(t, c.bf16_dot, c.gemv_prefetch, c.widen_once);
}

namespace {

struct Tables {
  LevelTables ref, avx2, avx512;
  bool has_avx2 = false, has_avx512 = false;
  Tables() {
    const CpuFeatures& f = cpu_features();
    kernels::ref::fill_table(ref.fast);
    kernels::ref::fill_x16(ref.fast);
    kernels::ref::fill_x16_float(ref.fast);
    kernels::ref::fill_convert(ref.fast);
    kernels::ref::fill_attention(ref.fast);
    finish_level(ref, Isa::ref, kernels::ref::fill_llamacpp);
    avx2 = ref;
    if ((has_avx2 = cpu_has_isa(f, Isa::avx2))) {
      kernels::avx2::fill_table(avx2.fast);
      kernels::avx2::fill_x16(avx2.fast);
      kernels::avx2::fill_x16_float(avx2.fast, widen_once_pays(f));
      kernels::avx2::fill_convert(avx2.fast);
      kernels::avx2::fill_attention(avx2.fast);
      finish_level(avx2, Isa::avx2, kernels::avx2::fill_llamacpp);
    }
    avx512 = avx2;
    if ((has_avx512 = cpu_has_isa(f, Isa::avx512))) {
      kernels::avx512::fill_table(avx512.fast);
      kernels::avx512::fill_quantize(avx512.fast);
      kernels::avx512::fill_ops(avx512.fast);
      fill_avx512_x16(avx512.fast, avx512_x16_choices(f));
      kernels::avx512::fill_float_tiles(avx512.fast);
      kernels::avx512::fill_convert(avx512.fast);
      kernels::avx512::fill_attention(avx512.fast);
      finish_level(avx512, Isa::avx512, nullptr);  // llama.cpp's AVX2 bits: AVX2's kernels
    }
  }
};

}  // namespace

const LevelTables* tables_for(Isa isa) {
  static const Tables t;
  switch (isa) {
    case Isa::ref: return &t.ref;
    case Isa::avx2: return t.has_avx2 ? &t.avx2 : nullptr;
    case Isa::avx512: return t.has_avx512 ? &t.avx512 : nullptr;
    default: return nullptr;
  }
}

}  // namespace qe::kernels
