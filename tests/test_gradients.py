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

from nnfast import _activations
from nnfast import _losses
from nnfast import _reference as reference

ACTIVATIONS = list(reference.ACTIVATIONS)
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
    """Return float64 inputs, away from relu's kink at 0 by more than 2 steps."""
    x = 2 * rng.standard_normal(shape)
    if name == "relu":
        x = np.sign(x) * (0.1 + np.abs(x))
    return x


# ---------------------------------------------------------------------------
# Reference backward passes against finite differences.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (4, 1), (2, 7)], ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
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

    relu has a kink at 0, so inputs are drawn again until every
    preactivation is at least 0.05 from it, which stays true under the
    finite-difference steps (each moves a preactivation by at most 2 * STEP
    times the largest |x| or |kernel| entry, below 0.05 here).
    """
    for _ in range(1000):
        x = rng.standard_normal((n_samples, n_in))
        kernel = rng.standard_normal((n_in, n_out))
        bias = rng.standard_normal(n_out) if use_bias else None
        z = x @ kernel + (bias if use_bias else 0)
        if name != "relu" or np.abs(z).min() > 0.05:
            return x, kernel, bias, rng.standard_normal((n_samples, n_out))
    raise RuntimeError("no Dense inputs with preactivations away from 0 in 1000 draws")


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("name", ACTIVATIONS)
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
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_compiled_activation_gradient(name, dtype, rng):
    x = activation_inputs(name, (6, 5), rng).astype(dtype)
    r = rng.standard_normal((6, 5)).astype(dtype)
    y = reference.activation_forward(name, x)
    actual = _activations.activation_backward(name, x, y, r)
    expected = reference.activation_backward(name, x, y, r)
    # Softmax's dx = y (r - sum(r y)) cancels, so its atol follows the error
    # of that sum, n_cols * eps * max|r|.
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
