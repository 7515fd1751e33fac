/*
 * Lane masks of the AVX-512 kernels, shared by the micro-kernels and the
 * dot kernels. Include only inside #ifdef NNF_X86_KERNELS, after
 * <immintrin.h>.
 */
#ifndef NNFAST_LANES_AVX512_H
#define NNFAST_LANES_AVX512_H

#include "gemm.h"

/* Mask of the first r lanes of a 16 x 32-bit vector, 0 <= r <= 16. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 __mmask16 lane_mask16(nnf_int r)
{
    return (__mmask16)((1u << r) - 1u);
}

/* Mask of the first r lanes of an 8 x 64-bit vector, 0 <= r <= 8. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 __mmask8 lane_mask8(nnf_int r)
{
    return (__mmask8)((1u << r) - 1u);
}

#endif
