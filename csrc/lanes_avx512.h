/*
 * Lane masks and lane sums of the AVX-512 kernels, shared by the
 * micro-kernels, the dot kernels and the mixed kernels. The lane sums add
 * the lanes of each vector in the same order whatever its place in the
 * array, so a result does not depend on which tile computed it. Include
 * only inside #ifdef NNF_X86_KERNELS, after <immintrin.h>.
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

/* Sum each of v[0..15] across its lanes, so that lane i of the result is
 * v[i]'s sum. Each round halves the vectors: lanes two apart within each
 * 128-bit quarter, then neighbours, then the quarters two at a time. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 __m512 lane_sums16_f32(
    const __m512 *v)
{
    __m512 s[8], q[4], h[2];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        s[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    }
    /* Quarter l of q[i] has the sums over quarter l of v[4i..4i+3]. */
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m512d x = _mm512_castps_pd(s[2 * i]);
        const __m512d y = _mm512_castps_pd(s[2 * i + 1]);
        q[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    #pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(q[2 * i], q[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(q[2 * i], q[2 * i + 1], 0xDD));
    }
    return _mm512_add_ps(_mm512_shuffle_f32x4(h[0], h[1], 0x88),
                         _mm512_shuffle_f32x4(h[0], h[1], 0xDD));
}

/* Sum each of v[0..7] across its lanes, so that lane i of the result is
 * v[i]'s sum. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 __m512d lane_sums8_f64(
    const __m512d *v)
{
    __m512d s[4], h[2];
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        s[i] = _mm512_add_pd(_mm512_unpacklo_pd(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_pd(v[2 * i], v[2 * i + 1]));
    }
    #pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        h[i] = _mm512_add_pd(_mm512_shuffle_f64x2(s[2 * i], s[2 * i + 1], 0x88),
                             _mm512_shuffle_f64x2(s[2 * i], s[2 * i + 1], 0xDD));
    }
    return _mm512_add_pd(_mm512_shuffle_f64x2(h[0], h[1], 0x88),
                         _mm512_shuffle_f64x2(h[0], h[1], 0xDD));
}

#endif
