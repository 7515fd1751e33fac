/*
 * Blocked GEMM driver: C = alpha * A * B + beta * C, then an optional epilogue.
 *
 * Loops (BLIS names), outermost first:
 *   jc over n in steps of NC   (a KC x NC panel of packed B lives in L3)
 *   pc over k in steps of KC   (pack that panel of B)
 *   ic over m in steps of MC   (pack an MC x KC block of A, which lives in L2)
 *   chunks of the B panel of NNF_B_CHUNK_BYTES (one lives in L2)
 *   ir over the MR-tall micro-panels of packed A (one stays in L1)
 *   jr over the NR-wide micro-panels of the chunk, calling the micro-kernel.
 * With jr innermost, consecutive tiles of a row-major C are adjacent, and
 * the hardware prefetchers fetch C ahead of the micro-kernel. The order
 * BLIS uses for its column-major C, jr outside ir, moves each tile MR rows
 * down, so C came from memory late. On one Intel Xeon core, float64 2048^3
 * ran at 62 GFLOP/s in that order and at 72 with jr innermost.
 * The first k block scales C by beta, and later blocks add to it. After the
 * last k block of a tile, the epilogue (bias, activation, pre-activation
 * copy) runs on that tile while it is still in L1.
 *
 * Plan: before the loops, choose_kernel picks the tile shape (MR x NR) and
 * whether to compute C^T = B^T A^T instead, by estimated time. For small
 * products choose_direct lets the micro-kernel read A, or B with contiguous
 * rows, in place instead of packing them (edge panels are always packed).
 *
 * Threads: an OpenMP team splits the rows of C (ic), or the columns of each
 * B panel (jr) when C has fewer row panels than column panels (short, wide
 * products). Each thread packs all it reads into buffers of its own: on a
 * row split its A blocks and the whole B panel, on a column split its B
 * micro-panels and the whole A blocks. The operand that every thread reads
 * is thus packed once per thread. In exchange no thread waits for another
 * before the region ends or reads packed data that another one wrote. On
 * the project's 2-vCPU VM, teams that shared packed panels ran at 0.45 to
 * 0.7 of their usual speed for minutes at a time (docs/benchmarks.md).
 * Each element of C is computed by one thread with the same k blocking and
 * the same micro-kernel, so the result does not depend on the thread count.
 * Products below NNF_GEMM_PARALLEL_MIN_FLOPS run on the calling thread alone.
 *
 * Buffers: the packed B panels and A blocks of all threads come from one
 * 64-byte aligned workspace owned by the calling thread (nnf_workspace). It
 * grows to the largest size a thread has needed and is reused by later calls
 * from that thread, so steady-state calls do not allocate. Python threads
 * that call the GEMM at the same time each use their own workspace, and the
 * OpenMP workers only write to the parts their calling thread handed out.
 * On POSIX the workspace is freed when its thread exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/*
 * Products with fewer float64 flops (2 m n k) than this run on one thread;
 * for float32 the limit is twice as many flops, because a vector holds twice
 * as many values. Measured with square products on this project's 2-core
 * Zen 4 VM (best of 1000 calls each, built with
 * -DNNF_GEMM_PARALLEL_MIN_FLOPS=0): two threads were slower than one up to
 * 40^3 float64 (0.13 MFLOP, 0.95x) and 56^3 float32 (0.35 MFLOP, 0.57x), and
 * faster from 48^3 float64 (0.22 MFLOP, 1.19x) and 64^3 float32 (0.52 MFLOP,
 * 1.18x). Both crossovers are about 5 us of single-thread work.
 */
#ifndef NNF_GEMM_PARALLEL_MIN_FLOPS
#define NNF_GEMM_PARALLEL_MIN_FLOPS 200000.0
#endif

/*
 * A is read in place instead of packed when B has at most
 * NNF_DIRECT_A_MAX_PANELS micro-panels (half that when the rows of A are not
 * contiguous, because then packing A is a cheap copy). B, when its rows are
 * contiguous, is read in place when A has at most NNF_DIRECT_B_MAX_PANELS.
 * Measured on one Zen 4 core with the products of benchmarks/gemm.py: reading
 * B in place with 2 A panels (128 x 10 x 256) is 1.3x faster than packing it.
 * With 8 A panels (float64 32 x 128 x 784) it is 15% slower, because B rows
 * 1 KiB apart map a B micro-panel to 4 L1 sets, so every reuse misses L1.
 * An A whose rows are not contiguous is read in place only while the k
 * steps of a micro-panel span at most NNF_DIRECT_A_SPAN_BYTES: 32 pages of
 * 4 KiB, half of a 64-entry L1 data TLB. On one Intel Xeon core, float32
 * 784 x 128 x 256 with A^T (k steps 3136 bytes apart, 196 pages) ran at 0.94
 * of NumPy in place and at 1.03 packed. With k = 32 (25 pages) both ran at
 * 1.08.
 */
#define NNF_DIRECT_A_MAX_PANELS 8
#ifndef NNF_DIRECT_A_SPAN_BYTES
#define NNF_DIRECT_A_SPAN_BYTES (32 * 4096)
#endif
#define NNF_DIRECT_B_MAX_PANELS 2

/*
 * The dot plan (dot_avx2.c, dot_avx512.c) is considered for C with at most
 * NNF_DOT_MAX_N columns and A rows contiguous along k. Its estimated cycles
 * per element of C are NNF_DOT_STEP_COST / 2 per vector of k steps (two FMA
 * pipes) plus the kernel's sum_cost for the lane sums and the store:
 * NNF_DOT_SUM_COST for the AVX2 kernels, NNF_DOT_SUM_COST_ZMM for the
 * AVX-512 ones.
 * NOTE: fitted to the products of benchmarks/gemm.py on a Zen 4 core, the
 * AVX-512 sum cost on an Intel Xeon core.
 */
#define NNF_DOT_MAX_N 24
#define NNF_DOT_STEP_COST 1.05
#define NNF_DOT_SUM_COST 2.0
/* On one Intel Xeon core, float64 256 x 10 x 128 took 13.6 us on the
 * AVX-512 dot kernels and 13.0 us on 8 x 16 tiles, and 32 x 10 x 128 took
 * 1.73 and 1.88 us. That is about 13.7 cycles per element of C, 5.3 more
 * than its 16 vectors of k steps. The rest goes to the lane sums, 8
 * elements at a time (a 2 x 5 tile needs two rounds), the packing of Bt and
 * the loops. It can be set with -D when building: 0 makes the plan favour
 * the dot kernels, as benchmarks/gemm_builds.py variants do. */
#ifndef NNF_DOT_SUM_COST_ZMM
#define NNF_DOT_SUM_COST_ZMM 5.5
#endif
/* Estimated cycles per element to pack Bt from a B with unit column stride
 * (register transposes in dot_avx2.c). Float32 32 x 10 x 128 took 1.16 us
 * with packing and 1.07 us with B's columns read in place. That is about
 * 0.25 cycles for each of the 1280 elements. */
#define NNF_DOT_PACK_ROWS_COST 0.25

/*
 * The mixed plan (mixed_avx512.c) is considered for C with one vector of
 * columns and up to NNF_MIXED_EXTRA_MAX more, and A rows contiguous along k.
 * Its estimated cycles per row of C are NNF_MIXED_STEP_COST / 2 per FMA,
 * plus NNF_MIXED_SUM_COST per dot column for the lane sums. A row takes
 * one FMA per k step for the vector of columns, and one per vector of k
 * steps for each dot column.
 * On one Intel Xeon core, float64 256 x 10 x 128 took 9.6 us on this plan
 * and 12.6 us on 8 x 16 tiles, which the estimate rates at 22300 and 34000
 * cycles. Float64 1000 x 10 x 784 took 313 us, and 421 us on the dot plan.
 * Float32 256 x 18 x 128 took 8.6 us, and 12.4 us on 8 x 32 tiles. Float64
 * 256 x 8 x 128 took 7.6 us, and 9.9 us on the dot plan.
 */
#define NNF_MIXED_STEP_COST 1.05
#define NNF_MIXED_SUM_COST 2.0

/*
 * Estimated cycles per element of C to store the tiles of a product
 * computed as C^T. Tiles of kernels with column_lanes are transposed in
 * registers: 24 shuffles per 8 x 8 float64 block, 64 per 16 x 16 float32
 * block, then one masked store per column. Their cost counts the rows
 * padded to whole blocks. Other tiles go through a scalar loop.
 * On one Intel Xeon core, float64 128 x 10 x 32 with A^T took 1.33 us on
 * C^T with 10 x 16 tiles and 2.08 us on C with 8 x 16 tiles. With a store
 * cost of 2 cycles, as for the scalar loop, the plan chose the latter.
 */
#define NNF_COLUMN_STORE_COST 0.5
#define NNF_SCALAR_STORE_COST 2.0

/*
 * Float64 tiles of more than NNF_STRIDED_A_MR rows that read A in place with
 * rows not contiguous take NNF_STRIDED_A_TALL_COST times their tile cost.
 * The micro-kernel's loop for such an A keeps one row offset per tile row,
 * and GCC reloads some of them from the stack at every k step. On one Intel
 * Xeon core, float64 32 x 784 x 128 with B^T, on C^T with W read in place,
 * took 86.6 us on 12 x 16 tiles and 80.6 us on 8 x 16 tiles. At 256 x 784 x
 * 128 they took 769 and 753 us. The tile costs predict 12 x 16 2% faster.
 * Float32 showed no such gap: 256 x 784 x 128 took 349 us on 12 x 32 and
 * 360 us on 8 x 32 tiles.
 */
#define NNF_STRIDED_A_MR 8
#define NNF_STRIDED_A_TALL_COST 1.08

/* ---------------------------------------------------------------------------
 * Per-thread workspace
 * ------------------------------------------------------------------------- */

typedef struct {
    void *ptr[NNF_WORKSPACE_SLOTS];
    size_t size[NNF_WORKSPACE_SLOTS];
} nnf_workspace_set;

static size_t round_up_64(size_t bytes)
{
    return (bytes + 63) / 64 * 64;
}

static int grow_slot(nnf_workspace_set *ws, int slot, size_t bytes)
{
    if (ws->size[slot] >= bytes && ws->ptr[slot] != NULL) {
        return NNF_OK;
    }
    size_t size = round_up_64(bytes > 64 ? bytes : 64);
#ifdef _WIN32
    void *p = _aligned_malloc(size, 64);
    if (p == NULL) {
        return NNF_ENOMEM;
    }
    _aligned_free(ws->ptr[slot]);
#else
    void *p = aligned_alloc(64, size);
    if (p == NULL) {
        return NNF_ENOMEM;
    }
    free(ws->ptr[slot]);
#endif
    ws->ptr[slot] = p;
    ws->size[slot] = size;
    return NNF_OK;
}

#ifdef _WIN32

/* NOTE: on Windows the buffers of a thread that exits are not freed, because
 * there is no portable destructor for __declspec(thread) data. */
static __declspec(thread) nnf_workspace_set thread_workspace;

void *nnf_workspace(int slot, size_t bytes)
{
    if (grow_slot(&thread_workspace, slot, bytes) != NNF_OK) {
        return NULL;
    }
    return thread_workspace.ptr[slot];
}

#else

#include <pthread.h>

static pthread_key_t workspace_key;
static pthread_once_t workspace_once = PTHREAD_ONCE_INIT;
static int workspace_key_ok = 0;

static void free_workspace(void *arg)
{
    nnf_workspace_set *ws = (nnf_workspace_set *)arg;
    for (int slot = 0; slot < NNF_WORKSPACE_SLOTS; slot++) {
        free(ws->ptr[slot]);
    }
    free(ws);
}

static void create_workspace_key(void)
{
    workspace_key_ok = pthread_key_create(&workspace_key, free_workspace) == 0;
}

void *nnf_workspace(int slot, size_t bytes)
{
    pthread_once(&workspace_once, create_workspace_key);
    if (!workspace_key_ok) {
        return NULL;
    }
    nnf_workspace_set *ws = (nnf_workspace_set *)pthread_getspecific(workspace_key);
    if (ws == NULL) {
        ws = (nnf_workspace_set *)calloc(1, sizeof *ws);
        if (ws == NULL) {
            return NULL;
        }
        if (pthread_setspecific(workspace_key, ws) != 0) {
            free(ws);
            return NULL;
        }
    }
    if (grow_slot(ws, slot, bytes) != NNF_OK) {
        return NULL;
    }
    return ws->ptr[slot];
}

#endif

/* ---------------------------------------------------------------------------
 * Kernel tables
 * ------------------------------------------------------------------------- */

/* One table entry. MC and NC follow from the cache sizes in gemm.h, ZMM is
 * 1 for the 512-bit tiles, and COLUMN_LANES is the kernel's column_lanes. */
#define NNF_KERNEL_OF(NAME, T, MR, NR, KC, COST, UKR, PACK, EPILOGUE, ZMM, COLUMN_LANES)      \
    {                                                                                      \
        NAME, sizeof(T), MR, NR, COST, NNF_MC_FOR(sizeof(T), KC, MR), KC,                  \
            NNF_NC_FOR(sizeof(T), KC, NR), UKR, PACK, EPILOGUE, ZMM, COLUMN_LANES          \
    }
#define NNF_KERNEL(NAME, T, MR, NR, KC, COST, UKR, PACK, EPILOGUE)                           \
    NNF_KERNEL_OF(NAME, T, MR, NR, KC, COST, UKR, PACK, EPILOGUE, 0, 0)
/* The AVX-512 tiles store on C^T through transposes of 16 x 16 (float32)
 * or 8 x 8 (float64) blocks, one zmm register per row. */
#define NNF_KERNEL_ZMM(T, MR, NR, COST, UKR, PACK, EPILOGUE)                                 \
    NNF_KERNEL_OF("avx512", T, MR, NR, NNF_KC_AVX512, COST, UKR, PACK, EPILOGUE, 1,          \
                  64 / sizeof(T))

static const nnf_gemm_kernel kernels_ref_f32[] = {
    NNF_KERNEL("generic", float, NNF_MR_REF_F32, NNF_NR_REF_F32, NNF_KC_F32, 1.0,
               nnf_ukr_ref_f32, nnf_pack_f32, nnf_epilogue_tile_f32),
};

static const nnf_gemm_kernel kernels_ref_f64[] = {
    NNF_KERNEL("generic", double, NNF_MR_REF_F64, NNF_NR_REF_F64, NNF_KC_F64, 1.0,
               nnf_ukr_ref_f64, nnf_pack_f64, nnf_epilogue_tile_f64),
};

#ifdef NNF_X86_KERNELS
/*
 * Tile costs: time per padded element relative to the 6 x 16 and 6 x 8
 * tiles, which load the fewest values per FMA. NOTE: estimates; they only
 * make a shorter tile win when it removes enough padding.
 */
#define NNF_AVX2_TILES_F32                                                                   \
    NNF_KERNEL("avx2+fma", float, 6, 16, NNF_KC_F32, 1.0, nnf_ukr_avx2_6x2_f32,              \
               nnf_pack_avx2_f32, nnf_epilogue_tile_f32),                                  \
        NNF_KERNEL("avx2+fma", float, 5, 16, NNF_KC_F32, 1.03, nnf_ukr_avx2_5x2_f32,         \
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32),                              \
        NNF_KERNEL("avx2+fma", float, 4, 16, NNF_KC_F32, 1.08, nnf_ukr_avx2_4x2_f32,         \
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32)

#define NNF_AVX2_TILES_F64                                                                   \
    NNF_KERNEL("avx2+fma", double, 6, 8, NNF_KC_F64, 1.0, nnf_ukr_avx2_6x2_f64,              \
               nnf_pack_avx2_f64, nnf_epilogue_tile_f64),                                  \
        NNF_KERNEL("avx2+fma", double, 5, 8, NNF_KC_F64, 1.03, nnf_ukr_avx2_5x2_f64,         \
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),                              \
        NNF_KERNEL("avx2+fma", double, 4, 8, NNF_KC_F64, 1.08, nnf_ukr_avx2_4x2_f64,         \
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),                              \
        NNF_KERNEL("avx2+fma", double, 4, 12, NNF_KC_F64, 1.02, nnf_ukr_avx2_4x3_f64,        \
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64)

static const nnf_gemm_kernel kernels_avx2_f32[] = {NNF_AVX2_TILES_F32};
static const nnf_gemm_kernel kernels_avx2_f64[] = {NNF_AVX2_TILES_F64};

/*
 * AVX-512 CPUs choose among the AVX2 tiles and the AVX-512 ones, with the
 * AVX2 tiles first so that they win ties. On one Zen 4 core the AVX-512
 * tiles were no faster where both tile C without padding (float64 512^3:
 * 5.1 ms on 12 x 16 and on 6 x 8). The float32 ones were 5% to 15% slower
 * (float32 784 x 128 x 256: 498 us on 12 x 32, 475 us on 6 x 16).
 * Their costs make them win only where one tall tile replaces two short
 * ones. Float64 128 x 10 x 256 (on C^T, 10 rows) took 12.5 us on 10 x 16
 * against 14.1 us on 5 x 8, because each value of B is loaded once, not
 * twice. Float64 32 x 128 x 10 took 2.2 us on 8 x 16, 2.6 us on 4 x 12.
 * Where nnf_fma512_full() reports two 512-bit FMAs per cycle, the plan
 * rates these tiles at twice the lanes per cycle, with the same costs, which
 * predicts them 1.8 to 2 times as fast as the AVX2 tiles. On an Intel Xeon
 * of that kind (family 6, model 207), one core ran float32 1024^3 at 133
 * GFLOP/s on 12 x 32 tiles and 72 on 6 x 16. Float64 ran at 66 on 12 x 16
 * and 37 on 6 x 8.
 */
static const nnf_gemm_kernel kernels_avx512_f32[] = {
    NNF_AVX2_TILES_F32,
    NNF_KERNEL_ZMM(float, 12, 32, 1.1, nnf_ukr_avx512_12x2_f32,
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32),
    NNF_KERNEL_ZMM(float, 8, 48, 1.1, nnf_ukr_avx512_8x3_f32,
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32),
    NNF_KERNEL_ZMM(float, 10, 32, 1.11, nnf_ukr_avx512_10x2_f32,
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32),
    NNF_KERNEL_ZMM(float, 8, 32, 1.13, nnf_ukr_avx512_8x2_f32,
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32),
    NNF_KERNEL_ZMM(float, 6, 32, 1.16, nnf_ukr_avx512_6x2_f32,
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32),
    NNF_KERNEL_ZMM(float, 4, 32, 1.22, nnf_ukr_avx512_4x2_f32,
                   nnf_pack_avx2_f32, nnf_epilogue_tile_f32),
};

static const nnf_gemm_kernel kernels_avx512_f64[] = {
    NNF_AVX2_TILES_F64,
    NNF_KERNEL_ZMM(double, 12, 16, 1.0, nnf_ukr_avx512_12x2_f64,
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),
    NNF_KERNEL_ZMM(double, 8, 24, 1.0, nnf_ukr_avx512_8x3_f64,
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),
    NNF_KERNEL_ZMM(double, 10, 16, 1.02, nnf_ukr_avx512_10x2_f64,
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),
    NNF_KERNEL_ZMM(double, 8, 16, 1.03, nnf_ukr_avx512_8x2_f64,
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),
    NNF_KERNEL_ZMM(double, 6, 16, 1.06, nnf_ukr_avx512_6x2_f64,
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),
    NNF_KERNEL_ZMM(double, 4, 16, 1.12, nnf_ukr_avx512_4x2_f64,
                   nnf_pack_avx2_f64, nnf_epilogue_tile_f64),
};

/* Dot kernels. A k block of Bt with two tiles' columns (2 * NNF_DOT_NR rows)
 * fills three quarters of L1: 512 float32 or 256 float64 steps. */
#define NNF_DOT_KC(bytes) NNF_ROUND_DOWN(NNF_L1D_BYTES * 3 / 4 / (2 * NNF_DOT_NR * (bytes)), 16)
static const nnf_dot_kernel dot_avx2_f32 = {sizeof(float), 8, NNF_DOT_KC(4), NNF_DOT_SUM_COST,
                                            nnf_dot_avx2_f32, nnf_pack_bt_avx2_f32};
static const nnf_dot_kernel dot_avx2_f64 = {sizeof(double), 4, NNF_DOT_KC(8), NNF_DOT_SUM_COST,
                                            nnf_dot_avx2_f64, nnf_pack_bt_avx2_f64};
static const nnf_dot_kernel dot_avx512_f32 = {sizeof(float), 16, NNF_DOT_KC(4),
                                              NNF_DOT_SUM_COST_ZMM, nnf_dot_avx512_f32,
                                              nnf_pack_bt_avx2_f32};
static const nnf_dot_kernel dot_avx512_f64 = {sizeof(double), 8, NNF_DOT_KC(8),
                                              NNF_DOT_SUM_COST_ZMM, nnf_dot_avx512_f64,
                                              nnf_pack_bt_avx2_f64};

/* Mixed kernels. A k block of packed B (a vector of columns and
 * NNF_MIXED_EXTRA_MAX more) fills half of L1. */
#define NNF_MIXED_KC(bytes, vec) \
    NNF_ROUND_DOWN(NNF_L1D_BYTES / 2 / (((vec) + NNF_MIXED_EXTRA_MAX) * (bytes)), 16)
static const nnf_mixed_kernel mixed_avx512_f32 = {sizeof(float), 16, NNF_MIXED_KC(4, 16),
                                                  nnf_mixed_avx512_f32};
static const nnf_mixed_kernel mixed_avx512_f64 = {sizeof(double), 8, NNF_MIXED_KC(8, 8),
                                                  nnf_mixed_avx512_f64};
#endif

/* Return the dot kernel for the current SIMD level, or NULL. The AVX-512
 * kernels need two 512-bit FMAs per cycle to beat the AVX2 ones. */
static const nnf_dot_kernel *dot_kernel(size_t elem_size)
{
#ifdef NNF_X86_KERNELS
    if (nnf_simd_level() >= NNF_SIMD_AVX512 && nnf_fma512_full()) {
        return elem_size == sizeof(float) ? &dot_avx512_f32 : &dot_avx512_f64;
    }
    if (nnf_simd_level() >= NNF_SIMD_AVX2) {
        return elem_size == sizeof(float) ? &dot_avx2_f32 : &dot_avx2_f64;
    }
#endif
    (void)elem_size;
    return NULL;
}

/* Return the mixed kernel for the current SIMD level, or NULL. Like the
 * AVX-512 dot kernels, it needs two 512-bit FMAs per cycle.
 * NOTE: not measured on a CPU with one 512-bit FMA per cycle, such as
 * Zen 4, where it might still beat the AVX2 tiles. */
static const nnf_mixed_kernel *mixed_kernel(size_t elem_size)
{
#ifdef NNF_X86_KERNELS
    if (nnf_simd_level() >= NNF_SIMD_AVX512 && nnf_fma512_full()) {
        return elem_size == sizeof(float) ? &mixed_avx512_f32 : &mixed_avx512_f64;
    }
#endif
    (void)elem_size;
    return NULL;
}

/* Return 1 when C of n columns fits the mixed kernel mk: one vector of
 * columns and up to NNF_MIXED_EXTRA_MAX more. */
static int mixed_fits(const nnf_mixed_kernel *mk, nnf_int n)
{
    return mk != NULL && n >= mk->vec && n <= mk->vec + NNF_MIXED_EXTRA_MAX;
}

#define NNF_COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

const nnf_gemm_kernel *nnf_gemm_kernels_f32(int *count)
{
#ifdef NNF_X86_KERNELS
    if (nnf_simd_level() >= NNF_SIMD_AVX512) {
        *count = NNF_COUNT(kernels_avx512_f32);
        return kernels_avx512_f32;
    }
    if (nnf_simd_level() >= NNF_SIMD_AVX2) {
        *count = NNF_COUNT(kernels_avx2_f32);
        return kernels_avx2_f32;
    }
#endif
    *count = NNF_COUNT(kernels_ref_f32);
    return kernels_ref_f32;
}

const nnf_gemm_kernel *nnf_gemm_kernels_f64(int *count)
{
#ifdef NNF_X86_KERNELS
    if (nnf_simd_level() >= NNF_SIMD_AVX512) {
        *count = NNF_COUNT(kernels_avx512_f64);
        return kernels_avx512_f64;
    }
    if (nnf_simd_level() >= NNF_SIMD_AVX2) {
        *count = NNF_COUNT(kernels_avx2_f64);
        return kernels_avx2_f64;
    }
#endif
    *count = NNF_COUNT(kernels_ref_f64);
    return kernels_ref_f64;
}

/* ---------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------- */

typedef struct {
    const nnf_gemm_kernel *kern;
    nnf_int m, n, k;
    const void *alpha, *beta, *one;
    const char *a;
    nnf_int rs_a, cs_a;
    const char *b;
    nnf_int rs_b, cs_b;
    char *c;
    nnf_int rs_c, cs_c;
    const void *epilogue;
    char *b_packed;    /* one B panel per thread */
    char *a_packed;    /* one A block per thread */
    size_t b_bytes;    /* bytes of one B panel */
    size_t a_bytes;    /* bytes of one A block */
    nnf_int mc, kc, nc; /* block sizes for this product, at most MC, KC, NC */
    int split_m;       /* 1: threads split the rows of C; 0: the columns */
    int swapped;       /* 1: computing C^T = B^T A^T, so the epilogue swaps axes */
    int direct_a;      /* 1: full MR panels are read from A in place, not packed */
    int direct_b;      /* 1: full NR panels are read from B in place (cs_b == 1) */
    nnf_int chunk_cols; /* columns of B per chunk of the macro-kernel */
    const nnf_dot_kernel *dot; /* not NULL: the dot kernels compute C (gemm_dot_thread) */
    const nnf_mixed_kernel *mixed; /* not NULL: the mixed kernels compute C */
    char *bt_packed;   /* dot and mixed plans: one packed k block of Bt per thread */
    size_t bt_bytes;   /* bytes of one packed Bt block */
    nnf_int ld_bt;     /* row stride of packed Bt, kc rounded up to 64 bytes */
    char *bv_packed;   /* mixed plan: one packed k block of B's vector columns per thread */
    size_t bv_bytes;   /* bytes of one packed block of B's vector columns */
} gemm_plan;

/* Split `count` items into `parts` near-equal contiguous ranges; return the
 * range [*begin, *end) of part `index`. */
static void split_range(nnf_int count, int parts, int index, nnf_int *begin, nnf_int *end)
{
    nnf_int base = count / parts;
    nnf_int extra = count % parts;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}

static nnf_int min_int(nnf_int x, nnf_int y)
{
    return x < y ? x : y;
}

/* Run the micro-kernel, then on the last k block the epilogue, on the tile
 * at row ir and column jr of the block (rows from ic, columns from jc). */
static inline void run_tile(const gemm_plan *g, nnf_int ic, nnf_int mc, nnf_int jc, nnf_int nc,
                            nnf_int ir, nnf_int jr, nnf_int pc, nnf_int kc,
                            const char *a_packed, const char *b_packed, const void *beta,
                            int last_k_block)
{
    const nnf_gemm_kernel *kern = g->kern;
    const ptrdiff_t es = (ptrdiff_t)kern->elem_size;
    const int mr = kern->mr;
    const int nr = kern->nr;
    nnf_int n_cur = min_int(nr, nc - jr);
    nnf_int m_cur = min_int(mr, mc - ir);
    nnf_int i0 = ic + ir, j0 = jc + jr;
    const char *b_panel = b_packed + jr * kc * es;
    nnf_int rs_bp = nr;
    if (g->direct_b && n_cur == nr) {
        b_panel = g->b + (pc * g->rs_b + j0) * es;
        rs_bp = g->rs_b;
    }
    const char *a_panel = a_packed + ir * kc * es;
    nnf_int rs_ap = 1, cs_ap = mr;
    if (g->direct_a && m_cur == mr) {
        a_panel = g->a + (i0 * g->rs_a + pc * g->cs_a) * es;
        rs_ap = g->rs_a;
        cs_ap = g->cs_a;
    }
    char *c_tile = g->c + (i0 * g->rs_c + j0 * g->cs_c) * es;
    kern->ukr(m_cur, n_cur, kc, a_panel, rs_ap, cs_ap, b_panel, rs_bp, c_tile, g->rs_c, g->cs_c,
              g->alpha, beta);
    if (last_k_block && g->epilogue != NULL) {
        if (g->swapped) {
            kern->epilogue(n_cur, m_cur, j0, i0, c_tile, g->cs_c, g->rs_c, g->epilogue);
        } else {
            kern->epilogue(m_cur, n_cur, i0, j0, c_tile, g->rs_c, g->cs_c, g->epilogue);
        }
    }
}

/* Macro-kernel: run the tiles of one A block (mc rows from row ic) and the
 * columns [jr_begin, jr_end) of one B panel (nc columns from column jc) for
 * k block pc. Each A micro-panel runs along a chunk of g->chunk_cols
 * columns, so consecutive tiles are adjacent in a row-major C. */
static void macro_kernel(const gemm_plan *g, nnf_int ic, nnf_int mc, nnf_int jc, nnf_int nc,
                         nnf_int jr_begin, nnf_int jr_end, nnf_int pc, nnf_int kc,
                         const char *a_packed, const char *b_packed, const void *beta,
                         int last_k_block)
{
    const int mr = g->kern->mr;
    const int nr = g->kern->nr;
    for (nnf_int j0 = jr_begin; j0 < jr_end; j0 += g->chunk_cols) {
        nnf_int j1 = min_int(j0 + g->chunk_cols, jr_end);
        for (nnf_int ir = 0; ir < mc; ir += mr) {
            for (nnf_int jr = j0; jr < j1; jr += nr) {
                run_tile(g, ic, mc, jc, nc, ir, jr, pc, kc, a_packed, b_packed, beta,
                         last_k_block);
            }
        }
    }
}

/* Pack rows [ic, ic + mc) of A for k block pc. With direct_a only the last,
 * partial panel is packed, because the micro-kernel reads full ones in place. */
static void pack_a_block(const gemm_plan *g, nnf_int ic, nnf_int mc, nnf_int pc, nnf_int kc,
                         char *a_packed)
{
    const nnf_gemm_kernel *kern = g->kern;
    const ptrdiff_t es = (ptrdiff_t)kern->elem_size;
    nnf_int r0 = g->direct_a ? mc / kern->mr * kern->mr : 0;
    if (mc <= r0) {
        return;
    }
    const char *src = g->a + ((ic + r0) * g->rs_a + pc * g->cs_a) * es;
    kern->pack(mc - r0, kc, src, g->rs_a, g->cs_a, kern->mr, a_packed + r0 * kc * es);
}

/* Return the columns [*j0, *j1) of a B panel of nc columns whose NR panels
 * belong to thread tid of nt. */
static void b_panel_share(const gemm_plan *g, nnf_int nc, int tid, int nt, nnf_int *j0,
                          nnf_int *j1)
{
    const nnf_int nr = g->kern->nr;
    nnf_int q0, q1;
    split_range((nc + nr - 1) / nr, nt, tid, &q0, &q1);
    *j0 = q0 * nr;
    *j1 = min_int(q1 * nr, nc);
}

/* Pack the NR panels [j0, j1) of the B panel for columns [jc, jc + nc) and
 * k block pc (with direct_b, only the last, partial panel). */
static void pack_b_panels(const gemm_plan *g, nnf_int jc, nnf_int nc, nnf_int pc, nnf_int kc,
                          nnf_int j0, nnf_int j1, char *b_packed)
{
    const nnf_gemm_kernel *kern = g->kern;
    const ptrdiff_t es = (ptrdiff_t)kern->elem_size;
    if (g->direct_b && j0 < nc / kern->nr * kern->nr) {
        j0 = nc / kern->nr * kern->nr;
    }
    if (j1 <= j0) {
        return;
    }
    const char *src = g->b + (pc * g->rs_b + (jc + j0) * g->cs_b) * es;
    kern->pack(j1 - j0, kc, src, g->cs_b, g->rs_b, kern->nr, b_packed + j0 * kc * es);
}

/* The loop nest run by thread tid of a team of nt (nt may be 1). */
static void gemm_thread(const gemm_plan *g, int tid, int nt)
{
    const nnf_int m = g->m, n = g->n, k = g->k;
    const int mr = g->kern->mr;
    char *a_packed = g->a_packed + (size_t)tid * g->a_bytes;
    char *b_packed = g->b_packed + (size_t)tid * g->b_bytes;

    /* This thread's rows of C when the team splits them, else all rows. */
    nnf_int m_begin = 0, m_end = m;
    if (g->split_m) {
        nnf_int q0, q1;
        split_range((m + mr - 1) / mr, nt, tid, &q0, &q1);
        m_begin = q0 * mr;
        m_end = min_int(q1 * mr, m);
    }
    for (nnf_int jc = 0; jc < n; jc += g->nc) {
        nnf_int nc = min_int(g->nc, n - jc);
        /* This thread's columns of the B panel when the team splits them. */
        nnf_int j0 = 0, j1 = nc;
        if (!g->split_m) {
            b_panel_share(g, nc, tid, nt, &j0, &j1);
            if (j1 <= j0) {
                continue;
            }
        }
        nnf_int pc = 0;
        /* One pass with kc == 0 when k is 0, so that C still becomes beta * C
         * and the epilogue still runs. */
        do {
            nnf_int kc = min_int(g->kc, k - pc);
            const void *beta = pc == 0 ? g->beta : g->one;
            int last_k_block = pc + kc >= k;
            pack_b_panels(g, jc, nc, pc, kc, j0, j1, b_packed);
            for (nnf_int ic = m_begin; ic < m_end; ic += g->mc) {
                nnf_int mc = min_int(g->mc, m_end - ic);
                pack_a_block(g, ic, mc, pc, kc, a_packed);
                macro_kernel(g, ic, mc, jc, nc, j0, j1, pc, kc, a_packed, b_packed, beta,
                             last_k_block);
            }
            pc += kc;
        } while (pc < k);
    }
}

/* Return the rows of C per chunk of the dot and mixed plans, a multiple
 * of `rows`: a chunk's A block of kc steps fills about half of L1. */
static nnf_int row_chunk(nnf_int kc, ptrdiff_t es, nnf_int rows)
{
    nnf_int chunk = NNF_ROUND_DOWN(NNF_L1D_BYTES / 2 / ((kc > 0 ? kc : 1) * es), rows);
    return chunk > rows ? chunk : rows;
}

/* Run the epilogue on the m_cur rows of C from row i0 (c_row), all n
 * columns, for the dot and mixed plans. */
static void epilogue_rows(const gemm_plan *g, nnf_int i0, nnf_int m_cur, char *c_row)
{
    if (g->swapped) {
        g->kern->epilogue(g->n, m_cur, 0, i0, c_row, g->cs_c, g->rs_c, g->epilogue);
    } else {
        g->kern->epilogue(m_cur, g->n, i0, 0, c_row, g->rs_c, g->cs_c, g->epilogue);
    }
}

/* Copy the k block [pc, pc + kc) of B's columns into Bt, one row per column
 * of B with row stride ld_bt. */
#define NNF_DEFINE_PACK_BT(T, SUF)                                                           \
    static void pack_bt_##SUF(const gemm_plan *g, nnf_int pc, nnf_int kc, T *out)          \
    {                                                                                      \
        const nnf_int n = g->n, rs_b = g->rs_b, cs_b = g->cs_b, ld = g->ld_bt;             \
        const T *b = (const T *)g->b + pc * rs_b;                                          \
        for (nnf_int j = 0; j < n; j++) {                                                  \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                out[j * ld + p] = b[p * rs_b + j * cs_b];                                  \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_PACK_BT(float, f32)
NNF_DEFINE_PACK_BT(double, f64)

/* The dot plan run by thread tid of a team of nt: the thread's share of the
 * row tiles of C, one k block at a time. C's columns are cut into near-equal
 * groups of at most NNF_DOT_NR, and each kernel call runs the tiles of one
 * group over a chunk of rows. Unless B's columns are contiguous, each
 * thread packs the k block of Bt into its own buffer. */
static void gemm_dot_thread(const gemm_plan *g, int tid, int nt)
{
    const nnf_dot_kernel *dk = g->dot;
    const ptrdiff_t es = (ptrdiff_t)dk->elem_size;
    const nnf_int m = g->m, n = g->n, k = g->k;
    nnf_int t0, t1;
    const int rows = nnf_dot_rows(min_int(n, NNF_DOT_NR));
    split_range((m + rows - 1) / rows, nt, tid, &t0, &t1);
    const nnf_int i_begin = t0 * rows, i_end = min_int(t1 * rows, m);
    /* Column tiles [bounds[q], bounds[q + 1]), computed once: divisions in
     * the row loop cost as much as a float64 tile's lane sums. */
    const int groups = (int)((n + NNF_DOT_NR - 1) / NNF_DOT_NR);
    nnf_int bounds[NNF_DOT_MAX_N / NNF_DOT_NR + 1];
    for (int q = 0; q < groups; q++) {
        split_range(n, groups, q, &bounds[q], &bounds[q + 1]);
    }
    char *bt_packed = g->bt_packed + (size_t)tid * g->bt_bytes;
    if (i_end <= i_begin) {
        return;
    }
    nnf_int pc = 0;
    do {
        nnf_int kc = min_int(g->kc, k - pc);
        const void *beta = pc == 0 ? g->beta : g->one;
        int last_k_block = pc + kc >= k;
        const char *bt = g->b + pc * es;
        nnf_int rs_bt = g->cs_b;
        if (g->rs_b != 1) {
            if (g->cs_b == 1) {
                dk->pack_bt_rows(n, kc, g->b + pc * g->rs_b * es, g->rs_b, bt_packed, g->ld_bt);
            } else if (es == (ptrdiff_t)sizeof(float)) {
                pack_bt_f32(g, pc, kc, (float *)bt_packed);
            } else {
                pack_bt_f64(g, pc, kc, (double *)bt_packed);
            }
            bt = bt_packed;
            rs_bt = g->ld_bt;
        }
        /* Chunks of rows whose A block fills about half of L1, so that each
         * column group after the first reads it from L1. */
        const nnf_int chunk = row_chunk(kc, es, rows);
        for (nnf_int i0 = i_begin; i0 < i_end; i0 += chunk) {
            nnf_int m_cur = min_int(chunk, i_end - i0);
            const char *a = g->a + (i0 * g->rs_a + pc) * es;
            char *c_row = g->c + i0 * g->rs_c * es;
            for (int q = 0; q < groups; q++) {
                nnf_int j0 = bounds[q];
                dk->dot(m_cur, rows, bounds[q + 1] - j0, kc, a, g->rs_a, bt + j0 * rs_bt * es,
                        rs_bt, c_row + j0 * g->cs_c * es, g->rs_c, g->cs_c, g->alpha, beta);
            }
            if (last_k_block && g->epilogue != NULL) {
                epilogue_rows(g, i0, m_cur, c_row);
            }
        }
        pc += kc;
    } while (pc < k);
}

/* Pack the k block [pc, pc + kc) of B for the mixed plan. The first VEC
 * columns go row by row, with stride VEC, into bv. The columns after them
 * go into bt (unless NULL), one row of Bt each with stride ld_bt. */
#define NNF_DEFINE_PACK_MIXED(T, SUF, VEC)                                                   \
    static void pack_mixed_##SUF(const gemm_plan *g, nnf_int pc, nnf_int kc, T *bv, T *bt)  \
    {                                                                                      \
        const nnf_int rs_b = g->rs_b, cs_b = g->cs_b, ld = g->ld_bt;                       \
        const T *b = (const T *)g->b + pc * rs_b;                                          \
        if (cs_b == 1) {                                                                   \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                memcpy(bv + p * VEC, b + p * rs_b, VEC * sizeof(T));                       \
            }                                                                              \
        } else {                                                                           \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                for (nnf_int j = 0; j < VEC; j++) {                                        \
                    bv[p * VEC + j] = b[p * rs_b + j * cs_b];                              \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        if (bt != NULL) {                                                                  \
            for (nnf_int j = VEC; j < g->n; j++) {                                         \
                for (nnf_int p = 0; p < kc; p++) {                                         \
                    bt[(j - VEC) * ld + p] = b[p * rs_b + j * cs_b];                       \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_PACK_MIXED(float, f32, 16)
NNF_DEFINE_PACK_MIXED(double, f64, 8)

/* The mixed plan run by thread tid of a team of nt: the thread's share of
 * the row tiles of C, one k block at a time. Each thread packs B's vector
 * of columns into its own buffer, and its other columns too unless they
 * are contiguous along k. */
static void gemm_mixed_thread(const gemm_plan *g, int tid, int nt)
{
    const nnf_mixed_kernel *mk = g->mixed;
    const ptrdiff_t es = (ptrdiff_t)mk->elem_size;
    const nnf_int m = g->m, n = g->n, k = g->k;
    nnf_int t0, t1;
    split_range((m + NNF_MIXED_MR - 1) / NNF_MIXED_MR, nt, tid, &t0, &t1);
    const nnf_int i_begin = t0 * NNF_MIXED_MR, i_end = min_int(t1 * NNF_MIXED_MR, m);
    if (i_end <= i_begin) {
        return;
    }
    char *bv_packed = g->bv_packed + (size_t)tid * g->bv_bytes;
    char *bt_packed = g->bt_packed + (size_t)tid * g->bt_bytes;
    const int extra = (int)(n - mk->vec);
    nnf_int pc = 0;
    do {
        nnf_int kc = min_int(g->kc, k - pc);
        const void *beta = pc == 0 ? g->beta : g->one;
        int last_k_block = pc + kc >= k;
        const char *bt = g->b + (pc + mk->vec * g->cs_b) * es;
        nnf_int ld_bt = g->cs_b;
        void *bt_out = g->rs_b == 1 ? NULL : bt_packed;
        if (es == (ptrdiff_t)sizeof(float)) {
            pack_mixed_f32(g, pc, kc, (float *)bv_packed, (float *)bt_out);
        } else {
            pack_mixed_f64(g, pc, kc, (double *)bv_packed, (double *)bt_out);
        }
        if (bt_out != NULL) {
            bt = bt_packed;
            ld_bt = g->ld_bt;
        }
        /* Chunks of rows, so that the epilogue finds them in cache. */
        const nnf_int chunk = row_chunk(kc, es, NNF_MIXED_MR);
        for (nnf_int i0 = i_begin; i0 < i_end; i0 += chunk) {
            nnf_int m_cur = min_int(chunk, i_end - i0);
            char *c_row = g->c + i0 * g->rs_c * es;
            mk->run(m_cur, kc, extra, g->a + (i0 * g->rs_a + pc) * es, g->rs_a, bv_packed,
                    bt, ld_bt, c_row, g->rs_c, g->cs_c, g->alpha, beta);
            if (last_k_block && g->epilogue != NULL) {
                epilogue_rows(g, i0, m_cur, c_row);
            }
        }
        pc += kc;
    } while (pc < k);
}

/* Return the block size that cuts `total` into as few blocks of at most
 * `max_block` as possible, of near-equal sizes rounded up to a multiple of
 * `multiple` (max_block must be a multiple of it). Equal blocks avoid a last
 * block so thin that its C update costs more than its flops. */
static nnf_int balanced_block(nnf_int total, nnf_int max_block, nnf_int multiple)
{
    if (total <= 0) {
        return multiple;
    }
    nnf_int blocks = (total + max_block - 1) / max_block;
    nnf_int size = (total + blocks - 1) / blocks;
    size = (size + multiple - 1) / multiple * multiple;
    return size < max_block ? size : max_block;
}

/* Return the MR x NR tiles' padded area: the work the micro-kernel does. */
static double padded_area(const nnf_gemm_kernel *kern, nnf_int m, nnf_int n)
{
    double rows = (double)((m + kern->mr - 1) / kern->mr * kern->mr);
    double cols = (double)((n + kern->nr - 1) / kern->nr * kern->nr);
    return rows * cols;
}

/* Swap the roles of A and B so that the product computes C^T = B^T A^T. */
static void transpose_problem(gemm_plan *g)
{
    nnf_int t;
    t = g->m;
    g->m = g->n;
    g->n = t;
    const char *a = g->a;
    nnf_int rs_a = g->rs_a, cs_a = g->cs_a;
    g->a = g->b;
    g->rs_a = g->cs_b;
    g->cs_a = g->rs_b;
    g->b = a;
    g->rs_b = cs_a;
    g->cs_b = rs_a;
    t = g->rs_c;
    g->rs_c = g->cs_c;
    g->cs_c = t;
    g->swapped = !g->swapped;
}

/*
 * Packing an operand pays off when its micro-panels are reused many times.
 * Each B panel is used once per A panel and each A panel once per B panel.
 * So when the other side has few panels, the micro-kernel reads the operand
 * in place: A with any strides whose k steps are close enough (see
 * NNF_DIRECT_A_SPAN_BYTES), B only when its rows are contiguous. Edge
 * panels are still packed and zero-padded.
 */
static void choose_direct(const nnf_gemm_kernel *kern, nnf_int m, nnf_int n, nnf_int k,
                          nnf_int cs_a, nnf_int cs_b, int *direct_a, int *direct_b)
{
    nnf_int panels_m = (m + kern->mr - 1) / kern->mr;
    nnf_int panels_n = (min_int(n, kern->nc) + kern->nr - 1) / kern->nr;
    nnf_int max_panels = cs_a == 1 ? NNF_DIRECT_A_MAX_PANELS : NNF_DIRECT_A_MAX_PANELS / 2;
    double span = (double)min_int(k, kern->kc) * (double)(cs_a < 0 ? -cs_a : cs_a) *
                  (double)kern->elem_size;
    *direct_a = panels_n <= max_panels && (cs_a == 1 || span <= (double)NNF_DIRECT_A_SPAN_BYTES);
    *direct_b = cs_b == 1 && panels_m <= NNF_DIRECT_B_MAX_PANELS;
}

/* Return the estimated cycles to pack `count` elements whose layout along
 * the panel (inc_mn) and along k (inc_k) is given. A transposing copy (rows
 * contiguous along k) costs about twice a copy of adjacent values. */
static double pack_cycles(double count, nnf_int inc_mn, nnf_int inc_k)
{
    return count * (inc_k == 1 && inc_mn != 1 ? 1.0 : 0.5);
}

/*
 * Plan memo: the last NNF_PLAN_MEMO_SIZE plans each thread chose, keyed by
 * the kernel table, the sizes and the strides. A training loop repeats the
 * same few products, and estimating a plan over every tile shape took about
 * a tenth of a microsecond, which is 5% of a 128 x 10 x 32 product.
 */
#define NNF_PLAN_MEMO_SIZE 8

typedef struct {
    const nnf_gemm_kernel *kernels;
    nnf_int m, n, k, rs_a, cs_a, rs_b, cs_b;
    int index, swap, kind;
} plan_memo;

/* The kinds of plan: tiles (index, swap), the dot plan or the mixed plan. */
#define NNF_PLAN_TILES 0
#define NNF_PLAN_DOT 1
#define NNF_PLAN_MIXED 2

#ifdef _WIN32
static __declspec(thread) plan_memo plan_memos[NNF_PLAN_MEMO_SIZE];
static __declspec(thread) int plan_memo_next;
#else
static __thread plan_memo plan_memos[NNF_PLAN_MEMO_SIZE];
static __thread int plan_memo_next;
#endif

static int same_problem(const plan_memo *x, const plan_memo *y)
{
    return x->kernels == y->kernels && x->m == y->m && x->n == y->n && x->k == y->k &&
           x->rs_a == y->rs_a && x->cs_a == y->cs_a && x->rs_b == y->rs_b && x->cs_b == y->cs_b;
}

/* Return this thread's memo entry for the problem in key, or NULL. */
static const plan_memo *find_plan(const plan_memo *key)
{
    for (int i = 0; i < NNF_PLAN_MEMO_SIZE; i++) {
        if (same_problem(&plan_memos[i], key)) {
            return &plan_memos[i];
        }
    }
    return NULL;
}

/* Store key, with its plan, in place of this thread's oldest entry. */
static void remember_plan(const plan_memo *key)
{
    plan_memos[plan_memo_next] = *key;
    plan_memo_next = (plan_memo_next + 1) % NNF_PLAN_MEMO_SIZE;
}

/*
 * Set *best_index_out, *best_swap_out and *best_kind_out to the tile shape
 * and orientation, or the dot or mixed plan, with the least estimated time
 * in cycles. A tile plan's time counts the micro-kernel's padded tiles (2
 * FMAs of one ymm per cycle, or of one zmm where nnf_fma512_full() returns
 * 1), packing, and for C^T the stores of the transposed tiles.
 * Computing C^T = B^T A^T puts the long side of a narrow C (such as a
 * 10-class output layer) under NR, where it fills whole tiles.
 * NOTE: the per-element costs are estimates fitted to a few products on a
 * Zen 4 core (benchmarks/gemm.py); they choose among correct plans only.
 */
static void estimate_plan(const gemm_plan *g, const nnf_gemm_kernel *kernels, int count,
                          const nnf_dot_kernel *dot, const nnf_mixed_kernel *mixed,
                          int *best_index_out, int *best_swap_out, int *best_kind_out)
{
    double best = -1.0;
    int best_index = 0, best_swap = 0, best_kind = NNF_PLAN_TILES;
    const int fma512_full = nnf_fma512_full();
    for (int swap = 0; swap < 2; swap++) {
        nnf_int m = swap ? g->n : g->m;
        nnf_int n = swap ? g->m : g->n;
        nnf_int rs_a = swap ? g->cs_b : g->rs_a, cs_a = swap ? g->rs_b : g->cs_a;
        nnf_int rs_b = swap ? g->cs_a : g->rs_b, cs_b = swap ? g->rs_a : g->cs_b;
        for (int index = 0; index < count; index++) {
            const nnf_gemm_kernel *kern = &kernels[index];
            double lanes_per_cycle = 2.0 * (kern->zmm && fma512_full ? 64.0 : 32.0) /
                                     (double)kern->elem_size;
            int direct_a, direct_b;
            choose_direct(kern, m, n, g->k, cs_a, cs_b, &direct_a, &direct_b);
            double tile_cost = kern->tile_cost;
            if (direct_a && rs_a != 1 && kern->mr > NNF_STRIDED_A_MR &&
                kern->elem_size == sizeof(double)) {
                tile_cost *= NNF_STRIDED_A_TALL_COST;
            }
            double cost = padded_area(kern, m, n) * (double)g->k * tile_cost / lanes_per_cycle;
            /* Packing writes whole panels, zeros included. Operands read in
             * place still have their edge panel packed. */
            double rows_a = (double)(direct_a ? (m % kern->mr ? kern->mr : 0)
                                              : (m + kern->mr - 1) / kern->mr * kern->mr);
            double cols_b = (double)(direct_b ? (n % kern->nr ? kern->nr : 0)
                                              : (n + kern->nr - 1) / kern->nr * kern->nr);
            double n_blocks = (double)((n + kern->nc - 1) / kern->nc);
            cost += n_blocks * pack_cycles(rows_a * (double)g->k, rs_a, cs_a);
            cost += pack_cycles(cols_b * (double)g->k, cs_b, rs_b);
            if (swap && kern->column_lanes > 0) {
                nnf_int lanes = kern->column_lanes;
                cost += NNF_COLUMN_STORE_COST * (double)((m + lanes - 1) / lanes * lanes) *
                        (double)n;
            } else if (swap) {
                cost += NNF_SCALAR_STORE_COST * (double)m * (double)n;
            }
            if (best < 0.0 || cost < best) {
                best = cost;
                best_index = index;
                best_swap = swap;
                best_kind = NNF_PLAN_TILES;
            }
        }
        if (dot != NULL && cs_a == 1 && n <= NNF_DOT_MAX_N) {
            double steps = (double)((g->k + dot->vec - 1) / dot->vec);
            double cost = (double)m * (double)n *
                          (steps * NNF_DOT_STEP_COST / 2.0 + dot->sum_cost);
            if (rs_b != 1) {
                double count = (double)n * (double)g->k;
                cost += cs_b == 1 ? count * NNF_DOT_PACK_ROWS_COST
                                  : pack_cycles(count, cs_b, rs_b);
            }
            if (cost < best) {
                best = cost;
                best_swap = swap;
                best_kind = NNF_PLAN_DOT;
            }
        }
        if (cs_a == 1 && mixed_fits(mixed, n)) {
            double extra = (double)(n - mixed->vec);
            double steps = (double)((g->k + mixed->vec - 1) / mixed->vec);
            double cost = (double)m * (((double)g->k + extra * steps) * NNF_MIXED_STEP_COST / 2.0 +
                                       extra * NNF_MIXED_SUM_COST);
            cost += pack_cycles((double)mixed->vec * (double)g->k, cs_b, rs_b);
            if (rs_b != 1) {
                /* The dot columns are gathered, one strided read per value. */
                cost += extra * (double)g->k;
            }
            if (cost < best) {
                best = cost;
                best_swap = swap;
                best_kind = NNF_PLAN_MIXED;
            }
        }
    }
    *best_index_out = best_index;
    *best_swap_out = best_swap;
    *best_kind_out = best_kind;
}

/* Choose the plan for the product in g (estimate_plan), or take it from
 * this thread's memo, and set g up for it. */
static void choose_kernel(gemm_plan *g, const nnf_gemm_kernel *kernels, int count)
{
    const size_t es = kernels[0].elem_size;
    const nnf_dot_kernel *dot = dot_kernel(es);
    const nnf_mixed_kernel *mixed = mixed_kernel(es);
    plan_memo key = {kernels, g->m, g->n, g->k, g->rs_a, g->cs_a, g->rs_b, g->cs_b, 0, 0, 0};
    const plan_memo *plan = find_plan(&key);
    if (plan == NULL) {
        estimate_plan(g, kernels, count, dot, mixed, &key.index, &key.swap, &key.kind);
        remember_plan(&key);
        plan = &key;
    }
    g->kern = &kernels[plan->index];
    g->dot = plan->kind == NNF_PLAN_DOT ? dot : NULL;
    g->mixed = plan->kind == NNF_PLAN_MIXED ? mixed : NULL;
    if (plan->swap) {
        transpose_problem(g);
    }
}

/* Return the team size for the product in g: one thread below the flop
 * threshold, and at most `parts` threads, one per unit of the split. */
static int team_size(const gemm_plan *g, size_t elem_size, nnf_int parts, int n_threads)
{
    double f64_flops = 2.0 * (double)g->m * (double)g->n * (double)g->k * (double)elem_size / 8.0;
    int nt = nnf_parallel_threads(n_threads, f64_flops, NNF_GEMM_PARALLEL_MIN_FLOPS);
    return nt > parts ? (int)parts : nt;
}

/* Run body(g, tid, nt) on each thread of a team of nt, or on the calling
 * thread alone when nt is 1. */
static void run_team(const gemm_plan *g, int nt, void (*body)(const gemm_plan *, int, int))
{
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        body(g, omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#endif
    body(g, 0, 1);
}

/* Run the dot plan: rows of C split among threads, k in blocks of at most
 * the kernel's KC, each thread with its own packed Bt block. */
static int gemm_dot_run(gemm_plan *g, int n_threads)
{
    const nnf_dot_kernel *dk = g->dot;
    const size_t es = dk->elem_size;
    const nnf_int m = g->m, n = g->n, k = g->k;
    const int rows = nnf_dot_rows(min_int(n, NNF_DOT_NR));
    int nt = team_size(g, es, (m + rows - 1) / rows, n_threads);
    g->kc = balanced_block(k, dk->kc, 16);
    g->ld_bt = (min_int(g->kc, k) + 15) / 16 * 16;
    g->bt_bytes = g->rs_b == 1 ? 0 : round_up_64((size_t)(n * g->ld_bt) * es);
    g->bt_packed = NULL;
    if (g->bt_bytes > 0) {
        g->bt_packed = (char *)nnf_workspace(NNF_WORKSPACE_GEMM, (size_t)nt * g->bt_bytes);
        if (g->bt_packed == NULL) {
            return NNF_ENOMEM;
        }
    }
    run_team(g, nt, gemm_dot_thread);
    return NNF_OK;
}

/* Run the mixed plan: rows of C split among threads, k in blocks of at
 * most the kernel's KC, each thread with its own packed blocks of B. */
static int gemm_mixed_run(gemm_plan *g, int n_threads)
{
    const nnf_mixed_kernel *mk = g->mixed;
    const size_t es = mk->elem_size;
    const nnf_int m = g->m, n = g->n, k = g->k;
    int nt = team_size(g, es, (m + NNF_MIXED_MR - 1) / NNF_MIXED_MR, n_threads);
    g->kc = balanced_block(k, mk->kc, 16);
    nnf_int kc_max = min_int(g->kc, k);
    g->ld_bt = (kc_max + 15) / 16 * 16;
    g->bv_bytes = round_up_64((size_t)(kc_max * mk->vec) * es);
    g->bt_bytes = g->rs_b == 1 ? 0 : round_up_64((size_t)((n - mk->vec) * g->ld_bt) * es);
    char *ws = (char *)nnf_workspace(NNF_WORKSPACE_GEMM,
                                     (size_t)nt * (g->bv_bytes + g->bt_bytes));
    if (ws == NULL) {
        return NNF_ENOMEM;
    }
    g->bv_packed = ws;
    g->bt_packed = ws + (size_t)nt * g->bv_bytes;
    run_team(g, nt, gemm_mixed_thread);
    return NNF_OK;
}

/* Run the product in g. The plan is chosen by estimated time unless `forced`
 * names a tile kernel of the table (0 <= forced < count), which then runs
 * on C, or on C^T when forced_swap is set. */
static int gemm_run(gemm_plan *g, const nnf_gemm_kernel *kernels, int count, int n_threads,
                    int forced, int forced_swap)
{
    if (g->m <= 0 || g->n <= 0) {
        return NNF_OK;
    }
    if (forced >= 0) {
        g->kern = &kernels[forced];
        g->dot = NULL;
        g->mixed = NULL;
        if (forced_swap) {
            transpose_problem(g);
        }
    } else {
        choose_kernel(g, kernels, count);
    }
    if (g->dot != NULL) {
        return gemm_dot_run(g, n_threads);
    }
    if (g->mixed != NULL) {
        return gemm_mixed_run(g, n_threads);
    }
    const nnf_gemm_kernel *kern = g->kern;
    const size_t es = kern->elem_size;
    const nnf_int m = g->m, n = g->n, k = g->k;

    nnf_int panels_m = (m + kern->mr - 1) / kern->mr;
    nnf_int panels_n = (min_int(n, kern->nc) + kern->nr - 1) / kern->nr;
    choose_direct(kern, m, n, k, g->cs_a, g->cs_b, &g->direct_a, &g->direct_b);
    g->split_m = panels_m >= panels_n;
    int nt = team_size(g, es, g->split_m ? panels_m : panels_n, n_threads);

    /* Block sizes: even splits of k, n and each thread's rows. MC and NC stay
     * multiples of MR and NR, so the tile grid and the k blocks, and with
     * them every rounding, depend on m, n and k only, not on the thread count. */
    g->kc = balanced_block(k, kern->kc, 4);
    g->nc = balanced_block(n, kern->nc, kern->nr);
    nnf_int rows = g->split_m ? (panels_m + nt - 1) / nt * kern->mr : m;
    g->mc = balanced_block(rows, kern->mc, kern->mr);
    nnf_int kc_chunk = k < 1 ? 1 : min_int(g->kc, k);
    nnf_int chunk = NNF_ROUND_DOWN((nnf_int)(NNF_B_CHUNK_BYTES / ((size_t)kc_chunk * es)),
                                   kern->nr);
    g->chunk_cols = chunk > kern->nr ? chunk : kern->nr;

    /* Workspace: one B panel per thread, then one A block per thread. */
    nnf_int kc_max = min_int(g->kc, k);
    g->b_bytes = round_up_64((size_t)(kc_max * g->nc) * es);
    g->a_bytes = round_up_64((size_t)(kc_max * g->mc) * es);
    char *ws = (char *)nnf_workspace(NNF_WORKSPACE_GEMM,
                                     (size_t)nt * (g->b_bytes + g->a_bytes));
    if (ws == NULL) {
        return NNF_ENOMEM;
    }
    g->b_packed = ws;
    g->a_packed = ws + (size_t)nt * g->b_bytes;

    run_team(g, nt, gemm_thread);
    return NNF_OK;
}

/* Fill in the sizes, scalars and operands of a plan. */
static void set_operands(gemm_plan *g, nnf_int m, nnf_int n, nnf_int k, const void *alpha,
                         const void *a, nnf_int rs_a, nnf_int cs_a, const void *b, nnf_int rs_b,
                         nnf_int cs_b, const void *beta, const void *one, void *c, nnf_int rs_c,
                         nnf_int cs_c)
{
    g->m = m;
    g->n = n;
    g->k = k;
    g->alpha = alpha;
    g->beta = beta;
    g->one = one;
    g->a = (const char *)a;
    g->rs_a = rs_a;
    g->cs_a = cs_a;
    g->b = (const char *)b;
    g->rs_b = rs_b;
    g->cs_b = cs_b;
    g->c = (char *)c;
    g->rs_c = rs_c;
    g->cs_c = cs_c;
}

int nnf_gemm_f32(nnf_int m, nnf_int n, nnf_int k, float alpha, const float *a, nnf_int rs_a,
                 nnf_int cs_a, const float *b, nnf_int rs_b, nnf_int cs_b, float beta, float *c,
                 nnf_int rs_c, nnf_int cs_c, const nnf_epilogue_f32 *epilogue, int n_threads)
{
    const float one = 1.0f;
    gemm_plan g = {0};
    int count;
    const nnf_gemm_kernel *kernels = nnf_gemm_kernels_f32(&count);
    if (m > 0 && m <= NNF_GEMV_MAX_ROWS && n > 0 && k > 0 && (cs_b == 1 || n == 1)) {
        nnf_gemv_rows_f32(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, beta, c, rs_c, cs_c,
                           epilogue);
        return NNF_OK;
    }
    set_operands(&g, m, n, k, &alpha, a, rs_a, cs_a, b, rs_b, cs_b, &beta, &one, c, rs_c,
                 cs_c);
    g.epilogue = epilogue;
    return gemm_run(&g, kernels, count, n_threads, -1, 0);
}

int nnf_gemm_f64(nnf_int m, nnf_int n, nnf_int k, double alpha, const double *a, nnf_int rs_a,
                 nnf_int cs_a, const double *b, nnf_int rs_b, nnf_int cs_b, double beta,
                 double *c, nnf_int rs_c, nnf_int cs_c, const nnf_epilogue_f64 *epilogue,
                 int n_threads)
{
    const double one = 1.0;
    gemm_plan g = {0};
    int count;
    const nnf_gemm_kernel *kernels = nnf_gemm_kernels_f64(&count);
    if (m > 0 && m <= NNF_GEMV_MAX_ROWS && n > 0 && k > 0 && (cs_b == 1 || n == 1)) {
        nnf_gemv_rows_f64(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, beta, c, rs_c, cs_c,
                           epilogue);
        return NNF_OK;
    }
    set_operands(&g, m, n, k, &alpha, a, rs_a, cs_a, b, rs_b, cs_b, &beta, &one, c, rs_c,
                 cs_c);
    g.epilogue = epilogue;
    return gemm_run(&g, kernels, count, n_threads, -1, 0);
}

const char *nnf_gemm_tile_kernel(size_t elem_size, int index, int *mr, int *nr)
{
    int count;
    const nnf_gemm_kernel *kernels = elem_size == sizeof(float) ? nnf_gemm_kernels_f32(&count)
                                                                : nnf_gemm_kernels_f64(&count);
    if (index < 0 || index >= count) {
        return NULL;
    }
    *mr = kernels[index].mr;
    *nr = kernels[index].nr;
    return kernels[index].name;
}

int nnf_gemm_with_tiles(size_t elem_size, int index, int on_transpose, nnf_int m, nnf_int n,
                        nnf_int k, const void *alpha, const void *a, nnf_int rs_a,
                        nnf_int cs_a, const void *b, nnf_int rs_b, nnf_int cs_b,
                        const void *beta, void *c, nnf_int rs_c, nnf_int cs_c, int n_threads)
{
    static const float one_f32 = 1.0f;
    static const double one_f64 = 1.0;
    int count;
    const nnf_gemm_kernel *kernels = elem_size == sizeof(float) ? nnf_gemm_kernels_f32(&count)
                                                                : nnf_gemm_kernels_f64(&count);
    if ((index < 0 && index != NNF_GEMM_DOT_INDEX && index != NNF_GEMM_MIXED_INDEX) ||
        index >= count) {
        return NNF_EINVAL;
    }
    gemm_plan g = {0};
    const void *one = (const void *)&one_f64;
    if (elem_size == sizeof(float)) {
        one = &one_f32;
    }
    set_operands(&g, m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, one, c, rs_c, cs_c);
    if (index >= 0) {
        return gemm_run(&g, kernels, count, n_threads, index, on_transpose);
    }
    if (on_transpose) {
        transpose_problem(&g);
    }
    if (index == NNF_GEMM_DOT_INDEX) {
        g.dot = dot_kernel(elem_size);
        if (g.dot == NULL || g.n > NNF_DOT_MAX_N) {
            return NNF_EINVAL;
        }
    } else {
        g.mixed = mixed_kernel(elem_size);
        if (!mixed_fits(g.mixed, g.n)) {
            return NNF_EINVAL;
        }
    }
    if (g.m <= 0 || g.n <= 0) {
        return NNF_OK;
    }
    if (g.cs_a != 1 && g.k > 1) {
        return NNF_EINVAL;
    }
    if (g.k <= 0) {
        /* Only C = beta * C is left, which the chosen plan does. */
        g.dot = NULL;
        g.mixed = NULL;
        return gemm_run(&g, kernels, count, n_threads, -1, 0);
    }
    g.kern = &kernels[0];
    return g.dot != NULL ? gemm_dot_run(&g, n_threads) : gemm_mixed_run(&g, n_threads);
}

int nnf_gemm_plan(size_t elem_size, nnf_int m, nnf_int n, nnf_int k, nnf_int rs_a,
                  nnf_int cs_a, nnf_int rs_b, nnf_int cs_b, char *out, size_t size)
{
    int count;
    const nnf_gemm_kernel *kernels = elem_size == sizeof(float) ? nnf_gemm_kernels_f32(&count)
                                                                : nnf_gemm_kernels_f64(&count);
    if (m > 0 && m <= NNF_GEMV_MAX_ROWS && n > 0 && k > 0 && (cs_b == 1 || n == 1)) {
        snprintf(out, size, "rows");
        return NNF_OK;
    }
    if (m <= 0 || n <= 0) {
        snprintf(out, size, "empty");
        return NNF_OK;
    }
    gemm_plan g = {0};
    g.m = m;
    g.n = n;
    g.k = k;
    g.rs_a = rs_a;
    g.cs_a = cs_a;
    g.rs_b = rs_b;
    g.cs_b = cs_b;
    g.rs_c = n;
    g.cs_c = 1;
    choose_kernel(&g, kernels, count);
    const char *side = g.swapped ? " on C^T" : "";
    if (g.dot != NULL) {
        snprintf(out, size, "dot%s", side);
    } else if (g.mixed != NULL) {
        snprintf(out, size, "mixed%s", side);
    } else {
        snprintf(out, size, "tiles %dx%d%s", g.kern->mr, g.kern->nr, side);
    }
    return NNF_OK;
}
