// Internal: where each level's tables come from. Each *_ISA.cpp fills its entries in its own namespace.
#pragma once

#include "kernels/kernel_table.h"

namespace qe::kernels {

// The tables of one level: its fast numerics, and llama.cpp's for a batch and for one token.
struct LevelTables {
  KernelTable fast;
  KernelTable llamacpp_batch;
  KernelTable llamacpp_single;
};

// The compiled tables of a level (x86: ref, avx2, avx512; arm64: ref, neon), nullptr when not in this
// build or when the CPU lacks it. Defined in kernel_tables_<arch>.cpp.
const LevelTables* tables_for(Isa isa);

// Fills the llama.cpp entries of a level (kernels/llamacpp_<isa>.cpp) over the level below's; the
// single-token table differs in its f16 paths.
using FillLlamacppFn = void (*)(KernelTable& t, bool single_token);

// Completes a level's tables after its fast entries are filled: runs fill_llamacpp (nullptr: the level
// keeps the llama.cpp kernels of the level below, already in t) on both llama.cpp tables, stamps them
// with the level and numerics, and gives them the fast table's exact ops (add, scale, weight
// conversion), which compute the same bits in both numerics. kernel_tables.cpp.
void finish_level(LevelTables& t, Isa isa, FillLlamacppFn fill_llamacpp);

namespace ref { void fill_table(KernelTable& t); void fill_x16(KernelTable& t); }
namespace avx2 { void fill_table(KernelTable& t); void fill_x16(KernelTable& t); }
// x16 f16 / bf16 kernels (matmul_x16_float_<isa>.cpp). AVX-512 takes vdpbf16ps for bf16 when bf16_dot
// (matmul_x16_float_avx512bf16.cpp); AVX2 and AVX-512 take the blocked GEMM when widen_once
// (x16_float_driver.inc).
namespace ref { void fill_x16_float(KernelTable& t); }
namespace avx2 {
void fill_x16_float(KernelTable& t, bool widen_once);
}
namespace avx512 {
void fill_x16_float(KernelTable& t, bool bf16_dot, bool gemv_prefetch, bool widen_once);
}
namespace neon { void fill_x16_float(KernelTable& t); }
// Whether the AVX-512 level's one-token GEMVs (x16 q4_0 q4_1 q8_0 q4_K q5_K q6_K f16 bf16), and its int8
// GEMMs of one 2..8-token slice, prefetch their weights in software as this CPU wants (kernel_tables_x86.cpp
// says why it depends on the CPU); the fill functions below take it as gemv_prefetch.
bool gemv_software_prefetch(const CpuFeatures& f);
// Whether the AVX-512 level computes bf16 weights with vdpbf16ps (AVX512_BF16) rather than f32 FMAs
// (kernel_tables_x86.cpp says why it depends on the CPU).
bool bf16_dot_pays(const CpuFeatures& f);
// Whether the AVX2 and AVX-512 levels' f16 / bf16 GEMMs widen each block of weights once for all their
// panels (the blocked product) rather than once per panel (kernel_tables_x86.cpp says why it depends on
// the CPU).
bool widen_once_pays(const CpuFeatures& f);
// The AVX-512 level's x16 kernels that depend on the CPU; avx512_x16_choices gives this CPU's.
struct Avx512X16Choices {
  bool gfni = false;           // q5_K's fifth bit by gf2p8affineqb (only where the CPU has GFNI)
  bool gemv_prefetch = false;  // gemv_software_prefetch
  bool bf16_dot = false;       // bf16_dot_pays
  bool widen_once = false;     // widen_once_pays
};
Avx512X16Choices avx512_x16_choices(const CpuFeatures& f);
// Every x16 entry of an AVX-512 table (q4_0 q4_1 q8_0, the k-quants, f16 / bf16) as `c` says; the tests
// fill copies of the level's table with other choices than this CPU's, so each variant runs wherever the
// CPU can run it. kernel_tables_x86.cpp.
void fill_avx512_x16(KernelTable& t, const Avx512X16Choices& c);
namespace avx512 {
void fill_table(KernelTable& t);
void fill_x16(KernelTable& t, bool gemv_prefetch);
// The k-quants, called by fill_x16 (matmul_x16_k_avx512.cpp).
void fill_x16_k(KernelTable& t, bool gemv_prefetch);
void fill_float_tiles(KernelTable& t);  // 512-bit f32/f16/bf16 tiles (matmul_float_avx512.cpp)
void fill_quantize(KernelTable& t);     // q8_0 / q8_1 activations 16 blocks at a time (quantize_avx512.cpp)
void fill_ops(KernelTable& t);          // silu_mul 16 floats at a time (ops_avx512.cpp)
}  // namespace avx512
// q5_K's x16 kernel with GFNI, over the AVX-512 level's when the CPU has GFNI (matmul_x16_k_avx512gfni.cpp).
namespace avx512gfni {
void fill_x16_k(KernelTable& t, bool gemv_prefetch);
}
namespace neon {
void fill_table(KernelTable& t);
void fill_x16(KernelTable& t);
void fill_kquant_tiles(KernelTable& t);  // k-quant and iq4_xs tiles (kernels_kquants_neon.cpp)
}  // namespace neon

// Flash-attention kernels (attention_<isa>.cpp).
namespace ref { void fill_attention(KernelTable& t); }
namespace avx2 { void fill_attention(KernelTable& t); }
namespace avx512 { void fill_attention(KernelTable& t); }
namespace neon { void fill_attention(KernelTable& t); }

// Weight conversion kernels (convert_<isa>.cpp), filled after each level's other entries.
namespace ref { void fill_convert(KernelTable& t); }
namespace avx2 { void fill_convert(KernelTable& t); }
namespace avx512 { void fill_convert(KernelTable& t); }
namespace neon { void fill_convert(KernelTable& t); }

// llama.cpp's numerics (llamacpp_<isa>.cpp): ref everywhere, AVX2 on x86 (AVX-512 keeps AVX2's).
namespace ref {
void fill_llamacpp(KernelTable& t, bool single_token);
// The reference rms_norm (kernels_ref.cpp): double sum of float squares, y = (x * scale) * w, which is
// llama.cpp's order as well.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);
}  // namespace ref
namespace avx2 { void fill_llamacpp(KernelTable& t, bool single_token); }

}  // namespace qe::kernels
