"""Reference kernels: the plainest correct NumPy formula for every kernel.

Each function has the same signature and contract as its compiled twin in
:mod:`nnfast._compiled`, so the two can be swapped with
``nnfast.set_backend("reference")`` and compared in tests. Outputs go to the
``*_out`` array when one is given (and it is returned), else to a new array.
``n_threads`` is accepted and ignored, because NumPy chooses its own threads.

Shapes use the GEMM names: ``x`` is (n_samples, n_in), ``kernel`` is
(n_in, n_out), and ``y``, ``dy`` are (n_samples, n_out).
"""

import numpy as np

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")

# Activations whose derivative is a function of the output alone, so the
# backward pass needs no saved input.
OUTPUT_DERIVATIVE = frozenset(ACTIVATIONS)


def _store(result, out):
    if out is None:
        return result
    out[...] = result
    return out


def _check_activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}"
        )


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


def activation_forward(name, x, out=None, n_threads=None):
    """y = activation(x), elementwise, or over the last axis for softmax."""
    _check_activation(name)
    if name == "linear":
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


def activation_backward(name, x, y, dy, out=None, n_threads=None):
    """dx = dy * activation'(x), given the saved input ``x`` or output ``y``.

    Every activation here needs only ``y``; ``x`` may be None.
    """
    _check_activation(name)
    if name == "linear":
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
                n_threads=None):
    """Adam in place over flat buffers, with Keras's form of the update.

    For step t (1-based):
    m = m + (1 - beta_1) * (g - m), v = v + (1 - beta_2) * (g^2 - v),
    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t),
    p -= alpha * m / (sqrt(v) + epsilon).
    """
    alpha = learning_rate * np.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)
    m += (1.0 - beta_1) * (grads - m)
    v += (1.0 - beta_2) * (grads * grads - v)
    params -= (alpha * m / (np.sqrt(v) + epsilon)).astype(params.dtype, copy=False)


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
        rows = slice(p * dilation_h, p * dilation_h + (out_h - 1) * stride_h + 1, stride_h)
        for q in range(kernel_w):
            cols = slice(q * dilation_w, q * dilation_w + (out_w - 1) * stride_w + 1,
                         stride_w)
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
                    kernel_grad_out, bias_grad_out, dx_out=None, beta=0.0, n_threads=None):
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
        dpadded = np.zeros((batch, height + top + bottom, width + left + right, channels),
                           dtype=x.dtype)
        for p in range(kernel_h):
            rows = slice(p * dilation_h, p * dilation_h + (out_h - 1) * stride_h + 1,
                         stride_h)
            for q in range(kernel_w):
                cols = slice(q * dilation_w, q * dilation_w + (out_w - 1) * stride_w + 1,
                             stride_w)
                dpadded[:, rows, cols, :] += dpatches[:, :, :, p, q, :]
        dx_out[...] = dpadded[:, top:top + height, left:left + width, :]
    return dx_out

