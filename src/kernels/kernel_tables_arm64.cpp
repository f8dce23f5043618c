// arm64 builds carry ref and neon (armv8.2 dotprod + fp16) tables; neon's fill functions are compiled
// for armv8.2 and so only run on a CPU that has it.
#include "kernels/kernel_tables.h"

namespace qe::kernels {
namespace {

struct Tables {
  LevelTables ref, neon;
  bool has_neon = false;
  Tables() {
    kernels::ref::fill_table(ref.fast);
    kernels::ref::fill_x16(ref.fast);
    kernels::ref::fill_x16_float(ref.fast);
    kernels::ref::fill_convert(ref.fast);
    kernels::ref::fill_attention(ref.fast);
    finish_level(ref, Isa::ref, kernels::ref::fill_llamacpp);
    neon = ref;
    if ((has_neon = cpu_has_isa(cpu_features(), Isa::neon))) {
      kernels::neon::fill_table(neon.fast);
      kernels::neon::fill_kquant_tiles(neon.fast);
      kernels::neon::fill_x16(neon.fast);
      kernels::neon::fill_x16_float(neon.fast);
      kernels::neon::fill_convert(neon.fast);
      kernels::neon::fill_attention(neon.fast);
      finish_level(neon, Isa::neon, nullptr);  // llama.cpp's bits by the scalar reference
    }
  }
};

}  // namespace

const LevelTables* tables_for(Isa isa) {
  static const Tables t;
  switch (isa) {
    case Isa::ref: return &t.ref;
    case Isa::neon: return t.has_neon ? &t.neon : nullptr;
    default: return nullptr;
  }
}

}  // namespace qe::kernels
