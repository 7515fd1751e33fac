/*
 * AVX2+FMA dot kernels for narrow products: C tiles of up to 2 x NNF_DOT_NR
 * NNF_DOT_NR whose elements are dot products of rows contiguous along k.
 *
 * The tile kernels in ukernel_avx2.c put the columns of C in vector lanes, so
 * a C of 10 columns fills 10 of 16 float32 lanes (10 of 12 float64). Here
 * the lanes run along k instead: each element of C has its own accumulator
 * of VEC partial sums, summed across lanes once its k block ends. That needs
 * A rows contiguous along k (read in place) and B columns contiguous along
 * k (gemm.c packs them as the rows of Bt unless B already has them so).
 *
 * A 2 x 6 tile uses 12 accumulators, two A vectors and one Bt vector, 15 of
 * the 16 ymm registers. A 2 x 5 tile still keeps 10 independent FMA chains,
 * more than the 8 that cover the FMA latency on two pipes. C with 1 to 3
 * columns gets taller tiles (8 x 1, 4 x 2, 3 x 3; nnf_dot_rows), which keep
 * 8 or 9 chains. The last k steps
 * of a row that is not a multiple of VEC use masked loads, which read no
 * memory in the masked lanes.
 *
 * Each element's sum has the same order whatever the tile shape: lanes
 * accumulate k steps in order, then the lanes are added pairwise, first
 * neighbours, then pairs of pairs, then the two 128-bit halves. The result
 * therefore depends only on m, n and k, not on how the rows are split among
 * threads.
 */
#include "gemm.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#include "dot_body.h"
#include "lanes_avx2.h"
#include "transpose_avx2.h"

/* Sum each of v[0..7] across its lanes; lane i of the result is v[i]'s sum. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 __m256 lane_sums8_f32(
    const __m256 *v)
{
    __m256 h01 = _mm256_hadd_ps(v[0], v[1]);
    __m256 h23 = _mm256_hadd_ps(v[2], v[3]);
    __m256 h45 = _mm256_hadd_ps(v[4], v[5]);
    __m256 h67 = _mm256_hadd_ps(v[6], v[7]);
    __m256 g0 = _mm256_hadd_ps(h01, h23);
    __m256 g1 = _mm256_hadd_ps(h45, h67);
    return _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20),
                         _mm256_permute2f128_ps(g0, g1, 0x31));
}

/* Sum each of v[0..3] across its lanes; lane i of the result is v[i]'s sum. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 __m256d lane_sums4_f64(
    const __m256d *v)
{
    __m256d h01 = _mm256_hadd_pd(v[0], v[1]);
    __m256d h23 = _mm256_hadd_pd(v[2], v[3]);
    return _mm256_add_pd(_mm256_permute2f128_pd(h01, h23, 0x20),
                         _mm256_permute2f128_pd(h01, h23, 0x31));
}

/*
 * Store alpha times the lane sums of an mr x nr tile (acc in row-major
 * order) to rows of C with unit column stride, for beta zero. Each row's
 * sums leave one vector of lane sums through whole and partial stores.
 */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void store_sums_f32(
    const int mr, const int nr, const __m256 *acc, float *c, nnf_int rs_c, float alpha)
{
    const __m256 valpha = _mm256_set1_ps(alpha);
    for (int i = 0; i < mr; i++) {
        __m256 group[8];
        for (int t = 0; t < 8; t++) {
            group[t] = t < nr ? acc[i * nr + t] : _mm256_setzero_ps();
        }
        store_lanes_f32(c + i * rs_c, _mm256_mul_ps(valpha, lane_sums8_f32(group)), nr);
    }
}

/* The float64 version: a row's first 4 sums go out as one vector, and the
 * columns past 4 of all rows (at most 4 values) share one more vector. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void store_sums_f64(
    const int mr, const int nr, const __m256d *acc, double *c, nnf_int rs_c, double alpha)
{
    const __m256d valpha = _mm256_set1_pd(alpha);
    __m256d rest[4];
    int n_rest = 0;
    for (int i = 0; i < mr; i++) {
        if (nr >= 4) {
            _mm256_storeu_pd(c + i * rs_c, _mm256_mul_pd(valpha, lane_sums4_f64(acc + i * nr)));
            for (int j = 4; j < nr; j++) {
                rest[n_rest++] = acc[i * nr + j];
            }
        } else {
            __m256d group[4];
            for (int t = 0; t < 4; t++) {
                group[t] = t < nr ? acc[i * nr + t] : _mm256_setzero_pd();
            }
            store_lanes_f64(c + i * rs_c, _mm256_mul_pd(valpha, lane_sums4_f64(group)), nr);
        }
    }
    if (n_rest > 0) {
        for (int t = n_rest; t < 4; t++) {
            rest[t] = _mm256_setzero_pd();
        }
        double sums[4] __attribute__((aligned(32)));
        _mm256_store_pd(sums, _mm256_mul_pd(valpha, lane_sums4_f64(rest)));
        int t = 0;
        for (int i = 0; i < mr; i++) {
            for (int j = 4; j < nr; j++) {
                c[i * rs_c + j] = sums[t++];
            }
        }
    }
}

/* Keep v in a register: without this GCC folds the Bt load into each of the
 * tile's FMAs, which loads it once per row and makes the loop load-bound. */
#define NNF_IN_REGISTER_YMM(v) __asm__("" : "+x"(v))

#define NNF_MASKLOAD_F32(p, mask) _mm256_maskload_ps((p), (mask))
#define NNF_MASKLOAD_F64(p, mask) _mm256_maskload_pd((p), (mask))

NNF_DEFINE_DOT_TILE(NNF_TARGET_AVX2, dot_tile_avx2_f32, float, 8, __m256, _mm256_loadu_ps,
                    __m256i, lane_mask32, NNF_MASKLOAD_F32, _mm256_setzero_ps,
                    _mm256_fmadd_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_store_ps,
                    lane_sums8_f32, store_sums_f32, NNF_IN_REGISTER_YMM)
NNF_DEFINE_DOT_TILE(NNF_TARGET_AVX2, dot_tile_avx2_f64, double, 4, __m256d, _mm256_loadu_pd,
                    __m256i, lane_mask64, NNF_MASKLOAD_F64, _mm256_setzero_pd,
                    _mm256_fmadd_pd, _mm256_mul_pd, _mm256_set1_pd, _mm256_store_pd,
                    lane_sums4_f64, store_sums_f64, NNF_IN_REGISTER_YMM)

NNF_DEFINE_DOT(NNF_TARGET_AVX2, nnf_dot_avx2_f32, float, dot_tile_avx2_f32)
NNF_DEFINE_DOT(NNF_TARGET_AVX2, nnf_dot_avx2_f64, double, dot_tile_avx2_f64)

/*
 * Bt packing from a B with unit column stride. Each VEC x VEC block is
 * loaded as rows of B, transposed in registers and stored as rows of Bt.
 * A last group of fewer than VEC columns is read with masked loads. The k
 * steps past the last whole block are copied one value at a time. `whole`
 * is a compile-time constant at each call, 1 when the group has VEC columns.
 */
#define NNF_DEFINE_PACK_BT_GROUP(T, SUF, VEC, VTYPE, LOADU, MASK, MASKLOAD, STOREU, TRANSPOSE) \
    static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void pack_bt_group_##SUF( \
        const int whole, int width, nnf_int kc, const T *b, nnf_int rs_b, T *bt,           \
        nnf_int ld_bt)                                                                     \
    {                                                                                      \
        const __m256i mask = MASK(width);                                                  \
        nnf_int p = 0;                                                                     \
        for (; p + VEC <= kc; p += VEC) {                                                  \
            VTYPE r[VEC];                                                                  \
            _Pragma("GCC unroll 8") for (int i = 0; i < VEC; i++)                          \
            {                                                                              \
                const T *src = b + (p + i) * rs_b;                                         \
                r[i] = whole ? LOADU(src) : MASKLOAD(src, mask);                           \
            }                                                                              \
            TRANSPOSE(r);                                                                  \
            _Pragma("GCC unroll 8") for (int j = 0; j < VEC; j++)                          \
            {                                                                              \
                if (whole || j < width) {                                                  \
                    STOREU(bt + j * ld_bt + p, r[j]);                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (; p < kc; p++) {                                                              \
            for (int j = 0; j < width; j++) {                                              \
                bt[j * ld_bt + p] = b[p * rs_b + j];                                       \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    NNF_TARGET_AVX2 void nnf_pack_bt_avx2_##SUF(nnf_int n, nnf_int kc, const void *b_,     \
                                                nnf_int rs_b, void *bt_, nnf_int ld_bt)    \
    {                                                                                      \
        const T *b = (const T *)b_;                                                        \
        T *bt = (T *)bt_;                                                                  \
        nnf_int j0 = 0;                                                                    \
        for (; j0 + VEC <= n; j0 += VEC) {                                                 \
            pack_bt_group_##SUF(1, VEC, kc, b + j0, rs_b, bt + j0 * ld_bt, ld_bt);         \
        }                                                                                  \
        if (j0 < n) {                                                                      \
            pack_bt_group_##SUF(0, (int)(n - j0), kc, b + j0, rs_b, bt + j0 * ld_bt,       \
                                ld_bt);                                                    \
        }                                                                                  \
    }

NNF_DEFINE_PACK_BT_GROUP(float, f32, 8, __m256, _mm256_loadu_ps, lane_mask32, NNF_MASKLOAD_F32,
                         _mm256_storeu_ps, transpose8_f32)
NNF_DEFINE_PACK_BT_GROUP(double, f64, 4, __m256d, _mm256_loadu_pd, lane_mask64,
                         NNF_MASKLOAD_F64, _mm256_storeu_pd, transpose4_f64)

#endif
