/*
 * nnfast 2-D convolution kernels (channels last): shapes and prototypes.
 *
 * x is (batch, in_h, in_w, in_c), the kernel (kernel_h, kernel_w, in_c,
 * out_c) and y (batch, out_h, out_w, out_c), all C-contiguous. Tap (kh, kw)
 * of output pixel (oh, ow) reads input pixel (oh * stride_h - pad_top +
 * kh * dilation_h, ow * stride_w - pad_left + kw * dilation_w), and pixels
 * outside the input read as zero. The caller computes out_h and out_w, so
 * that any bottom and right padding is implied by them.
 */
#ifndef NNFAST_CONV_H
#define NNFAST_CONV_H

#include "gemm.h"
#include "nnfast.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The workspace slot of the convolution's tile buffers. It is the Dense
 * backward pass's slot: the two kernels never run inside each other, and
 * the GEMM they call uses its own slot.
 */
#define NNF_WORKSPACE_CONV NNF_WORKSPACE_DENSE

typedef struct {
    nnf_int batch, in_h, in_w, in_c;
    nnf_int out_h, out_w, out_c;
    nnf_int kernel_h, kernel_w;
    nnf_int stride_h, stride_w;
    nnf_int dilation_h, dilation_w;
    nnf_int pad_top, pad_left;
} nnf_conv_shape;

/* Return NNF_OK when every size is valid (non-negative sizes and padding,
 * positive kernel sizes, strides and dilations), else NNF_EINVAL. */
int nnf_conv_check_shape(const nnf_conv_shape *s);

/*
 * y = act(conv(x, kernel) + bias); bias may be NULL. The activation is
 * NNF_ACT_LINEAR, RELU, SIGMOID or TANH (softmax needs whole rows, so the
 * caller applies it afterwards).
 */
int nnf_conv2d_forward_f32(const nnf_conv_shape *s, const float *x, const float *kernel,
                           const float *bias, int activation, float *y, int n_threads);
int nnf_conv2d_forward_f64(const nnf_conv_shape *s, const double *x, const double *kernel,
                           const double *bias, int activation, double *y, int n_threads);

/*
 * With dz = act'(dy) computed from the output y:
 * kernel_grad = d(sum dz * conv(x, kernel)) / d kernel + beta * kernel_grad,
 * bias_grad = sums of dz over all pixels + beta * bias_grad (skipped when
 * NULL), dx = the gradient with respect to x (skipped when NULL).
 * y may be NULL for the linear activation.
 */
int nnf_conv2d_backward_f32(const nnf_conv_shape *s, const float *x, const float *kernel,
                            const float *y, const float *dy, int activation,
                            float *kernel_grad, float *bias_grad, float *dx, float beta,
                            int n_threads);
int nnf_conv2d_backward_f64(const nnf_conv_shape *s, const double *x, const double *kernel,
                            const double *y, const double *dy, int activation,
                            double *kernel_grad, double *bias_grad, double *dx, double beta,
                            int n_threads);

/*
 * Direct float32 kernels for small kernel matrices (conv_avx2.c). conv.c
 * uses them when nnf_conv_direct_supported_f32 returns 1: the CPU has AVX2
 * and FMA, out_c is a multiple of 8 up to NNF_CONV_AVX2_MAX_FILTERS, and
 * K x out_c is at most NNF_CONV_AVX2_MAX_WEIGHTS (4 KiB, so it stays in L1).
 */
#define NNF_CONV_AVX2_MAX_FILTERS 64
#define NNF_CONV_AVX2_MAX_WEIGHTS 1024
int nnf_conv_direct_supported_f32(const nnf_conv_shape *s);

/* y = act(conv(x, kernel) + bias) for the output rows [q0, q1), where output
 * row q is row q % out_h of image q / out_h. */
void nnf_conv_direct_forward_f32(const nnf_conv_shape *s, const float *x, const float *kernel,
                                 const float *bias, int activation, float *y, nnf_int q0,
                                 nnf_int q1);

/* Add X^T dZ and the column sums of dZ = act'(dy) over the output pixels
 * [m0, m1) into kernel_sum (K x out_c) and bias_sum (out_c); y may be NULL
 * for the linear activation. */
void nnf_conv_direct_kernel_grad_f32(const nnf_conv_shape *s, const float *x, const float *y,
                                     const float *dy, int activation, nnf_int m0, nnf_int m1,
                                     float *kernel_sum, float *bias_sum);

#ifdef __cplusplus
}
#endif

#endif
