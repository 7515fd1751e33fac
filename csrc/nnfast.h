/*
 * nnfast C kernels: shared declarations.
 *
 * Conventions: element strides (not bytes) named rs_* (row) and cs_* (column);
 * the GEMM computes C (m x n) = alpha * A (m x k) * B (k x n) + beta * C, so a
 * transposed operand is passed by swapping its two strides. Functions return
 * an int status (NNF_OK or an NNF_E* code) and never print or abort; the
 * Cython wrappers turn a status into a Python exception.
 */
#ifndef NNFAST_H
#define NNFAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef ptrdiff_t nnf_int;

/* Status codes. */
#define NNF_OK 0
#define NNF_ENOMEM 1
#define NNF_EINVAL 2

/* Activation codes, shared by the GEMM epilogue and the elementwise kernels. */
#define NNF_ACT_LINEAR 0
#define NNF_ACT_RELU 1
#define NNF_ACT_SIGMOID 2
#define NNF_ACT_TANH 3
#define NNF_ACT_SOFTMAX 4

/* SIMD levels chosen at run time (see cpu.c). */
#define NNF_SIMD_GENERIC 0
#define NNF_SIMD_AVX2 1
#define NNF_SIMD_AVX512 2

/* Return the SIMD level the kernels use: the CPU's best supported level,
 * lowered to the level NNFAST_SIMD names (generic or avx2) when that is
 * lower. */
int nnf_simd_level(void);
const char *nnf_simd_name(int level);
/* Return 1 when the level is AVX-512 and the CPU runs two 512-bit FMAs per
 * cycle, twice the float rate of its 256-bit ones; NNFAST_FMA512 (full or
 * half) overrides the detection. The GEMM's plan costs depend on it. */
int nnf_fma512_full(void);

/* Threads: 1 when built without OpenMP. */
int nnf_openmp_enabled(void);
int nnf_omp_max_threads(void);
/* Return omp_get_num_procs(): the CPUs this process may run on. */
int nnf_omp_num_procs(void);
/* Return min(requested, omp_get_max_threads()), at least 1, so that a limit
 * set through the OpenMP runtime (threadpoolctl) still caps nnfast. */
int nnf_effective_threads(int requested);
/* Return the team size observed inside a parallel region of n_threads. */
int nnf_observed_team_size(int n_threads);
/* Return the threads for a loop of `work` units (flops or elements): 1 below
 * min_work, or below min_work times a larger factor while the OpenMP teams of
 * live threads would outnumber the CPUs (see threads.c), else n_threads. */
int nnf_parallel_threads(int n_threads, double work, double min_work);
/* Return 1 when new workers of a team are bound to CPUs (see threads.c). */
int nnf_binds_workers(void);

/* Adam in place over n elements (see optim.c). v_hat is NULL for plain Adam,
 * else AMSGrad's running maximum; decay is AdamW's lr * weight_decay, 0 for
 * Adam. alpha already includes the bias corrections. */
int nnf_adam_f32(float *p, const float *g, float *m, float *v, float *v_hat, nnf_int n,
                 double alpha, double beta_1, double beta_2, double epsilon, double decay,
                 int n_threads);
int nnf_adam_f64(double *p, const double *g, double *m, double *v, double *v_hat, nnf_int n,
                 double alpha, double beta_1, double beta_2, double epsilon, double decay,
                 int n_threads);

#ifdef __cplusplus
}
#endif

#endif
