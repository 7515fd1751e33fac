/*
 * Register transposes shared by the AVX2 packing routines. Include only
 * inside #ifdef NNF_X86_KERNELS, after <immintrin.h>.
 */
#ifndef NNFAST_TRANSPOSE_AVX2_H
#define NNFAST_TRANSPOSE_AVX2_H

#include "gemm.h"

/* Transpose the 8 x 8 block whose row i is r[i], so that r[j] becomes
 * column j. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void transpose8_f32(__m256 *r)
{
    __m256 t[8], u[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* The low half of u[h] is column h of rows 0-3, its high half column
     * h + 4. u[h + 4] is the same for rows 4-7. */
    #pragma GCC unroll 8
    for (int h = 0; h < 8; h += 4) {
        u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
        u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
        u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
    }
    #pragma GCC unroll 8
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
        r[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
    }
}

/* Transpose the 4 x 4 block whose row i is r[i], so that r[j] becomes
 * column j. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void transpose4_f64(__m256d *r)
{
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]);
    __m256d t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]);
    __m256d t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

#endif
