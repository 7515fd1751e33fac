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

/* Store alpha * tile + beta * C for an edge tile or a C whose columns are
 * not contiguous, reading C only when beta is nonzero. The loop runs along
 * whichever C axis is contiguous. */
#define NNF_MERGE_TILE(T, tile, nr)                                                          \
    if (rs_c == 1 && cs_c != 1) {                                                          \
        for (nnf_int j = 0; j < n_cur; j++) {                                              \
            for (nnf_int i = 0; i < m_cur; i++) {                                          \
                T *cij = c + i + j * cs_c;                                                 \
                T t = alpha * (tile)[i * (nr) + j];                                        \
                *cij = beta == (T)0 ? t : t + beta * *cij;                                 \
            }                                                                              \
        }                                                                                  \
    } else {                                                                               \
        for (nnf_int i = 0; i < m_cur; i++) {                                              \
            for (nnf_int j = 0; j < n_cur; j++) {                                          \
                T *cij = c + i * rs_c + j * cs_c;                                          \
                T t = alpha * (tile)[i * (nr) + j];                                        \
                *cij = beta == (T)0 ? t : t + beta * *cij;                                 \
            }                                                                              \
        }                                                                                  \
    }

/*
 * One kernel body per dtype. The tile height mr and the vectors per tile
 * row nv (NR = nv * VEC) are compile-time constants at each instantiation
 * below. After full unrolling GCC and Clang keep the acc array in registers
 * (checked in the generated assembly: no stack accesses in the k loops).
 * VEC is the lanes per ymm register.
 */
#define NNF_DEFINE_AVX2_BODY(T, SUF, VEC, VTYPE, LOADU, STORE, STOREU, BROADCAST, SET1, ZERO,  \
                             MUL, FMADD, STORE_LANES)                                      \
    static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void ukr_avx2_body_##SUF( \
        const int mr, const int nv, nnf_int m_cur, nnf_int n_cur, nnf_int kc, const T *ap,  \
        nnf_int rs_a, nnf_int cs_a, const T *bp, nnf_int rs_b, T *c, nnf_int rs_c,         \
        nnf_int cs_c, T alpha, T beta)                                                     \
    {                                                                                      \
        const int nr = nv * VEC;                                                           \
        const int full = m_cur == mr && n_cur == nr && cs_c == 1;                          \
        VTYPE acc[NNF_MR_AVX2_MAX][NNF_NV_AVX2_MAX];                                       \
        VTYPE b[NNF_NV_AVX2_MAX];                                                          \
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                               \
        {                                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            {                                                                              \
                acc[i][v] = ZERO();                                                        \
            }                                                                              \
        }                                                                                  \
        if (full) {                                                                        \
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                           \
            {                                                                              \
                _mm_prefetch((const char *)(c + i * rs_c), _MM_HINT_T0);                   \
                _mm_prefetch((const char *)(c + i * rs_c + nr - 1), _MM_HINT_T0);          \
            }                                                                              \
        }                                                                                  \
                                                                                           \
        if (rs_a == 1 && cs_a == mr) {                                                     \
            /* Packed A: the MR values of each k step are adjacent. */                     \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                       \
                {                                                                          \
                    b[v] = LOADU(bp + v * VEC);                                            \
                }                                                                          \
                _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                       \
                {                                                                          \
                    const VTYPE a = BROADCAST(ap + i);                                     \
                    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                   \
                    {                                                                      \
                        acc[i][v] = FMADD(a, b[v], acc[i][v]);                             \
                    }                                                                      \
                }                                                                          \
                ap += mr;                                                                  \
                bp += rs_b;                                                                \
            }                                                                              \
        } else {                                                                           \
            /* A read in place: one broadcast per row, from any strides. */                \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                       \
                {                                                                          \
                    b[v] = LOADU(bp + v * VEC);                                            \
                }                                                                          \
                _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                       \
                {                                                                          \
                    const VTYPE a = BROADCAST(ap + i * rs_a);                              \
                    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                   \
                    {                                                                      \
                        acc[i][v] = FMADD(a, b[v], acc[i][v]);                             \
                    }                                                                      \
                }                                                                          \
                ap += cs_a;                                                                \
                bp += rs_b;                                                                \
            }                                                                              \
        }                                                                                  \
                                                                                           \
        const VTYPE valpha = SET1(alpha);                                                  \
        if (full) {                                                                        \
            const VTYPE vbeta = SET1(beta);                                                \
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                           \
            {                                                                              \
                _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                       \
                {                                                                          \
                    T *civ = c + i * rs_c + v * VEC;                                       \
                    VTYPE t = MUL(valpha, acc[i][v]);                                      \
                    if (beta != (T)0) {                                                    \
                        t = FMADD(vbeta, LOADU(civ), t);                                   \
                    }                                                                      \
                    STOREU(civ, t);                                                        \
                }                                                                          \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
        if (cs_c == 1 && beta == (T)0) {                                                   \
            /* An edge tile: store the rows and columns that lie inside C. */              \
            const nnf_int whole = n_cur / VEC;                                             \
            const int rest = (int)(n_cur % VEC);                                           \
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                           \
            {                                                                              \
                if (i < m_cur) {                                                           \
                    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                   \
                    {                                                                      \
                        T *civ = c + i * rs_c + v * VEC;                                   \
                        if (v < whole) {                                                   \
                            STOREU(civ, MUL(valpha, acc[i][v]));                           \
                        } else if (v == whole && rest > 0) {                               \
                            STORE_LANES(civ, MUL(valpha, acc[i][v]), rest);                \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
                                                                                           \
        T tile[NNF_MR_AVX2_MAX * NNF_NV_AVX2_MAX * VEC] __attribute__((aligned(32)));      \
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                               \
        {                                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            {                                                                              \
                STORE(tile + i * nr + v * VEC, acc[i][v]);                                 \
            }                                                                              \
        }                                                                                  \
        NNF_MERGE_TILE(T, tile, nr)                                                        \
    }

NNF_DEFINE_AVX2_BODY(float, f32, 8, __m256, _mm256_loadu_ps, _mm256_store_ps, _mm256_storeu_ps,
                     _mm256_broadcast_ss, _mm256_set1_ps, _mm256_setzero_ps, _mm256_mul_ps,
                     _mm256_fmadd_ps, store_lanes_f32)
NNF_DEFINE_AVX2_BODY(double, f64, 4, __m256d, _mm256_loadu_pd, _mm256_store_pd,
                     _mm256_storeu_pd, _mm256_broadcast_sd, _mm256_set1_pd, _mm256_setzero_pd,
                     _mm256_mul_pd, _mm256_fmadd_pd, store_lanes_f64)

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
