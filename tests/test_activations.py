"""Compiled activation kernels against the NumPy reference."""

import warnings

import numpy as np
import pytest
from _tolerances import eps, tolerance

from nnfast import _activations as compiled
from nnfast import _reference as reference

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
ACTIVATIONS = list(reference.ACTIVATIONS)

# One row or column, odd and prime sizes, tall and wide, and sizes past the
# parallel thresholds (4,096 elements for softmax, sigmoid and tanh, 65,536
# for linear and relu) so that the threaded loops run too.
SHAPES = [
    (1, 1),
    (1, 7),
    (7, 1),
    (3, 5),
    (13, 17),
    (2, 257),
    (257, 3),
    (97, 53),
    (1031, 67),
]

LAYOUTS = ["c", "fortran", "transposed", "strided", "reversed", "readonly"]


def as_layout(array, layout):
    """Return a 2-D array equal to ``array`` with the named memory layout."""
    if layout == "c":
        return np.ascontiguousarray(array)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "transposed":
        return np.ascontiguousarray(array.T).T
    if layout == "strided":
        rows, cols = array.shape
        padded = np.zeros((2 * rows, 3 * cols), dtype=array.dtype)
        padded[::2, ::3] = array
        return padded[::2, ::3]
    if layout == "reversed":
        return np.ascontiguousarray(array[::-1, ::-1])[::-1, ::-1]
    if layout == "readonly":
        view = array.copy()
        view.flags.writeable = False
        return view
    raise ValueError(f"unknown layout {layout!r}")


def assert_matches_reference(name, actual, expected, dy=None):
    """Compare a compiled result with the reference result for activation ``name``.

    linear and relu copy or select values, so they must match exactly. The
    others use exp or tanh, which may round differently in glibc and NumPy,
    so they get the per-dtype tolerance. For the softmax backward pass,
    dx_j = y_j (dy_j - sum_k dy_k y_k) can cancel, so the atol is scaled by
    the error of that sum: n_cols * eps * max|dy| (because 0 <= y <= 1).
    """
    if name in ("linear", "relu"):
        np.testing.assert_array_equal(actual, expected)
        return
    tol = dict(tolerance(actual.dtype))
    if dy is not None and name == "softmax":
        n_cols = actual.shape[-1]
        scaled = 4 * n_cols * eps(actual.dtype) * float(np.max(np.abs(dy), initial=0.0))
        tol["atol"] = max(tol["atol"], scaled)
    np.testing.assert_allclose(actual, expected, **tol)


# ---------------------------------------------------------------------------
# Agreement with the reference.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_matches_reference(name, shape, dtype, rng):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    actual = compiled.activation_forward(name, x)
    expected = reference.activation_forward(name, x)
    assert actual.dtype == dtype
    assert actual.shape == shape
    assert_matches_reference(name, actual, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_matches_reference(name, shape, dtype, rng):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    y = reference.activation_forward(name, x)
    dy = rng.standard_normal(shape).astype(dtype)
    actual = compiled.activation_backward(name, None, y, dy)
    expected = reference.activation_backward(name, None, y, dy)
    assert actual.dtype == dtype
    assert_matches_reference(name, actual, expected, dy=dy)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_any_layout(name, layout, dtype, rng):
    x = (3 * rng.standard_normal((37, 11))).astype(dtype)
    actual = compiled.activation_forward(name, as_layout(x, layout))
    assert actual.flags.c_contiguous
    assert_matches_reference(name, actual, reference.activation_forward(name, x))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_any_layout(name, layout, dtype, rng):
    x = (3 * rng.standard_normal((37, 11))).astype(dtype)
    y = reference.activation_forward(name, x)
    dy = rng.standard_normal(x.shape).astype(dtype)
    actual = compiled.activation_backward(
        name, None, as_layout(y, layout), as_layout(dy, layout)
    )
    expected = reference.activation_backward(name, None, y, dy)
    assert_matches_reference(name, actual, expected, dy=dy)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(9,), (1,), (2, 3, 5), (4, 1, 3, 2)], ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_other_ranks(name, shape, dtype, rng):
    # Softmax normalizes along the last axis whatever the rank.
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    y = compiled.activation_forward(name, x)
    assert_matches_reference(name, y, reference.activation_forward(name, x))
    dy = rng.standard_normal(shape).astype(dtype)
    dx = compiled.activation_backward(name, x, y, dy)
    assert_matches_reference(name, dx, reference.activation_backward(name, x, y, dy), dy=dy)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_elementwise_zero_dim(name):
    x = np.array(-0.5, dtype=np.float64)
    if name == "softmax":
        with pytest.raises(ValueError, match="at least one axis"):
            compiled.activation_forward(name, x)
        return
    y = compiled.activation_forward(name, x)
    assert y.shape == ()
    np.testing.assert_allclose(y, reference.activation_forward(name, x), rtol=1e-15)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0), (3, 0, 2)], ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_empty_input(name, shape):
    x = np.empty(shape, dtype=np.float32)
    y = compiled.activation_forward(name, x)
    assert y.shape == shape
    dx = compiled.activation_backward(name, None, y, x)
    assert dx.shape == shape


# ---------------------------------------------------------------------------
# Threads.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_result_independent_of_threads(name, dtype, rng):
    # 70,000 elements are past every parallel threshold, and each thread
    # writes whole elements or whole rows, so results must match bit for bit.
    x = (3 * rng.standard_normal((1000, 70))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y1 = compiled.activation_forward(name, x, n_threads=1)
    y2 = compiled.activation_forward(name, x, n_threads=2)
    np.testing.assert_array_equal(y1, y2)
    dx1 = compiled.activation_backward(name, None, y1, dy, n_threads=1)
    dx2 = compiled.activation_backward(name, None, y1, dy, n_threads=2)
    np.testing.assert_array_equal(dx1, dx2)


# ---------------------------------------------------------------------------
# Outputs.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_writes_out(name, dtype, rng):
    x = rng.standard_normal((6, 5)).astype(dtype)
    out = np.full_like(x, np.nan)
    result = compiled.activation_forward(name, x, out=out)
    assert result is out
    np.testing.assert_array_equal(out, compiled.activation_forward(name, x))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_strided_out(name, rng):
    x = rng.standard_normal((6, 5))
    out = np.asfortranarray(np.full_like(x, np.nan))
    result = compiled.activation_forward(name, x, out=out)
    assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, compiled.activation_forward(name, x))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_in_place(name, rng):
    x = rng.standard_normal((6, 5))
    expected = compiled.activation_forward(name, x)
    result = compiled.activation_forward(name, x, out=x)
    assert result is x
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("target", ["y", "dy"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_in_place(name, target, rng):
    x = rng.standard_normal((6, 5))
    y = compiled.activation_forward(name, x)
    dy = rng.standard_normal(x.shape)
    expected = compiled.activation_backward(name, None, y, dy)
    out = y if target == "y" else dy
    result = compiled.activation_backward(name, None, y, dy, out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_overlapping_out(name, rng):
    # out is x shifted by one row, so an elementwise loop writing out in
    # place would read values it has already overwritten.
    buffer = rng.standard_normal((7, 5))
    x = buffer[:-1]
    expected = compiled.activation_forward(name, x.copy())
    out = buffer[1:]
    compiled.activation_forward(name, x, out=out)
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------
# Argument errors.
# ---------------------------------------------------------------------------

def test_out_wrong_shape_message():
    x = np.zeros((4, 3), dtype=np.float32)
    out = np.zeros((4, 2), dtype=np.float32)
    expected = (
        r"activation_forward: out must have shape \(4, 3\) and dtype float32, "
        r"got \(4, 2\) float32"
    )
    with pytest.raises(ValueError, match=expected):
        compiled.activation_forward("relu", x, out=out)


def test_out_wrong_dtype_message():
    x = np.zeros((4, 3), dtype=np.float32)
    out = np.zeros((4, 3), dtype=np.float64)
    expected = (
        r"activation_forward: out must have shape \(4, 3\) and dtype float32, "
        r"got \(4, 3\) float64"
    )
    with pytest.raises(TypeError, match=expected):
        compiled.activation_forward("relu", x, out=out)


def test_out_read_only():
    x = np.zeros((4, 3))
    out = np.zeros((4, 3))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        compiled.activation_forward("tanh", x, out=out)


def test_backward_out_wrong_shape():
    y = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"out must have shape \(4, 3\)"):
        compiled.activation_backward("tanh", None, y, y, out=np.zeros((3, 4)))


def test_backward_mixed_dtypes():
    y = np.zeros((4, 3), dtype=np.float32)
    dy = np.zeros((4, 3), dtype=np.float64)
    with pytest.raises(TypeError, match="got float32 and float64"):
        compiled.activation_backward("sigmoid", None, y, dy)


def test_backward_mismatched_shapes():
    y = np.zeros((4, 3))
    dy = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"got \(4, 3\) and \(3, 4\)"):
        compiled.activation_backward("sigmoid", None, y, dy)


def test_unknown_activation_lists_names():
    x = np.zeros(3)
    expected = (
        "unknown activation 'mish', expected one of linear, relu, sigmoid, tanh, softmax, "
        "leaky_relu, elu, selu, gelu, gelu_approximate, silu, softplus, softsign, "
        "hard_sigmoid, exponential, log_softmax"
    )
    with pytest.raises(ValueError, match=expected):
        compiled.activation_forward("mish", x)
    with pytest.raises(ValueError, match=expected):
        compiled.activation_backward("mish", None, x, x)


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128, np.bool_])
def test_unsupported_dtype(dtype):
    x = np.zeros(3, dtype=dtype)
    with pytest.raises(TypeError, match=f"x must have dtype float32 or float64, got {np.dtype(dtype)}"):
        compiled.activation_forward("relu", x)


def test_non_array_input():
    with pytest.raises(TypeError, match="x must be a numpy.ndarray, got list"):
        compiled.activation_forward("relu", [1.0, 2.0])


# ---------------------------------------------------------------------------
# Extreme values.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_saturates_without_warnings(dtype):
    x = np.array([1000, -1000, np.inf, -np.inf, 88.8, -104], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            y = compiled.activation_forward("sigmoid", x)
    assert y[0] == 1.0
    assert y[1] == 0.0
    assert y[2] == 1.0
    assert y[3] == 0.0
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ["linear", "relu", "sigmoid", "tanh"])
def test_nan_propagates_elementwise(name, dtype):
    x = np.array([np.nan, 1.0, -1.0], dtype=dtype)
    y = compiled.activation_forward(name, x)
    assert np.isnan(y[0])
    assert not np.isnan(y[1:]).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_infinities_elementwise(dtype):
    x = np.array([np.inf, -np.inf], dtype=dtype)
    np.testing.assert_array_equal(compiled.activation_forward("linear", x), [np.inf, -np.inf])
    np.testing.assert_array_equal(compiled.activation_forward("relu", x), [np.inf, 0.0])
    np.testing.assert_array_equal(compiled.activation_forward("tanh", x), [1.0, -1.0])
    np.testing.assert_array_equal(compiled.activation_forward("sigmoid", x), [1.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_relu_backward_nan(dtype):
    # A NaN output fails y > 0, so its gradient is 0, as in the reference. A
    # NaN upstream gradient on an active unit passes through.
    y = np.array([np.nan, 1.0, 0.0], dtype=dtype)
    dy = np.array([5.0, np.nan, np.nan], dtype=dtype)
    dx = compiled.activation_backward("relu", None, y, dy)
    np.testing.assert_array_equal(dx, reference.activation_backward("relu", None, y, dy))
    assert dx[0] == 0.0
    assert np.isnan(dx[1])
    assert dx[2] == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_special_rows(dtype):
    big = np.finfo(dtype).max / 2
    x = np.array(
        [
            [1e4, 0.0, -1e4],  # large logits stay finite after the max is subtracted
            [big, big, -big],  # huge but finite
            [np.nan, 0.0, 1.0],  # NaN spreads over its row
            [np.inf, 0.0, 1.0],  # inf - inf is NaN, so the row is NaN
            [-np.inf, 0.0, 0.0],  # exp(-inf) is 0
            [-np.inf, -np.inf, -np.inf],  # -inf - -inf is NaN
        ],
        dtype=dtype,
    )
    y = compiled.activation_forward("softmax", x)
    np.testing.assert_array_equal(y[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(y[1], [0.5, 0.5, 0.0], rtol=4 * eps(dtype))
    assert np.isnan(y[2]).all()
    assert np.isnan(y[3]).all()
    np.testing.assert_array_equal(y[4], [0.0, 0.5, 0.5])
    assert np.isnan(y[5]).all()
    with np.errstate(all="ignore"):
        expected = reference.activation_forward("softmax", x)
    np.testing.assert_allclose(y, expected, equal_nan=True, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_subnormals_not_flushed(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([tiny, 3 * tiny], dtype=dtype)
    ones = np.ones_like(x)
    np.testing.assert_array_equal(compiled.activation_forward("linear", x), x)
    np.testing.assert_array_equal(compiled.activation_forward("relu", x), x)
    # tanh(x) rounds to x for |x| this small.
    np.testing.assert_array_equal(compiled.activation_forward("tanh", x), x)
    np.testing.assert_array_equal(compiled.activation_backward("linear", None, ones, x), x)
    np.testing.assert_array_equal(compiled.activation_backward("relu", None, x, ones), ones)
    # y (1 - y) rounds to y.
    np.testing.assert_array_equal(compiled.activation_backward("sigmoid", None, x, ones), x)
    # exp(-100) and exp(-740) are subnormal in float32 and float64.
    far = -100.0 if dtype == np.float32 else -740.0
    y = compiled.activation_forward("softmax", np.array([[0.0, far]], dtype=dtype))
    assert 0.0 < y[0, 1] < np.finfo(dtype).tiny


# ---------------------------------------------------------------------------
# Properties over arbitrary values, infinities, NaN and subnormals included.
# ---------------------------------------------------------------------------

def float_arrays(dtype, min_dims=1):
    width = 32 if dtype == np.float32 else 64
    return hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=1, max_side=9),
        elements=st.floats(width=width, allow_nan=True, allow_infinity=True,
                           allow_subnormal=True),
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_forward_property(name, dtype, data):
    # Where the reference is finite the values must agree, and NaN and inf
    # must appear in the same places: assert_allclose checks both.
    x = data.draw(float_arrays(dtype))
    actual = compiled.activation_forward(name, x)
    with np.errstate(all="ignore"):
        expected = reference.activation_forward(name, x)
    np.testing.assert_allclose(actual, expected, equal_nan=True, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ["linear", "relu", "sigmoid", "tanh"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_backward_property(name, dtype, data):
    # The elementwise backward passes compute the reference formula with the
    # same operations in the same order, so they agree to the last bit, NaN
    # and inf included, on any y and dy.
    y = data.draw(float_arrays(dtype))
    dy = data.draw(hnp.arrays(dtype=dtype, shape=y.shape,
                              elements=st.floats(width=y.dtype.itemsize * 8)))
    actual = compiled.activation_backward(name, None, y, dy)
    with np.errstate(all="ignore"):
        expected = reference.activation_backward(name, None, y, dy)
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_softmax_backward_property(dtype, data):
    # y is a real softmax output and dy is finite, because for arbitrary
    # values the reference's float32 pairwise sum may overflow where the
    # compiled double sum does not, so inf would land in different places.
    width = 32 if dtype == np.float32 else 64
    x = data.draw(hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
        elements=st.floats(-1e6, 1e6, width=width, allow_subnormal=True),
    ))
    dy = data.draw(hnp.arrays(dtype=dtype, shape=x.shape,
                              elements=st.floats(-1e6, 1e6, width=width)))
    y = reference.activation_forward("softmax", x)
    actual = compiled.activation_backward("softmax", None, y, dy)
    expected = reference.activation_backward("softmax", None, y, dy)
    assert_matches_reference("softmax", actual, expected, dy=dy)
