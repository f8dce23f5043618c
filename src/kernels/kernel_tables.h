// Internal: where each ISA's table comes from. Each *_ISA.cpp fills its table in its own namespace.
#pragma once

#include "kernels/kernel_table.h"

namespace qe::kernels {

// The compiled table of a level (x86: ref, avx2, avx512; arm64: ref, neon), nullptr when not in this
// build or when the CPU lacks it. Defined in kernel_tables_<arch>.cpp.
const KernelTable* table_for(Isa isa);

namespace ref { void fill_table(KernelTable& t); void fill_x16(KernelTable& t); }
namespace avx2 { void fill_table(KernelTable& t); void fill_x16(KernelTable& t); }
namespace avx512 {
void fill_table(KernelTable& t);
void fill_x16(KernelTable& t);
void fill_float_tiles(KernelTable& t);  // 512-bit f32/f16/bf16 tiles (matmul_float_avx512.cpp)
}  // namespace avx512
namespace neon { void fill_table(KernelTable& t); void fill_x16(KernelTable& t); }

// Weight conversion kernels (convert_<isa>.cpp), filled after each level's other entries.
namespace ref { void fill_convert(KernelTable& t); }
namespace avx2 { void fill_convert(KernelTable& t); }
namespace avx512 { void fill_convert(KernelTable& t); }
namespace neon { void fill_convert(KernelTable& t); }

// llama.cpp's numerics (llamacpp_<isa>.cpp): ref everywhere, AVX2 on x86 (AVX-512 keeps AVX2's).
namespace ref { void fill_llamacpp(KernelTable& t); }
namespace avx2 { void fill_llamacpp(KernelTable& t); }

}  // namespace qe::kernels
