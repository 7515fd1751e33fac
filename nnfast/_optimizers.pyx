# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Optimizer update kernels, in place over flat 1-D buffers.

Each element is updated with the operations of the NumPy reference, in the
same order and rounded to the same dtype at each step, so with NumPy 2 the
two backends agree to the last bit. Every scalar, Adam's
step size alpha included, is rounded to the dtype of the buffers, and the
arithmetic stays in that dtype, as Keras computes it.

Threads: the buffer is split into contiguous blocks with a static schedule.
Below a size threshold the loop runs serially and opens no parallel region.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

import math

import numpy as np

from nnfast._reference import nadam_momentum
from nnfast._threads import resolve

cdef extern from "<math.h>" nogil:
    float sqrtf(float x)


# Minimum buffer length for which a second thread pays off. Measured on a
# shared, noisy 2-core x86-64 VM (GCC 12, -O3, libgomp) by timing each float32
# update with n_threads=1 and n_threads=2, best of 5, in two runs. At 4,096
# elements two threads ran 1.0-1.3x faster for both Adam and SGD with
# momentum, at 16,384 elements 1.7-2.2x (Adam) and 1.4-1.6x (SGD), and at
# 1,024 elements they were slower.
PARALLEL_MIN_SIZE_ADAM = 16384
PARALLEL_MIN_SIZE_SGD = 16384
# NOTE: RMSprop, Adagrad and Nadam were not timed. Each does a square root
# and a division per element, as Adam does, so they take Adam's threshold.
PARALLEL_MIN_SIZE_ADAPTIVE = PARALLEL_MIN_SIZE_ADAM


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


def _sgd(floating[::1] params, const floating[::1] grads, floating[::1] velocity,
         double learning_rate, double momentum, bint use_momentum, bint nesterov,
         int n_threads):
    """Apply one SGD step; ``velocity`` is only read and written with ``use_momentum``."""
    cdef Py_ssize_t n = params.shape[0]
    cdef Py_ssize_t i
    cdef floating lr = <floating>learning_rate
    cdef floating mom = <floating>momentum
    cdef floating v

    with nogil:
        if not use_momentum:
            if n_threads > 1:
                for i in prange(n, schedule='static', num_threads=n_threads):
                    params[i] = params[i] - lr * grads[i]
            else:
                for i in range(n):
                    params[i] = params[i] - lr * grads[i]
        elif nesterov:
            if n_threads > 1:
                for i in prange(n, schedule='static', num_threads=n_threads):
                    v = velocity[i] * mom - lr * grads[i]
                    velocity[i] = v
                    params[i] = params[i] + (mom * v - lr * grads[i])
            else:
                for i in range(n):
                    v = velocity[i] * mom - lr * grads[i]
                    velocity[i] = v
                    params[i] = params[i] + (mom * v - lr * grads[i])
        else:
            if n_threads > 1:
                for i in prange(n, schedule='static', num_threads=n_threads):
                    v = velocity[i] * mom - lr * grads[i]
                    velocity[i] = v
                    params[i] = params[i] + v
            else:
                for i in range(n):
                    v = velocity[i] * mom - lr * grads[i]
                    velocity[i] = v
                    params[i] = params[i] + v


cdef extern from "nnfast.h" nogil:
    ctypedef Py_ssize_t nnf_int
    int nnf_parallel_threads(int n_threads, double work, double min_work)
    int nnf_adam_f32(float *p, const float *g, float *m, float *v, float *v_hat, nnf_int n,
                     double alpha, double beta_1, double beta_2, double epsilon,
                     double decay, int n_threads)
    int nnf_adam_f64(double *p, const double *g, double *m, double *v, double *v_hat,
                     nnf_int n, double alpha, double beta_1, double beta_2, double epsilon,
                     double decay, int n_threads)


def _adam(floating[::1] params, const floating[::1] grads, floating[::1] m, floating[::1] v,
          floating[::1] v_hat, bint amsgrad, double alpha, double beta_1, double beta_2,
          double epsilon, double decay, int n_threads):
    """Apply one Adam step with step size ``alpha`` (bias corrections included).

    ``v_hat`` is only read and written with ``amsgrad``. The loop is in
    csrc/optim.c, which picks its SIMD level at run time.
    """
    cdef Py_ssize_t n = params.shape[0]
    cdef floating* v_hat_ptr = &v_hat[0] if amsgrad else NULL
    with nogil:
        if floating is float:
            nnf_adam_f32(&params[0], &grads[0], &m[0], &v[0], v_hat_ptr, n, alpha, beta_1,
                         beta_2, epsilon, decay, n_threads)
        else:
            nnf_adam_f64(&params[0], &grads[0], &m[0], &v[0], v_hat_ptr, n, alpha, beta_1,
                         beta_2, epsilon, decay, n_threads)


cdef inline void _rmsprop_element(floating* param, floating grad, floating* velocity,
                                  floating* momentum_buffer, floating* average_grad,
                                  floating lr, floating rho, floating one_minus_rho,
                                  floating momentum, floating epsilon) noexcept nogil:
    """Update one parameter; ``momentum_buffer`` and ``average_grad`` may be NULL."""
    cdef floating v = rho * velocity[0] + one_minus_rho * grad * grad
    cdef floating average, denominator, increment
    velocity[0] = v
    if average_grad != NULL:
        average = rho * average_grad[0] + one_minus_rho * grad
        average_grad[0] = average
        denominator = v - average * average + epsilon
    else:
        denominator = v + epsilon
    increment = lr * grad / _sqrt(denominator)
    if momentum_buffer != NULL:
        increment = momentum * momentum_buffer[0] + increment
        momentum_buffer[0] = increment
    param[0] = param[0] - increment


def _rmsprop(floating[::1] params, const floating[::1] grads, floating[::1] velocity,
             floating[::1] momentum_buffer, floating[::1] average_grad, bint use_momentum,
             bint centered, double learning_rate, double rho, double momentum,
             double epsilon, int n_threads):
    """Apply one RMSprop step; the optional buffers are only read when used."""
    cdef Py_ssize_t n = params.shape[0]
    cdef Py_ssize_t i
    cdef floating lr = <floating>learning_rate
    cdef floating rho_typed = <floating>rho
    cdef floating one_minus_rho = <floating>(1.0 - rho)
    cdef floating momentum_typed = <floating>momentum
    cdef floating eps = <floating>epsilon
    cdef floating* momentum_ptr = &momentum_buffer[0] if use_momentum else NULL
    cdef floating* average_ptr = &average_grad[0] if centered else NULL

    with nogil:
        if n_threads > 1:
            for i in prange(n, schedule='static', num_threads=n_threads):
                _rmsprop_element(&params[i], grads[i], &velocity[i],
                                 momentum_ptr + i if use_momentum else NULL,
                                 average_ptr + i if centered else NULL, lr, rho_typed,
                                 one_minus_rho, momentum_typed, eps)
        else:
            for i in range(n):
                _rmsprop_element(&params[i], grads[i], &velocity[i],
                                 momentum_ptr + i if use_momentum else NULL,
                                 average_ptr + i if centered else NULL, lr, rho_typed,
                                 one_minus_rho, momentum_typed, eps)


def _adagrad(floating[::1] params, const floating[::1] grads, floating[::1] accumulator,
             double learning_rate, double epsilon, int n_threads):
    """Apply one Adagrad step."""
    cdef Py_ssize_t n = params.shape[0]
    cdef Py_ssize_t i
    cdef floating lr = <floating>learning_rate
    cdef floating eps = <floating>epsilon
    cdef floating total

    with nogil:
        if n_threads > 1:
            for i in prange(n, schedule='static', num_threads=n_threads):
                total = accumulator[i] + grads[i] * grads[i]
                accumulator[i] = total
                params[i] = params[i] - lr * grads[i] / _sqrt(total + eps)
        else:
            for i in range(n):
                total = accumulator[i] + grads[i] * grads[i]
                accumulator[i] = total
                params[i] = params[i] - lr * grads[i] / _sqrt(total + eps)


cdef inline void _nadam_element(floating* param, floating grad, floating* m, floating* v,
                                floating one_minus_beta_1, floating one_minus_beta_2,
                                floating u_next, floating product_next_complement,
                                floating u_complement, floating product_complement,
                                floating bias_2, floating lr,
                                floating epsilon) noexcept nogil:
    """Update one parameter and its two moments, in the reference's order."""
    cdef floating m_new = m[0] + (grad - m[0]) * one_minus_beta_1
    cdef floating v_new = v[0] + (grad * grad - v[0]) * one_minus_beta_2
    cdef floating m_hat, v_hat
    m[0] = m_new
    v[0] = v_new
    m_hat = u_next * m_new / product_next_complement + u_complement * grad / product_complement
    v_hat = v_new / bias_2
    param[0] = param[0] - m_hat * lr / (_sqrt(v_hat) + epsilon)


def _nadam(floating[::1] params, const floating[::1] grads, floating[::1] m, floating[::1] v,
           double beta_1, double beta_2, double u_next, double product_next_complement,
           double u_complement, double product_complement, double bias_2,
           double learning_rate, double epsilon, int n_threads):
    """Apply one Nadam step, given its scalars computed in double."""
    cdef Py_ssize_t n = params.shape[0]
    cdef Py_ssize_t i
    cdef floating c_beta_1 = <floating>(1.0 - beta_1)
    cdef floating c_beta_2 = <floating>(1.0 - beta_2)
    cdef floating c_u_next = <floating>u_next
    cdef floating c_product_next = <floating>product_next_complement
    cdef floating c_u = <floating>u_complement
    cdef floating c_product = <floating>product_complement
    cdef floating c_bias_2 = <floating>bias_2
    cdef floating lr = <floating>learning_rate
    cdef floating eps = <floating>epsilon

    with nogil:
        if n_threads > 1:
            for i in prange(n, schedule='static', num_threads=n_threads):
                _nadam_element(&params[i], grads[i], &m[i], &v[i], c_beta_1, c_beta_2,
                               c_u_next, c_product_next, c_u, c_product, c_bias_2, lr, eps)
        else:
            for i in range(n):
                _nadam_element(&params[i], grads[i], &m[i], &v[i], c_beta_1, c_beta_2,
                               c_u_next, c_product_next, c_u, c_product, c_bias_2, lr, eps)


# ---------------------------------------------------------------------------
# Python wrappers: argument checks, then one call into the loops above.
# ---------------------------------------------------------------------------

def _check_state_buffer(op, name, array):
    """Raise unless ``array`` is a writeable, C-contiguous 1-D float ndarray."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype != np.float32 and array.dtype != np.float64:
        raise TypeError(f"{op}: {name} must have dtype float32 or float64, got {array.dtype}")
    if array.ndim != 1 or not array.flags.c_contiguous:
        raise ValueError(
            f"{op}: {name} must be a C-contiguous 1-D array, got shape {array.shape} "
            f"and strides {array.strides}; pass a flat view such as {name}.reshape(-1)"
        )
    if not array.flags.writeable:
        raise ValueError(f"{op}: {name} must be writeable, got a read-only array")


def _check_grads(op, grads, params):
    """Return ``grads`` as a C-contiguous 1-D array after checking it against ``params``."""
    if not isinstance(grads, np.ndarray):
        raise TypeError(f"{op}: grads must be a numpy.ndarray, got {type(grads).__name__}")
    if grads.ndim != 1:
        raise ValueError(f"{op}: grads must be 1-D, got shape {grads.shape}")
    return np.ascontiguousarray(grads)


def _check_matching(op, names, arrays):
    """Raise unless all ``arrays`` have the same length and dtype."""
    lengths = [a.shape[0] for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"{op}: {', '.join(names)} must have the same length, "
            f"got {', '.join(str(n) for n in lengths)}"
        )
    dtypes = [a.dtype for a in arrays]
    if len(set(dtypes)) > 1:
        raise TypeError(
            f"{op}: {', '.join(names)} must have the same dtype, "
            f"got {', '.join(str(d) for d in dtypes)}"
        )


def _threads_for(Py_ssize_t size, Py_ssize_t threshold, n_threads):
    if size < threshold:
        return 1
    return nnf_parallel_threads(resolve(n_threads), size, threshold)


def sgd_update(params, grads, velocity, learning_rate, momentum=0.0, nesterov=False,
               n_threads=None):
    """Apply one SGD step in place, in Keras's momentum form.

    momentum == 0: p -= lr * g, and ``velocity`` is neither read nor written
    (it may be None). Otherwise v = momentum * v - lr * g, then p += v, or
    with Nesterov momentum p += momentum * v - lr * g.

    Parameters
    ----------
    params : ndarray of float32 or float64, C-contiguous, 1-D
        Updated in place.
    grads : ndarray, 1-D
        Same length and dtype as ``params``. Any stride, read-only allowed.
    velocity : ndarray or None
        Like ``params``, updated in place. Required when momentum != 0.
    learning_rate, momentum : float
        Rounded to the dtype of ``params``, as NumPy does with Python floats.
    nesterov : bool
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.
    """
    op = "sgd_update"
    _check_state_buffer(op, "params", params)
    grads = _check_grads(op, grads, params)
    use_momentum = float(momentum) != 0.0
    if use_momentum:
        if velocity is None:
            raise ValueError(
                f"{op}: velocity is required when momentum != 0, got momentum={momentum} "
                f"and velocity=None"
            )
        _check_state_buffer(op, "velocity", velocity)
        _check_matching(op, ("params", "grads", "velocity"), (params, grads, velocity))
    else:
        _check_matching(op, ("params", "grads"), (params, grads))
        # Unused, but the typed signature needs a buffer of the right dtype.
        velocity = params[:0]
    if params.shape[0] == 0:
        return
    threads = _threads_for(params.shape[0], PARALLEL_MIN_SIZE_SGD, n_threads)
    _sgd(params, grads, velocity, float(learning_rate), float(momentum), use_momentum,
         bool(nesterov), threads)


def _check_step(op, step):
    if step < 1:
        raise ValueError(f"{op}: step must be a 1-based update count >= 1, got step={step}")


def adam_update(params, grads, m, v, learning_rate, beta_1, beta_2, epsilon, step,
                n_threads=None, v_hat=None, weight_decay=0.0):
    """Apply one Adam (or AMSGrad, or AdamW) step in place, in Keras's form.

    For step t (1-based), first AdamW's decoupled weight decay,
    p -= p * (lr * weight_decay), which is skipped when weight_decay is 0.
    Then m = m + (1 - beta_1) * (g - m), v = v + (1 - beta_2) * (g^2 - v),
    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t),
    p -= alpha * m / (sqrt(v) + epsilon).
    With ``v_hat`` (AMSGrad), v_hat = maximum(v_hat, v) takes the place of v
    in the last line.

    Parameters
    ----------
    params, m, v : ndarray of float32 or float64, C-contiguous, 1-D
        Updated in place; same length and dtype.
    grads : ndarray, 1-D
        Same length and dtype as ``params``. Any stride, read-only allowed.
    learning_rate, beta_1, beta_2, epsilon : float
    step : int
        The 1-based number of this update, used in the bias corrections.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.
    v_hat : ndarray, optional
        AMSGrad's running maximum of v, like ``params``, updated in place.
    weight_decay : float
        AdamW's decoupled weight decay rate, 0 for Adam.
    """
    op = "adam_update"
    _check_state_buffer(op, "params", params)
    grads = _check_grads(op, grads, params)
    _check_state_buffer(op, "m", m)
    _check_state_buffer(op, "v", v)
    amsgrad = v_hat is not None
    if amsgrad:
        _check_state_buffer(op, "v_hat", v_hat)
        _check_matching(op, ("params", "grads", "m", "v", "v_hat"),
                        (params, grads, m, v, v_hat))
    else:
        _check_matching(op, ("params", "grads", "m", "v"), (params, grads, m, v))
        # Unused, but the typed signature needs a buffer of the right dtype.
        v_hat = params[:0]
    _check_step(op, step)
    beta_1 = float(beta_1)
    beta_2 = float(beta_2)
    if beta_1 == 1.0:
        raise ValueError(
            f"{op}: beta_1 must differ from 1, because the bias correction divides "
            f"by 1 - beta_1^step, got beta_1={beta_1}"
        )
    if params.shape[0] == 0:
        return
    alpha = float(learning_rate) * math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)
    decay = float(learning_rate) * float(weight_decay)
    threads = _threads_for(params.shape[0], PARALLEL_MIN_SIZE_ADAM, n_threads)
    _adam(params, grads, m, v, v_hat, amsgrad, alpha, beta_1, beta_2, float(epsilon),
          decay, threads)


def rmsprop_update(params, grads, velocity, momentum_buffer, average_grad, learning_rate,
                   rho, momentum, epsilon, n_threads=None):
    """Apply one RMSprop step in place, in Keras 3's form of the update.

    v = rho * v + (1 - rho) * g^2. Centered (``average_grad`` given):
    a = rho * a + (1 - rho) * g and d = v - a^2 + epsilon, else
    d = v + epsilon. Then increment = lr * g / sqrt(d), and with
    momentum > 0: b = momentum * b + increment and p -= b, else
    p -= increment.

    Parameters
    ----------
    params, velocity : ndarray of float32 or float64, C-contiguous, 1-D
        Updated in place; same length and dtype.
    grads : ndarray, 1-D
        Same length and dtype as ``params``. Any stride, read-only allowed.
    momentum_buffer : ndarray or None
        Like ``params``, updated in place. Required when momentum > 0, and
        neither read nor written otherwise.
    average_grad : ndarray or None
        Like ``params``: the moving average of the gradient for the centered
        form, or None for the plain form.
    learning_rate, rho, momentum, epsilon : float
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.
    """
    op = "rmsprop_update"
    _check_state_buffer(op, "params", params)
    grads = _check_grads(op, grads, params)
    _check_state_buffer(op, "velocity", velocity)
    names = ["params", "grads", "velocity"]
    arrays = [params, grads, velocity]
    use_momentum = float(momentum) > 0.0
    if use_momentum:
        if momentum_buffer is None:
            raise ValueError(
                f"{op}: momentum_buffer is required when momentum > 0, got "
                f"momentum={momentum} and momentum_buffer=None"
            )
        _check_state_buffer(op, "momentum_buffer", momentum_buffer)
        names.append("momentum_buffer")
        arrays.append(momentum_buffer)
    else:
        momentum_buffer = params[:0]
    centered = average_grad is not None
    if centered:
        _check_state_buffer(op, "average_grad", average_grad)
        names.append("average_grad")
        arrays.append(average_grad)
    else:
        average_grad = params[:0]
    _check_matching(op, names, arrays)
    if params.shape[0] == 0:
        return
    threads = _threads_for(params.shape[0], PARALLEL_MIN_SIZE_ADAPTIVE, n_threads)
    _rmsprop(params, grads, velocity, momentum_buffer, average_grad, use_momentum,
             centered, float(learning_rate), float(rho), float(momentum), float(epsilon),
             threads)


def adagrad_update(params, grads, accumulator, learning_rate, epsilon, n_threads=None):
    """Apply one Adagrad step in place, in Keras 3's form of the update.

    accumulator += g^2, then p -= lr * g / sqrt(accumulator + epsilon).

    Parameters
    ----------
    params, accumulator : ndarray of float32 or float64, C-contiguous, 1-D
        Updated in place; same length and dtype.
    grads : ndarray, 1-D
        Same length and dtype as ``params``. Any stride, read-only allowed.
    learning_rate, epsilon : float
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.
    """
    op = "adagrad_update"
    _check_state_buffer(op, "params", params)
    grads = _check_grads(op, grads, params)
    _check_state_buffer(op, "accumulator", accumulator)
    _check_matching(op, ("params", "grads", "accumulator"), (params, grads, accumulator))
    if params.shape[0] == 0:
        return
    threads = _threads_for(params.shape[0], PARALLEL_MIN_SIZE_ADAPTIVE, n_threads)
    _adagrad(params, grads, accumulator, float(learning_rate), float(epsilon), threads)


def nadam_update(params, grads, m, v, learning_rate, beta_1, beta_2, epsilon, step,
                 u_product, n_threads=None):
    """Apply one Nadam step in place and return the new momentum product.

    For step t (1-based), with u_t = beta_1 * (1 - 0.5 * 0.96^t)
    (:func:`nnfast._reference.nadam_momentum`) and ``u_product`` the product
    u_1 * ... * u_(t-1), 1.0 at the first step:
    P_t = u_product * u_t, P_(t+1) = P_t * u_(t+1),
    m = m + (g - m) * (1 - beta_1), v = v + (g^2 - v) * (1 - beta_2),
    m_hat = u_(t+1) * m / (1 - P_(t+1)) + (1 - u_t) * g / (1 - P_t),
    v_hat = v / (1 - beta_2^t),
    p -= m_hat * lr / (sqrt(v_hat) + epsilon).
    The scalars are computed in double, then rounded to the dtype.

    Parameters
    ----------
    params, m, v : ndarray of float32 or float64, C-contiguous, 1-D
        Updated in place; same length and dtype.
    grads : ndarray, 1-D
        Same length and dtype as ``params``. Any stride, read-only allowed.
    learning_rate, beta_1, beta_2, epsilon : float
    step : int
        The 1-based number of this update.
    u_product : float
        The momentum product before this step.
    n_threads : int, optional
        Maximum number of threads, by default :func:`nnfast.get_num_threads`.

    Returns
    -------
    float
        P_t, the ``u_product`` to pass at the next step.
    """
    op = "nadam_update"
    _check_state_buffer(op, "params", params)
    grads = _check_grads(op, grads, params)
    _check_state_buffer(op, "m", m)
    _check_state_buffer(op, "v", v)
    _check_matching(op, ("params", "grads", "m", "v"), (params, grads, m, v))
    _check_step(op, step)
    beta_1 = float(beta_1)
    beta_2 = float(beta_2)
    u_t = nadam_momentum(beta_1, step)
    u_next = nadam_momentum(beta_1, step + 1)
    product = float(u_product) * u_t
    product_next = product * u_next
    if params.shape[0] == 0:
        return product
    threads = _threads_for(params.shape[0], PARALLEL_MIN_SIZE_ADAPTIVE, n_threads)
    _nadam(params, grads, m, v, beta_1, beta_2, u_next, 1 - product_next, 1 - u_t,
           1 - product, 1 - beta_2 ** step, float(learning_rate), float(epsilon), threads)
    return product
