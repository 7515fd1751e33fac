# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled 2-D max and average pooling, forward and backward (see csrc/pool.c).

Arrays are channels last: x is (batch, height, width, channels) and y
(batch, out_h, out_w, channels). ``pool_size`` and ``strides`` are (row,
column) pairs and ``padding`` is ((top, bottom), (left, right)) in input
pixels, so out_h = (height + top + bottom - pool_h) // stride_h + 1.
Padded positions take no part in a window: the maximum ignores them and
the average divides by the number of input pixels in the window.

Each call checks its arguments with the GIL held, takes a C-contiguous
copy of any strided input, and then makes one nogil call into C.
"""

import numbers

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int32_t

from nnfast._activations import (
    check_float_array,
    check_out,
    check_same_dtype,
    finish_output,
    output_buffer,
)
from nnfast._threads import resolve

cnp.import_array()


cdef extern from "pool.h" nogil:
    ctypedef Py_ssize_t nnf_int
    int NNF_ENOMEM
    int NNF_EINVAL

    ctypedef struct nnf_pool_shape:
        nnf_int batch, in_h, in_w, channels
        nnf_int out_h, out_w
        nnf_int pool_h, pool_w
        nnf_int stride_h, stride_w
        nnf_int pad_top, pad_left

    int nnf_max_pool2d_forward_f32(const nnf_pool_shape *s, const float *x, float *y,
                                   int32_t *argmax, int n_threads)
    int nnf_max_pool2d_forward_f64(const nnf_pool_shape *s, const double *x, double *y,
                                   int32_t *argmax, int n_threads)
    int nnf_max_pool2d_backward_f32(const nnf_pool_shape *s, const float *dy,
                                    const int32_t *argmax, float *dx, int n_threads)
    int nnf_max_pool2d_backward_f64(const nnf_pool_shape *s, const double *dy,
                                    const int32_t *argmax, double *dx, int n_threads)
    int nnf_avg_pool2d_forward_f32(const nnf_pool_shape *s, const float *x, float *y,
                                   int n_threads)
    int nnf_avg_pool2d_forward_f64(const nnf_pool_shape *s, const double *x, double *y,
                                   int n_threads)
    int nnf_avg_pool2d_backward_f32(const nnf_pool_shape *s, const float *dy, float *dx,
                                    int n_threads)
    int nnf_avg_pool2d_backward_f64(const nnf_pool_shape *s, const double *dy, double *dx,
                                    int n_threads)


# Largest image (height * width * channels) whose argmax indices fit an int32.
_MAX_IMAGE_SIZE = 2**31 - 1


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


def _input(op, name, x):
    """Return a checked 4-D float array, C-contiguous and aligned."""
    if _is_ready(x, 4, -1):
        return x
    check_float_array(op, name, x)
    if x.ndim != 4:
        raise ValueError(f"{op}: {name} must be 4-D, got {x.ndim}-D with shape {x.shape}")
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
    cdef int typenum
    if dtype == np.int32:
        typenum = cnp.NPY_INT32
    elif dtype == np.float32:
        typenum = cnp.NPY_FLOAT32
    else:
        typenum = cnp.NPY_FLOAT64
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
    for item in (first, second):
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < minimum:
            raise ValueError(
                f"{op}: {name} must be a pair of ints >= {minimum}, got {name}={value!r}"
            )
    return int(first), int(second)


cdef int _geometry(str op, nnf_pool_shape *s, tuple x_shape, pool_size, strides,
                   padding) except -1:
    """Fill ``s`` from the input shape and the geometry arguments, or raise."""
    s.batch, s.in_h, s.in_w, s.channels = x_shape
    if s.in_h * s.in_w * s.channels > _MAX_IMAGE_SIZE:
        raise ValueError(
            f"{op}: images of {s.in_h * s.in_w * s.channels} values are too large; "
            f"height * width * channels must be at most {_MAX_IMAGE_SIZE}"
        )
    s.pool_h, s.pool_w = _pair(op, "pool_size", pool_size, 1)
    s.stride_h, s.stride_w = _pair(op, "strides", strides, 1)
    try:
        rows, cols = padding
    except (TypeError, ValueError):
        raise ValueError(
            f"{op}: padding must be ((top, bottom), (left, right)), got {padding!r}"
        ) from None
    s.pad_top, pad_bottom = _pair(op, "padding", rows, 0)
    s.pad_left, pad_right = _pair(op, "padding", cols, 0)
    padded_h = s.in_h + s.pad_top + pad_bottom
    padded_w = s.in_w + s.pad_left + pad_right
    if s.pool_h > padded_h or s.pool_w > padded_w:
        raise ValueError(
            f"{op}: the pool window {s.pool_h} x {s.pool_w} is larger than the padded "
            f"input's {padded_h} x {padded_w}"
        )
    s.out_h = (padded_h - s.pool_h) // s.stride_h + 1
    s.out_w = (padded_w - s.pool_w) // s.stride_w + 1
    return 0


cdef _raise_status(str op, int status):
    if status == NNF_ENOMEM:
        raise MemoryError(f"{op}: out of memory for the kernel's work buffers")
    if status == NNF_EINVAL:
        raise ValueError(f"{op}: invalid argument passed to the C kernel")


cdef inline void *_data(object arr):
    if arr is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


def _check_argmax(op, argmax, shape):
    """Return ``argmax`` as a C-contiguous int32 array of ``shape``, or raise."""
    if not isinstance(argmax, np.ndarray):
        raise TypeError(f"{op}: argmax must be a numpy.ndarray, got {type(argmax).__name__}")
    if argmax.dtype != np.int32:
        raise TypeError(f"{op}: argmax must have dtype int32, got {argmax.dtype}")
    if argmax.shape != shape:
        raise ValueError(f"{op}: argmax must have shape {shape}, got {argmax.shape}")
    if not (argmax.flags.c_contiguous and argmax.flags.aligned):
        argmax = np.ascontiguousarray(argmax)
    return argmax


def max_pool2d_forward(x, pool_size, strides, padding, out=None, argmax_out=None,
                       n_threads=None):
    """y = the maximum of x over each window; returns ``out`` (or a new array).

    When ``argmax_out`` (an int32 array of y's shape) is given, it receives
    the index of each maximum within its own image, (row * width + column)
    * channels + channel, taking the first maximum in row-major window
    order. :func:`max_pool2d_backward` reads it.
    """
    op = "max_pool2d_forward"
    x = _input(op, "x", x)
    cdef nnf_pool_shape s
    _geometry(op, &s, x.shape, pool_size, strides, padding)
    shape = (s.batch, s.out_h, s.out_w, s.channels)
    if out is None:
        y = np.empty(shape, dtype=x.dtype)
    else:
        y = _output(op, "out", out, shape, x.dtype, (x,))
    argmax = None
    if argmax_out is not None:
        argmax = _output(op, "argmax_out", argmax_out, shape, np.int32, (x, y))

    cdef bint single = x.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef void *x_data = _data(x)
    cdef void *y_data = _data(y)
    cdef int32_t *arg_data = <int32_t *>_data(argmax)
    cdef int status
    with nogil:
        if single:
            status = nnf_max_pool2d_forward_f32(&s, <const float *>x_data, <float *>y_data,
                                                arg_data, threads)
        else:
            status = nnf_max_pool2d_forward_f64(&s, <const double *>x_data,
                                                <double *>y_data, arg_data, threads)
    _raise_status(op, status)
    if argmax_out is not None and argmax is not argmax_out:
        finish_output(argmax, argmax_out)
    if out is None or y is out:
        return y
    return finish_output(y, out)


def max_pool2d_backward(dy, argmax, pool_size, strides, padding, dx_out, n_threads=None):
    """dx_out = the gradient of sum(dy * max_pool2d(x)) with respect to x.

    Each element of ``dy`` goes to the input element that ``argmax`` (from
    :func:`max_pool2d_forward`) names. ``dx_out`` has the input's shape.
    Returns ``dx_out``.
    """
    op = "max_pool2d_backward"
    check_float_array(op, "dx_out", dx_out)
    if dx_out.ndim != 4:
        raise ValueError(f"{op}: dx_out must be 4-D, got shape {dx_out.shape}")
    cdef nnf_pool_shape s
    _geometry(op, &s, dx_out.shape, pool_size, strides, padding)
    shape = (s.batch, s.out_h, s.out_w, s.channels)
    dy = _input(op, "dy", dy)
    check_same_dtype(op, "dy", dy, "dx_out", dx_out)
    if dy.shape != shape:
        raise ValueError(f"{op}: dy must have the output shape {shape}, got {dy.shape}")
    argmax = _check_argmax(op, argmax, shape)
    dx = _output(op, "dx_out", dx_out, dx_out.shape, dy.dtype, (dy, argmax))

    cdef bint single = dy.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef void *dy_data = _data(dy)
    cdef const int32_t *arg_data = <const int32_t *>_data(argmax)
    cdef void *dx_data = _data(dx)
    cdef int status
    with nogil:
        if single:
            status = nnf_max_pool2d_backward_f32(&s, <const float *>dy_data, arg_data,
                                                 <float *>dx_data, threads)
        else:
            status = nnf_max_pool2d_backward_f64(&s, <const double *>dy_data, arg_data,
                                                 <double *>dx_data, threads)
    _raise_status(op, status)
    return finish_output(dx, dx_out)


def avg_pool2d_forward(x, pool_size, strides, padding, out=None, n_threads=None):
    """y = the mean of x over the input pixels of each window.

    Returns ``out``, or a new C-contiguous array when it is None.
    """
    op = "avg_pool2d_forward"
    x = _input(op, "x", x)
    cdef nnf_pool_shape s
    _geometry(op, &s, x.shape, pool_size, strides, padding)
    shape = (s.batch, s.out_h, s.out_w, s.channels)
    if out is None:
        y = np.empty(shape, dtype=x.dtype)
    else:
        y = _output(op, "out", out, shape, x.dtype, (x,))

    cdef bint single = x.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef void *x_data = _data(x)
    cdef void *y_data = _data(y)
    cdef int status
    with nogil:
        if single:
            status = nnf_avg_pool2d_forward_f32(&s, <const float *>x_data, <float *>y_data,
                                                threads)
        else:
            status = nnf_avg_pool2d_forward_f64(&s, <const double *>x_data,
                                                <double *>y_data, threads)
    _raise_status(op, status)
    if out is None or y is out:
        return y
    return finish_output(y, out)


def avg_pool2d_backward(dy, pool_size, strides, padding, dx_out, n_threads=None):
    """dx_out = the gradient of sum(dy * avg_pool2d(x)) with respect to x.

    ``dx_out`` has the input's shape. Returns ``dx_out``.
    """
    op = "avg_pool2d_backward"
    check_float_array(op, "dx_out", dx_out)
    if dx_out.ndim != 4:
        raise ValueError(f"{op}: dx_out must be 4-D, got shape {dx_out.shape}")
    cdef nnf_pool_shape s
    _geometry(op, &s, dx_out.shape, pool_size, strides, padding)
    shape = (s.batch, s.out_h, s.out_w, s.channels)
    dy = _input(op, "dy", dy)
    check_same_dtype(op, "dy", dy, "dx_out", dx_out)
    if dy.shape != shape:
        raise ValueError(f"{op}: dy must have the output shape {shape}, got {dy.shape}")
    dx = _output(op, "dx_out", dx_out, dx_out.shape, dy.dtype, (dy,))

    cdef bint single = dy.dtype == np.float32
    cdef int threads = resolve(n_threads)
    cdef void *dy_data = _data(dy)
    cdef void *dx_data = _data(dx)
    cdef int status
    with nogil:
        if single:
            status = nnf_avg_pool2d_backward_f32(&s, <const float *>dy_data,
                                                 <float *>dx_data, threads)
        else:
            status = nnf_avg_pool2d_backward_f64(&s, <const double *>dy_data,
                                                 <double *>dx_data, threads)
    _raise_status(op, status)
    return finish_output(dx, dx_out)
