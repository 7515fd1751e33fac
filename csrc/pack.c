/*
 * Packing of A and B into the micro-panels the micro-kernels read.
 *
 * An mn x kc block of X, element (i, p) at x[i * inc_mn + p * inc_k], becomes
 * ceil(mn / width) micro-panels. Panel q contains rows q * width ... and stores
 * them k-major: packed[q * width * kc + p * width + r]. Rows past mn in the
 * last panel are zero, so the micro-kernel always computes full tiles.
 *
 * Packing absorbs every layout: a transposed, Fortran-ordered or strided
 * operand only changes inc_mn and inc_k. Two layouts get their own loop
 * because they are the common ones: inc_mn == 1 (each k step copies `width`
 * adjacent values) and inc_k == 1 (each row is contiguous along k).
 */
#include <string.h>

#include "gemm.h"

/*
 * One generic body, instantiated per dtype. `width` is a compile-time
 * constant at each call site below, so the compiler unrolls the r loops.
 */
#define NNF_DEFINE_PACK_PANEL(T, SUF)                                                        \
    static inline void pack_panel_##SUF(nnf_int rows, nnf_int kc, const T *restrict x,     \
                                        nnf_int inc_mn, nnf_int inc_k, const int width,    \
                                        T *restrict out)                                   \
    {                                                                                      \
        if (rows == width && inc_mn == 1) {                                                \
            /* A fixed-size memcpy, which compilers inline as vector moves. */             \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                memcpy(out + p * width, x + p * inc_k, (size_t)width * sizeof(T));         \
            }                                                                              \
        } else if (rows == width && inc_k == 1) {                                          \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                for (int r = 0; r < width; r++) {                                          \
                    out[p * width + r] = x[r * inc_mn + p];                                \
                }                                                                          \
            }                                                                              \
        } else if (inc_mn == 1) {                                                          \
            /* An edge panel of adjacent values: zero each k step, then copy. */           \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                T *dst = out + p * width;                                                  \
                const T *src = x + p * inc_k;                                              \
                for (int r = 0; r < width; r++) {                                          \
                    dst[r] = (T)0;                                                         \
                }                                                                          \
                for (int r = 0; r < rows; r++) {                                           \
                    dst[r] = src[r];                                                       \
                }                                                                          \
            }                                                                              \
        } else {                                                                           \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                for (int r = 0; r < width; r++) {                                          \
                    out[p * width + r] = r < rows ? x[r * inc_mn + p * inc_k] : (T)0;      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_PACK_PANEL(float, f32)
NNF_DEFINE_PACK_PANEL(double, f64)

/*
 * Pack a whole mn x kc block. Full panels of a block whose rows are adjacent
 * (inc_mn == 1) are copied NNF_PACK_K_CHUNK k steps at a time across all
 * panels: the chunk's k rows of X stay in L1 while every panel takes its
 * part, so X is read from memory once, in contiguous runs. Looping over all
 * k per panel would fetch each k row of X once per panel. Looping over all
 * panels per k step would write to addresses width * kc elements apart,
 * which fall in one L1 set.
 */
#define NNF_PACK_K_CHUNK 16

#define NNF_DEFINE_PACK_BLOCK(T, SUF)                                                        \
    static inline __attribute__((always_inline)) void pack_block_##SUF(                    \
        nnf_int mn, nnf_int kc, const T *restrict x, nnf_int inc_mn, nnf_int inc_k,        \
        const int width, T *restrict packed)                                               \
    {                                                                                      \
        nnf_int done = 0;                                                                  \
        if (inc_mn == 1 && mn >= width) {                                                  \
            nnf_int panels = mn / width;                                                   \
            for (nnf_int p0 = 0; p0 < kc; p0 += NNF_PACK_K_CHUNK) {                        \
                nnf_int p1 = p0 + NNF_PACK_K_CHUNK < kc ? p0 + NNF_PACK_K_CHUNK : kc;      \
                for (nnf_int q = 0; q < panels; q++) {                                     \
                    const T *xq = x + q * width;                                           \
                    T *out = packed + q * width * kc;                                      \
                    for (nnf_int p = p0; p < p1; p++) {                                    \
                        memcpy(out + p * width, xq + p * inc_k, (size_t)width * sizeof(T)); \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            done = panels * width;                                                         \
        }                                                                                  \
        for (nnf_int i = done; i < mn; i += width) {                                       \
            nnf_int rows = mn - i < width ? mn - i : width;                                \
            pack_panel_##SUF(rows, kc, x + i * inc_mn, inc_mn, inc_k, width,               \
                             packed + i * kc);                                             \
        }                                                                                  \
    }

NNF_DEFINE_PACK_BLOCK(float, f32)
NNF_DEFINE_PACK_BLOCK(double, f64)

/* Dispatch on the panel width so that every width in gemm.h is unrolled. */
#define NNF_DEFINE_PACK(T, SUF)                                                              \
    void nnf_pack_##SUF(nnf_int mn, nnf_int kc, const void *x, nnf_int inc_mn,             \
                        nnf_int inc_k, int width, void *packed)                            \
    {                                                                                      \
        const T *xt = (const T *)x;                                                        \
        T *out = (T *)packed;                                                              \
        switch (width) {                                                                   \
        case 4:                                                                            \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 4, out);                           \
            break;                                                                         \
        case 5:                                                                            \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 5, out);                           \
            break;                                                                         \
        case 6:                                                                            \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 6, out);                           \
            break;                                                                         \
        case 8:                                                                            \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 8, out);                           \
            break;                                                                         \
        case 12:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 12, out);                          \
            break;                                                                         \
        case 16:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 16, out);                          \
            break;                                                                         \
        case 10:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 10, out);                          \
            break;                                                                         \
        case 24:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 24, out);                          \
            break;                                                                         \
        case 32:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 32, out);                          \
            break;                                                                         \
        case 48:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 48, out);                          \
            break;                                                                         \
        default:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, width, out);                       \
            break;                                                                         \
        }                                                                                  \
    }

NNF_DEFINE_PACK(float, f32)
NNF_DEFINE_PACK(double, f64)

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#include "lanes_avx2.h"
#include "transpose_avx2.h"

/*
 * AVX2 packing of panels whose rows are contiguous along k (inc_k == 1, a
 * row-major A or a transposed B): a register transpose turns 4 (float64) or
 * 8 (float32) k steps of each group of rows into one store per k step,
 * instead of one scalar load and store per element. Rows left over after the
 * groups of 8 and 4, and k steps after the last full chunk, are copied one
 * element at a time. The last panel contains `rows` rows, fewer than `width`,
 * and zeros after them.
 */
static NNF_TARGET_AVX2 void pack_transposed_f64(int rows, nnf_int kc, const double *x,
                                                nnf_int inc_mn, int width, double *out)
{
    const int rows4 = rows / 4 * 4;
    nnf_int p = 0;
    for (; p + 4 <= kc; p += 4) {
        for (int r = 0; r < rows4; r += 4) {
            __m256d v[4];
            #pragma GCC unroll 8
            for (int i = 0; i < 4; i++) {
                v[i] = _mm256_loadu_pd(x + (r + i) * inc_mn + p);
            }
            transpose4_f64(v);
            #pragma GCC unroll 8
            for (int q = 0; q < 4; q++) {
                _mm256_storeu_pd(out + (p + q) * width + r, v[q]);
            }
        }
        for (int r = rows4; r < width; r++) {
            for (int q = 0; q < 4; q++) {
                out[(p + q) * width + r] = r < rows ? x[r * inc_mn + p + q] : 0.0;
            }
        }
    }
    for (; p < kc; p++) {
        for (int r = 0; r < width; r++) {
            out[p * width + r] = r < rows ? x[r * inc_mn + p] : 0.0;
        }
    }
}

/* Transpose 8 k steps of 8 rows of x into 8 k steps of the panel at o. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void transpose8_store_f32(
    const float *x, nnf_int inc_mn, float *o, nnf_int width)
{
    __m256 v[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        v[i] = _mm256_loadu_ps(x + i * inc_mn);
    }
    transpose8_f32(v);
    #pragma GCC unroll 8
    for (int q = 0; q < 8; q++) {
        _mm256_storeu_ps(o + q * width, v[q]);
    }
}

static NNF_TARGET_AVX2 void transpose4_f32(const float *x, nnf_int inc_mn, float *o,
                                           nnf_int width)
{
    __m128 r0 = _mm_loadu_ps(x);
    __m128 r1 = _mm_loadu_ps(x + inc_mn);
    __m128 r2 = _mm_loadu_ps(x + 2 * inc_mn);
    __m128 r3 = _mm_loadu_ps(x + 3 * inc_mn);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(o, r0);
    _mm_storeu_ps(o + width, r1);
    _mm_storeu_ps(o + 2 * width, r2);
    _mm_storeu_ps(o + 3 * width, r3);
}

static NNF_TARGET_AVX2 void pack_transposed_f32(int rows, nnf_int kc, const float *x,
                                                nnf_int inc_mn, int width, float *out)
{
    const int rows8 = rows / 8 * 8;
    const int rows4 = rows / 4 * 4;
    nnf_int p = 0;
    for (; p + 8 <= kc; p += 8) {
        for (int r = 0; r < rows8; r += 8) {
            transpose8_store_f32(x + r * inc_mn + p, inc_mn, out + p * width + r, width);
        }
        if (rows4 > rows8) {
            transpose4_f32(x + rows8 * inc_mn + p, inc_mn, out + p * width + rows8, width);
            transpose4_f32(x + rows8 * inc_mn + p + 4, inc_mn, out + (p + 4) * width + rows8,
                           width);
        }
        for (int r = rows4; r < width; r++) {
            for (int q = 0; q < 8; q++) {
                out[(p + q) * width + r] = r < rows ? x[r * inc_mn + p + q] : 0.0f;
            }
        }
    }
    for (; p < kc; p++) {
        for (int r = 0; r < width; r++) {
            out[p * width + r] = r < rows ? x[r * inc_mn + p] : 0.0f;
        }
    }
}

/*
 * The last, partial panel of a block whose rows are adjacent (inc_mn == 1),
 * for a width of whole vectors (the B panels). Each k step is `rows`
 * adjacent values. Masked loads read them and leave the other lanes zero,
 * and width / VEC whole stores write the step. The generic loop zeroes and
 * copies one value at a time, which cost more than the micro-kernel itself
 * on products with a short k block.
 */
#define NNF_PACK_EDGE_MAX_VECS 6

#define NNF_DEFINE_PACK_EDGE_AVX2(T, SUF, VEC, MASK, MASKLOAD, STOREU)                        \
    static NNF_TARGET_AVX2 void pack_edge_rows_##SUF(int rows, nnf_int kc, const T *x,     \
                                                     nnf_int inc_k, int width, T *out)     \
    {                                                                                      \
        const int vecs = width / VEC;                                                      \
        __m256i mask[NNF_PACK_EDGE_MAX_VECS];                                              \
        for (int v = 0; v < vecs; v++) {                                                   \
            int live = rows - v * VEC;                                                     \
            if (live < 0) {                                                                \
                live = 0;                                                                  \
            }                                                                              \
            if (live > VEC) {                                                              \
                live = VEC;                                                                \
            }                                                                              \
            mask[v] = MASK(live);                                                          \
        }                                                                                  \
        for (nnf_int p = 0; p < kc; p++) {                                                 \
            const T *src = x + p * inc_k;                                                  \
            T *dst = out + p * width;                                                      \
            for (int v = 0; v < vecs; v++) {                                               \
                STOREU(dst + v * VEC, MASKLOAD(src + v * VEC, mask[v]));                   \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_PACK_EDGE_AVX2(float, f32, 8, lane_mask32, _mm256_maskload_ps,
                          _mm256_storeu_ps)
NNF_DEFINE_PACK_EDGE_AVX2(double, f64, 4, lane_mask64, _mm256_maskload_pd,
                          _mm256_storeu_pd)

#define NNF_DEFINE_PACK_AVX2(T, SUF, VEC)                                                    \
    void nnf_pack_avx2_##SUF(nnf_int mn, nnf_int kc, const void *x, nnf_int inc_mn,        \
                             nnf_int inc_k, int width, void *packed)                       \
    {                                                                                      \
        const T *xt = (const T *)x;                                                        \
        T *out = (T *)packed;                                                              \
        nnf_int full = mn / width * width;                                                 \
        if (inc_mn == 1 && full < mn && width % VEC == 0 &&                                \
            width <= NNF_PACK_EDGE_MAX_VECS * VEC) {                                       \
            if (full > 0) {                                                                \
                nnf_pack_##SUF(full, kc, x, inc_mn, inc_k, width, packed);                 \
            }                                                                              \
            pack_edge_rows_##SUF((int)(mn - full), kc, xt + full, inc_k, width,            \
                                 out + full * kc);                                         \
            return;                                                                        \
        }                                                                                  \
        if (inc_k != 1 || inc_mn == 1) {                                                   \
            nnf_pack_##SUF(mn, kc, x, inc_mn, inc_k, width, packed);                       \
            return;                                                                        \
        }                                                                                  \
        for (nnf_int i = 0; i < mn; i += width) {                                          \
            int rows = (int)(mn - i < width ? mn - i : width);                             \
            pack_transposed_##SUF(rows, kc, xt + i * inc_mn, inc_mn, width, out + i * kc); \
        }                                                                                  \
    }

NNF_DEFINE_PACK_AVX2(float, f32, 8)
NNF_DEFINE_PACK_AVX2(double, f64, 4)

#endif /* NNF_X86_KERNELS */
