/*
 * Fused Dense kernels built on the blocked GEMM.
 *
 * Forward: y = act(x kernel + bias). The bias, the pre-activation copy and
 * the elementwise activations run in the GEMM epilogue, tile by tile while the
 * tile is still in L1. Softmax needs whole rows, so the GEMM writes
 * z = x kernel + bias and a row pass turns it into softmax(z) afterwards.
 *
 * Backward: dz = act'(dy) from the saved output y, then
 * kernel_grad = x^T dz + beta kernel_grad and dx = dz kernel^T through the
 * GEMM, and bias_grad = column sums of dz + beta bias_grad. For the linear
 * activation dz is dy itself. Otherwise dz is kept in the calling thread's
 * NNF_WORKSPACE_DENSE buffer, which later calls reuse, so steady-state calls
 * do not allocate. The GEMM uses a different workspace slot.
 *
 * Row passes (softmax, dz) split rows across threads with a static schedule;
 * the column sums run on one thread, in row order, so every result is the
 * same for any thread count.
 */
#include <math.h>
#include <stdlib.h>

#include "activations.h"
#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/*
 * Row passes over fewer elements than this run on one thread.
 * NOTE: an estimate, not measured: at a few ns per element, 32768 elements
 * take tens of microseconds, well above the few microseconds an OpenMP team
 * costs to wake.
 */
#define NNF_DENSE_PARALLEL_MIN_ELEMENTS 32768

static inline float nnf_exp_f32(float x) { return expf(x); }
static inline double nnf_exp_f64(double x) { return exp(x); }

static int row_pass_threads(nnf_int m, nnf_int n, int n_threads)
{
    if (m < 2) {
        return 1;
    }
    return nnf_parallel_threads(n_threads, (double)m * (double)n,
                                NNF_DENSE_PARALLEL_MIN_ELEMENTS);
}

/* Epilogue on one tile: z = C + bias, preact = z, C = act(z). */
#define NNF_DEFINE_EPILOGUE(T, SUF)                                                          \
    void nnf_epilogue_tile_##SUF(nnf_int m_cur, nnf_int n_cur, nnf_int i0, nnf_int j0,     \
                                 void *c_, nnf_int rs_c, nnf_int cs_c, const void *e_)     \
    {                                                                                      \
        const nnf_epilogue_##SUF *e = (const nnf_epilogue_##SUF *)e_;                      \
        T *c = (T *)c_;                                                                    \
        for (nnf_int i = 0; i < m_cur; i++) {                                              \
            T *row = c + i * rs_c;                                                         \
            if (e->bias != NULL) {                                                         \
                const T *bias = e->bias + j0 * e->inc_bias;                                \
                for (nnf_int j = 0; j < n_cur; j++) {                                      \
                    row[j * cs_c] += bias[j * e->inc_bias];                                \
                }                                                                          \
            }                                                                              \
            if (e->preact != NULL) {                                                       \
                T *z = e->preact + (i0 + i) * e->rs_preact + j0 * e->cs_preact;            \
                for (nnf_int j = 0; j < n_cur; j++) {                                      \
                    z[j * e->cs_preact] = row[j * cs_c];                                   \
                }                                                                          \
            }                                                                              \
            switch (e->activation) {                                                       \
            case NNF_ACT_RELU:                                                             \
                for (nnf_int j = 0; j < n_cur; j++) {                                      \
                    row[j * cs_c] = nnf_relu_fwd_##SUF(row[j * cs_c]);                     \
                }                                                                          \
                break;                                                                     \
            case NNF_ACT_SIGMOID:                                                          \
                for (nnf_int j = 0; j < n_cur; j++) {                                      \
                    row[j * cs_c] = nnf_sigmoid_fwd_##SUF(row[j * cs_c]);                  \
                }                                                                          \
                break;                                                                     \
            case NNF_ACT_TANH:                                                             \
                for (nnf_int j = 0; j < n_cur; j++) {                                      \
                    row[j * cs_c] = nnf_tanh_fwd_##SUF(row[j * cs_c]);                     \
                }                                                                          \
                break;                                                                     \
            default:                                                                       \
                break;                                                                     \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_EPILOGUE(float, f32)
NNF_DEFINE_EPILOGUE(double, f64)

/* y = softmax(y) over each row, with the row maximum subtracted first so
 * that exp never overflows. */
#define NNF_DEFINE_SOFTMAX_ROWS(T, SUF)                                                      \
    static void softmax_rows_##SUF(nnf_int m, nnf_int n, T *y, nnf_int rs_y, nnf_int cs_y, \
                                   int n_threads)                                          \
    {                                                                                      \
        int nt = row_pass_threads(m, n, n_threads);                                        \
        _Pragma("omp parallel for schedule(static) num_threads(nt) if(nt > 1)")            \
        for (nnf_int i = 0; i < m; i++) {                                                  \
            T *row = y + i * rs_y;                                                         \
            T max = row[0];                                                                \
            for (nnf_int j = 1; j < n; j++) {                                              \
                max = row[j * cs_y] > max ? row[j * cs_y] : max;                           \
            }                                                                              \
            T sum = 0;                                                                     \
            for (nnf_int j = 0; j < n; j++) {                                              \
                T e = nnf_exp_##SUF(row[j * cs_y] - max);                                  \
                row[j * cs_y] = e;                                                         \
                sum += e;                                                                  \
            }                                                                              \
            for (nnf_int j = 0; j < n; j++) {                                              \
                row[j * cs_y] /= sum;                                                      \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_SOFTMAX_ROWS(float, f32)
NNF_DEFINE_SOFTMAX_ROWS(double, f64)

/* dz (m x n, row-major) = act'(dy) from the output y. */
#define NNF_DEFINE_DZ_ROWS(T, SUF)                                                           \
    static void dz_rows_##SUF(int activation, nnf_int m, nnf_int n, const T *y,            \
                              nnf_int rs_y, nnf_int cs_y, const T *dy, nnf_int rs_dy,      \
                              nnf_int cs_dy, T *dz, int n_threads)                         \
    {                                                                                      \
        int nt = row_pass_threads(m, n, n_threads);                                        \
        _Pragma("omp parallel for schedule(static) num_threads(nt) if(nt > 1)")            \
        for (nnf_int i = 0; i < m; i++) {                                                  \
            const T *yi = y + i * rs_y;                                                    \
            const T *dyi = dy + i * rs_dy;                                                 \
            T *dzi = dz + i * n;                                                           \
            switch (activation) {                                                          \
            case NNF_ACT_RELU:                                                             \
                for (nnf_int j = 0; j < n; j++) {                                          \
                    dzi[j] = nnf_relu_bwd_##SUF(yi[j * cs_y], dyi[j * cs_dy]);             \
                }                                                                          \
                break;                                                                     \
            case NNF_ACT_SIGMOID:                                                          \
                for (nnf_int j = 0; j < n; j++) {                                          \
                    dzi[j] = nnf_sigmoid_bwd_##SUF(yi[j * cs_y], dyi[j * cs_dy]);          \
                }                                                                          \
                break;                                                                     \
            case NNF_ACT_TANH:                                                             \
                for (nnf_int j = 0; j < n; j++) {                                          \
                    dzi[j] = nnf_tanh_bwd_##SUF(yi[j * cs_y], dyi[j * cs_dy]);             \
                }                                                                          \
                break;                                                                     \
            case NNF_ACT_SOFTMAX: {                                                        \
                /* dz = y * (dy - sum_j dy_j y_j), the softmax Jacobian times dy. */       \
                T dot = 0;                                                                 \
                for (nnf_int j = 0; j < n; j++) {                                          \
                    dot += dyi[j * cs_dy] * yi[j * cs_y];                                  \
                }                                                                          \
                for (nnf_int j = 0; j < n; j++) {                                          \
                    dzi[j] = yi[j * cs_y] * (dyi[j * cs_dy] - dot);                        \
                }                                                                          \
                break;                                                                     \
            }                                                                              \
            default:                                                                       \
                for (nnf_int j = 0; j < n; j++) {                                          \
                    dzi[j] = dyi[j * cs_dy];                                               \
                }                                                                          \
                break;                                                                     \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_DZ_ROWS(float, f32)
NNF_DEFINE_DZ_ROWS(double, f64)

#define NNF_DEFINE_DENSE_FORWARD(T, SUF)                                                     \
    int nnf_dense_forward_##SUF(nnf_int n_samples, nnf_int n_in, nnf_int n_out,            \
                                const T *x, nnf_int rs_x, nnf_int cs_x, const T *kernel,   \
                                nnf_int rs_k, nnf_int cs_k, const T *bias,                 \
                                nnf_int inc_bias, int activation, T *y, nnf_int rs_y,      \
                                nnf_int cs_y, T *preact, nnf_int rs_p, nnf_int cs_p,       \
                                int n_threads)                                             \
    {                                                                                      \
        if (activation < NNF_ACT_LINEAR || activation > NNF_ACT_SOFTMAX) {                 \
            return NNF_EINVAL;                                                             \
        }                                                                                  \
        nnf_epilogue_##SUF epilogue = {bias, inc_bias, activation, preact, rs_p, cs_p};    \
        if (activation == NNF_ACT_SOFTMAX) {                                               \
            epilogue.activation = NNF_ACT_LINEAR;                                          \
        }                                                                                  \
        int plain = bias == NULL && preact == NULL &&                                      \
                    epilogue.activation == NNF_ACT_LINEAR;                                 \
        int status = nnf_gemm_##SUF(n_samples, n_out, n_in, (T)1, x, rs_x, cs_x, kernel,   \
                                    rs_k, cs_k, (T)0, y, rs_y, cs_y,                       \
                                    plain ? NULL : &epilogue, n_threads);                  \
        if (status != NNF_OK) {                                                            \
            return status;                                                                 \
        }                                                                                  \
        if (activation == NNF_ACT_SOFTMAX && n_out > 0) {                                  \
            softmax_rows_##SUF(n_samples, n_out, y, rs_y, cs_y, n_threads);                \
        }                                                                                  \
        return NNF_OK;                                                                     \
    }

NNF_DEFINE_DENSE_FORWARD(float, f32)
NNF_DEFINE_DENSE_FORWARD(double, f64)

#define NNF_DEFINE_DENSE_BACKWARD(T, SUF)                                                    \
    int nnf_dense_backward_##SUF(                                                          \
        nnf_int n_samples, nnf_int n_in, nnf_int n_out, const T *x, nnf_int rs_x,          \
        nnf_int cs_x, const T *kernel, nnf_int rs_k, nnf_int cs_k, const T *y,             \
        nnf_int rs_y, nnf_int cs_y, const T *dy, nnf_int rs_dy, nnf_int cs_dy,             \
        int activation, T *kernel_grad, nnf_int rs_kg, nnf_int cs_kg, T *bias_grad,        \
        nnf_int inc_bg, T *dx, nnf_int rs_dx, nnf_int cs_dx, T beta, int n_threads)        \
    {                                                                                      \
        if (activation < NNF_ACT_LINEAR || activation > NNF_ACT_SOFTMAX) {                 \
            return NNF_EINVAL;                                                             \
        }                                                                                  \
                                                                                           \
        /* Workspace: dz (unless it is dy), then double column sums. */                    \
        int dz_is_dy = activation == NNF_ACT_LINEAR;                                       \
        size_t dz_bytes = dz_is_dy ? 0 : (size_t)(n_samples * n_out) * sizeof(T);          \
        dz_bytes = (dz_bytes + 63) / 64 * 64;                                              \
        size_t sum_bytes = bias_grad != NULL ? (size_t)n_out * sizeof(double) : 0;         \
        char *ws = NULL;                                                                   \
        if (dz_bytes + sum_bytes > 0) {                                                    \
            ws = (char *)nnf_workspace(NNF_WORKSPACE_DENSE, dz_bytes + sum_bytes);         \
            if (ws == NULL) {                                                              \
                return NNF_ENOMEM;                                                         \
            }                                                                              \
        }                                                                                  \
                                                                                           \
        /* dz = act'(dy). */                                                               \
        const T *dz = dy;                                                                  \
        nnf_int rs_dz = rs_dy, cs_dz = cs_dy;                                              \
        if (!dz_is_dy) {                                                                   \
            dz_rows_##SUF(activation, n_samples, n_out, y, rs_y, cs_y, dy, rs_dy, cs_dy,   \
                          (T *)ws, n_threads);                                             \
            dz = (const T *)ws;                                                            \
            rs_dz = n_out;                                                                 \
            cs_dz = 1;                                                                     \
        }                                                                                  \
                                                                                           \
        /* kernel_grad = x^T dz + beta kernel_grad. */                                     \
        int status = nnf_gemm_##SUF(n_in, n_out, n_samples, (T)1, x, cs_x, rs_x, dz,       \
                                    rs_dz, cs_dz, beta, kernel_grad, rs_kg, cs_kg, NULL,   \
                                    n_threads);                                            \
        if (status != NNF_OK) {                                                            \
            return status;                                                                 \
        }                                                                                  \
                                                                                           \
        /* bias_grad = column sums of dz + beta bias_grad, summed in double. */            \
        if (bias_grad != NULL) {                                                           \
            double *sums = (double *)(ws + dz_bytes);                                      \
            for (nnf_int j = 0; j < n_out; j++) {                                          \
                sums[j] = 0.0;                                                             \
            }                                                                              \
            for (nnf_int i = 0; i < n_samples; i++) {                                      \
                const T *dzi = dz + i * rs_dz;                                             \
                for (nnf_int j = 0; j < n_out; j++) {                                      \
                    sums[j] += (double)dzi[j * cs_dz];                                     \
                }                                                                          \
            }                                                                              \
            for (nnf_int j = 0; j < n_out; j++) {                                          \
                T *bj = bias_grad + j * inc_bg;                                            \
                *bj = beta == (T)0 ? (T)sums[j] : (T)sums[j] + beta * *bj;                 \
            }                                                                              \
        }                                                                                  \
                                                                                           \
        /* dx = dz kernel^T. */                                                            \
        if (dx != NULL) {                                                                  \
            status = nnf_gemm_##SUF(n_samples, n_in, n_out, (T)1, dz, rs_dz, cs_dz,        \
                                    kernel, cs_k, rs_k, (T)0, dx, rs_dx, cs_dx, NULL,      \
                                    n_threads);                                            \
        }                                                                                  \
        return status;                                                                     \
    }

NNF_DEFINE_DENSE_BACKWARD(float, f32)
NNF_DEFINE_DENSE_BACKWARD(double, f64)
