/*
 * The body of the dot kernels, written once for every instruction set and
 * dtype: dot_avx2.c and dot_avx512.c instantiate it with their vector type
 * and intrinsics. Include only inside #ifdef NNF_X86_KERNELS, after
 * <immintrin.h>.
 */
#ifndef NNFAST_DOT_BODY_H
#define NNFAST_DOT_BODY_H

#include "gemm.h"

/*
 * One tile body per instruction set and dtype. mr and nr are compile-time
 * constants at each instantiation, so the acc array stays in registers.
 * LANE_SUMS reduces VEC accumulators at once, so acc has VEC zero entries
 * past the tile. MASK(r) returns a MASK_T that selects the first r lanes
 * for MASKLOAD, and IN_REGISTER keeps a vector in a register.
 */
#define NNF_DEFINE_DOT_TILE(TARGET, NAME, T, VEC, VTYPE, LOADU, MASK_T, MASK, MASKLOAD, ZERO, \
                            FMADD, MUL, SET1, STORE, LANE_SUMS, STORE_SUMS, IN_REGISTER)   \
    static inline __attribute__((always_inline)) TARGET void NAME(                         \
        const int mr, const int nr, nnf_int kc, const T *a, nnf_int rs_a, const T *bt,     \
        nnf_int rs_bt, T *c, nnf_int rs_c, nnf_int cs_c, T alpha, T beta)                  \
    {                                                                                      \
        VTYPE acc[2 * NNF_DOT_NR + VEC];                                                   \
        _Pragma("GCC unroll 32") for (int t = 0; t < 2 * NNF_DOT_NR + VEC; t++)            \
        {                                                                                  \
            acc[t] = ZERO();                                                               \
        }                                                                                  \
        nnf_int p = 0;                                                                     \
        for (; p + VEC <= kc; p += VEC) {                                                  \
            VTYPE av[NNF_DOT_MR_MAX];                                                      \
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                           \
            {                                                                              \
                av[i] = LOADU(a + i * rs_a + p);                                           \
            }                                                                              \
            _Pragma("GCC unroll 6") for (int j = 0; j < nr; j++)                           \
            {                                                                              \
                VTYPE b = LOADU(bt + j * rs_bt + p);                                       \
                IN_REGISTER(b);                                                            \
                _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                       \
                {                                                                          \
                    acc[i * nr + j] = FMADD(av[i], b, acc[i * nr + j]);                    \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        if (p < kc) {                                                                      \
            const MASK_T mask = MASK(kc - p);                                              \
            VTYPE av[NNF_DOT_MR_MAX];                                                      \
            _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                           \
            {                                                                              \
                av[i] = MASKLOAD(a + i * rs_a + p, mask);                                  \
            }                                                                              \
            _Pragma("GCC unroll 6") for (int j = 0; j < nr; j++)                           \
            {                                                                              \
                const VTYPE b = MASKLOAD(bt + j * rs_bt + p, mask);                        \
                _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                       \
                {                                                                          \
                    acc[i * nr + j] = FMADD(av[i], b, acc[i * nr + j]);                    \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        if (cs_c == 1 && beta == (T)0) {                                                   \
            STORE_SUMS(mr, nr, acc, c, rs_c, alpha);                                       \
            return;                                                                        \
        }                                                                                  \
        /* Lane sums of the accumulators in row-major order, times alpha. */               \
        T sums[2 * NNF_DOT_NR + VEC] __attribute__((aligned(64)));                         \
        const VTYPE valpha = SET1(alpha);                                                  \
        _Pragma("GCC unroll 4") for (int t = 0; t < mr * nr; t += VEC)                     \
        {                                                                                  \
            STORE(sums + t, MUL(valpha, LANE_SUMS(acc + t)));                              \
        }                                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                               \
        {                                                                                  \
            _Pragma("GCC unroll 6") for (int j = 0; j < nr; j++)                           \
            {                                                                              \
                T *cij = c + i * rs_c + j * cs_c;                                          \
                T s = sums[i * nr + j];                                                    \
                *cij = beta == (T)0 ? s : s + beta * *cij;                                 \
            }                                                                              \
        }                                                                                  \
    }

/* Run tiles of MR x NR from row i while they fit in m. The body is inlined
 * for that shape, so the row loop makes no call per tile. */
#define NNF_DOT_CASE(TILE, MR, NR)                                                         \
    case (MR) * 8 + (NR):                                                                  \
        for (; i + (MR) <= m; i += (MR)) {                                                 \
            TILE(MR, NR, kc, a + i * rs_a, rs_a, bt, rs_bt, c + i * rs_c, rs_c, cs_c, alpha, \
                 beta);                                                                    \
        }                                                                                  \
        break;

#define NNF_DOT_CASES(TILE)                                                                \
    NNF_DOT_CASE(TILE, 1, 1)                                                               \
    NNF_DOT_CASE(TILE, 1, 2)                                                               \
    NNF_DOT_CASE(TILE, 1, 3)                                                               \
    NNF_DOT_CASE(TILE, 1, 4)                                                               \
    NNF_DOT_CASE(TILE, 1, 5)                                                               \
    NNF_DOT_CASE(TILE, 1, 6)                                                               \
    NNF_DOT_CASE(TILE, 2, 1)                                                               \
    NNF_DOT_CASE(TILE, 2, 2)                                                               \
    NNF_DOT_CASE(TILE, 2, 3)                                                               \
    NNF_DOT_CASE(TILE, 2, 4)                                                               \
    NNF_DOT_CASE(TILE, 2, 5)                                                               \
    NNF_DOT_CASE(TILE, 2, 6)                                                               \
    NNF_DOT_CASE(TILE, 3, 1)                                                               \
    NNF_DOT_CASE(TILE, 3, 2)                                                               \
    NNF_DOT_CASE(TILE, 3, 3)                                                               \
    NNF_DOT_CASE(TILE, 4, 1)                                                               \
    NNF_DOT_CASE(TILE, 4, 2)                                                               \
    NNF_DOT_CASE(TILE, 5, 1)                                                               \
    NNF_DOT_CASE(TILE, 6, 1)                                                               \
    NNF_DOT_CASE(TILE, 7, 1)                                                               \
    NNF_DOT_CASE(TILE, 8, 1)

/* Compute C with whole tiles of `rows` rows, then one tile of the rows left
 * over. */
#define NNF_DEFINE_DOT(TARGET, NAME, T, TILE)                                              \
    TARGET void NAME(nnf_int m, int rows, nnf_int n_cur, nnf_int kc, const void *a_,       \
                     nnf_int rs_a, const void *bt_, nnf_int rs_bt, void *c_, nnf_int rs_c, \
                     nnf_int cs_c, const void *alpha_, const void *beta_)                  \
    {                                                                                      \
        const T *a = (const T *)a_;                                                        \
        const T *bt = (const T *)bt_;                                                      \
        T *c = (T *)c_;                                                                    \
        const T alpha = *(const T *)alpha_;                                                \
        const T beta = *(const T *)beta_;                                                  \
        nnf_int i = 0;                                                                     \
        switch (rows * 8 + n_cur) {                                                        \
            NNF_DOT_CASES(TILE)                                                            \
            default:                                                                       \
                break;                                                                     \
        }                                                                                  \
        if (i < m) {                                                                       \
            switch ((m - i) * 8 + n_cur) {                                                 \
                NNF_DOT_CASES(TILE)                                                        \
                default:                                                                   \
                    break;                                                                 \
            }                                                                              \
        }                                                                                  \
    }

#endif
