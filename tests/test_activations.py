"""Compiled activation kernels against the NumPy reference."""

import warnings

import numpy as np
import pytest
from _tolerances import eps, tolerance

import nnfast
from nnfast import _activations as compiled
from nnfast import _reference as reference
from nnfast import activations, layers

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
ACTIVATIONS = list(reference.ALL_ACTIVATIONS)
ROW_WISE = ("softmax", "log_softmax")
# Activations whose results select or copy values, or come from the same
# arithmetic in the same order in both paths, so they match bit for bit.
EXACT_FORWARD = ("linear", "relu", "leaky_relu", "softsign", "hard_sigmoid")
EXACT_BACKWARD = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "softsign",
                  "hard_sigmoid", "exponential")

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

    Forward results (``dy`` None) of EXACT_FORWARD activations and backward
    results of EXACT_BACKWARD ones must match exactly. The others use exp,
    erfc, tanh or log1p, which may round differently in glibc and NumPy, so
    they get the per-dtype tolerance. The backward passes of softmax,
    dx_j = y_j (dy_j - sum_k dy_k y_k), and of log_softmax,
    dx_j = dy_j - exp(y_j) sum_k dy_k, can cancel, so the atol is scaled by
    the error of that sum: n_cols * eps * max|dy| (because 0 <= y <= 1, or
    0 <= exp(y) <= 1).
    """
    exact = EXACT_FORWARD if dy is None else EXACT_BACKWARD
    if name in exact:
        np.testing.assert_array_equal(actual, expected)
        return
    tol = dict(tolerance(actual.dtype))
    if dy is not None and name in ROW_WISE:
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
    actual = compiled.activation_backward(name, x, y, dy)
    expected = reference.activation_backward(name, x, y, dy)
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
        name, as_layout(x, layout), as_layout(y, layout), as_layout(dy, layout)
    )
    expected = reference.activation_backward(name, x, y, dy)
    assert_matches_reference(name, actual, expected, dy=dy)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(9,), (1,), (2, 3, 5), (4, 1, 3, 2)], ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_other_ranks(name, shape, dtype, rng):
    # Softmax and log_softmax work along the last axis whatever the rank.
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    y = compiled.activation_forward(name, x)
    assert_matches_reference(name, y, reference.activation_forward(name, x))
    dy = rng.standard_normal(shape).astype(dtype)
    dx = compiled.activation_backward(name, x, y, dy)
    assert_matches_reference(name, dx, reference.activation_backward(name, x, y, dy), dy=dy)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_elementwise_zero_dim(name):
    x = np.array(-0.5, dtype=np.float64)
    if name in ROW_WISE:
        with pytest.raises(ValueError, match=f"{name} needs an array with at least one axis"):
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
    dx = compiled.activation_backward(name, x, y, x)
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
    dx1 = compiled.activation_backward(name, x, y1, dy, n_threads=1)
    dx2 = compiled.activation_backward(name, x, y1, dy, n_threads=2)
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


@pytest.mark.parametrize("target", ["x", "y", "dy"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_in_place(name, target, rng):
    x = rng.standard_normal((6, 5))
    y = compiled.activation_forward(name, x)
    dy = rng.standard_normal(x.shape)
    expected = compiled.activation_backward(name, x, y, dy)
    out = {"x": x, "y": y, "dy": dy}[target]
    result = compiled.activation_backward(name, x, y, dy, out=out)
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
@pytest.mark.parametrize("name", EXACT_BACKWARD)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_backward_property(name, dtype, data):
    # These backward passes compute the reference formula with the same
    # operations in the same order, so they agree to the last bit, NaN and
    # inf included, on any saved array (x or y, as the activation reads) and
    # any dy.
    saved = data.draw(float_arrays(dtype))
    dy = data.draw(hnp.arrays(dtype=dtype, shape=saved.shape,
                              elements=st.floats(width=saved.dtype.itemsize * 8)))
    x, y = (None, saved) if name in reference.OUTPUT_DERIVATIVE else (saved, None)
    actual = compiled.activation_backward(name, x, y, dy)
    with np.errstate(all="ignore"):
        expected = reference.activation_backward(name, x, y, dy)
    np.testing.assert_array_equal(actual, expected)


SMOOTH_FROM_INPUT = ["elu", "selu", "gelu", "gelu_approximate", "silu", "softplus"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", SMOOTH_FROM_INPUT)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_backward_from_input_property(name, dtype, data):
    # Any x, infinities, NaN and subnormals included, and a finite dy: the
    # derivatives agree within the tolerance, and NaN and inf land in the
    # same places. dy is bounded because where one path's derivative
    # underflows to 0 and the other's is a subnormal, an inf dy would give
    # NaN in one and inf in the other.
    width = 32 if dtype == np.float32 else 64
    x = data.draw(float_arrays(dtype))
    dy = data.draw(hnp.arrays(dtype=dtype, shape=x.shape,
                              elements=st.floats(-1e6, 1e6, width=width)))
    actual = compiled.activation_backward(name, x, None, dy)
    with np.errstate(all="ignore"):
        expected = reference.activation_backward(name, x, None, dy)
    np.testing.assert_allclose(actual, expected, equal_nan=True, **tolerance(dtype))


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


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_log_softmax_backward_property(dtype, data):
    # As for softmax: y is a real log_softmax output and dy is finite.
    width = 32 if dtype == np.float32 else 64
    x = data.draw(hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
        elements=st.floats(-1e6, 1e6, width=width, allow_subnormal=True),
    ))
    dy = data.draw(hnp.arrays(dtype=dtype, shape=x.shape,
                              elements=st.floats(-1e6, 1e6, width=width)))
    y = reference.activation_forward("log_softmax", x)
    actual = compiled.activation_backward("log_softmax", None, y, dy)
    expected = reference.activation_backward("log_softmax", None, y, dy)
    assert_matches_reference("log_softmax", actual, expected, dy=dy)


# ---------------------------------------------------------------------------
# The activations after softmax: parameters, saved arrays and limits.
# ---------------------------------------------------------------------------

KERNEL_MODULES = [compiled, reference]
KERNEL_IDS = ["compiled", "reference"]

# f(+inf) and f(-inf), where the plain formula would often give NaN.
FORWARD_LIMITS = {
    "leaky_relu": (np.inf, -np.inf),
    "elu": (np.inf, -1.0),
    "selu": (np.inf, -reference.SELU_SCALE * reference.SELU_ALPHA),
    "gelu": (np.inf, 0.0),
    "gelu_approximate": (np.inf, 0.0),
    "silu": (np.inf, 0.0),
    "softplus": (np.inf, 0.0),
    "softsign": (1.0, -1.0),
    "hard_sigmoid": (1.0, 0.0),
    "exponential": (np.inf, 0.0),
}

# f'(+inf) and f'(-inf), with dy = 1.
BACKWARD_LIMITS = {
    "leaky_relu": (1.0, 0.2),
    "elu": (1.0, 0.0),
    "selu": (reference.SELU_SCALE, 0.0),
    "gelu": (1.0, 0.0),
    "gelu_approximate": (1.0, 0.0),
    "silu": (1.0, 0.0),
    "softplus": (1.0, 0.0),
    "softsign": (0.0, 0.0),
    "hard_sigmoid": (0.0, 0.0),
}


@pytest.mark.parametrize("module", KERNEL_MODULES, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(FORWARD_LIMITS))
def test_forward_limits_at_infinity(name, dtype, module):
    x = np.array([np.inf, -np.inf], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            y = module.activation_forward(name, x)
    at_plus_inf, at_minus_inf = FORWARD_LIMITS[name]
    np.testing.assert_allclose(y[0], at_plus_inf, rtol=4 * eps(dtype))
    np.testing.assert_allclose(y[1], at_minus_inf, rtol=4 * eps(dtype))


@pytest.mark.parametrize("module", KERNEL_MODULES, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(BACKWARD_LIMITS))
def test_backward_limits_at_infinity(name, dtype, module):
    x = np.array([np.inf, -np.inf], dtype=dtype)
    dy = np.ones_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore", invalid="raise", divide="raise"):
            dx = module.activation_backward(name, x, None, dy)
    at_plus_inf, at_minus_inf = BACKWARD_LIMITS[name]
    np.testing.assert_allclose(dx[0], at_plus_inf, rtol=4 * eps(dtype))
    np.testing.assert_allclose(dx[1], at_minus_inf, rtol=4 * eps(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(BACKWARD_LIMITS))
def test_large_inputs_stay_finite(name, dtype):
    # Inputs of +-1000 overflow exp(x) and x^3 in float32 (and exp(-x^2/2)
    # underflows), yet every result is finite and the compiled kernels
    # raise no floating-point warnings.
    x = np.array([1000.0, -1000.0, 30.0, -30.0], dtype=dtype)
    dy = np.ones_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            y = compiled.activation_forward(name, x)
            dx = compiled.activation_backward(name, x, None, dy)
        expected_y = reference.activation_forward(name, x)
        expected_dx = reference.activation_backward(name, x, None, dy)
    assert np.isfinite(y).all()
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(y, expected_y, **tolerance(dtype))
    np.testing.assert_allclose(dx, expected_dx, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(FORWARD_LIMITS) + ["log_softmax"])
def test_nan_propagates_forward(name, dtype):
    x = np.array([[np.nan, 1.0, -1.0]], dtype=dtype)
    y = compiled.activation_forward(name, x)
    with np.errstate(all="ignore"):
        expected = reference.activation_forward(name, x)
    assert np.isnan(y[0, 0])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nan_input_backward(dtype):
    # A NaN input makes the derivative NaN, except in the piecewise linear
    # activations: their comparisons fail for NaN, so leaky_relu takes the
    # negative branch (slope * dy) and hard_sigmoid the flat one (0), as in
    # the reference. relu behaves the same way on a NaN output.
    x = np.array([np.nan], dtype=dtype)
    dy = np.array([2.0], dtype=dtype)
    for name in SMOOTH_FROM_INPUT + ["softsign"]:
        assert np.isnan(compiled.activation_backward(name, x, None, dy)[0]), name
    leaky = compiled.activation_backward("leaky_relu", x, None, dy)
    np.testing.assert_allclose(leaky, [0.4], rtol=4 * eps(dtype))
    hard = compiled.activation_backward("hard_sigmoid", x, None, dy)
    np.testing.assert_array_equal(hard, [0.0])


@pytest.mark.parametrize("module", KERNEL_MODULES, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_parameter_defaults(module, dtype, rng):
    x = (3 * rng.standard_normal((5, 4))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for name, default in reference.PARAMETER_DEFAULTS.items():
        np.testing.assert_array_equal(module.activation_forward(name, x),
                                      module.activation_forward(name, x, alpha=default))
        np.testing.assert_array_equal(
            module.activation_backward(name, x, None, dy),
            module.activation_backward(name, x, None, dy, alpha=default))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.5, 1.7])
@pytest.mark.parametrize("name", ["leaky_relu", "elu"])
def test_parameter_matches_reference(name, alpha, dtype, rng):
    x = (3 * rng.standard_normal((13, 7))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = compiled.activation_forward(name, x, alpha=alpha)
    expected_y = reference.activation_forward(name, x, alpha=alpha)
    dx = compiled.activation_backward(name, x, y, dy, alpha=alpha)
    expected_dx = reference.activation_backward(name, x, expected_y, dy, alpha=alpha)
    if name == "leaky_relu":
        np.testing.assert_array_equal(y, expected_y)
        np.testing.assert_array_equal(dx, expected_dx)
    else:
        np.testing.assert_allclose(y, expected_y, **tolerance(dtype))
        np.testing.assert_allclose(dx, expected_dx, **tolerance(dtype))
    negative = x < 0
    np.testing.assert_allclose(dx[negative] != 0, alpha != 0)


@pytest.mark.parametrize("name", ["relu", "gelu", "softmax", "log_softmax"])
def test_parameter_rejected(name):
    x = np.zeros((2, 3))
    expected = f"activation '{name}' takes no parameter, got alpha=0.1"
    with pytest.raises(ValueError, match=expected):
        compiled.activation_forward(name, x, alpha=0.1)
    with pytest.raises(ValueError, match=expected):
        compiled.activation_backward(name, x, x, x, alpha=0.1)
    with pytest.raises(ValueError, match=expected):
        reference.activation_forward(name, x, alpha=0.1)


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if n not in reference.OUTPUT_DERIVATIVE])
def test_backward_requires_input(name):
    y = np.zeros((2, 3))
    with pytest.raises(ValueError, match=f"activation_backward: {name} needs the saved x, got x=None"):
        compiled.activation_backward(name, None, y, y)
    with pytest.raises(ValueError, match=f"{name} needs the saved input x"):
        reference.activation_backward(name, None, y, y)


@pytest.mark.parametrize("name", ["sigmoid", "exponential", "log_softmax"])
def test_backward_requires_output(name):
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=f"{name} needs the saved y, got y=None"):
        compiled.activation_backward(name, x, None, x)


def test_backward_input_shape_checked():
    x = np.zeros((3, 2))
    dy = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"x and dy must have the same shape, got \(3, 2\) and \(2, 3\)"):
        compiled.activation_backward("gelu", x, None, dy)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_softmax_special_rows(dtype):
    x = np.array(
        [
            [1e4, 0.0, -1e4],  # exp(-1e4) underflows, yet the log stays finite
            [0.0, -1000.0, 0.0],
            [np.nan, 0.0, 1.0],  # NaN spreads over its row
            [-np.inf, 0.0, 0.0],  # log(0) = -inf for that class only
        ],
        dtype=dtype,
    )
    y = compiled.activation_forward("log_softmax", x)
    np.testing.assert_array_equal(y[0], [0.0, -1e4, -2e4])
    np.testing.assert_allclose(y[1], [-np.log(2), -1000 - np.log(2), -np.log(2)],
                               rtol=4 * eps(dtype))
    assert np.isnan(y[2]).all()
    assert y[3, 0] == -np.inf
    np.testing.assert_allclose(y[3, 1:], [-np.log(2), -np.log(2)], rtol=4 * eps(dtype))
    with np.errstate(all="ignore"):
        expected = reference.activation_forward("log_softmax", x)
    np.testing.assert_allclose(y, expected, equal_nan=True, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_softmax_is_log_of_softmax(dtype, rng):
    x = (3 * rng.standard_normal((9, 6))).astype(dtype)
    y = compiled.activation_forward("log_softmax", x)
    softmax = compiled.activation_forward("softmax", x)
    np.testing.assert_allclose(np.exp(y), softmax, **tolerance(dtype))


def test_gelu_forms_close(rng):
    # The tanh form approximates the exact one to within about 5e-4.
    x = np.linspace(-8, 8, 1601)
    exact = compiled.activation_forward("gelu", x)
    approximate = compiled.activation_forward("gelu_approximate", x)
    assert np.max(np.abs(exact - approximate)) < 1e-3


# ---------------------------------------------------------------------------
# nnfast.activations: names and functions.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(activations._NAMES))
def test_public_function_matches_kernel(name, rng):
    x = (3 * rng.standard_normal((4, 5))).astype(np.float32)
    function = getattr(activations, name)
    np.testing.assert_array_equal(function(x), compiled.activation_forward(name, x))
    assert activations.get(name) == name
    assert activations.get(function) == name


def test_swish_is_silu(rng):
    x = rng.standard_normal((3, 4))
    assert activations.get("swish") == "silu"
    assert activations.get(activations.swish) == "silu"
    np.testing.assert_array_equal(activations.swish(x), activations.silu(x))


def test_public_parameters(rng):
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(activations.leaky_relu(x), [-0.4, -0.1, 0.0, 1.5])
    np.testing.assert_allclose(activations.leaky_relu(x, negative_slope=0.5),
                               [-1.0, -0.25, 0.0, 1.5])
    np.testing.assert_allclose(activations.elu(x, alpha=2.0),
                               [2 * np.expm1(-2.0), 2 * np.expm1(-0.5), 0.0, 1.5])
    np.testing.assert_array_equal(activations.gelu(x, approximate=True),
                                  compiled.activation_forward("gelu_approximate", x))


def test_public_log_softmax_axis(rng):
    x = rng.standard_normal((3, 4, 5))
    along_1 = activations.log_softmax(x, axis=1)
    expected = np.moveaxis(compiled.activation_forward("log_softmax", np.moveaxis(x, 1, -1)),
                           -1, 1)
    np.testing.assert_array_equal(along_1, expected)
    np.testing.assert_allclose(np.exp(along_1).sum(axis=1), np.ones((3, 5)), rtol=1e-12)


def test_unknown_public_name():
    with pytest.raises(ValueError, match="Unknown activation 'mish'"):
        activations.get("mish")


# ---------------------------------------------------------------------------
# Activation layers.
# ---------------------------------------------------------------------------

def layer_backward(layer, x, dy):
    """Return (y, dx) from one training forward and backward pass of ``layer``."""
    cache = {}
    layer._ensure_built(x.shape[1:])
    y = layer.forward(x, True, cache).copy()
    dx = layer.backward(dy, cache, need_dx=True)
    return y, dx


@pytest.mark.parametrize("backend_name", ["compiled", "reference"])
def test_relu_layer_keras_examples(backend_name):
    nnfast.set_backend(backend_name)
    try:
        x = np.array([[-10.0, -5.0, 0.0, 5.0, 10.0]])
        np.testing.assert_array_equal(layers.ReLU()(x), [[0, 0, 0, 5, 10]])
        np.testing.assert_array_equal(layers.ReLU(negative_slope=0.5)(x),
                                      [[-5, -2.5, 0, 5, 10]])
        np.testing.assert_array_equal(layers.ReLU(max_value=5.0)(x), [[0, 0, 0, 5, 5]])
        # With a threshold, inputs at or below it give 0: relu(5, threshold=5) = 0.
        np.testing.assert_array_equal(layers.ReLU(threshold=5.0)(x), [[0, 0, 0, 0, 10]])
        np.testing.assert_array_equal(
            layers.ReLU(max_value=10, negative_slope=0.5, threshold=0)(x),
            [[-5, -2.5, 0, 5, 10]])
        np.testing.assert_array_equal(
            layers.ReLU(max_value=8, threshold=5)(np.array([[6.0, 7.0, 0.0, 5.0, 10.0]])),
            [[6, 7, 0, 0, 8]])
    finally:
        nnfast.set_backend("compiled")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"negative_slope": 0.3}, {"max_value": 6.0}, {"threshold": 1.0},
     {"max_value": 2.0, "negative_slope": 0.2, "threshold": 0.5}],
    ids=["plain", "slope", "cap", "threshold", "all"],
)
def test_relu_layer_backward(kwargs, rng):
    # dx = dy where threshold < x < max_value, dy * negative_slope where
    # x < threshold, and 0 elsewhere.
    x = 3 * rng.standard_normal((6, 8))
    dy = rng.standard_normal(x.shape)
    y, dx = layer_backward(layers.ReLU(**kwargs), x, dy)
    threshold = kwargs.get("threshold", 0.0)
    max_value = kwargs.get("max_value", np.inf)
    slope = kwargs.get("negative_slope", 0.0)
    expected_y = np.minimum(np.where(x > threshold, x, 0), max_value)
    expected_y = expected_y - slope * np.maximum(threshold - x, 0)
    passes = (x > threshold) & (x < max_value)
    expected_dx = np.where(passes, dy, 0) + np.where(x < threshold, slope * dy, 0)
    np.testing.assert_allclose(y, expected_y, rtol=1e-15)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-15)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"max_value": -1.0}, "`max_value` must be a finite float >= 0, got max_value=-1.0"),
     ({"negative_slope": -0.1}, "`negative_slope` must be a finite float >= 0"),
     ({"threshold": float("nan")}, "`threshold` must be a finite float >= 0, got threshold=nan")],
)
def test_relu_layer_rejects_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.ReLU(**kwargs)


def test_relu_layer_rejects_none_slope():
    with pytest.raises(TypeError, match="`negative_slope` must be a float >= 0, got negative_slope=None"):
        layers.ReLU(negative_slope=None)


def test_leaky_relu_layer(rng):
    layer = layers.LeakyReLU()
    assert layer.negative_slope == 0.3
    x = np.array([[-3.0, -1.0, 0.0, 2.0]])
    np.testing.assert_allclose(layer(x), [[-0.9, -0.3, 0.0, 2.0]], rtol=1e-6)
    dy = rng.standard_normal((5, 4))
    x = rng.standard_normal((5, 4))
    _, dx = layer_backward(layers.LeakyReLU(negative_slope=0.1, dtype="float64"), x, dy)
    np.testing.assert_allclose(dx, np.where(x > 0, dy, 0.1 * dy), rtol=1e-15)


def test_leaky_relu_layer_alpha_deprecated():
    with pytest.warns(UserWarning, match="`alpha` is deprecated, use `negative_slope`"):
        layer = layers.LeakyReLU(alpha=0.1)
    assert layer.negative_slope == 0.1


def test_leaky_relu_layer_rejects_negative_slope():
    with pytest.raises(ValueError, match="LeakyReLU: `negative_slope` must be a finite float >= 0"):
        layers.LeakyReLU(negative_slope=-0.5)


def test_elu_layer(rng):
    x = rng.standard_normal((4, 6))
    dy = rng.standard_normal(x.shape)
    y, dx = layer_backward(layers.ELU(alpha=0.5, dtype="float64"), x, dy)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.5 * np.expm1(x)), rtol=1e-14)
    np.testing.assert_allclose(dx, np.where(x > 0, dy, dy * 0.5 * np.exp(x)), rtol=1e-14)
    with pytest.raises(ValueError, match="ELU: `alpha` must be finite, got alpha=inf"):
        layers.ELU(alpha=float("inf"))


@pytest.mark.parametrize("axis", [-1, 2, 1, -2])
def test_softmax_layer_axis(axis, rng):
    x = rng.standard_normal((3, 4, 5))
    dy = rng.standard_normal(x.shape)
    y, dx = layer_backward(layers.Softmax(axis=axis, dtype="float64"), x, dy)
    moved_x = np.moveaxis(x, axis, -1)
    moved_y = reference.activation_forward("softmax", moved_x)
    expected_dx = reference.activation_backward("softmax", None, moved_y,
                                                np.moveaxis(dy, axis, -1))
    np.testing.assert_allclose(y, np.moveaxis(moved_y, -1, axis), rtol=1e-12)
    np.testing.assert_allclose(dx, np.moveaxis(expected_dx, -1, axis), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-12)


def test_softmax_layer_axis_out_of_range():
    with pytest.raises(ValueError, match="`axis` 3 is out of range for inputs with 3 axes"):
        layers.Softmax(axis=3)(np.zeros((2, 3, 4)))


@pytest.mark.parametrize(
    "layer",
    [layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
     layers.LeakyReLU(negative_slope=0.2), layers.ELU(alpha=0.7), layers.Softmax(axis=1)],
    ids=["ReLU", "LeakyReLU", "ELU", "Softmax"],
)
def test_activation_layer_config_round_trip(layer):
    config = layers.serialize(layer)
    restored = layers.deserialize(config)
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize("name", ["gelu", "selu", "log_softmax", "exponential"])
def test_activation_layer_new_names(name, rng):
    # The Activation layer caches its input for the activations that read it.
    x = rng.standard_normal((4, 6))
    dy = rng.standard_normal(x.shape)
    y, dx = layer_backward(layers.Activation(name, dtype="float64"), x, dy)
    np.testing.assert_array_equal(y, compiled.activation_forward(name, x))
    np.testing.assert_array_equal(dx, compiled.activation_backward(name, x, y, dy))
