/*
 * Run-time choice of the SIMD level. The default build targets baseline
 * x86-64, and the SIMD kernels are compiled with target attributes, so the
 * AVX2 ones may only run where the CPU reports both AVX2 and FMA, and the
 * AVX-512 ones where it also reports AVX-512 Foundation. A level also needs
 * the OS to save its registers on a context switch, as XCR0 reports.
 */
#include <stdlib.h>
#include <string.h>

#include "nnfast.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

/* XCR0 bits: SSE and AVX state (ymm), and the opmask and zmm state. */
#define NNF_XCR0_YMM 0x6u
#define NNF_XCR0_ZMM 0xe0u

/* Return XCR0, or 0 when the OS has not enabled XGETBV. */
static unsigned int read_xcr0(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) {
        return 0;
    }
    unsigned int low, high;
    __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
    return low;
}
#endif

static int detect_cpu_level(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    unsigned int xcr0 = read_xcr0();
    if ((xcr0 & NNF_XCR0_YMM) != NNF_XCR0_YMM || !__builtin_cpu_supports("avx2") ||
        !__builtin_cpu_supports("fma")) {
        return NNF_SIMD_GENERIC;
    }
    if ((xcr0 & NNF_XCR0_ZMM) == NNF_XCR0_ZMM && __builtin_cpu_supports("avx512f")) {
        return NNF_SIMD_AVX512;
    }
    return NNF_SIMD_AVX2;
#else
    return NNF_SIMD_GENERIC;
#endif
}

int nnf_simd_level(void)
{
    /* Cached after the first call; a race only repeats the same detection. */
    static int level = -1;
    if (level < 0) {
        int detected = detect_cpu_level();
        /* NNFAST_SIMD only lowers the level. Any value but generic and avx2
         * keeps the detected one, and import nnfast warns about unknown ones. */
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

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
/*
 * Return 1 when the CPU's design runs two 512-bit FMAs per cycle, as on
 * Intel Xeon from Skylake-SP on (the Gold 6000 and Platinum parts) and AMD
 * Zen 5, else 0. Zen 4 splits each 512-bit FMA over its two 256-bit pipes.
 * NOTE: decided by vendor and family, because CPUID does not report the
 * FMA units. Intel parts with one 512-bit unit (Xeon Silver, Ice Lake
 * laptops) count as two here. On them the AVX-512 tiles, chosen more often
 * than their speed earns, still run at the AVX2 tiles' peak rate.
 */
static int detect_fma512_full(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    char vendor[13];
    memcpy(vendor, &ebx, 4);
    memcpy(vendor + 4, &edx, 4);
    memcpy(vendor + 8, &ecx, 4);
    vendor[12] = '\0';
    if (strcmp(vendor, "GenuineIntel") == 0) {
        return 1;
    }
    if (strcmp(vendor, "AuthenticAMD") != 0 || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    unsigned int family = (eax >> 8) & 0xfu;
    if (family == 0xfu) {
        family += (eax >> 20) & 0xffu;
    }
    return family >= 0x1au;
}
#endif

int nnf_fma512_full(void)
{
    /* Cached after the first call, like nnf_simd_level. */
    static int full = -1;
    if (full < 0) {
        int detected = 0;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
        detected = nnf_simd_level() == NNF_SIMD_AVX512 && detect_fma512_full();
#endif
        const char *forced = getenv("NNFAST_FMA512");
        if (nnf_simd_level() == NNF_SIMD_AVX512 && forced != NULL) {
            if (strcmp(forced, "full") == 0) {
                detected = 1;
            } else if (strcmp(forced, "half") == 0) {
                detected = 0;
            }
        }
        full = detected;
    }
    return full;
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
