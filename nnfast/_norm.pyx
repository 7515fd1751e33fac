# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled batch and layer normalization, forward and backward (see csrc/norm.c).

``x`` is 2-D, (rows, channels): batch normalization normalizes each column
over the rows, layer normalization each row over its columns. With x_hat =
(x - mean) / sqrt(var + epsilon), both compute y = gamma * x_hat + beta,
where a None gamma means 1 and a None beta means 0. Variances are biased.

Each call checks its arguments with the GIL held, takes a C-contiguous
copy of any strided input, and then makes one nogil call into C.
"""

import math
import numbers

import numpy as np

cimport numpy as cnp

from nnfast._activations import (
    check_float_array,
    check_out,
    check_same_dtype,
    finish_output,
    output_buffer,
)
from nnfast._threads import resolve

cnp.import_array()


cdef extern from "norm.h" nogil:
    ctypedef Py_ssize_t nnf_int
    int NNF_ENOMEM
    int NNF_EINVAL

    int nnf_batch_norm_forward_f32(nnf_int rows, nnf_int channels, const float *x,
                                   const float *gamma, const float *beta, double epsilon,
                                   float *y, float *mean, float *var, int n_threads)
    int nnf_batch_norm_forward_f64(nnf_int rows, nnf_int channels, const double *x,
                                   const double *gamma, const double *beta, double epsilon,
                                   double *y, double *mean, double *var, int n_threads)
    int nnf_batch_norm_inference_f32(nnf_int rows, nnf_int channels, const float *x,
                                     const float *mean, const float *var, const float *gamma,
                                     const float *beta, double epsilon, float *y,
                                     int n_threads)
    int nnf_batch_norm_inference_f64(nnf_int rows, nnf_int channels, const double *x,
                                     const double *mean, const double *var,
                                     const double *gamma, const double *beta, double epsilon,
                                     double *y, int n_threads)
    int nnf_batch_norm_backward_f32(nnf_int rows, nnf_int channels, const float *x,
                                    const float *mean, const float *var, const float *gamma,
                                    double epsilon, const float *dy, float *dx,
                                    float *gamma_grad, float *beta_grad, int n_threads)
    int nnf_batch_norm_backward_f64(nnf_int rows, nnf_int channels, const double *x,
                                    const double *mean, const double *var,
                                    const double *gamma, double epsilon, const double *dy,
                                    double *dx, double *gamma_grad, double *beta_grad,
                                    int n_threads)
    int nnf_layer_norm_forward_f32(nnf_int rows, nnf_int channels, const float *x,
                                   const float *gamma, const float *beta, double epsilon,
                                   float *y, float *mean, float *var, int n_threads)
    int nnf_layer_norm_forward_f64(nnf_int rows, nnf_int channels, const double *x,
                                   const double *gamma, const double *beta, double epsilon,
                                   double *y, double *mean, double *var, int n_threads)
    int nnf_layer_norm_backward_f32(nnf_int rows, nnf_int channels, const float *x,
                                    const float *mean, const float *var, const float *gamma,
                                    double epsilon, const float *dy, float *dx,
                                    float *gamma_grad, float *beta_grad, int n_threads)
    int nnf_layer_norm_backward_f64(nnf_int rows, nnf_int channels, const double *x,
                                    const double *mean, const double *var,
                                    const double *gamma, double epsilon, const double *dy,
                                    double *dx, double *gamma_grad, double *beta_grad,
                                    int n_threads)


def _input(op, name, x, shape_or_ndim, dtype=None):
    """Return a checked float array, C-contiguous and aligned, or None for None.

    ``shape_or_ndim`` is the required shape (a tuple) or number of axes.
    """
    if x is None:
        return None
    check_float_array(op, name, x)
    if isinstance(shape_or_ndim, tuple):
        if x.shape != shape_or_ndim:
            raise ValueError(f"{op}: {name} must have shape {shape_or_ndim}, got {x.shape}")
    elif x.ndim != shape_or_ndim:
        raise ValueError(
            f"{op}: {name} must be {shape_or_ndim}-D, got {x.ndim}-D with shape {x.shape}"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{op}: {name} must have dtype {dtype} like x, got {x.dtype}")
    if not (x.flags.c_contiguous and x.flags.aligned):
        x = np.ascontiguousarray(x)
    return x


def _epsilon(op, epsilon):
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"{op}: epsilon must be a float >= 0, got {epsilon!r}")
    value = float(epsilon)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{op}: epsilon must be a finite float >= 0, got {value}")
    return value


def _output(op, name, out, shape, dtype, inputs):
    """Return the array the kernel writes for ``out`` (None for None)."""
    if out is None:
        return None
    check_out(op, name, out, shape, dtype)
    return output_buffer(out, (), inputs)


cdef _raise_status(str op, int status):
    if status == NNF_ENOMEM:
        raise MemoryError(f"{op}: out of memory for the kernel's work buffers")
    if status == NNF_EINVAL:
        raise ValueError(f"{op}: invalid argument passed to the C kernel")


cdef inline void *_data(object arr):
    if arr is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


def _finish(buffers, outs):
    for buffer, out in zip(buffers, outs):
        if out is not None:
            finish_output(buffer, out)


def _forward(op, bint batch, x, gamma, beta, epsilon, out, mean_out, var_out, n_threads):
    x = _input(op, "x", x, 2)
    rows, channels = x.shape
    if batch and rows == 0:
        raise ValueError(f"{op}: x has 0 rows; batch statistics need at least one row")
    params = (channels,)
    gamma = _input(op, "gamma", gamma, params, x.dtype)
    beta = _input(op, "beta", beta, params, x.dtype)
    eps = _epsilon(op, epsilon)
    stats = (channels,) if batch else (rows,)
    inputs = (x, gamma, beta)
    y = np.empty(x.shape, dtype=x.dtype) if out is None else _output(
        op, "out", out, x.shape, x.dtype, inputs)
    mean = np.empty(stats, dtype=x.dtype) if mean_out is None else _output(
        op, "mean_out", mean_out, stats, x.dtype, inputs + (y,))
    var = np.empty(stats, dtype=x.dtype) if var_out is None else _output(
        op, "var_out", var_out, stats, x.dtype, inputs + (y, mean))

    cdef bint single = x.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef nnf_int n_rows = rows
    cdef nnf_int n_channels = channels
    cdef double eps_value = eps
    cdef void *x_data = _data(x)
    cdef void *g_data = _data(gamma)
    cdef void *b_data = _data(beta)
    cdef void *y_data = _data(y)
    cdef void *m_data = _data(mean)
    cdef void *v_data = _data(var)
    cdef int status
    with nogil:
        if single and batch:
            status = nnf_batch_norm_forward_f32(
                n_rows, n_channels, <const float *>x_data, <const float *>g_data,
                <const float *>b_data, eps_value, <float *>y_data, <float *>m_data,
                <float *>v_data, threads)
        elif batch:
            status = nnf_batch_norm_forward_f64(
                n_rows, n_channels, <const double *>x_data, <const double *>g_data,
                <const double *>b_data, eps_value, <double *>y_data, <double *>m_data,
                <double *>v_data, threads)
        elif single:
            status = nnf_layer_norm_forward_f32(
                n_rows, n_channels, <const float *>x_data, <const float *>g_data,
                <const float *>b_data, eps_value, <float *>y_data, <float *>m_data,
                <float *>v_data, threads)
        else:
            status = nnf_layer_norm_forward_f64(
                n_rows, n_channels, <const double *>x_data, <const double *>g_data,
                <const double *>b_data, eps_value, <double *>y_data, <double *>m_data,
                <double *>v_data, threads)
    _raise_status(op, status)
    _finish((y, mean, var), (out, mean_out, var_out))
    return (y if out is None else out, mean if mean_out is None else mean_out,
            var if var_out is None else var_out)


def _backward(op, bint batch, x, mean, var, gamma, epsilon, dy, dx_out, gamma_grad_out,
              beta_grad_out, n_threads):
    x = _input(op, "x", x, 2)
    rows, channels = x.shape
    if batch and rows == 0:
        raise ValueError(f"{op}: x has 0 rows; batch statistics need at least one row")
    params = (channels,)
    stats = (channels,) if batch else (rows,)
    mean = _input(op, "mean", mean, stats, x.dtype)
    var = _input(op, "var", var, stats, x.dtype)
    if mean is None or var is None:
        raise ValueError(f"{op}: mean and var from the forward pass are required")
    gamma = _input(op, "gamma", gamma, params, x.dtype)
    eps = _epsilon(op, epsilon)
    dy = _input(op, "dy", dy, 2)
    check_same_dtype(op, "x", x, "dy", dy)
    if dy.shape != x.shape:
        raise ValueError(f"{op}: dy must have the shape of x {x.shape}, got {dy.shape}")
    inputs = (x, mean, var, gamma, dy)
    dx = _output(op, "dx_out", dx_out, x.shape, x.dtype, inputs)
    gamma_grad = _output(op, "gamma_grad_out", gamma_grad_out, params, x.dtype,
                         inputs + (dx,))
    beta_grad = _output(op, "beta_grad_out", beta_grad_out, params, x.dtype,
                        inputs + (dx, gamma_grad))

    cdef bint single = x.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef nnf_int n_rows = rows
    cdef nnf_int n_channels = channels
    cdef double eps_value = eps
    cdef void *x_data = _data(x)
    cdef void *m_data = _data(mean)
    cdef void *v_data = _data(var)
    cdef void *g_data = _data(gamma)
    cdef void *dy_data = _data(dy)
    cdef void *dx_data = _data(dx)
    cdef void *gg_data = _data(gamma_grad)
    cdef void *bg_data = _data(beta_grad)
    cdef int status
    with nogil:
        if single and batch:
            status = nnf_batch_norm_backward_f32(
                n_rows, n_channels, <const float *>x_data, <const float *>m_data,
                <const float *>v_data, <const float *>g_data, eps_value,
                <const float *>dy_data, <float *>dx_data, <float *>gg_data,
                <float *>bg_data, threads)
        elif batch:
            status = nnf_batch_norm_backward_f64(
                n_rows, n_channels, <const double *>x_data, <const double *>m_data,
                <const double *>v_data, <const double *>g_data, eps_value,
                <const double *>dy_data, <double *>dx_data, <double *>gg_data,
                <double *>bg_data, threads)
        elif single:
            status = nnf_layer_norm_backward_f32(
                n_rows, n_channels, <const float *>x_data, <const float *>m_data,
                <const float *>v_data, <const float *>g_data, eps_value,
                <const float *>dy_data, <float *>dx_data, <float *>gg_data,
                <float *>bg_data, threads)
        else:
            status = nnf_layer_norm_backward_f64(
                n_rows, n_channels, <const double *>x_data, <const double *>m_data,
                <const double *>v_data, <const double *>g_data, eps_value,
                <const double *>dy_data, <double *>dx_data, <double *>gg_data,
                <double *>bg_data, threads)
    _raise_status(op, status)
    _finish((dx, gamma_grad, beta_grad), (dx_out, gamma_grad_out, beta_grad_out))
    return dx_out


def batch_norm_forward(x, gamma, beta, epsilon, out=None, mean_out=None, var_out=None,
                       n_threads=None):
    """Batch normalization with the batch's own statistics (training mode).

    Each column of ``x`` (rows, channels) is normalized over the rows:
    y = gamma * (x - mean) / sqrt(var + epsilon) + beta, with the column
    means and biased variances written to ``mean_out`` and ``var_out``.
    Returns (y, mean, var): the given outputs, or new arrays.
    """
    return _forward("batch_norm_forward", True, x, gamma, beta, epsilon, out, mean_out,
                    var_out, n_threads)


def batch_norm_inference(x, mean, var, gamma, beta, epsilon, out=None, n_threads=None):
    """y = gamma * (x - mean) / sqrt(var + epsilon) + beta with given statistics.

    ``mean`` and ``var`` are (channels,). Returns ``out``, or a new array.
    """
    op = "batch_norm_inference"
    x = _input(op, "x", x, 2)
    rows, channels = x.shape
    params = (channels,)
    mean = _input(op, "mean", mean, params, x.dtype)
    var = _input(op, "var", var, params, x.dtype)
    if mean is None or var is None:
        raise ValueError(f"{op}: mean and var are required")
    gamma = _input(op, "gamma", gamma, params, x.dtype)
    beta = _input(op, "beta", beta, params, x.dtype)
    eps = _epsilon(op, epsilon)
    y = np.empty(x.shape, dtype=x.dtype) if out is None else _output(
        op, "out", out, x.shape, x.dtype, (x, mean, var, gamma, beta))

    cdef bint single = x.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef nnf_int n_rows = rows
    cdef nnf_int n_channels = channels
    cdef double eps_value = eps
    cdef void *x_data = _data(x)
    cdef void *m_data = _data(mean)
    cdef void *v_data = _data(var)
    cdef void *g_data = _data(gamma)
    cdef void *b_data = _data(beta)
    cdef void *y_data = _data(y)
    cdef int status
    with nogil:
        if single:
            status = nnf_batch_norm_inference_f32(
                n_rows, n_channels, <const float *>x_data, <const float *>m_data,
                <const float *>v_data, <const float *>g_data, <const float *>b_data,
                eps_value, <float *>y_data, threads)
        else:
            status = nnf_batch_norm_inference_f64(
                n_rows, n_channels, <const double *>x_data, <const double *>m_data,
                <const double *>v_data, <const double *>g_data, <const double *>b_data,
                eps_value, <double *>y_data, threads)
    _raise_status(op, status)
    if out is None:
        return y
    return finish_output(y, out)


def batch_norm_backward(x, mean, var, gamma, epsilon, dy, dx_out=None, gamma_grad_out=None,
                        beta_grad_out=None, n_threads=None):
    """Backward pass of :func:`batch_norm_forward`, given the statistics it returned.

    gamma_grad_out = sum over rows of dy * x_hat, beta_grad_out = sum over
    rows of dy, dx_out = gamma / sqrt(var + epsilon) * (dy - mean(dy) -
    x_hat * mean(dy * x_hat)), means over the rows. Each output is computed
    only when given. Returns ``dx_out``.
    """
    return _backward("batch_norm_backward", True, x, mean, var, gamma, epsilon, dy, dx_out,
                     gamma_grad_out, beta_grad_out, n_threads)


def layer_norm_forward(x, gamma, beta, epsilon, out=None, mean_out=None, var_out=None,
                       n_threads=None):
    """Layer normalization of each row of ``x`` (rows, channels) over its columns.

    y = gamma * (x - mean) / sqrt(var + epsilon) + beta, with the row means
    and biased variances written to ``mean_out`` and ``var_out`` (rows,).
    Returns (y, mean, var): the given outputs, or new arrays.
    """
    return _forward("layer_norm_forward", False, x, gamma, beta, epsilon, out, mean_out,
                    var_out, n_threads)


def layer_norm_backward(x, mean, var, gamma, epsilon, dy, dx_out=None, gamma_grad_out=None,
                        beta_grad_out=None, n_threads=None):
    """Backward pass of :func:`layer_norm_forward`, given the row statistics it returned.

    With g = dy * gamma: dx_out = (g - mean(g) - x_hat * mean(g * x_hat)) /
    sqrt(var + epsilon), means over each row; gamma_grad_out and
    beta_grad_out are the sums over rows of dy * x_hat and dy. Each output
    is computed only when given. Returns ``dx_out``.
    """
    return _backward("layer_norm_backward", False, x, mean, var, gamma, epsilon, dy, dx_out,
                     gamma_grad_out, beta_grad_out, n_threads)
