/*
 * AVX-512 dot kernels: the tiles of dot_avx2.c (dot_body.h) on zmm
 * registers, 16 float32 or 8 float64 k steps per FMA.
 *
 * gemm.c uses them where nnf_fma512_full() reports two 512-bit FMAs per
 * cycle, so that a k step of a tile takes half the cycles of the AVX2
 * kernel's. On one Intel Xeon core (family 6, model 207) float32
 * 256 x 10 x 128 took 7.5 us on these kernels and 8.5 us on the AVX2 ones.
 *
 * The lane sums add the lanes of each element in the same order whatever
 * its place in the tile, so the result does not depend on how the rows are
 * split among threads.
 */
#include "gemm.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

#include "dot_body.h"
#include "lanes_avx512.h"

/*
 * Store alpha times the lane sums of an mr x nr tile (acc in row-major
 * order, VEC zero entries past it) to rows of C with unit column stride,
 * for beta zero. The sums of VEC accumulators at a time go to a local
 * array, and each row of C takes its nr values with one masked store.
 */
#define NNF_DEFINE_STORE_SUMS_AVX512(NAME, T, VEC, VTYPE, LANE_SUMS, SET1, MUL, STORE, MASK, \
                                     MASKZ_LOADU, MASK_STOREU)                             \
    static inline __attribute__((always_inline)) NNF_TARGET_AVX512 void NAME(              \
        const int mr, const int nr, const VTYPE *acc, T *c, nnf_int rs_c, T alpha)         \
    {                                                                                      \
        T sums[2 * NNF_DOT_NR + VEC] __attribute__((aligned(64)));                         \
        const VTYPE valpha = SET1(alpha);                                                  \
        _Pragma("GCC unroll 2") for (int t = 0; t < mr * nr; t += VEC)                     \
        {                                                                                  \
            STORE(sums + t, MUL(valpha, LANE_SUMS(acc + t)));                              \
        }                                                                                  \
        _Pragma("GCC unroll 8") for (int i = 0; i < mr; i++)                               \
        {                                                                                  \
            MASK_STOREU(c + i * rs_c, MASK(nr), MASKZ_LOADU(MASK(nr), sums + i * nr));     \
        }                                                                                  \
    }

NNF_DEFINE_STORE_SUMS_AVX512(store_sums16_f32, float, 16, __m512, lane_sums16_f32,
                             _mm512_set1_ps, _mm512_mul_ps, _mm512_store_ps, lane_mask16,
                             _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps)
NNF_DEFINE_STORE_SUMS_AVX512(store_sums8_f64, double, 8, __m512d, lane_sums8_f64,
                             _mm512_set1_pd, _mm512_mul_pd, _mm512_store_pd, lane_mask8,
                             _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd)

/* Keep v in a register, any of the 32 zmm (see NNF_IN_REGISTER_YMM). */
#define NNF_IN_REGISTER_ZMM(v) __asm__("" : "+v"(v))

#define NNF_MASKLOAD_ZMM_F32(p, mask) _mm512_maskz_loadu_ps((mask), (p))
#define NNF_MASKLOAD_ZMM_F64(p, mask) _mm512_maskz_loadu_pd((mask), (p))

NNF_DEFINE_DOT_TILE(NNF_TARGET_AVX512, dot_tile_avx512_f32, float, 16, __m512,
                    _mm512_loadu_ps, __mmask16, lane_mask16, NNF_MASKLOAD_ZMM_F32,
                    _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_set1_ps,
                    _mm512_store_ps, lane_sums16_f32, store_sums16_f32, NNF_IN_REGISTER_ZMM)
NNF_DEFINE_DOT_TILE(NNF_TARGET_AVX512, dot_tile_avx512_f64, double, 8, __m512d,
                    _mm512_loadu_pd, __mmask8, lane_mask8, NNF_MASKLOAD_ZMM_F64,
                    _mm512_setzero_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_set1_pd,
                    _mm512_store_pd, lane_sums8_f64, store_sums8_f64, NNF_IN_REGISTER_ZMM)

NNF_DEFINE_DOT(NNF_TARGET_AVX512, nnf_dot_avx512_f32, float, dot_tile_avx512_f32)
NNF_DEFINE_DOT(NNF_TARGET_AVX512, nnf_dot_avx512_f64, double, dot_tile_avx512_f64)

#endif /* NNF_X86_KERNELS */
