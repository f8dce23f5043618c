// Copies of the AVX-512 level's kernel table with other CPU-dependent x16 choices than this CPU's
// (kernels/kernel_tables.h: Avx512X16Choices), so the tests run every variant wherever the CPU can.
#pragma once

#include "kernels/cpu_features.h"
#include "kernels/kernel_table.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels {

#if defined(__x86_64__)
// The level's table with this CPU's choices changed by `change(Avx512X16Choices&)`, built once per call
// site (each lambda is a type of its own); nullptr without AVX-512.
template <class Change>
const KernelTable* avx512_x16_variant(Change change) {
  const KernelTable* k = kernel_table(Isa::avx512);
  if (!k) return nullptr;
  static const KernelTable t = [&] {
    KernelTable c = *k;
    Avx512X16Choices choices = avx512_x16_choices(cpu_features());
    change(choices);
    fill_avx512_x16(c, choices);
    return c;
  }();
  return &t;
}
#endif

}  // namespace qe::kernels
