// Included by every source whose float results are a file format (the block quantizers and their scale
// searches): ggml's bytes assume every product and sum is rounded on its own, so a different order of
// operations or a fused multiply-add moves values that sit on a rounding boundary and changes the file.
// Clang contracts a*b + c written in one expression into an FMA on targets that have one; GCC's C++
// default is -ffp-contract=fast even in ISO mode (only ISO C turns it off), which fuses x * id + 8.5f
// on arm64 (and on x86 with -mfma). These pragmas turn contraction off for the rest of the including
// source file; include it after the other headers, never from a header.
#pragma once

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
