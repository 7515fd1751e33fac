/*
 * nnfast normalization kernels: batch and layer normalization over a
 * C-contiguous (rows, channels) view of the input.
 *
 * Batch normalization normalizes each channel (column) over the rows, layer
 * normalization each row over its channels. With x_hat = (x - mean) /
 * sqrt(var + epsilon), both compute y = gamma * x_hat + beta, where gamma
 * NULL means 1 and beta NULL means 0. Variances are biased (divided by the
 * count, not count - 1). Sums are taken in double precision.
 */
#ifndef NNFAST_NORM_H
#define NNFAST_NORM_H

#include "nnfast.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Training-mode batch normalization with the batch's statistics, which are
 * written to mean and var (channels values each). */
int nnf_batch_norm_forward_f32(nnf_int rows, nnf_int channels, const float *x,
                               const float *gamma, const float *beta, double epsilon,
                               float *y, float *mean, float *var, int n_threads);
int nnf_batch_norm_forward_f64(nnf_int rows, nnf_int channels, const double *x,
                               const double *gamma, const double *beta, double epsilon,
                               double *y, double *mean, double *var, int n_threads);

/* Inference-mode batch normalization with given statistics. */
int nnf_batch_norm_inference_f32(nnf_int rows, nnf_int channels, const float *x,
                                 const float *mean, const float *var, const float *gamma,
                                 const float *beta, double epsilon, float *y, int n_threads);
int nnf_batch_norm_inference_f64(nnf_int rows, nnf_int channels, const double *x,
                                 const double *mean, const double *var, const double *gamma,
                                 const double *beta, double epsilon, double *y, int n_threads);

/*
 * Backward pass of the training-mode forward, given the batch statistics it
 * wrote: gamma_grad = sum over rows of dy * x_hat, beta_grad = sum over rows
 * of dy, dx = gamma / sqrt(var + epsilon) * (dy - mean(dy) - x_hat *
 * mean(dy * x_hat)). Each output is skipped when NULL.
 */
int nnf_batch_norm_backward_f32(nnf_int rows, nnf_int channels, const float *x,
                                const float *mean, const float *var, const float *gamma,
                                double epsilon, const float *dy, float *dx,
                                float *gamma_grad, float *beta_grad, int n_threads);
int nnf_batch_norm_backward_f64(nnf_int rows, nnf_int channels, const double *x,
                                const double *mean, const double *var, const double *gamma,
                                double epsilon, const double *dy, double *dx,
                                double *gamma_grad, double *beta_grad, int n_threads);

/* Layer normalization; mean and var receive each row's statistics (rows
 * values each). */
int nnf_layer_norm_forward_f32(nnf_int rows, nnf_int channels, const float *x,
                               const float *gamma, const float *beta, double epsilon,
                               float *y, float *mean, float *var, int n_threads);
int nnf_layer_norm_forward_f64(nnf_int rows, nnf_int channels, const double *x,
                               const double *gamma, const double *beta, double epsilon,
                               double *y, double *mean, double *var, int n_threads);

/*
 * Backward pass of layer normalization, given the row statistics of the
 * forward pass: with g = dy * gamma, dx = (g - mean(g) - x_hat *
 * mean(g * x_hat)) / sqrt(var + epsilon) over each row, and gamma_grad and
 * beta_grad as for batch normalization. Each output is skipped when NULL.
 */
int nnf_layer_norm_backward_f32(nnf_int rows, nnf_int channels, const float *x,
                                const float *mean, const float *var, const float *gamma,
                                double epsilon, const float *dy, float *dx,
                                float *gamma_grad, float *beta_grad, int n_threads);
int nnf_layer_norm_backward_f64(nnf_int rows, nnf_int channels, const double *x,
                                const double *mean, const double *var, const double *gamma,
                                double epsilon, const double *dy, double *dx,
                                double *gamma_grad, double *beta_grad, int n_threads);

#ifdef __cplusplus
}
#endif

#endif
