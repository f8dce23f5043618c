// arm64 builds carry ref and neon (armv8.2 dotprod + fp16) tables; neon's fill_table is compiled for
// armv8.2 and so only runs on a CPU that has it.
#include "kernels/kernel_tables.h"

namespace qe::kernels {
namespace {

struct Tables {
  KernelTable ref, neon;
  bool has_neon = false;
  Tables() {
    kernels::ref::fill_table(ref);
    kernels::ref::fill_x16(ref);
    kernels::ref::fill_convert(ref);
    kernels::ref::fill_llamacpp(ref);
    neon = ref;
    if ((has_neon = cpu_has_isa(cpu_features(), Isa::neon))) {
      kernels::neon::fill_table(neon);
      kernels::neon::fill_x16(neon);
      kernels::neon::fill_convert(neon);
    }
  }
};

}  // namespace

const KernelTable* table_for(Isa isa) {
  static const Tables t;
  switch (isa) {
    case Isa::ref: return &t.ref;
    case Isa::neon: return t.has_neon ? &t.neon : nullptr;
    default: return nullptr;
  }
}

}  // namespace qe::kernels
