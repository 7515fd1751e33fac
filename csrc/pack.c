/*
 * Packing of A and B into the micro-panels the micro-kernels read.
 *
 * An mn x kc block of X, element (i, p) at x[i * inc_mn + p * inc_k], becomes
 * ceil(mn / width) micro-panels. Panel q holds rows q * width ... and stores
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
 * k per panel would fetch each k row of X once per panel; looping over all
 * panels per k step would write to addresses width * kc elements apart, which
 * fall in one L1 set.
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
        case 16:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, 16, out);                          \
            break;                                                                         \
        default:                                                                           \
            pack_block_##SUF(mn, kc, xt, inc_mn, inc_k, width, out);                       \
            break;                                                                         \
        }                                                                                  \
    }

NNF_DEFINE_PACK(float, f32)
NNF_DEFINE_PACK(double, f64)
