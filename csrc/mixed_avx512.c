/*
 * AVX-512 mixed kernels: C with one vector of columns and up to 2 more (8 to
 * 10 float64 columns, 16 to 18 float32 ones), such as the 10-class output
 * layer's X W. The first vector of columns takes broadcast FMAs, as in the
 * 8 x 16 tiles, and the columns after it take dot products along k, as in
 * the dot kernels. A tile kernel pads 10 float64 columns to 16 lanes, so
 * it spends 16 lane-FMAs on each 10 results. This one spends 10, plus the
 * lane sums of the 2 dot columns once per tile. With no dot columns it is
 * a tile of one vector's width, which the tile tables lack.
 *
 * On one Intel Xeon core (family 6, model 207) float64 256 x 10 x 128 took
 * 9.6 us on these kernels, B packing included, and 12.6 us on 8 x 16
 * tiles. Both read A in place, each row contiguous along k. Float64
 * 256 x 8 x 128 took 7.6 us, against 9.9 us on the dot kernels.
 */
#include <string.h>

#include "gemm.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#include "lanes_avx512.h"

/*
 * One tile of NNF_MIXED_MR rows over the k steps [p0, p1). extra and tail
 * are compile-time constants at each instantiation, so the accumulators
 * stay in registers. There is one vector per row for the broadcast columns
 * and one per row and dot column, row-major with zero entries past them
 * for LANE_SUMS. With 2 dot columns that makes 24 accumulators. Without `tail`, p1 - p0
 * is a multiple of VEC and the loop runs whole vectors of k steps. With
 * it, p1 - p0 is below VEC and masked loads read the last steps. The two
 * are separate calls because the tail's code beside the loop made GCC
 * spill an accumulator in the loop: float64 256 x 10 x 128 took 10.1 us
 * that way and 9.6 us this way. bv's rows are VEC apart, because with a
 * stride held in a register GCC spilled the row offsets too.
 */
#define NNF_DEFINE_MIXED_TILE(NAME, T, VEC, VTYPE, LOADU, MASK_T, MASK, MASKZ_LOADU, ZERO, \
                              FMADD, MUL, SET1, STORE, STOREU, LANE_SUMS)                  \
    static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void NAME(              \
        const int extra, const int tail, nnf_int p0, nnf_int p1, const T *a,               \
        nnf_int rs_a, const T *bv, const T *bt, nnf_int ld_bt, T *c, nnf_int rs_c,         \
        nnf_int cs_c, T alpha, T beta)                                                     \
    {                                                                                      \
        VTYPE acc[NNF_MIXED_MR];                                                           \
        VTYPE dot[NNF_MIXED_EXTRA_MAX * NNF_MIXED_MR + VEC];                               \
        _Pragma("GCC unroll 8") for (int i = 0; i < NNF_MIXED_MR; i++)                     \
        {                                                                                  \
            acc[i] = ZERO();                                                               \
        }                                                                                  \
        _Pragma("GCC unroll 32") for (int t = 0; t < NNF_MIXED_EXTRA_MAX * NNF_MIXED_MR + VEC; \
                                      t++)                                                 \
        {                                                                                  \
            dot[t] = ZERO();                                                               \
        }                                                                                  \
        if (!tail) {                                                                       \
            for (nnf_int p = p0; p < p1; p += VEC) {                                       \
                _Pragma("GCC unroll 16") for (int q = 0; q < VEC; q++)                     \
                {                                                                          \
                    const VTYPE b = LOADU(bv + (p + q) * VEC);                             \
                    _Pragma("GCC unroll 8") for (int i = 0; i < NNF_MIXED_MR; i++)         \
                    {                                                                      \
                        acc[i] = FMADD(SET1(a[i * rs_a + p + q]), b, acc[i]);              \
                    }                                                                      \
                }                                                                          \
                VTYPE b[NNF_MIXED_EXTRA_MAX];                                              \
                _Pragma("GCC unroll 2") for (int e = 0; e < extra; e++)                    \
                {                                                                          \
                    b[e] = LOADU(bt + e * ld_bt + p);                                      \
                }                                                                          \
                /* Each row of A is loaded once for all the dot columns, in a  */          \
                /* register: as memory operands of the FMAs, the loads limited */          \
                /* the loop.                                                    */         \
                _Pragma("GCC unroll 8") for (int i = 0; i < NNF_MIXED_MR; i++)             \
                {                                                                          \
                    VTYPE x = LOADU(a + i * rs_a + p);                                     \
                    __asm__("" : "+v"(x));                                                 \
                    _Pragma("GCC unroll 2") for (int e = 0; e < extra; e++)                \
                    {                                                                      \
                        dot[i * extra + e] = FMADD(x, b[e], dot[i * extra + e]);           \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        } else {                                                                           \
            _Pragma("GCC unroll 16") for (int q = 0; q < VEC - 1; q++)                     \
            {                                                                              \
                if (p0 + q < p1) {                                                         \
                    const VTYPE b = LOADU(bv + (p0 + q) * VEC);                            \
                    _Pragma("GCC unroll 8") for (int i = 0; i < NNF_MIXED_MR; i++)         \
                    {                                                                      \
                        acc[i] = FMADD(SET1(a[i * rs_a + p0 + q]), b, acc[i]);             \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            const MASK_T mask = MASK(p1 - p0);                                             \
            _Pragma("GCC unroll 2") for (int e = 0; e < extra; e++)                        \
            {                                                                              \
                const VTYPE b = MASKZ_LOADU(mask, bt + e * ld_bt + p0);                    \
                _Pragma("GCC unroll 8") for (int i = 0; i < NNF_MIXED_MR; i++)             \
                {                                                                          \
                    dot[i * extra + e] = FMADD(MASKZ_LOADU(mask, a + i * rs_a + p0), b,    \
                                               dot[i * extra + e]);                        \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        const VTYPE valpha = SET1(alpha);                                                  \
        if (cs_c == 1) {                                                                   \
            _Pragma("GCC unroll 8") for (int i = 0; i < NNF_MIXED_MR; i++)                 \
            {                                                                              \
                VTYPE v = MUL(valpha, acc[i]);                                             \
                if (beta != (T)0) {                                                        \
                    v = FMADD(SET1(beta), LOADU(c + i * rs_c), v);                         \
                }                                                                          \
                STOREU(c + i * rs_c, v);                                                   \
            }                                                                              \
        } else {                                                                           \
            T row[VEC] __attribute__((aligned(64)));                                       \
            for (int i = 0; i < NNF_MIXED_MR; i++) {                                       \
                STORE(row, MUL(valpha, acc[i]));                                           \
                for (int j = 0; j < VEC; j++) {                                            \
                    T *cij = c + i * rs_c + j * cs_c;                                      \
                    *cij = beta == (T)0 ? row[j] : row[j] + beta * *cij;                   \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        T sums[NNF_MIXED_EXTRA_MAX * NNF_MIXED_MR + VEC] __attribute__((aligned(64)));     \
        _Pragma("GCC unroll 2") for (int t = 0; t < NNF_MIXED_MR * extra; t += VEC)        \
        {                                                                                  \
            STORE(sums + t, MUL(valpha, LANE_SUMS(dot + t)));                              \
        }                                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < NNF_MIXED_MR; i++)                     \
        {                                                                                  \
            _Pragma("GCC unroll 2") for (int e = 0; e < extra; e++)                        \
            {                                                                              \
                T *cij = c + i * rs_c + (VEC + e) * cs_c;                                  \
                const T s = sums[i * extra + e];                                           \
                *cij = beta == (T)0 ? s : s + beta * *cij;                                 \
            }                                                                              \
        }                                                                                  \
    }

/* Run tiles with EXTRA dot columns from row i while they fit in m. Each
 * tile runs the whole vectors of k steps, then the steps left over, which
 * add to C (`beta_one` is 1 in the dtype). The body is inlined, so the row
 * loop makes no call per tile. */
#define NNF_MIXED_ROWS(TILE, EXTRA)                                                        \
    for (; i + NNF_MIXED_MR <= m; i += NNF_MIXED_MR) {                                     \
        TILE(EXTRA, 0, 0, kv, a + i * rs_a, rs_a, bv, bt, ld_bt, c + i * rs_c, rs_c,       \
             cs_c, alpha, beta);                                                           \
        if (kv < kc) {                                                                     \
            TILE(EXTRA, 1, kv, kc, a + i * rs_a, rs_a, bv, bt, ld_bt, c + i * rs_c,        \
                 rs_c, cs_c, alpha, beta_one);                                             \
        }                                                                                  \
    }

/* Compute the whole tiles with EXTRA dot columns. Each dot-column count
 * has a function of its own, so that GCC allocates its registers apart
 * from the other counts. */
#define NNF_DEFINE_MIXED_FULL(NAME, T, VEC, TILE, EXTRA)                                   \
    static __attribute__((noinline)) NNF_TARGET_AVX512 void NAME(                          \
        nnf_int m, nnf_int kc, const T *a, nnf_int rs_a, const T *bv, const T *bt,         \
        nnf_int ld_bt, T *c, nnf_int rs_c, nnf_int cs_c, T alpha, T beta)                  \
    {                                                                                      \
        const nnf_int kv = kc / VEC * VEC;                                                 \
        const T beta_one = 1;                                                              \
        nnf_int i = 0;                                                                     \
        NNF_MIXED_ROWS(TILE, EXTRA)                                                        \
    }

/* Steps of k per copy of the rows left over (see NNF_DEFINE_MIXED). */
#define NNF_MIXED_PAD_KC 128

/*
 * Compute C with whole tiles of NNF_MIXED_MR rows (FULL0, FULL1 or FULL2
 * for 0, 1 or 2 dot columns), then the rows left over. Those run as one
 * whole tile on copies: their rows of A, padded with zero rows, in chunks
 * of NNF_MIXED_PAD_KC k steps, and their rows of C. Shorter tiles would
 * each need their own unrolled body, and seven row counts took 11 of the
 * 13 seconds GCC spent on this file, in each of the extensions it is
 * built into. The copies cost some speed: float64 37 x 10 x 300 took 3.85
 * us this way and 3.15 us with a 5-row tile.
 */
#define NNF_DEFINE_MIXED(NAME, T, VEC, TILE, FULL0, FULL1, FULL2)                          \
    NNF_DEFINE_MIXED_FULL(FULL0, T, VEC, TILE, 0)                                          \
    NNF_DEFINE_MIXED_FULL(FULL1, T, VEC, TILE, 1)                                          \
    NNF_DEFINE_MIXED_FULL(FULL2, T, VEC, TILE, 2)                                          \
    NNF_TARGET_AVX512 void NAME(nnf_int m, nnf_int kc, int extra, const void *a_,          \
                                nnf_int rs_a, const void *bv_, const void *bt_,            \
                                nnf_int ld_bt, void *c_, nnf_int rs_c, nnf_int cs_c,       \
                                const void *alpha_, const void *beta_)                     \
    {                                                                                      \
        const T *a = (const T *)a_;                                                        \
        const T *bv = (const T *)bv_;                                                      \
        const T *bt = (const T *)bt_;                                                      \
        T *c = (T *)c_;                                                                    \
        const T alpha = *(const T *)alpha_;                                                \
        const T beta = *(const T *)beta_;                                                  \
        const T beta_one = 1;                                                              \
        void (*full)(nnf_int, nnf_int, const T *, nnf_int, const T *, const T *, nnf_int,  \
                     T *, nnf_int, nnf_int, T, T) = FULL2;                                 \
        if (extra == 0) {                                                                  \
            full = FULL0;                                                                  \
        } else if (extra == 1) {                                                           \
            full = FULL1;                                                                  \
        }                                                                                  \
        const nnf_int whole = m / NNF_MIXED_MR * NNF_MIXED_MR;                             \
        full(whole, kc, a, rs_a, bv, bt, ld_bt, c, rs_c, cs_c, alpha, beta);               \
        if (whole == m) {                                                                  \
            return;                                                                        \
        }                                                                                  \
        const nnf_int rows = m - whole, width = VEC + extra;                               \
        const nnf_int ld_c = VEC + NNF_MIXED_EXTRA_MAX;                                    \
        T a_pad[NNF_MIXED_MR * NNF_MIXED_PAD_KC] __attribute__((aligned(64)));             \
        T c_pad[NNF_MIXED_MR * (VEC + NNF_MIXED_EXTRA_MAX)] __attribute__((aligned(64)));  \
        const T *a_rows = a + whole * rs_a;                                                \
        T *c_rows = c + whole * rs_c;                                                      \
        for (nnf_int r = 0; r < NNF_MIXED_MR; r++) {                                       \
            for (nnf_int j = 0; j < width; j++) {                                          \
                c_pad[r * ld_c + j] =                                                      \
                    r < rows && beta != (T)0 ? c_rows[r * rs_c + j * cs_c] : (T)0;         \
            }                                                                              \
        }                                                                                  \
        const nnf_int pad_kc = kc < NNF_MIXED_PAD_KC ? kc : NNF_MIXED_PAD_KC;              \
        for (nnf_int r = rows; r < NNF_MIXED_MR; r++) {                                    \
            memset(a_pad + r * NNF_MIXED_PAD_KC, 0, (size_t)pad_kc * sizeof(T));           \
        }                                                                                  \
        nnf_int p0 = 0;                                                                    \
        do {                                                                               \
            const nnf_int len = kc - p0 < pad_kc ? kc - p0 : pad_kc;                       \
            for (nnf_int r = 0; r < rows; r++) {                                           \
                memcpy(a_pad + r * NNF_MIXED_PAD_KC, a_rows + r * rs_a + p0,               \
                       (size_t)len * sizeof(T));                                           \
            }                                                                              \
            full(NNF_MIXED_MR, len, a_pad, NNF_MIXED_PAD_KC, bv + p0 * VEC, bt + p0,       \
                 ld_bt, c_pad, ld_c, 1, alpha, p0 == 0 ? beta : beta_one);                 \
            p0 += len;                                                                     \
        } while (p0 < kc);                                                                 \
        for (nnf_int r = 0; r < rows; r++) {                                               \
            for (nnf_int j = 0; j < width; j++) {                                          \
                c_rows[r * rs_c + j * cs_c] = c_pad[r * ld_c + j];                         \
            }                                                                              \
        }                                                                                  \
    }

#define NNF_MASKZ_LOADU_F32(mask, p) _mm512_maskz_loadu_ps((mask), (p))
#define NNF_MASKZ_LOADU_F64(mask, p) _mm512_maskz_loadu_pd((mask), (p))

NNF_DEFINE_MIXED_TILE(mixed_tile_avx512_f32, float, 16, __m512, _mm512_loadu_ps, __mmask16,
                      lane_mask16, NNF_MASKZ_LOADU_F32, _mm512_setzero_ps, _mm512_fmadd_ps,
                      _mm512_mul_ps, _mm512_set1_ps, _mm512_store_ps, _mm512_storeu_ps,
                      lane_sums16_f32)
NNF_DEFINE_MIXED_TILE(mixed_tile_avx512_f64, double, 8, __m512d, _mm512_loadu_pd, __mmask8,
                      lane_mask8, NNF_MASKZ_LOADU_F64, _mm512_setzero_pd, _mm512_fmadd_pd,
                      _mm512_mul_pd, _mm512_set1_pd, _mm512_store_pd, _mm512_storeu_pd,
                      lane_sums8_f64)

NNF_DEFINE_MIXED(nnf_mixed_avx512_f32, float, 16, mixed_tile_avx512_f32,
                 mixed_full0_avx512_f32, mixed_full1_avx512_f32, mixed_full2_avx512_f32)
NNF_DEFINE_MIXED(nnf_mixed_avx512_f64, double, 8, mixed_tile_avx512_f64,
                 mixed_full0_avx512_f64, mixed_full1_avx512_f64, mixed_full2_avx512_f64)

#endif /* NNF_X86_KERNELS */
