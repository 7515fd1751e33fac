/*
 * Run-time choice of the SIMD level. The default build targets baseline
 * x86-64, and the AVX2 kernels are compiled with a target attribute, so they
 * may only run where the CPU reports both AVX2 and FMA.
 */
#include <stdlib.h>
#include <string.h>

#include "nnfast.h"

static int detect_cpu_level(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        return NNF_SIMD_AVX2;
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
    default:
        return "generic";
    }
}
