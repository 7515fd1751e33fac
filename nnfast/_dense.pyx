# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled Dense forward and backward passes (see csrc/dense.c).

Each call checks its arguments with the GIL held and then makes one nogil
call into C. As in :mod:`nnfast._gemm`, arrays are read through the NumPy C
API, so inputs of any strides (and read-only ones) are used in place, and
outputs may have any strides as long as they are writeable.
"""

import numpy as np

cimport numpy as cnp

from nnfast._reference import ACTIVATIONS
from nnfast._threads import resolve

cnp.import_array()


cdef extern from "gemm.h" nogil:
    ctypedef Py_ssize_t nnf_int
    int NNF_ENOMEM
    int NNF_EINVAL

    int nnf_dense_forward_f32(nnf_int n_samples, nnf_int n_in, nnf_int n_out,
                              const float *x, nnf_int rs_x, nnf_int cs_x,
                              const float *kernel, nnf_int rs_k, nnf_int cs_k,
                              const float *bias, nnf_int inc_bias, int activation,
                              float *y, nnf_int rs_y, nnf_int cs_y, float *preact,
                              nnf_int rs_p, nnf_int cs_p, int n_threads)
    int nnf_dense_forward_f64(nnf_int n_samples, nnf_int n_in, nnf_int n_out,
                              const double *x, nnf_int rs_x, nnf_int cs_x,
                              const double *kernel, nnf_int rs_k, nnf_int cs_k,
                              const double *bias, nnf_int inc_bias, int activation,
                              double *y, nnf_int rs_y, nnf_int cs_y, double *preact,
                              nnf_int rs_p, nnf_int cs_p, int n_threads)
    int nnf_dense_backward_f32(nnf_int n_samples, nnf_int n_in, nnf_int n_out,
                               const float *x, nnf_int rs_x, nnf_int cs_x,
                               const float *kernel, nnf_int rs_k, nnf_int cs_k,
                               const float *y, nnf_int rs_y, nnf_int cs_y,
                               const float *dy, nnf_int rs_dy, nnf_int cs_dy,
                               int activation, float *kernel_grad, nnf_int rs_kg,
                               nnf_int cs_kg, float *bias_grad, nnf_int inc_bg,
                               float *dx, nnf_int rs_dx, nnf_int cs_dx, float beta,
                               int n_threads)
    int nnf_dense_backward_f64(nnf_int n_samples, nnf_int n_in, nnf_int n_out,
                               const double *x, nnf_int rs_x, nnf_int cs_x,
                               const double *kernel, nnf_int rs_k, nnf_int cs_k,
                               const double *y, nnf_int rs_y, nnf_int cs_y,
                               const double *dy, nnf_int rs_dy, nnf_int cs_dy,
                               int activation, double *kernel_grad, nnf_int rs_kg,
                               nnf_int cs_kg, double *bias_grad, nnf_int inc_bg,
                               double *dx, nnf_int rs_dx, nnf_int cs_dx, double beta,
                               int n_threads)


# Position in ACTIVATIONS is the C code NNF_ACT_* (linear 0 ... softmax 4).
_ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}


cdef int _activation_code(object name) except -1:
    code = _ACTIVATION_CODES.get(name) if isinstance(name, str) else None
    if code is None:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}"
        )
    return code


cdef str _dtype_name(int typenum):
    return "float32" if typenum == cnp.NPY_FLOAT32 else "float64"


cdef cnp.ndarray _array(str op, str name, object x, int ndim, int typenum):
    """Check one argument; return it as an ndarray the C code can use.

    ``typenum`` -1 accepts float32 or float64, else that dtype is required.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(x).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>x
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(
            f"{op}: {name} must be {ndim}-D, got {cnp.PyArray_NDIM(arr)}-D "
            f"with shape {x.shape}"
        )
    cdef int t = cnp.PyArray_TYPE(arr)
    if typenum < 0:
        if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
            raise TypeError(f"{op}: {name} must be float32 or float64, got {x.dtype}")
    elif t != typenum:
        raise TypeError(
            f"{op}: {name} must have the dtype of x ({_dtype_name(typenum)}), "
            f"got {x.dtype}"
        )
    if cnp.PyArray_ISBYTESWAPPED(arr):
        raise TypeError(
            f"{op}: {name} has non-native byte order ({x.dtype.str}); convert it "
            f"with {name}.astype({name}.dtype.newbyteorder('='))"
        )
    return arr


cdef cnp.ndarray _input(str op, str name, object x, int ndim, int typenum):
    cdef cnp.ndarray arr = _array(op, name, x, ndim, typenum)
    if not _addressable(arr):
        arr = np.array(arr, order="C", copy=True)
    return arr


cdef cnp.ndarray _output(str op, str name, object x, int typenum, tuple shape):
    cdef cnp.ndarray arr = _array(op, name, x, len(shape), typenum)
    if x.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape}, got {x.shape}")
    if not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(
            f"{op}: {name} must be writeable, got a read-only array; pass a copy"
        )
    if not _addressable(arr):
        raise ValueError(
            f"{op}: {name} must be aligned with strides that are whole elements, "
            f"got strides {x.strides}; pass np.empty({shape}, dtype=...)"
        )
    return arr


cdef bint _addressable(cnp.ndarray arr):
    """True when the data is aligned and every stride is whole elements."""
    if not cnp.PyArray_ISALIGNED(arr):
        return False
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(arr)
    cdef int axis
    for axis in range(cnp.PyArray_NDIM(arr)):
        if cnp.PyArray_DIMS(arr)[axis] > 1 and cnp.PyArray_STRIDES(arr)[axis] % itemsize:
            return False
    return True


cdef inline nnf_int _stride(cnp.ndarray arr, int axis):
    """Return the element stride of ``axis``; 0 for an axis of length 0 or 1."""
    if arr is None or cnp.PyArray_DIMS(arr)[axis] <= 1:
        return 0
    return cnp.PyArray_STRIDES(arr)[axis] // cnp.PyArray_ITEMSIZE(arr)


cdef inline void *_data(cnp.ndarray arr):
    if arr is None:
        return NULL
    return cnp.PyArray_DATA(arr)


cdef void _span(cnp.ndarray arr, char **lo, char **hi):
    cdef char *data = <char *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t low = 0
    cdef Py_ssize_t high = cnp.PyArray_ITEMSIZE(arr)
    cdef Py_ssize_t step
    cdef int axis
    for axis in range(cnp.PyArray_NDIM(arr)):
        step = (cnp.PyArray_DIMS(arr)[axis] - 1) * cnp.PyArray_STRIDES(arr)[axis]
        if step < 0:
            low += step
        else:
            high += step
    lo[0] = data + low
    hi[0] = data + high


cdef bint _shares_memory(cnp.ndarray x, cnp.ndarray y):
    """True when two arrays (either may be None) share an element."""
    if x is None or y is None or cnp.PyArray_SIZE(x) == 0 or cnp.PyArray_SIZE(y) == 0:
        return False
    cdef char *x_lo
    cdef char *x_hi
    cdef char *y_lo
    cdef char *y_hi
    _span(x, &x_lo, &x_hi)
    _span(y, &y_lo, &y_hi)
    if x_lo >= y_hi or y_lo >= x_hi:
        return False
    return np.shares_memory(x, y)


cdef _check_disjoint(str op, dict outputs, dict others):
    """Raise ValueError when an output shares memory with another argument."""
    names = list(outputs)
    for i, name in enumerate(names):
        for other_name, other in list(others.items()) + [(n, outputs[n]) for n in names[i + 1:]]:
            if _shares_memory(outputs[name], other):
                raise ValueError(
                    f"{op}: {name} shares memory with {other_name}; pass separate arrays"
                )


cdef _raise_status(str op, int status):
    if status == NNF_ENOMEM:
        raise MemoryError(f"{op}: out of memory for the kernel's work buffers")
    if status == NNF_EINVAL:
        raise ValueError(f"{op}: invalid argument passed to the C kernel")


def dense_forward(x, kernel, bias, activation, out=None, preact_out=None,
                  n_threads=None):
    """y = activation(x @ kernel + bias); ``bias`` may be None.

    ``x`` is (n_samples, n_in) and ``kernel`` (n_in, n_out). ``out`` (the
    result y) and ``preact_out`` (x @ kernel + bias) are (n_samples, n_out)
    arrays of the same dtype, written when given. Returns ``out``, or a new
    C-contiguous array when it is None.
    """
    op = "dense_forward"
    cdef int act = _activation_code(activation)
    cdef cnp.ndarray X = _input(op, "x", x, 2, -1)
    cdef int typenum = cnp.PyArray_TYPE(X)
    cdef cnp.ndarray K = _input(op, "kernel", kernel, 2, typenum)
    cdef nnf_int n_samples = cnp.PyArray_DIMS(X)[0]
    cdef nnf_int n_in = cnp.PyArray_DIMS(X)[1]
    cdef nnf_int n_out = cnp.PyArray_DIMS(K)[1]
    if cnp.PyArray_DIMS(K)[0] != n_in:
        raise ValueError(
            f"{op}: x is {x.shape} but kernel is {kernel.shape}; "
            f"x.shape[1] must equal kernel.shape[0]"
        )
    cdef cnp.ndarray Bias = None
    if bias is not None:
        Bias = _input(op, "bias", bias, 1, typenum)
        if cnp.PyArray_DIMS(Bias)[0] != n_out:
            raise ValueError(
                f"{op}: bias must have shape ({n_out},) to match kernel "
                f"{kernel.shape}, got {bias.shape}"
            )
    cdef cnp.ndarray Y
    cdef cnp.npy_intp dims[2]
    if out is None:
        dims[0] = n_samples
        dims[1] = n_out
        Y = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    else:
        Y = _output(op, "out", out, typenum, (n_samples, n_out))
    cdef cnp.ndarray Z = None
    if preact_out is not None:
        Z = _output(op, "preact_out", preact_out, typenum, (n_samples, n_out))
    _check_disjoint(op, {"out": Y, "preact_out": Z}, {"x": X, "kernel": K, "bias": Bias})

    cdef int threads = resolve(n_threads)
    cdef nnf_int rs_x = _stride(X, 0), cs_x = _stride(X, 1)
    cdef nnf_int rs_k = _stride(K, 0), cs_k = _stride(K, 1)
    cdef nnf_int inc_bias = _stride(Bias, 0)
    cdef nnf_int rs_y = _stride(Y, 0), cs_y = _stride(Y, 1)
    cdef nnf_int rs_z = _stride(Z, 0), cs_z = _stride(Z, 1)
    cdef void *x_data = _data(X)
    cdef void *k_data = _data(K)
    cdef void *bias_data = _data(Bias)
    cdef void *y_data = _data(Y)
    cdef void *z_data = _data(Z)
    cdef int status
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            status = nnf_dense_forward_f32(
                n_samples, n_in, n_out, <const float *>x_data, rs_x, cs_x,
                <const float *>k_data, rs_k, cs_k, <const float *>bias_data, inc_bias,
                act, <float *>y_data, rs_y, cs_y, <float *>z_data, rs_z, cs_z, threads,
            )
        else:
            status = nnf_dense_forward_f64(
                n_samples, n_in, n_out, <const double *>x_data, rs_x, cs_x,
                <const double *>k_data, rs_k, cs_k, <const double *>bias_data, inc_bias,
                act, <double *>y_data, rs_y, cs_y, <double *>z_data, rs_z, cs_z, threads,
            )
    _raise_status(op, status)
    return Y


def dense_backward(x, kernel, y, dy, activation, kernel_grad_out, bias_grad_out,
                   dx_out=None, preact=None, beta=0.0, n_threads=None):
    """Backward pass of :func:`dense_forward`, in one compiled call.

    With dz = dy * activation'(z), computed from the output ``y``:
    kernel_grad_out = x.T @ dz + beta * kernel_grad_out,
    bias_grad_out = dz.sum(axis=0) + beta * bias_grad_out (skipped when None),
    dx_out = dz @ kernel.T, computed only when ``dx_out`` is given.
    ``y`` may be None for the linear activation. ``preact`` is accepted for
    the reference signature and not read, because every activation's
    derivative is a function of its output. Returns ``dx_out``.
    """
    op = "dense_backward"
    cdef int act = _activation_code(activation)
    cdef cnp.ndarray X = _input(op, "x", x, 2, -1)
    cdef int typenum = cnp.PyArray_TYPE(X)
    cdef cnp.ndarray K = _input(op, "kernel", kernel, 2, typenum)
    cdef nnf_int n_samples = cnp.PyArray_DIMS(X)[0]
    cdef nnf_int n_in = cnp.PyArray_DIMS(X)[1]
    cdef nnf_int n_out = cnp.PyArray_DIMS(K)[1]
    if cnp.PyArray_DIMS(K)[0] != n_in:
        raise ValueError(
            f"{op}: x is {x.shape} but kernel is {kernel.shape}; "
            f"x.shape[1] must equal kernel.shape[0]"
        )
    out_shape = (n_samples, n_out)
    cdef cnp.ndarray DY = _input(op, "dy", dy, 2, typenum)
    if dy.shape != out_shape:
        raise ValueError(f"{op}: dy must have shape {out_shape}, got {dy.shape}")
    cdef cnp.ndarray Y = None
    if y is not None:
        Y = _input(op, "y", y, 2, typenum)
        if y.shape != out_shape:
            raise ValueError(f"{op}: y must have shape {out_shape}, got {y.shape}")
    elif act != 0:
        raise ValueError(f"{op}: y is required for activation {activation!r}")
    cdef cnp.ndarray KG = _output(op, "kernel_grad_out", kernel_grad_out, typenum,
                                  (n_in, n_out))
    cdef cnp.ndarray BG = None
    if bias_grad_out is not None:
        BG = _output(op, "bias_grad_out", bias_grad_out, typenum, (n_out,))
    cdef cnp.ndarray DX = None
    if dx_out is not None:
        DX = _output(op, "dx_out", dx_out, typenum, (n_samples, n_in))
    _check_disjoint(
        op,
        {"kernel_grad_out": KG, "bias_grad_out": BG, "dx_out": DX},
        {"x": X, "kernel": K, "y": Y, "dy": DY},
    )

    cdef double beta_value = beta
    cdef int threads = resolve(n_threads)
    cdef nnf_int rs_x = _stride(X, 0), cs_x = _stride(X, 1)
    cdef nnf_int rs_k = _stride(K, 0), cs_k = _stride(K, 1)
    cdef nnf_int rs_y = _stride(Y, 0), cs_y = _stride(Y, 1)
    cdef nnf_int rs_dy = _stride(DY, 0), cs_dy = _stride(DY, 1)
    cdef nnf_int rs_kg = _stride(KG, 0), cs_kg = _stride(KG, 1)
    cdef nnf_int inc_bg = _stride(BG, 0)
    cdef nnf_int rs_dx = _stride(DX, 0), cs_dx = _stride(DX, 1)
    cdef void *x_data = _data(X)
    cdef void *k_data = _data(K)
    cdef void *y_data = _data(Y)
    cdef void *dy_data = _data(DY)
    cdef void *kg_data = _data(KG)
    cdef void *bg_data = _data(BG)
    cdef void *dx_data = _data(DX)
    cdef int status
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            status = nnf_dense_backward_f32(
                n_samples, n_in, n_out, <const float *>x_data, rs_x, cs_x,
                <const float *>k_data, rs_k, cs_k, <const float *>y_data, rs_y, cs_y,
                <const float *>dy_data, rs_dy, cs_dy, act,
                <float *>kg_data, rs_kg, cs_kg, <float *>bg_data, inc_bg,
                <float *>dx_data, rs_dx, cs_dx, <float>beta_value, threads,
            )
        else:
            status = nnf_dense_backward_f64(
                n_samples, n_in, n_out, <const double *>x_data, rs_x, cs_x,
                <const double *>k_data, rs_k, cs_k, <const double *>y_data, rs_y, cs_y,
                <const double *>dy_data, rs_dy, cs_dy, act,
                <double *>kg_data, rs_kg, cs_kg, <double *>bg_data, inc_bg,
                <double *>dx_data, rs_dx, cs_dx, beta_value, threads,
            )
    _raise_status(op, status)
    return dx_out
