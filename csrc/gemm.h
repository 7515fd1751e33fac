/*
 * nnfast GEMM and fused Dense kernels: block sizes and prototypes.
 *
 * The driver (gemm.c) is written once for both dtypes: it moves through
 * packed buffers in bytes and calls the typed pieces (packing, micro-kernel,
 * epilogue) through an nnf_gemm_kernel table chosen at run time from the
 * SIMD level.
 */
#ifndef NNFAST_GEMM_H
#define NNFAST_GEMM_H

#include "nnfast.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Cache sizes the block sizes are derived from: a 32 KiB L1d and a 1 MiB L2
 * per core, as on AMD Zen 4 and Intel Skylake-SP and later, and a quarter of
 * a 32 MiB shared L3. On Zen 2 and 3 (512 KiB L2) an A block fills all of L2.
 * Each can be set with -D when building, to try the block sizes of another
 * cache.
 */
#ifndef NNF_L1D_BYTES
#define NNF_L1D_BYTES (32 * 1024)
#endif
#ifndef NNF_L2_BYTES
#define NNF_L2_BYTES (1024 * 1024)
#endif
#ifndef NNF_L3_SHARE_BYTES
#define NNF_L3_SHARE_BYTES (8 * 1024 * 1024)
#endif

/*
 * KC: an MR x KC micro-panel of packed A stays in L1 while the micro-kernel
 * runs along the B micro-panels of a chunk, each KC x NR. KC * 16 * 4 (a
 * float32 B micro-panel of the AVX2 tiles) and KC * 8 * 8 (float64) are half
 * of L1d, so one B micro-panel and the A micro-panel fit together.
 * MC: an MC x KC block of packed A takes about half of L2.
 * B chunk: KC x (chunk columns) of packed B takes the other half of L2, and
 * the macro-kernel runs all row panels of the A block along one chunk
 * before the next.
 * NC: a KC x NC panel of packed B takes NNF_L3_SHARE_BYTES.
 * Each MC is a multiple of its MR and each NC a multiple of its NR, so edge
 * tiles only occur at the end of the matrix, whatever the thread count.
 */
#define NNF_B_CHUNK_BYTES (NNF_L2_BYTES / 2)
#define NNF_KC_F32 (NNF_L1D_BYTES / 2 / (16 * 4))
#define NNF_KC_F64 (NNF_L1D_BYTES / 2 / (8 * 8))

/*
 * AVX2+FMA: MR x 16 (float32) and MR x 8 (float64) tiles with MR from 4 to 6,
 * and a 4 x 12 float64 tile (3 vectors per row) for C with about 10 columns.
 */
#define NNF_MR_AVX2_MAX 6
#define NNF_NV_AVX2_MAX 3

/*
 * AVX-512: MR x 32 (float32) and MR x 16 (float64) tiles with MR from 4 to
 * 12, and 8 x 48 and 8 x 24. A k step of B's micro-panel is 128 bytes (192
 * for the three-vector tiles), so at KC = 256 a micro-panel fills L1d. Half
 * of that, as for AVX2, was slower on one Zen 4 core: float64 128 x 10 x 256
 * (C^T on 10 x 16 tiles) took 13.3 us at KC = 128 and 12.5 us at 256, and
 * 512^3 5.3 and 5.1 ms, because each k block adds a pass over C.
 */
#define NNF_MR_AVX512_MAX 12
#define NNF_NV_AVX512_MAX 3
#ifndef NNF_KC_AVX512
#define NNF_KC_AVX512 256
#endif

/* Portable C: small tiles whose accumulators fit in 16 SSE registers. */
#define NNF_MR_REF_F32 4
#define NNF_NR_REF_F32 8
#define NNF_MR_REF_F64 4
#define NNF_NR_REF_F64 4

/* The SIMD micro-kernels are compiled with GCC/Clang target attributes. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NNF_X86_KERNELS 1
/* Compiles one function for AVX2 and FMA; call it only where
 * nnf_simd_level() reports NNF_SIMD_AVX2. */
#define NNF_TARGET_AVX2 __attribute__((target("avx2,fma")))
/* The same for AVX-512 Foundation; call only where nnf_simd_level() reports
 * NNF_SIMD_AVX512. */
#define NNF_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#endif

/* Round x down to a multiple of r (r > 0). */
#define NNF_ROUND_DOWN(x, r) ((x) / (r) * (r))
#define NNF_MC_FOR(bytes, kc, mr) NNF_ROUND_DOWN((NNF_L2_BYTES / 2) / ((kc) * (bytes)), (mr))
#define NNF_NC_FOR(bytes, kc, nr) NNF_ROUND_DOWN(NNF_L3_SHARE_BYTES / ((kc) * (bytes)), (nr))

/*
 * Epilogue applied to each tile of C once its last k block is done, while
 * the tile is still in L1: z = C + bias, preact = z (when given), C = act(z).
 * The activation is one of NNF_ACT_LINEAR, RELU, SIGMOID or TANH; softmax
 * needs whole rows, so the caller applies it after the GEMM.
 */
typedef struct {
    const float *bias; /* n values with stride inc_bias, or NULL */
    nnf_int inc_bias;
    int activation;
    float *preact; /* m x n, or NULL */
    nnf_int rs_preact, cs_preact;
} nnf_epilogue_f32;

typedef struct {
    const double *bias;
    nnf_int inc_bias;
    int activation;
    double *preact;
    nnf_int rs_preact, cs_preact;
} nnf_epilogue_f64;

/*
 * Micro-kernel: C[0:m_cur, 0:n_cur] = alpha * A * B + beta * C over kc steps,
 * where A element (i, p) is a[i * rs_a + p * cs_a] for all MR rows and B
 * element (p, j) is b[p * rs_b + j] for all NR columns. A packed micro-panel
 * has rs_a = 1 and cs_a = MR, a packed B micro-panel rs_b = NR; the driver
 * passes unpacked operands only for full tiles, and pads edge panels with
 * zeros. When *beta is zero, C is written without being read. alpha and
 * beta point to values of the kernel's dtype.
 */
typedef void (*nnf_ukr_fn)(nnf_int m_cur, nnf_int n_cur, nnf_int kc, const void *a,
                           nnf_int rs_a, nnf_int cs_a, const void *b, nnf_int rs_b, void *c,
                           nnf_int rs_c, nnf_int cs_c, const void *alpha, const void *beta);

/*
 * Packing: copy an mn x kc block of X (element (i, p) at x[i * inc_mn +
 * p * inc_k]) into ceil(mn / width) micro-panels of width x kc, each stored
 * k-major (width values per k step), zero-padding the last panel's rows.
 * A is packed with (rs_a, cs_a) and width MR, B with (cs_b, rs_b) and NR.
 */
typedef void (*nnf_pack_fn)(nnf_int mn, nnf_int kc, const void *x, nnf_int inc_mn,
                            nnf_int inc_k, int width, void *packed);

/* Epilogue on the tile of C whose top-left element is (i0, j0) in the full C. */
typedef void (*nnf_epilogue_fn)(nnf_int m_cur, nnf_int n_cur, nnf_int i0, nnf_int j0,
                                void *c, nnf_int rs_c, nnf_int cs_c, const void *epilogue);

typedef struct {
    const char *name;
    size_t elem_size;
    int mr, nr;
    double tile_cost; /* relative time per padded element of C x k */
    nnf_int mc, kc, nc;
    nnf_ukr_fn ukr;
    nnf_pack_fn pack;
    nnf_epilogue_fn epilogue;
    int zmm; /* 1 for the 512-bit tiles */
    int column_lanes; /* > 0: a tile on C^T is stored through in-register
                       * transposes of column_lanes x column_lanes blocks */
} nnf_gemm_kernel;

/*
 * Dot kernel: C[0:m, 0:n_cur] = alpha * A Bt^T + beta * C over kc steps,
 * where row i of A starts at a + i * rs_a and row j of Bt at bt + j * rs_bt,
 * both contiguous along k. The kernel runs tiles of `rows` x n_cur, then
 * one tile of the rows left over. n_cur is at most NNF_DOT_NR and rows at
 * most nnf_dot_rows(n_cur). When *beta is zero, C is written without being
 * read.
 */
#define NNF_DOT_NR 6
#define NNF_DOT_MR_MAX 8
/* Rows of a dot tile of `width` columns: 2 from 4 columns up, more for
 * fewer columns, so that a tile keeps at least 8 FMA chains (9 at 3 x 3). */
static inline int nnf_dot_rows(nnf_int width)
{
    if (width >= 4) {
        return 2;
    }
    if (width == 3) {
        return 3;
    }
    if (width == 2) {
        return 4;
    }
    return 8;
}
typedef void (*nnf_dot_fn)(nnf_int m, int rows, nnf_int n_cur, nnf_int kc, const void *a,
                           nnf_int rs_a, const void *bt, nnf_int rs_bt, void *c, nnf_int rs_c,
                           nnf_int cs_c, const void *alpha, const void *beta);

/*
 * Bt packer for a B with unit column stride: a function that copies the
 * kc x n block whose element (p, j) is b[p * rs_b + j] to bt[j * ld_bt + p].
 */
typedef void (*nnf_pack_bt_fn)(nnf_int n, nnf_int kc, const void *b, nnf_int rs_b, void *bt,
                               nnf_int ld_bt);

typedef struct {
    size_t elem_size;
    int vec;          /* lanes per vector: kc steps per FMA */
    nnf_int kc;       /* largest k block */
    double sum_cost;  /* estimated cycles per element of C for the lane sums */
    nnf_dot_fn dot;
    nnf_pack_bt_fn pack_bt_rows; /* packer of Bt from a B with unit column stride */
} nnf_dot_kernel;

void nnf_dot_avx2_f32(nnf_int m, int rows, nnf_int n_cur, nnf_int kc, const void *a,
                      nnf_int rs_a, const void *bt, nnf_int rs_bt, void *c, nnf_int rs_c,
                      nnf_int cs_c, const void *alpha, const void *beta);
void nnf_dot_avx2_f64(nnf_int m, int rows, nnf_int n_cur, nnf_int kc, const void *a,
                      nnf_int rs_a, const void *bt, nnf_int rs_bt, void *c, nnf_int rs_c,
                      nnf_int cs_c, const void *alpha, const void *beta);
void nnf_dot_avx512_f32(nnf_int m, int rows, nnf_int n_cur, nnf_int kc, const void *a,
                        nnf_int rs_a, const void *bt, nnf_int rs_bt, void *c, nnf_int rs_c,
                        nnf_int cs_c, const void *alpha, const void *beta);
void nnf_dot_avx512_f64(nnf_int m, int rows, nnf_int n_cur, nnf_int kc, const void *a,
                        nnf_int rs_a, const void *bt, nnf_int rs_bt, void *c, nnf_int rs_c,
                        nnf_int cs_c, const void *alpha, const void *beta);
/*
 * Mixed kernel, for C with 0, 1 or 2 columns more than one vector (`vec`:
 * 16 float32 or 8 float64 values): C[0:m, 0:vec + extra] = alpha * A B +
 * beta * C over kc steps. Row i of A starts at a + i * rs_a, contiguous
 * along k. The first vec columns of C take broadcast FMAs, as in a tile
 * kernel, with row p of B's first vec columns at bv + p * vec. The
 * `extra` columns after them take dot products along k, as in the dot
 * kernels, with column vec + e of B at bt + e * ld_bt, contiguous along k.
 * The kernel runs tiles of NNF_MIXED_MR rows, then one tile of the rows
 * left over. When *beta is zero, C is written without being read.
 */
#define NNF_MIXED_MR 8
#define NNF_MIXED_EXTRA_MAX 2
typedef void (*nnf_mixed_fn)(nnf_int m, nnf_int kc, int extra, const void *a, nnf_int rs_a,
                             const void *bv, const void *bt, nnf_int ld_bt, void *c,
                             nnf_int rs_c, nnf_int cs_c, const void *alpha, const void *beta);

typedef struct {
    size_t elem_size;
    int vec;          /* columns of C from broadcast FMAs */
    nnf_int kc;       /* largest k block */
    nnf_mixed_fn run;
} nnf_mixed_kernel;

void nnf_mixed_avx512_f32(nnf_int m, nnf_int kc, int extra, const void *a, nnf_int rs_a,
                          const void *bv, const void *bt, nnf_int ld_bt, void *c, nnf_int rs_c,
                          nnf_int cs_c, const void *alpha, const void *beta);
void nnf_mixed_avx512_f64(nnf_int m, nnf_int kc, int extra, const void *a, nnf_int rs_a,
                          const void *bv, const void *bt, nnf_int ld_bt, void *c, nnf_int rs_c,
                          nnf_int cs_c, const void *alpha, const void *beta);
void nnf_pack_bt_avx2_f32(nnf_int n, nnf_int kc, const void *b, nnf_int rs_b, void *bt,
                          nnf_int ld_bt);
void nnf_pack_bt_avx2_f64(nnf_int n, nnf_int kc, const void *b, nnf_int rs_b, void *bt,
                          nnf_int ld_bt);

/*
 * Products with at most this many rows of C whose B rows are contiguous go
 * to the row-by-row loop in gemv.c instead of the blocked GEMM. Measured on
 * one core of the project's Zen 4 VM with the MLP's float32 layers, best of
 * 7 x 3000 calls. For 784 x 128 the loop took 5.0, 9.4 and 14.1 us for 1, 2
 * and 3 rows, against the blocked GEMM's 9.4, 9.9 and 9.9 us. For 128 x 10
 * it took 0.52 and 0.74 us for 1 and 2 rows, against 0.97 and 1.01 us.
 */
#ifndef NNF_GEMV_MAX_ROWS
#define NNF_GEMV_MAX_ROWS 2
#endif

void nnf_gemv_rows_f32(nnf_int m, nnf_int n, nnf_int k, float alpha, const float *a,
                       nnf_int rs_a, nnf_int cs_a, const float *b, nnf_int rs_b, float beta,
                       float *c, nnf_int rs_c, nnf_int cs_c, const nnf_epilogue_f32 *epilogue);
void nnf_gemv_rows_f64(nnf_int m, nnf_int n, nnf_int k, double alpha, const double *a,
                       nnf_int rs_a, nnf_int cs_a, const double *b, nnf_int rs_b, double beta,
                       double *c, nnf_int rs_c, nnf_int cs_c, const nnf_epilogue_f64 *epilogue);

/* Micro-kernels (ukernel_ref.c, ukernel_avx2.c, ukernel_avx512.c), all of type
 * nnf_ukr_fn. */
#define NNF_DECLARE_UKR(NAME)                                                                \
    void NAME(nnf_int m_cur, nnf_int n_cur, nnf_int kc, const void *a, nnf_int rs_a,         \
              nnf_int cs_a, const void *b, nnf_int rs_b, void *c, nnf_int rs_c,              \
              nnf_int cs_c, const void *alpha, const void *beta)
NNF_DECLARE_UKR(nnf_ukr_ref_f32);
NNF_DECLARE_UKR(nnf_ukr_ref_f64);
NNF_DECLARE_UKR(nnf_ukr_avx2_6x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx2_5x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx2_4x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx2_6x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx2_5x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx2_4x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx2_4x3_f64);
NNF_DECLARE_UKR(nnf_ukr_avx512_12x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx512_10x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx512_8x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx512_6x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx512_4x2_f32);
NNF_DECLARE_UKR(nnf_ukr_avx512_8x3_f32);
NNF_DECLARE_UKR(nnf_ukr_avx512_12x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx512_10x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx512_8x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx512_6x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx512_4x2_f64);
NNF_DECLARE_UKR(nnf_ukr_avx512_8x3_f64);

/* Packing (pack.c). */
void nnf_pack_f32(nnf_int mn, nnf_int kc, const void *x, nnf_int inc_mn, nnf_int inc_k,
                  int width, void *packed);
void nnf_pack_f64(nnf_int mn, nnf_int kc, const void *x, nnf_int inc_mn, nnf_int inc_k,
                  int width, void *packed);
void nnf_pack_avx2_f32(nnf_int mn, nnf_int kc, const void *x, nnf_int inc_mn, nnf_int inc_k,
                       int width, void *packed);
void nnf_pack_avx2_f64(nnf_int mn, nnf_int kc, const void *x, nnf_int inc_mn, nnf_int inc_k,
                       int width, void *packed);

/* Epilogues (dense.c). */
void nnf_epilogue_tile_f32(nnf_int m_cur, nnf_int n_cur, nnf_int i0, nnf_int j0, void *c,
                           nnf_int rs_c, nnf_int cs_c, const void *epilogue);
void nnf_epilogue_tile_f64(nnf_int m_cur, nnf_int n_cur, nnf_int i0, nnf_int j0, void *c,
                           nnf_int rs_c, nnf_int cs_c, const void *epilogue);

/* Return the kernel tables for the current SIMD level (gemm.c): *count
 * variants that differ in tile shape, the first of them the one for large
 * products. */
const nnf_gemm_kernel *nnf_gemm_kernels_f32(int *count);
const nnf_gemm_kernel *nnf_gemm_kernels_f64(int *count);

/*
 * Return a 64-byte aligned scratch buffer of at least `bytes` bytes owned by
 * the calling thread, or NULL when out of memory. Slot 0 is the GEMM's
 * packing buffer, slot 1 the Dense backward dz buffer. The buffer stays valid
 * until the same thread requests the same slot again.
 */
#define NNF_WORKSPACE_GEMM 0
#define NNF_WORKSPACE_DENSE 1
#define NNF_WORKSPACE_SLOTS 2
void *nnf_workspace(int slot, size_t bytes);

/* C (m x n) = alpha * A (m x k) * B (k x n) + beta * C, then the epilogue
 * (may be NULL). Strides are in elements and may be zero or negative for A
 * and B; C must not overlap A or B. n_threads is already resolved. */
int nnf_gemm_f32(nnf_int m, nnf_int n, nnf_int k, float alpha, const float *a, nnf_int rs_a,
                 nnf_int cs_a, const float *b, nnf_int rs_b, nnf_int cs_b, float beta, float *c,
                 nnf_int rs_c, nnf_int cs_c, const nnf_epilogue_f32 *epilogue, int n_threads);
int nnf_gemm_f64(nnf_int m, nnf_int n, nnf_int k, double alpha, const double *a, nnf_int rs_a,
                 nnf_int cs_a, const double *b, nnf_int rs_b, nnf_int cs_b, double beta,
                 double *c, nnf_int rs_c, nnf_int cs_c, const nnf_epilogue_f64 *epilogue,
                 int n_threads);

/* For tests: return the name of tile kernel `index` of the current table
 * and set *mr and *nr, or return NULL past the end of the table. */
const char *nnf_gemm_tile_kernel(size_t elem_size, int index, int *mr, int *nr);
/* For tests: the product of nnf_gemm_f32/f64, without an epilogue, on tile
 * kernel `index` (on C^T when on_transpose is set) whatever the plan would
 * choose, on the dot plan when index is NNF_GEMM_DOT_INDEX, or on the mixed
 * plan when it is NNF_GEMM_MIXED_INDEX. elem_size is 4 or 8, and alpha and
 * beta point to that type. Returns NNF_EINVAL for an index past the table.
 * For the dot and mixed plans it also returns NNF_EINVAL where this SIMD
 * level has no such kernel or the rows of A (of B on C^T) are not
 * contiguous along k. It does so too where the columns of C (rows on C^T)
 * do not fit: the dot plan takes at most NNF_DOT_MAX_N of them, the mixed
 * plan one vector and up to NNF_MIXED_EXTRA_MAX more. */
#define NNF_GEMM_DOT_INDEX (-2)
#define NNF_GEMM_MIXED_INDEX (-3)
int nnf_gemm_with_tiles(size_t elem_size, int index, int on_transpose, nnf_int m, nnf_int n,
                        nnf_int k, const void *alpha, const void *a, nnf_int rs_a,
                        nnf_int cs_a, const void *b, nnf_int rs_b, nnf_int cs_b,
                        const void *beta, void *c, nnf_int rs_c, nnf_int cs_c, int n_threads);

/* Write a short name of the plan nnf_gemm_f32 (elem_size 4) or nnf_gemm_f64
 * would run for these sizes and strides into out: "rows" (gemv.c), "dot",
 * "mixed", "tiles MRxNR", the last three with " on C^T" when the product is
 * transposed, or "empty". For tests and diagnostics. */
int nnf_gemm_plan(size_t elem_size, nnf_int m, nnf_int n, nnf_int k, nnf_int rs_a,
                  nnf_int cs_a, nnf_int rs_b, nnf_int cs_b, char *out, size_t size);

/* y = act(x * kernel + bias); preact = x * kernel + bias when preact is not
 * NULL; bias may be NULL. x is n_samples x n_in, kernel n_in x n_out. */
int nnf_dense_forward_f32(nnf_int n_samples, nnf_int n_in, nnf_int n_out, const float *x,
                          nnf_int rs_x, nnf_int cs_x, const float *kernel, nnf_int rs_k,
                          nnf_int cs_k, const float *bias, nnf_int inc_bias, int activation,
                          float *y, nnf_int rs_y, nnf_int cs_y, float *preact, nnf_int rs_p,
                          nnf_int cs_p, int n_threads);
int nnf_dense_forward_f64(nnf_int n_samples, nnf_int n_in, nnf_int n_out, const double *x,
                          nnf_int rs_x, nnf_int cs_x, const double *kernel, nnf_int rs_k,
                          nnf_int cs_k, const double *bias, nnf_int inc_bias, int activation,
                          double *y, nnf_int rs_y, nnf_int cs_y, double *preact, nnf_int rs_p,
                          nnf_int cs_p, int n_threads);

/*
 * With dz = act'(dy) computed from the output y:
 * kernel_grad = x^T dz + beta * kernel_grad, bias_grad = colsum(dz) +
 * beta * bias_grad (skipped when NULL), dx = dz kernel^T (skipped when NULL).
 */
int nnf_dense_backward_f32(nnf_int n_samples, nnf_int n_in, nnf_int n_out, const float *x,
                           nnf_int rs_x, nnf_int cs_x, const float *kernel, nnf_int rs_k,
                           nnf_int cs_k, const float *y, nnf_int rs_y, nnf_int cs_y,
                           const float *dy, nnf_int rs_dy, nnf_int cs_dy, int activation,
                           float *kernel_grad, nnf_int rs_kg, nnf_int cs_kg, float *bias_grad,
                           nnf_int inc_bg, float *dx, nnf_int rs_dx, nnf_int cs_dx, float beta,
                           int n_threads);
int nnf_dense_backward_f64(nnf_int n_samples, nnf_int n_in, nnf_int n_out, const double *x,
                           nnf_int rs_x, nnf_int cs_x, const double *kernel, nnf_int rs_k,
                           nnf_int cs_k, const double *y, nnf_int rs_y, nnf_int cs_y,
                           const double *dy, nnf_int rs_dy, nnf_int cs_dy, int activation,
                           double *kernel_grad, nnf_int rs_kg, nnf_int cs_kg, double *bias_grad,
                           nnf_int inc_bg, double *dx, nnf_int rs_dx, nnf_int cs_dx,
                           double beta, int n_threads);

#ifdef __cplusplus
}
#endif

#endif
