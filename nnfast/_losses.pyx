# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Loss kernels: per-sample loss and its gradient, computed together row by row.

Layout: the Python wrappers check arguments with the GIL held and take
C-contiguous copies of strided inputs, so each row is a flat run of n_classes
(or n_outputs) values. Sums over a row are accumulated in double, also for
float32.

Threads: rows are split into contiguous blocks with a static schedule. A row
is never split, so the results do not depend on the thread count. Below a size
threshold the loop runs serially and opens no parallel region.

The elementwise losses (mean absolute error, Huber, binary cross-entropy and
KL divergence) share one row loop: each element's loss is rounded to the
dtype and summed in double, and each element's gradient is computed with the
NumPy reference's operations in the same order.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, fabs, log, log1p
from libc.stdint cimport int64_t

import numpy as np

from nnfast._activations import (
    check_float_array,
    check_out,
    check_same_dtype,
    check_same_shape,
    finish_output,
    output_buffer,
)
from nnfast._threads import resolve_for_size

cdef extern from "<math.h>" nogil:
    float expf(float x)
    float logf(float x)
    float log1pf(float x)
    float fabsf(float x)
    bint isinf(double x)

cdef extern from "activations.h" nogil:
    float nnf_sigmoid_fwd_f32(float x)
    double nnf_sigmoid_fwd_f64(double x)


# Minimum logits.size (n_samples * n_classes) for which a second thread pays
# off in softmax_cross_entropy, and the same for pred.size in
# mean_squared_error. Measured on a shared, noisy 2-core x86-64 VM (GCC 12,
# -O3, libgomp) by timing each kernel, loss and gradient, on (size // 64, 64)
# float32 arrays with n_threads=1 and n_threads=2, best of 5, in two runs.
# Cross-entropy, which calls exp per element, ran 1.1-1.6x faster with two
# threads at 4,096 elements and 0.75-1.3x at 1,024. Mean squared error, which
# only multiplies and adds, ran 0.9-1.0x at 4,096 and 1.3-1.6x at 16,384.
PARALLEL_MIN_SIZE_CROSS_ENTROPY = 4096
PARALLEL_MIN_SIZE_SQUARED_ERROR = 16384
# NOTE: the elementwise losses were not timed. Mean absolute error and Huber
# only compare, multiply and add, so they take the squared-error threshold.
# Binary cross-entropy and KL divergence call exp or log per element, so they
# take the cross-entropy one.
PARALLEL_MIN_SIZE_ARITHMETIC_LOSS = PARALLEL_MIN_SIZE_SQUARED_ERROR
PARALLEL_MIN_SIZE_LOG_LOSS = PARALLEL_MIN_SIZE_CROSS_ENTROPY

# Keras's backend epsilon, the clip bound of probabilities before a log.
EPSILON = 1e-7

cdef enum:
    LOSS_ABSOLUTE
    LOSS_HUBER
    LOSS_BINARY_LOGITS
    LOSS_BINARY_PROBABILITIES
    LOSS_KL_DIVERGENCE


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _fabs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating _sigmoid(floating x) noexcept nogil:
    if floating is float:
        return nnf_sigmoid_fwd_f32(x)
    else:
        return nnf_sigmoid_fwd_f64(x)


cdef inline floating _sign(floating x) noexcept nogil:
    """Return 1, -1 or 0 by the sign of ``x``, and NaN for NaN, as np.sign does."""
    if x > 0:
        return 1
    if x < 0:
        return -1
    if x == 0:
        return 0
    return x


# ---------------------------------------------------------------------------
# Softmax cross-entropy, one row at a time.
# ---------------------------------------------------------------------------

cdef floating _cross_entropy_sparse_row(const floating* z, Py_ssize_t label, double scale,
                                        floating* grad, Py_ssize_t n_classes) noexcept nogil:
    """Return lse(z) - z[label], and write scale * (softmax(z) - onehot) to ``grad``.

    ``grad`` may be NULL (no gradient) or ``z`` itself, because every z[j] is
    read before grad[j] is written.
    """
    cdef Py_ssize_t j
    cdef floating row_max = z[0]
    cdef floating label_logit = z[label]
    cdef floating e
    cdef double total = 0.0
    cdef double lse, p

    for j in range(1, n_classes):
        if z[j] > row_max:
            row_max = z[j]

    # exp(z - max) is at most 1, so the sum cannot overflow. A NaN, or an
    # inf - inf from a +inf logit, makes the sum NaN and so the loss.
    for j in range(n_classes):
        e = _exp(z[j] - row_max)
        total += e
        if grad != NULL:
            grad[j] = e
    lse = log(total)

    if grad != NULL:
        for j in range(n_classes):
            p = grad[j] / total
            if j == label:
                p -= 1.0
            grad[j] = <floating>(p * scale)
    return <floating>(lse - <double>(label_logit - row_max))


cdef floating _cross_entropy_dense_row(const floating* z, const floating* t, double scale,
                                       floating* grad, Py_ssize_t n_classes) noexcept nogil:
    """Return sum_j t_j (lse(z) - z_j), and write scale * (softmax(z) sum(t) - t) to ``grad``.

    The loss is computed as sum(t) * lse - sum_j t_j (z_j - max(z)), which
    needs one pass. A zero target times a -inf logit gives NaN, as in the
    NumPy formula. ``grad`` may be NULL or ``z`` itself, but must not overlap
    ``t``.
    """
    cdef Py_ssize_t j
    cdef floating row_max = z[0]
    cdef floating shifted, e
    cdef double total = 0.0
    cdef double target_sum = 0.0
    cdef double target_dot = 0.0
    cdef double lse, p

    for j in range(1, n_classes):
        if z[j] > row_max:
            row_max = z[j]

    for j in range(n_classes):
        shifted = z[j] - row_max
        e = _exp(shifted)
        total += e
        target_sum += t[j]
        target_dot += <double>t[j] * shifted
        if grad != NULL:
            grad[j] = e
    lse = log(total)

    if grad != NULL:
        for j in range(n_classes):
            p = grad[j] / total
            grad[j] = <floating>((p * target_sum - t[j]) * scale)
    return <floating>(target_sum * lse - target_dot)


def _cross_entropy_sparse(const floating[:, ::1] logits, const int64_t[::1] labels,
                          const floating[::1] weights, double grad_scale,
                          floating[::1] loss, floating[:, ::1] grad, bint has_grad,
                          int n_threads):
    """Run the sparse-label cross-entropy over all rows; ``weights`` may be empty (all ones)."""
    cdef Py_ssize_t n_samples = logits.shape[0]
    cdef Py_ssize_t n_classes = logits.shape[1]
    cdef bint has_weights = weights.shape[0] > 0
    cdef Py_ssize_t i
    cdef double scale
    cdef floating* grad_row

    with nogil:
        if n_threads > 1:
            for i in prange(n_samples, schedule='static', num_threads=n_threads):
                scale = grad_scale * weights[i] if has_weights else grad_scale
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _cross_entropy_sparse_row(&logits[i, 0], labels[i], scale,
                                                    grad_row, n_classes)
        else:
            for i in range(n_samples):
                scale = grad_scale * weights[i] if has_weights else grad_scale
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _cross_entropy_sparse_row(&logits[i, 0], labels[i], scale,
                                                    grad_row, n_classes)


def _cross_entropy_dense(const floating[:, ::1] logits, const floating[:, ::1] targets,
                         const floating[::1] weights, double grad_scale,
                         floating[::1] loss, floating[:, ::1] grad, bint has_grad,
                         int n_threads):
    """Run the target-probability cross-entropy over all rows."""
    cdef Py_ssize_t n_samples = logits.shape[0]
    cdef Py_ssize_t n_classes = logits.shape[1]
    cdef bint has_weights = weights.shape[0] > 0
    cdef Py_ssize_t i
    cdef double scale
    cdef floating* grad_row

    with nogil:
        if n_threads > 1:
            for i in prange(n_samples, schedule='static', num_threads=n_threads):
                scale = grad_scale * weights[i] if has_weights else grad_scale
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _cross_entropy_dense_row(&logits[i, 0], &targets[i, 0], scale,
                                                   grad_row, n_classes)
        else:
            for i in range(n_samples):
                scale = grad_scale * weights[i] if has_weights else grad_scale
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _cross_entropy_dense_row(&logits[i, 0], &targets[i, 0], scale,
                                                   grad_row, n_classes)


# ---------------------------------------------------------------------------
# Mean squared error, one row at a time.
# ---------------------------------------------------------------------------

cdef floating _squared_error_row(const floating* pred, const floating* target,
                                 floating factor, floating weight, bint has_weight,
                                 floating* grad, Py_ssize_t n_outputs) noexcept nogil:
    """Return mean_j (pred_j - target_j)^2, and write (pred - target) * factor * weight to ``grad``.

    Each square is rounded in the working dtype before it is summed in double,
    so a square that overflows gives inf, as in the NumPy formula. ``grad`` may
    be NULL, ``pred`` or ``target``, because both are read before grad[j] is
    written.
    """
    cdef Py_ssize_t j
    cdef floating diff, square, g
    cdef double total = 0.0

    for j in range(n_outputs):
        diff = pred[j] - target[j]
        square = diff * diff
        total += square
        if grad != NULL:
            g = diff * factor
            if has_weight:
                g = g * weight
            grad[j] = g
    return <floating>(total / n_outputs)


def _squared_error(const floating[:, ::1] pred, const floating[:, ::1] target,
                   const floating[::1] weights, double grad_factor,
                   floating[::1] loss, floating[:, ::1] grad, bint has_grad, int n_threads):
    """Run the mean squared error over all rows; ``weights`` may be empty (all ones)."""
    cdef Py_ssize_t n_samples = pred.shape[0]
    cdef Py_ssize_t n_outputs = pred.shape[1]
    cdef bint has_weights = weights.shape[0] > 0
    cdef floating factor = <floating>grad_factor
    cdef floating weight = 1
    cdef Py_ssize_t i
    cdef floating* grad_row

    with nogil:
        if n_threads > 1:
            for i in prange(n_samples, schedule='static', num_threads=n_threads):
                weight = weights[i] if has_weights else 1
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _squared_error_row(&pred[i, 0], &target[i, 0], factor, weight,
                                             has_weights, grad_row, n_outputs)
        else:
            for i in range(n_samples):
                weight = weights[i] if has_weights else 1
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _squared_error_row(&pred[i, 0], &target[i, 0], factor, weight,
                                             has_weights, grad_row, n_outputs)


# ---------------------------------------------------------------------------
# Elementwise losses, one row at a time.
# ---------------------------------------------------------------------------

cdef inline floating _loss_element(int kind, floating p, floating t, floating a, floating b,
                                   floating* grad) noexcept nogil:
    """Return the loss of one element and store d loss / d p in ``grad[0]``.

    ``a`` and ``b`` are the loss's constants in the working dtype: delta and
    0.5 * delta^2 for Huber, the clip bounds for binary cross-entropy on
    probabilities, and the lower clip bound (a) for KL divergence.
    """
    # Cython writes the literal 1 as 1.0, a double, so float32 arithmetic
    # needs this typed one to stay in float32 as NumPy's does.
    cdef floating one = 1
    cdef floating e, magnitude, linear, clipped, t_clipped
    if kind == LOSS_ABSOLUTE:
        e = p - t
        grad[0] = _sign(e)
        return _fabs(e)
    if kind == LOSS_HUBER:
        e = p - t
        magnitude = _fabs(e)
        if magnitude <= a:
            grad[0] = e
            return <floating>0.5 * (e * e)
        grad[0] = a * _sign(e)
        return a * magnitude - b
    if kind == LOSS_BINARY_LOGITS:
        # max(z, 0) - z t + log1p(exp(-|z|)). For an infinite logit the
        # linear part is z (1 - t) or -z t, taken as 0 when the label agrees,
        # where the formula would give inf - inf.
        if isinf(p):
            if p > 0:
                linear = 0 if one - t == 0 else p * (one - t)
            else:
                linear = 0 if t == 0 else -p * t
        else:
            linear = (p if p > 0 else 0) - p * t
        grad[0] = _sigmoid(p) - t
        return linear + _log1p(_exp(-_fabs(p)))
    if kind == LOSS_BINARY_PROBABILITIES:
        # Clipping is written with < and > so that NaN passes through.
        clipped = a if p < a else (b if p > b else p)
        if p < a or p > b:
            grad[0] = 0
        else:
            grad[0] = (one - t) / (one - clipped) - t / clipped
        return -(t * _log(clipped) + (one - t) * _log(one - clipped))
    # KL divergence: t and p clipped to [a, 1].
    clipped = a if p < a else (one if p > one else p)
    t_clipped = a if t < a else (one if t > one else t)
    if p < a or p > one:
        grad[0] = 0
    else:
        grad[0] = -t_clipped / clipped
    return t_clipped * _log(t_clipped / clipped)


cdef floating _elementwise_row(int kind, const floating* pred, const floating* target,
                               floating a, floating b, bint mean, floating factor,
                               floating weight, bint has_weight, floating* grad,
                               Py_ssize_t n_outputs) noexcept nogil:
    """Return the mean (or, for ``mean`` False, the sum) of the row's element losses.

    Writes element_grad * factor * weight to ``grad`` unless it is NULL.
    ``grad`` may be ``pred`` or ``target``, because both are read before
    grad[j] is written.
    """
    cdef Py_ssize_t j
    cdef floating element_loss, g
    cdef double total = 0.0

    for j in range(n_outputs):
        element_loss = _loss_element(kind, pred[j], target[j], a, b, &g)
        total += element_loss
        if grad != NULL:
            g = g * factor
            if has_weight:
                g = g * weight
            grad[j] = g
    if mean:
        return <floating>(total / n_outputs)
    return <floating>total


def _elementwise(int kind, const floating[:, ::1] pred, const floating[:, ::1] target,
                 const floating[::1] weights, double a, double b, bint mean,
                 double grad_factor, floating[::1] loss, floating[:, ::1] grad,
                 bint has_grad, int n_threads):
    """Run an elementwise loss over all rows; ``weights`` may be empty (all ones)."""
    cdef Py_ssize_t n_samples = pred.shape[0]
    cdef Py_ssize_t n_outputs = pred.shape[1]
    cdef bint has_weights = weights.shape[0] > 0
    cdef floating a_typed = <floating>a
    cdef floating b_typed = <floating>b
    cdef floating factor = <floating>grad_factor
    cdef floating weight = 1
    cdef Py_ssize_t i
    cdef floating* grad_row

    with nogil:
        if n_threads > 1:
            for i in prange(n_samples, schedule='static', num_threads=n_threads):
                weight = weights[i] if has_weights else 1
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _elementwise_row(kind, &pred[i, 0], &target[i, 0], a_typed,
                                           b_typed, mean, factor, weight, has_weights,
                                           grad_row, n_outputs)
        else:
            for i in range(n_samples):
                weight = weights[i] if has_weights else 1
                grad_row = &grad[i, 0] if has_grad else NULL
                loss[i] = _elementwise_row(kind, &pred[i, 0], &target[i, 0], a_typed,
                                           b_typed, mean, factor, weight, has_weights,
                                           grad_row, n_outputs)


# ---------------------------------------------------------------------------
# Python wrappers: argument checks, then one call into the loops above.
# ---------------------------------------------------------------------------

def _check_two_dim(op, name, array):
    if array.ndim != 2:
        raise ValueError(
            f"{op}: {name} must be 2-D (n_samples, n_features), got shape {array.shape}"
        )
    if array.shape[1] == 0:
        raise ValueError(
            f"{op}: {name} must have at least one column, got shape {array.shape}"
        )


def _check_sample_weight(op, sample_weight, n_samples, dtype):
    """Return ``sample_weight`` as a contiguous array of ``dtype``, or an empty one for None."""
    if sample_weight is None:
        return np.empty(0, dtype=dtype)
    weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "fiub":
        raise TypeError(
            f"{op}: sample_weight must hold real numbers, got dtype {weights.dtype}"
        )
    if weights.shape != (n_samples,):
        raise ValueError(
            f"{op}: sample_weight must have shape ({n_samples},), got {weights.shape}"
        )
    return np.ascontiguousarray(weights, dtype=dtype)


def _check_labels(op, labels, n_samples, n_classes):
    """Return integer ``labels`` as contiguous int64 after checking their shape and range."""
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: 1-D labels must be integer class indices, got dtype {labels.dtype}; "
            f"pass target probabilities of shape ({n_samples}, {n_classes}) instead"
        )
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"{op}: labels must have shape ({n_samples},) to match logits, "
            f"got {labels.shape}"
        )
    invalid = (labels < 0) | (labels >= n_classes)
    if invalid.any():
        position = int(np.argmax(invalid))
        raise ValueError(
            f"{op}: label {labels[position]} at position {position} is out of range, "
            f"expected a class index in [0, {n_classes})"
        )
    return np.ascontiguousarray(labels, dtype=np.int64)


def _prepare_outputs(op, loss_out, grad_out, shape, dtype, inputs, grad_in_place_inputs):
    """Return (loss buffer, grad buffer or None) to write, after checking the outputs."""
    n_samples = shape[0]
    if loss_out is not None:
        check_out(op, "loss_out", loss_out, (n_samples,), dtype)
        loss = output_buffer(loss_out, (), inputs + (grad_out,))
    else:
        loss = np.empty(n_samples, dtype=dtype)
    grad = None
    if grad_out is not None:
        check_out(op, "grad_out", grad_out, shape, dtype)
        others = tuple(a for a in inputs if all(a is not b for b in grad_in_place_inputs))
        grad = output_buffer(grad_out, grad_in_place_inputs, others + (loss_out,))
    return loss, grad


def _finish(loss, loss_out, grad, grad_out):
    if loss_out is not None:
        loss = finish_output(loss, loss_out)
    if grad_out is not None:
        grad = finish_output(grad, grad_out)
    return loss, grad


def softmax_cross_entropy(logits, labels, sample_weight=None, grad_scale=1.0,
                          loss_out=None, grad_out=None, n_threads=None):
    """Per-sample softmax cross-entropy from logits, and its gradient.

    With z_i a row of logits, t_i its target row and lse the log-sum-exp:
    loss[i] = sum_j t_ij (lse(z_i) - z_ij), and
    grad[i] = grad_scale * w_i * (softmax(z_i) * sum_j t_ij - t_i).
    Each row is handled once, loss and gradient together: find the maximum,
    sum exp(z - max) while storing each term, then scale the stored terms
    into the gradient. Subtracting the maximum keeps every exp at most 1, so
    large finite logits (1e4, say) give a finite loss and gradient.

    Parameters
    ----------
    logits : ndarray of float32 or float64, shape (n_samples, n_classes)
    labels : ndarray
        Integer class indices of shape (n_samples,), any integer dtype, each
        in [0, n_classes); or target probabilities with the shape and dtype
        of ``logits`` (rows need not sum to one).
    sample_weight : array-like of shape (n_samples,), optional
        Per-sample weights w, converted to the dtype of ``logits``. They
        scale the gradient only, so the caller weights the returned losses.
    grad_scale : float
        Factor applied to every gradient element, such as 1 / n_samples.
    loss_out, grad_out : ndarray, optional
        Receive the losses, shape (n_samples,), and the gradient, shape of
        ``logits``, both with the dtype of ``logits``. The gradient is only
        computed when ``grad_out`` is given. ``grad_out`` may be ``logits``.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.

    Returns
    -------
    (loss, grad_out)
        ``loss`` is ``loss_out`` when given, else a new array. ``grad_out``
        is returned as passed, so it is None when no gradient was requested.
    """
    op = "softmax_cross_entropy"
    logits = check_float_array(op, "logits", logits)
    _check_two_dim(op, "logits", logits)
    n_samples, n_classes = logits.shape
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{op}: labels must be a numpy.ndarray, got {type(labels).__name__}")
    if labels.ndim == 1:
        labels = _check_labels(op, labels, n_samples, n_classes)
        sparse = True
    elif labels.ndim == 2:
        check_same_shape(op, "logits", logits, "labels", labels)
        check_same_dtype(op, "logits", logits, "labels", labels)
        labels = np.ascontiguousarray(labels)
        sparse = False
    else:
        raise ValueError(
            f"{op}: labels must be class indices of shape ({n_samples},) or targets "
            f"of shape {logits.shape}, got {labels.shape}"
        )
    weights = _check_sample_weight(op, sample_weight, n_samples, logits.dtype)
    loss, grad = _prepare_outputs(
        op, loss_out, grad_out, logits.shape, logits.dtype,
        inputs=(logits, labels, weights), grad_in_place_inputs=(logits,),
    )
    if n_samples == 0:
        return _finish(loss, loss_out, grad, grad_out)

    has_grad = grad is not None
    if not has_grad:
        grad = np.empty((0, n_classes), dtype=logits.dtype)
    logits_c = np.ascontiguousarray(logits)
    threads = resolve_for_size(n_threads, logits.size, PARALLEL_MIN_SIZE_CROSS_ENTROPY)
    if sparse:
        _cross_entropy_sparse(logits_c, labels, weights, float(grad_scale), loss, grad,
                              has_grad, threads)
    else:
        _cross_entropy_dense(logits_c, labels, weights, float(grad_scale), loss, grad,
                             has_grad, threads)
    return _finish(loss, loss_out, grad if has_grad else None, grad_out)


def mean_squared_error(pred, target, sample_weight=None, grad_scale=1.0,
                       loss_out=None, grad_out=None, n_threads=None):
    """Per-sample mean squared error over the last axis, and its gradient.

    loss[i] = mean_j (pred_ij - target_ij)^2, and
    grad[i] = (pred_i - target_i) * (2 * grad_scale / n_outputs) * w_i.
    Each square is rounded to the dtype and summed in double. So for float32
    a row whose squares fit float32 but whose sum does not has a finite loss
    here, where the NumPy reference, which sums in float32, returns inf.

    Parameters
    ----------
    pred, target : ndarray of float32 or float64, shape (n_samples, n_outputs)
        Same shape and dtype.
    sample_weight : array-like of shape (n_samples,), optional
        Per-sample weights w, converted to the dtype of ``pred``. They scale
        the gradient only.
    grad_scale : float
        Factor applied to every gradient element.
    loss_out, grad_out : ndarray, optional
        Receive the losses, shape (n_samples,), and the gradient, shape of
        ``pred``. The gradient is only computed when ``grad_out`` is given.
        ``grad_out`` may be ``pred`` or ``target``.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.

    Returns
    -------
    (loss, grad_out)
        ``loss`` is ``loss_out`` when given, else a new array. ``grad_out``
        is returned as passed.
    """
    op = "mean_squared_error"
    pred = check_float_array(op, "pred", pred)
    target = check_float_array(op, "target", target)
    check_same_dtype(op, "pred", pred, "target", target)
    check_same_shape(op, "pred", pred, "target", target)
    _check_two_dim(op, "pred", pred)
    n_samples, n_outputs = pred.shape
    weights = _check_sample_weight(op, sample_weight, n_samples, pred.dtype)
    loss, grad = _prepare_outputs(
        op, loss_out, grad_out, pred.shape, pred.dtype,
        inputs=(pred, target, weights), grad_in_place_inputs=(pred, target),
    )
    if n_samples == 0:
        return _finish(loss, loss_out, grad, grad_out)

    has_grad = grad is not None
    if not has_grad:
        grad = np.empty((0, n_outputs), dtype=pred.dtype)
    # The factor is rounded to the working dtype once, as NumPy does when it
    # multiplies an array by a Python float.
    grad_factor = 2.0 * float(grad_scale) / n_outputs
    threads = resolve_for_size(n_threads, pred.size, PARALLEL_MIN_SIZE_SQUARED_ERROR)
    _squared_error(np.ascontiguousarray(pred), np.ascontiguousarray(target), weights,
                   grad_factor, loss, grad, has_grad, threads)
    return _finish(loss, loss_out, grad if has_grad else None, grad_out)


def _run_elementwise(op, int kind, pred, target, sample_weight, grad_scale, loss_out,
                     grad_out, n_threads, a=0.0, b=0.0, mean=True,
                     threshold=PARALLEL_MIN_SIZE_ARITHMETIC_LOSS):
    """Check the arguments of an elementwise loss kernel, then run it.

    The gradient factor is grad_scale / n_outputs for losses averaged over
    the row (``mean``), else grad_scale, rounded to the working dtype once.
    """
    pred = check_float_array(op, "pred", pred)
    target = check_float_array(op, "target", target)
    check_same_dtype(op, "pred", pred, "target", target)
    check_same_shape(op, "pred", pred, "target", target)
    _check_two_dim(op, "pred", pred)
    n_samples, n_outputs = pred.shape
    weights = _check_sample_weight(op, sample_weight, n_samples, pred.dtype)
    loss, grad = _prepare_outputs(
        op, loss_out, grad_out, pred.shape, pred.dtype,
        inputs=(pred, target, weights), grad_in_place_inputs=(pred, target),
    )
    if n_samples == 0:
        return _finish(loss, loss_out, grad, grad_out)

    has_grad = grad is not None
    if not has_grad:
        grad = np.empty((0, n_outputs), dtype=pred.dtype)
    grad_factor = float(grad_scale) / n_outputs if mean else float(grad_scale)
    threads = resolve_for_size(n_threads, pred.size, threshold)
    _elementwise(kind, np.ascontiguousarray(pred), np.ascontiguousarray(target), weights,
                 a, b, mean, grad_factor, loss, grad, has_grad, threads)
    return _finish(loss, loss_out, grad if has_grad else None, grad_out)


_ELEMENTWISE_PARAMETERS = """
    Parameters
    ----------
    pred, target : ndarray of float32 or float64, shape (n_samples, n_outputs)
        Same shape and dtype.
    sample_weight : array-like of shape (n_samples,), optional
        Per-sample weights w, converted to the dtype of ``pred``. They scale
        the gradient only.
    grad_scale : float
        Factor applied to every gradient element.
    loss_out, grad_out : ndarray, optional
        Receive the losses, shape (n_samples,), and the gradient, shape of
        ``pred``. The gradient is only computed when ``grad_out`` is given.
        ``grad_out`` may be ``pred`` or ``target``.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.

    Returns
    -------
    (loss, grad_out)
        ``loss`` is ``loss_out`` when given, else a new array. ``grad_out``
        is returned as passed.
"""


def mean_absolute_error(pred, target, sample_weight=None, grad_scale=1.0,
                        loss_out=None, grad_out=None, n_threads=None):
    return _run_elementwise("mean_absolute_error", LOSS_ABSOLUTE, pred, target,
                            sample_weight, grad_scale, loss_out, grad_out, n_threads)


mean_absolute_error.__doc__ = """Per-sample mean absolute error over the last axis, and its gradient.

    loss[i] = mean_j |pred_ij - target_ij|, and
    grad[i] = sign(pred_i - target_i) * (grad_scale / n_outputs) * w_i,
    with sign(0) = 0, as np.sign gives.
""" + _ELEMENTWISE_PARAMETERS


def huber(pred, target, delta=1.0, sample_weight=None, grad_scale=1.0, loss_out=None,
          grad_out=None, n_threads=None):
    op = "huber"
    delta = float(delta)
    if not delta > 0 or delta == float("inf"):
        raise ValueError(f"{op}: delta must be finite and > 0, got delta={delta}")
    return _run_elementwise(op, LOSS_HUBER, pred, target, sample_weight, grad_scale,
                            loss_out, grad_out, n_threads, a=delta,
                            b=0.5 * delta * delta)


huber.__doc__ = """Per-sample Huber loss over the last axis, and its gradient.

    With e = pred - target, each element's loss is 0.5 * e^2 where
    |e| <= delta, else delta * |e| - 0.5 * delta^2, and the per-sample loss
    is their mean. The gradient is e where |e| <= delta, else
    delta * sign(e), times (grad_scale / n_outputs) * w_i. ``delta`` (a
    finite float > 0) is rounded to the dtype, and 0.5 * delta^2 is computed
    in double and then rounded.
""" + _ELEMENTWISE_PARAMETERS


def binary_cross_entropy(pred, target, from_logits=False, sample_weight=None,
                         grad_scale=1.0, loss_out=None, grad_out=None, n_threads=None):
    if from_logits:
        return _run_elementwise("binary_cross_entropy", LOSS_BINARY_LOGITS, pred, target,
                                sample_weight, grad_scale, loss_out, grad_out, n_threads,
                                threshold=PARALLEL_MIN_SIZE_LOG_LOSS)
    return _run_elementwise("binary_cross_entropy", LOSS_BINARY_PROBABILITIES, pred,
                            target, sample_weight, grad_scale, loss_out, grad_out,
                            n_threads, a=EPSILON, b=1.0 - EPSILON,
                            threshold=PARALLEL_MIN_SIZE_LOG_LOSS)


binary_cross_entropy.__doc__ = """Per-sample binary cross-entropy over the last axis, and its gradient.

    From logits z (``from_logits=True``), each element's loss is
    max(z, 0) - z t + log1p(exp(-|z|)), which never overflows, and its
    gradient sigmoid(z) - t. For z = +inf the loss is z (1 - t) and for
    z = -inf it is -z t, both 0 when the label agrees (t = 1 or t = 0),
    where the formula would give inf - inf. A logit of +-100 with the wrong
    label costs exactly 100, and every gradient element stays finite for
    finite targets.

    From probabilities p, clipped to [EPSILON, 1 - EPSILON] as Keras does
    (both bounds rounded to the dtype), the loss is
    -(t log(p) + (1 - t) log(1 - p)) and the gradient
    (1 - t) / (1 - p) - t / p, or 0 where p lies outside the clip range.
    NaN passes through the clip.

    Losses are averaged over the last axis, and gradients are scaled by
    (grad_scale / n_outputs) * w_i.
""" + _ELEMENTWISE_PARAMETERS


def kl_divergence(pred, target, sample_weight=None, grad_scale=1.0, loss_out=None,
                  grad_out=None, n_threads=None):
    return _run_elementwise("kl_divergence", LOSS_KL_DIVERGENCE, pred, target,
                            sample_weight, grad_scale, loss_out, grad_out, n_threads,
                            a=EPSILON, mean=False, threshold=PARALLEL_MIN_SIZE_LOG_LOSS)


kl_divergence.__doc__ = """Per-sample Kullback-Leibler divergence over the last axis, and its gradient.

    As Keras does, t = clip(target, EPSILON, 1) and p = clip(pred, EPSILON, 1),
    and loss[i] = sum_j t_ij log(t_ij / p_ij) (a sum, not a mean). The
    gradient is -t / p, or 0 where pred lies outside [EPSILON, 1], times
    grad_scale * w_i.
""" + _ELEMENTWISE_PARAMETERS
