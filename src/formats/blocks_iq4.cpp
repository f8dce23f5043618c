// iq4_nl / iq4_xs.
#include <cstdio>
#include <cstdlib>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"

// PLACEHOLDER (lead skeleton, replaced by the real implementation before landing).
namespace qe {
namespace {
[[noreturn]] void unwritten(const char* f) { std::fprintf(stderr, "%s: not written yet\n", f); std::abort(); }
}  // namespace
void quantize_row_iq4_nl_ref(const float*, BlockIQ4_NL*, int64_t) { unwritten(__func__); }
void quantize_row_iq4_nl_weighted(const float*, BlockIQ4_NL*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_iq4_nl(const BlockIQ4_NL*, float*, int64_t) { unwritten(__func__); }
void quantize_row_iq4_xs_ref(const float*, BlockIQ4_XS*, int64_t) { unwritten(__func__); }
void quantize_row_iq4_xs_weighted(const float*, BlockIQ4_XS*, int64_t, const float*) { unwritten(__func__); }
void dequantize_row_iq4_xs(const BlockIQ4_XS*, float*, int64_t) { unwritten(__func__); }
}  // namespace qe
