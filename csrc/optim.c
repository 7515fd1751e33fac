/*
 * Adam, AMSGrad and AdamW updates over flat buffers, in place.
 *
 * Every element takes the operations of the NumPy reference in the same
 * order, each rounded to the buffer's dtype, with no fused multiply-add, so
 * the portable loop and the AVX2 loop give the same bits as the reference:
 *
 *     p = p - p * decay                       (AdamW only)
 *     m = m + c1 * (g - m)
 *     v = v + c2 * (g * g - v)
 *     s = v, or with AMSGrad s = v_hat = maximum(v_hat, v)
 *     p = p - alpha * m / (sqrt(s) + epsilon)
 *
 * The variants are separate loops, so no branch is left inside a loop. The
 * AVX2 loop carries a target attribute and runs only when nnf_simd_level()
 * reports AVX2; C11 mode keeps GCC from contracting the portable loop into
 * FMAs (-ffp-contract=off), so both agree.
 *
 * Threads: large buffers are cut into contiguous blocks, one per thread.
 * Block starts are multiples of 8 elements, and each element's arithmetic
 * does not depend on its block, so every thread count gives the same result.
 */
#include <math.h>

#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef NNF_X86_KERNELS
#include <immintrin.h>
#endif

#define NNF_ADAM_AMSGRAD 1
#define NNF_ADAM_DECAY 2

/*
 * One element, for the portable loop and the tails of the vector loop.
 * NaN in v_hat or v propagates, as np.maximum does.
 */
#define NNF_ADAM_ELEMENT(T, SQRT, i)                                                         \
    do {                                                                                   \
        T p_i = p[i];                                                                      \
        if (variant & NNF_ADAM_DECAY) {                                                    \
            p_i = p_i - p_i * decay;                                                       \
        }                                                                                  \
        T g_i = g[i];                                                                      \
        T m_i = m[i] + c1 * (g_i - m[i]);                                                  \
        T v_i = v[i] + c2 * (g_i * g_i - v[i]);                                            \
        m[i] = m_i;                                                                        \
        v[i] = v_i;                                                                        \
        T s_i = v_i;                                                                       \
        if (variant & NNF_ADAM_AMSGRAD) {                                                  \
            T h_i = v_hat[i];                                                              \
            if (!(h_i >= v_i || h_i != h_i)) {                                             \
                h_i = v_i;                                                                 \
            }                                                                              \
            v_hat[i] = h_i;                                                                \
            s_i = h_i;                                                                     \
        }                                                                                  \
        p[i] = p_i - alpha * m_i / (SQRT(s_i) + eps);                                      \
    } while (0)

#define NNF_DEFINE_ADAM_GENERIC(T, SUF, SQRT)                                                \
    static inline __attribute__((always_inline)) void adam_generic_body_##SUF(             \
        const int variant, T *restrict p, const T *restrict g, T *restrict m,               \
        T *restrict v, T *restrict v_hat, nnf_int n, T alpha, T c1, T c2, T eps, T decay)  \
    {                                                                                      \
        for (nnf_int i = 0; i < n; i++) {                                                  \
            NNF_ADAM_ELEMENT(T, SQRT, i);                                                  \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    static void adam_generic_##SUF(int variant, T *p, const T *g, T *m, T *v, T *v_hat,    \
                                   nnf_int n, T alpha, T c1, T c2, T eps, T decay)         \
    {                                                                                      \
        switch (variant) {                                                                 \
        case 0:                                                                            \
            adam_generic_body_##SUF(0, p, g, m, v, v_hat, n, alpha, c1, c2, eps, decay);   \
            break;                                                                         \
        case NNF_ADAM_AMSGRAD:                                                             \
            adam_generic_body_##SUF(NNF_ADAM_AMSGRAD, p, g, m, v, v_hat, n, alpha, c1, c2, \
                                    eps, decay);                                           \
            break;                                                                         \
        case NNF_ADAM_DECAY:                                                               \
            adam_generic_body_##SUF(NNF_ADAM_DECAY, p, g, m, v, v_hat, n, alpha, c1, c2,   \
                                    eps, decay);                                           \
            break;                                                                         \
        default:                                                                           \
            adam_generic_body_##SUF(NNF_ADAM_AMSGRAD | NNF_ADAM_DECAY, p, g, m, v, v_hat,  \
                                    n, alpha, c1, c2, eps, decay);                         \
        }                                                                                  \
    }

NNF_DEFINE_ADAM_GENERIC(float, f32, sqrtf)
NNF_DEFINE_ADAM_GENERIC(double, f64, sqrt)

#ifdef NNF_X86_KERNELS

/*
 * AVX2 loop: VEC lanes per step with the same operations as
 * NNF_ADAM_ELEMENT, then the tail element by element. maximum(v_hat, v)
 * with NaN from either side: max_ps(h, v) returns v when either is NaN,
 * which is right unless only h is NaN, and the blend keeps h there.
 */
#define NNF_DEFINE_ADAM_AVX2(T, SUF, SQRT, VEC, VT, LOAD, STORE, SET1, ADD, SUB, MUL, DIV,    \
                             VSQRT, MAX, ISNAN, BLEND)                                     \
    static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void                      \
    adam_avx2_body_##SUF(const int variant, T *restrict p, const T *restrict g,             \
                         T *restrict m, T *restrict v, T *restrict v_hat, nnf_int n,       \
                         T alpha, T c1, T c2, T eps, T decay)                              \
    {                                                                                      \
        const VT alpha_v = SET1(alpha), c1_v = SET1(c1), c2_v = SET1(c2);                   \
        const VT eps_v = SET1(eps), decay_v = SET1(decay);                                 \
        nnf_int i = 0;                                                                     \
        for (; i + VEC <= n; i += VEC) {                                                   \
            VT p_i = LOAD(p + i);                                                          \
            if (variant & NNF_ADAM_DECAY) {                                                \
                p_i = SUB(p_i, MUL(p_i, decay_v));                                         \
            }                                                                              \
            VT g_i = LOAD(g + i);                                                          \
            VT m_old = LOAD(m + i);                                                        \
            VT v_old = LOAD(v + i);                                                        \
            VT m_i = ADD(m_old, MUL(c1_v, SUB(g_i, m_old)));                               \
            VT v_i = ADD(v_old, MUL(c2_v, SUB(MUL(g_i, g_i), v_old)));                     \
            STORE(m + i, m_i);                                                             \
            STORE(v + i, v_i);                                                             \
            VT s_i = v_i;                                                                  \
            if (variant & NNF_ADAM_AMSGRAD) {                                              \
                VT h_old = LOAD(v_hat + i);                                                \
                s_i = BLEND(MAX(h_old, v_i), h_old, ISNAN(h_old));                         \
                STORE(v_hat + i, s_i);                                                     \
            }                                                                              \
            STORE(p + i, SUB(p_i, DIV(MUL(alpha_v, m_i), ADD(VSQRT(s_i), eps_v))));        \
        }                                                                                  \
        for (; i < n; i++) {                                                               \
            NNF_ADAM_ELEMENT(T, SQRT, i);                                                  \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    static NNF_TARGET_AVX2 void adam_avx2_##SUF(int variant, T *p, const T *g, T *m, T *v, \
                                                T *v_hat, nnf_int n, T alpha, T c1, T c2,  \
                                                T eps, T decay)                            \
    {                                                                                      \
        switch (variant) {                                                                 \
        case 0:                                                                            \
            adam_avx2_body_##SUF(0, p, g, m, v, v_hat, n, alpha, c1, c2, eps, decay);      \
            break;                                                                         \
        case NNF_ADAM_AMSGRAD:                                                             \
            adam_avx2_body_##SUF(NNF_ADAM_AMSGRAD, p, g, m, v, v_hat, n, alpha, c1, c2,    \
                                 eps, decay);                                              \
            break;                                                                         \
        case NNF_ADAM_DECAY:                                                               \
            adam_avx2_body_##SUF(NNF_ADAM_DECAY, p, g, m, v, v_hat, n, alpha, c1, c2, eps, \
                                 decay);                                                   \
            break;                                                                         \
        default:                                                                           \
            adam_avx2_body_##SUF(NNF_ADAM_AMSGRAD | NNF_ADAM_DECAY, p, g, m, v, v_hat, n,  \
                                 alpha, c1, c2, eps, decay);                               \
        }                                                                                  \
    }

#define NNF_ISNAN_PS(x) _mm256_cmp_ps((x), (x), _CMP_UNORD_Q)
#define NNF_ISNAN_PD(x) _mm256_cmp_pd((x), (x), _CMP_UNORD_Q)

NNF_DEFINE_ADAM_AVX2(float, f32, sqrtf, 8, __m256, _mm256_loadu_ps, _mm256_storeu_ps,
                     _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps,
                     _mm256_div_ps, _mm256_sqrt_ps, _mm256_max_ps, NNF_ISNAN_PS,
                     _mm256_blendv_ps)
NNF_DEFINE_ADAM_AVX2(double, f64, sqrt, 4, __m256d, _mm256_loadu_pd, _mm256_storeu_pd,
                     _mm256_set1_pd, _mm256_add_pd, _mm256_sub_pd, _mm256_mul_pd,
                     _mm256_div_pd, _mm256_sqrt_pd, _mm256_max_pd, NNF_ISNAN_PD,
                     _mm256_blendv_pd)

#endif /* NNF_X86_KERNELS */

/* Block starts are multiples of this many elements (one AVX2 float32 vector). */
#define NNF_ADAM_BLOCK_ALIGN 8

#define NNF_DEFINE_ADAM_DRIVER(T, SUF)                                                       \
    int nnf_adam_##SUF(T *p, const T *g, T *m, T *v, T *v_hat, nnf_int n, double alpha,    \
                       double beta_1, double beta_2, double epsilon, double decay,         \
                       int n_threads)                                                      \
    {                                                                                      \
        if (n < 0 || (p == NULL && n > 0)) {                                               \
            return NNF_EINVAL;                                                             \
        }                                                                                  \
        const int variant = (v_hat != NULL ? NNF_ADAM_AMSGRAD : 0)                         \
                            | (decay != 0.0 ? NNF_ADAM_DECAY : 0);                         \
        const T alpha_t = (T)alpha, c1 = (T)(1.0 - beta_1), c2 = (T)(1.0 - beta_2);        \
        const T eps = (T)epsilon, decay_t = (T)decay;                                      \
        void (*body)(int, T *, const T *, T *, T *, T *, nnf_int, T, T, T, T, T) =          \
            adam_generic_##SUF;                                                            \
        NNF_SELECT_AVX2(SUF);                                                              \
        int threads = n_threads > 1 ? n_threads : 1;                                       \
        if (threads == 1) {                                                                \
            body(variant, p, g, m, v, v_hat, n, alpha_t, c1, c2, eps, decay_t);            \
            return NNF_OK;                                                                 \
        }                                                                                  \
        NNF_ADAM_PARALLEL(T);                                                              \
        return NNF_OK;                                                                     \
    }

#ifdef NNF_X86_KERNELS
#define NNF_SELECT_AVX2(SUF)                                                               \
    if (nnf_simd_level() >= NNF_SIMD_AVX2) {                                               \
        body = adam_avx2_##SUF;                                                            \
    }
#else
#define NNF_SELECT_AVX2(SUF)
#endif

#ifdef _OPENMP
#define NNF_ADAM_PARALLEL(T)                                                                 \
    _Pragma("omp parallel num_threads(threads)")                                           \
    {                                                                                      \
        int team = omp_get_num_threads(), t = omp_get_thread_num();                        \
        nnf_int per = (n + team - 1) / team;                                               \
        per = (per + NNF_ADAM_BLOCK_ALIGN - 1) / NNF_ADAM_BLOCK_ALIGN * NNF_ADAM_BLOCK_ALIGN; \
        nnf_int start = per * t;                                                           \
        nnf_int stop = start + per < n ? start + per : n;                                  \
        if (start < stop) {                                                                \
            body(variant, p + start, g + start, m + start, v + start,                      \
                 v_hat != NULL ? v_hat + start : NULL, stop - start, alpha_t, c1, c2, eps, \
                 decay_t);                                                                 \
        }                                                                                  \
    }
#else
#define NNF_ADAM_PARALLEL(T)                                                                 \
    body(variant, p, g, m, v, v_hat, n, alpha_t, c1, c2, eps, decay_t)
#endif

NNF_DEFINE_ADAM_DRIVER(float, f32)
NNF_DEFINE_ADAM_DRIVER(double, f64)
