# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled GEMM: C = alpha * op(A) @ op(B) + beta * C (see csrc/gemm.c).

The wrapper reads shapes, strides and data pointers through the NumPy C API
instead of typed memoryviews, because acquiring three memoryviews costs more
than a whole product of the small shapes a Dense layer produces. Inputs may be
strided, transposed, Fortran-ordered or read-only: their element strides go to
the C packing routines, which absorb them, so no Python-level copy is made.
Only inputs whose strides are not a multiple of the item size, or whose data
is not aligned, are copied first.
"""

import operator

import numpy as np

cimport numpy as cnp

from nnfast._threads import resolve

cnp.import_array()


cdef extern from "gemm.h" nogil:
    ctypedef Py_ssize_t nnf_int
    int NNF_OK
    int NNF_ENOMEM
    int NNF_EINVAL
    int nnf_simd_level()
    int nnf_fma512_full()
    const char *nnf_simd_name(int level)

    ctypedef struct nnf_epilogue_f32:
        pass

    ctypedef struct nnf_epilogue_f64:
        pass

    int nnf_gemm_f32(nnf_int m, nnf_int n, nnf_int k, float alpha, const float *a,
                     nnf_int rs_a, nnf_int cs_a, const float *b, nnf_int rs_b,
                     nnf_int cs_b, float beta, float *c, nnf_int rs_c, nnf_int cs_c,
                     const nnf_epilogue_f32 *epilogue, int n_threads)
    int nnf_gemm_f64(nnf_int m, nnf_int n, nnf_int k, double alpha, const double *a,
                     nnf_int rs_a, nnf_int cs_a, const double *b, nnf_int rs_b,
                     nnf_int cs_b, double beta, double *c, nnf_int rs_c, nnf_int cs_c,
                     const nnf_epilogue_f64 *epilogue, int n_threads)
    int nnf_gemm_plan(size_t elem_size, nnf_int m, nnf_int n, nnf_int k, nnf_int rs_a,
                      nnf_int cs_a, nnf_int rs_b, nnf_int cs_b, char *out, size_t size)
    const char *nnf_gemm_tile_kernel(size_t elem_size, int index, int *mr, int *nr)
    int NNF_GEMM_DOT_INDEX
    int NNF_GEMM_MIXED_INDEX
    int nnf_gemm_with_tiles(size_t elem_size, int index, int on_transpose, nnf_int m,
                            nnf_int n, nnf_int k, const void *alpha, const void *a,
                            nnf_int rs_a, nnf_int cs_a, const void *b, nnf_int rs_b,
                            nnf_int cs_b, const void *beta, void *c, nnf_int rs_c,
                            nnf_int cs_c, int n_threads)


cdef cnp.ndarray _matrix(object x, str name):
    """Return ``x`` as a 2-D float32 or float64 ndarray the C code can read."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"gemm: {name} must be a numpy.ndarray, got {type(x).__name__}"
        )
    cdef cnp.ndarray arr = <cnp.ndarray>x
    if cnp.PyArray_NDIM(arr) != 2:
        raise ValueError(
            f"gemm: {name} must be 2-D, got {cnp.PyArray_NDIM(arr)}-D "
            f"with shape {x.shape}"
        )
    cdef int typenum = cnp.PyArray_TYPE(arr)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise TypeError(
            f"gemm: {name} must be float32 or float64, got {x.dtype}"
        )
    if cnp.PyArray_ISBYTESWAPPED(arr):
        raise TypeError(
            f"gemm: {name} has non-native byte order ({x.dtype.str}); "
            f"convert it with {name}.astype({name}.dtype.newbyteorder('='))"
        )
    if not _readable_in_place(arr):
        arr = np.array(arr, order="C", copy=True)
    return arr


cdef bint _readable_in_place(cnp.ndarray arr):
    """True when the data is aligned and every stride is whole elements."""
    if not cnp.PyArray_ISALIGNED(arr):
        return False
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(arr)
    cdef int axis
    for axis in range(2):
        if cnp.PyArray_DIMS(arr)[axis] > 1 and cnp.PyArray_STRIDES(arr)[axis] % itemsize:
            return False
    return True


cdef inline Py_ssize_t _stride(cnp.ndarray arr, int axis):
    """Return the element stride of ``axis``; 0 for an axis of length 0 or 1."""
    if cnp.PyArray_DIMS(arr)[axis] <= 1:
        return 0
    return cnp.PyArray_STRIDES(arr)[axis] // cnp.PyArray_ITEMSIZE(arr)


cdef bint _may_overlap(cnp.ndarray x, cnp.ndarray y):
    """True when the memory spans of two non-empty arrays intersect."""
    if cnp.PyArray_SIZE(x) == 0 or cnp.PyArray_SIZE(y) == 0:
        return False
    cdef char *x_lo
    cdef char *x_hi
    cdef char *y_lo
    cdef char *y_hi
    _span(x, &x_lo, &x_hi)
    _span(y, &y_lo, &y_hi)
    if x_lo >= y_hi or y_lo >= x_hi:
        return False
    # The spans intersect; ask NumPy whether an element is actually shared.
    return np.shares_memory(x, y)


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


cdef void _check_pair(cnp.ndarray A, cnp.ndarray B, bint ta, bint tb) except *:
    """Raise unless op(A) and op(B) share a dtype and the inner dimension."""
    if cnp.PyArray_TYPE(B) != cnp.PyArray_TYPE(A):
        raise TypeError(
            f"gemm: A and B must have the same dtype, got {A.dtype} and {B.dtype}"
        )
    cdef nnf_int m = cnp.PyArray_DIMS(A)[1 if ta else 0]
    cdef nnf_int k = cnp.PyArray_DIMS(A)[0 if ta else 1]
    cdef nnf_int k_b = cnp.PyArray_DIMS(B)[1 if tb else 0]
    cdef nnf_int n = cnp.PyArray_DIMS(B)[0 if tb else 1]
    if k != k_b:
        raise ValueError(
            f"gemm: inner dimensions differ, {'A.T' if ta else 'A'} is ({m}, {k}) "
            f"but {'B.T' if tb else 'B'} is ({k_b}, {n})"
        )


def gemm(a, b, c=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0,
         n_threads=None):
    """C = alpha * op(A) @ op(B) + beta * C, where op transposes when asked.

    Parameters
    ----------
    a, b : ndarray, 2-D, float32 or float64 (the same for both)
        Any strides and memory order; read-only arrays work.
    c : ndarray, optional
        Output of shape (m, n), C-contiguous, writeable and of the same dtype.
        With ``beta == 0`` it is overwritten without being read, so it may
        hold uninitialised values. When None a new array is returned and
        ``beta`` is ignored.
    trans_a, trans_b : bool
        Use the transpose of ``a`` or ``b``.
    alpha, beta : float
        Scale of the product and of the old ``c``; ``beta == 0`` ignores
        ``c``'s values, NaN included.
    n_threads : int, optional
        Thread count; None uses nnfast's setting.

    Returns
    -------
    ndarray
        ``c`` itself when given, else a new (m, n) array.
    """
    return _product(a, b, c, trans_a, trans_b, alpha, beta, n_threads, -1, False)


def tile_kernels(dtype):
    """Return the tile kernels this CPU may use for ``dtype``, in table order.

    Each entry is ``(name, mr, nr)``, such as ``("avx2+fma", 6, 16)``; its
    position is the ``kernel`` argument of ``gemm_with_tiles``.
    """
    dtype = np.dtype(dtype)
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"tile_kernels: dtype must be float32 or float64, got {dtype}")
    cdef size_t itemsize = dtype.itemsize
    cdef int mr = 0, nr = 0
    cdef const char *name
    kernels = []
    while True:
        name = nnf_gemm_tile_kernel(itemsize, len(kernels), &mr, &nr)
        if name == NULL:
            return kernels
        kernels.append((name.decode("ascii"), mr, nr))


def gemm_with_tiles(kernel, a, b, c=None, trans_a=False, trans_b=False, alpha=1.0,
                    beta=0.0, on_transpose=False, n_threads=None):
    """``gemm`` on the tile kernel ``tile_kernels(dtype)[kernel]``, for tests.

    The product runs on that kernel's tiles, on C^T when ``on_transpose``,
    whatever plan ``gemm`` would choose, so that tests reach every kernel.
    """
    try:
        kernel = operator.index(kernel)
    except TypeError:
        raise TypeError(
            f"gemm_with_tiles: kernel must be an int, got {type(kernel).__name__}"
        ) from None
    if kernel < 0:
        raise ValueError(f"gemm_with_tiles: kernel must be 0 or more, got {kernel}")
    dtype = _matrix(a, "A").dtype
    count = len(tile_kernels(dtype))
    if kernel >= count:
        raise ValueError(
            f"gemm_with_tiles: kernel must be below {count} for {dtype}, got {kernel}"
        )
    return _product(a, b, c, trans_a, trans_b, alpha, beta, n_threads, kernel,
                    bool(on_transpose))


def gemm_with_dot(a, b, c=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0,
                  on_transpose=False, n_threads=None):
    """``gemm`` on the dot plan, for tests, whatever plan ``gemm`` would choose.

    The dot plan needs the AVX2 kernels, rows of op(A) contiguous along k
    and at most 24 columns of C. With ``on_transpose`` the rows of op(B)^T
    and of C take their places. Elsewhere it raises ValueError.
    """
    return _product(a, b, c, trans_a, trans_b, alpha, beta, n_threads, NNF_GEMM_DOT_INDEX,
                    bool(on_transpose))


def gemm_with_mixed(a, b, c=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0,
                    on_transpose=False, n_threads=None):
    """``gemm`` on the mixed plan, for tests, whatever plan ``gemm`` would choose.

    The mixed plan computes one vector of C's columns (8 float64 or 16
    float32) as tiles do and up to 2 more as dot products along k. It needs
    AVX-512 with two 512-bit FMAs per cycle, rows of op(A) contiguous along
    k, and 8 to 10 columns of C in float64, 16 to 18 in float32. With
    ``on_transpose`` the rows of op(B)^T and of C take their places.
    Elsewhere it raises ValueError.
    """
    return _product(a, b, c, trans_a, trans_b, alpha, beta, n_threads, NNF_GEMM_MIXED_INDEX,
                    bool(on_transpose))


cdef object _product(a, b, c, trans_a, trans_b, alpha, beta, n_threads, int kernel,
                     bint on_transpose):
    """Check the operands and run the product; see ``gemm``. With kernel >= 0
    the tile kernel of that index runs (``gemm_with_tiles``), with
    NNF_GEMM_DOT_INDEX the dot plan (``gemm_with_dot``), and with
    NNF_GEMM_MIXED_INDEX the mixed plan (``gemm_with_mixed``)."""
    cdef cnp.ndarray A = _matrix(a, "A")
    cdef cnp.ndarray B = _matrix(b, "B")
    cdef int typenum = cnp.PyArray_TYPE(A)
    cdef bint ta = bool(trans_a)
    cdef bint tb = bool(trans_b)
    _check_pair(A, B, ta, tb)
    cdef nnf_int m = cnp.PyArray_DIMS(A)[1 if ta else 0]
    cdef nnf_int k = cnp.PyArray_DIMS(A)[0 if ta else 1]
    cdef nnf_int n = cnp.PyArray_DIMS(B)[0 if tb else 1]
    cdef nnf_int rs_a = _stride(A, 1 if ta else 0)
    cdef nnf_int cs_a = _stride(A, 0 if ta else 1)
    cdef nnf_int rs_b = _stride(B, 1 if tb else 0)
    cdef nnf_int cs_b = _stride(B, 0 if tb else 1)

    cdef cnp.ndarray C
    cdef cnp.npy_intp dims[2]
    cdef double beta_value = beta
    if c is None:
        dims[0] = m
        dims[1] = n
        C = cnp.PyArray_EMPTY(2, dims, typenum, 0)
        beta_value = 0.0
    else:
        C = _output(c, typenum, m, n)
        if _may_overlap(C, A) or _may_overlap(C, B):
            raise ValueError(
                "gemm: C shares memory with A or B; pass a separate output array"
            )
    cdef double alpha_value = alpha
    cdef int threads = resolve(n_threads)
    cdef nnf_int rs_c = n
    cdef int status
    cdef float alpha_f32 = <float>alpha_value
    cdef float beta_f32 = <float>beta_value
    cdef size_t itemsize = cnp.PyArray_ITEMSIZE(A)
    with nogil:
        if kernel != -1:
            status = nnf_gemm_with_tiles(
                itemsize, kernel, on_transpose, m, n, k,
                <const void *>&alpha_f32 if itemsize == 4 else <const void *>&alpha_value,
                cnp.PyArray_DATA(A), rs_a, cs_a, cnp.PyArray_DATA(B), rs_b, cs_b,
                <const void *>&beta_f32 if itemsize == 4 else <const void *>&beta_value,
                cnp.PyArray_DATA(C), rs_c, 1, threads,
            )
        elif typenum == cnp.NPY_FLOAT32:
            status = nnf_gemm_f32(
                m, n, k, <float>alpha_value,
                <const float *>cnp.PyArray_DATA(A), rs_a, cs_a,
                <const float *>cnp.PyArray_DATA(B), rs_b, cs_b,
                <float>beta_value, <float *>cnp.PyArray_DATA(C), rs_c, 1,
                NULL, threads,
            )
        else:
            status = nnf_gemm_f64(
                m, n, k, alpha_value,
                <const double *>cnp.PyArray_DATA(A), rs_a, cs_a,
                <const double *>cnp.PyArray_DATA(B), rs_b, cs_b,
                beta_value, <double *>cnp.PyArray_DATA(C), rs_c, 1,
                NULL, threads,
            )
    if status == NNF_ENOMEM:
        raise MemoryError(f"gemm: out of memory for the packing buffers of a "
                          f"({m}, {k}) x ({k}, {n}) product")
    if status == NNF_EINVAL and kernel == NNF_GEMM_DOT_INDEX:
        raise ValueError(_dot_refusal(m, n, k, on_transpose))
    if status == NNF_EINVAL and kernel == NNF_GEMM_MIXED_INDEX:
        raise ValueError(_mixed_refusal(m, n, k, on_transpose, itemsize))
    return C


cdef str _dot_refusal(nnf_int m, nnf_int n, nnf_int k, bint on_transpose):
    """Return why gemm_with_dot cannot run this product, checked in the C
    library's order: the SIMD level, the size of C, then the layout."""
    cdef str simd = nnf_simd_name(nnf_simd_level()).decode("ascii")
    cdef nnf_int width = m if on_transpose else n
    cdef str side = ("row" if on_transpose else "column") + ("" if width == 1 else "s")
    if simd == "generic":
        reason = "the dot plan needs AVX2, and this process runs the portable kernels"
    elif width > 24:
        reason = f"C has {width} {side}, and the dot plan takes at most 24"
    elif on_transpose:
        reason = "the rows of op(B)^T are not contiguous along k"
    else:
        reason = "the rows of op(A) are not contiguous along k"
    return (f"gemm_with_dot: cannot run the ({m}, {k}) x ({k}, {n}) product on the dot "
            f"plan with on_transpose={bool(on_transpose)}: {reason}")


cdef str _mixed_refusal(nnf_int m, nnf_int n, nnf_int k, bint on_transpose,
                        size_t itemsize):
    """Return why gemm_with_mixed cannot run this product, checked in the C
    library's order: the SIMD level, the size of C, then the layout."""
    cdef str simd = nnf_simd_name(nnf_simd_level()).decode("ascii")
    cdef nnf_int width = m if on_transpose else n
    cdef str side = ("row" if on_transpose else "column") + ("" if width == 1 else "s")
    cdef nnf_int vec = 64 // itemsize
    if not simd.startswith("avx512") or not nnf_fma512_full():
        reason = (f"the mixed plan needs AVX-512 with two 512-bit FMAs per cycle, "
                  f"and this process runs {simd} with fma512_full={bool(nnf_fma512_full())}")
    elif width < vec or width > vec + 2:
        reason = (f"C has {width} {side}, and the mixed plan takes {vec} to {vec + 2} "
                  f"for {'float32' if itemsize == 4 else 'float64'}")
    elif on_transpose:
        reason = "the rows of op(B)^T are not contiguous along k"
    else:
        reason = "the rows of op(A) are not contiguous along k"
    return (f"gemm_with_mixed: cannot run the ({m}, {k}) x ({k}, {n}) product on the "
            f"mixed plan with on_transpose={bool(on_transpose)}: {reason}")


def gemm_plan(a, b, trans_a=False, trans_b=False):
    """Return the name of the plan ``gemm`` runs for these operands.

    One of ``"rows"`` (a few rows of C, one at a time), ``"dot"`` (narrow C
    from dot products along k), ``"mixed"`` (one vector of columns as tiles
    do and up to 2 more as dot products), ``"tiles MRxNR"`` (the blocked
    tile kernel), the last three followed by ``" on C^T"`` when nnfast
    computes the transposed product, or ``"empty"``. The plan depends on the sizes, the
    strides and the SIMD level, not on the thread count.
    """
    cdef cnp.ndarray A = _matrix(a, "A")
    cdef cnp.ndarray B = _matrix(b, "B")
    cdef bint ta = bool(trans_a)
    cdef bint tb = bool(trans_b)
    _check_pair(A, B, ta, tb)
    cdef char out[64]
    nnf_gemm_plan(
        cnp.PyArray_ITEMSIZE(A),
        cnp.PyArray_DIMS(A)[1 if ta else 0], cnp.PyArray_DIMS(B)[0 if tb else 1],
        cnp.PyArray_DIMS(A)[0 if ta else 1],
        _stride(A, 1 if ta else 0), _stride(A, 0 if ta else 1),
        _stride(B, 1 if tb else 0), _stride(B, 0 if tb else 1),
        out, sizeof(out),
    )
    return out.decode("ascii")


cdef cnp.ndarray _output(object c, int typenum, nnf_int m, nnf_int n):
    """Check the caller's C array and return it."""
    if not isinstance(c, np.ndarray):
        raise TypeError(f"gemm: C must be a numpy.ndarray, got {type(c).__name__}")
    cdef cnp.ndarray C = <cnp.ndarray>c
    if cnp.PyArray_TYPE(C) != typenum or cnp.PyArray_ISBYTESWAPPED(C):
        expected = "float32" if typenum == cnp.NPY_FLOAT32 else "float64"
        raise TypeError(
            f"gemm: C must have the dtype of A and B ({expected}), got {C.dtype}"
        )
    if cnp.PyArray_NDIM(C) != 2 or cnp.PyArray_DIMS(C)[0] != m or cnp.PyArray_DIMS(C)[1] != n:
        raise ValueError(f"gemm: C must have shape ({m}, {n}), got {c.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(C) or not cnp.PyArray_ISALIGNED(C):
        raise ValueError(
            f"gemm: C must be C-contiguous, got strides {c.strides} for shape "
            f"{c.shape}; pass np.ascontiguousarray(C) and use the returned array"
        )
    if not cnp.PyArray_ISWRITEABLE(C):
        raise ValueError(
            "gemm: C must be writeable, got a read-only array; pass a copy "
            "(C.copy()) and use the returned array"
        )
    return C
