# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Activation kernels: y = activation(x) and dx = dy * activation'(x).

Layout: the Python wrappers check arguments with the GIL held and take a
C-contiguous copy of any strided or Fortran-ordered input, so the loops run
over flat buffers. Elementwise activations loop over all elements. Softmax
and log_softmax loop over the rows of the array seen as
(size // n_cols, n_cols), where n_cols is the length of the last axis.

Backward passes read one saved array besides dy: the output y for the
activations in OUTPUT_DERIVATIVE, the input x for the others.

Threads: one parallel region with a static schedule, where each thread takes
one contiguous block of elements, or of whole rows for softmax. A row is never
split, so the result does not depend on the thread count. Below a size
threshold the loop runs serially and opens no parallel region.

This module also holds the argument and output checks that the loss module
reuses, so that both word their errors the same way.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log

import numpy as np

from nnfast._reference import ALL_ACTIVATIONS, OUTPUT_DERIVATIVE, PARAMETER_DEFAULTS
from nnfast._threads import resolve_for_size

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
    float nnf_leaky_relu_fwd_f32(float x, float slope)
    double nnf_leaky_relu_fwd_f64(double x, double slope)
    float nnf_leaky_relu_bwd_f32(float x, float dy, float slope)
    double nnf_leaky_relu_bwd_f64(double x, double dy, double slope)
    float nnf_elu_fwd_f32(float x, float alpha)
    double nnf_elu_fwd_f64(double x, double alpha)
    float nnf_elu_bwd_f32(float x, float dy, float alpha)
    double nnf_elu_bwd_f64(double x, double dy, double alpha)
    float nnf_selu_fwd_f32(float x)
    double nnf_selu_fwd_f64(double x)
    float nnf_selu_bwd_f32(float x, float dy)
    double nnf_selu_bwd_f64(double x, double dy)
    float nnf_gelu_fwd_f32(float x)
    double nnf_gelu_fwd_f64(double x)
    float nnf_gelu_bwd_f32(float x, float dy)
    double nnf_gelu_bwd_f64(double x, double dy)
    float nnf_gelu_tanh_fwd_f32(float x)
    double nnf_gelu_tanh_fwd_f64(double x)
    float nnf_gelu_tanh_bwd_f32(float x, float dy)
    double nnf_gelu_tanh_bwd_f64(double x, double dy)
    float nnf_silu_fwd_f32(float x)
    double nnf_silu_fwd_f64(double x)
    float nnf_silu_bwd_f32(float x, float dy)
    double nnf_silu_bwd_f64(double x, double dy)
    float nnf_softplus_fwd_f32(float x)
    double nnf_softplus_fwd_f64(double x)
    float nnf_softplus_bwd_f32(float x, float dy)
    double nnf_softplus_bwd_f64(double x, double dy)
    float nnf_softsign_fwd_f32(float x)
    double nnf_softsign_fwd_f64(double x)
    float nnf_softsign_bwd_f32(float x, float dy)
    double nnf_softsign_bwd_f64(double x, double dy)
    float nnf_hard_sigmoid_fwd_f32(float x)
    double nnf_hard_sigmoid_fwd_f64(double x)
    float nnf_hard_sigmoid_bwd_f32(float x, float dy)
    double nnf_hard_sigmoid_bwd_f64(double x, double dy)
    float nnf_exponential_fwd_f32(float x)
    double nnf_exponential_fwd_f64(double x)
    float nnf_exponential_bwd_f32(float y, float dy)
    double nnf_exponential_bwd_f64(double y, double dy)

cdef extern from "<math.h>" nogil:
    float expf(float x)

# Codes of the activations that only these kernels compute, after the
# NNF_ACT_* codes that nnfast.h gives the ones the dense kernels fuse.
cdef enum:
    ACT_LEAKY_RELU = 5
    ACT_ELU
    ACT_SELU
    ACT_GELU
    ACT_GELU_APPROXIMATE
    ACT_SILU
    ACT_SOFTPLUS
    ACT_SOFTSIGN
    ACT_HARD_SIGMOID
    ACT_EXPONENTIAL
    ACT_LOG_SOFTMAX


ACTIVATIONS = ALL_ACTIVATIONS

_ACTIVATION_CODES = {
    "linear": NNF_ACT_LINEAR,
    "relu": NNF_ACT_RELU,
    "sigmoid": NNF_ACT_SIGMOID,
    "tanh": NNF_ACT_TANH,
    "softmax": NNF_ACT_SOFTMAX,
    "leaky_relu": ACT_LEAKY_RELU,
    "elu": ACT_ELU,
    "selu": ACT_SELU,
    "gelu": ACT_GELU,
    "gelu_approximate": ACT_GELU_APPROXIMATE,
    "silu": ACT_SILU,
    "softplus": ACT_SOFTPLUS,
    "softsign": ACT_SOFTSIGN,
    "hard_sigmoid": ACT_HARD_SIGMOID,
    "exponential": ACT_EXPONENTIAL,
    "log_softmax": ACT_LOG_SOFTMAX,
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
# NOTE: the activations added after softmax were not timed. They take the
# threshold of the loops they resemble: those that call exp, expm1, erfc,
# tanh or log1p per element get the transcendental one, the others (leaky
# relu, hard sigmoid, softsign, and the exponential backward pass) the
# memory-bound one.
PARALLEL_MIN_SIZE_TRANSCENDENTAL = 4096
PARALLEL_MIN_SIZE_MEMORY_BOUND = 65536

_TRANSCENDENTAL_FORWARD = frozenset((
    NNF_ACT_SIGMOID, NNF_ACT_TANH, NNF_ACT_SOFTMAX, ACT_ELU, ACT_SELU, ACT_GELU,
    ACT_GELU_APPROXIMATE, ACT_SILU, ACT_SOFTPLUS, ACT_EXPONENTIAL, ACT_LOG_SOFTMAX,
))
_TRANSCENDENTAL_BACKWARD = frozenset((
    NNF_ACT_SOFTMAX, ACT_ELU, ACT_SELU, ACT_GELU, ACT_GELU_APPROXIMATE, ACT_SILU,
    ACT_SOFTPLUS, ACT_LOG_SOFTMAX,
))
_ROW_WISE = frozenset((NNF_ACT_SOFTMAX, ACT_LOG_SOFTMAX))


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


cdef inline floating _extra_fwd(int code, floating x, floating param) noexcept nogil:
    """Return activation ``code``(x) for the elementwise activations after softmax."""
    if floating is float:
        if code == ACT_LEAKY_RELU:
            return nnf_leaky_relu_fwd_f32(x, param)
        elif code == ACT_ELU:
            return nnf_elu_fwd_f32(x, param)
        elif code == ACT_SELU:
            return nnf_selu_fwd_f32(x)
        elif code == ACT_GELU:
            return nnf_gelu_fwd_f32(x)
        elif code == ACT_GELU_APPROXIMATE:
            return nnf_gelu_tanh_fwd_f32(x)
        elif code == ACT_SILU:
            return nnf_silu_fwd_f32(x)
        elif code == ACT_SOFTPLUS:
            return nnf_softplus_fwd_f32(x)
        elif code == ACT_SOFTSIGN:
            return nnf_softsign_fwd_f32(x)
        elif code == ACT_HARD_SIGMOID:
            return nnf_hard_sigmoid_fwd_f32(x)
        else:
            return nnf_exponential_fwd_f32(x)
    else:
        if code == ACT_LEAKY_RELU:
            return nnf_leaky_relu_fwd_f64(x, param)
        elif code == ACT_ELU:
            return nnf_elu_fwd_f64(x, param)
        elif code == ACT_SELU:
            return nnf_selu_fwd_f64(x)
        elif code == ACT_GELU:
            return nnf_gelu_fwd_f64(x)
        elif code == ACT_GELU_APPROXIMATE:
            return nnf_gelu_tanh_fwd_f64(x)
        elif code == ACT_SILU:
            return nnf_silu_fwd_f64(x)
        elif code == ACT_SOFTPLUS:
            return nnf_softplus_fwd_f64(x)
        elif code == ACT_SOFTSIGN:
            return nnf_softsign_fwd_f64(x)
        elif code == ACT_HARD_SIGMOID:
            return nnf_hard_sigmoid_fwd_f64(x)
        else:
            return nnf_exponential_fwd_f64(x)


cdef inline floating _extra_bwd(int code, floating saved, floating dy,
                                floating param) noexcept nogil:
    """Return dy * activation'(x) for the elementwise activations after softmax.

    ``saved`` is the output y for exponential and the input x for the others.
    """
    if floating is float:
        if code == ACT_LEAKY_RELU:
            return nnf_leaky_relu_bwd_f32(saved, dy, param)
        elif code == ACT_ELU:
            return nnf_elu_bwd_f32(saved, dy, param)
        elif code == ACT_SELU:
            return nnf_selu_bwd_f32(saved, dy)
        elif code == ACT_GELU:
            return nnf_gelu_bwd_f32(saved, dy)
        elif code == ACT_GELU_APPROXIMATE:
            return nnf_gelu_tanh_bwd_f32(saved, dy)
        elif code == ACT_SILU:
            return nnf_silu_bwd_f32(saved, dy)
        elif code == ACT_SOFTPLUS:
            return nnf_softplus_bwd_f32(saved, dy)
        elif code == ACT_SOFTSIGN:
            return nnf_softsign_bwd_f32(saved, dy)
        elif code == ACT_HARD_SIGMOID:
            return nnf_hard_sigmoid_bwd_f32(saved, dy)
        else:
            return nnf_exponential_bwd_f32(saved, dy)
    else:
        if code == ACT_LEAKY_RELU:
            return nnf_leaky_relu_bwd_f64(saved, dy, param)
        elif code == ACT_ELU:
            return nnf_elu_bwd_f64(saved, dy, param)
        elif code == ACT_SELU:
            return nnf_selu_bwd_f64(saved, dy)
        elif code == ACT_GELU:
            return nnf_gelu_bwd_f64(saved, dy)
        elif code == ACT_GELU_APPROXIMATE:
            return nnf_gelu_tanh_bwd_f64(saved, dy)
        elif code == ACT_SILU:
            return nnf_silu_bwd_f64(saved, dy)
        elif code == ACT_SOFTPLUS:
            return nnf_softplus_bwd_f64(saved, dy)
        elif code == ACT_SOFTSIGN:
            return nnf_softsign_bwd_f64(saved, dy)
        elif code == ACT_HARD_SIGMOID:
            return nnf_hard_sigmoid_bwd_f64(saved, dy)
        else:
            return nnf_exponential_bwd_f64(saved, dy)


# ---------------------------------------------------------------------------
# Softmax and log_softmax over one row.
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


cdef void _log_softmax_fwd_row(const floating* x, floating* y,
                               Py_ssize_t n_cols) noexcept nogil:
    """y = x - max(x) - log(sum(exp(x - max(x)))) over one row.

    The sum and the final subtraction are done in double, also for float32,
    and rounded once. ``y`` may be ``x``, because x is read in full before y
    is written.
    """
    cdef Py_ssize_t j
    cdef floating row_max = x[0]
    cdef double total = 0.0
    cdef double lse

    for j in range(1, n_cols):
        if x[j] > row_max:
            row_max = x[j]
    for j in range(n_cols):
        total += _exp(x[j] - row_max)
    lse = log(total)
    for j in range(n_cols):
        y[j] = <floating>(<double>(x[j] - row_max) - lse)


cdef void _log_softmax_bwd_row(const floating* y, const floating* dy, floating* dx,
                               Py_ssize_t n_cols) noexcept nogil:
    """dx = dy - exp(y) * sum(dy) over one row, the sum accumulated in double."""
    cdef Py_ssize_t j
    cdef double total = 0.0
    cdef floating dy_sum

    for j in range(n_cols):
        total += dy[j]
    dy_sum = <floating>total
    for j in range(n_cols):
        dx[j] = dy[j] - _exp(y[j]) * dy_sum


# ---------------------------------------------------------------------------
# Loops over a span of elements (or rows, for softmax and log_softmax).
# ---------------------------------------------------------------------------

cdef void _forward_span(int code, const floating* x, floating* y, Py_ssize_t start,
                        Py_ssize_t stop, Py_ssize_t n_cols, floating param) noexcept nogil:
    """Apply activation ``code`` to elements [start, stop), or rows for the row-wise ones."""
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
    elif code == NNF_ACT_SOFTMAX:
        for i in range(start, stop):
            _softmax_fwd_row(x + i * n_cols, y + i * n_cols, n_cols)
    elif code == ACT_LOG_SOFTMAX:
        for i in range(start, stop):
            _log_softmax_fwd_row(x + i * n_cols, y + i * n_cols, n_cols)
    else:
        for i in range(start, stop):
            y[i] = _extra_fwd(code, x[i], param)


cdef void _backward_span(int code, const floating* saved, const floating* dy, floating* dx,
                         Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n_cols,
                         floating param) noexcept nogil:
    """Write dy * activation'(x) for elements [start, stop), or rows for the row-wise ones.

    ``saved`` is the output y for the activations in OUTPUT_DERIVATIVE and
    the input x for the others.
    """
    cdef Py_ssize_t i
    if code == NNF_ACT_LINEAR:
        for i in range(start, stop):
            dx[i] = dy[i]
    elif code == NNF_ACT_RELU:
        for i in range(start, stop):
            dx[i] = _relu_bwd(saved[i], dy[i])
    elif code == NNF_ACT_SIGMOID:
        for i in range(start, stop):
            dx[i] = _sigmoid_bwd(saved[i], dy[i])
    elif code == NNF_ACT_TANH:
        for i in range(start, stop):
            dx[i] = _tanh_bwd(saved[i], dy[i])
    elif code == NNF_ACT_SOFTMAX:
        for i in range(start, stop):
            _softmax_bwd_row(saved + i * n_cols, dy + i * n_cols, dx + i * n_cols, n_cols)
    elif code == ACT_LOG_SOFTMAX:
        for i in range(start, stop):
            _log_softmax_bwd_row(saved + i * n_cols, dy + i * n_cols, dx + i * n_cols,
                                 n_cols)
    else:
        for i in range(start, stop):
            dx[i] = _extra_bwd(code, saved[i], dy[i], param)


cdef bint _is_row_wise(int code) noexcept nogil:
    return code == NNF_ACT_SOFTMAX or code == ACT_LOG_SOFTMAX


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
                   Py_ssize_t n_cols, floating param, int n_threads) noexcept nogil:
    cdef Py_ssize_t block, t, start, stop
    if n_threads <= 1:
        _forward_span(code, x, y, 0, n_items, n_cols, param)
        return
    block = _block_size(n_items, n_threads, _is_row_wise(code))
    for t in prange(n_threads, schedule='static', num_threads=n_threads):
        start = t * block
        stop = min(start + block, n_items)
        if start < stop:
            _forward_span(code, x, y, start, stop, n_cols, param)


cdef void _backward(int code, const floating* saved, const floating* dy, floating* dx,
                    Py_ssize_t n_items, Py_ssize_t n_cols, floating param,
                    int n_threads) noexcept nogil:
    cdef Py_ssize_t block, t, start, stop
    if n_threads <= 1:
        _backward_span(code, saved, dy, dx, 0, n_items, n_cols, param)
        return
    block = _block_size(n_items, n_threads, _is_row_wise(code))
    for t in prange(n_threads, schedule='static', num_threads=n_threads):
        start = t * block
        stop = min(start + block, n_items)
        if start < stop:
            _backward_span(code, saved, dy, dx, start, stop, n_cols, param)


# ---------------------------------------------------------------------------
# Typed entry points over flat buffers.
# ---------------------------------------------------------------------------

cdef void _forward_flat(int code, const floating[::1] x, floating[::1] y, Py_ssize_t n_cols,
                        floating param, int n_threads) noexcept nogil:
    cdef Py_ssize_t n_items = x.shape[0]
    if _is_row_wise(code):
        n_items = n_items // n_cols
    _forward(code, &x[0], &y[0], n_items, n_cols, param, n_threads)


cdef void _backward_flat(int code, const floating[::1] saved, const floating[::1] dy,
                         floating[::1] dx, Py_ssize_t n_cols, floating param,
                         int n_threads) noexcept nogil:
    cdef Py_ssize_t n_items = dy.shape[0]
    if _is_row_wise(code):
        n_items = n_items // n_cols
    _backward(code, &saved[0], &dy[0], &dx[0], n_items, n_cols, param, n_threads)


def _threads_for(int code, bint backward, Py_ssize_t size, n_threads):
    """Return the thread count for one call on ``size`` elements."""
    cdef bint transcendental
    if backward:
        transcendental = code in _TRANSCENDENTAL_BACKWARD
    else:
        transcendental = code in _TRANSCENDENTAL_FORWARD
    threshold = PARALLEL_MIN_SIZE_TRANSCENDENTAL if transcendental else PARALLEL_MIN_SIZE_MEMORY_BOUND
    return resolve_for_size(n_threads, size, threshold)


def _check_row_wise_shape(op, array, name, int code):
    if _is_row_wise(code) and array.ndim == 0:
        raise ValueError(
            f"{op}: {name} needs an array with at least one axis, got a 0-d array"
        )


def _check_parameter(op, name, alpha):
    """Return the activation's parameter as a float: ``alpha`` or its default, else 0."""
    if name in PARAMETER_DEFAULTS:
        return PARAMETER_DEFAULTS[name] if alpha is None else float(alpha)
    if alpha is not None:
        raise ValueError(f"{op}: activation {name!r} takes no parameter, got alpha={alpha!r}")
    return 0.0


def activation_forward(name, x, out=None, n_threads=None, alpha=None):
    """y = activation(x), elementwise, or over the last axis for softmax and log_softmax.

    Parameters
    ----------
    name : str
        One of ALL_ACTIVATIONS: linear, relu, sigmoid, tanh, softmax,
        leaky_relu, elu, selu, gelu, gelu_approximate (the tanh form),
        silu, softplus, softsign, hard_sigmoid, exponential, log_softmax.
    x : ndarray of float32 or float64, any shape and memory layout
        Softmax and log_softmax need at least one axis and work on each
        slice along the last one, after subtracting its maximum.
    out : ndarray, optional
        Receives y. It must have the shape and dtype of ``x`` and may be ``x``
        itself.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.
    alpha : float, optional
        The negative slope of leaky_relu (default 0.2) or the alpha of elu
        (default 1.0). Other activations take no parameter and raise
        ValueError when one is given.

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
    cdef double param

    op = "activation_forward"
    code = check_activation(op, name)
    param = _check_parameter(op, name, alpha)
    x = check_float_array(op, "x", x)
    _check_row_wise_shape(op, x, name, code)
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
            _forward_flat(code, x_f32, y_f32, n_cols, <float>param, threads)
    else:
        x_f64 = x_flat
        y_f64 = y_flat
        with nogil:
            _forward_flat(code, x_f64, y_f64, n_cols, param, threads)
    return buffer if out is None else finish_output(buffer, out)


def activation_backward(name, x, y, dy, out=None, n_threads=None, alpha=None):
    """dx = dy * activation'(x), from the saved input ``x`` or output ``y``.

    The activations in OUTPUT_DERIVATIVE read only ``y`` and accept x=None:
    relu' = [y > 0], sigmoid' = y (1 - y), tanh' = 1 - y^2,
    exponential' = y, softmax: dx = y * (dy - sum(dy * y)), and
    log_softmax: dx = dy - exp(y) * sum(dy), both over the last axis. The
    others (leaky_relu, elu, selu, gelu, gelu_approximate, silu, softplus,
    softsign, hard_sigmoid) read only ``x`` and accept y=None. Each
    activation's derivative is documented in ``csrc/activations.h``.

    Parameters
    ----------
    name : str
        One of ALL_ACTIVATIONS.
    x, y : ndarray or None
        The saved input and output. The one that ``name`` reads must have
        the shape and dtype of ``dy``.
    dy : ndarray of float32 or float64
    out : ndarray, optional
        Receives dx. It must have the shape and dtype of ``dy`` and may be
        ``x``, ``y`` or ``dy`` itself.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.
    alpha : float, optional
        The parameter of leaky_relu or elu, as in :func:`activation_forward`.

    Returns
    -------
    ndarray
        ``out`` when given, else a new C-contiguous array.
    """
    cdef int code, threads
    cdef Py_ssize_t n_cols
    cdef const float[::1] saved_f32, dy_f32
    cdef const double[::1] saved_f64, dy_f64
    cdef float[::1] dx_f32
    cdef double[::1] dx_f64
    cdef double param

    op = "activation_backward"
    code = check_activation(op, name)
    param = _check_parameter(op, name, alpha)
    dy = check_float_array(op, "dy", dy)
    if name in OUTPUT_DERIVATIVE:
        saved_name, saved = "y", y
    else:
        saved_name, saved = "x", x
    if saved is None and code != NNF_ACT_LINEAR:
        raise ValueError(
            f"{op}: {name} needs the saved {saved_name}, got {saved_name}=None"
        )
    if saved is None:
        saved = dy
    saved = check_float_array(op, saved_name, saved)
    check_same_dtype(op, saved_name, saved, "dy", dy)
    check_same_shape(op, saved_name, saved, "dy", dy)
    _check_row_wise_shape(op, dy, name, code)
    if out is not None:
        check_out(op, "out", out, dy.shape, dy.dtype)
        buffer = output_buffer(out, (saved, dy), ())
    else:
        buffer = np.empty(dy.shape, dtype=dy.dtype)
    if dy.size == 0:
        return buffer if out is None else out

    saved_flat = np.ascontiguousarray(saved).reshape(-1)
    dy_flat = np.ascontiguousarray(dy).reshape(-1)
    dx_flat = buffer.reshape(-1)
    n_cols = dy.shape[dy.ndim - 1] if dy.ndim > 0 else 1
    threads = _threads_for(code, True, dy.size, n_threads)
    if dy.dtype == np.float32:
        saved_f32 = saved_flat
        dy_f32 = dy_flat
        dx_f32 = dx_flat
        with nogil:
            _backward_flat(code, saved_f32, dy_f32, dx_f32, n_cols, <float>param, threads)
    else:
        saved_f64 = saved_flat
        dy_f64 = dy_flat
        dx_f64 = dx_flat
        with nogil:
            _backward_flat(code, saved_f64, dy_f64, dx_f64, n_cols, param, threads)
    return buffer if out is None else finish_output(buffer, out)
