# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Activation kernels: y = activation(x) and dx = dy * activation'(x).

Layout: the Python wrappers check arguments with the GIL held and take a
C-contiguous copy of any strided or Fortran-ordered input, so the loops run
over flat buffers. Elementwise activations loop over all elements. Softmax
loops over the rows of the array seen as (size // n_cols, n_cols), where
n_cols is the length of the last axis.

Threads: one parallel region with a static schedule, where each thread takes
one contiguous block of elements, or of whole rows for softmax. A row is never
split, so the result does not depend on the thread count. Below a size
threshold the loop runs serially and opens no parallel region.

This module also holds the argument and output checks that the loss module
reuses, so that both word their errors the same way.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp

import numpy as np

from nnfast._threads import resolve

cdef extern from "nnfast.h":
    int NNF_ACT_LINEAR
    int NNF_ACT_RELU
    int NNF_ACT_SIGMOID
    int NNF_ACT_TANH
    int NNF_ACT_SOFTMAX

cdef extern from "activations.h" nogil:
    float nnf_relu_fwd_f32(float x)
    double nnf_relu_fwd_f64(double x)
    float nnf_sigmoid_fwd_f32(float x)
    double nnf_sigmoid_fwd_f64(double x)
    float nnf_tanh_fwd_f32(float x)
    double nnf_tanh_fwd_f64(double x)
    float nnf_relu_bwd_f32(float y, float dy)
    double nnf_relu_bwd_f64(double y, double dy)
    float nnf_sigmoid_bwd_f32(float y, float dy)
    double nnf_sigmoid_bwd_f64(double y, double dy)
    float nnf_tanh_bwd_f32(float y, float dy)
    double nnf_tanh_bwd_f64(double y, double dy)

cdef extern from "<math.h>" nogil:
    float expf(float x)


ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")

_ACTIVATION_CODES = {
    "linear": NNF_ACT_LINEAR,
    "relu": NNF_ACT_RELU,
    "sigmoid": NNF_ACT_SIGMOID,
    "tanh": NNF_ACT_TANH,
    "softmax": NNF_ACT_SOFTMAX,
}

# Minimum number of elements for which a second thread pays off. Measured on a
# shared, noisy 2-core x86-64 VM (GCC 12, -O3, libgomp) by timing each kernel
# on (size // 64, 64) arrays of both dtypes with n_threads=1 and n_threads=2,
# best of 5, for sizes from 1,024 to 1,048,576. Loops that call exp or tanh
# per element (sigmoid, tanh and softmax forward, softmax backward) ran
# 1.0-2.0x faster with two threads at 4,096 elements, and 0.8-1.5x at 1,024.
# Loops that only move memory or do a few multiplications (linear, relu, and
# the sigmoid and tanh backward passes) ran 0.8-1.1x at 16,384 elements,
# 0.95-1.7x at 65,536 and 1.4-1.8x at 131,072.
# NOTE: only two threads on two cores were measured. With more threads a
# parallel region costs more to open, so these sizes may be low for them.
PARALLEL_MIN_SIZE_TRANSCENDENTAL = 4096
PARALLEL_MIN_SIZE_MEMORY_BOUND = 65536


# ---------------------------------------------------------------------------
# Argument checks, shared with the loss kernels.
# ---------------------------------------------------------------------------

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _format_shape(shape):
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def check_float_array(op, name, array):
    """Return ``array`` unchanged, or raise TypeError unless it is a float32 or float64 ndarray."""
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"{op}: {name} must be a numpy.ndarray, got {type(array).__name__}"
        )
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: {name} must have dtype float32 or float64, got {array.dtype}"
        )
    return array


def check_same_dtype(op, name_a, a, name_b, b):
    """Raise TypeError unless ``a`` and ``b`` have the same dtype."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: {name_a} and {name_b} must have the same dtype, "
            f"got {a.dtype} and {b.dtype}. Cast one of them with .astype()"
        )


def check_same_shape(op, name_a, a, name_b, b):
    """Raise ValueError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{op}: {name_a} and {name_b} must have the same shape, "
            f"got {_format_shape(a.shape)} and {_format_shape(b.shape)}"
        )


def check_out(op, name, out, shape, dtype):
    """Raise unless ``out`` is a writeable ndarray of ``shape`` and ``dtype``.

    A wrong shape raises ValueError and a wrong dtype TypeError. Any memory
    layout is accepted, because the wrappers copy into a strided ``out``.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(out).__name__}")
    shape = tuple(shape)
    dtype = np.dtype(dtype)
    if out.shape != shape or out.dtype != dtype:
        message = (
            f"{op}: {name} must have shape {_format_shape(shape)} and dtype {dtype}, "
            f"got {_format_shape(out.shape)} {out.dtype}"
        )
        if out.shape != shape:
            raise ValueError(message)
        raise TypeError(message)
    if not out.flags.writeable:
        raise ValueError(f"{op}: {name} must be writeable, got a read-only array")


def output_buffer(out, same_buffer_ok, no_overlap):
    """Return a C-contiguous array for the kernel to write, given a checked ``out``.

    That is ``out`` itself when it is C-contiguous and the kernel can write it
    directly. Arrays in ``same_buffer_ok`` may be the very same buffer as
    ``out`` (an in-place call), because the kernel reads each of their
    elements before it writes that element of ``out``. Any other overlap, with
    those arrays or with the arrays in ``no_overlap``, makes the kernel write a
    new array instead, which the caller copies into ``out`` with
    :func:`finish_output`. Entries may be None.
    """
    if not out.flags.c_contiguous:
        return np.empty(out.shape, dtype=out.dtype)
    out_address = out.__array_interface__["data"][0]
    for array in same_buffer_ok:
        if array is None or not np.may_share_memory(out, array):
            continue
        same_buffer = (
            array.flags.c_contiguous
            and array.__array_interface__["data"][0] == out_address
            and array.shape == out.shape
        )
        if not same_buffer:
            return np.empty(out.shape, dtype=out.dtype)
    for array in no_overlap:
        if array is not None and np.may_share_memory(out, array):
            return np.empty(out.shape, dtype=out.dtype)
    return out


def finish_output(buffer, out):
    """Copy ``buffer`` into ``out`` unless they are the same array, and return ``out``."""
    if buffer is not out:
        out[...] = buffer
    return out


def check_activation(op, name):
    """Return the C code of activation ``name``, or raise ValueError listing the valid names."""
    code = _ACTIVATION_CODES.get(name) if isinstance(name, str) else None
    if code is None:
        raise ValueError(
            f"{op}: unknown activation {name!r}, expected one of {', '.join(ACTIVATIONS)}"
        )
    return code


# ---------------------------------------------------------------------------
# Per-element functions, dispatched to the shared C definitions by dtype.
# ---------------------------------------------------------------------------

cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _relu_fwd(floating x) noexcept nogil:
    if floating is float:
        return nnf_relu_fwd_f32(x)
    else:
        return nnf_relu_fwd_f64(x)


cdef inline floating _sigmoid_fwd(floating x) noexcept nogil:
    if floating is float:
        return nnf_sigmoid_fwd_f32(x)
    else:
        return nnf_sigmoid_fwd_f64(x)


cdef inline floating _tanh_fwd(floating x) noexcept nogil:
    if floating is float:
        return nnf_tanh_fwd_f32(x)
    else:
        return nnf_tanh_fwd_f64(x)


cdef inline floating _relu_bwd(floating y, floating dy) noexcept nogil:
    if floating is float:
        return nnf_relu_bwd_f32(y, dy)
    else:
        return nnf_relu_bwd_f64(y, dy)


cdef inline floating _sigmoid_bwd(floating y, floating dy) noexcept nogil:
    if floating is float:
        return nnf_sigmoid_bwd_f32(y, dy)
    else:
        return nnf_sigmoid_bwd_f64(y, dy)


cdef inline floating _tanh_bwd(floating y, floating dy) noexcept nogil:
    if floating is float:
        return nnf_tanh_bwd_f32(y, dy)
    else:
        return nnf_tanh_bwd_f64(y, dy)


# ---------------------------------------------------------------------------
# Softmax over one row.
# ---------------------------------------------------------------------------

cdef void _softmax_fwd_row(const floating* x, floating* y, Py_ssize_t n_cols) noexcept nogil:
    """y = exp(x - max(x)) / sum(exp(x - max(x))) over one row.

    The sum is accumulated in double, also for float32. A NaN anywhere in the
    row makes the whole row NaN, as in the NumPy formula. ``y`` may be ``x``.
    """
    cdef Py_ssize_t j
    cdef floating row_max = x[0]
    cdef floating e
    cdef double total = 0.0

    for j in range(1, n_cols):
        if x[j] > row_max:
            row_max = x[j]
    for j in range(n_cols):
        e = _exp(x[j] - row_max)
        y[j] = e
        total += e
    for j in range(n_cols):
        y[j] = <floating>(y[j] / total)


cdef void _softmax_bwd_row(const floating* y, const floating* dy, floating* dx,
                           Py_ssize_t n_cols) noexcept nogil:
    """dx = y * (dy - sum(dy * y)) over one row, the sum accumulated in double."""
    cdef Py_ssize_t j
    cdef double total = 0.0
    cdef floating dot

    for j in range(n_cols):
        total += <double>dy[j] * y[j]
    dot = <floating>total
    for j in range(n_cols):
        dx[j] = y[j] * (dy[j] - dot)


# ---------------------------------------------------------------------------
# Loops over a span of elements (or rows, for softmax).
# ---------------------------------------------------------------------------

cdef void _forward_span(int code, const floating* x, floating* y, Py_ssize_t start,
                        Py_ssize_t stop, Py_ssize_t n_cols) noexcept nogil:
    """Apply activation ``code`` to elements [start, stop), or rows for softmax."""
    cdef Py_ssize_t i
    if code == NNF_ACT_LINEAR:
        for i in range(start, stop):
            y[i] = x[i]
    elif code == NNF_ACT_RELU:
        for i in range(start, stop):
            y[i] = _relu_fwd(x[i])
    elif code == NNF_ACT_SIGMOID:
        for i in range(start, stop):
            y[i] = _sigmoid_fwd(x[i])
    elif code == NNF_ACT_TANH:
        for i in range(start, stop):
            y[i] = _tanh_fwd(x[i])
    else:
        for i in range(start, stop):
            _softmax_fwd_row(x + i * n_cols, y + i * n_cols, n_cols)


cdef void _backward_span(int code, const floating* y, const floating* dy, floating* dx,
                         Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n_cols) noexcept nogil:
    """Write dy * activation'(x) for elements [start, stop), or rows for softmax."""
    cdef Py_ssize_t i
    if code == NNF_ACT_LINEAR:
        for i in range(start, stop):
            dx[i] = dy[i]
    elif code == NNF_ACT_RELU:
        for i in range(start, stop):
            dx[i] = _relu_bwd(y[i], dy[i])
    elif code == NNF_ACT_SIGMOID:
        for i in range(start, stop):
            dx[i] = _sigmoid_bwd(y[i], dy[i])
    elif code == NNF_ACT_TANH:
        for i in range(start, stop):
            dx[i] = _tanh_bwd(y[i], dy[i])
    else:
        for i in range(start, stop):
            _softmax_bwd_row(y + i * n_cols, dy + i * n_cols, dx + i * n_cols, n_cols)


cdef Py_ssize_t _block_size(Py_ssize_t n_items, int n_threads, bint is_rows) noexcept nogil:
    """Return the number of items per thread.

    Element blocks are rounded up to a multiple of 16 elements, which puts
    block boundaries on 64-byte cache-line boundaries when the buffer starts
    on one, so that two threads do not write the same line there.
    """
    cdef Py_ssize_t block = (n_items + n_threads - 1) // n_threads
    if not is_rows:
        block = (block + 15) // 16 * 16
    return block


cdef void _forward(int code, const floating* x, floating* y, Py_ssize_t n_items,
                   Py_ssize_t n_cols, int n_threads) noexcept nogil:
    cdef Py_ssize_t block, t, start, stop
    if n_threads <= 1:
        _forward_span(code, x, y, 0, n_items, n_cols)
        return
    block = _block_size(n_items, n_threads, code == NNF_ACT_SOFTMAX)
    for t in prange(n_threads, schedule='static', num_threads=n_threads):
        start = t * block
        stop = min(start + block, n_items)
        if start < stop:
            _forward_span(code, x, y, start, stop, n_cols)


cdef void _backward(int code, const floating* y, const floating* dy, floating* dx,
                    Py_ssize_t n_items, Py_ssize_t n_cols, int n_threads) noexcept nogil:
    cdef Py_ssize_t block, t, start, stop
    if n_threads <= 1:
        _backward_span(code, y, dy, dx, 0, n_items, n_cols)
        return
    block = _block_size(n_items, n_threads, code == NNF_ACT_SOFTMAX)
    for t in prange(n_threads, schedule='static', num_threads=n_threads):
        start = t * block
        stop = min(start + block, n_items)
        if start < stop:
            _backward_span(code, y, dy, dx, start, stop, n_cols)


# ---------------------------------------------------------------------------
# Typed entry points over flat buffers.
# ---------------------------------------------------------------------------

cdef void _forward_flat(int code, const floating[::1] x, floating[::1] y, Py_ssize_t n_cols,
                        int n_threads) noexcept nogil:
    cdef Py_ssize_t n_items = x.shape[0]
    if code == NNF_ACT_SOFTMAX:
        n_items = n_items // n_cols
    _forward(code, &x[0], &y[0], n_items, n_cols, n_threads)


cdef void _backward_flat(int code, const floating[::1] y, const floating[::1] dy,
                         floating[::1] dx, Py_ssize_t n_cols, int n_threads) noexcept nogil:
    cdef Py_ssize_t n_items = y.shape[0]
    if code == NNF_ACT_SOFTMAX:
        n_items = n_items // n_cols
    _backward(code, &y[0], &dy[0], &dx[0], n_items, n_cols, n_threads)


def _threads_for(int code, bint backward, Py_ssize_t size, n_threads):
    """Return the thread count for one call on ``size`` elements."""
    cdef bint transcendental
    if backward:
        transcendental = code == NNF_ACT_SOFTMAX
    else:
        transcendental = code in (NNF_ACT_SIGMOID, NNF_ACT_TANH, NNF_ACT_SOFTMAX)
    threshold = PARALLEL_MIN_SIZE_TRANSCENDENTAL if transcendental else PARALLEL_MIN_SIZE_MEMORY_BOUND
    if size < threshold:
        return 1
    return resolve(n_threads)


def _check_softmax_shape(op, array, int code):
    if code == NNF_ACT_SOFTMAX and array.ndim == 0:
        raise ValueError(
            f"{op}: softmax needs an array with at least one axis, got a 0-d array"
        )


def activation_forward(name, x, out=None, n_threads=None):
    """y = activation(x), elementwise, or over the last axis for softmax.

    Parameters
    ----------
    name : {"linear", "relu", "sigmoid", "tanh", "softmax"}
    x : ndarray of float32 or float64, any shape and memory layout
        Softmax needs at least one axis and normalizes each slice along the
        last one, after subtracting its maximum.
    out : ndarray, optional
        Receives y. It must have the shape and dtype of ``x`` and may be ``x``
        itself.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.

    Returns
    -------
    ndarray
        ``out`` when given, else a new C-contiguous array.
    """
    cdef int code, threads
    cdef Py_ssize_t n_cols
    cdef const float[::1] x_f32
    cdef const double[::1] x_f64
    cdef float[::1] y_f32
    cdef double[::1] y_f64

    op = "activation_forward"
    code = check_activation(op, name)
    x = check_float_array(op, "x", x)
    _check_softmax_shape(op, x, code)
    if out is not None:
        check_out(op, "out", out, x.shape, x.dtype)
        buffer = output_buffer(out, (x,), ())
    else:
        buffer = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return buffer if out is None else out

    x_flat = np.ascontiguousarray(x).reshape(-1)
    y_flat = buffer.reshape(-1)
    n_cols = x.shape[x.ndim - 1] if x.ndim > 0 else 1
    threads = _threads_for(code, False, x.size, n_threads)
    if x.dtype == np.float32:
        x_f32 = x_flat
        y_f32 = y_flat
        with nogil:
            _forward_flat(code, x_f32, y_f32, n_cols, threads)
    else:
        x_f64 = x_flat
        y_f64 = y_flat
        with nogil:
            _forward_flat(code, x_f64, y_f64, n_cols, threads)
    return buffer if out is None else finish_output(buffer, out)


def activation_backward(name, x, y, dy, out=None, n_threads=None):
    """dx = dy * activation'(x), computed from the saved output ``y``.

    Every activation here has a derivative that is a function of its output:
    relu' = [y > 0], sigmoid' = y (1 - y), tanh' = 1 - y^2, and for softmax
    dx = y * (dy - sum(dy * y)) over the last axis. The saved input ``x`` is
    accepted for symmetry with other backends and is not read, so it may be
    None.

    Parameters
    ----------
    name : {"linear", "relu", "sigmoid", "tanh", "softmax"}
    x : ndarray or None
        Not read.
    y, dy : ndarray of float32 or float64, same shape and dtype
    out : ndarray, optional
        Receives dx. It must have the shape and dtype of ``dy`` and may be
        ``y`` or ``dy`` itself.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.

    Returns
    -------
    ndarray
        ``out`` when given, else a new C-contiguous array.
    """
    cdef int code, threads
    cdef Py_ssize_t n_cols
    cdef const float[::1] y_f32, dy_f32
    cdef const double[::1] y_f64, dy_f64
    cdef float[::1] dx_f32
    cdef double[::1] dx_f64

    op = "activation_backward"
    code = check_activation(op, name)
    y = check_float_array(op, "y", y)
    dy = check_float_array(op, "dy", dy)
    check_same_dtype(op, "y", y, "dy", dy)
    check_same_shape(op, "y", y, "dy", dy)
    _check_softmax_shape(op, y, code)
    if out is not None:
        check_out(op, "out", out, dy.shape, dy.dtype)
        buffer = output_buffer(out, (y, dy), ())
    else:
        buffer = np.empty(dy.shape, dtype=dy.dtype)
    if dy.size == 0:
        return buffer if out is None else out

    y_flat = np.ascontiguousarray(y).reshape(-1)
    dy_flat = np.ascontiguousarray(dy).reshape(-1)
    dx_flat = buffer.reshape(-1)
    n_cols = dy.shape[dy.ndim - 1] if dy.ndim > 0 else 1
    threads = _threads_for(code, True, dy.size, n_threads)
    if dy.dtype == np.float32:
        y_f32 = y_flat
        dy_f32 = dy_flat
        dx_f32 = dx_flat
        with nogil:
            _backward_flat(code, y_f32, dy_f32, dx_f32, n_cols, threads)
    else:
        y_f64 = y_flat
        dy_f64 = dy_flat
        dx_f64 = dx_flat
        with nogil:
            _backward_flat(code, y_f64, dy_f64, dx_f64, n_cols, threads)
    return buffer if out is None else finish_output(buffer, out)
