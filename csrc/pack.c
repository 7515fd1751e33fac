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
#include "gemm.h"

/*
 * One generic body, instantiated per dtype. `width` is a compile-time
 * constant at each call site below, so the compiler unrolls the r loops.
 */
#define NNF_DEFINE_PACK_PANEL(T, SUF)                                                        \
    static inline void pack_panel_##SUF(nnf_int rows, nnf_int kc, const T *x,              \
                                        nnf_int inc_mn, nnf_int inc_k, const int width,    \
                                        T *restrict out)                                   \
    {                                                                                      \
        if (rows == width && inc_mn == 1) {                                                \
            for (nnf_int p = 0; p < kc; p++) {                                             \
                const T *xp = x + p * inc_k;                                               \
                for (int r = 0; r < width; r++) {                                          \
                    out[p * width + r] = xp[r];                                            \
                }                                                                          \
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

/* Dispatch on the panel width so that every width in gemm.h is unrolled. */
#define NNF_DEFINE_PACK(T, SUF)                                                              \
    void nnf_pack_##SUF(nnf_int mn, nnf_int kc, const void *x_, nnf_int inc_mn,            \
                        nnf_int inc_k, int width, void *packed_)                           \
    {                                                                                      \
        const T *x = (const T *)x_;                                                        \
        T *packed = (T *)packed_;                                                          \
        for (nnf_int i = 0; i < mn; i += width) {                                          \
            nnf_int rows = mn - i < width ? mn - i : width;                                \
            const T *xi = x + i * inc_mn;                                                  \
            T *out = packed + i * kc;                                                      \
            switch (width) {                                                               \
            case 4:                                                                        \
                pack_panel_##SUF(rows, kc, xi, inc_mn, inc_k, 4, out);                     \
                break;                                                                     \
            case 6:                                                                        \
                pack_panel_##SUF(rows, kc, xi, inc_mn, inc_k, 6, out);                     \
                break;                                                                     \
            case 8:                                                                        \
                pack_panel_##SUF(rows, kc, xi, inc_mn, inc_k, 8, out);                     \
                break;                                                                     \
            case 14:                                                                       \
                pack_panel_##SUF(rows, kc, xi, inc_mn, inc_k, 14, out);                    \
                break;                                                                     \
            case 16:                                                                       \
                pack_panel_##SUF(rows, kc, xi, inc_mn, inc_k, 16, out);                    \
                break;                                                                     \
            case 32:                                                                       \
                pack_panel_##SUF(rows, kc, xi, inc_mn, inc_k, 32, out);                    \
                break;                                                                     \
            default:                                                                       \
                pack_panel_##SUF(rows, kc, xi, inc_mn, inc_k, width, out);                 \
                break;                                                                     \
            }                                                                              \
        }                                                                                  \
    }

NNF_DEFINE_PACK(float, f32)
NNF_DEFINE_PACK(double, f64)
