/*
 * Partial vectors in the AVX2 kernels: lane masks for masked loads, and
 * stores of the first lanes of a vector. Include only inside
 * #ifdef NNF_X86_KERNELS, after <immintrin.h>.
 */
#ifndef NNFAST_LANES_AVX2_H
#define NNFAST_LANES_AVX2_H

#include "gemm.h"

/* Mask of the first r lanes of an 8 x 32-bit vector, 0 <= r <= 8. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 __m256i lane_mask32(nnf_int r)
{
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), index);
}

/* Mask of the first r lanes of a 4 x 64-bit vector, 0 <= r <= 4. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 __m256i lane_mask64(nnf_int r)
{
    const __m256i index = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)r), index);
}

/* Store the first r lanes of v at dst, 0 < r < 8, with 128-, 64- and 32-bit
 * stores. AVX2's masked stores were no faster than scalar ones on Zen 4. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void store_lanes_f32(float *dst,
                                                                                  __m256 v,
                                                                                  int r)
{
    __m128 part = _mm256_castps256_ps128(v);
    if (r >= 4) {
        _mm_storeu_ps(dst, part);
        dst += 4;
        r -= 4;
        part = _mm256_extractf128_ps(v, 1);
    }
    if (r >= 2) {
        _mm_storel_pi((__m64 *)dst, part);
        dst += 2;
        r -= 2;
        part = _mm_movehl_ps(part, part);
    }
    if (r > 0) {
        _mm_store_ss(dst, part);
    }
}

/* Store the first r lanes of v at dst, 0 < r < 4. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void store_lanes_f64(double *dst,
                                                                                  __m256d v,
                                                                                  int r)
{
    __m128d part = _mm256_castpd256_pd128(v);
    if (r >= 2) {
        _mm_storeu_pd(dst, part);
        dst += 2;
        r -= 2;
        part = _mm256_extractf128_pd(v, 1);
    }
    if (r > 0) {
        _mm_store_sd(dst, part);
    }
}

#endif
