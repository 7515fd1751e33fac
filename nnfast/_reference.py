"""Reference kernels: the plainest correct NumPy formula for every kernel.

Each function has the same signature and contract as its compiled twin in
:mod:`nnfast._compiled`, so the two can be swapped with
``nnfast.set_backend("reference")`` and compared in tests. Outputs go to the
``*_out`` array when one is given (and it is returned), else to a new array.
``n_threads`` is accepted and ignored, because NumPy chooses its own threads.

Shapes use the GEMM names: ``x`` is (n_samples, n_in), ``kernel`` is
(n_in, n_out), and ``y``, ``dy`` are (n_samples, n_out).
"""

import math

import numpy as np

# The activations with a C code in nnfast.h (a name's position is its code),
# which the fused dense kernels apply in the GEMM epilogue.
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")

# Activations that only the activation kernels compute. A Dense layer runs
# them as a linear dense kernel followed by an activation kernel.
EXTRA_ACTIVATIONS = (
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "gelu_approximate",
    "silu",
    "softplus",
    "softsign",
    "hard_sigmoid",
    "exponential",
    "log_softmax",
)
ALL_ACTIVATIONS = ACTIVATIONS + EXTRA_ACTIVATIONS

# Activations whose derivative is a function of the output alone, so the
# backward pass needs no saved input. The others need the input ``x``.
OUTPUT_DERIVATIVE = frozenset(ACTIVATIONS + ("exponential", "log_softmax"))

# Activations that take a parameter (the kernels' ``alpha`` argument): the
# negative slope of leaky_relu and the alpha of elu, with Keras 3's defaults.
PARAMETER_DEFAULTS = {"leaky_relu": 0.2, "elu": 1.0}


def _store(result, out):
    if out is None:
        return result
    out[...] = result
    return out


def _check_activation(name):
    if name not in ALL_ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(ALL_ACTIVATIONS)}"
        )


def _activation_parameter(name, alpha):
    """Return the parameter of activation ``name``: ``alpha`` or its default."""
    if name in PARAMETER_DEFAULTS:
        return PARAMETER_DEFAULTS[name] if alpha is None else float(alpha)
    if alpha is not None:
        raise ValueError(f"activation {name!r} takes no parameter, got alpha={alpha!r}")
    return None


def gemm(a, b, c=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0,
         n_threads=None):
    """C = alpha * op(A) @ op(B) + beta * C, where op transposes when asked.

    When ``c`` is None a new array is returned and ``beta`` is ignored.
    """
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    product = alpha * (opa @ opb)
    if c is None:
        return product.astype(np.result_type(a, b), copy=False)
    if beta == 0.0:
        c[...] = product
    else:
        c[...] = product + beta * c
    return c


def _softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    # Split by sign so that exp never overflows: for z < 0, e^z / (1 + e^z).
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def activation_forward(name, x, out=None, n_threads=None, alpha=None):
    """y = activation(x), elementwise, or over the last axis for softmax and log_softmax.

    ``alpha`` is the parameter of leaky_relu and elu (None for the default).
    """
    _check_activation(name)
    parameter = _activation_parameter(name, alpha)
    if name in _EXTRA_FORWARD:
        y = _EXTRA_FORWARD[name](x, parameter)
    elif name == "linear":
        y = x.copy()
    elif name == "relu":
        y = np.maximum(x, 0).astype(x.dtype, copy=False)
    elif name == "sigmoid":
        y = _sigmoid(x)
    elif name == "tanh":
        y = np.tanh(x)
    else:
        y = _softmax(x)
    return _store(y, out)


def activation_backward(name, x, y, dy, out=None, n_threads=None, alpha=None):
    """dx = dy * activation'(x), given the saved input ``x`` or output ``y``.

    Activations in OUTPUT_DERIVATIVE read only ``y`` (``x`` may be None), the
    others only ``x`` (``y`` may be None).
    """
    _check_activation(name)
    parameter = _activation_parameter(name, alpha)
    if name not in OUTPUT_DERIVATIVE and x is None:
        raise ValueError(f"activation_backward: {name} needs the saved input x, got None")
    if name in _EXTRA_BACKWARD:
        dx = _EXTRA_BACKWARD[name](x, y, dy, parameter)
    elif name == "linear":
        dx = dy.copy()
    elif name == "relu":
        dx = np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)
    elif name == "sigmoid":
        dx = dy * y * (1 - y)
    elif name == "tanh":
        dx = dy * (1 - y * y)
    else:
        dx = y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return _store(dx, out)


def dense_forward(x, kernel, bias, activation, out=None, preact_out=None,
                  n_threads=None):
    """y = activation(x @ kernel + bias); ``bias`` may be None.

    ``preact_out``, when given, receives x @ kernel + bias.
    """
    z = x @ kernel
    if bias is not None:
        z = z + bias
    if preact_out is not None:
        preact_out[...] = z
    return activation_forward(activation, z, out=out)


def dense_backward(x, kernel, y, dy, activation, kernel_grad_out, bias_grad_out,
                   dx_out=None, preact=None, beta=0.0, n_threads=None):
    """Backward pass of :func:`dense_forward`.

    With dz = dy * activation'(z):
    kernel_grad_out = x.T @ dz + beta * kernel_grad_out,
    bias_grad_out = dz.sum(axis=0) + beta * bias_grad_out (skipped when None),
    dx_out = dz @ kernel.T, computed only when ``dx_out`` is given.
    Returns ``dx_out``.
    """
    dz = activation_backward(activation, preact, y, dy)
    kernel_grad = x.T @ dz
    if beta != 0.0:
        kernel_grad = kernel_grad + beta * kernel_grad_out
    kernel_grad_out[...] = kernel_grad
    if bias_grad_out is not None:
        bias_grad = dz.sum(axis=0)
        if beta != 0.0:
            bias_grad = bias_grad + beta * bias_grad_out
        bias_grad_out[...] = bias_grad
    if dx_out is not None:
        dx_out[...] = dz @ kernel.T
    return dx_out


def softmax_cross_entropy(logits, labels, sample_weight=None, grad_scale=1.0,
                          loss_out=None, grad_out=None, n_threads=None):
    """Per-sample softmax cross-entropy from logits, and its gradient.

    ``labels`` is either integer class indices of shape (n,) or target
    probabilities (one-hot) of the same shape as ``logits``.
    loss[i] = logsumexp(z_i) - sum_j t_ij z_ij, computed with the row maximum
    subtracted so that large logits stay finite.
    grad[i] = grad_scale * w_i * (softmax(z_i) - t_i), written to ``grad_out``
    when given. ``sample_weight`` w scales the gradient only; the caller
    weights the returned losses.
    Returns (loss, grad_out).
    """
    z = logits
    n, n_classes = z.shape
    if labels.ndim == 1:
        t = np.zeros_like(z)
        t[np.arange(n), labels] = 1
    else:
        t = labels.astype(z.dtype, copy=False)
    zmax = z.max(axis=1, keepdims=True)
    shifted = z - zmax
    lse = np.log(np.exp(shifted).sum(axis=1))
    # loss = sum_j t_ij * (lse_i - z_ij), which is lse_i - z_i,label for one-hot
    # rows and stays right for targets that do not sum to one.
    loss = (t * (lse[:, None] - shifted)).sum(axis=1)
    loss = _store(loss.astype(z.dtype, copy=False), loss_out)
    if grad_out is not None:
        p = np.exp(shifted - lse[:, None])
        g = (p * t.sum(axis=1, keepdims=True) - t) * grad_scale
        if sample_weight is not None:
            g = g * sample_weight[:, None]
        grad_out[...] = g
    return loss, grad_out


def mean_squared_error(pred, target, sample_weight=None, grad_scale=1.0,
                       loss_out=None, grad_out=None, n_threads=None):
    """Per-sample mean squared error over the last axis, and its gradient.

    loss[i] = mean_j (pred_ij - target_ij)^2;
    grad[i] = grad_scale * w_i * 2 * (pred_i - target_i) / n_outputs.
    Returns (loss, grad_out).
    """
    diff = pred - target
    loss = _store((diff * diff).mean(axis=-1).astype(pred.dtype, copy=False),
                  loss_out)
    if grad_out is not None:
        g = diff * (2.0 * grad_scale / pred.shape[-1])
        if sample_weight is not None:
            g = g * sample_weight[:, None]
        grad_out[...] = g
    return loss, grad_out


def sgd_update(params, grads, velocity, learning_rate, momentum=0.0,
               nesterov=False, n_threads=None):
    """SGD in place over flat buffers, with Keras's momentum form.

    momentum == 0: p -= lr * g.
    Otherwise v = momentum * v - lr * g, then p += v, or with Nesterov
    p += momentum * v - lr * g.
    """
    if momentum == 0.0:
        params -= learning_rate * grads
        return
    velocity *= momentum
    velocity -= learning_rate * grads
    if nesterov:
        params += momentum * velocity - learning_rate * grads
    else:
        params += velocity


def adam_update(params, grads, m, v, learning_rate, beta_1, beta_2, epsilon, step,
                n_threads=None, v_hat=None, weight_decay=0.0):
    """Adam in place over flat buffers, with Keras's form of the update.

    For step t (1-based), first the decoupled weight decay of AdamW,
    p -= p * (lr * weight_decay), then
    m = m + (1 - beta_1) * (g - m), v = v + (1 - beta_2) * (g^2 - v),
    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t),
    p -= alpha * m / (sqrt(v) + epsilon).
    With ``v_hat`` (AMSGrad), v_hat = maximum(v_hat, v) takes the place of v
    in the last line.
    """
    if weight_decay != 0.0:
        params -= params * (learning_rate * weight_decay)
    # The step size is rounded to the buffers' dtype, as Keras does, so that
    # float32 parameters see float32 arithmetic only.
    alpha = params.dtype.type(
        float(learning_rate) * math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step))
    m += (1.0 - beta_1) * (grads - m)
    v += (1.0 - beta_2) * (grads * grads - v)
    second_moment = v
    if v_hat is not None:
        np.maximum(v_hat, v, out=v_hat)
        second_moment = v_hat
    params -= alpha * m / (np.sqrt(second_moment) + epsilon)


# ---------------------------------------------------------------------------
# Keras 3's other activations, losses and optimizers.
#
# Scalars stay Python floats, so that NumPy rounds them to the array's dtype
# (float32 arithmetic for float32 arrays), as the compiled kernels do.
# ---------------------------------------------------------------------------

# Keras's backend epsilon, the clip bound of probabilities before a log.
EPSILON = 1e-7

# SELU's fixed alpha and scale, the standard self-normalizing values.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

SQRT1_2 = 0.70710678118654752440084436210485
INV_SQRT_2PI = 0.39894228040143267793994605993438
SQRT_2_OVER_PI = 0.79788456080286535587989211986876
GELU_CUBIC = 0.044715

_erfc_objects = np.frompyfunc(math.erfc, 1, 1)


def _erfc(z):
    """Return erfc(z) in float64, elementwise, for an array of any shape."""
    return np.asarray(_erfc_objects(z), dtype=np.float64)


def _finite_part(x):
    """Return ``x`` with infinities replaced by 0, for formulas that give inf * 0."""
    return np.where(np.isinf(x), 0, x)


def _limit_at_inf(x, values, at_plus_inf, at_minus_inf):
    """Return ``values``, with ``at_plus_inf`` and ``at_minus_inf`` where x is +-inf."""
    values = np.where(np.isposinf(x), at_plus_inf, values)
    return np.where(np.isneginf(x), at_minus_inf, values).astype(x.dtype, copy=False)


def _leaky_relu(x, slope):
    return np.where(x > 0, x, slope * x)


def _leaky_relu_backward(x, y, dy, slope):
    return np.where(x > 0, dy, slope * dy)


def _elu(x, alpha):
    # exp of min(x, 0), so that the branch np.where discards cannot overflow.
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _elu_backward(x, y, dy, alpha):
    return np.where(x > 0, dy, dy * (alpha * np.exp(np.minimum(x, 0))))


def _selu(x, parameter):
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def _selu_backward(x, y, dy, parameter):
    slope = np.where(x > 0, SELU_SCALE,
                     (SELU_SCALE * SELU_ALPHA) * np.exp(np.minimum(x, 0)))
    return dy * slope.astype(dy.dtype, copy=False)


def _gelu(x, parameter):
    # 0.5 x (1 + erf(x / sqrt 2)) as 0.5 x erfc(-x / sqrt 2), in double.
    finite = _finite_part(x).astype(np.float64)
    y = 0.5 * finite * _erfc(-finite * SQRT1_2)
    return _limit_at_inf(x, y, np.inf, 0.0)


def _gelu_backward(x, y, dy, parameter):
    # gelu' = Phi(x) + x phi(x). For |x| above about 1e154, x * x overflows
    # and exp(-inf) = 0 gives the right limit, so the overflow is silenced.
    finite = _finite_part(x).astype(np.float64)
    with np.errstate(over="ignore"):
        density = np.exp(-0.5 * finite * finite) * INV_SQRT_2PI
    slope = 0.5 * _erfc(-finite * SQRT1_2) + finite * density
    return dy * _limit_at_inf(x, slope, 1.0, 0.0)


def _gelu_inner(x):
    # x * x * x overflows to inf for large |x|, and tanh(+-inf) = +-1 is right.
    with np.errstate(over="ignore"):
        return SQRT_2_OVER_PI * (x + GELU_CUBIC * (x * x * x))


def _gelu_approximate(x, parameter):
    # 0.5 x (1 + tanh(u)) as x * sigmoid(2u), which is equal and avoids the
    # cancellation in 1 + tanh(u) for negative x.
    finite = _finite_part(x)
    y = finite * _sigmoid(2 * _gelu_inner(finite))
    return _limit_at_inf(x, y, np.inf, 0.0)


def _gelu_approximate_backward(x, y, dy, parameter):
    # With s = sigmoid(2u): s + 2 x s (1 - s) u'(x). Where s (1 - s) rounds to
    # 0 the second term is skipped, because x u'(x) may overflow there.
    s = _sigmoid(2 * _gelu_inner(x))
    spread = s * (1 - s)
    with np.errstate(over="ignore", invalid="ignore"):
        inner_slope = SQRT_2_OVER_PI * (1 + (3 * GELU_CUBIC) * (x * x))
        curved = s + 2 * x * spread * inner_slope
    return dy * np.where(spread != 0, curved, s)


def _silu(x, parameter):
    return _limit_at_inf(x, _finite_part(x) * _sigmoid(x), np.inf, 0.0)


def _silu_backward(x, y, dy, parameter):
    s = _sigmoid(x)
    slope = s * (1 + _finite_part(x) * (1 - s))
    return dy * _limit_at_inf(x, slope, 1.0, 0.0)


def _softplus(x, parameter):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _softplus_backward(x, y, dy, parameter):
    return dy * _sigmoid(x)


def _softsign(x, parameter):
    finite = _finite_part(x)
    return _limit_at_inf(x, finite / (1 + np.abs(finite)), 1.0, -1.0)


def _softsign_backward(x, y, dy, parameter):
    # (1 + |x|)^2 overflows to inf for large |x|, and dy / inf = 0 is right.
    denominator = 1 + np.abs(x)
    with np.errstate(over="ignore"):
        return dy / (denominator * denominator)


def _hard_sigmoid(x, parameter):
    return np.clip(x + 3, 0, 6) / 6


def _hard_sigmoid_backward(x, y, dy, parameter):
    shifted = x + 3
    return np.where((shifted > 0) & (shifted < 6), dy / 6, 0)


def _exponential(x, parameter):
    return np.exp(x)


def _exponential_backward(x, y, dy, parameter):
    return dy * y


def _log_softmax(z, parameter):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _log_softmax_backward(x, y, dy, parameter):
    return dy - np.exp(y) * dy.sum(axis=-1, keepdims=True)


_EXTRA_FORWARD = {
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "selu": _selu,
    "gelu": _gelu,
    "gelu_approximate": _gelu_approximate,
    "silu": _silu,
    "softplus": _softplus,
    "softsign": _softsign,
    "hard_sigmoid": _hard_sigmoid,
    "exponential": _exponential,
    "log_softmax": _log_softmax,
}

_EXTRA_BACKWARD = {
    "leaky_relu": _leaky_relu_backward,
    "elu": _elu_backward,
    "selu": _selu_backward,
    "gelu": _gelu_backward,
    "gelu_approximate": _gelu_approximate_backward,
    "silu": _silu_backward,
    "softplus": _softplus_backward,
    "softsign": _softsign_backward,
    "hard_sigmoid": _hard_sigmoid_backward,
    "exponential": _exponential_backward,
    "log_softmax": _log_softmax_backward,
}


def _finish_elementwise_loss(per_element, element_grad, factor, sample_weight,
                             loss, loss_out, grad_out):
    """Store the per-sample ``loss`` and grad = element_grad * factor * w."""
    loss = _store(loss.astype(per_element.dtype, copy=False), loss_out)
    if grad_out is not None:
        g = element_grad * factor
        if sample_weight is not None:
            g = g * sample_weight[:, None]
        grad_out[...] = g
    return loss, grad_out


def mean_absolute_error(pred, target, sample_weight=None, grad_scale=1.0,
                        loss_out=None, grad_out=None, n_threads=None):
    """Per-sample mean absolute error over the last axis, and its gradient.

    loss[i] = mean_j |pred_ij - target_ij|;
    grad[i] = sign(pred_i - target_i) * (grad_scale / n_outputs) * w_i, with
    sign(0) = 0. Returns (loss, grad_out).
    """
    diff = pred - target
    per_element = np.abs(diff)
    factor = grad_scale / pred.shape[-1]
    return _finish_elementwise_loss(per_element, np.sign(diff), factor, sample_weight,
                                    per_element.mean(axis=-1), loss_out, grad_out)


def huber(pred, target, delta=1.0, sample_weight=None, grad_scale=1.0,
          loss_out=None, grad_out=None, n_threads=None):
    """Per-sample Huber loss over the last axis, and its gradient.

    With e = pred - target: 0.5 * e^2 where |e| <= delta, else
    delta * |e| - 0.5 * delta^2, averaged over the last axis. The gradient
    is e where |e| <= delta, else delta * sign(e), times
    (grad_scale / n_outputs) * w_i. Returns (loss, grad_out).
    """
    error = pred - target
    abs_error = np.abs(error)
    quadratic = abs_error <= delta
    per_element = np.where(quadratic, 0.5 * (error * error),
                           delta * abs_error - 0.5 * delta * delta)
    element_grad = np.where(quadratic, error, delta * np.sign(error))
    factor = grad_scale / pred.shape[-1]
    return _finish_elementwise_loss(per_element, element_grad, factor, sample_weight,
                                    per_element.mean(axis=-1), loss_out, grad_out)


def binary_cross_entropy(pred, target, from_logits=False, sample_weight=None,
                         grad_scale=1.0, loss_out=None, grad_out=None, n_threads=None):
    """Per-sample binary cross-entropy over the last axis, and its gradient.

    From logits z (``from_logits=True``), each element's loss is the stable
    form max(z, 0) - z t + log1p(exp(-|z|)) and its gradient sigmoid(z) - t.
    For z = +inf the loss is z (1 - t) and for z = -inf it is -z t, both 0
    when the label agrees, where the formula would give inf - inf.

    From probabilities p, clipped to [EPSILON, 1 - EPSILON] as Keras does,
    the loss is -(t log(p) + (1 - t) log(1 - p)) and the gradient
    (1 - t) / (1 - p) - t / p, or 0 where p lies outside the clip range.

    Losses are averaged over the last axis, and the gradients are scaled by
    (grad_scale / n_outputs) * w_i. Returns (loss, grad_out).
    """
    t = target
    if from_logits:
        z = pred
        finite = _finite_part(z)
        per_element = np.maximum(finite, 0) - finite * t + np.log1p(np.exp(-np.abs(z)))
        with np.errstate(invalid="ignore"):
            at_plus_inf = np.where(1 - t == 0, 0, z * (1 - t))
            at_minus_inf = np.where(t == 0, 0, -z * t)
        per_element = np.where(np.isposinf(z), at_plus_inf, per_element)
        per_element = np.where(np.isneginf(z), at_minus_inf, per_element)
        per_element = per_element.astype(z.dtype, copy=False)
        element_grad = _sigmoid(z) - t
    else:
        low = EPSILON
        high = 1 - EPSILON
        p = np.clip(pred, low, high)
        per_element = -(t * np.log(p) + (1 - t) * np.log(1 - p))
        clipped = (pred < low) | (pred > high)
        element_grad = np.where(clipped, 0, (1 - t) / (1 - p) - t / p)
    factor = grad_scale / pred.shape[-1]
    return _finish_elementwise_loss(per_element, element_grad, factor, sample_weight,
                                    per_element.mean(axis=-1), loss_out, grad_out)


def kl_divergence(pred, target, sample_weight=None, grad_scale=1.0, loss_out=None,
                  grad_out=None, n_threads=None):
    """Per-sample Kullback-Leibler divergence over the last axis, and its gradient.

    As in Keras, t = clip(target, EPSILON, 1) and p = clip(pred, EPSILON, 1),
    and loss[i] = sum_j t_ij log(t_ij / p_ij). The gradient is -t / p, or 0
    where pred lies outside [EPSILON, 1], times grad_scale * w_i.
    Returns (loss, grad_out).
    """
    t = np.clip(target, EPSILON, 1)
    p = np.clip(pred, EPSILON, 1)
    per_element = t * np.log(t / p)
    clipped = (pred < EPSILON) | (pred > 1)
    element_grad = np.where(clipped, 0, -t / p)
    return _finish_elementwise_loss(per_element, element_grad, grad_scale,
                                    sample_weight, per_element.sum(axis=-1), loss_out,
                                    grad_out)


def rmsprop_update(params, grads, velocity, momentum_buffer, average_grad,
                   learning_rate, rho, momentum, epsilon, n_threads=None):
    """RMSprop in place over flat buffers, with Keras 3's form of the update.

    v = rho * v + (1 - rho) * g^2. Centered (``average_grad`` given):
    a = rho * a + (1 - rho) * g and d = v - a^2 + epsilon, else
    d = v + epsilon. Then increment = lr * g / sqrt(d), and with
    momentum > 0: b = momentum * b + increment, p -= b; else p -= increment.
    """
    velocity[...] = rho * velocity + (1 - rho) * grads * grads
    if average_grad is not None:
        average_grad[...] = rho * average_grad + (1 - rho) * grads
        denominator = velocity - average_grad * average_grad + epsilon
    else:
        denominator = velocity + epsilon
    increment = learning_rate * grads / np.sqrt(denominator)
    if momentum > 0:
        momentum_buffer[...] = momentum * momentum_buffer + increment
        params -= momentum_buffer
    else:
        params -= increment


def adagrad_update(params, grads, accumulator, learning_rate, epsilon, n_threads=None):
    """Adagrad in place over flat buffers, with Keras 3's form of the update.

    accumulator += g^2, then p -= lr * g / sqrt(accumulator + epsilon).
    """
    accumulator += grads * grads
    params -= learning_rate * grads / np.sqrt(accumulator + epsilon)


# Nadam's momentum schedule in Keras 3: u_t = beta_1 * (1 - 0.5 * 0.96^t).
# (tf.keras 2 used 0.96^(0.004 t), so its Nadam steps differ from these.)
NADAM_DECAY_BASE = 0.96


def nadam_momentum(beta_1, step):
    """Return Nadam's momentum coefficient u_t for the 1-based ``step``."""
    return beta_1 * (1.0 - 0.5 * NADAM_DECAY_BASE ** step)


def nadam_update(params, grads, m, v, learning_rate, beta_1, beta_2, epsilon, step,
                 u_product, n_threads=None):
    """Nadam in place over flat buffers; return the new momentum product.

    For step t (1-based), with u_t from :func:`nadam_momentum` and
    ``u_product`` = u_1 * ... * u_(t-1) (1.0 at the first step):
    P_t = u_product * u_t, P_(t+1) = P_t * u_(t+1),
    m = m + (g - m) * (1 - beta_1), v = v + (g^2 - v) * (1 - beta_2),
    m_hat = u_(t+1) * m / (1 - P_(t+1)) + (1 - u_t) * g / (1 - P_t),
    v_hat = v / (1 - beta_2^t),
    p -= m_hat * lr / (sqrt(v_hat) + epsilon).
    Returns P_t, the ``u_product`` of the next step.
    """
    u_t = nadam_momentum(beta_1, step)
    u_next = nadam_momentum(beta_1, step + 1)
    product = u_product * u_t
    product_next = product * u_next
    m += (grads - m) * (1 - beta_1)
    v += (grads * grads - v) * (1 - beta_2)
    m_hat = u_next * m / (1 - product_next) + (1 - u_t) * grads / (1 - product)
    v_hat = v / (1 - beta_2 ** step)
    params -= m_hat * learning_rate / (np.sqrt(v_hat) + epsilon)
    return product


def gather_rows(x, indices, out, n_threads=None):
    """out[i] = x[indices[i]] for a 2-D ``x``, converted to ``out``'s dtype."""
    out[...] = x[indices]
    return out


# ---------------------------------------------------------------------------
# Convolution, pooling and normalization (channels last).
#
# Images are (batch, height, width, channels) and conv kernels (kernel_h,
# kernel_w, in_channels, filters). Geometry is explicit: strides, dilation
# and pool sizes are (row, column) pairs, and padding is ((top, bottom),
# (left, right)) in input pixels.
# ---------------------------------------------------------------------------


def _conv_patches(x, kernel_h, kernel_w, strides, padding, dilation):
    """Return the lowered input, (batch, out_h, out_w, kernel_h, kernel_w, channels).

    Entry [b, i, j, p, q] is the zero-padded input pixel
    (i * stride_h + p * dilation_h, j * stride_w + q * dilation_w).
    """
    (top, bottom), (left, right) = padding
    stride_h, stride_w = strides
    dilation_h, dilation_w = dilation
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h = (padded.shape[1] - (kernel_h - 1) * dilation_h - 1) // stride_h + 1
    out_w = (padded.shape[2] - (kernel_w - 1) * dilation_w - 1) // stride_w + 1
    patches = np.empty((x.shape[0], out_h, out_w, kernel_h, kernel_w, x.shape[3]),
                       dtype=x.dtype)
    for p in range(kernel_h):
        row_start = p * dilation_h
        rows = slice(row_start, row_start + (out_h - 1) * stride_h + 1, stride_h)
        for q in range(kernel_w):
            col_start = q * dilation_w
            cols = slice(col_start, col_start + (out_w - 1) * stride_w + 1, stride_w)
            patches[:, :, :, p, q, :] = padded[:, rows, cols, :]
    return patches


def conv2d_forward(x, kernel, bias, activation, strides, padding, dilation, out=None,
                   n_threads=None):
    """y = activation(conv2d(x, kernel) + bias), a cross-correlation as in Keras.

    ``bias`` may be None. ``activation`` is "linear", "relu", "sigmoid" or
    "tanh", as in the compiled kernel; apply any other to the output.
    """
    if activation not in ("linear", "relu", "sigmoid", "tanh"):
        raise ValueError(f"conv2d_forward: activation {activation!r} is not fused into "
                         f"the convolution; use 'linear' and apply {activation!r} to "
                         "the output")
    patches = _conv_patches(x, kernel.shape[0], kernel.shape[1], strides, padding,
                            dilation)
    batch, out_h, out_w = patches.shape[:3]
    filters = kernel.shape[3]
    z = patches.reshape(batch * out_h * out_w, -1) @ kernel.reshape(-1, filters)
    if bias is not None:
        z = z + bias
    y = activation_forward(activation, z).reshape(batch, out_h, out_w, filters)
    return _store(y, out)


def conv2d_backward(x, kernel, y, dy, activation, strides, padding, dilation,
                    kernel_grad_out, bias_grad_out, dx_out=None, beta=0.0,
                    n_threads=None):
    """Backward pass of :func:`conv2d_forward`.

    With dz = dy * activation'(z): kernel_grad_out = the kernel gradient +
    beta * kernel_grad_out, bias_grad_out = dz summed over all pixels +
    beta * bias_grad_out (skipped when None), dx_out = the input gradient
    (computed only when given). Returns ``dx_out``.
    """
    kernel_h, kernel_w, _, filters = kernel.shape
    y2 = None if y is None else y.reshape(-1, filters)
    dz = activation_backward(activation, None, y2, dy.reshape(-1, filters))
    patches = _conv_patches(x, kernel_h, kernel_w, strides, padding, dilation)
    kernel_grad = (patches.reshape(dz.shape[0], -1).T @ dz).reshape(kernel.shape)
    if beta != 0.0:
        kernel_grad = kernel_grad + beta * kernel_grad_out
    kernel_grad_out[...] = kernel_grad
    if bias_grad_out is not None:
        bias_grad = dz.sum(axis=0)
        if beta != 0.0:
            bias_grad = bias_grad + beta * bias_grad_out
        bias_grad_out[...] = bias_grad
    if dx_out is not None:
        # Send each lowered entry's gradient back to the padded pixel it came
        # from, then drop the padding.
        (top, bottom), (left, right) = padding
        stride_h, stride_w = strides
        dilation_h, dilation_w = dilation
        dpatches = (dz @ kernel.reshape(-1, filters).T).reshape(patches.shape)
        _, out_h, out_w = patches.shape[:3]
        batch, height, width, channels = x.shape
        padded_shape = (batch, height + top + bottom, width + left + right, channels)
        dpadded = np.zeros(padded_shape, dtype=x.dtype)
        for p in range(kernel_h):
            row_start = p * dilation_h
            rows = slice(row_start, row_start + (out_h - 1) * stride_h + 1, stride_h)
            for q in range(kernel_w):
                col_start = q * dilation_w
                cols = slice(col_start, col_start + (out_w - 1) * stride_w + 1,
                             stride_w)
                dpadded[:, rows, cols, :] += dpatches[:, :, :, p, q, :]
        dx_out[...] = dpadded[:, top:top + height, left:left + width, :]
    return dx_out


def _pool_geometry(x_shape, pool_size, strides, padding):
    """Return (out_h, out_w) and, per window offset, the input rows and columns.

    rows[p] holds the input row of offset p for each output row, and
    row_valid[p] whether it lies inside the input; likewise for columns.
    """
    _, height, width, _ = x_shape
    (pool_h, pool_w), (stride_h, stride_w) = pool_size, strides
    (top, bottom), (left, right) = padding
    out_h = (height + top + bottom - pool_h) // stride_h + 1
    out_w = (width + left + right - pool_w) // stride_w + 1
    rows = [np.arange(out_h) * stride_h - top + p for p in range(pool_h)]
    cols = [np.arange(out_w) * stride_w - left + q for q in range(pool_w)]
    row_valid = [(r >= 0) & (r < height) for r in rows]
    col_valid = [(c >= 0) & (c < width) for c in cols]
    return (out_h, out_w), rows, cols, row_valid, col_valid


def max_pool2d_forward(x, pool_size, strides, padding, out=None, argmax_out=None,
                       n_threads=None):
    """y = the maximum of x over the input pixels of each window.

    ``argmax_out`` (int32, y's shape) receives the index of each maximum
    within its image, (row * width + column) * channels + channel: the first
    maximum in row-major window order, or -1 for a window with no pixel.
    """
    batch, height, width, channels = x.shape
    (out_h, out_w), rows, cols, row_valid, col_valid = _pool_geometry(
        x.shape, pool_size, strides, padding)
    y = np.full((batch, out_h, out_w, channels), -np.inf, dtype=x.dtype)
    argmax = np.full(y.shape, -1, dtype=np.int32)
    seen = np.zeros(y.shape, dtype=bool)
    for r, r_ok in zip(rows, row_valid):
        for c, c_ok in zip(cols, col_valid):
            valid = (r_ok[:, None] & c_ok[None, :])[None, :, :, None]
            rc = np.clip(r, 0, height - 1)
            cc = np.clip(c, 0, width - 1)
            values = x[:, rc][:, :, cc]
            index = ((rc[:, None] * width + cc[None, :]) * channels)[:, :, None]
            index = index + np.arange(channels)
            # The first pixel of a window is taken; later ones only when larger.
            take = valid & (~seen | (values > y))
            y = np.where(take, values, y)
            argmax = np.where(take, index[None], argmax)
            seen |= valid
    if argmax_out is not None:
        argmax_out[...] = argmax
    return _store(y, out)


def max_pool2d_backward(dy, argmax, pool_size, strides, padding, dx_out,
                        n_threads=None):
    """dx_out = 0, then each dy element added at the input element ``argmax`` names."""
    batch = dx_out.shape[0]
    image_size = int(np.prod(dx_out.shape[1:]))
    flat = np.zeros(batch * image_size, dtype=dx_out.dtype)
    images = np.arange(batch).reshape(batch, 1, 1, 1) * image_size
    valid = argmax >= 0
    np.add.at(flat, (images + argmax)[valid], dy[valid])
    dx_out[...] = flat.reshape(dx_out.shape)
    return dx_out


def avg_pool2d_forward(x, pool_size, strides, padding, out=None, n_threads=None):
    """y = the mean of x over the input pixels of each window (0 for none)."""
    batch, height, width, channels = x.shape
    (out_h, out_w), rows, cols, row_valid, col_valid = _pool_geometry(
        x.shape, pool_size, strides, padding)
    total = np.zeros((batch, out_h, out_w, channels), dtype=x.dtype)
    for r, r_ok in zip(rows, row_valid):
        for c, c_ok in zip(cols, col_valid):
            valid = (r_ok[:, None] & c_ok[None, :])[None, :, :, None]
            values = x[:, np.clip(r, 0, height - 1)][:, :, np.clip(c, 0, width - 1)]
            total += np.where(valid, values, 0).astype(x.dtype, copy=False)
    count = sum(row_valid).astype(x.dtype)[:, None] * sum(col_valid).astype(x.dtype)
    count = count[None, :, :, None]
    y = np.where(count > 0, total / np.maximum(count, 1), 0)
    return _store(y.astype(x.dtype, copy=False), out)


def avg_pool2d_backward(dy, pool_size, strides, padding, dx_out, n_threads=None):
    """dx_out = the gradient of sum(dy * avg_pool2d(x)) with respect to x."""
    _, rows, cols, row_valid, col_valid = _pool_geometry(
        dx_out.shape, pool_size, strides, padding)
    count = sum(row_valid).astype(dy.dtype)[:, None] * sum(col_valid).astype(dy.dtype)
    share = dy / np.maximum(count, 1)[None, :, :, None]
    dx = np.zeros(dx_out.shape, dtype=dx_out.dtype)
    for r, r_ok in zip(rows, row_valid):
        for c, c_ok in zip(cols, col_valid):
            # Windows whose pixel at this offset lies inside the input.
            # At a fixed offset, distinct windows read distinct pixels, so the
            # fancy-indexed += adds every share.
            i = np.nonzero(r_ok)[0]
            j = np.nonzero(c_ok)[0]
            dx[:, r[i][:, None], c[j][None, :]] += share[:, i][:, :, j]
    dx_out[...] = dx
    return dx_out


def _normalize(x, mean, var, gamma, beta, epsilon):
    """Return gamma * (x - mean) / sqrt(var + epsilon) + beta, in float64."""
    y = (x - mean) / np.sqrt(var + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def _normalize_backward(x, mean, var, gamma, epsilon, dy, axis):
    """Return (dx, gamma_grad, beta_grad) in float64 for statistics over ``axis``."""
    inv_std = 1.0 / np.sqrt(var + epsilon)
    x_hat = (x - mean) * inv_std
    gamma_grad = (dy * x_hat).sum(axis=0)
    beta_grad = dy.sum(axis=0)
    g = dy if gamma is None else dy * gamma
    dx = inv_std * (g - g.mean(axis=axis, keepdims=True)
                    - x_hat * (g * x_hat).mean(axis=axis, keepdims=True))
    return dx, gamma_grad, beta_grad


def _as64(array):
    return None if array is None else np.asarray(array, dtype=np.float64)


def batch_norm_forward(x, gamma, beta, epsilon, out=None, mean_out=None, var_out=None,
                       n_threads=None):
    """Normalize each column of x (rows, channels) with its mean and biased variance.

    Returns (y, mean, var), each written to its ``*_out`` when given.
    """
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    var = ((x64 - mean) ** 2).mean(axis=0)
    y = _normalize(x64, mean, var, _as64(gamma), _as64(beta), epsilon)
    return (_store(y.astype(x.dtype), out), _store(mean.astype(x.dtype), mean_out),
            _store(var.astype(x.dtype), var_out))


def batch_norm_inference(x, mean, var, gamma, beta, epsilon, out=None, n_threads=None):
    """y = gamma * (x - mean) / sqrt(var + epsilon) + beta with given statistics."""
    y = _normalize(x.astype(np.float64), _as64(mean), _as64(var), _as64(gamma),
                   _as64(beta), epsilon)
    return _store(y.astype(x.dtype), out)


def batch_norm_backward(x, mean, var, gamma, epsilon, dy, dx_out=None,
                        gamma_grad_out=None, beta_grad_out=None, n_threads=None):
    """Backward pass of :func:`batch_norm_forward`, given its statistics.

    Writes each of dx_out, gamma_grad_out and beta_grad_out that is given,
    and returns ``dx_out``.
    """
    dx, gamma_grad, beta_grad = _normalize_backward(
        x.astype(np.float64), _as64(mean), _as64(var), _as64(gamma), epsilon,
        dy.astype(np.float64), axis=0)
    for result, target in ((dx, dx_out), (gamma_grad, gamma_grad_out),
                           (beta_grad, beta_grad_out)):
        if target is not None:
            target[...] = result
    return dx_out


def layer_norm_forward(x, gamma, beta, epsilon, out=None, mean_out=None, var_out=None,
                       n_threads=None):
    """Normalize each row of x (rows, channels) with its mean and biased variance.

    Returns (y, mean, var), the statistics of shape (rows,).
    """
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=1, keepdims=True)
    y = _normalize(x64, mean, var, _as64(gamma), _as64(beta), epsilon)
    return (_store(y.astype(x.dtype), out),
            _store(mean[:, 0].astype(x.dtype), mean_out),
            _store(var[:, 0].astype(x.dtype), var_out))


def layer_norm_backward(x, mean, var, gamma, epsilon, dy, dx_out=None,
                        gamma_grad_out=None, beta_grad_out=None, n_threads=None):
    """Backward pass of :func:`layer_norm_forward`, given its row statistics.

    Writes each of dx_out, gamma_grad_out and beta_grad_out that is given,
    and returns ``dx_out``.
    """
    dx, gamma_grad, beta_grad = _normalize_backward(
        x.astype(np.float64), _as64(mean)[:, None], _as64(var)[:, None], _as64(gamma),
        epsilon, dy.astype(np.float64), axis=1)
    for result, target in ((dx, dx_out), (gamma_grad, gamma_grad_out),
                           (beta_grad, beta_grad_out)):
        if target is not None:
            target[...] = result
    return dx_out
