// Weight-conversion kernels, AVX2 level (AVX2 + FMA + F16C): F16C for the f16 rows, 256-bit integer
// packing for the quantizers. The kernels and their exactness argument live in x86_convert.inc.
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {

#include "kernels/x86_simd_common.inc"
#include "kernels/x86_convert.inc"

}  // namespace qe::kernels::avx2
