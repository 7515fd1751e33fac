# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""A chain of dense layers run in one call per direction without the GIL.

A :class:`DenseChain` records the kernels, biases and activations of a stack
of dense layers once; :meth:`DenseChain.forward` then runs every layer's
fused kernel (matrix multiply, bias and activation) in one ``nogil`` block,
so a small-batch prediction costs one Python call and other Python threads
run meanwhile. Given the gradient buffers too, :meth:`DenseChain.backward`
runs every layer's fused backward kernel the same way for training.
"""

import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, threadid
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
    int nnf_dense_backward_f32(nnf_int n_samples, nnf_int n_in, nnf_int n_out,
                               const float *x, nnf_int rs_x, nnf_int cs_x,
                               const float *kernel, nnf_int rs_k, nnf_int cs_k,
                               const float *y, nnf_int rs_y, nnf_int cs_y,
                               const float *dy, nnf_int rs_dy, nnf_int cs_dy, int activation,
                               float *kernel_grad, nnf_int rs_kg, nnf_int cs_kg,
                               float *bias_grad, nnf_int inc_bg, float *dx, nnf_int rs_dx,
                               nnf_int cs_dx, float beta, int n_threads)
    int nnf_dense_backward_f64(nnf_int n_samples, nnf_int n_in, nnf_int n_out,
                               const double *x, nnf_int rs_x, nnf_int cs_x,
                               const double *kernel, nnf_int rs_k, nnf_int cs_k,
                               const double *y, nnf_int rs_y, nnf_int cs_y,
                               const double *dy, nnf_int rs_dy, nnf_int cs_dy,
                               int activation, double *kernel_grad, nnf_int rs_kg,
                               nnf_int cs_kg, double *bias_grad, nnf_int inc_bg, double *dx,
                               nnf_int rs_dx, nnf_int cs_dx, double beta, int n_threads)


cdef enum:
    # Splitting a batch into one block of rows per thread needs this many
    # rows per block. NOTE: an estimate, not measured: each block packs every
    # kernel again, which costs about as much as multiplying a few dozen rows
    # by it.
    ROW_SPLIT_MIN_ROWS = 128
    MAX_ROW_TEAMS = 64


cdef extern from "nnfast.h" nogil:
    int nnf_parallel_threads(int n_threads, double work, double min_work)


cdef inline nnf_int _row_stride(nnf_int rows, nnf_int cols) noexcept nogil:
    """Return the row stride of a C-contiguous rows x cols matrix, 0 for one row.

    A zero stride on an axis of length 1 is what the per-layer wrappers pass,
    so both paths give the GEMM the same arguments.
    """
    return cols if rows > 1 else 0


cdef inline nnf_int _col_stride(nnf_int cols) noexcept nogil:
    return 1 if cols > 1 else 0


cdef class DenseChain:
    """The dense layers of a model, ready for :meth:`forward`.

    Parameters
    ----------
    kernels : list of C-contiguous 2-D arrays, one dtype
        Layer i maps ``kernels[i].shape[0]`` inputs to ``shape[1]`` outputs.
    biases : list of 1-D C-contiguous arrays or None
    activations : list of activation names
    kernel_grads, bias_grads : lists like ``kernels`` and ``biases``, optional
        The buffers that :meth:`backward` writes the gradients to; without
        them the chain serves inference only.
    """

    cdef int n_layers
    cdef int is_f64
    cdef nnf_int *dims
    cdef void **kernel_data
    cdef void **bias_data
    cdef int *codes
    cdef void **kernel_grad_data
    cdef void **bias_grad_data
    cdef list _arrays
    cdef readonly object dtype
    cdef readonly bint trainable

    def __cinit__(self):
        self.dims = NULL
        self.kernel_data = NULL
        self.bias_data = NULL
        self.codes = NULL
        self.kernel_grad_data = NULL
        self.bias_grad_data = NULL

    def __init__(self, list kernels, list biases, list activations, list kernel_grads=None,
                 list bias_grads=None):
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
        self.trainable = kernel_grads is not None
        if self.trainable:
            self._set_grads(kernels, biases, kernel_grads, bias_grads)

    cdef _set_grads(self, list kernels, list biases, list kernel_grads, list bias_grads):
        cdef int n = self.n_layers
        if bias_grads is None or len(kernel_grads) != n or len(bias_grads) != n:
            raise ValueError("DenseChain: expected one kernel and bias gradient per layer")
        self.kernel_grad_data = <void **>malloc(n * sizeof(void *))
        self.bias_grad_data = <void **>malloc(n * sizeof(void *))
        if self.kernel_grad_data == NULL or self.bias_grad_data == NULL:
            raise MemoryError("DenseChain: out of memory")
        for i in range(n):
            pairs = [(kernel_grads[i], kernels[i])]
            if biases[i] is not None:
                pairs.append((bias_grads[i], biases[i]))
            elif bias_grads[i] is not None:
                raise ValueError(f"DenseChain: layer {i} has a bias gradient but no bias")
            for grad, value in pairs:
                if (grad.dtype != self.dtype or (<object>grad).shape != (<object>value).shape
                        or not grad.flags.c_contiguous or not grad.flags.writeable):
                    raise ValueError(
                        f"DenseChain: the gradients of layer {i} must be writeable "
                        f"C-contiguous {self.dtype} arrays shaped like its weights, got "
                        f"shape {(<object>grad).shape} dtype {grad.dtype}"
                    )
                self._arrays.append(grad)
            self.kernel_grad_data[i] = cnp.PyArray_DATA(<cnp.ndarray>kernel_grads[i])
            self.bias_grad_data[i] = (NULL if bias_grads[i] is None
                                      else cnp.PyArray_DATA(<cnp.ndarray>bias_grads[i]))

    def __dealloc__(self):
        free(self.dims)
        free(self.kernel_data)
        free(self.bias_data)
        free(self.codes)
        free(self.kernel_grad_data)
        free(self.bias_grad_data)

    @property
    def widths(self):
        """The input width followed by each layer's output width."""
        return tuple(self.dims[i] for i in range(self.n_layers + 1))

    def forward(self, cnp.ndarray x, list buffers, cnp.ndarray out, int n_threads,
                bint split_rows=False):
        """Write the chain's output for the rows of ``x`` into ``out``.

        ``x`` is (n, widths[0]) with any element strides; ``buffers`` holds
        one C-contiguous (n, widths[i + 1]) array for each layer but the
        last, and ``out`` is C-contiguous (n, widths[-1]). All share the
        chain's dtype. Returns ``out``.

        With ``split_rows``, a batch of at least ``2 * ROW_SPLIT_MIN_ROWS``
        rows is cut into one block of rows per thread, and each thread runs
        its block through all layers alone: no barrier inside the products,
        at the cost of packing each kernel once per thread.
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
        cdef nnf_int rs_x = x.strides[0] // itemsize if n > 1 else 0
        cdef nnf_int cs_x = x.strides[1] // itemsize if self.dims[0] > 1 else 0
        cdef void **outputs = <void **>malloc(n_layers * sizeof(void *))
        if outputs == NULL:
            raise MemoryError("DenseChain.forward: out of memory")
        for i in range(n_layers - 1):
            outputs[i] = cnp.PyArray_DATA(<cnp.ndarray>buffers[i])
        outputs[n_layers - 1] = cnp.PyArray_DATA(out)
        cdef void *src = cnp.PyArray_DATA(x)
        cdef int status = NNF_OK
        cdef int teams = 1
        cdef int team_status[MAX_ROW_TEAMS]
        cdef nnf_int per_team = 0, start = 0, t = 0
        if split_rows and n >= ROW_SPLIT_MIN_ROWS * 2:
            teams = nnf_parallel_threads(min(n_threads, MAX_ROW_TEAMS), n,
                                         2 * ROW_SPLIT_MIN_ROWS)
        try:
            if teams > 1:
                per_team = (n + teams - 1) // teams
                with nogil, parallel(num_threads=teams):
                    t = threadid()
                    start = t * per_team
                    team_status[t] = NNF_OK
                    if start < n:
                        team_status[t] = self._forward_rows(
                            start, min(per_team, n - start), n, src, rs_x, cs_x, outputs, 1)
                for i in range(teams):
                    if team_status[i] != NNF_OK:
                        status = team_status[i]
            else:
                with nogil:
                    status = self._forward_rows(0, n, n, src, rs_x, cs_x, outputs, n_threads)
        finally:
            free(outputs)
        if status == NNF_ENOMEM:
            raise MemoryError("DenseChain.forward: out of memory for kernel buffers")
        if status != NNF_OK:
            raise ValueError(f"DenseChain.forward: the kernel rejected its arguments "
                             f"(status {status})")
        return out

    cdef int _forward_rows(self, nnf_int start, nnf_int rows, nnf_int n, const void *x,
                           nnf_int rs_x, nnf_int cs_x, void **outputs,
                           int n_threads) noexcept nogil:
        """Run rows [start, start + rows) of an n-row batch through every layer."""
        cdef int i
        cdef int status = NNF_OK
        cdef nnf_int width
        cdef nnf_int es = 8 if self.is_f64 else 4
        cdef const char *src = <const char *>x + start * rs_x * es
        cdef char *dst
        for i in range(self.n_layers):
            width = self.dims[i + 1]
            dst = <char *>outputs[i] + start * width * es
            if self.is_f64:
                status = nnf_dense_forward_f64(
                    rows, self.dims[i], width, <const double *>src, rs_x, cs_x,
                    <const double *>self.kernel_data[i], _row_stride(self.dims[i], width),
                    _col_stride(width), <const double *>self.bias_data[i],
                    _col_stride(width), self.codes[i], <double *>dst,
                    _row_stride(rows, width), _col_stride(width), NULL, 0, 0, n_threads)
            else:
                status = nnf_dense_forward_f32(
                    rows, self.dims[i], width, <const float *>src, rs_x, cs_x,
                    <const float *>self.kernel_data[i], _row_stride(self.dims[i], width),
                    _col_stride(width), <const float *>self.bias_data[i],
                    _col_stride(width), self.codes[i], <float *>dst,
                    _row_stride(rows, width), _col_stride(width), NULL, 0, 0, n_threads)
            if status != NNF_OK:
                break
            src = dst
            rs_x = _row_stride(rows, width)
            cs_x = _col_stride(width)
        return status

    def backward(self, cnp.ndarray x, list buffers, cnp.ndarray out, cnp.ndarray dout,
                 list dx_buffers, int n_threads):
        """Write every layer's weight gradients for the last :meth:`forward`.

        ``x``, ``buffers`` and ``out`` are those of the forward call, with
        ``x`` C-contiguous here. ``dout`` is the gradient of the loss with
        respect to ``out``, like ``out``. ``dx_buffers`` holds one
        C-contiguous (n, widths[i + 1]) array for each layer but the last,
        and receives the gradients with respect to the layers' inputs; the
        first layer's input gradient is not computed. The gradients are
        overwritten, not accumulated.
        """
        if not self.trainable:
            raise ValueError("DenseChain.backward: the chain was made without gradients")
        cdef int n_layers = self.n_layers
        cdef nnf_int n = x.shape[0]
        if (x.ndim != 2 or x.shape[1] != self.dims[0] or x.dtype != self.dtype
                or not x.flags.c_contiguous):
            raise ValueError(
                f"DenseChain.backward: x must be C-contiguous (n, {self.dims[0]}) "
                f"{self.dtype}, got shape {(<object>x).shape} dtype {x.dtype}"
            )
        if len(buffers) != n_layers - 1 or len(dx_buffers) != n_layers - 1:
            raise ValueError(
                f"DenseChain.backward: expected {n_layers - 1} buffers and dx buffers, "
                f"got {len(buffers)} and {len(dx_buffers)}"
            )
        cdef int i
        arrays = [out, dout] + buffers + dx_buffers
        widths = ([self.dims[n_layers]] * 2 + [self.dims[i + 1] for i in range(n_layers - 1)]
                  + [self.dims[i + 1] for i in range(n_layers - 1)])
        for array, width in zip(arrays, widths):
            if (array.dtype != self.dtype or array.ndim != 2 or array.shape[0] != n
                    or array.shape[1] != width or not array.flags.c_contiguous):
                raise ValueError(
                    f"DenseChain.backward: expected a C-contiguous ({n}, {width}) "
                    f"{self.dtype} array, got shape {array.shape} dtype {array.dtype}"
                )
        cdef void **outputs = <void **>malloc(2 * n_layers * sizeof(void *))
        if outputs == NULL:
            raise MemoryError("DenseChain.backward: out of memory")
        # outputs[i] is layer i's output and outputs[n_layers + i] the
        # gradient with respect to it.
        for i in range(n_layers - 1):
            outputs[i] = cnp.PyArray_DATA(<cnp.ndarray>buffers[i])
            outputs[n_layers + i] = cnp.PyArray_DATA(<cnp.ndarray>dx_buffers[i])
        outputs[n_layers - 1] = cnp.PyArray_DATA(out)
        outputs[2 * n_layers - 1] = cnp.PyArray_DATA(dout)
        cdef void *src
        cdef void *dx
        cdef nnf_int n_in, n_out
        cdef int status = NNF_OK
        try:
            with nogil:
                for i in range(n_layers - 1, -1, -1):
                    n_in = self.dims[i]
                    n_out = self.dims[i + 1]
                    src = cnp.PyArray_DATA(x) if i == 0 else outputs[i - 1]
                    dx = NULL if i == 0 else outputs[n_layers + i - 1]
                    if self.is_f64:
                        status = nnf_dense_backward_f64(
                            n, n_in, n_out, <const double *>src, _row_stride(n, n_in),
                            _col_stride(n_in), <const double *>self.kernel_data[i],
                            _row_stride(n_in, n_out), _col_stride(n_out),
                            <const double *>outputs[i], _row_stride(n, n_out),
                            _col_stride(n_out), <const double *>outputs[n_layers + i],
                            _row_stride(n, n_out), _col_stride(n_out), self.codes[i],
                            <double *>self.kernel_grad_data[i], _row_stride(n_in, n_out),
                            _col_stride(n_out), <double *>self.bias_grad_data[i],
                            _col_stride(n_out), <double *>dx, _row_stride(n, n_in),
                            _col_stride(n_in), 0.0, n_threads)
                    else:
                        status = nnf_dense_backward_f32(
                            n, n_in, n_out, <const float *>src, _row_stride(n, n_in),
                            _col_stride(n_in), <const float *>self.kernel_data[i],
                            _row_stride(n_in, n_out), _col_stride(n_out),
                            <const float *>outputs[i], _row_stride(n, n_out),
                            _col_stride(n_out), <const float *>outputs[n_layers + i],
                            _row_stride(n, n_out), _col_stride(n_out), self.codes[i],
                            <float *>self.kernel_grad_data[i], _row_stride(n_in, n_out),
                            _col_stride(n_out), <float *>self.bias_grad_data[i],
                            _col_stride(n_out), <float *>dx, _row_stride(n, n_in),
                            _col_stride(n_in), 0.0, n_threads)
                    if status != NNF_OK:
                        break
        finally:
            free(outputs)
        if status == NNF_ENOMEM:
            raise MemoryError("DenseChain.backward: out of memory for kernel buffers")
        if status != NNF_OK:
            raise ValueError(f"DenseChain.backward: the kernel rejected its arguments "
                             f"(status {status})")
