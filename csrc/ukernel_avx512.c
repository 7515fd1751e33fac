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
 * The body is shared with the AVX2 kernels (ukernel_body.h). Unlike those,
 * these kernels store a tile on C^T (a C with unit row stride) through
 * register transposes instead of a scalar loop. On one Intel Xeon core
 * float64 128 x 10 x 32 with A^T took 1.60 us with the scalar loop and
 * 1.33 us with the transposes. Float32 took 1.22 and 0.73 us.
 * gemm.c calls these only when nnf_simd_level() reports NNF_SIMD_AVX512.
 */
#include "gemm.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#include "lanes_avx512.h"
#include "ukernel_body.h"

/* Store the first r lanes of v at dst, 0 < r < 16 (float32) or 8 (float64). */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void store_lanes16_f32(
    float *dst, __m512 v, int r)
{
    _mm512_mask_storeu_ps(dst, lane_mask16(r), v);
}

static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void store_lanes8_f64(
    double *dst, __m512d v, int r)
{
    _mm512_mask_storeu_pd(dst, lane_mask8(r), v);
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

/* Transpose the 8 x 8 block whose row i is r[i], so that r[j] becomes
 * column j: pairs of rows into 2 x 2 blocks, then 128-bit lanes into 4 x 4
 * blocks, then into columns, 8 shuffles each. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void transpose8_f64(__m512d *r)
{
    __m512d t[8], u[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    /* u[h + s] has columns s and s + 4 of rows h to h + 3 in its even and
     * odd 128-bit lanes. */
    #pragma GCC unroll 8
    for (int h = 0; h < 8; h += 4) {
        u[h] = _mm512_shuffle_f64x2(t[h], t[h + 2], 0x88);
        u[h + 1] = _mm512_shuffle_f64x2(t[h + 1], t[h + 3], 0x88);
        u[h + 2] = _mm512_shuffle_f64x2(t[h], t[h + 2], 0xDD);
        u[h + 3] = _mm512_shuffle_f64x2(t[h + 1], t[h + 3], 0xDD);
    }
    #pragma GCC unroll 8
    for (int s = 0; s < 4; s++) {
        r[s] = _mm512_shuffle_f64x2(u[s], u[s + 4], 0x88);
        r[s + 4] = _mm512_shuffle_f64x2(u[s], u[s + 4], 0xDD);
    }
}

/* Transpose the 16 x 16 block whose row i is r[i], so that r[j] becomes
 * column j: the 4 x 4 transposes within each 128-bit lane of transpose8_f32
 * in transpose_avx2.h, then two rounds that gather the lanes, 16 shuffles
 * each. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void transpose16_f32(__m512 *r)
{
    __m512 t[16], u[16];
    #pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* Lane l of u[h + s] is column 4 * l + s of rows h to h + 3. */
    #pragma GCC unroll 16
    for (int h = 0; h < 16; h += 4) {
        u[h] = _mm512_shuffle_ps(t[h], t[h + 2], 0x44);
        u[h + 1] = _mm512_shuffle_ps(t[h], t[h + 2], 0xEE);
        u[h + 2] = _mm512_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        u[h + 3] = _mm512_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
    }
    /* t[s] takes lanes 0 and 2 of u[s] and u[s + 4], and t[s + 4] lanes 1
     * and 3. t[s + 8] and t[s + 12] do the same for u[s + 8] and u[s + 12]. */
    #pragma GCC unroll 4
    for (int s = 0; s < 4; s++) {
        t[s] = _mm512_shuffle_f32x4(u[s], u[s + 4], 0x88);
        t[s + 4] = _mm512_shuffle_f32x4(u[s], u[s + 4], 0xDD);
        t[s + 8] = _mm512_shuffle_f32x4(u[s + 8], u[s + 12], 0x88);
        t[s + 12] = _mm512_shuffle_f32x4(u[s + 8], u[s + 12], 0xDD);
    }
    #pragma GCC unroll 4
    for (int s = 0; s < 4; s++) {
        r[s] = _mm512_shuffle_f32x4(t[s], t[s + 8], 0x88);
        r[s + 8] = _mm512_shuffle_f32x4(t[s], t[s + 8], 0xDD);
        r[s + 4] = _mm512_shuffle_f32x4(t[s + 4], t[s + 12], 0x88);
        r[s + 12] = _mm512_shuffle_f32x4(t[s + 4], t[s + 12], 0xDD);
    }
}

/*
 * Store alpha * tile + beta * C for a tile on a C with unit row stride:
 * tile column j is a run of m_cur values at c + j * cs_c. That is the
 * layout of a product computed as C^T, such as the 10 x 16 float64 tiles
 * of a 128 x 10 weight gradient. Each VEC x VEC block of the tile, rows
 * past mr zero, is transposed in registers (TRANSPOSE) and stored VEC
 * values at a time.
 */
#define NNF_DEFINE_STORE_COLUMNS(NAME, T, VEC, VTYPE, MASK, LANE_MASK, SET1, ZERO, MUL, FMADD, \
                                 MASKZ_LOADU, MASK_STOREU, TRANSPOSE)                      \
    static inline __attribute__((always_inline)) NNF_TARGET_AVX512 int NAME(               \
        const int mr, const int nv, VTYPE acc[][NNF_NV_AVX512_MAX], nnf_int m_cur,         \
        nnf_int n_cur, T *c, nnf_int cs_c, T alpha, T beta)                                \
    {                                                                                      \
        const VTYPE valpha = SET1(alpha);                                                  \
        const VTYPE vbeta = SET1(beta);                                                    \
        _Pragma("GCC unroll 2") for (int i0 = 0; i0 < mr; i0 += VEC)                       \
        {                                                                                  \
            const nnf_int rows = m_cur - i0;                                               \
            if (rows <= 0) {                                                               \
                break;                                                                     \
            }                                                                              \
            const MASK mask = LANE_MASK(rows < VEC ? rows : VEC);                          \
            _Pragma("GCC unroll 3") for (int v = 0; v < nv; v++)                           \
            {                                                                              \
                VTYPE r[VEC];                                                              \
                _Pragma("GCC unroll 16") for (int i = 0; i < VEC; i++)                     \
                {                                                                          \
                    r[i] = i0 + i < mr ? acc[i0 + i][v] : ZERO();                          \
                }                                                                          \
                TRANSPOSE(r);                                                              \
                _Pragma("GCC unroll 16") for (int j = 0; j < VEC; j++)                     \
                {                                                                          \
                    if (v * VEC + j >= n_cur) {                                            \
                        break;                                                             \
                    }                                                                      \
                    T *dst = c + (v * VEC + j) * cs_c + i0;                                \
                    VTYPE t = MUL(valpha, r[j]);                                           \
                    if (beta != (T)0) {                                                    \
                        t = FMADD(vbeta, MASKZ_LOADU(mask, dst), t);                       \
                    }                                                                      \
                    MASK_STOREU(dst, mask, t);                                             \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        return 1;                                                                          \
    }

NNF_DEFINE_STORE_COLUMNS(store_columns16_f32, float, 16, __m512, __mmask16, lane_mask16,
                         _mm512_set1_ps, _mm512_setzero_ps, _mm512_mul_ps, _mm512_fmadd_ps,
                         _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps, transpose16_f32)
NNF_DEFINE_STORE_COLUMNS(store_columns8_f64, double, 8, __m512d, __mmask8, lane_mask8,
                         _mm512_set1_pd, _mm512_setzero_pd, _mm512_mul_pd, _mm512_fmadd_pd,
                         _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd, transpose8_f64)

NNF_DEFINE_UKR_BODY(NNF_TARGET_AVX512, ukr_avx512_body_f32, NNF_MR_AVX512_MAX,
                    NNF_NV_AVX512_MAX, float, 16, __m512, _mm512_loadu_ps, _mm512_store_ps,
                    _mm512_storeu_ps, broadcast16_f32, _mm512_set1_ps, _mm512_setzero_ps,
                    _mm512_mul_ps, _mm512_fmadd_ps, store_lanes16_f32,
                    store_columns16_f32)
NNF_DEFINE_UKR_BODY(NNF_TARGET_AVX512, ukr_avx512_body_f64, NNF_MR_AVX512_MAX,
                    NNF_NV_AVX512_MAX, double, 8, __m512d, _mm512_loadu_pd, _mm512_store_pd,
                    _mm512_storeu_pd, broadcast8_f64, _mm512_set1_pd, _mm512_setzero_pd,
                    _mm512_mul_pd, _mm512_fmadd_pd, store_lanes8_f64,
                    store_columns8_f64)

/* The exported kernels, one per dtype and tile shape MR x (NV vectors). */
#define NNF_DEFINE_AVX512_UKR(T, SUF, MR, NV)                                              \
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
