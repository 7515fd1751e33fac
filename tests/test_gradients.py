"""Backward passes checked against finite differences, then compiled against reference.

First every backward pass of :mod:`nnfast._reference` is checked in float64
against 4th-order central finite differences of a scalar function of its
inputs. Then each compiled twin is checked against the reference on the
same inputs, so the compiled gradients are anchored to the definition of a
derivative and not only to another implementation.
"""

import numpy as np
import pytest
from _tolerances import eps, tolerance

import nnfast
from nnfast import _activations
from nnfast import _losses
from nnfast import _reference as reference
from nnfast import layers, losses

# The activations the fused dense kernels apply, and all activations.
ACTIVATIONS = list(reference.ACTIVATIONS)
ALL_ACTIVATIONS = list(reference.ALL_ACTIVATIONS)

# Points where an activation's first or second derivative jumps. A
# 4th-order difference across such a point is off by far more than FD_TOL,
# so inputs are kept at least 0.1 away from them.
KINKS = {
    "relu": (0.0,),
    "leaky_relu": (0.0,),
    "elu": (0.0,),
    "selu": (0.0,),
    "softsign": (0.0,),
    "hard_sigmoid": (-3.0, 3.0),
}
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]

# Finite-difference step. The 4th-order formula has a truncation error of
# about h^4 / 30 times the fifth derivative (3e-14 for h = 1e-3 and
# derivatives of order one) and a rounding error of about 1.5 eps |f| / h
# (3e-13 |f| in float64). Both lie well below FD_TOL, while a wrong
# gradient (a missing factor or term) is off by order one.
STEP = 1e-3
FD_TOL = {"rtol": 1e-7, "atol": 1e-8}


def numerical_gradient(function, array, step=STEP):
    """Return d function() / d array by 4th-order central differences.

    ``function`` takes no arguments and reads ``array``, which is modified in
    place one element at a time and restored afterwards.
    """
    grad = np.empty_like(array)
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array), "array must be contiguous"
    for i in range(flat.size):
        saved = flat[i]
        values = {}
        for k in (2, 1, -1, -2):
            flat[i] = saved + k * step
            values[k] = function()
        flat[i] = saved
        grad.flat[i] = (-values[2] + 8 * values[1] - 8 * values[-1] + values[-2]) / (12 * step)
    return grad


def activation_inputs(name, shape, rng):
    """Return float64 inputs at least 0.1 (100 steps) from the activation's kinks."""
    x = 2 * rng.standard_normal(shape)
    for kink in KINKS.get(name, ()):
        offset = x - kink
        x = kink + np.where(offset >= 0, 1, -1) * np.maximum(np.abs(offset), 0.1)
    return x


# ---------------------------------------------------------------------------
# Reference backward passes against finite differences.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (4, 1), (2, 7)], ids=str)
@pytest.mark.parametrize("name", ALL_ACTIVATIONS)
def test_reference_activation_gradient(name, shape, rng):
    # With L(x) = sum(activation(x) * r), dL/dx = activation_backward(dy=r).
    x = activation_inputs(name, shape, rng)
    r = rng.standard_normal(shape)

    def loss():
        return float(np.sum(reference.activation_forward(name, x) * r))

    expected = numerical_gradient(loss, x)
    y = reference.activation_forward(name, x)
    actual = reference.activation_backward(name, x, y, r)
    np.testing.assert_allclose(actual, expected, **FD_TOL)


LABEL_KINDS = ["sparse", "onehot", "soft"]


def make_labels(kind, n_samples, n_classes, rng):
    indices = rng.integers(0, n_classes, n_samples)
    if kind == "sparse":
        return indices
    if kind == "onehot":
        return np.eye(n_classes)[indices]
    return rng.random((n_samples, n_classes))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_reference_cross_entropy_gradient(kind, weighted, rng):
    # grad[i] is grad_scale * w_i * d loss[i] / d logits[i], so it is the
    # gradient of L = grad_scale * sum_i w_i loss[i].
    logits = 2 * rng.standard_normal((5, 4))
    labels = make_labels(kind, 5, 4, rng)
    weights = rng.random(5) + 0.5 if weighted else None
    grad_scale = 0.7
    scale = grad_scale * (weights if weighted else np.ones(5))

    def loss():
        per_sample, _ = reference.softmax_cross_entropy(logits, labels)
        return float(np.sum(scale * per_sample))

    expected = numerical_gradient(loss, logits)
    actual = np.empty_like(logits)
    reference.softmax_cross_entropy(logits, labels, sample_weight=weights,
                                    grad_scale=grad_scale, grad_out=actual)
    np.testing.assert_allclose(actual, expected, **FD_TOL)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_reference_squared_error_gradient(weighted, rng):
    pred = rng.standard_normal((4, 3))
    target = rng.standard_normal((4, 3))
    weights = rng.random(4) + 0.5 if weighted else None
    grad_scale = 1.3
    scale = grad_scale * (weights if weighted else np.ones(4))

    def loss():
        per_sample, _ = reference.mean_squared_error(pred, target)
        return float(np.sum(scale * per_sample))

    expected = numerical_gradient(loss, pred)
    actual = np.empty_like(pred)
    reference.mean_squared_error(pred, target, sample_weight=weights,
                                 grad_scale=grad_scale, grad_out=actual)
    np.testing.assert_allclose(actual, expected, **FD_TOL)


def dense_problem(name, use_bias, rng, n_samples=5, n_in=4, n_out=3):
    """Return (x, kernel, bias, r) for a Dense layer with preactivations away from 0.

    relu and others have kinks (see KINKS), so inputs are drawn again until
    every preactivation is at least 0.05 from them, which stays true under the
    finite-difference steps (each moves a preactivation by at most 2 * STEP
    times the largest |x| or |kernel| entry, below 0.05 here).
    """
    for _ in range(1000):
        x = rng.standard_normal((n_samples, n_in))
        kernel = rng.standard_normal((n_in, n_out))
        bias = rng.standard_normal(n_out) if use_bias else None
        z = x @ kernel + (bias if use_bias else 0)
        distance = min((np.abs(z - kink).min() for kink in KINKS.get(name, ())),
                       default=np.inf)
        if distance > 0.05:
            return x, kernel, bias, rng.standard_normal((n_samples, n_out))
    raise RuntimeError("no Dense inputs with preactivations away from 0 in 1000 draws")


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("name", ALL_ACTIVATIONS)
def test_reference_dense_gradients(name, use_bias, rng):
    # With L = sum(dense_forward(x, kernel, bias) * r), dense_backward with
    # dy = r returns dL/dkernel, dL/dbias and dL/dx.
    x, kernel, bias, r = dense_problem(name, use_bias, rng)

    def loss():
        return float(np.sum(reference.dense_forward(x, kernel, bias, name) * r))

    preact = np.empty((5, 3))
    y = reference.dense_forward(x, kernel, bias, name, preact_out=preact)
    kernel_grad = np.empty_like(kernel)
    bias_grad = np.empty(3) if use_bias else None
    dx = np.empty_like(x)
    reference.dense_backward(x, kernel, y, r, name, kernel_grad, bias_grad, dx_out=dx,
                             preact=preact)

    np.testing.assert_allclose(kernel_grad, numerical_gradient(loss, kernel), **FD_TOL)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), **FD_TOL)
    if use_bias:
        np.testing.assert_allclose(bias_grad, numerical_gradient(loss, bias), **FD_TOL)


# ---------------------------------------------------------------------------
# Compiled backward passes against the reference.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ALL_ACTIVATIONS)
def test_compiled_activation_gradient(name, dtype, rng):
    x = activation_inputs(name, (6, 5), rng).astype(dtype)
    r = rng.standard_normal((6, 5)).astype(dtype)
    y = reference.activation_forward(name, x)
    actual = _activations.activation_backward(name, x, y, r)
    expected = reference.activation_backward(name, x, y, r)
    # The dx of softmax, y (r - sum(r y)), and of log_softmax,
    # r - exp(y) sum(r), cancel, so the atol follows the error of that sum,
    # n_cols * eps * max|r|.
    tol = dict(tolerance(dtype))
    tol["atol"] = max(tol["atol"], 4 * 5 * eps(dtype) * float(np.abs(r).max()))
    np.testing.assert_allclose(actual, expected, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_compiled_cross_entropy_gradient(kind, weighted, dtype, rng):
    logits = (2 * rng.standard_normal((7, 4))).astype(dtype)
    labels = make_labels(kind, 7, 4, rng)
    if labels.ndim == 2:
        labels = labels.astype(dtype)
    weights = (rng.random(7) + 0.5).astype(dtype) if weighted else None
    actual = np.empty_like(logits)
    expected = np.empty_like(logits)
    _losses.softmax_cross_entropy(logits, labels, sample_weight=weights, grad_scale=0.7,
                                  grad_out=actual)
    reference.softmax_cross_entropy(logits, labels, sample_weight=weights, grad_scale=0.7,
                                    grad_out=expected)
    # The reference's probabilities carry a relative error of a few eps times
    # the logits' spread (about 10 for these 2 * N(0, 1) logits), hence the
    # atol of 64 eps.
    tol = dict(tolerance(dtype))
    tol["atol"] = max(tol["atol"], 64 * eps(dtype))
    np.testing.assert_allclose(actual, expected, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_squared_error_gradient(dtype, rng):
    pred = rng.standard_normal((4, 3)).astype(dtype)
    target = rng.standard_normal((4, 3)).astype(dtype)
    weights = (rng.random(4) + 0.5).astype(dtype)
    actual = np.empty_like(pred)
    expected = np.empty_like(pred)
    _losses.mean_squared_error(pred, target, sample_weight=weights, grad_scale=1.3,
                               grad_out=actual)
    reference.mean_squared_error(pred, target, sample_weight=weights, grad_scale=1.3,
                                 grad_out=expected)
    # Same operations in the same order as the reference.
    np.testing.assert_array_equal(actual, expected)


def dense_atol(dtype, depth, *magnitudes):
    """Return an atol for a GEMM result with ``depth`` terms per dot product.

    The rounding error of a sum of ``depth`` products is at most about
    depth * eps times the sum of their absolute values, which is below
    depth times the product of the largest entries, ``magnitudes``. Both
    paths carry such an error, and the activation adds a few eps more.
    """
    return 4 * (depth + 4) * eps(dtype) * float(np.prod(magnitudes))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_compiled_dense_matches_reference(name, use_bias, dtype, rng):
    dense = pytest.importorskip("nnfast._dense")
    n_samples, n_in, n_out = 9, 13, 6
    x, kernel, bias, dy = dense_problem(name, use_bias, rng, n_samples, n_in, n_out)
    x, kernel, dy = x.astype(dtype), kernel.astype(dtype), dy.astype(dtype)
    if use_bias:
        bias = bias.astype(dtype)
    magnitude_x = np.abs(x).max()
    magnitude_kernel = np.abs(kernel).max()
    magnitude_dy = np.abs(dy).max()

    # Forward: y and the preactivations.
    preact = np.empty((n_samples, n_out), dtype=dtype)
    expected_preact = np.empty_like(preact)
    y = dense.dense_forward(x, kernel, bias, name, preact_out=preact)
    expected_y = reference.dense_forward(x, kernel, bias, name, preact_out=expected_preact)
    forward_atol = dense_atol(dtype, n_in + 1, magnitude_x, magnitude_kernel)
    np.testing.assert_allclose(preact, expected_preact, rtol=tolerance(dtype)["rtol"],
                               atol=forward_atol)
    # Every activation here changes by at most the change of its input (a
    # Lipschitz constant of at most 1), so y inherits the preactivations' atol.
    np.testing.assert_allclose(y, expected_y, rtol=tolerance(dtype)["rtol"],
                               atol=forward_atol)

    # Backward, from the reference's y so that both start from the same values,
    # accumulating into gradients that already hold values (beta = 0.5).
    kernel_grad = rng.standard_normal((n_in, n_out)).astype(dtype)
    bias_grad = rng.standard_normal(n_out).astype(dtype) if use_bias else None
    expected_kernel_grad = kernel_grad.copy()
    expected_bias_grad = bias_grad.copy() if use_bias else None
    dx = np.empty_like(x)
    expected_dx = np.empty_like(x)
    dense.dense_backward(x, kernel, expected_y, dy, name, kernel_grad, bias_grad,
                         dx_out=dx, preact=expected_preact, beta=0.5)
    reference.dense_backward(x, kernel, expected_y, dy, name, expected_kernel_grad,
                             expected_bias_grad, dx_out=expected_dx,
                             preact=expected_preact, beta=0.5)
    # dz = dy * activation'(z) is at most |dy| for every activation here
    # except softmax, whose dz is at most 2 |dy|.
    magnitude_dz = 2 * magnitude_dy
    rtol = tolerance(dtype)["rtol"]
    np.testing.assert_allclose(
        kernel_grad, expected_kernel_grad, rtol=rtol,
        atol=dense_atol(dtype, n_samples + 1, magnitude_x, magnitude_dz))
    np.testing.assert_allclose(
        dx, expected_dx, rtol=rtol,
        atol=dense_atol(dtype, n_out, magnitude_kernel, magnitude_dz))
    if use_bias:
        np.testing.assert_allclose(
            bias_grad, expected_bias_grad, rtol=rtol,
            atol=dense_atol(dtype, n_samples + 1, magnitude_dz))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_compiled_dense_gradient_by_differences(name, rng):
    # The compiled Dense backward pass, in float64, against finite
    # differences of the compiled forward pass.
    dense = pytest.importorskip("nnfast._dense")
    x, kernel, bias, r = dense_problem(name, True, rng)

    def loss():
        return float(np.sum(dense.dense_forward(x, kernel, bias, name, n_threads=1) * r))

    y = dense.dense_forward(x, kernel, bias, name)
    kernel_grad = np.empty_like(kernel)
    bias_grad = np.empty(3)
    dx = np.empty_like(x)
    dense.dense_backward(x, kernel, y, r, name, kernel_grad, bias_grad, dx_out=dx)
    np.testing.assert_allclose(kernel_grad, numerical_gradient(loss, kernel), **FD_TOL)
    np.testing.assert_allclose(bias_grad, numerical_gradient(loss, bias), **FD_TOL)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), **FD_TOL)



# ---------------------------------------------------------------------------
# Parametrised activations, the elementwise losses and the loss classes
# against finite differences.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.7])
@pytest.mark.parametrize("name", ["leaky_relu", "elu"])
def test_reference_parameter_gradient(name, alpha, rng):
    x = activation_inputs(name, (3, 4), rng)
    r = rng.standard_normal(x.shape)

    def loss():
        return float(np.sum(reference.activation_forward(name, x, alpha=alpha) * r))

    expected = numerical_gradient(loss, x)
    actual = reference.activation_backward(name, x, None, r, alpha=alpha)
    np.testing.assert_allclose(actual, expected, **FD_TOL)


def elementwise_loss_problem(case, rng, shape=(4, 3)):
    """Return (kernel name, kwargs, pred, target) away from each loss's kinks and clips."""
    if case == "mae":
        pred = rng.standard_normal(shape)
        target = pred + np.where(rng.random(shape) > 0.5, 1, -1) * (0.1 + rng.random(shape))
        return "mean_absolute_error", {}, pred, target
    if case == "huber":
        # |e| at least 0.1 from delta = 0.7, on both sides of it.
        magnitude = np.where(rng.random(shape) > 0.5, 0.1 + 0.5 * rng.random(shape),
                             0.8 + rng.random(shape))
        target = rng.standard_normal(shape)
        pred = target + np.where(rng.random(shape) > 0.5, 1, -1) * magnitude
        return "huber", {"delta": 0.7}, pred, target
    if case == "bce_logits":
        return ("binary_cross_entropy", {"from_logits": True}, 3 * rng.standard_normal(shape),
                rng.random(shape))
    if case == "bce_probabilities":
        return ("binary_cross_entropy", {}, 0.05 + 0.9 * rng.random(shape),
                rng.random(shape))
    return "kl_divergence", {}, 0.05 + 0.9 * rng.random(shape), rng.random(shape)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", ["mae", "huber", "bce_logits", "bce_probabilities", "kld"])
def test_reference_elementwise_loss_gradient(case, weighted, rng):
    name, kwargs, pred, target = elementwise_loss_problem(case, rng)
    weights = rng.random(4) + 0.5 if weighted else None
    grad_scale = 0.7
    scale = grad_scale * (weights if weighted else np.ones(4))
    kernel = getattr(reference, name)

    def loss():
        per_sample, _ = kernel(pred, target, **kwargs)
        return float(np.sum(scale * per_sample))

    expected = numerical_gradient(loss, pred)
    actual = np.empty_like(pred)
    kernel(pred, target, **kwargs, sample_weight=weights, grad_scale=grad_scale,
           grad_out=actual)
    np.testing.assert_allclose(actual, expected, **FD_TOL)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", ["mae", "huber", "bce_logits", "bce_probabilities", "kld"])
def test_compiled_elementwise_loss_gradient(case, dtype, rng):
    name, kwargs, pred, target = elementwise_loss_problem(case, rng, shape=(7, 5))
    pred, target = pred.astype(dtype), target.astype(dtype)
    weights = (rng.random(7) + 0.5).astype(dtype)
    actual = np.empty_like(pred)
    expected = np.empty_like(pred)
    getattr(_losses, name)(pred, target, **kwargs, sample_weight=weights, grad_scale=1.3,
                           grad_out=actual)
    getattr(reference, name)(pred, target, **kwargs, sample_weight=weights, grad_scale=1.3,
                             grad_out=expected)
    # Only the logits form calls exp (in sigmoid); the others repeat the
    # reference's operations in the same order.
    if case == "bce_logits":
        np.testing.assert_allclose(actual, expected, **tolerance(dtype))
    else:
        np.testing.assert_array_equal(actual, expected)


def class_gradient_check(loss, y_true, y_pred, sample_weight=None, logits=False):
    """Compare Loss.compute's gradient with differences of the reduced loss."""
    y_pred = np.array(y_pred, dtype=np.float64)

    def reduced():
        per_sample, _ = loss.compute(y_true, y_pred, sample_weight, want_grad=False,
                                     logits=logits)
        weights = None if sample_weight is None else np.asarray(sample_weight, float)
        return float(loss.reduce(per_sample, weights))

    expected = numerical_gradient(reduced, y_pred)
    _, actual = loss.compute(y_true, y_pred, sample_weight, logits=logits)
    np.testing.assert_allclose(actual, expected, **FD_TOL)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
def test_ignore_class_gradient(reduction, weighted, rng):
    # The gradient follows the reduced loss that ignore_class defines.
    y_true = np.array([0, 2, -1, 1, -1, 2])
    logits = 2 * rng.standard_normal((6, 3))
    weights = rng.random(6) + 0.5 if weighted else None
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1,
                                                reduction=reduction)
    class_gradient_check(loss, y_true, logits, weights)


@pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused_sigmoid"])
def test_binary_crossentropy_class_gradient(fused, rng):
    # From logits, and through compute(logits=True) as a model that fuses its
    # sigmoid calls it, with label smoothing and weights.
    y_true = (rng.random((5, 2)) > 0.5).astype(float)
    z = 2 * rng.standard_normal((5, 2))
    weights = rng.random(5) + 0.5
    loss = losses.BinaryCrossentropy(from_logits=not fused, label_smoothing=0.1)
    class_gradient_check(loss, y_true, z, weights, logits=fused)


def test_label_smoothing_gradient(rng):
    y_true = np.eye(4)[rng.integers(0, 4, 5)]
    logits = 2 * rng.standard_normal((5, 4))
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    class_gradient_check(loss, y_true, logits, rng.random(5) + 0.5)


@pytest.mark.parametrize("backend_name", ["compiled", "reference"])
@pytest.mark.parametrize("name", ["gelu", "leaky_relu", "selu", "log_softmax"])
def test_dense_layer_unfused_gradient(name, backend_name, rng):
    # Dense with an activation the dense kernels do not fuse runs a linear
    # dense kernel and an activation kernel. Its kernel, bias and input
    # gradients must still match finite differences.
    nnfast.set_backend(backend_name)
    try:
        layer = layers.Dense(3, activation=name, dtype="float64")
        x, kernel, bias, r = dense_problem(name, True, rng)
        layer._ensure_built((4,))
        layer.set_weights([kernel, bias])

        def loss():
            return float(np.sum(layer.forward(x, False, {}) * r))

        expected_kernel = numerical_gradient(loss, layer.kernel)
        expected_bias = numerical_gradient(loss, layer.bias)
        expected_x = numerical_gradient(loss, x)
        cache = {}
        layer.forward(x, True, cache)
        dx = layer.backward(r, cache, need_dx=True)
        np.testing.assert_allclose(layer._kernel.grad, expected_kernel, **FD_TOL)
        np.testing.assert_allclose(layer._bias.grad, expected_bias, **FD_TOL)
        np.testing.assert_allclose(dx, expected_x, **FD_TOL)
    finally:
        nnfast.set_backend("compiled")
