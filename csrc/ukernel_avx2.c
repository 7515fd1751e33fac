/*
 * AVX2+FMA micro-kernels: 6 x 16 for float32 and 6 x 8 for float64.
 *
 * Each tile row is two ymm registers, so a tile is 12 accumulators; with the
 * two B vectors and one broadcast A value that uses 15 of the 16 ymm
 * registers. Each k step does 2 aligned B loads, 6 broadcasts and 12 FMAs,
 * and 12 independent FMA chains cover the 4-cycle FMA latency on two pipes.
 *
 * The functions carry a target attribute instead of a global -mavx2, and
 * gemm.c only calls them when nnf_simd_level() reports AVX2 and FMA.
 * Full tiles with unit column stride are written straight from registers;
 * edge tiles and other C layouts go through a local tile and a scalar loop.
 */
#include "gemm.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#define NNF_TARGET_AVX2 __attribute__((target("avx2,fma")))

/* Write one tile row: C = alpha * acc + beta * C, without reading C when
 * beta is zero. */
static inline NNF_TARGET_AVX2 void store_row_f32(float *ci, __m256 acc0, __m256 acc1,
                                                 __m256 alpha, __m256 beta, int beta_zero)
{
    __m256 t0 = _mm256_mul_ps(alpha, acc0);
    __m256 t1 = _mm256_mul_ps(alpha, acc1);
    if (!beta_zero) {
        t0 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(ci), t0);
        t1 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(ci + 8), t1);
    }
    _mm256_storeu_ps(ci, t0);
    _mm256_storeu_ps(ci + 8, t1);
}

static inline NNF_TARGET_AVX2 void store_row_f64(double *ci, __m256d acc0, __m256d acc1,
                                                 __m256d alpha, __m256d beta, int beta_zero)
{
    __m256d t0 = _mm256_mul_pd(alpha, acc0);
    __m256d t1 = _mm256_mul_pd(alpha, acc1);
    if (!beta_zero) {
        t0 = _mm256_fmadd_pd(beta, _mm256_loadu_pd(ci), t0);
        t1 = _mm256_fmadd_pd(beta, _mm256_loadu_pd(ci + 4), t1);
    }
    _mm256_storeu_pd(ci, t0);
    _mm256_storeu_pd(ci + 4, t1);
}

/* Merge an edge tile (or a C with column stride other than 1) element by
 * element from a row-major tile of width nr. */
#define NNF_MERGE_TILE(T, tile, nr)                                                          \
    for (nnf_int i = 0; i < m_cur; i++) {                                                  \
        for (nnf_int j = 0; j < n_cur; j++) {                                              \
            T *cij = c + i * rs_c + j * cs_c;                                              \
            T t = alpha * (tile)[i * (nr) + j];                                            \
            *cij = beta == (T)0 ? t : t + beta * *cij;                                     \
        }                                                                                  \
    }

NNF_TARGET_AVX2 void nnf_ukr_avx2_f32(nnf_int m_cur, nnf_int n_cur, nnf_int kc,
                                      const void *ap_, const void *bp_, void *c_, nnf_int rs_c,
                                      nnf_int cs_c, const void *alpha_, const void *beta_)
{
    const float *ap = (const float *)ap_;
    const float *bp = (const float *)bp_;
    float *c = (float *)c_;
    const float alpha = *(const float *)alpha_;
    const float beta = *(const float *)beta_;
    const int full = m_cur == NNF_MR_AVX2_F32 && n_cur == NNF_NR_AVX2_F32 && cs_c == 1;

    if (full) {
        for (int i = 0; i < NNF_MR_AVX2_F32; i++) {
            _mm_prefetch((const char *)(c + i * rs_c), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * rs_c + 15), _MM_HINT_T0);
        }
    }

    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

#pragma GCC unroll 4
    for (nnf_int p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(bp);
        const __m256 b1 = _mm256_load_ps(bp + 8);
        __m256 a;
        a = _mm256_broadcast_ss(ap + 0);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(ap + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(ap + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(ap + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(ap + 4);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(ap + 5);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
        ap += NNF_MR_AVX2_F32;
        bp += NNF_NR_AVX2_F32;
    }

    if (full) {
        const __m256 valpha = _mm256_set1_ps(alpha);
        const __m256 vbeta = _mm256_set1_ps(beta);
        const int beta_zero = beta == 0.0f;
        store_row_f32(c + 0 * rs_c, c00, c01, valpha, vbeta, beta_zero);
        store_row_f32(c + 1 * rs_c, c10, c11, valpha, vbeta, beta_zero);
        store_row_f32(c + 2 * rs_c, c20, c21, valpha, vbeta, beta_zero);
        store_row_f32(c + 3 * rs_c, c30, c31, valpha, vbeta, beta_zero);
        store_row_f32(c + 4 * rs_c, c40, c41, valpha, vbeta, beta_zero);
        store_row_f32(c + 5 * rs_c, c50, c51, valpha, vbeta, beta_zero);
        return;
    }

    enum { NR = NNF_NR_AVX2_F32 };
    float tile[NNF_MR_AVX2_F32 * NR] __attribute__((aligned(32)));
    _mm256_store_ps(tile + 0 * NR, c00);
    _mm256_store_ps(tile + 0 * NR + 8, c01);
    _mm256_store_ps(tile + 1 * NR, c10);
    _mm256_store_ps(tile + 1 * NR + 8, c11);
    _mm256_store_ps(tile + 2 * NR, c20);
    _mm256_store_ps(tile + 2 * NR + 8, c21);
    _mm256_store_ps(tile + 3 * NR, c30);
    _mm256_store_ps(tile + 3 * NR + 8, c31);
    _mm256_store_ps(tile + 4 * NR, c40);
    _mm256_store_ps(tile + 4 * NR + 8, c41);
    _mm256_store_ps(tile + 5 * NR, c50);
    _mm256_store_ps(tile + 5 * NR + 8, c51);
    NNF_MERGE_TILE(float, tile, NR)
}

NNF_TARGET_AVX2 void nnf_ukr_avx2_f64(nnf_int m_cur, nnf_int n_cur, nnf_int kc,
                                      const void *ap_, const void *bp_, void *c_, nnf_int rs_c,
                                      nnf_int cs_c, const void *alpha_, const void *beta_)
{
    const double *ap = (const double *)ap_;
    const double *bp = (const double *)bp_;
    double *c = (double *)c_;
    const double alpha = *(const double *)alpha_;
    const double beta = *(const double *)beta_;
    const int full = m_cur == NNF_MR_AVX2_F64 && n_cur == NNF_NR_AVX2_F64 && cs_c == 1;

    if (full) {
        for (int i = 0; i < NNF_MR_AVX2_F64; i++) {
            _mm_prefetch((const char *)(c + i * rs_c), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * rs_c + 7), _MM_HINT_T0);
        }
    }

    __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd();
    __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd();
    __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd();
    __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd();
    __m256d c40 = _mm256_setzero_pd(), c41 = _mm256_setzero_pd();
    __m256d c50 = _mm256_setzero_pd(), c51 = _mm256_setzero_pd();

#pragma GCC unroll 4
    for (nnf_int p = 0; p < kc; p++) {
        const __m256d b0 = _mm256_load_pd(bp);
        const __m256d b1 = _mm256_load_pd(bp + 4);
        __m256d a;
        a = _mm256_broadcast_sd(ap + 0);
        c00 = _mm256_fmadd_pd(a, b0, c00);
        c01 = _mm256_fmadd_pd(a, b1, c01);
        a = _mm256_broadcast_sd(ap + 1);
        c10 = _mm256_fmadd_pd(a, b0, c10);
        c11 = _mm256_fmadd_pd(a, b1, c11);
        a = _mm256_broadcast_sd(ap + 2);
        c20 = _mm256_fmadd_pd(a, b0, c20);
        c21 = _mm256_fmadd_pd(a, b1, c21);
        a = _mm256_broadcast_sd(ap + 3);
        c30 = _mm256_fmadd_pd(a, b0, c30);
        c31 = _mm256_fmadd_pd(a, b1, c31);
        a = _mm256_broadcast_sd(ap + 4);
        c40 = _mm256_fmadd_pd(a, b0, c40);
        c41 = _mm256_fmadd_pd(a, b1, c41);
        a = _mm256_broadcast_sd(ap + 5);
        c50 = _mm256_fmadd_pd(a, b0, c50);
        c51 = _mm256_fmadd_pd(a, b1, c51);
        ap += NNF_MR_AVX2_F64;
        bp += NNF_NR_AVX2_F64;
    }

    if (full) {
        const __m256d valpha = _mm256_set1_pd(alpha);
        const __m256d vbeta = _mm256_set1_pd(beta);
        const int beta_zero = beta == 0.0;
        store_row_f64(c + 0 * rs_c, c00, c01, valpha, vbeta, beta_zero);
        store_row_f64(c + 1 * rs_c, c10, c11, valpha, vbeta, beta_zero);
        store_row_f64(c + 2 * rs_c, c20, c21, valpha, vbeta, beta_zero);
        store_row_f64(c + 3 * rs_c, c30, c31, valpha, vbeta, beta_zero);
        store_row_f64(c + 4 * rs_c, c40, c41, valpha, vbeta, beta_zero);
        store_row_f64(c + 5 * rs_c, c50, c51, valpha, vbeta, beta_zero);
        return;
    }

    enum { NR = NNF_NR_AVX2_F64 };
    double tile[NNF_MR_AVX2_F64 * NR] __attribute__((aligned(32)));
    _mm256_store_pd(tile + 0 * NR, c00);
    _mm256_store_pd(tile + 0 * NR + 4, c01);
    _mm256_store_pd(tile + 1 * NR, c10);
    _mm256_store_pd(tile + 1 * NR + 4, c11);
    _mm256_store_pd(tile + 2 * NR, c20);
    _mm256_store_pd(tile + 2 * NR + 4, c21);
    _mm256_store_pd(tile + 3 * NR, c30);
    _mm256_store_pd(tile + 3 * NR + 4, c31);
    _mm256_store_pd(tile + 4 * NR, c40);
    _mm256_store_pd(tile + 4 * NR + 4, c41);
    _mm256_store_pd(tile + 5 * NR, c50);
    _mm256_store_pd(tile + 5 * NR + 4, c51);
    NNF_MERGE_TILE(double, tile, NR)
}

#endif /* NNF_X86_KERNELS */
