"""Batch and layer normalization: kernels and layers.

The NumPy reference backward passes are checked in float64 against
4th-order finite differences of L = sum(forward(x, gamma, beta) * r), with
the batch or row statistics recomputed from x at every step. Then the
compiled kernels are checked against the reference on both dtypes, and the
layers on Keras's training and inference behaviour.
"""

import numpy as np
import pytest
from _tolerances import eps, tolerance

import nnfast
from nnfast import _norm, layers
from nnfast import _reference as reference

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
KINDS = ["batch", "layer"]

STEP = 1e-3
FD_TOL = {"rtol": 1e-7, "atol": 1e-8}

SHAPES = {
    "single_row": (1, 5),
    "single_channel": (6, 1),
    "small": (7, 3),
    "square": (4, 4),
}


def numerical_gradient(function, array, step=STEP):
    """Return d function() / d array by 4th-order central differences."""
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
        grad.flat[i] = (-values[2] + 8 * values[1] - 8 * values[-1] + values[-2]) / (
            12 * step
        )
    return grad


def kernels_for(module, kind):
    if kind == "batch":
        return module.batch_norm_forward, module.batch_norm_backward
    return module.layer_norm_forward, module.layer_norm_backward


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("kind", KINDS)
def test_reference_norm_gradients(kind, shape, affine, rng):
    # One value per statistic (a single row for batch, a single channel for
    # layer normalization) normalizes to beta, so the x gradient is zero.
    forward, backward = kernels_for(reference, kind)
    x = 2 * rng.standard_normal(shape) + 1
    gamma = rng.standard_normal(shape[1]) if affine else None
    beta = rng.standard_normal(shape[1]) if affine else None
    r = rng.standard_normal(shape)
    epsilon = 1e-3

    def loss():
        return float(np.sum(forward(x, gamma, beta, epsilon)[0] * r))

    _, mean, var = forward(x, gamma, beta, epsilon)
    dx = np.empty_like(x)
    gamma_grad = np.empty(shape[1])
    beta_grad = np.empty(shape[1])
    backward(
        x,
        mean,
        var,
        gamma,
        epsilon,
        r,
        dx_out=dx,
        gamma_grad_out=gamma_grad,
        beta_grad_out=beta_grad,
    )
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), **FD_TOL)
    if affine:
        np.testing.assert_allclose(
            gamma_grad, numerical_gradient(loss, gamma), **FD_TOL
        )
        np.testing.assert_allclose(beta_grad, numerical_gradient(loss, beta), **FD_TOL)


def test_reference_batch_norm_hand_computed():
    x = np.array([[1.0, 10.0], [3.0, 10.0]])
    y, mean, var = reference.batch_norm_forward(x, None, None, 0.0 + 1e-12)
    np.testing.assert_allclose(mean, [2.0, 10.0])
    np.testing.assert_allclose(var, [1.0, 0.0])
    np.testing.assert_allclose(y, [[-1.0, 0.0], [1.0, 0.0]], atol=1e-5)


LARGE = {"conv_features": (8 * 13 * 13, 32), "wide": (300, 257), "one_row": (1, 40)}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "shape", list({**SHAPES, **LARGE}.values()), ids=list({**SHAPES, **LARGE})
)
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_norm_matches_reference(kind, shape, dtype, rng):
    x = (3 * rng.standard_normal(shape) + 5).astype(dtype)
    gamma = rng.standard_normal(shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    ref_forward, ref_backward = kernels_for(reference, kind)
    forward, backward = kernels_for(_norm, kind)
    axis = 0 if kind == "batch" else 1
    count = shape[axis]
    # The compiled kernels form x_hat = (x - mean) / std in the input dtype
    # and the reference in float64, so they differ by a few eps times
    # max|x| / std. y multiplies x_hat by gamma and adds beta.
    spread = float(
        np.abs(x).max() / np.sqrt(x.astype(np.float64).var(axis=axis).min() + 1e-3)
    )
    tol = dict(tolerance(dtype))
    tol["atol"] = (
        16
        * eps(dtype)
        * (
            spread * float(np.abs(gamma).max())
            + float(np.abs(beta).max())
            + float(np.abs(x).max())
        )
    )

    expected = ref_forward(x, gamma, beta, 1e-3)
    actual = forward(x, gamma, beta, 1e-3)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, **tol)

    _, mean, var = expected
    want = [np.empty_like(x), np.empty_like(gamma), np.empty_like(beta)]
    ref_backward(x, mean, var, gamma, 1e-3, dy, *want)
    got = [np.empty_like(x), np.empty_like(gamma), np.empty_like(beta)]
    returned = backward(x, mean, var, gamma, 1e-3, dy, *got)
    assert returned is got[0]
    # gamma's and beta's gradients sum rows of dy * x_hat; dx takes means of
    # count such terms, times gamma / std.
    term = float(np.abs(dy).max()) * spread
    grad_tol = dict(tolerance(dtype), atol=16 * shape[0] * eps(dtype) * term)
    np.testing.assert_allclose(got[1], want[1], **grad_tol)
    np.testing.assert_allclose(got[2], want[2], **grad_tol)
    dx_scale = (
        term * float(np.abs(gamma).max()) * spread / max(float(np.abs(x).max()), 1)
    )
    dx_tol = dict(tolerance(dtype), atol=16 * count * eps(dtype) * dx_scale)
    np.testing.assert_allclose(got[0], want[0], **dx_tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_batch_norm_inference(dtype, rng):
    x = rng.standard_normal((20, 6)).astype(dtype)
    mean = rng.standard_normal(6).astype(dtype)
    var = rng.random(6).astype(dtype) + 0.5
    gamma = rng.standard_normal(6).astype(dtype)
    beta = rng.standard_normal(6).astype(dtype)
    expected = reference.batch_norm_inference(x, mean, var, gamma, beta, 1e-3)
    np.testing.assert_allclose(
        _norm.batch_norm_inference(x, mean, var, gamma, beta, 1e-3),
        expected,
        **dict(tolerance(dtype), atol=16 * eps(dtype)),
    )
    np.testing.assert_allclose(
        _norm.batch_norm_inference(x, mean, var, None, None, 1e-3),
        reference.batch_norm_inference(x, mean, var, None, None, 1e-3),
        **dict(tolerance(dtype), atol=16 * eps(dtype)),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_norm_non_contiguous_and_optional_outputs(kind, rng):
    x = rng.standard_normal((12, 10))[:, ::2]
    dy = np.asfortranarray(rng.standard_normal((12, 5)))
    forward, backward = kernels_for(_norm, kind)
    ref_forward, _ = kernels_for(reference, kind)
    y, mean, var = forward(x, None, None, 1e-3)
    np.testing.assert_allclose(
        y, ref_forward(x.copy(), None, None, 1e-3)[0], rtol=1e-12, atol=1e-13
    )
    out = np.asfortranarray(np.empty((12, 5)))
    assert forward(x, None, None, 1e-3, out=out)[0] is out
    # Only beta's gradient: dx and gamma's gradient are skipped.
    beta_grad = np.empty(5)
    assert backward(x, mean, var, None, 1e-3, dy, beta_grad_out=beta_grad) is None
    np.testing.assert_allclose(beta_grad, dy.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_norm_thread_count_invariant(kind, rng):
    x = rng.standard_normal((3000, 24)).astype(np.float32)
    dy = rng.standard_normal((3000, 24)).astype(np.float32)
    gamma = rng.standard_normal(24).astype(np.float32)
    forward, backward = kernels_for(_norm, kind)
    results = []
    for n_threads in (1, 2, 3):
        y, mean, var = forward(x, gamma, None, 1e-3, n_threads=n_threads)
        grads = [np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)]
        backward(x, mean, var, gamma, 1e-3, dy, *grads, n_threads=n_threads)
        results.append([y, mean, var] + grads)
    for result in results[1:]:
        for actual, first in zip(result, results[0]):
            np.testing.assert_array_equal(actual, first)


def test_compiled_norm_rejects_bad_arguments():
    x = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="x must be 2-D"):
        _norm.batch_norm_forward(x[0], None, None, 1e-3)
    with pytest.raises(ValueError, match="0 rows"):
        _norm.batch_norm_forward(x[:0], None, None, 1e-3)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        _norm.layer_norm_forward(x, np.ones(4, np.float32), None, 1e-3)
    with pytest.raises(TypeError, match="beta must have dtype float32"):
        _norm.batch_norm_forward(x, None, np.ones(3), 1e-3)
    with pytest.raises(ValueError, match="epsilon must be a finite float >= 0"):
        _norm.layer_norm_forward(x, None, None, -1.0)
    with pytest.raises(ValueError, match="mean and var"):
        _norm.batch_norm_backward(x, None, None, None, 1e-3, x)


# ---------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_batch_normalization_training_and_inference(backend, rng):
    nnfast.set_backend(backend)
    try:
        layer = layers.BatchNormalization(momentum=0.9)
        x = (2 * rng.standard_normal((6, 3, 3, 4)) + 3).astype(np.float32)
        y = layer(x, training=True)
        flat = x.reshape(-1, 4).astype(np.float64)
        mean = flat.mean(axis=0)
        var = flat.var(axis=0)
        expected = (x - mean) / np.sqrt(var + 1e-3)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
        # moving = 0.9 * initial + 0.1 * batch, from zeros and ones.
        np.testing.assert_allclose(layer.moving_mean, 0.1 * mean, rtol=1e-5)
        np.testing.assert_allclose(layer.moving_variance, 0.9 + 0.1 * var, rtol=1e-5)
        inference = layer(x, training=False)
        expected = (x - layer.moving_mean) / np.sqrt(layer.moving_variance + 1e-3)
        np.testing.assert_allclose(inference, expected, rtol=1e-4, atol=1e-5)
    finally:
        nnfast.set_backend("compiled")


def test_batch_normalization_weights():
    layer = layers.BatchNormalization()
    layer(np.zeros((2, 5), dtype=np.float32))
    names = [w.name.split("/")[-1] for w in layer.weights]
    assert names == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.name.split("/")[-1] for w in layer.trainable_weights] == ["gamma", "beta"]
    assert [w.name.split("/")[-1] for w in layer.non_trainable_weights] == [
        "moving_mean",
        "moving_variance",
    ]
    plain = layers.BatchNormalization(center=False, scale=False)
    plain(np.zeros((2, 5), dtype=np.float32))
    assert len(plain.trainable_weights) == 0
    assert len(plain.weights) == 2


def test_batch_normalization_frozen_uses_moving_statistics(rng):
    layer = layers.BatchNormalization()
    x = rng.standard_normal((4, 3)).astype(np.float32)
    layer(x)
    layer.set_weights(
        [np.full(3, 2.0), np.full(3, 1.0), np.full(3, 0.5), np.full(3, 4.0)]
    )
    layer.trainable = False
    cache = {}
    y = layer.forward(x, True, cache)
    scale = 2.0 / np.sqrt(4.0 + 1e-3)
    np.testing.assert_allclose(y, (x - 0.5) * scale + 1.0, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_mean, 0.5)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy, cache, True), dy * scale, rtol=1e-5)


def test_batch_normalization_other_axis(rng):
    layer = layers.BatchNormalization(axis=1)
    x = rng.standard_normal((5, 3, 4)).astype(np.float64)
    layer.dtype = "float64"
    y = layer(x, training=True)
    mean = x.mean(axis=(0, 2), keepdims=True)
    var = x.var(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10)
    assert layer.gamma.shape == (3,)
    cache = {}
    layer.forward(x, True, cache)
    dx = layer.backward(np.ones_like(x), cache, True)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, 0.0, atol=1e-10)


def test_batch_normalization_arguments():
    with pytest.raises(
        ValueError, match=r"`momentum` must be a finite float in \[0.0, 1.0\]"
    ):
        layers.BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="`momentum`"):
        layers.BatchNormalization(momentum=-0.1)
    with pytest.raises(ValueError, match="`epsilon` must be a finite float >= 0"):
        layers.BatchNormalization(epsilon=-1e-3)
    with pytest.raises(TypeError, match="`axis` must be an int"):
        layers.BatchNormalization(axis="channels")
    with pytest.raises(ValueError, match="non-batch axis"):
        layers.BatchNormalization(axis=0)(np.zeros((2, 3), dtype=np.float32))
    config = layers.BatchNormalization(momentum=0.9, center=False).get_config()
    restored = layers.BatchNormalization.from_config(config)
    assert restored.momentum == 0.9
    assert restored.center is False


def test_layer_normalization_layer(rng):
    x = (rng.standard_normal((3, 4, 5)) * 2 + 1).astype(np.float32)
    layer = layers.LayerNormalization()
    y = layer(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    np.testing.assert_allclose(
        y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5
    )
    assert layer.gamma.shape == (5,)
    image = layers.LayerNormalization(axis=[-2, -1])
    y = image(x)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5
    )
    assert image.gamma.shape == (4, 5)
    with pytest.raises(ValueError, match="trailing axes"):
        layers.LayerNormalization(axis=1)(x)
    with pytest.raises(ValueError, match="`epsilon`"):
        layers.LayerNormalization(epsilon=float("nan"))


@pytest.mark.parametrize("cls", [layers.BatchNormalization, layers.LayerNormalization])
def test_normalization_layer_backward_matches_difference(cls, rng):
    layer = cls(dtype="float64")
    x = rng.standard_normal((6, 4))
    layer(x)
    layer.set_weights(
        [rng.standard_normal(4) for _ in layer.weights[:2]]
        + [w.value for w in layer.weights[2:]]
    )
    cache = {}
    layer.forward(x, True, cache)
    r = rng.standard_normal(x.shape)
    dx = layer.backward(r, cache, True)
    direction = rng.standard_normal(x.shape)
    step = 1e-5
    plus = layer.forward(x + step * direction, True, {})
    minus = layer.forward(x - step * direction, True, {})
    slope = float(np.sum(r * (plus - minus))) / (2 * step)
    np.testing.assert_allclose(slope, float(np.sum(dx * direction)), rtol=1e-6)
