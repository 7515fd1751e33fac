/*
 * Run-time choice of the SIMD level. The default build targets baseline
 * x86-64, and the SIMD kernels are compiled with target attributes, so the
 * AVX2 ones may only run where the CPU reports both AVX2 and FMA, and the
 * AVX-512 ones where it also reports AVX-512 Foundation. The compiler's
 * feature check also reads XCR0 (XGETBV), so a level counts only where the
 * OS saves its registers.
 */
#include <stdlib.h>
#include <string.h>

#include "nnfast.h"

static int detect_cpu_level(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        return __builtin_cpu_supports("avx512f") ? NNF_SIMD_AVX512 : NNF_SIMD_AVX2;
    }
#endif
    return NNF_SIMD_GENERIC;
}

int nnf_simd_level(void)
{
    /* Cached after the first call; a race only repeats the same detection. */
    static int level = -1;
    if (level < 0) {
        int detected = detect_cpu_level();
        const char *forced = getenv("NNFAST_SIMD");
        if (forced != NULL && strcmp(forced, "generic") == 0) {
            detected = NNF_SIMD_GENERIC;
        } else if (forced != NULL && strcmp(forced, "avx2") == 0 && detected > NNF_SIMD_AVX2) {
            detected = NNF_SIMD_AVX2;
        }
        level = detected;
    }
    return level;
}

const char *nnf_simd_name(int level)
{
    switch (level) {
    case NNF_SIMD_AVX2:
        return "avx2+fma";
    case NNF_SIMD_AVX512:
        return "avx512";
    default:
        return "generic";
    }
}
