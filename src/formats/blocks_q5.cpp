// q5_0 / q5_1.
#include <cstdio>
#include <cstdlib>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"

// PLACEHOLDER (lead skeleton, replaced by the real implementation before landing).
namespace qe {
namespace {
[[noreturn]] void unwritten(const char* f) { std::fprintf(stderr, "%s: not written yet\n", f); std::abort(); }
}  // namespace
void quantize_row_q5_0_ref(const float*, BlockQ5_0*, int64_t) { unwritten(__func__); }
void quantize_row_q5_0_weighted(const float*, BlockQ5_0*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_q5_0(const BlockQ5_0*, float*, int64_t) { unwritten(__func__); }
void quantize_row_q5_1_ref(const float*, BlockQ5_1*, int64_t) { unwritten(__func__); }
void quantize_row_q5_1_weighted(const float*, BlockQ5_1*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_q5_1(const BlockQ5_1*, float*, int64_t) { unwritten(__func__); }
}  // namespace qe
