# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Inference through a chain of dense layers in one call without the GIL.

A :class:`DenseChain` records the kernels, biases and activations of a stack
of dense layers once; :meth:`DenseChain.forward` then runs every layer's
fused kernel (matrix multiply, bias and activation) in one ``nogil`` block,
so a small-batch prediction costs one Python call and other Python threads
run meanwhile.
"""

import numpy as np

cimport numpy as cnp
from libc.stdlib cimport free, malloc

from nnfast._reference import ACTIVATIONS

cnp.import_array()


cdef extern from "gemm.h" nogil:
    ctypedef Py_ssize_t nnf_int
    int NNF_OK
    int NNF_ENOMEM

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


cdef class DenseChain:
    """The dense layers of a model, ready for :meth:`forward`.

    Parameters
    ----------
    kernels : list of C-contiguous 2-D arrays, one dtype
        Layer i maps ``kernels[i].shape[0]`` inputs to ``shape[1]`` outputs.
    biases : list of 1-D C-contiguous arrays or None
    activations : list of activation names
    """

    cdef int n_layers
    cdef int is_f64
    cdef nnf_int *dims
    cdef void **kernel_data
    cdef void **bias_data
    cdef int *codes
    cdef list _arrays
    cdef readonly object dtype

    def __cinit__(self):
        self.dims = NULL
        self.kernel_data = NULL
        self.bias_data = NULL
        self.codes = NULL

    def __init__(self, list kernels, list biases, list activations):
        cdef int n = len(kernels)
        if n == 0 or len(biases) != n or len(activations) != n:
            raise ValueError(
                "DenseChain: expected one kernel, bias and activation per layer, got "
                f"{len(kernels)}, {len(biases)} and {len(activations)}"
            )
        dtype = kernels[0].dtype
        if dtype != np.float32 and dtype != np.float64:
            raise TypeError(f"DenseChain: kernels must be float32 or float64, got {dtype}")
        self.dtype = dtype
        self.is_f64 = dtype == np.float64
        self.n_layers = n
        self.dims = <nnf_int *>malloc((n + 1) * sizeof(nnf_int))
        self.kernel_data = <void **>malloc(n * sizeof(void *))
        self.bias_data = <void **>malloc(n * sizeof(void *))
        self.codes = <int *>malloc(n * sizeof(int))
        if (self.dims == NULL or self.kernel_data == NULL or self.bias_data == NULL
                or self.codes == NULL):
            raise MemoryError("DenseChain: out of memory")
        self._arrays = []
        cdef cnp.ndarray kernel
        cdef cnp.ndarray bias
        for i in range(n):
            kernel = kernels[i]
            if (kernel.ndim != 2 or kernel.dtype != dtype
                    or not kernel.flags.c_contiguous):
                raise ValueError(
                    f"DenseChain: kernel {i} must be a C-contiguous 2-D {dtype} "
                    f"array, got shape {(<object>kernel).shape} dtype {kernel.dtype}"
                )
            if i == 0:
                self.dims[0] = kernel.shape[0]
            elif kernel.shape[0] != self.dims[i]:
                raise ValueError(
                    f"DenseChain: kernel {i} takes {kernel.shape[0]} inputs but layer "
                    f"{i - 1} gives {self.dims[i]}"
                )
            self.dims[i + 1] = kernel.shape[1]
            self.kernel_data[i] = cnp.PyArray_DATA(kernel)
            self._arrays.append(kernel)
            if biases[i] is None:
                self.bias_data[i] = NULL
            else:
                bias = biases[i]
                if (bias.ndim != 1 or bias.shape[0] != kernel.shape[1]
                        or bias.dtype != dtype or not bias.flags.c_contiguous):
                    raise ValueError(
                        f"DenseChain: bias {i} must be a C-contiguous {dtype} vector "
                        f"of length {kernel.shape[1]}, got shape {(<object>bias).shape}"
                    )
                self.bias_data[i] = cnp.PyArray_DATA(bias)
                self._arrays.append(bias)
            if activations[i] not in ACTIVATIONS:
                raise ValueError(f"DenseChain: unknown activation {activations[i]!r}")
            self.codes[i] = ACTIVATIONS.index(activations[i])

    def __dealloc__(self):
        free(self.dims)
        free(self.kernel_data)
        free(self.bias_data)
        free(self.codes)

    @property
    def widths(self):
        """The input width followed by each layer's output width."""
        return tuple(self.dims[i] for i in range(self.n_layers + 1))

    def forward(self, cnp.ndarray x, list buffers, cnp.ndarray out, int n_threads):
        """Write the chain's output for the rows of ``x`` into ``out``.

        ``x`` is (n, widths[0]) with any element strides; ``buffers`` holds
        one C-contiguous (n, widths[i + 1]) array for each layer but the
        last, and ``out`` is C-contiguous (n, widths[-1]). All share the
        chain's dtype. Returns ``out``.
        """
        cdef int n_layers = self.n_layers
        cdef nnf_int n = x.shape[0]
        if x.ndim != 2 or x.shape[1] != self.dims[0] or x.dtype != self.dtype:
            raise ValueError(
                f"DenseChain.forward: x must be (n, {self.dims[0]}) {self.dtype}, got "
                f"shape {(<object>x).shape} dtype {x.dtype}"
            )
        if len(buffers) != n_layers - 1:
            raise ValueError(
                f"DenseChain.forward: expected {n_layers - 1} buffers, got {len(buffers)}"
            )
        cdef int i
        for i in range(n_layers):
            target = out if i == n_layers - 1 else buffers[i]
            if (target.dtype != self.dtype or target.ndim != 2
                    or target.shape[0] != n or target.shape[1] != self.dims[i + 1]
                    or not target.flags.c_contiguous or not target.flags.writeable):
                raise ValueError(
                    f"DenseChain.forward: output of layer {i} must be a writeable "
                    f"C-contiguous ({n}, {self.dims[i + 1]}) {self.dtype} array, got "
                    f"shape {target.shape} dtype {target.dtype}"
                )
        cdef nnf_int itemsize = x.itemsize
        if (x.strides[0] % itemsize) or (x.strides[1] % itemsize):
            x = np.ascontiguousarray(x)
        cdef nnf_int rs_x = x.strides[0] // itemsize
        cdef nnf_int cs_x = x.strides[1] // itemsize
        cdef void **outputs = <void **>malloc(n_layers * sizeof(void *))
        if outputs == NULL:
            raise MemoryError("DenseChain.forward: out of memory")
        for i in range(n_layers - 1):
            outputs[i] = cnp.PyArray_DATA(<cnp.ndarray>buffers[i])
        outputs[n_layers - 1] = cnp.PyArray_DATA(out)
        cdef void *src = cnp.PyArray_DATA(x)
        cdef int status = NNF_OK
        try:
            with nogil:
                for i in range(n_layers):
                    if self.is_f64:
                        status = nnf_dense_forward_f64(
                            n, self.dims[i], self.dims[i + 1], <const double *>src,
                            rs_x, cs_x, <const double *>self.kernel_data[i],
                            self.dims[i + 1], 1, <const double *>self.bias_data[i], 1,
                            self.codes[i], <double *>outputs[i], self.dims[i + 1], 1,
                            NULL, 0, 0, n_threads)
                    else:
                        status = nnf_dense_forward_f32(
                            n, self.dims[i], self.dims[i + 1], <const float *>src,
                            rs_x, cs_x, <const float *>self.kernel_data[i],
                            self.dims[i + 1], 1, <const float *>self.bias_data[i], 1,
                            self.codes[i], <float *>outputs[i], self.dims[i + 1], 1,
                            NULL, 0, 0, n_threads)
                    if status != NNF_OK:
                        break
                    src = outputs[i]
                    rs_x = self.dims[i + 1]
                    cs_x = 1
        finally:
            free(outputs)
        if status == NNF_ENOMEM:
            raise MemoryError("DenseChain.forward: out of memory for kernel buffers")
        if status != NNF_OK:
            raise ValueError(f"DenseChain.forward: the kernel rejected its arguments "
                             f"(status {status})")
        return out
