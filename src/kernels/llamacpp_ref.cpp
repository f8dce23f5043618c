// llama.cpp's numerics, scalar reference (llamacpp_scalar.inc): the definition the AVX2 level is tested
// against, and the level every other CPU uses.
#include <cmath>
#include <cstring>
#include <memory>

#include "formats/blocks.h"
#include "formats/kquant_layout.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::ref {
namespace {

const uint8_t* bytes(const void* p) {
  return static_cast<const uint8_t*>(p);
}

#include "kernels/llamacpp_scalar.inc"

}  // namespace

void fill_llamacpp(KernelTable& t, bool single_token) {
  fill_scalar(t, single_token);
  t.rms_norm = rms_norm;  // kernels_ref.cpp's order is llama.cpp's; later levels keep it
}

}  // namespace qe::kernels::ref
