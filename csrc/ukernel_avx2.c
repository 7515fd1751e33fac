/*
 * AVX2+FMA micro-kernels: MR x 16 for float32 and MR x 8 for float64 with
 * MR = 6, 5 or 4, and 4 x 12 for float64.
 *
 * Each tile row is two (or three) ymm registers. At 6 x 2 a tile is 12
 * accumulators, and with the two B vectors and one broadcast A value that
 * uses 15 of the 16 ymm registers. Each k step does NV B loads, MR
 * broadcasts and MR * NV FMAs. At least 8 independent FMA chains cover the
 * 4-cycle FMA latency on two pipes. The other shapes exist so that a short
 * side of C (10 output classes, a batch of 32) fills whole tiles, and gemm.c
 * picks the shape per product.
 *
 * The functions carry a target attribute instead of a global -mavx2, and
 * gemm.c only calls them when nnf_simd_level() reports AVX2 and FMA.
 * Tiles of a C with unit column stride are written straight from registers
 * when they are full, and also at the edges of C when beta is 0. Other edge
 * tiles and C layouts go through a local tile and a scalar loop.
 */
#include "gemm.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#include "lanes_avx2.h"
#include "ukernel_body.h"

NNF_DEFINE_UKR_BODY(NNF_TARGET_AVX2, ukr_avx2_body_f32, NNF_MR_AVX2_MAX, NNF_NV_AVX2_MAX, float,
                    8, __m256, _mm256_loadu_ps, _mm256_store_ps, _mm256_storeu_ps,
                    _mm256_broadcast_ss, _mm256_set1_ps, _mm256_setzero_ps, _mm256_mul_ps,
                    _mm256_fmadd_ps, store_lanes_f32, NNF_NO_COLUMN_STORE)
NNF_DEFINE_UKR_BODY(NNF_TARGET_AVX2, ukr_avx2_body_f64, NNF_MR_AVX2_MAX, NNF_NV_AVX2_MAX, double,
                    4, __m256d, _mm256_loadu_pd, _mm256_store_pd, _mm256_storeu_pd,
                    _mm256_broadcast_sd, _mm256_set1_pd, _mm256_setzero_pd, _mm256_mul_pd,
                    _mm256_fmadd_pd, store_lanes_f64, NNF_NO_COLUMN_STORE)

/* The exported kernels, one per dtype and tile shape MR x (NV vectors). */
#define NNF_DEFINE_AVX2_UKR(T, SUF, MR, NV)                                                  \
    NNF_TARGET_AVX2 void nnf_ukr_avx2_##MR##x##NV##_##SUF(                                 \
        nnf_int m_cur, nnf_int n_cur, nnf_int kc, const void *a, nnf_int rs_a, nnf_int cs_a, \
        const void *b, nnf_int rs_b, void *c, nnf_int rs_c, nnf_int cs_c, const void *alpha, \
        const void *beta)                                                                  \
    {                                                                                      \
        ukr_avx2_body_##SUF(MR, NV, m_cur, n_cur, kc, (const T *)a, rs_a, cs_a,            \
                            (const T *)b, rs_b, (T *)c, rs_c, cs_c, *(const T *)alpha,     \
                            *(const T *)beta);                                             \
    }

NNF_DEFINE_AVX2_UKR(float, f32, 6, 2)
NNF_DEFINE_AVX2_UKR(float, f32, 5, 2)
NNF_DEFINE_AVX2_UKR(float, f32, 4, 2)
NNF_DEFINE_AVX2_UKR(double, f64, 6, 2)
NNF_DEFINE_AVX2_UKR(double, f64, 5, 2)
NNF_DEFINE_AVX2_UKR(double, f64, 4, 2)
NNF_DEFINE_AVX2_UKR(double, f64, 4, 3)

#endif /* NNF_X86_KERNELS */
