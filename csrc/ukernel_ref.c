/*
 * Portable C micro-kernel: the fallback on CPUs without AVX2 and FMA, the
 * kernel forced by NNFAST_SIMD=generic, and the first thing to test when a
 * SIMD kernel disagrees.
 *
 * It accumulates the MR x NR tile in a local array with kc rank-1 updates,
 * then writes alpha * AB + beta * C. When beta is zero it writes alpha * AB
 * alone, so NaN or Inf in an uninitialised C never reaches the result. The MR and
 * NR loops have constant bounds, so the compiler unrolls and vectorizes them.
 */
#include "gemm.h"

#define NNF_DEFINE_UKR_REF(T, SUF, MR, NR)                                                   \
    void nnf_ukr_ref_##SUF(nnf_int m_cur, nnf_int n_cur, nnf_int kc, const void *a_,       \
                           nnf_int rs_a, nnf_int cs_a, const void *b_, nnf_int rs_b,       \
                           void *c_, nnf_int rs_c, nnf_int cs_c, const void *alpha_,       \
                           const void *beta_)                                              \
    {                                                                                      \
        const T *restrict a = (const T *)a_;                                               \
        const T *restrict b = (const T *)b_;                                               \
        T *c = (T *)c_;                                                                    \
        const T alpha = *(const T *)alpha_;                                                \
        const T beta = *(const T *)beta_;                                                  \
        T ab[MR * NR] = {0};                                                               \
                                                                                           \
        for (nnf_int p = 0; p < kc; p++) {                                                 \
            for (int i = 0; i < MR; i++) {                                                 \
                for (int j = 0; j < NR; j++) {                                             \
                    ab[i * NR + j] += a[i * rs_a + p * cs_a] * b[p * rs_b + j];            \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
                                                                                           \
        for (nnf_int i = 0; i < m_cur; i++) {                                              \
            for (nnf_int j = 0; j < n_cur; j++) {                                          \
                T *cij = c + i * rs_c + j * cs_c;                                          \
                if (beta == (T)0) {                                                        \
                    *cij = alpha * ab[i * NR + j];                                         \
                } else {                                                                   \
                    *cij = alpha * ab[i * NR + j] + beta * *cij;                           \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_UKR_REF(float, f32, NNF_MR_REF_F32, NNF_NR_REF_F32)
NNF_DEFINE_UKR_REF(double, f64, NNF_MR_REF_F64, NNF_NR_REF_F64)
