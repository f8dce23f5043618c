// x86-64 builds carry ref, avx2 and avx512 tables; each level starts from the one below so an entry
// a level does not specialise still points at working code. A level's fill functions are compiled with
// that level's flags (the compiler may use its vector stores even there), so they only run on a CPU
// that has it.
#include "kernels/kernel_tables.h"

namespace qe::kernels {
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
      kernels::avx2::fill_x16_float(avx2.fast);
      kernels::avx2::fill_convert(avx2.fast);
      kernels::avx2::fill_attention(avx2.fast);
      finish_level(avx2, Isa::avx2, kernels::avx2::fill_llamacpp);
    }
    avx512 = avx2;
    if ((has_avx512 = cpu_has_isa(f, Isa::avx512))) {
      kernels::avx512::fill_table(avx512.fast);
      kernels::avx512::fill_quantize(avx512.fast);
      kernels::avx512::fill_x16(avx512.fast);
      if (f.gfni) kernels::avx512gfni::fill_x16_k(avx512.fast);
      kernels::avx512::fill_float_tiles(avx512.fast);
      kernels::avx512::fill_x16_float(avx512.fast, f.avx512bf16);
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
