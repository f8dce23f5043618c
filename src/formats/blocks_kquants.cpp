// k-quants.
#include <cstdio>
#include <cstdlib>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"

// PLACEHOLDER (lead skeleton, replaced by the real implementation before landing).
namespace qe {
namespace {
[[noreturn]] void unwritten(const char* f) { std::fprintf(stderr, "%s: not written yet\n", f); std::abort(); }
}  // namespace
void quantize_row_q2_K_ref(const float*, BlockQ2_K*, int64_t) { unwritten(__func__); }
void quantize_row_q2_K_weighted(const float*, BlockQ2_K*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_q2_K(const BlockQ2_K*, float*, int64_t) { unwritten(__func__); }
void quantize_row_q3_K_ref(const float*, BlockQ3_K*, int64_t) { unwritten(__func__); }
void quantize_row_q3_K_weighted(const float*, BlockQ3_K*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_q3_K(const BlockQ3_K*, float*, int64_t) { unwritten(__func__); }
void quantize_row_q4_K_ref(const float*, BlockQ4_K*, int64_t) { unwritten(__func__); }
void quantize_row_q4_K_weighted(const float*, BlockQ4_K*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_q4_K(const BlockQ4_K*, float*, int64_t) { unwritten(__func__); }
void quantize_row_q5_K_ref(const float*, BlockQ5_K*, int64_t) { unwritten(__func__); }
void quantize_row_q5_K_weighted(const float*, BlockQ5_K*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_q5_K(const BlockQ5_K*, float*, int64_t) { unwritten(__func__); }
void quantize_row_q6_K_ref(const float*, BlockQ6_K*, int64_t) { unwritten(__func__); }
void quantize_row_q6_K_weighted(const float*, BlockQ6_K*, int64_t, const float*) { unwritten(__func__); }
}  // namespace qe
