"""Pooling kernels.

The NumPy reference pooling is checked against 4th-order finite
differences in float64. Max pooling uses inputs whose values are at least
0.01 apart, so that no window's maximum changes under the steps. Then the
compiled kernels are checked against the reference on both dtypes.
"""

import numpy as np
import pytest
from _tolerances import eps, tolerance

from nnfast import _pool
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
        grad.flat[i] = (-values[2] + 8 * values[1] - 8 * values[-1] + values[-2]) / (12 * step)
    return grad


def distinct_input(shape, rng, dtype=np.float64):
    """Return values 0.01 apart in random order, so no two elements tie."""
    values = 0.01 * rng.permutation(int(np.prod(shape))) - 0.005 * np.prod(shape)
    return values.reshape(shape).astype(dtype)


def output_shape(geometry):
    batch, height, width, channels, (pool_h, pool_w), (stride_h, stride_w), pads = geometry
    (top, bottom), (left, right) = pads
    return (batch, (height + top + bottom - pool_h) // stride_h + 1,
            (width + left + right - pool_w) // stride_w + 1, channels)


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
    x = np.array([[1.0, 5.0, 2.0], [4.0, 3.0, 9.0], [0.0, 8.0, 7.0]]).reshape(1, 3, 3, 1)
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
    expected_dx = reference.max_pool2d_backward(dy, expected_arg, *geo, np.empty_like(x))
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
    np.testing.assert_allclose(_pool.avg_pool2d_forward(x[:, :, ::-1], *geo, out=out),
                               reference.avg_pool2d_forward(x[:, :, ::-1].copy(), *geo),
                               **tolerance(dtype))


def test_compiled_pool_thread_count_invariant(rng):
    x, geo = split(ALL_GEOMETRIES["mnist_first_pool"], rng, np.float32)
    shape = output_shape(ALL_GEOMETRIES["mnist_first_pool"])
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    for n_threads in (1, 2, 3):
        arg = np.empty(shape, dtype=np.int32)
        y = _pool.max_pool2d_forward(x, *geo, argmax_out=arg, n_threads=n_threads)
        dx = _pool.max_pool2d_backward(dy, arg, *geo, np.empty_like(x), n_threads=n_threads)
        avg = _pool.avg_pool2d_forward(x, *geo, n_threads=n_threads)
        davg = _pool.avg_pool2d_backward(dy, *geo, np.empty_like(x), n_threads=n_threads)
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
        _pool.max_pool2d_backward(y, np.zeros(y.shape, np.int64), *geo, np.empty_like(x))
    with pytest.raises(ValueError, match="dy must have the output shape"):
        _pool.avg_pool2d_backward(y[:, :1], *geo, np.empty_like(x))

