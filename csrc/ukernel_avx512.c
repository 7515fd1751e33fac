/*
 * AVX-512 micro-kernels: MR x 32 for float32 and MR x 16 for float64 with
 * MR from 12 down to 4, and 8 x 48 and 8 x 24 (three vectors per row).
 *
 * With 32 zmm registers a 12 x 2 tile keeps 24 accumulators, two B vectors
 * and a broadcast A value in registers. Each k step then loads 14 vectors
 * for 24 FMAs, where the 6 x 2 AVX2 tile loads 8 for 12. Intel Xeon cores
 * with two 512-bit FMA units run them at twice the AVX2 kernels' peak rate.
 * On Zen 4 a 512-bit FMA takes both 256-bit pipes, so the peak rate is that
 * of the AVX2 kernels. There the gain is in fewer loads and instructions per
 * FMA, and in taller tiles: the 10 rows of a 10-class output layer on C^T
 * fit in one.
 *
 * The body is shared with the AVX2 kernels (ukernel_body.h). gemm.c calls
 * these only when nnf_simd_level() reports NNF_SIMD_AVX512.
 */
#include "gemm.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#include "ukernel_body.h"

/* Store the first r lanes of v at dst, 0 < r < 16 (float32) or 8 (float64). */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void store_lanes16_f32(
    float *dst, __m512 v, int r)
{
    _mm512_mask_storeu_ps(dst, (__mmask16)((1u << r) - 1u), v);
}

static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void store_lanes8_f64(
    double *dst, __m512d v, int r)
{
    _mm512_mask_storeu_pd(dst, (__mmask8)((1u << r) - 1u), v);
}

static inline __attribute__((always_inline)) NNF_TARGET_AVX512 __m512 broadcast16_f32(
    const float *x)
{
    return _mm512_set1_ps(*x);
}

static inline __attribute__((always_inline)) NNF_TARGET_AVX512 __m512d broadcast8_f64(
    const double *x)
{
    return _mm512_set1_pd(*x);
}

NNF_DEFINE_UKR_BODY(NNF_TARGET_AVX512, ukr_avx512_body_f32, NNF_MR_AVX512_MAX,
                    NNF_NV_AVX512_MAX, float, 16, __m512, _mm512_loadu_ps, _mm512_store_ps,
                    _mm512_storeu_ps, broadcast16_f32, _mm512_set1_ps, _mm512_setzero_ps,
                    _mm512_mul_ps, _mm512_fmadd_ps, store_lanes16_f32)
NNF_DEFINE_UKR_BODY(NNF_TARGET_AVX512, ukr_avx512_body_f64, NNF_MR_AVX512_MAX,
                    NNF_NV_AVX512_MAX, double, 8, __m512d, _mm512_loadu_pd, _mm512_store_pd,
                    _mm512_storeu_pd, broadcast8_f64, _mm512_set1_pd, _mm512_setzero_pd,
                    _mm512_mul_pd, _mm512_fmadd_pd, store_lanes8_f64)

/* The exported kernels, one per dtype and tile shape MR x (NV vectors). */
#define NNF_DEFINE_AVX512_UKR(T, SUF, MR, NV)                                                \
    NNF_TARGET_AVX512 void nnf_ukr_avx512_##MR##x##NV##_##SUF(                             \
        nnf_int m_cur, nnf_int n_cur, nnf_int kc, const void *a, nnf_int rs_a, nnf_int cs_a, \
        const void *b, nnf_int rs_b, void *c, nnf_int rs_c, nnf_int cs_c, const void *alpha, \
        const void *beta)                                                                  \
    {                                                                                      \
        ukr_avx512_body_##SUF(MR, NV, m_cur, n_cur, kc, (const T *)a, rs_a, cs_a,          \
                              (const T *)b, rs_b, (T *)c, rs_c, cs_c, *(const T *)alpha,   \
                              *(const T *)beta);                                           \
    }

NNF_DEFINE_AVX512_UKR(float, f32, 12, 2)
NNF_DEFINE_AVX512_UKR(float, f32, 10, 2)
NNF_DEFINE_AVX512_UKR(float, f32, 8, 2)
NNF_DEFINE_AVX512_UKR(float, f32, 6, 2)
NNF_DEFINE_AVX512_UKR(float, f32, 4, 2)
NNF_DEFINE_AVX512_UKR(float, f32, 8, 3)
NNF_DEFINE_AVX512_UKR(double, f64, 12, 2)
NNF_DEFINE_AVX512_UKR(double, f64, 10, 2)
NNF_DEFINE_AVX512_UKR(double, f64, 8, 2)
NNF_DEFINE_AVX512_UKR(double, f64, 6, 2)
NNF_DEFINE_AVX512_UKR(double, f64, 4, 2)
NNF_DEFINE_AVX512_UKR(double, f64, 8, 3)

#endif /* NNF_X86_KERNELS */
