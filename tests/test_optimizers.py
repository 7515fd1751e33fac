"""Compiled optimizer updates against the NumPy reference and hand-worked steps."""

import numpy as np
import pytest
from _tolerances import eps, tolerance

from nnfast import _optimizers as compiled
from nnfast import _reference as reference

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]

# One element, odd and prime lengths, and lengths past the parallel
# thresholds (16,384 for both updates).
SIZES = [1, 7, 1009, 40_003]

SGD_CASES = [
    {"momentum": 0.0, "nesterov": False},
    {"momentum": 0.9, "nesterov": False},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.5, "nesterov": True},
]
SGD_IDS = ["plain", "momentum", "nesterov", "nesterov_half"]


# The compiled Adam update rounds alpha * m / (sqrt(v) + epsilon) once from
# double, as the reference does under NumPy 2, which promotes its float64
# alpha with a float32 m to float64. NumPy 1.x computed that quotient in
# float32, so float32 parameters may then differ by a few ulp per step.
NUMPY_PROMOTES_ALPHA = int(np.__version__.split(".")[0]) >= 2


def assert_adam_params_match(actual, expected):
    if NUMPY_PROMOTES_ALPHA or actual.dtype == np.float64:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, **tolerance(actual.dtype))


def run_sgd(module, params, velocity, grad_steps, case, n_threads=None):
    for grads in grad_steps:
        module.sgd_update(params, grads, velocity, 0.05, n_threads=n_threads, **case)


def run_adam(module, params, m, v, grad_steps, n_threads=None):
    for step, grads in enumerate(grad_steps, start=1):
        module.adam_update(params, grads, m, v, 0.01, 0.9, 0.999, 1e-7, step,
                           n_threads=n_threads)


# ---------------------------------------------------------------------------
# Several steps against the reference.
#
# Every element goes through the reference's operations in the same order,
# each rounded to the dtype as NumPy rounds it, so the results must match to
# the last bit, not only within a tolerance (for Adam, see
# NUMPY_PROMOTES_ALPHA).
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", SGD_CASES, ids=SGD_IDS)
def test_sgd_matches_reference(case, size, dtype, rng):
    params = rng.standard_normal(size).astype(dtype)
    velocity = rng.standard_normal(size).astype(dtype)
    grad_steps = [rng.standard_normal(size).astype(dtype) for _ in range(5)]
    expected_params, expected_velocity = params.copy(), velocity.copy()
    run_sgd(compiled, params, velocity, grad_steps, case)
    run_sgd(reference, expected_params, expected_velocity, grad_steps, case)
    np.testing.assert_array_equal(params, expected_params)
    np.testing.assert_array_equal(velocity, expected_velocity)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("size", SIZES)
def test_adam_matches_reference(size, dtype, rng):
    params = rng.standard_normal(size).astype(dtype)
    m = np.zeros(size, dtype=dtype)
    v = np.zeros(size, dtype=dtype)
    grad_steps = [rng.standard_normal(size).astype(dtype) for _ in range(6)]
    expected = [params.copy(), m.copy(), v.copy()]
    run_adam(compiled, params, m, v, grad_steps)
    run_adam(reference, *expected, grad_steps)
    assert_adam_params_match(params, expected[0])
    np.testing.assert_array_equal(m, expected[1])
    np.testing.assert_array_equal(v, expected[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_late_step(dtype, rng):
    # At step 1000 the bias corrections are close to 1.
    params = rng.standard_normal(50).astype(dtype)
    m = rng.standard_normal(50).astype(dtype)
    v = rng.random(50).astype(dtype)
    grads = rng.standard_normal(50).astype(dtype)
    expected = [params.copy(), m.copy(), v.copy()]
    compiled.adam_update(params, grads, m, v, 1e-3, 0.9, 0.999, 1e-7, 1000)
    reference.adam_update(*expected[:1], grads, *expected[1:], 1e-3, 0.9, 0.999, 1e-7, 1000)
    assert_adam_params_match(params, expected[0])
    np.testing.assert_array_equal(m, expected[1])
    np.testing.assert_array_equal(v, expected[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", SGD_CASES, ids=SGD_IDS)
def test_sgd_independent_of_threads(case, dtype, rng):
    params = rng.standard_normal(40_003).astype(dtype)
    velocity = rng.standard_normal(40_003).astype(dtype)
    grad_steps = [rng.standard_normal(40_003).astype(dtype) for _ in range(3)]
    other_params, other_velocity = params.copy(), velocity.copy()
    run_sgd(compiled, params, velocity, grad_steps, case, n_threads=1)
    run_sgd(compiled, other_params, other_velocity, grad_steps, case, n_threads=2)
    np.testing.assert_array_equal(params, other_params)
    np.testing.assert_array_equal(velocity, other_velocity)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_independent_of_threads(dtype, rng):
    params = rng.standard_normal(40_003).astype(dtype)
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    grad_steps = [rng.standard_normal(40_003).astype(dtype) for _ in range(3)]
    other = [params.copy(), m.copy(), v.copy()]
    run_adam(compiled, params, m, v, grad_steps, n_threads=1)
    run_adam(compiled, *other, grad_steps, n_threads=2)
    np.testing.assert_array_equal(params, other[0])
    np.testing.assert_array_equal(m, other[1])
    np.testing.assert_array_equal(v, other[2])


# ---------------------------------------------------------------------------
# Hand-worked steps with Keras's formulas.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_one_step_by_hand(dtype):
    # p = 1, g = 0.5, m = v = 0, lr = 0.1, beta_1 = 0.9, beta_2 = 0.999,
    # epsilon = 1e-7, step 1:
    #   m = 0 + 0.1 * (0.5 - 0) = 0.05
    #   v = 0 + 0.001 * (0.25 - 0) = 0.00025
    #   alpha = 0.1 * sqrt(1 - 0.999) / (1 - 0.9) = sqrt(0.001) = 0.0316227766...
    #   p = 1 - alpha * 0.05 / (sqrt(0.00025) + 1e-7)
    #     = 1 - 0.0999993675484679... = 0.900000632451532...
    params = np.array([1.0], dtype=dtype)
    m = np.zeros(1, dtype=dtype)
    v = np.zeros(1, dtype=dtype)
    compiled.adam_update(params, np.array([0.5], dtype=dtype), m, v,
                         0.1, 0.9, 0.999, 1e-7, 1)
    # A handful of roundings in the dtype separate the result from the exact
    # decimal value.
    rtol = 8 * eps(dtype)
    np.testing.assert_allclose(m, [0.05], rtol=rtol)
    np.testing.assert_allclose(v, [0.00025], rtol=rtol)
    np.testing.assert_allclose(params, [0.9000006324515320589739], rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "nesterov, expected_params",
    [
        # v = 0.9 * 0.2 - 0.1 * 0.5 = 0.13, then p = 1 + v = 1.13.
        (False, 1.13),
        # p = 1 + 0.9 * 0.13 - 0.1 * 0.5 = 1.067.
        (True, 1.067),
    ],
    ids=["momentum", "nesterov"],
)
def test_sgd_momentum_one_step_by_hand(nesterov, expected_params, dtype):
    params = np.array([1.0], dtype=dtype)
    velocity = np.array([0.2], dtype=dtype)
    compiled.sgd_update(params, np.array([0.5], dtype=dtype), velocity, 0.1,
                        momentum=0.9, nesterov=nesterov)
    rtol = 8 * eps(dtype)
    np.testing.assert_allclose(velocity, [0.13], rtol=rtol)
    np.testing.assert_allclose(params, [expected_params], rtol=rtol)


def test_sgd_plain_leaves_velocity_alone():
    params = np.array([1.0, 2.0])
    velocity = np.array([3.0, 4.0])
    compiled.sgd_update(params, np.array([0.5, -1.0]), velocity, 0.1)
    np.testing.assert_allclose(params, [0.95, 2.1], rtol=4 * eps(np.float64))
    np.testing.assert_array_equal(velocity, [3.0, 4.0])


def test_sgd_plain_without_velocity():
    params = np.array([1.0])
    compiled.sgd_update(params, np.array([0.5]), None, 0.1)
    np.testing.assert_allclose(params, [0.95], rtol=4 * eps(np.float64))


# ---------------------------------------------------------------------------
# Input layouts.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["strided", "reversed", "readonly"])
def test_grads_any_layout(layout, rng):
    params = rng.standard_normal(11)
    m, v = np.zeros(11), np.zeros(11)
    grads = rng.standard_normal(11)
    expected = [params.copy(), m.copy(), v.copy()]
    reference.adam_update(expected[0], grads, expected[1], expected[2],
                          0.01, 0.9, 0.999, 1e-7, 1)
    if layout == "strided":
        padded = np.zeros(22)
        padded[::2] = grads
        view = padded[::2]
    elif layout == "reversed":
        view = grads[::-1].copy()[::-1]
    else:
        view = grads.copy()
        view.flags.writeable = False
    compiled.adam_update(params, view, m, v, 0.01, 0.9, 0.999, 1e-7, 1)
    assert_adam_params_match(params, expected[0])


def test_empty_buffers():
    empty = np.zeros(0)
    compiled.sgd_update(empty, empty.copy(), empty.copy(), 0.1, momentum=0.9)
    compiled.adam_update(empty, empty.copy(), empty.copy(), empty.copy(),
                         0.1, 0.9, 0.999, 1e-7, 1)


# ---------------------------------------------------------------------------
# Argument errors.
# ---------------------------------------------------------------------------

def test_adam_length_mismatch():
    expected = r"adam_update: params, grads, m, v must have the same length, got 4, 4, 3, 4"
    with pytest.raises(ValueError, match=expected):
        compiled.adam_update(np.zeros(4), np.zeros(4), np.zeros(3), np.zeros(4),
                             0.1, 0.9, 0.999, 1e-7, 1)


def test_adam_dtype_mismatch():
    expected = "params, grads, m, v must have the same dtype, got float64, float32, float64, float64"
    with pytest.raises(TypeError, match=expected):
        compiled.adam_update(np.zeros(4), np.zeros(4, np.float32), np.zeros(4), np.zeros(4),
                             0.1, 0.9, 0.999, 1e-7, 1)


def test_sgd_dtype_mismatch():
    with pytest.raises(TypeError, match="got float32, float32, float64"):
        compiled.sgd_update(np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(4),
                            0.1, momentum=0.9)


def test_sgd_length_mismatch():
    with pytest.raises(ValueError, match="params, grads must have the same length, got 4, 5"):
        compiled.sgd_update(np.zeros(4), np.zeros(5), None, 0.1)


def test_sgd_velocity_required():
    with pytest.raises(ValueError, match="velocity is required when momentum != 0"):
        compiled.sgd_update(np.zeros(4), np.zeros(4), None, 0.1, momentum=0.9)


def test_params_not_contiguous():
    params = np.zeros(8)[::2]
    with pytest.raises(ValueError, match=r"params must be a C-contiguous 1-D array, got shape \(4,\)"):
        compiled.sgd_update(params, np.zeros(4), None, 0.1)


def test_params_two_dimensional():
    with pytest.raises(ValueError, match=r"params must be a C-contiguous 1-D array, got shape \(2, 2\)"):
        compiled.sgd_update(np.zeros((2, 2)), np.zeros(4), None, 0.1)


def test_state_read_only():
    v = np.zeros(4)
    v.flags.writeable = False
    with pytest.raises(ValueError, match="v must be writeable"):
        compiled.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), v,
                             0.1, 0.9, 0.999, 1e-7, 1)


def test_params_integer_dtype():
    with pytest.raises(TypeError, match="params must have dtype float32 or float64, got int64"):
        compiled.sgd_update(np.zeros(4, np.int64), np.zeros(4), None, 0.1)


@pytest.mark.parametrize("step", [0, -3])
def test_adam_step_must_be_positive(step):
    with pytest.raises(ValueError, match=f"step must be a 1-based update count >= 1, got step={step}"):
        compiled.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4),
                             0.1, 0.9, 0.999, 1e-7, step)


# ---------------------------------------------------------------------------
# Extreme values.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_nan_and_inf_gradients(dtype):
    # NaN and inf stay in their own element, and the reference gives the
    # same values there: an inf gradient makes m and v inf, and inf / inf is
    # NaN.
    params = np.ones(4, dtype=dtype)
    m = np.zeros(4, dtype=dtype)
    v = np.zeros(4, dtype=dtype)
    grads = np.array([np.nan, np.inf, -np.inf, 0.5], dtype=dtype)
    expected = [params.copy(), m.copy(), v.copy()]
    compiled.adam_update(params, grads, m, v, 0.1, 0.9, 0.999, 1e-7, 1)
    with np.errstate(all="ignore"):
        reference.adam_update(expected[0], grads, expected[1], expected[2],
                              0.1, 0.9, 0.999, 1e-7, 1)
    assert_adam_params_match(params, expected[0])
    np.testing.assert_array_equal(m, expected[1])
    np.testing.assert_array_equal(v, expected[2])
    assert np.isnan(params[:3]).all()
    assert np.isfinite(params[3])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sgd_subnormal_step_not_flushed(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    params = np.zeros(2, dtype=dtype)
    velocity = np.zeros(2, dtype=dtype)
    grads = np.array([tiny, 4 * tiny], dtype=dtype)
    compiled.sgd_update(params, grads, velocity, 1.0, momentum=0.5)
    np.testing.assert_array_equal(velocity, -grads)
    np.testing.assert_array_equal(params, -grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", SGD_CASES, ids=SGD_IDS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_sgd_property(case, dtype, data):
    # Any values, NaN, inf and subnormals included: bit-for-bit agreement.
    width = 32 if dtype == np.float32 else 64
    floats = st.floats(width=width)
    size = data.draw(st.integers(1, 40))
    params = data.draw(hnp.arrays(dtype, size, elements=floats))
    velocity = data.draw(hnp.arrays(dtype, size, elements=floats))
    grads = data.draw(hnp.arrays(dtype, size, elements=floats))
    learning_rate = data.draw(st.floats(0.0, 10.0))
    expected_params, expected_velocity = params.copy(), velocity.copy()
    compiled.sgd_update(params, grads, velocity, learning_rate, **case)
    with np.errstate(all="ignore"):
        reference.sgd_update(expected_params, grads, expected_velocity, learning_rate,
                             **case)
    np.testing.assert_array_equal(params, expected_params)
    np.testing.assert_array_equal(velocity, expected_velocity)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_adam_property(dtype, data):
    width = 32 if dtype == np.float32 else 64
    floats = st.floats(width=width)
    size = data.draw(st.integers(1, 40))
    params = data.draw(hnp.arrays(dtype, size, elements=floats))
    grads = data.draw(hnp.arrays(dtype, size, elements=floats))
    m = data.draw(hnp.arrays(dtype, size, elements=floats))
    v = data.draw(hnp.arrays(dtype, size, elements=st.floats(0.0, width=width)))
    step = data.draw(st.integers(1, 10_000))
    beta_1 = data.draw(st.floats(0.0, 0.999))
    beta_2 = data.draw(st.floats(0.0, 0.9999))
    expected = [params.copy(), m.copy(), v.copy()]
    compiled.adam_update(params, grads, m, v, 0.01, beta_1, beta_2, 1e-7, step)
    with np.errstate(all="ignore"):
        reference.adam_update(expected[0], grads, expected[1], expected[2],
                              0.01, beta_1, beta_2, 1e-7, step)
    assert_adam_params_match(params, expected[0])
    np.testing.assert_array_equal(m, expected[1])
    np.testing.assert_array_equal(v, expected[2])
