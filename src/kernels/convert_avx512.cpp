// Weight-conversion kernels, AVX-512 level: the AVX2 code (x86_convert.inc) compiled with this level's
// flags, as the x86 tiles share theirs. Not run on the development box (no AVX-512); tests skip it there.
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx512 {

#include "kernels/x86_simd_common.inc"
#include "kernels/x86_convert.inc"

}  // namespace qe::kernels::avx512
