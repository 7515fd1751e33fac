/*
 * Row-by-row products for a few rows of A: C[i, :] = alpha * A[i, :] B +
 * beta * C[i, :] for m <= NNF_GEMV_MAX_ROWS, with the rows of B contiguous.
 *
 * One sample through a Dense layer is such a product. The blocked GEMM
 * fills only one row of each MR-row tile there. This loop instead streams B
 * once per row of A: for each k it broadcasts A[i, k] and adds it times row
 * k of B to a block of accumulators. The AVX2 loop keeps 64 float32 (32
 * float64) columns in 8 registers, enough independent FMA chains to hide
 * their latency.
 *
 * Sums run over k in order within each column, so the rounding can differ
 * from the blocked GEMM's, which adds per k block. The products are small
 * enough to run on the calling thread.
 */
#include "gemm.h"

#ifdef NNF_X86_KERNELS
#include <immintrin.h>
#endif

/* Columns of one accumulator block of the portable loop. */
#define NNF_GEMV_BLOCK 64

/* Store alpha * acc + beta * C for `width` columns of C from column j. */
#define NNF_GEMV_STORE(T, acc, width)                                                        \
    for (nnf_int jj = 0; jj < (width); jj++) {                                             \
        T *cij = ci + (j + jj) * cs_c;                                                     \
        T t = alpha * (acc)[jj];                                                           \
        *cij = beta == (T)0 ? t : t + beta * *cij;                                         \
    }

#define NNF_DEFINE_GEMV_GENERIC(T, SUF)                                                      \
    static void gemv_generic_##SUF(nnf_int m, nnf_int n, nnf_int k, T alpha, const T *a,   \
                                   nnf_int rs_a, nnf_int cs_a, const T *b, nnf_int rs_b,  \
                                   T beta, T *c, nnf_int rs_c, nnf_int cs_c)              \
    {                                                                                      \
        T acc[NNF_GEMV_BLOCK];                                                             \
        for (nnf_int i = 0; i < m; i++) {                                                  \
            const T *ai = a + i * rs_a;                                                    \
            T *ci = c + i * rs_c;                                                          \
            for (nnf_int j = 0; j < n; j += NNF_GEMV_BLOCK) {                              \
                nnf_int width = n - j < NNF_GEMV_BLOCK ? n - j : NNF_GEMV_BLOCK;           \
                for (nnf_int jj = 0; jj < width; jj++) {                                   \
                    acc[jj] = 0;                                                           \
                }                                                                          \
                for (nnf_int p = 0; p < k; p++) {                                          \
                    const T x = ai[p * cs_a];                                              \
                    const T *bp = b + p * rs_b + j;                                        \
                    for (nnf_int jj = 0; jj < width; jj++) {                               \
                        acc[jj] += x * bp[jj];                                             \
                    }                                                                      \
                }                                                                          \
                NNF_GEMV_STORE(T, acc, width)                                              \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_GEMV_GENERIC(float, f32)
NNF_DEFINE_GEMV_GENERIC(double, f64)

#ifdef NNF_X86_KERNELS

/*
 * AVX2: blocks of 8 vectors, then single vectors, then the last columns one
 * by one. A single vector's chain is as long as k, so it is split into four
 * partial sums over interleaved k, added at the end.
 */
#define NNF_DEFINE_GEMV_AVX2(T, SUF, VEC, VT, LOADU, STOREU, SET1, ZERO, ADD, FMADD)          \
    static NNF_TARGET_AVX2 void gemv_avx2_##SUF(nnf_int m, nnf_int n, nnf_int k, T alpha,  \
                                                const T *a, nnf_int rs_a, nnf_int cs_a,    \
                                                const T *b, nnf_int rs_b, T beta, T *c,    \
                                                nnf_int rs_c, nnf_int cs_c)                \
    {                                                                                      \
        T lanes[8 * VEC];                                                                  \
        for (nnf_int i = 0; i < m; i++) {                                                  \
            const T *ai = a + i * rs_a;                                                    \
            T *ci = c + i * rs_c;                                                          \
            nnf_int j = 0;                                                                 \
            for (; j + 8 * VEC <= n; j += 8 * VEC) {                                       \
                VT acc[8];                                                                 \
                for (int v = 0; v < 8; v++) {                                              \
                    acc[v] = ZERO();                                                       \
                }                                                                          \
                for (nnf_int p = 0; p < k; p++) {                                          \
                    const VT x = SET1(ai[p * cs_a]);                                       \
                    const T *bp = b + p * rs_b + j;                                        \
                    for (int v = 0; v < 8; v++) {                                          \
                        acc[v] = FMADD(x, LOADU(bp + v * VEC), acc[v]);                    \
                    }                                                                      \
                }                                                                          \
                for (int v = 0; v < 8; v++) {                                              \
                    STOREU(lanes + v * VEC, acc[v]);                                       \
                }                                                                          \
                NNF_GEMV_STORE(T, lanes, 8 * VEC)                                          \
            }                                                                              \
            for (; j + VEC <= n; j += VEC) {                                               \
                VT acc[4] = {ZERO(), ZERO(), ZERO(), ZERO()};                              \
                nnf_int p = 0;                                                             \
                for (; p + 4 <= k; p += 4) {                                               \
                    for (int u = 0; u < 4; u++) {                                          \
                        acc[u] = FMADD(SET1(ai[(p + u) * cs_a]),                           \
                                       LOADU(b + (p + u) * rs_b + j), acc[u]);             \
                    }                                                                      \
                }                                                                          \
                for (; p < k; p++) {                                                       \
                    acc[0] = FMADD(SET1(ai[p * cs_a]), LOADU(b + p * rs_b + j), acc[0]);  \
                }                                                                          \
                STOREU(lanes, ADD(ADD(acc[0], acc[1]), ADD(acc[2], acc[3])));              \
                NNF_GEMV_STORE(T, lanes, VEC)                                              \
            }                                                                              \
            for (; j < n; j++) {                                                           \
                T sum = 0;                                                                 \
                for (nnf_int p = 0; p < k; p++) {                                          \
                    sum += ai[p * cs_a] * b[p * rs_b + j];                                 \
                }                                                                          \
                T t = alpha * sum;                                                         \
                ci[j * cs_c] = beta == (T)0 ? t : t + beta * ci[j * cs_c];                 \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_GEMV_AVX2(float, f32, 8, __m256, _mm256_loadu_ps, _mm256_storeu_ps,
                     _mm256_set1_ps, _mm256_setzero_ps, _mm256_add_ps, _mm256_fmadd_ps)
NNF_DEFINE_GEMV_AVX2(double, f64, 4, __m256d, _mm256_loadu_pd, _mm256_storeu_pd,
                     _mm256_set1_pd, _mm256_setzero_pd, _mm256_add_pd, _mm256_fmadd_pd)

#endif /* NNF_X86_KERNELS */

#ifdef NNF_X86_KERNELS
#define NNF_GEMV_DISPATCH(SUF)                                                               \
    if (nnf_simd_level() >= NNF_SIMD_AVX2) {                                               \
        gemv_avx2_##SUF(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, beta, c, rs_c, cs_c);      \
    } else {                                                                               \
        gemv_generic_##SUF(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, beta, c, rs_c, cs_c);   \
    }
#else
#define NNF_GEMV_DISPATCH(SUF)                                                               \
    gemv_generic_##SUF(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, beta, c, rs_c, cs_c);
#endif

#define NNF_DEFINE_GEMV(T, SUF)                                                              \
    void nnf_gemv_rows_##SUF(nnf_int m, nnf_int n, nnf_int k, T alpha, const T *a,         \
                             nnf_int rs_a, nnf_int cs_a, const T *b, nnf_int rs_b, T beta, \
                             T *c, nnf_int rs_c, nnf_int cs_c,                             \
                             const nnf_epilogue_##SUF *epilogue)                           \
    {                                                                                      \
        NNF_GEMV_DISPATCH(SUF)                                                             \
        if (epilogue != NULL) {                                                            \
            nnf_epilogue_tile_##SUF(m, n, 0, 0, c, rs_c, cs_c, epilogue);                  \
        }                                                                                  \
    }

NNF_DEFINE_GEMV(float, f32)
NNF_DEFINE_GEMV(double, f64)
