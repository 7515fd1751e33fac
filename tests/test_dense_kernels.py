"""Compiled Dense forward and backward kernels against the NumPy reference."""

import zlib

import numpy as np
import pytest

from nnfast import _reference
from nnfast._dense import dense_backward, dense_forward

DTYPES = [np.float32, np.float64]
ACTIVATIONS = list(_reference.ACTIVATIONS)

# The GEMM inside each pass has a k-term rounding error of about
# k * eps * (|x| |W|), as explained in test_gemm.py. The activations and their
# derivatives add a few eps relative to the value, because their derivatives
# are at most 1 in magnitude and the rows of softmax's Jacobian sum to at
# most 2. So error <= (k + slack) * eps * scale + rtol_eps * eps * |expected|.
TOLERANCES = {
    np.float32: {"eps": float(np.finfo(np.float32).eps), "slack": 16, "rtol_eps": 16},
    np.float64: {"eps": float(np.finfo(np.float64).eps), "slack": 16, "rtol_eps": 16},
}

SHAPES = [(1, 1, 1), (7, 5, 3), (32, 64, 10), (33, 300, 17), (256, 40, 128)]


def rng_for(*key):
    """Return a generator seeded from the test's parameters, the same every run."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def assert_close(result, expected, k, scale, name):
    tol = TOLERANCES[result.dtype.type]
    bound = (k + tol["slack"]) * tol["eps"] * scale
    bound = bound + tol["rtol_eps"] * tol["eps"] * np.abs(expected.astype(np.float64))
    error = np.abs(result.astype(np.float64) - expected.astype(np.float64))
    assert np.all(error <= bound + 1e-300), (
        f"{name}: max error {error.max():.3g}, bound there "
        f"{bound.flat[np.argmax(error)]:.3g}"
    )


def make_layer(n_samples, n_in, n_out, dtype, rng):
    x = rng.standard_normal((n_samples, n_in)).astype(dtype)
    kernel = (rng.standard_normal((n_in, n_out)) / np.sqrt(max(n_in, 1))).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    return x, kernel, bias


def forward_scale(x, kernel, bias):
    scale = np.abs(x).astype(np.float64) @ np.abs(kernel).astype(np.float64)
    if bias is not None:
        scale = scale + np.abs(bias)
    return scale


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("with_preact", [False, True], ids=["no-preact", "preact"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_forward_matches_reference(shape, with_preact, use_bias, activation, dtype):
    n_samples, n_in, n_out = shape
    rng = rng_for("forward", shape, use_bias, activation, dtype.__name__)
    x, kernel, bias = make_layer(n_samples, n_in, n_out, dtype, rng)
    bias = bias if use_bias else None
    out = np.full((n_samples, n_out), np.nan, dtype=dtype)
    preact = np.full((n_samples, n_out), np.nan, dtype=dtype) if with_preact else None
    preact_ref = np.empty((n_samples, n_out), dtype=dtype)
    expected = _reference.dense_forward(x, kernel, bias, activation, preact_out=preact_ref)
    result = dense_forward(x, kernel, bias, activation, out=out, preact_out=preact)
    assert result is out
    scale = forward_scale(x, kernel, bias)
    assert_close(result, expected, n_in, scale, "y")
    if with_preact:
        assert_close(preact, preact_ref, n_in, scale, "preact")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_forward_new_output(dtype):
    rng = rng_for("new-output", dtype.__name__)
    x, kernel, bias = make_layer(9, 12, 5, dtype, rng)
    result = dense_forward(x, kernel, bias, "relu")
    assert result.shape == (9, 5)
    assert result.dtype == dtype
    expected = _reference.dense_forward(x, kernel, bias, "relu")
    assert_close(result, expected, 12, forward_scale(x, kernel, bias), "y")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_forward_softmax_large_logits(dtype):
    x = np.array([[1.0, 2.0], [-3.0, 0.5]], dtype=dtype)
    kernel = np.array([[500.0, -500.0, 0.0], [300.0, 200.0, 100.0]], dtype=dtype)
    result = dense_forward(x, kernel, None, "softmax")
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(result.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_dx", [False, True], ids=["no-dx", "dx"])
@pytest.mark.parametrize("with_bias_grad", [False, True], ids=["no-bias-grad", "bias-grad"])
@pytest.mark.parametrize("beta", [0.0, 1.0], ids=["beta0", "beta1"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_backward_matches_reference(shape, beta, with_bias_grad, with_dx, activation,
                                          dtype):
    n_samples, n_in, n_out = shape
    rng = rng_for("backward", shape, beta, activation, dtype.__name__)
    x, kernel, bias = make_layer(n_samples, n_in, n_out, dtype, rng)
    y = _reference.dense_forward(x, kernel, bias, activation)
    dy = rng.standard_normal(y.shape).astype(dtype)
    kernel_grad0 = rng.standard_normal(kernel.shape).astype(dtype)
    bias_grad0 = rng.standard_normal(bias.shape).astype(dtype)

    kernel_grad = kernel_grad0.copy()
    bias_grad = bias_grad0.copy() if with_bias_grad else None
    # NaN shows whether dx is written in full, and beta 0 must not read it.
    dx = np.full(x.shape, np.nan, dtype=dtype) if with_dx else None
    returned = dense_backward(x, kernel, y, dy, activation, kernel_grad, bias_grad, dx,
                              beta=beta)
    assert returned is dx

    kernel_grad_ref = kernel_grad0.copy()
    bias_grad_ref = bias_grad0.copy()
    dx_ref = np.empty_like(x)
    _reference.dense_backward(x, kernel, y, dy, activation, kernel_grad_ref,
                              bias_grad_ref, dx_ref, beta=beta)

    dz = _reference.activation_backward(activation, None, y, dy)
    abs_dz = np.abs(dz).astype(np.float64) + np.abs(dy)
    kg_scale = np.abs(x).T.astype(np.float64) @ abs_dz + abs(beta) * np.abs(kernel_grad0)
    assert_close(kernel_grad, kernel_grad_ref, n_samples, kg_scale, "kernel_grad")
    if with_bias_grad:
        bg_scale = abs_dz.sum(axis=0) + abs(beta) * np.abs(bias_grad0)
        assert_close(bias_grad, bias_grad_ref, n_samples, bg_scale, "bias_grad")
    if with_dx:
        dx_scale = abs_dz @ np.abs(kernel).T.astype(np.float64)
        assert_close(dx, dx_ref, n_out, dx_scale, "dx")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_kernels_strided_and_readonly_inputs(dtype):
    rng = rng_for("layouts", dtype.__name__)
    x, kernel, bias = make_layer(21, 34, 13, dtype, rng)
    x_f = np.asfortranarray(x)
    kernel_view = np.zeros((34, 26), dtype=dtype)
    kernel_view[:, ::2] = kernel
    kernel_view = kernel_view[:, ::2]
    kernel_view.flags.writeable = False
    bias_view = np.repeat(bias, 2)[::2]
    expected = _reference.dense_forward(x, kernel, bias, "tanh")
    result = dense_forward(x_f, kernel_view, bias_view, "tanh")
    assert_close(result, expected, 34, forward_scale(x, kernel, bias), "y")

    dy = rng.standard_normal(result.shape).astype(dtype)
    kernel_grad = np.empty((34, 13), dtype=dtype, order="F")
    bias_grad = np.empty(13, dtype=dtype)
    dx = np.empty((21, 34), dtype=dtype)
    dense_backward(x_f, kernel_view, np.asfortranarray(result), dy[:, ::-1][:, ::-1],
                   "tanh", kernel_grad, bias_grad, dx)
    kernel_grad_ref = np.empty_like(kernel)
    bias_grad_ref = np.empty_like(bias)
    dx_ref = np.empty_like(x)
    _reference.dense_backward(x, kernel, result, dy, "tanh", kernel_grad_ref,
                              bias_grad_ref, dx_ref)
    np.testing.assert_allclose(kernel_grad, kernel_grad_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bias_grad, bias_grad_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("activation", ["relu", "softmax"])
def test_dense_kernels_same_result_for_any_thread_count(activation, dtype):
    rng = rng_for("threads", activation, dtype.__name__)
    x, kernel, bias = make_layer(256, 300, 128, dtype, rng)
    y1 = dense_forward(x, kernel, bias, activation, n_threads=1)
    y2 = dense_forward(x, kernel, bias, activation, n_threads=2)
    np.testing.assert_array_equal(y1, y2)
    dy = rng.standard_normal(y1.shape).astype(dtype)
    grads = []
    for n_threads in (1, 2):
        kernel_grad = np.empty_like(kernel)
        bias_grad = np.empty_like(bias)
        dx = np.empty_like(x)
        dense_backward(x, kernel, y1, dy, activation, kernel_grad, bias_grad, dx,
                       n_threads=n_threads)
        grads.append((kernel_grad, bias_grad, dx))
    for one, two in zip(grads[0], grads[1]):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_kernels_zero_samples(dtype):
    x = np.empty((0, 4), dtype=dtype)
    kernel = np.ones((4, 3), dtype=dtype)
    bias = np.ones(3, dtype=dtype)
    assert dense_forward(x, kernel, bias, "softmax").shape == (0, 3)
    kernel_grad = np.full((4, 3), 2.0, dtype=dtype)
    bias_grad = np.full(3, 2.0, dtype=dtype)
    dx = np.empty((0, 4), dtype=dtype)
    dy = np.empty((0, 3), dtype=dtype)
    dense_backward(x, kernel, dy, dy, "sigmoid", kernel_grad, bias_grad, dx, beta=0.5)
    assert np.all(kernel_grad == 1.0)
    assert np.all(bias_grad == 1.0)


def test_dense_forward_errors():
    x = np.ones((4, 3))
    kernel = np.ones((3, 2))
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        dense_forward(x, kernel, None, "gelu")
    with pytest.raises(ValueError, match=r"x is \(4, 3\) but kernel is \(5, 2\)"):
        dense_forward(x, np.ones((5, 2)), None, "linear")
    with pytest.raises(TypeError, match=r"kernel must have the dtype of x \(float64\)"):
        dense_forward(x, kernel.astype(np.float32), None, "linear")
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        dense_forward(x, kernel, np.ones(3), "linear")
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\)"):
        dense_forward(x, kernel, None, "linear", out=np.empty((2, 4)))
    square = np.ones((4, 4))
    with pytest.raises(ValueError, match="out shares memory with x"):
        dense_forward(square, np.ones((4, 4)), None, "linear", out=square)


def test_dense_backward_errors():
    x = np.ones((4, 3))
    kernel = np.ones((3, 2))
    y = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 2\)"):
        dense_backward(x, kernel, y, np.ones((4, 3)), "relu", np.empty((3, 2)), None)
    with pytest.raises(ValueError, match="y is required for activation 'relu'"):
        dense_backward(x, kernel, None, y, "relu", np.empty((3, 2)), None)
    readonly = np.empty((3, 2))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="kernel_grad_out must be writeable"):
        dense_backward(x, kernel, y, y, "relu", readonly, None)
    with pytest.raises(ValueError, match="dx_out shares memory with x"):
        dense_backward(x, kernel, y, y, "relu", np.empty((3, 2)), None, dx_out=x)
