/*
 * The body of the SIMD micro-kernels, written once for every instruction
 * set and dtype: ukernel_avx2.c and ukernel_avx512.c instantiate it with
 * their vector type and intrinsics. Include only inside
 * #ifdef NNF_X86_KERNELS, after <immintrin.h>.
 */
#ifndef NNFAST_UKERNEL_BODY_H
#define NNFAST_UKERNEL_BODY_H

#include "gemm.h"

/* Store alpha * tile + beta * C for an edge tile or a C whose columns are
 * not contiguous, reading C only when beta is nonzero. The loop runs along
 * whichever C axis is contiguous. */
#define NNF_MERGE_TILE(T, tile, nr)                                                        \
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

/* STORE_COLUMNS for kernels that store a tile on a C with unit row stride
 * through the local tile and NNF_MERGE_TILE. */
#define NNF_NO_COLUMN_STORE(mr, nv, acc, m_cur, n_cur, c, cs_c, alpha, beta) 0

/*
 * One kernel body per instruction set and dtype. The tile height mr and
 * the vectors per tile row nv (NR = nv * VEC) are compile-time constants at
 * each call of NAME. After full unrolling GCC and Clang keep the acc array
 * in registers (checked in the generated assembly). With A read in place,
 * GCC reloads a few row offsets of the 12-row AVX-512 tiles from the stack
 * in the k loop. The packed-A loops have no stack accesses.
 * VEC is the lanes per vector register; TARGET is the function attribute that
 * enables the instruction set, and NAME the function's name.
 * STORE_COLUMNS(mr, nv, acc, m_cur, n_cur, c, cs_c, alpha, beta) stores the
 * tile on a C with unit row stride, the layout of a product computed as C^T,
 * and returns 1, or returns 0 to leave it to the scalar loop.
 */
#define NNF_DEFINE_UKR_BODY(TARGET, NAME, MR_MAX, NV_MAX, T, VEC, VTYPE, LOADU, STORE, STOREU, \
                            BROADCAST, SET1, ZERO, MUL, FMADD, STORE_LANES, STORE_COLUMNS) \
    static inline __attribute__((always_inline)) TARGET void NAME(                         \
        const int mr, const int nv, nnf_int m_cur, nnf_int n_cur, nnf_int kc, const T *ap, \
        nnf_int rs_a, nnf_int cs_a, const T *bp, nnf_int rs_b, T *c, nnf_int rs_c,         \
        nnf_int cs_c, T alpha, T beta)                                                     \
    {                                                                                      \
        const int nr = nv * VEC;                                                           \
        const int full = m_cur == mr && n_cur == nr && cs_c == 1;                          \
        VTYPE acc[MR_MAX][NV_MAX];                                                         \
        VTYPE b[NV_MAX];                                                                   \
        _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                              \
        {                                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            {                                                                              \
                acc[i][v] = ZERO();                                                        \
            }                                                                              \
        }                                                                                  \
        if (full) {                                                                        \
            _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                          \
            {                                                                              \
                _mm_prefetch((const char *)(c + i * rs_c), _MM_HINT_T0);                   \
                _mm_prefetch((const char *)(c + i * rs_c + nr - 1), _MM_HINT_T0);          \
            }                                                                              \
        }                                                                                  \
                                                                                           \
        if (rs_a == 1) {                                                                   \
            /* Packed A, or A in place with contiguous columns. */                         \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                       \
                {                                                                          \
                    b[v] = LOADU(bp + v * VEC);                                            \
                }                                                                          \
                _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                      \
                {                                                                          \
                    const VTYPE a = BROADCAST(ap + i);                                     \
                    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                   \
                    {                                                                      \
                        acc[i][v] = FMADD(a, b[v], acc[i][v]);                             \
                    }                                                                      \
                }                                                                          \
                ap += cs_a;                                                                \
                bp += rs_b;                                                                \
            }                                                                              \
        } else {                                                                           \
            /* A read in place: one broadcast per row, from any strides. */                \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                       \
                {                                                                          \
                    b[v] = LOADU(bp + v * VEC);                                            \
                }                                                                          \
                _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                      \
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
            _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                          \
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
            _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                          \
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
        if (rs_c == 1 && STORE_COLUMNS(mr, nv, acc, m_cur, n_cur, c, cs_c, alpha, beta)) { \
            return;                                                                        \
        }                                                                                  \
                                                                                           \
        T tile[MR_MAX * NV_MAX * VEC] __attribute__((aligned(64)));                        \
        _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                              \
        {                                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            {                                                                              \
                STORE(tile + i * nr + v * VEC, acc[i][v]);                                 \
            }                                                                              \
        }                                                                                  \
        NNF_MERGE_TILE(T, tile, nr)                                                        \
    }

#endif
