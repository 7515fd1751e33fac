"""Pooling kernels and layers.

The NumPy reference pooling is checked against 4th-order finite
differences in float64. Max pooling uses inputs whose values are at least
0.01 apart, so that no window's maximum changes under the steps. Then the
compiled kernels are checked against the reference on both dtypes, and the
Keras layers on their shapes, padding and arguments.
"""

import numpy as np
import pytest
from _tolerances import eps, tolerance

import nnfast
from nnfast import _pool, layers
from nnfast import _reference as reference

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]

STEP = 1e-3
FD_TOL = {"rtol": 1e-7, "atol": 1e-8}

# (batch, height, width, channels, pool_size, strides, padding)
GEOMETRIES = {
    "2x2_stride_2": (2, 6, 6, 3, (2, 2), (2, 2), ((0, 0), (0, 0))),
    "odd_size_valid": (2, 7, 5, 2, (2, 2), (2, 2), ((0, 0), (0, 0))),
    "overlapping_3x3_stride_2": (2, 7, 7, 2, (3, 3), (2, 2), ((0, 0), (0, 0))),
    "same_padding_odd": (1, 5, 7, 3, (2, 3), (2, 2), ((0, 1), (1, 1))),
    "stride_1": (1, 4, 5, 2, (2, 2), (1, 1), ((0, 0), (0, 0))),
    "rectangular": (2, 6, 8, 2, (3, 2), (1, 2), ((1, 1), (0, 0))),
    "global": (3, 4, 5, 4, (4, 5), (4, 5), ((0, 0), (0, 0))),
    "window_in_padding": (1, 2, 3, 2, (2, 2), (1, 1), ((3, 2), (2, 2))),
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


def distinct_input(shape, rng, dtype=np.float64):
    """Return values 0.01 apart in random order, so no two elements tie."""
    values = 0.01 * rng.permutation(int(np.prod(shape))) - 0.005 * np.prod(shape)
    return values.reshape(shape).astype(dtype)


def output_shape(geometry):
    batch, height, width, channels, (pool_h, pool_w), (stride_h, stride_w), pads = (
        geometry
    )
    (top, bottom), (left, right) = pads
    return (
        batch,
        (height + top + bottom - pool_h) // stride_h + 1,
        (width + left + right - pool_w) // stride_w + 1,
        channels,
    )


def split(geometry, rng, dtype=np.float64):
    batch, height, width, channels, pool, strides, pads = geometry
    x = distinct_input((batch, height, width, channels), rng, dtype)
    return x, (pool, strides, pads)


# ---------------------------------------------------------------------------
# Reference against finite differences.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_reference_max_pool_gradient(name, rng):
    x, geo = split(GEOMETRIES[name], rng)
    r = rng.standard_normal(output_shape(GEOMETRIES[name]))
    argmax = np.empty(r.shape, dtype=np.int32)
    y = reference.max_pool2d_forward(x, *geo, argmax_out=argmax)
    # Windows with no input pixel give -inf and no gradient; leave them out.
    r = np.where(np.isfinite(y), r, 0.0)

    def loss():
        out = reference.max_pool2d_forward(x, *geo)
        return float(np.sum(np.where(np.isfinite(out), out, 0.0) * r))

    dx = reference.max_pool2d_backward(r, argmax, *geo, np.empty_like(x))
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), **FD_TOL)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_reference_avg_pool_gradient(name, rng):
    x, geo = split(GEOMETRIES[name], rng)
    r = rng.standard_normal(output_shape(GEOMETRIES[name]))

    def loss():
        return float(np.sum(reference.avg_pool2d_forward(x, *geo) * r))

    dx = reference.avg_pool2d_backward(r, *geo, np.empty_like(x))
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), **FD_TOL)


def test_reference_pooling_hand_computed():
    x = np.array([[1.0, 5.0, 2.0], [4.0, 3.0, 9.0], [0.0, 8.0, 7.0]]).reshape(
        1, 3, 3, 1
    )
    # "same" 2 x 2 windows with stride 2 on 3 x 3: one padding row and
    # column at the bottom and right, which take no part.
    geo = ((2, 2), (2, 2), ((0, 1), (0, 1)))
    argmax = np.empty((1, 2, 2, 1), dtype=np.int32)
    y = reference.max_pool2d_forward(x, *geo, argmax_out=argmax)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5.0, 9.0], [8.0, 7.0]])
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[1, 5], [7, 8]])
    y = reference.avg_pool2d_forward(x, *geo)
    np.testing.assert_allclose(y[0, :, :, 0], [[13 / 4, 11 / 2], [8 / 2, 7.0]])


def test_reference_max_pool_takes_first_of_ties():
    x = np.ones((1, 2, 2, 1))
    argmax = np.empty((1, 1, 1, 1), dtype=np.int32)
    reference.max_pool2d_forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)), argmax_out=argmax)
    assert argmax.item() == 0


# ---------------------------------------------------------------------------
# Compiled against the reference.
# ---------------------------------------------------------------------------

LARGE = {"mnist_first_pool": (8, 26, 26, 32, (2, 2), (2, 2), ((0, 0), (0, 0)))}
ALL_GEOMETRIES = {**GEOMETRIES, **LARGE}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(ALL_GEOMETRIES))
def test_compiled_max_pool_matches_reference(name, dtype, rng):
    x, geo = split(ALL_GEOMETRIES[name], rng, dtype)
    shape = output_shape(ALL_GEOMETRIES[name])
    expected_arg = np.empty(shape, dtype=np.int32)
    expected = reference.max_pool2d_forward(x, *geo, argmax_out=expected_arg)
    arg = np.empty(shape, dtype=np.int32)
    y = _pool.max_pool2d_forward(x, *geo, argmax_out=arg)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(arg, expected_arg)
    np.testing.assert_array_equal(_pool.max_pool2d_forward(x, *geo), expected)

    dy = rng.standard_normal(shape).astype(dtype)
    expected_dx = reference.max_pool2d_backward(
        dy, expected_arg, *geo, np.empty_like(x)
    )
    dx = _pool.max_pool2d_backward(dy, arg, *geo, np.full_like(x, np.nan))
    # Overlapping windows add in the same order on both paths, up to rounding.
    np.testing.assert_allclose(dx, expected_dx, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(ALL_GEOMETRIES))
def test_compiled_avg_pool_matches_reference(name, dtype, rng):
    x, geo = split(ALL_GEOMETRIES[name], rng, dtype)
    x = rng.standard_normal(x.shape).astype(dtype)
    window = int(np.prod(geo[0]))
    tol = dict(tolerance(dtype), atol=4 * window * eps(dtype) * float(np.abs(x).max()))
    expected = reference.avg_pool2d_forward(x, *geo)
    np.testing.assert_allclose(_pool.avg_pool2d_forward(x, *geo), expected, **tol)

    dy = rng.standard_normal(expected.shape).astype(dtype)
    expected_dx = reference.avg_pool2d_backward(dy, *geo, np.empty_like(x))
    dx = _pool.avg_pool2d_backward(dy, *geo, np.full_like(x, np.nan))
    tol = dict(tolerance(dtype), atol=4 * window * eps(dtype) * float(np.abs(dy).max()))
    np.testing.assert_allclose(dx, expected_dx, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_compiled_pool_non_contiguous_and_out(dtype, rng):
    geometry = GEOMETRIES["overlapping_3x3_stride_2"]
    x, geo = split(geometry, rng, dtype)
    strided = np.asfortranarray(x)
    out = np.asfortranarray(np.empty(output_shape(geometry), dtype=dtype))
    result = _pool.max_pool2d_forward(strided, *geo, out=out)
    assert result is out
    np.testing.assert_array_equal(out, reference.max_pool2d_forward(x, *geo))
    out = np.empty(output_shape(geometry), dtype=dtype)[..., ::1]
    np.testing.assert_allclose(
        _pool.avg_pool2d_forward(x[:, :, ::-1], *geo, out=out),
        reference.avg_pool2d_forward(x[:, :, ::-1].copy(), *geo),
        **tolerance(dtype),
    )


def test_compiled_pool_thread_count_invariant(rng):
    x, geo = split(ALL_GEOMETRIES["mnist_first_pool"], rng, np.float32)
    shape = output_shape(ALL_GEOMETRIES["mnist_first_pool"])
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    for n_threads in (1, 2, 3):
        arg = np.empty(shape, dtype=np.int32)
        y = _pool.max_pool2d_forward(x, *geo, argmax_out=arg, n_threads=n_threads)
        dx = _pool.max_pool2d_backward(
            dy, arg, *geo, np.empty_like(x), n_threads=n_threads
        )
        avg = _pool.avg_pool2d_forward(x, *geo, n_threads=n_threads)
        davg = _pool.avg_pool2d_backward(
            dy, *geo, np.empty_like(x), n_threads=n_threads
        )
        results.append((y, arg, dx, avg, davg))
    for result in results[1:]:
        for actual, first in zip(result, results[0]):
            np.testing.assert_array_equal(actual, first)


def test_compiled_pool_rejects_bad_arguments():
    x = np.zeros((1, 4, 4, 2), dtype=np.float32)
    geo = ((2, 2), (2, 2), ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="x must be 4-D"):
        _pool.max_pool2d_forward(x[0], *geo)
    with pytest.raises(ValueError, match="pool_size must be a pair of ints >= 1"):
        _pool.max_pool2d_forward(x, (0, 2), (2, 2), geo[2])
    with pytest.raises(ValueError, match="larger than the padded input"):
        _pool.avg_pool2d_forward(x, (5, 2), (1, 1), geo[2])
    with pytest.raises(TypeError, match="argmax_out"):
        _pool.max_pool2d_forward(x, *geo, argmax_out=np.empty((1, 2, 2, 2), np.int64))
    y = np.zeros((1, 2, 2, 2), dtype=np.float32)
    with pytest.raises(TypeError, match="argmax must have dtype int32"):
        _pool.max_pool2d_backward(
            y, np.zeros(y.shape, np.int64), *geo, np.empty_like(x)
        )
    with pytest.raises(ValueError, match="dy must have the output shape"):
        _pool.avg_pool2d_backward(y[:, :1], *geo, np.empty_like(x))


# ---------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("padding, expected", [("valid", (2, 3)), ("same", (3, 4))])
def test_max_pooling_output_shape(padding, expected):
    layer = layers.MaxPooling2D(pool_size=2, padding=padding)
    y = layer(np.zeros((2, 5, 7, 3), dtype=np.float32))
    assert y.shape == (2,) + expected + (3,)
    assert layer.strides == (2, 2)


def test_max_pooling_same_pads_bottom_right():
    # 3 x 3 input, 2 x 2 windows, stride 2, "same": windows start at rows
    # and columns 0 and 2, so the padding row and column lie after the input.
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    y = layers.MaxPooling2D(2, padding="same")(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 5], [7, 8]])
    y = layers.AveragePooling2D(2, padding="same")(x)
    np.testing.assert_allclose(y[0, :, :, 0], [[2.0, 3.5], [6.5, 8.0]])


def test_global_pooling_layers(rng):
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(
        layers.GlobalAveragePooling2D()(x), x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(layers.GlobalMaxPooling2D()(x), x.max(axis=(1, 2)))
    kept = layers.GlobalMaxPooling2D(keepdims=True)(x)
    assert kept.shape == (3, 1, 1, 6)
    steps = x[:, 0]
    np.testing.assert_allclose(
        layers.GlobalAveragePooling1D()(steps), steps.mean(axis=1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(layers.GlobalMaxPooling1D()(steps), steps.max(axis=1))


def test_pooling_1d_layers(rng):
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    y = layers.MaxPooling1D(pool_size=2)(x)
    np.testing.assert_array_equal(y, np.maximum(x[:, 0:6:2], x[:, 1:7:2]))
    y = layers.AveragePooling1D(pool_size=3, strides=2, padding="same")(x)
    assert y.shape == (2, 4, 3)
    np.testing.assert_allclose(y[:, 0], x[:, 0:2].mean(axis=1), rtol=1e-6)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize(
    "cls",
    [
        layers.MaxPooling2D,
        layers.AveragePooling2D,
        layers.GlobalAveragePooling2D,
        layers.GlobalMaxPooling2D,
    ],
)
def test_pooling_layer_backward(cls, backend, rng):
    # The layer's backward pass is the kernel's, on the shapes it passes.
    nnfast.set_backend(backend)
    try:
        layer = cls()
        x = distinct_input((2, 6, 4, 3), rng, np.float32)
        layer._ensure_built(x.shape[1:])
        cache = {}
        y = layer.forward(x, True, cache)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(dy, cache, True)
        # sum(dy * y) is linear in x for fixed window choices, so its gradient
        # is recovered exactly by a difference over a small step.
        direction = rng.standard_normal(x.shape).astype(np.float32)
        step = np.float32(1e-3)
        plus = layer.forward(x + step * direction, False, {})
        minus = layer.forward(x - step * direction, False, {})
        slope = float(np.sum(dy * (plus - minus))) / (2 * float(step))
        np.testing.assert_allclose(slope, float(np.sum(dx * direction)), rtol=1e-3)
        assert layer.backward(dy, cache, False) is None
    finally:
        nnfast.set_backend("compiled")


def test_pooling_layer_arguments():
    with pytest.raises(ValueError, match="every entry of `pool_size` must be >= 1"):
        layers.MaxPooling2D(pool_size=0)
    with pytest.raises(ValueError, match="every entry of `strides` must be >= 1"):
        layers.AveragePooling2D(strides=(1, 0))
    with pytest.raises(ValueError, match="`padding` must be one of 'valid', 'same'"):
        layers.MaxPooling2D(padding="full")
    with pytest.raises(ValueError, match="channels_last"):
        layers.MaxPooling2D(data_format="channels_first")
    with pytest.raises(ValueError, match="expects inputs of shape"):
        layers.MaxPooling2D()(np.zeros((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="input is too small"):
        layers.MaxPooling2D(pool_size=3)(np.zeros((1, 2, 2, 1), dtype=np.float32))
    config = layers.MaxPooling2D(pool_size=3, strides=1, padding="SAME").get_config()
    assert config["pool_size"] == [3, 3]
    assert config["strides"] == [1, 1]
    assert config["padding"] == "same"
    assert layers.MaxPooling2D.from_config(config).pool_size == (3, 3)
