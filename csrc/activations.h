/*
 * Elementwise activations and their derivatives, one definition each, shared
 * by the GEMM epilogue and the Cython elementwise loops.
 *
 * The relu, sigmoid and tanh *_bwd functions take the activation's output y,
 * because their derivatives are functions of y alone: relu' = [y > 0],
 * sigmoid' = y (1 - y), tanh' = 1 - y^2. The activations added after them
 * take the input x instead, because their derivatives need it (or, for
 * exponential, are computed from y by the callers).
 *
 * Infinite inputs give the function's limit where the plain formula would
 * compute inf * 0 or inf / inf (gelu(-inf) = 0, softsign(inf) = 1), and NaN
 * inputs give NaN.
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


/*
 * Activations added to Keras 3's set: leaky_relu, elu, selu, gelu (exact and
 * tanh approximation), silu, softplus, softsign, hard_sigmoid and exponential.
 * Each *_bwd function returns dy * activation'(x) and takes the input x,
 * except exponential, whose derivative is its output y.
 *
 * NNF_DEFINE_ACTIVATIONS writes the float (f32) and double (f64) variants
 * from one definition: T is the type, S the name suffix and F the suffix of
 * the <math.h> functions ("f" for float, empty for double). Every constant
 * is cast to T, so the float variants compute in float throughout, as the
 * NumPy reference does for float32 arrays.
 */

#define NNF_SQRT1_2 0.70710678118654752440084436210485   /* 1 / sqrt(2) */
#define NNF_INV_SQRT_2PI 0.39894228040143267793994605993438 /* 1 / sqrt(2 pi) */
#define NNF_SQRT_2_OVER_PI 0.79788456080286535587989211986876 /* sqrt(2 / pi) */
#define NNF_GELU_CUBIC 0.044715
/* SELU's fixed alpha and scale, the standard self-normalizing values. */
#define NNF_SELU_ALPHA 1.6732632423543772848170429916717
#define NNF_SELU_SCALE 1.0507009873554804934193349852946

#define NNF_DEFINE_ACTIVATIONS(T, S, F)                                                  \
                                                                                         \
/* leaky_relu: x for x > 0, else slope * x. */                                           \
static inline T nnf_leaky_relu_fwd_##S(T x, T slope) { return x > 0 ? x : slope * x; }  \
static inline T nnf_leaky_relu_bwd_##S(T x, T dy, T slope)                               \
{                                                                                        \
    return x > 0 ? dy : slope * dy;                                                      \
}                                                                                        \
                                                                                         \
/* elu: x for x > 0, else alpha * (exp(x) - 1), computed with expm1. */                  \
static inline T nnf_elu_fwd_##S(T x, T alpha) { return x > 0 ? x : alpha * expm1##F(x); } \
static inline T nnf_elu_bwd_##S(T x, T dy, T alpha)                                      \
{                                                                                        \
    return x > 0 ? dy : dy * (alpha * exp##F(x));                                        \
}                                                                                        \
                                                                                         \
/* selu: scale * elu(x, alpha) with the fixed SELU constants. */                         \
static inline T nnf_selu_fwd_##S(T x)                                                    \
{                                                                                        \
    return (T)NNF_SELU_SCALE * (x > 0 ? x : (T)NNF_SELU_ALPHA * expm1##F(x));            \
}                                                                                        \
static inline T nnf_selu_bwd_##S(T x, T dy)                                              \
{                                                                                        \
    T slope = x > 0 ? (T)NNF_SELU_SCALE                                                  \
                    : (T)(NNF_SELU_SCALE * NNF_SELU_ALPHA) * exp##F(x);                  \
    return dy * slope;                                                                   \
}                                                                                        \
                                                                                         \
/* gelu: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), written with erfc so that the       \
 * tail for negative x keeps its relative precision. */                                  \
static inline T nnf_gelu_fwd_##S(T x)                                                    \
{                                                                                        \
    if (isinf(x)) {                                                                      \
        return x > 0 ? x : (T)0;                                                         \
    }                                                                                    \
    return (T)0.5 * x * erfc##F(-x * (T)NNF_SQRT1_2);                                    \
}                                                                                        \
/* gelu' = Phi(x) + x phi(x), where phi is the standard normal density. */              \
static inline T nnf_gelu_bwd_##S(T x, T dy)                                              \
{                                                                                        \
    T slope;                                                                             \
    if (isinf(x)) {                                                                      \
        slope = x > 0 ? (T)1 : (T)0;                                                     \
    } else {                                                                             \
        slope = (T)0.5 * erfc##F(-x * (T)NNF_SQRT1_2)                                    \
                + x * exp##F((T)-0.5 * x * x) * (T)NNF_INV_SQRT_2PI;                     \
    }                                                                                    \
    return dy * slope;                                                                   \
}                                                                                        \
                                                                                         \
/* gelu with approximate=True: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),  \
 * computed as x * sigmoid(2u), which is equal and avoids the cancellation in 1 + tanh(u) \
 * for negative x. */                                                                    \
static inline T nnf_gelu_tanh_fwd_##S(T x)                                               \
{                                                                                        \
    if (isinf(x)) {                                                                      \
        return x > 0 ? x : (T)0;                                                         \
    }                                                                                    \
    T inner = (T)NNF_SQRT_2_OVER_PI * (x + (T)NNF_GELU_CUBIC * (x * x * x));             \
    return x * nnf_sigmoid_fwd_##S((T)2 * inner);                                        \
}                                                                                        \
/* With s = sigmoid(2u): s + 2 x s (1 - s) u'(x). Once s (1 - s) rounds to 0 the        \
 * second term is skipped, so x * u'(x) cannot overflow to inf and make 0 * inf = NaN. */ \
static inline T nnf_gelu_tanh_bwd_##S(T x, T dy)                                         \
{                                                                                        \
    T inner = (T)NNF_SQRT_2_OVER_PI * (x + (T)NNF_GELU_CUBIC * (x * x * x));             \
    T s = nnf_sigmoid_fwd_##S((T)2 * inner);                                             \
    T spread = s * ((T)1 - s);                                                           \
    T slope = s;                                                                         \
    if (spread != 0) {                                                                   \
        T inner_slope = (T)NNF_SQRT_2_OVER_PI * ((T)1 + (T)(3 * NNF_GELU_CUBIC) * (x * x)); \
        slope = slope + (T)2 * x * spread * inner_slope;                                 \
    }                                                                                    \
    return dy * slope;                                                                   \
}                                                                                        \
                                                                                         \
/* silu (swish): x * sigmoid(x). */                                                      \
static inline T nnf_silu_fwd_##S(T x)                                                    \
{                                                                                        \
    if (isinf(x)) {                                                                      \
        return x > 0 ? x : (T)0;                                                         \
    }                                                                                    \
    return x * nnf_sigmoid_fwd_##S(x);                                                   \
}                                                                                        \
/* silu' = s (1 + x (1 - s)) with s = sigmoid(x). */                                     \
static inline T nnf_silu_bwd_##S(T x, T dy)                                              \
{                                                                                        \
    T slope;                                                                             \
    if (isinf(x)) {                                                                      \
        slope = x > 0 ? (T)1 : (T)0;                                                     \
    } else {                                                                             \
        T s = nnf_sigmoid_fwd_##S(x);                                                    \
        slope = s * ((T)1 + x * ((T)1 - s));                                             \
    }                                                                                    \
    return dy * slope;                                                                   \
}                                                                                        \
                                                                                         \
/* softplus: log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), which never overflows. */   \
static inline T nnf_softplus_fwd_##S(T x)                                                \
{                                                                                        \
    return (x > 0 ? x : (T)0) + log1p##F(exp##F(-fabs##F(x)));                           \
}                                                                                        \
/* softplus' = sigmoid(x). */                                                            \
static inline T nnf_softplus_bwd_##S(T x, T dy) { return dy * nnf_sigmoid_fwd_##S(x); }  \
                                                                                         \
/* softsign: x / (1 + |x|). */                                                           \
static inline T nnf_softsign_fwd_##S(T x)                                                \
{                                                                                        \
    if (isinf(x)) {                                                                      \
        return x > 0 ? (T)1 : (T)-1;                                                     \
    }                                                                                    \
    return x / ((T)1 + fabs##F(x));                                                      \
}                                                                                        \
/* softsign' = 1 / (1 + |x|)^2, which rounds to 0 once the square overflows. */          \
static inline T nnf_softsign_bwd_##S(T x, T dy)                                          \
{                                                                                        \
    T denominator = (T)1 + fabs##F(x);                                                   \
    return dy / (denominator * denominator);                                             \
}                                                                                        \
                                                                                         \
/* hard_sigmoid (Keras 3): relu6(x + 3) / 6. Written with x + 3 < 0 and > 6 so that     \
 * NaN passes through. */                                                                \
static inline T nnf_hard_sigmoid_fwd_##S(T x)                                            \
{                                                                                        \
    T shifted = x + (T)3;                                                                \
    shifted = shifted < 0 ? (T)0 : shifted;                                              \
    shifted = shifted > 6 ? (T)6 : shifted;                                              \
    return shifted / (T)6;                                                               \
}                                                                                        \
/* 1/6 strictly inside the linear part, 0 outside it (and for NaN x). */                 \
static inline T nnf_hard_sigmoid_bwd_##S(T x, T dy)                                      \
{                                                                                        \
    T shifted = x + (T)3;                                                                \
    return (shifted > 0 && shifted < 6) ? dy / (T)6 : (T)0;                              \
}                                                                                        \
                                                                                         \
/* exponential: exp(x), whose derivative is its output y. */                             \
static inline T nnf_exponential_fwd_##S(T x) { return exp##F(x); }                       \
static inline T nnf_exponential_bwd_##S(T y, T dy) { return dy * y; }

NNF_DEFINE_ACTIVATIONS(float, f32, f)
NNF_DEFINE_ACTIVATIONS(double, f64, )

#undef NNF_DEFINE_ACTIVATIONS

#endif
