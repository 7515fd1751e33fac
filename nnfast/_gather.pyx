# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Row gather: out[i] = x[indices[i]], converting to the dtype of ``out``.

``x`` is read through its strides, so any row and column stride works
without a copy. Rows with unit column stride take a plain pointer loop that
the compiler can vectorize. The conversion is a C cast, which rounds to
nearest as NumPy's ``astype`` does.

Threads: output rows are split into contiguous blocks with a static schedule.
Below a size threshold the loop runs serially and opens no parallel region.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport (
    int8_t,
    int16_t,
    int32_t,
    int64_t,
    uint8_t,
    uint16_t,
    uint32_t,
    uint64_t,
)

import numpy as np

from nnfast._threads import resolve_for_size

ctypedef fused source_t:
    uint8_t
    int8_t
    uint16_t
    int16_t
    uint32_t
    int32_t
    uint64_t
    int64_t
    float
    double

SOURCE_DTYPES = tuple(
    np.dtype(name)
    for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64",
                 "int64", "float32", "float64")
)

# Minimum number of copied elements (len(indices) * n_cols) for which a
# second thread pays off. Measured on a shared, noisy 2-core x86-64 VM (GCC 12,
# -O3, libgomp) by timing float32-to-float32 and uint8-to-float32 gathers of
# 64-column rows in random order with n_threads=1 and n_threads=2, best of 5,
# in two runs. Two threads ran 0.8-1.0x as fast up to 16,384 elements,
# 0.7-1.3x at 65,536 and 1.2-1.6x from 262,144 on.
PARALLEL_MIN_SIZE = 65536


cdef inline void _copy_row(const source_t[:, :] x, Py_ssize_t row, floating* out_row,
                           bint unit_column_stride) noexcept nogil:
    cdef Py_ssize_t j
    cdef Py_ssize_t n_cols = x.shape[1]
    cdef const source_t* source
    if unit_column_stride:
        source = &x[row, 0]
        for j in range(n_cols):
            out_row[j] = <floating>source[j]
    else:
        for j in range(n_cols):
            out_row[j] = <floating>x[row, j]


def _gather(const source_t[:, :] x, const int64_t[::1] indices, floating[:, ::1] out,
            int n_threads):
    """Copy the rows; the indices must already be checked to lie in [0, x.shape[0])."""
    cdef Py_ssize_t n_out = indices.shape[0]
    cdef Py_ssize_t i
    cdef bint unit_column_stride = x.strides[1] == sizeof(source_t)

    with nogil:
        if n_threads > 1:
            for i in prange(n_out, schedule='static', num_threads=n_threads):
                _copy_row(x, indices[i], &out[i, 0], unit_column_stride)
        else:
            for i in range(n_out):
                _copy_row(x, indices[i], &out[i, 0], unit_column_stride)


def gather_rows(x, indices, out, n_threads=None):
    """out[i] = x[indices[i]] for a 2-D ``x``, converted to the dtype of ``out``.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_cols)
        Any strides, read-only allowed. Its dtype may be any integer type of
        8 to 64 bits, bool, float32 or float64.
    indices : ndarray of integers, shape (n_out,)
        Row numbers in [0, n_rows). Negative indices are rejected rather than
        counted from the end.
    out : ndarray of float32 or float64, shape (n_out, n_cols)
        C-contiguous, writeable, and not overlapping ``x``.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.

    Returns
    -------
    ndarray
        ``out``.
    """
    op = "gather_rows"
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: x must be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{op}: x must be 2-D (n_rows, n_cols), got shape {x.shape}")
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    if x.dtype not in SOURCE_DTYPES:
        raise TypeError(
            f"{op}: x must have a dtype among bool, "
            f"{', '.join(str(d) for d in SOURCE_DTYPES)}, got {x.dtype}"
        )

    if not isinstance(indices, np.ndarray):
        raise TypeError(
            f"{op}: indices must be a numpy.ndarray, got {type(indices).__name__}"
        )
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must have an integer dtype, got {indices.dtype}")
    if indices.ndim != 1:
        raise ValueError(f"{op}: indices must be 1-D, got shape {indices.shape}")
    n_rows, n_cols = x.shape
    invalid = (indices < 0) | (indices >= n_rows)
    if invalid.any():
        position = int(np.argmax(invalid))
        raise ValueError(
            f"{op}: index {indices[position]} at position {position} is out of range, "
            f"expected a row index in [0, {n_rows})"
        )

    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != np.float32 and out.dtype != np.float64:
        raise TypeError(f"{op}: out must have dtype float32 or float64, got {out.dtype}")
    expected = (indices.shape[0], n_cols)
    if out.shape != expected:
        raise ValueError(f"{op}: out must have shape {expected}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(
            f"{op}: out must be C-contiguous, got strides {out.strides} for shape "
            f"{out.shape}"
        )
    if not out.flags.writeable:
        raise ValueError(f"{op}: out must be writeable, got a read-only array")
    if np.may_share_memory(x, out):
        raise ValueError(f"{op}: out must not overlap x; pass a separate output array")

    if out.size == 0:
        return out
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    threads = resolve_for_size(n_threads, out.size, PARALLEL_MIN_SIZE)
    _gather(x, indices, out, threads)
    return out
