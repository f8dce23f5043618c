// Importance-weighted quantizers: what llama-quantize writes for q4_0 / q4_1 when it is given an imatrix
// (ggml_quantize_chunk with a non-null imatrix runs ggml-quants.c's quantize_row_q4_{0,1}_impl). The
// bytes are the contract, as for the reference quantizers in blocks.h: they are byte-identical to ggml's
// (witness: tests/python/test_quant_imatrix.py, against llama-cpp-python's libggml-base).
//
// quant_weights holds one importance per column (n floats, the imatrix row: mean squared activation of
// each input channel); nullptr gives exactly the plain reference quantizer's bytes, as in ggml. q8_0 has
// no weighted variant: ggml ignores the imatrix for it.
#pragma once

#include <cstdint>

#include "formats/blocks.h"

namespace qe {

// x is one WHOLE row of n values (n a multiple of 32, checked): the weighting mixes in the row's mean
// square, so quantizing a row in pieces gives different bytes than quantizing it at once. Finite input
// whose squares sum to a finite float gives finite d (and m).
//
// q4_0: per block, the scale minimising sum(w * (x - d * (q - 8))^2) over a small search of candidate
// scales. An all-zero block (|x| < 1e-15) is written as d = 0 with every code 0 (the plain quantizer
// writes codes 8); both decode to zeros.
void quantize_row_q4_0_weighted(const float* x, BlockQ4_0* y, int64_t n, const float* quant_weights);

// q4_1: per block, a weighted least-squares fit of (d, m) over a search of candidate scales. Unlike the
// plain quantizer, m is never above 0 (ggml clamps the block minimum to 0 first), so a block of only
// positive values spends its codes on [0, max].
void quantize_row_q4_1_weighted(const float* x, BlockQ4_1* y, int64_t n, const float* quant_weights);

// The other types llama-quantize feeds an imatrix to, each ggml-quants.c's quantize_<type> for one row
// (quantize_row_<type>_impl, or the iq4 search with the importances): byte-identical to
// ggml_quantize_chunk with the same imatrix row. nullptr importances give the *_ref bytes of blocks.h.
void quantize_row_q5_0_weighted(const float* x, BlockQ5_0* y, int64_t n, const float* quant_weights);
void quantize_row_q5_1_weighted(const float* x, BlockQ5_1* y, int64_t n, const float* quant_weights);
void quantize_row_q2_K_weighted(const float* x, BlockQ2_K* y, int64_t n, const float* quant_weights);
void quantize_row_q3_K_weighted(const float* x, BlockQ3_K* y, int64_t n, const float* quant_weights);
void quantize_row_q4_K_weighted(const float* x, BlockQ4_K* y, int64_t n, const float* quant_weights);
void quantize_row_q5_K_weighted(const float* x, BlockQ5_K* y, int64_t n, const float* quant_weights);
void quantize_row_q6_K_weighted(const float* x, BlockQ6_K* y, int64_t n, const float* quant_weights);
void quantize_row_iq4_nl_weighted(const float* x, BlockIQ4_NL* y, int64_t n, const float* quant_weights);
void quantize_row_iq4_xs_weighted(const float* x, BlockIQ4_XS* y, int64_t n, const float* quant_weights);

}  // namespace qe
