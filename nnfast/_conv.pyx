# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled 2-D convolution, forward and backward (see csrc/conv.c).

Arrays are channels last: x is (batch, height, width, in_channels), the
kernel (kernel_h, kernel_w, in_channels, filters) and y (batch, out_h,
out_w, filters). Geometry is explicit: ``strides`` and ``dilation`` are
(row, column) pairs and ``padding`` is ((top, bottom), (left, right)) in
input pixels, so out_h = (height + top + bottom - (kernel_h - 1) *
dilation_h - 1) // stride_h + 1, and likewise out_w.

Each call checks its arguments with the GIL held, takes a C-contiguous
copy of any strided input, and then makes one nogil call into C. Outputs
that are not C-contiguous, or that overlap an input, are computed into a
new array and copied back.
"""

import numbers

import numpy as np

cimport numpy as cnp

from nnfast._activations import (
    check_activation,
    check_float_array,
    check_out,
    check_same_dtype,
    finish_output,
    output_buffer,
)
from nnfast._threads import resolve

cnp.import_array()


cdef extern from "conv.h" nogil:
    ctypedef Py_ssize_t nnf_int
    int NNF_ENOMEM
    int NNF_EINVAL

    ctypedef struct nnf_conv_shape:
        nnf_int batch, in_h, in_w, in_c
        nnf_int out_h, out_w, out_c
        nnf_int kernel_h, kernel_w
        nnf_int stride_h, stride_w
        nnf_int dilation_h, dilation_w
        nnf_int pad_top, pad_left

    int nnf_conv2d_forward_f32(const nnf_conv_shape *s, const float *x, const float *kernel,
                               const float *bias, int activation, float *y, int n_threads)
    int nnf_conv2d_forward_f64(const nnf_conv_shape *s, const double *x,
                               const double *kernel, const double *bias, int activation,
                               double *y, int n_threads)
    int nnf_conv2d_backward_f32(const nnf_conv_shape *s, const float *x, const float *kernel,
                                const float *y, const float *dy, int activation,
                                float *kernel_grad, float *bias_grad, float *dx, float beta,
                                int n_threads)
    int nnf_conv2d_backward_f64(const nnf_conv_shape *s, const double *x,
                                const double *kernel, const double *y, const double *dy,
                                int activation, double *kernel_grad, double *bias_grad,
                                double *dx, double beta, int n_threads)


cdef bint _is_ready(object x, int ndim, int typenum):
    """True when x needs no check or copy: an ndarray of ``ndim`` axes and dtype
    ``typenum`` (-1 for float32 or float64), C-contiguous, aligned, native order."""
    if not cnp.PyArray_Check(x):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>x
    if cnp.PyArray_NDIM(arr) != ndim:
        return False
    cdef int t = cnp.PyArray_TYPE(arr)
    if typenum < 0:
        if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
            return False
    elif t != typenum:
        return False
    return (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


def _input(op, name, x, ndim):
    """Return a checked float array of ``ndim`` axes, C-contiguous and aligned."""
    if _is_ready(x, ndim, -1):
        return x
    check_float_array(op, name, x)
    if x.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got {x.ndim}-D with shape {x.shape}")
    if not (x.flags.c_contiguous and x.flags.aligned):
        x = np.ascontiguousarray(x)
    return x


cdef bint _disjoint(object out, tuple inputs):
    """True when the C-contiguous ``out`` shares no byte with any input (None allowed)."""
    cdef char *lo = <char *>cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef char *hi = lo + cnp.PyArray_NBYTES(<cnp.ndarray>out)
    cdef char *other_lo
    for other in inputs:
        if other is None:
            continue
        if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>other):
            return False
        other_lo = <char *>cnp.PyArray_DATA(<cnp.ndarray>other)
        if other_lo < hi and lo < other_lo + cnp.PyArray_NBYTES(<cnp.ndarray>other):
            return False
    return True


cdef object _output(str op, str name, object out, tuple shape, object dtype, tuple inputs):
    """Return the array the kernel writes for ``out``: ``out`` itself when it is
    ready to be written, else a checked temporary for :func:`finish_output`."""
    cdef int typenum = cnp.NPY_FLOAT32 if dtype == np.float32 else cnp.NPY_FLOAT64
    cdef cnp.ndarray arr
    if _is_ready(out, len(shape), typenum):
        arr = <cnp.ndarray>out
        if (cnp.PyArray_ISWRITEABLE(arr) and out.shape == shape
                and _disjoint(out, inputs)):
            return out
    check_out(op, name, out, shape, dtype)
    return output_buffer(out, (), inputs)


def _pair(op, name, value, minimum):
    """Return ``value`` as a tuple of two ints >= ``minimum``, or raise."""
    if (type(value) is tuple and len(value) == 2 and type(value[0]) is int
            and type(value[1]) is int and value[0] >= minimum and value[1] >= minimum):
        return value
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {name} must be a pair of ints, got {name}={value!r}") from None
    pair = (first, second)
    for item in pair:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < minimum:
            raise ValueError(
                f"{op}: {name} must be a pair of ints >= {minimum}, got {name}={value!r}"
            )
    return int(first), int(second)


def _padding(op, padding):
    """Return ((top, bottom), (left, right)) as ints >= 0, or raise."""
    try:
        rows, cols = padding
    except (TypeError, ValueError):
        raise ValueError(
            f"{op}: padding must be ((top, bottom), (left, right)), got {padding!r}"
        ) from None
    return _pair(op, "padding", rows, 0), _pair(op, "padding", cols, 0)


cdef int _geometry(str op, nnf_conv_shape *s, tuple x_shape, tuple kernel_shape, strides,
                   padding, dilation) except -1:
    """Fill ``s`` from the shapes and the geometry arguments, or raise."""
    s.batch, s.in_h, s.in_w, s.in_c = x_shape
    s.kernel_h, s.kernel_w = kernel_shape[0], kernel_shape[1]
    s.out_c = kernel_shape[3]
    if kernel_shape[2] != s.in_c:
        raise ValueError(
            f"{op}: x has {s.in_c} channels but kernel {kernel_shape} expects "
            f"{kernel_shape[2]}; kernel.shape[2] must equal x.shape[3]"
        )
    if s.kernel_h < 1 or s.kernel_w < 1:
        raise ValueError(f"{op}: kernel must have a positive size, got shape {kernel_shape}")
    s.stride_h, s.stride_w = _pair(op, "strides", strides, 1)
    s.dilation_h, s.dilation_w = _pair(op, "dilation", dilation, 1)
    (s.pad_top, pad_bottom), (s.pad_left, pad_right) = _padding(op, padding)
    extent_h = (s.kernel_h - 1) * s.dilation_h + 1
    extent_w = (s.kernel_w - 1) * s.dilation_w + 1
    padded_h = s.in_h + s.pad_top + pad_bottom
    padded_w = s.in_w + s.pad_left + pad_right
    if extent_h > padded_h or extent_w > padded_w:
        raise ValueError(
            f"{op}: the dilated kernel covers {extent_h} x {extent_w} pixels, more than "
            f"the padded input's {padded_h} x {padded_w}"
        )
    s.out_h = (padded_h - extent_h) // s.stride_h + 1
    s.out_w = (padded_w - extent_w) // s.stride_w + 1
    return 0


# Activations the C kernels apply to each output element; their codes are
# NNF_ACT_LINEAR to NNF_ACT_TANH.
FUSED_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


cdef int _activation_code(str op, activation) except -1:
    code = check_activation(op, activation)
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(
            f"{op}: activation {activation!r} is not fused into the convolution; use "
            f"'linear' and apply {activation!r} to the output"
        )
    return code


cdef _raise_status(str op, int status):
    if status == NNF_ENOMEM:
        raise MemoryError(f"{op}: out of memory for the kernel's work buffers")
    if status == NNF_EINVAL:
        raise ValueError(f"{op}: invalid argument passed to the C kernel")


cdef inline void *_data(object arr):
    if arr is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


def conv2d_forward(x, kernel, bias, activation, strides, padding, dilation, out=None,
                   n_threads=None):
    """y = activation(conv2d(x, kernel) + bias), a cross-correlation as in Keras.

    ``bias`` is (filters,) or None. ``activation`` is one of
    FUSED_ACTIVATIONS: "linear", "relu", "sigmoid" or "tanh". Returns
    ``out``, or a new C-contiguous array of shape (batch, out_h, out_w,
    filters) when it is None.
    """
    op = "conv2d_forward"
    cdef int act = _activation_code(op, activation)
    x = _input(op, "x", x, 4)
    kernel = _input(op, "kernel", kernel, 4)
    if x.dtype != kernel.dtype:
        check_same_dtype(op, "x", x, "kernel", kernel)
    cdef nnf_conv_shape s
    _geometry(op, &s, x.shape, kernel.shape, strides, padding, dilation)
    if bias is not None:
        bias = _input(op, "bias", bias, 1)
        if bias.dtype != x.dtype:
            check_same_dtype(op, "x", x, "bias", bias)
        if bias.shape[0] != s.out_c:
            raise ValueError(
                f"{op}: bias must have shape ({s.out_c},) to match kernel "
                f"{kernel.shape}, got {bias.shape}"
            )
    shape = (s.batch, s.out_h, s.out_w, s.out_c)
    if out is None:
        y = np.empty(shape, dtype=x.dtype)
    else:
        y = _output(op, "out", out, shape, x.dtype, (x, kernel, bias))

    cdef bint single = x.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef void *x_data = _data(x)
    cdef void *k_data = _data(kernel)
    cdef void *b_data = _data(bias)
    cdef void *y_data = _data(y)
    cdef int status
    with nogil:
        if single:
            status = nnf_conv2d_forward_f32(&s, <const float *>x_data, <const float *>k_data,
                                            <const float *>b_data, act, <float *>y_data,
                                            threads)
        else:
            status = nnf_conv2d_forward_f64(&s, <const double *>x_data,
                                            <const double *>k_data, <const double *>b_data,
                                            act, <double *>y_data, threads)
    _raise_status(op, status)
    if out is None or y is out:
        return y
    return finish_output(y, out)


def conv2d_backward(x, kernel, y, dy, activation, strides, padding, dilation,
                    kernel_grad_out, bias_grad_out, dx_out=None, beta=0.0,
                    n_threads=None):
    """Backward pass of :func:`conv2d_forward`, in one compiled call.

    With dz = dy * activation'(z), computed from the output ``y``:
    kernel_grad_out = d(sum(dz * conv2d(x, kernel))) / d kernel
    + beta * kernel_grad_out, bias_grad_out = dz summed over batch, rows and
    columns + beta * bias_grad_out (skipped when None), and dx_out = the
    gradient with respect to x, computed only when ``dx_out`` is given.
    ``y`` may be None for the linear activation. Returns ``dx_out``.
    """
    op = "conv2d_backward"
    cdef int act = _activation_code(op, activation)
    x = _input(op, "x", x, 4)
    kernel = _input(op, "kernel", kernel, 4)
    check_same_dtype(op, "x", x, "kernel", kernel)
    cdef nnf_conv_shape s
    _geometry(op, &s, x.shape, kernel.shape, strides, padding, dilation)
    shape = (s.batch, s.out_h, s.out_w, s.out_c)
    dy = _input(op, "dy", dy, 4)
    check_same_dtype(op, "x", x, "dy", dy)
    if dy.shape != shape:
        raise ValueError(f"{op}: dy must have the output shape {shape}, got {dy.shape}")
    if y is not None:
        y = _input(op, "y", y, 4)
        check_same_dtype(op, "x", x, "y", y)
        if y.shape != shape:
            raise ValueError(f"{op}: y must have the output shape {shape}, got {y.shape}")
    elif activation != "linear":
        raise ValueError(f"{op}: y is required for activation {activation!r}")

    inputs = (x, kernel, y, dy)
    kernel_grad = _output(op, "kernel_grad_out", kernel_grad_out, kernel.shape, x.dtype,
                          inputs)
    cdef double beta_value = beta
    if beta_value != 0.0 and kernel_grad is not kernel_grad_out:
        kernel_grad[...] = kernel_grad_out
    bias_grad = None
    if bias_grad_out is not None:
        bias_grad = _output(op, "bias_grad_out", bias_grad_out, (s.out_c,), x.dtype,
                            inputs + (kernel_grad,))
        if beta_value != 0.0 and bias_grad is not bias_grad_out:
            bias_grad[...] = bias_grad_out
    dx = None
    if dx_out is not None:
        dx = _output(op, "dx_out", dx_out, x.shape, x.dtype,
                     inputs + (kernel_grad, bias_grad))

    cdef bint single = x.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef void *x_data = _data(x)
    cdef void *k_data = _data(kernel)
    cdef void *y_data = _data(y)
    cdef void *dy_data = _data(dy)
    cdef void *kg_data = _data(kernel_grad)
    cdef void *bg_data = _data(bias_grad)
    cdef void *dx_data = _data(dx)
    cdef int status
    with nogil:
        if single:
            status = nnf_conv2d_backward_f32(
                &s, <const float *>x_data, <const float *>k_data, <const float *>y_data,
                <const float *>dy_data, act, <float *>kg_data, <float *>bg_data,
                <float *>dx_data, <float>beta_value, threads,
            )
        else:
            status = nnf_conv2d_backward_f64(
                &s, <const double *>x_data, <const double *>k_data, <const double *>y_data,
                <const double *>dy_data, act, <double *>kg_data, <double *>bg_data,
                <double *>dx_data, beta_value, threads,
            )
    _raise_status(op, status)
    finish_output(kernel_grad, kernel_grad_out)
    if bias_grad_out is not None:
        finish_output(bias_grad, bias_grad_out)
    if dx_out is not None:
        finish_output(dx, dx_out)
    return dx_out
