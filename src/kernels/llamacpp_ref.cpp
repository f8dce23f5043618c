// llama.cpp's numerics, scalar reference (llamacpp_scalar.inc): the definition the AVX2 level is tested
// against, and the level every other CPU uses.
#include <cmath>
#include <cstring>
#include <memory>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::ref {
namespace {

const uint8_t* bytes(const void* p) {
  return static_cast<const uint8_t*>(p);
}

#include "kernels/llamacpp_scalar.inc"

}  // namespace

void fill_llamacpp(KernelTable& t) {
  fill_scalar(t.llamacpp);
  t.llamacpp.rms_norm = t.rms_norm;  // this level's, filled before; later levels copy this table
}

}  // namespace qe::kernels::ref
