"""2-D convolution kernels, against finite differences and the NumPy reference.

The NumPy reference's backward pass is first checked in float64 against
4th-order central finite differences of L = sum(conv2d_forward(...) * r),
across strides, paddings, dilations, odd sizes and batch size 1. Then the
compiled kernels are checked against the reference on both dtypes,
including strided inputs, inputs large enough to span several tiles, and
thread counts.
"""

import numpy as np
import pytest
from _tolerances import eps, tolerance

from nnfast import _conv
from nnfast import _reference as reference

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]

# Finite differences: the 4th-order formula's truncation error is about
# h^4 / 30 times the fifth derivative and its rounding error about
# 1.5 eps |L| / h; for h = 1e-3 and values of order one both stay far below
# FD_TOL, while a wrong gradient is off by order one.
STEP = 1e-3
FD_TOL = {"rtol": 1e-7, "atol": 1e-8}

# (batch, height, width, in_c, filters, kernel, strides, padding, dilation)
GEOMETRIES = {
    "valid_3x3": (2, 5, 6, 2, 3, (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    "same_3x3": (2, 5, 4, 2, 3, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    "stride_2_asymmetric_pad": (
        2,
        7,
        6,
        2,
        3,
        (3, 2),
        (2, 2),
        ((0, 1), (1, 0)),
        (1, 1),
    ),
    "stride_2x1_odd_batch_1": (1, 7, 5, 3, 2, (2, 3), (2, 1), ((1, 1), (0, 2)), (1, 1)),
    "stride_3_kernel_2": (2, 8, 7, 1, 2, (2, 2), (3, 3), ((0, 0), (0, 0)), (1, 1)),
    "dilation_2": (2, 7, 7, 2, 2, (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),
    "dilation_1x2_batch_1": (1, 6, 7, 1, 3, (2, 2), (1, 1), ((0, 0), (1, 1)), (1, 2)),
    "pointwise": (2, 4, 5, 3, 4, (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    "pointwise_stride_2": (2, 5, 5, 2, 3, (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    "padding_beyond_kernel": (1, 3, 4, 2, 2, (2, 2), (1, 1), ((3, 2), (3, 3)), (1, 1)),
}

FD_ACTIVATIONS = ["linear", "tanh", "sigmoid"]


def numerical_gradient(function, array, step=STEP):
    """Return d function() / d array by 4th-order central differences.

    ``function`` reads ``array``, which is changed in place one element at
    a time and restored.
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
        grad.flat[i] = (-values[2] + 8 * values[1] - 8 * values[-1] + values[-2]) / (
            12 * step
        )
    return grad


def conv_problem(geometry, rng, dtype=np.float64):
    batch, height, width, in_c, filters, kernel, strides, padding, dilation = geometry
    x = rng.standard_normal((batch, height, width, in_c)).astype(dtype)
    w = rng.standard_normal(kernel + (in_c, filters)) / np.sqrt(np.prod(kernel) * in_c)
    bias = rng.standard_normal(filters).astype(dtype)
    return x, w.astype(dtype), bias, (strides, padding, dilation)


def conv_tolerance(dtype, x, kernel, bias):
    """Return assert_allclose arguments for outputs that sum k products.

    Two summation orders of k = kernel_h * kernel_w * in_c products differ
    by at most about k * eps * sum|x| |w|, bounded by k * max|x| * max|w|.
    """
    k = int(np.prod(kernel.shape[:3]))
    scale = k * float(np.abs(x).max(initial=0)) * float(np.abs(kernel).max(initial=0))
    scale += float(np.abs(bias).max(initial=0)) if bias is not None else 0.0
    tol = dict(tolerance(dtype))
    tol["atol"] = max(tol["atol"], 4 * k * eps(dtype) * scale)
    return tol


# ---------------------------------------------------------------------------
# Reference against finite differences.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", FD_ACTIVATIONS)
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_reference_conv_gradients(name, activation, rng):
    x, kernel, bias, geometry = conv_problem(GEOMETRIES[name], rng)
    y = reference.conv2d_forward(x, kernel, bias, activation, *geometry)
    r = rng.standard_normal(y.shape)

    def loss():
        return float(
            np.sum(reference.conv2d_forward(x, kernel, bias, activation, *geometry) * r)
        )

    kernel_grad = np.empty_like(kernel)
    bias_grad = np.empty_like(bias)
    dx = np.empty_like(x)
    reference.conv2d_backward(
        x, kernel, y, r, activation, *geometry, kernel_grad, bias_grad, dx_out=dx
    )
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), **FD_TOL)
    np.testing.assert_allclose(kernel_grad, numerical_gradient(loss, kernel), **FD_TOL)
    np.testing.assert_allclose(bias_grad, numerical_gradient(loss, bias), **FD_TOL)


def test_reference_conv_hand_computed():
    # A 1-channel 3 x 3 image, a 2 x 2 kernel of ones, valid: each output is
    # the sum of a 2 x 2 block.
    x = np.arange(9, dtype=np.float64).reshape(1, 3, 3, 1)
    kernel = np.ones((2, 2, 1, 1))
    y = reference.conv2d_forward(
        x, kernel, np.array([0.5]), "linear", (1, 1), ((0, 0), (0, 0)), (1, 1)
    )
    np.testing.assert_array_equal(y[0, :, :, 0], [[8.5, 12.5], [20.5, 24.5]])


def test_reference_conv_beta_accumulates(rng):
    x, kernel, bias, geometry = conv_problem(GEOMETRIES["same_3x3"], rng)
    y = reference.conv2d_forward(x, kernel, bias, "linear", *geometry)
    dy = rng.standard_normal(y.shape)
    fresh_k = np.empty_like(kernel)
    fresh_b = np.empty_like(bias)
    reference.conv2d_backward(
        x, kernel, None, dy, "linear", *geometry, fresh_k, fresh_b
    )
    old_k = rng.standard_normal(kernel.shape)
    old_b = rng.standard_normal(bias.shape)
    acc_k = old_k.copy()
    acc_b = old_b.copy()
    reference.conv2d_backward(
        x, kernel, None, dy, "linear", *geometry, acc_k, acc_b, beta=0.5
    )
    np.testing.assert_allclose(acc_k, fresh_k + 0.5 * old_k, rtol=1e-12)
    np.testing.assert_allclose(acc_b, fresh_b + 0.5 * old_b, rtol=1e-12)


# ---------------------------------------------------------------------------
# Compiled against the reference.
# ---------------------------------------------------------------------------

LARGE_GEOMETRIES = {
    # Rows of (16 * 9 + 24) values per pixel over 64 columns: the 1 MiB tile
    # takes about 24 output rows, so these span several tiles.
    "several_tiles": (3, 64, 64, 16, 24, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    "several_tiles_strided": (
        2,
        70,
        66,
        16,
        20,
        (3, 3),
        (2, 2),
        ((0, 1), (0, 1)),
        (1, 1),
    ),
    "mnist_first_layer": (4, 28, 28, 1, 32, (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    "mnist_second_layer": (4, 13, 13, 32, 64, (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
}
# float32 kernels with out_c a multiple of 8 up to 64 and K x out_c <= 1024
# take the direct AVX2 path where the CPU has it (float64 always takes the
# GEMM path): widths 1 to 8 of 8-channel blocks, odd output widths, taps in
# the padding, strides and dilation.
DIRECT_GEOMETRIES = {
    "direct_8_odd_width": (2, 7, 9, 1, 8, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    "direct_16_strided": (1, 6, 5, 2, 16, (2, 3), (2, 1), ((0, 1), (1, 1)), (1, 1)),
    "direct_24_dilated": (2, 8, 8, 3, 24, (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),
    "direct_40": (2, 6, 7, 2, 40, (2, 2), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    "direct_64_strided": (1, 5, 7, 1, 64, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)),
}
ALL_GEOMETRIES = {**GEOMETRIES, **LARGE_GEOMETRIES, **DIRECT_GEOMETRIES}
ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh"]


def compare_conv(
    geometry, activation, dtype, rng, use_bias=True, transform=None, n_threads=None
):
    x, kernel, bias, geo = conv_problem(geometry, rng, dtype)
    if not use_bias:
        bias = None
    x_in = transform(x) if transform is not None else x
    kernel_in = transform(kernel) if transform is not None else kernel
    tol = conv_tolerance(dtype, x, kernel, bias)

    expected_y = reference.conv2d_forward(x, kernel, bias, activation, *geo)
    y = _conv.conv2d_forward(
        x_in, kernel_in, bias, activation, *geo, n_threads=n_threads
    )
    np.testing.assert_allclose(y, expected_y, **tol)

    dy = rng.standard_normal(y.shape).astype(dtype)
    expected = [
        np.empty_like(kernel),
        None if bias is None else np.empty_like(bias),
        np.empty_like(x),
    ]
    reference.conv2d_backward(
        x,
        kernel,
        expected_y,
        dy,
        activation,
        *geo,
        expected[0],
        expected[1],
        dx_out=expected[2],
    )
    actual = [
        np.empty_like(kernel),
        None if bias is None else np.empty_like(bias),
        np.empty_like(x),
    ]
    dy_in = transform(dy) if transform is not None else dy
    _conv.conv2d_backward(
        x_in,
        kernel_in,
        expected_y,
        dy_in,
        activation,
        *geo,
        actual[0],
        actual[1],
        dx_out=actual[2],
        n_threads=n_threads,
    )
    # Kernel and bias gradients sum over every output pixel, and input
    # gradients over the taps and filters, so their scales follow those counts.
    pixels = int(np.prod(y.shape[:3]))
    grad_tol = dict(tolerance(dtype))
    grad_tol["atol"] = (
        4 * pixels * eps(dtype) * float(np.abs(x).max()) * float(np.abs(dy).max())
    )
    np.testing.assert_allclose(actual[0], expected[0], **grad_tol)
    if bias is not None:
        bias_tol = dict(
            grad_tol, atol=4 * pixels * eps(dtype) * float(np.abs(dy).max())
        )
        np.testing.assert_allclose(actual[1], expected[1], **bias_tol)
    taps = int(np.prod(kernel.shape[:2])) * kernel.shape[3]
    dx_tol = dict(tolerance(dtype))
    dx_tol["atol"] = (
        4 * taps * eps(dtype) * float(np.abs(kernel).max()) * float(np.abs(dy).max())
    )
    np.testing.assert_allclose(actual[2], expected[2], **dx_tol)
    return y, actual


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", list(ALL_GEOMETRIES))
def test_compiled_conv_matches_reference(name, activation, dtype, rng):
    compare_conv(ALL_GEOMETRIES[name], activation, dtype, rng)


@pytest.mark.parametrize("name", ["stride_2_asymmetric_pad", "direct_8_odd_width"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_conv_without_bias(dtype, name, rng):
    compare_conv(ALL_GEOMETRIES[name], "relu", dtype, rng, use_bias=False)


def fortran_order(array):
    return np.asfortranarray(array)


def every_other_element(array):
    # A view whose last axis has stride 2, holding the same values.
    doubled = np.repeat(array, 2, axis=-1)
    return doubled[..., ::2]


@pytest.mark.parametrize(
    "transform", [fortran_order, every_other_element], ids=["fortran", "strided"]
)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_conv_non_contiguous_inputs(transform, dtype, rng):
    compare_conv(GEOMETRIES["dilation_2"], "tanh", dtype, rng, transform=transform)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_conv_read_only_inputs(dtype, rng):
    def read_only(array):
        view = array.view()
        view.flags.writeable = False
        return view

    compare_conv(GEOMETRIES["same_3x3"], "relu", dtype, rng, transform=read_only)


@pytest.mark.parametrize(
    "name", ["several_tiles", "mnist_second_layer", "dilation_2", "mnist_first_layer"]
)
def test_compiled_conv_thread_count_invariant(name, rng):
    results = []
    for n_threads in (1, 2, 3):
        local = np.random.default_rng(7)
        results.append(
            compare_conv(
                ALL_GEOMETRIES[name], "relu", np.float32, local, n_threads=n_threads
            )
        )
    for y, grads in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        for actual, first in zip(grads, results[0][1]):
            np.testing.assert_array_equal(actual, first)


@pytest.mark.parametrize("name", ["stride_2x1_odd_batch_1", "direct_16_strided"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_conv_outputs_and_beta(dtype, name, rng):
    x, kernel, bias, geo = conv_problem(ALL_GEOMETRIES[name], rng, dtype)
    tol = conv_tolerance(dtype, x, kernel, bias)
    expected = reference.conv2d_forward(x, kernel, bias, "linear", *geo)

    # A Fortran-ordered out is written through a temporary and returned.
    out = np.asfortranarray(np.empty(expected.shape, dtype=dtype))
    result = _conv.conv2d_forward(x, kernel, bias, "linear", *geo, out=out)
    assert result is out
    np.testing.assert_allclose(out, expected, **tol)

    dy = rng.standard_normal(expected.shape).astype(dtype)
    fresh_k = np.empty_like(kernel)
    fresh_b = np.empty_like(bias)
    reference.conv2d_backward(x, kernel, None, dy, "linear", *geo, fresh_k, fresh_b)
    old_k = rng.standard_normal(kernel.shape).astype(dtype)
    old_b = rng.standard_normal(bias.shape).astype(dtype)
    acc_k = np.asfortranarray(old_k.copy())
    acc_b = old_b.copy()
    returned = _conv.conv2d_backward(
        x, kernel, None, dy, "linear", *geo, acc_k, acc_b, beta=0.5
    )
    assert returned is None
    grad_tol = dict(tolerance(dtype), atol=1e3 * eps(dtype))
    np.testing.assert_allclose(acc_k, fresh_k + 0.5 * old_k, **grad_tol)
    np.testing.assert_allclose(acc_b, fresh_b + 0.5 * old_b, **grad_tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_conv_empty_batch(dtype):
    x = np.empty((0, 5, 5, 2), dtype=dtype)
    kernel = np.ones((3, 3, 2, 4), dtype=dtype)
    geo = ((1, 1), ((0, 0), (0, 0)), (1, 1))
    y = _conv.conv2d_forward(x, kernel, None, "relu", *geo)
    assert y.shape == (0, 3, 3, 4)
    kernel_grad = np.full(kernel.shape, 7.0, dtype=dtype)
    bias_grad = np.full(4, 7.0, dtype=dtype)
    _conv.conv2d_backward(
        x,
        kernel,
        y,
        np.empty_like(y),
        "relu",
        *geo,
        kernel_grad,
        bias_grad,
        dx_out=np.empty_like(x),
    )
    np.testing.assert_array_equal(kernel_grad, 0)
    np.testing.assert_array_equal(bias_grad, 0)


def test_compiled_conv_rejects_bad_arguments():
    x = np.zeros((1, 5, 5, 2), dtype=np.float32)
    kernel = np.zeros((3, 3, 2, 4), dtype=np.float32)
    geo = ((1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(ValueError, match="x must be 4-D"):
        _conv.conv2d_forward(x[0], kernel, None, "relu", *geo)
    with pytest.raises(
        ValueError, match="kernel.shape\\[2\\] must equal x.shape\\[3\\]"
    ):
        _conv.conv2d_forward(x, kernel[:, :, :1], None, "relu", *geo)
    with pytest.raises(TypeError, match="same dtype"):
        _conv.conv2d_forward(x, kernel.astype(np.float64), None, "relu", *geo)
    with pytest.raises(TypeError, match="float32 or float64"):
        _conv.conv2d_forward(x.astype(np.int32), kernel, None, "relu", *geo)

    with pytest.raises(ValueError, match="bias must have shape \\(4,\\)"):
        _conv.conv2d_forward(x, kernel, np.zeros(3, np.float32), "relu", *geo)
    with pytest.raises(ValueError, match="'softmax' is not fused"):
        _conv.conv2d_forward(x, kernel, None, "softmax", *geo)
    with pytest.raises(ValueError, match="unknown activation"):
        _conv.conv2d_forward(x, kernel, None, "no_such_activation", *geo)

    with pytest.raises(ValueError, match="strides must be a pair of ints >= 1"):
        _conv.conv2d_forward(x, kernel, None, "relu", (0, 1), *geo[1:])
    with pytest.raises(ValueError, match="padding must be"):
        _conv.conv2d_forward(x, kernel, None, "relu", (1, 1), "same", (1, 1))
    with pytest.raises(ValueError, match="covers 7 x 7 pixels"):
        _conv.conv2d_forward(x, kernel, None, "relu", (1, 1), ((0, 0), (0, 0)), (3, 3))
    with pytest.raises(ValueError, match="out must have shape"):
        _conv.conv2d_forward(
            x, kernel, None, "relu", *geo, out=np.empty((1, 5, 5, 4), np.float32)
        )

    y = np.zeros((1, 3, 3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="y is required"):
        _conv.conv2d_backward(
            x, kernel, None, y, "relu", *geo, np.empty_like(kernel), None
        )
    with pytest.raises(ValueError, match="dy must have the output shape"):
        _conv.conv2d_backward(
            x, kernel, y, y[:, :2], "relu", *geo, np.empty_like(kernel), None
        )
