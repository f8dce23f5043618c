// x86-64 builds carry ref, avx2 and avx512 tables; each level starts from the one below so an entry
// a level does not specialise still points at working code. A level's fill_table is compiled with that
// level's flags (the compiler may use its vector stores even there), so it only runs on a CPU that has it.
#include "kernels/kernel_tables.h"

namespace qe::kernels {
namespace {

struct Tables {
  KernelTable ref, avx2, avx512;
  bool has_avx2 = false, has_avx512 = false;
  Tables() {
    const CpuFeatures& f = cpu_features();
    kernels::ref::fill_table(ref);
    kernels::ref::fill_x16(ref);
    kernels::ref::fill_convert(ref);
    kernels::ref::fill_llamacpp(ref);
    avx2 = ref;
    if ((has_avx2 = cpu_has_isa(f, Isa::avx2))) {
      kernels::avx2::fill_table(avx2);
      kernels::avx2::fill_x16(avx2);
      kernels::avx2::fill_convert(avx2);
      kernels::avx2::fill_llamacpp(avx2);
    }
    avx512 = avx2;
    if ((has_avx512 = cpu_has_isa(f, Isa::avx512))) {
      kernels::avx512::fill_table(avx512);
      kernels::avx512::fill_x16(avx512);
      kernels::avx512::fill_float_tiles(avx512);
      kernels::avx512::fill_convert(avx512);
    }
  }
};

}  // namespace

const KernelTable* table_for(Isa isa) {
  static const Tables t;
  switch (isa) {
    case Isa::ref: return &t.ref;
    case Isa::avx2: return t.has_avx2 ? &t.avx2 : nullptr;
    case Isa::avx512: return t.has_avx512 ? &t.avx512 : nullptr;
    default: return nullptr;
  }
}

}  // namespace qe::kernels
