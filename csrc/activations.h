/*
 * Elementwise activations and their derivatives, one definition each, shared
 * by the GEMM epilogue and the Cython elementwise loops.
 *
 * The *_bwd functions take the activation's output y, because every
 * activation here has a derivative that is a function of y alone:
 * relu' = [y > 0], sigmoid' = y (1 - y), tanh' = 1 - y^2.
 */
#ifndef NNFAST_ACTIVATIONS_H
#define NNFAST_ACTIVATIONS_H

#include <math.h>

/* Written as x < 0 so that a NaN input gives NaN, as np.maximum(x, 0) does. */
static inline float nnf_relu_fwd_f32(float x) { return x < 0.0f ? 0.0f : x; }
static inline double nnf_relu_fwd_f64(double x) { return x < 0.0 ? 0.0 : x; }

/* Split by sign so that exp never overflows (for x < 0, e^x / (1 + e^x)). */
static inline float nnf_sigmoid_fwd_f32(float x)
{
    if (x >= 0.0f) {
        return 1.0f / (1.0f + expf(-x));
    }
    float e = expf(x);
    return e / (1.0f + e);
}

static inline double nnf_sigmoid_fwd_f64(double x)
{
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    double e = exp(x);
    return e / (1.0 + e);
}

static inline float nnf_tanh_fwd_f32(float x) { return tanhf(x); }
static inline double nnf_tanh_fwd_f64(double x) { return tanh(x); }

static inline float nnf_relu_bwd_f32(float y, float dy) { return y > 0.0f ? dy : 0.0f; }
static inline double nnf_relu_bwd_f64(double y, double dy) { return y > 0.0 ? dy : 0.0; }

static inline float nnf_sigmoid_bwd_f32(float y, float dy) { return dy * y * (1.0f - y); }
static inline double nnf_sigmoid_bwd_f64(double y, double dy) { return dy * y * (1.0 - y); }

static inline float nnf_tanh_bwd_f32(float y, float dy) { return dy * (1.0f - y * y); }
static inline double nnf_tanh_bwd_f64(double y, double dy) { return dy * (1.0 - y * y); }

#endif
