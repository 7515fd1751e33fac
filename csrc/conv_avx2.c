/*
 * AVX2+FMA direct convolution kernels for float32 and small kernel matrices.
 *
 * K x out_c is small in the first layer of an image model (a 3 x 3 x 1 x 32
 * kernel has 288 values). There the GEMM has too few tiles to split across
 * threads and too short a k to pay for packing. These kernels instead keep
 * the whole kernel matrix in L1 and one output pixel's out_c accumulators
 * (out_c / 8 ymm registers) in registers. out_c is a multiple of 8 up to
 * NNF_CONV_AVX2_MAX_FILTERS, and each function body is compiled once per
 * out_c / 8 so that the accumulator loops unroll.
 *
 * conv.c calls these only when nnf_simd_level() reports AVX2 and FMA.
 */
#include <string.h>

#include "activations.h"
#include "conv.h"

#ifdef NNF_X86_KERNELS

#include <immintrin.h>

/* Output pixels per block of dZ in the kernel gradient: 32 rows of up to 64
 * floats is 8 KiB, which stays in L1 while every tap reads it. */
#define NNF_CONV_AVX2_GRAD_BLOCK 32

/* relu that keeps NaN, as nnf_relu_fwd_f32 does: max would turn NaN into 0. */
static inline NNF_TARGET_AVX2 __m256 relu_keep_nan(__m256 z)
{
    __m256 negative = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(z, _mm256_setzero_ps(), negative);
}

/* Store act(acc) for one pixel's blocks of 8 channels. */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void store_activated(
    float *out, const __m256 *acc, int blocks, int activation)
{
    if (activation == NNF_ACT_RELU) {
        for (int b = 0; b < blocks; b++) {
            _mm256_storeu_ps(out + 8 * b, relu_keep_nan(acc[b]));
        }
        return;
    }
    for (int b = 0; b < blocks; b++) {
        _mm256_storeu_ps(out + 8 * b, acc[b]);
    }
    if (activation == NNF_ACT_SIGMOID) {
        for (int f = 0; f < 8 * blocks; f++) {
            out[f] = nnf_sigmoid_fwd_f32(out[f]);
        }
    } else if (activation == NNF_ACT_TANH) {
        for (int f = 0; f < 8 * blocks; f++) {
            out[f] = nnf_tanh_fwd_f32(out[f]);
        }
    }
}

/* Add the taps of output pixel (oh, ow) into acc (out_c = 8 * blocks). */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void add_taps(
    const nnf_conv_shape *s, const float *img, const float *kernel, nnf_int oh, nnf_int ow,
    __m256 *acc, const int blocks)
{
    const nnf_int c = s->in_c;
    const nnf_int n = s->out_c;
    for (nnf_int kh = 0; kh < s->kernel_h; kh++) {
        nnf_int ih = oh * s->stride_h - s->pad_top + kh * s->dilation_h;
        if (ih < 0 || ih >= s->in_h) {
            continue;
        }
        for (nnf_int kw = 0; kw < s->kernel_w; kw++) {
            nnf_int iw = ow * s->stride_w - s->pad_left + kw * s->dilation_w;
            if (iw < 0 || iw >= s->in_w) {
                continue;
            }
            const float *pixel = img + (ih * s->in_w + iw) * c;
            const float *w = kernel + (kh * s->kernel_w + kw) * c * n;
            for (nnf_int ci = 0; ci < c; ci++) {
                __m256 value = _mm256_broadcast_ss(pixel + ci);
#pragma GCC unroll 8
                for (int b = 0; b < blocks; b++) {
                    acc[b] = _mm256_fmadd_ps(value, _mm256_loadu_ps(w + 8 * b), acc[b]);
                }
                w += n;
            }
        }
    }
}

/* add_taps for the output pixels (oh, ow) into acc and (oh, ow + 1) into
 * acc2, sharing the weight loads (out_c = 8 * blocks, blocks <= 4). */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void add_taps_pair(
    const nnf_conv_shape *s, const float *img, const float *kernel, nnf_int oh, nnf_int ow,
    __m256 *acc, __m256 *acc2, const int blocks)
{
    const nnf_int c = s->in_c;
    const nnf_int n = s->out_c;
    for (nnf_int kh = 0; kh < s->kernel_h; kh++) {
        nnf_int ih = oh * s->stride_h - s->pad_top + kh * s->dilation_h;
        if (ih < 0 || ih >= s->in_h) {
            continue;
        }
        for (nnf_int kw = 0; kw < s->kernel_w; kw++) {
            nnf_int iw = ow * s->stride_w - s->pad_left + kw * s->dilation_w;
            nnf_int iw2 = iw + s->stride_w;
            int inside = iw >= 0 && iw < s->in_w;
            int inside2 = iw2 >= 0 && iw2 < s->in_w;
            const float *w = kernel + (kh * s->kernel_w + kw) * c * n;
            const float *row = img + ih * s->in_w * c;
            if (inside && inside2) {
                const float *pixel = row + iw * c;
                const float *pixel2 = row + iw2 * c;
                for (nnf_int ci = 0; ci < c; ci++) {
                    __m256 value = _mm256_broadcast_ss(pixel + ci);
                    __m256 value2 = _mm256_broadcast_ss(pixel2 + ci);
#pragma GCC unroll 4
                    for (int b = 0; b < blocks; b++) {
                        __m256 weight = _mm256_loadu_ps(w + 8 * b);
                        acc[b] = _mm256_fmadd_ps(value, weight, acc[b]);
                        acc2[b] = _mm256_fmadd_ps(value2, weight, acc2[b]);
                    }
                    w += n;
                }
            } else if (inside) {
                const float *pixel = row + iw * c;
                for (nnf_int ci = 0; ci < c; ci++) {
                    __m256 value = _mm256_broadcast_ss(pixel + ci);
#pragma GCC unroll 4
                    for (int b = 0; b < blocks; b++) {
                        acc[b] = _mm256_fmadd_ps(value, _mm256_loadu_ps(w + 8 * b), acc[b]);
                    }
                    w += n;
                }
            } else if (inside2) {
                const float *pixel2 = row + iw2 * c;
                for (nnf_int ci = 0; ci < c; ci++) {
                    __m256 value2 = _mm256_broadcast_ss(pixel2 + ci);
#pragma GCC unroll 4
                    for (int b = 0; b < blocks; b++) {
                        acc2[b] = _mm256_fmadd_ps(value2, _mm256_loadu_ps(w + 8 * b), acc2[b]);
                    }
                    w += n;
                }
            }
        }
    }
}

/*
 * y = act(conv(x, kernel) + bias) for the output rows [q0, q1), with
 * out_c = 8 * blocks. Up to 4 blocks, two pixels are computed together, so
 * that 8 independent FMA chains hide the FMA latency. Each pixel keeps its
 * own chain, so each output is summed in the same order as when it is
 * computed alone.
 */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void forward_rows(
    const nnf_conv_shape *s, const float *x, const float *kernel, const float *bias,
    int activation, float *y, nnf_int q0, nnf_int q1, const int blocks)
{
    const nnf_int n = s->out_c;
    const nnf_int image_size = s->in_h * s->in_w * s->in_c;
    const int pair = blocks <= 4;
    __m256 acc[NNF_CONV_AVX2_MAX_FILTERS / 8];
    __m256 acc2[4];
    for (nnf_int q = q0; q < q1; q++) {
        nnf_int image = q / s->out_h;
        nnf_int oh = q - image * s->out_h;
        const float *img = x + image * image_size;
        nnf_int ow = 0;
        for (; pair && ow + 1 < s->out_w; ow += 2) {
#pragma GCC unroll 4
            for (int b = 0; b < blocks && b < 4; b++) {
                acc[b] = bias != NULL ? _mm256_loadu_ps(bias + 8 * b) : _mm256_setzero_ps();
                acc2[b] = acc[b];
            }
            add_taps_pair(s, img, kernel, oh, ow, acc, acc2, blocks < 4 ? blocks : 4);
            store_activated(y + (q * s->out_w + ow) * n, acc, blocks, activation);
            store_activated(y + (q * s->out_w + ow + 1) * n, acc2, blocks, activation);
        }
        for (; ow < s->out_w; ow++) {
#pragma GCC unroll 8
            for (int b = 0; b < blocks; b++) {
                acc[b] = bias != NULL ? _mm256_loadu_ps(bias + 8 * b) : _mm256_setzero_ps();
            }
            add_taps(s, img, kernel, oh, ow, acc, blocks);
            store_activated(y + (q * s->out_w + ow) * n, acc, blocks, activation);
        }
    }
}

/* acc += pixel[ci] * dz_row, unless the tap read padding (pixel NULL). */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void add_scaled_row(
    __m256 *acc, const float *pixel, nnf_int ci, const float *dz_row, const int blocks)
{
    if (pixel == NULL) {
        return;
    }
    __m256 value = _mm256_broadcast_ss(pixel + ci);
#pragma GCC unroll 8
    for (int b = 0; b < blocks; b++) {
        acc[b] = _mm256_fmadd_ps(value, _mm256_load_ps(dz_row + 8 * b), acc[b]);
    }
}

/*
 * Add the kernel and bias gradient sums of the output pixels [m0, m1) into
 * kernel_sum (K x out_c) and bias_sum (out_c), with out_c = 8 * blocks. A
 * block of pixels' dZ rows is computed first, then each kernel row (one tap
 * and input channel) sums its input values times those rows.
 */
static inline __attribute__((always_inline)) NNF_TARGET_AVX2 void kernel_grad_pixels(
    const nnf_conv_shape *s, const float *x, const float *y, const float *dy,
    int activation, nnf_int m0, nnf_int m1, float *kernel_sum, float *bias_sum,
    const int blocks)
{
    const nnf_int c = s->in_c;
    const nnf_int n = s->out_c;
    const nnf_int image_size = s->in_h * s->in_w * c;
    const nnf_int per_image = s->out_h * s->out_w;
    float dz[NNF_CONV_AVX2_GRAD_BLOCK * NNF_CONV_AVX2_MAX_FILTERS]
        __attribute__((aligned(32)));
    const float *pixels[NNF_CONV_AVX2_GRAD_BLOCK];
    nnf_int ih0[NNF_CONV_AVX2_GRAD_BLOCK];
    nnf_int iw0[NNF_CONV_AVX2_GRAD_BLOCK];
    const float *images[NNF_CONV_AVX2_GRAD_BLOCK];
    __m256 acc[NNF_CONV_AVX2_MAX_FILTERS / 8];

    for (nnf_int start = m0; start < m1; start += NNF_CONV_AVX2_GRAD_BLOCK) {
        nnf_int count = m1 - start < NNF_CONV_AVX2_GRAD_BLOCK ? m1 - start
                                                             : NNF_CONV_AVX2_GRAD_BLOCK;

        /* dZ rows of the block, their bias sums, and each pixel's position. */
        for (nnf_int i = 0; i < count; i++) {
            nnf_int m = start + i;
            nnf_int image = m / per_image;
            nnf_int oh = (m - image * per_image) / s->out_w;
            nnf_int ow = m - image * per_image - oh * s->out_w;
            images[i] = x + image * image_size;
            ih0[i] = oh * s->stride_h - s->pad_top;
            iw0[i] = ow * s->stride_w - s->pad_left;
            float *row = dz + i * n;
            const float *dy_row = dy + m * n;
            const float *y_row = y != NULL ? y + m * n : dy_row;
            switch (activation) {
            case NNF_ACT_RELU:
                for (nnf_int f = 0; f < n; f++) {
                    row[f] = nnf_relu_bwd_f32(y_row[f], dy_row[f]);
                }
                break;
            case NNF_ACT_SIGMOID:
                for (nnf_int f = 0; f < n; f++) {
                    row[f] = nnf_sigmoid_bwd_f32(y_row[f], dy_row[f]);
                }
                break;
            case NNF_ACT_TANH:
                for (nnf_int f = 0; f < n; f++) {
                    row[f] = nnf_tanh_bwd_f32(y_row[f], dy_row[f]);
                }
                break;
            default:
                for (nnf_int f = 0; f < n; f++) {
                    row[f] = dy_row[f];
                }
                break;
            }
            for (nnf_int f = 0; f < n; f++) {
                bias_sum[f] += row[f];
            }
        }

        for (nnf_int kh = 0; kh < s->kernel_h; kh++) {
            for (nnf_int kw = 0; kw < s->kernel_w; kw++) {
                /* The input pixel this tap reads for each output pixel, or NULL. */
                for (nnf_int i = 0; i < count; i++) {
                    nnf_int ih = ih0[i] + kh * s->dilation_h;
                    nnf_int iw = iw0[i] + kw * s->dilation_w;
                    int inside = ih >= 0 && ih < s->in_h && iw >= 0 && iw < s->in_w;
                    pixels[i] = inside ? images[i] + (ih * s->in_w + iw) * c : NULL;
                }
                float *taps = kernel_sum + (kh * s->kernel_w + kw) * c * n;
                for (nnf_int ci = 0; ci < c; ci++) {
                    float *row = taps + ci * n;
#pragma GCC unroll 8
                    for (int b = 0; b < blocks; b++) {
                        acc[b] = _mm256_loadu_ps(row + 8 * b);
                    }
                    nnf_int i = 0;
                    if (blocks <= 4) {
                        /* Odd pixels go to a second set of accumulators, so
                         * that 8 independent FMA chains hide the latency. */
                        __m256 odd[4];
#pragma GCC unroll 4
                        for (int b = 0; b < blocks && b < 4; b++) {
                            odd[b] = _mm256_setzero_ps();
                        }
                        for (; i + 1 < count; i += 2) {
                            add_scaled_row(acc, pixels[i], ci, dz + i * n, blocks);
                            add_scaled_row(odd, pixels[i + 1], ci, dz + (i + 1) * n, blocks);
                        }
#pragma GCC unroll 4
                        for (int b = 0; b < blocks && b < 4; b++) {
                            acc[b] = _mm256_add_ps(acc[b], odd[b]);
                        }
                    }
                    for (; i < count; i++) {
                        add_scaled_row(acc, pixels[i], ci, dz + i * n, blocks);
                    }
#pragma GCC unroll 8
                    for (int b = 0; b < blocks; b++) {
                        _mm256_storeu_ps(row + 8 * b, acc[b]);
                    }
                }
            }
        }
    }
}

/* One entry point per out_c / 8, so that each body unrolls for its width. */
#define NNF_DEFINE_DIRECT(BLOCKS)                                                            \
    static NNF_TARGET_AVX2 void forward_rows_##BLOCKS(                                     \
        const nnf_conv_shape *s, const float *x, const float *kernel, const float *bias,  \
        int activation, float *y, nnf_int q0, nnf_int q1)                                  \
    {                                                                                      \
        forward_rows(s, x, kernel, bias, activation, y, q0, q1, BLOCKS);                   \
    }                                                                                      \
    static NNF_TARGET_AVX2 void kernel_grad_pixels_##BLOCKS(                               \
        const nnf_conv_shape *s, const float *x, const float *y, const float *dy,          \
        int activation, nnf_int m0, nnf_int m1, float *kernel_sum, float *bias_sum)        \
    {                                                                                      \
        kernel_grad_pixels(s, x, y, dy, activation, m0, m1, kernel_sum, bias_sum, BLOCKS); \
    }

NNF_DEFINE_DIRECT(1)
NNF_DEFINE_DIRECT(2)
NNF_DEFINE_DIRECT(3)
NNF_DEFINE_DIRECT(4)
NNF_DEFINE_DIRECT(5)
NNF_DEFINE_DIRECT(6)
NNF_DEFINE_DIRECT(7)
NNF_DEFINE_DIRECT(8)

typedef void (*forward_rows_fn)(const nnf_conv_shape *, const float *, const float *,
                                const float *, int, float *, nnf_int, nnf_int);
typedef void (*kernel_grad_fn)(const nnf_conv_shape *, const float *, const float *,
                               const float *, int, nnf_int, nnf_int, float *, float *);

static const forward_rows_fn forward_rows_table[] = {
    forward_rows_1, forward_rows_2, forward_rows_3, forward_rows_4,
    forward_rows_5, forward_rows_6, forward_rows_7, forward_rows_8,
};

static const kernel_grad_fn kernel_grad_table[] = {
    kernel_grad_pixels_1, kernel_grad_pixels_2, kernel_grad_pixels_3, kernel_grad_pixels_4,
    kernel_grad_pixels_5, kernel_grad_pixels_6, kernel_grad_pixels_7, kernel_grad_pixels_8,
};

int nnf_conv_direct_supported_f32(const nnf_conv_shape *s)
{
    nnf_int k = s->kernel_h * s->kernel_w * s->in_c;
    return nnf_simd_level() >= NNF_SIMD_AVX2 && s->out_c > 0 && s->out_c % 8 == 0 &&
           s->out_c <= NNF_CONV_AVX2_MAX_FILTERS && k > 0 &&
           k * s->out_c <= NNF_CONV_AVX2_MAX_WEIGHTS;
}

void nnf_conv_direct_forward_f32(const nnf_conv_shape *s, const float *x, const float *kernel,
                                 const float *bias, int activation, float *y, nnf_int q0,
                                 nnf_int q1)
{
    forward_rows_table[s->out_c / 8 - 1](s, x, kernel, bias, activation, y, q0, q1);
}

void nnf_conv_direct_kernel_grad_f32(const nnf_conv_shape *s, const float *x, const float *y,
                                     const float *dy, int activation, nnf_int m0, nnf_int m1,
                                     float *kernel_sum, float *bias_sum)
{
    kernel_grad_table[s->out_c / 8 - 1](s, x, y, dy, activation, m0, m1, kernel_sum,
                                        bias_sum);
}

#else

int nnf_conv_direct_supported_f32(const nnf_conv_shape *s)
{
    (void)s;
    return 0;
}

void nnf_conv_direct_forward_f32(const nnf_conv_shape *s, const float *x, const float *kernel,
                                 const float *bias, int activation, float *y, nnf_int q0,
                                 nnf_int q1)
{
    (void)s, (void)x, (void)kernel, (void)bias, (void)activation, (void)y, (void)q0, (void)q1;
}

void nnf_conv_direct_kernel_grad_f32(const nnf_conv_shape *s, const float *x, const float *y,
                                     const float *dy, int activation, nnf_int m0, nnf_int m1,
                                     float *kernel_sum, float *bias_sum)
{
    (void)s, (void)x, (void)y, (void)dy, (void)activation, (void)m0, (void)m1;
    (void)kernel_sum, (void)bias_sum;
}

#endif
