// The scale searches ggml-quants.c shares between its quantizers (make_qx_quants, make_qkx3_quants, ...),
// followed operation by operation in float: the bytes of every block type that calls them depend on the
// exact order of operations. Internal to src/formats.
#pragma once

#include <bit>
#include <cstdint>

namespace qe::quant {

// ggml-quants.c's GROUP_MAX_EPS: a group whose largest |x| is below this is treated as all zero.
inline constexpr float kGroupMaxEps = 1e-15f;

// ggml's nearest_int: adding 1.5 * 2^23 leaves the integer part in the low mantissa bits, rounded to
// nearest even by the addition itself. Valid for |v| <= 2^22 - 1 (ggml asserts it in debug builds); every
// caller passes a value within a few units of the code range.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.0f;
  return (std::bit_cast<int32_t>(shifted) & 0x007fffff) - 0x00400000;
}

// Symmetric codes L[i] in [0, 2 nmax) with x ~ scale * (L[i] - nmax); returns the scale
// (make_qx_quants; the details beside its definition). qw: n importances, or nullptr for rmse_type's
// default weight.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);

// Asymmetric codes L[i] in [0, nmax] with x ~ scale * L[i] - *neg_min (make_qkx3_quants; details beside
// its definition). weights: n importances, or nullptr for x^2. Laux: n bytes of scratch.
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// ggml's make_qkx2_quants, the search q2_K, q4_K and q5_K run without an imatrix. It is make_qkx3_quants
// with weights required: the two differ only in the degenerate-block test (max == min there, max <= min
// here), and since min is clamped to at most 0 while max >= x[0] >= min, max < min cannot happen (a NaN
// fails both tests alike).
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                              float* neg_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
  return make_qkx3_quants(n, nmax, x, weights, L, neg_min, Laux, rmin, rdelta, nstep, use_mad);
}

// Symmetric codes L[i] in [0, 2 nmax) with x ~ scale * (L[i] - nmax), weighted by x^2; with do_rmse the
// codes are then refined one at a time (ggml's make_q3_quants, q3_K without an imatrix).
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);

// Codes L[i] in [0, nmax] with x ~ scale * L[i] for x >= 0, weighted by quant_weights (n values, required):
// how the weighted q2_K / q4_K / q5_K quantize their group scales and mins (ggml's make_qp_quants). A
// negative x gives a negative code, stored modulo 256 as ggml's uint8_t does.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

// The mean square of a row (sum of x^2 in float, divided by n): the sigma2 of ggml's weighted quantizers.
float row_sigma2(const float* x, int64_t n);

}  // namespace qe::quant
