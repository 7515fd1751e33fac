/*
 * nnfast 2-D pooling kernels (channels last): shapes and prototypes.
 *
 * x is (batch, in_h, in_w, channels) and y (batch, out_h, out_w, channels),
 * both C-contiguous. Output pixel (oh, ow) pools the input pixels
 * (oh * stride_h - pad_top + i, ow * stride_w - pad_left + j) for
 * 0 <= i < pool_h and 0 <= j < pool_w that lie inside the input; padded
 * positions take no part (as with TensorFlow's "SAME" pooling). A window
 * with no input pixel gives 0 for the average and -inf for the maximum.
 */
#ifndef NNFAST_POOL_H
#define NNFAST_POOL_H

#include <stdint.h>

#include "nnfast.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    nnf_int batch, in_h, in_w, channels;
    nnf_int out_h, out_w;
    nnf_int pool_h, pool_w;
    nnf_int stride_h, stride_w;
    nnf_int pad_top, pad_left;
} nnf_pool_shape;

/* Return NNF_OK when every size is valid (non-negative sizes and padding,
 * positive pool sizes and strides, and in_h * in_w * channels below 2^31 so
 * that argmax indices fit an int32), else NNF_EINVAL. */
int nnf_pool_check_shape(const nnf_pool_shape *s);

/*
 * y = the maximum over each window. When argmax is not NULL, it receives
 * for each element of y the index in its own image, (ih * in_w + iw) *
 * channels + c, of the first maximum in row-major window order (-1 for an
 * empty window).
 */
int nnf_max_pool2d_forward_f32(const nnf_pool_shape *s, const float *x, float *y,
                               int32_t *argmax, int n_threads);
int nnf_max_pool2d_forward_f64(const nnf_pool_shape *s, const double *x, double *y,
                               int32_t *argmax, int n_threads);

/* dx = 0, then dx[image][argmax] += dy for every element of dy. */
int nnf_max_pool2d_backward_f32(const nnf_pool_shape *s, const float *dy,
                                const int32_t *argmax, float *dx, int n_threads);
int nnf_max_pool2d_backward_f64(const nnf_pool_shape *s, const double *dy,
                                const int32_t *argmax, double *dx, int n_threads);

/* y = the mean over the input pixels of each window. */
int nnf_avg_pool2d_forward_f32(const nnf_pool_shape *s, const float *x, float *y,
                               int n_threads);
int nnf_avg_pool2d_forward_f64(const nnf_pool_shape *s, const double *x, double *y,
                               int n_threads);

/* dx = the gradient of sum(dy * avg_pool(x)) with respect to x. */
int nnf_avg_pool2d_backward_f32(const nnf_pool_shape *s, const float *dy, float *dx,
                                int n_threads);
int nnf_avg_pool2d_backward_f64(const nnf_pool_shape *s, const double *dy, double *dx,
                                int n_threads);

#ifdef __cplusplus
}
#endif

#endif
