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


def max_pool2d_backward(dy, argmax, pool_size, strides, padding, dx_out, n_threads=None):
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
    y = np.where(count[None, :, :, None] > 0, total / np.maximum(count, 1)[None, :, :, None],
                 0)
    return _store(y.astype(x.dtype, copy=False), out)


def avg_pool2d_backward(dy, pool_size, strides, padding, dx_out, n_threads=None):
    """dx_out = the gradient of sum(dy * avg_pool2d(x)) with respect to x."""
    batch, height, width, channels = dx_out.shape
    (out_h, out_w), rows, cols, row_valid, col_valid = _pool_geometry(
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


def batch_norm_backward(x, mean, var, gamma, epsilon, dy, dx_out=None, gamma_grad_out=None,
                        beta_grad_out=None, n_threads=None):
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
    return (_store(y.astype(x.dtype), out), _store(mean[:, 0].astype(x.dtype), mean_out),
            _store(var[:, 0].astype(x.dtype), var_out))


def layer_norm_backward(x, mean, var, gamma, epsilon, dy, dx_out=None, gamma_grad_out=None,
                        beta_grad_out=None, n_threads=None):
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
