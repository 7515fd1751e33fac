"""Compiled optimizer updates against the NumPy reference and hand-worked steps."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _tolerances import eps, tolerance

import nnfast
from nnfast import _optimizers as compiled
from nnfast import _reference as reference
from nnfast import optimizers

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
# the last bit, not only within a tolerance.
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
    np.testing.assert_array_equal(params, expected[0])
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
    np.testing.assert_array_equal(params, expected[0])
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
    np.testing.assert_array_equal(params, expected[0])


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
    np.testing.assert_array_equal(params, expected[0])
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
    np.testing.assert_array_equal(params, expected[0])
    np.testing.assert_array_equal(m, expected[1])
    np.testing.assert_array_equal(v, expected[2])


# ---------------------------------------------------------------------------
# RMSprop, Adagrad, Nadam, AMSGrad and AdamW kernels against the reference.
#
# All of them round every scalar to the buffers' dtype and compute in it, as
# the reference does with Python floats, so they match to the last bit.
# ---------------------------------------------------------------------------

RMSPROP_CASES = [
    {"momentum": 0.0, "centered": False},
    {"momentum": 0.9, "centered": False},
    {"momentum": 0.0, "centered": True},
    {"momentum": 0.5, "centered": True},
]
RMSPROP_IDS = ["plain", "momentum", "centered", "centered_momentum"]

ADAM_VARIANTS = [
    {"amsgrad": False, "weight_decay": 0.0},
    {"amsgrad": True, "weight_decay": 0.0},
    {"amsgrad": False, "weight_decay": 0.004},
    {"amsgrad": True, "weight_decay": 0.1},
]
ADAM_VARIANT_IDS = ["adam", "amsgrad", "adamw", "adamw_amsgrad"]


def rmsprop_state(params, case):
    """Return [params, velocity, momentum buffer or None, average gradient or None]."""
    size, dtype = params.shape[0], params.dtype
    return [params.copy(), np.zeros(size, dtype),
            np.zeros(size, dtype) if case["momentum"] else None,
            np.zeros(size, dtype) if case["centered"] else None]


def run_rmsprop(module, state, grad_steps, case, n_threads=None):
    for grads in grad_steps:
        module.rmsprop_update(state[0], grads, state[1], state[2], state[3], 0.01, 0.9,
                              case["momentum"], 1e-7, n_threads=n_threads)


def run_adagrad(module, state, grad_steps, n_threads=None):
    for grads in grad_steps:
        module.adagrad_update(state[0], grads, state[1], 0.05, 1e-7, n_threads=n_threads)


def run_nadam(module, state, grad_steps, n_threads=None):
    product = 1.0
    for step, grads in enumerate(grad_steps, start=1):
        product = module.nadam_update(state[0], grads, state[1], state[2], 0.01, 0.9,
                                      0.999, 1e-7, step, product, n_threads=n_threads)
    return product


def run_adam_variant(module, state, grad_steps, variant, n_threads=None):
    for step, grads in enumerate(grad_steps, start=1):
        module.adam_update(state[0], grads, state[1], state[2], 0.01, 0.9, 0.999, 1e-7,
                           step, n_threads=n_threads,
                           v_hat=state[3] if variant["amsgrad"] else None,
                           weight_decay=variant["weight_decay"])


def assert_states_equal(actual, expected):
    for a, e in zip(actual, expected):
        if a is None:
            assert e is None
        else:
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", RMSPROP_CASES, ids=RMSPROP_IDS)
def test_rmsprop_matches_reference(case, size, dtype, rng):
    params = rng.standard_normal(size).astype(dtype)
    grad_steps = [rng.standard_normal(size).astype(dtype) for _ in range(6)]
    state = rmsprop_state(params, case)
    expected = rmsprop_state(params, case)
    run_rmsprop(compiled, state, grad_steps, case)
    run_rmsprop(reference, expected, grad_steps, case)
    assert_states_equal(state, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("size", SIZES)
def test_adagrad_matches_reference(size, dtype, rng):
    params = rng.standard_normal(size).astype(dtype)
    grad_steps = [rng.standard_normal(size).astype(dtype) for _ in range(6)]
    state = [params.copy(), np.full(size, 0.1, dtype)]
    expected = [params.copy(), np.full(size, 0.1, dtype)]
    run_adagrad(compiled, state, grad_steps)
    run_adagrad(reference, expected, grad_steps)
    assert_states_equal(state, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("size", SIZES)
def test_nadam_matches_reference(size, dtype, rng):
    params = rng.standard_normal(size).astype(dtype)
    grad_steps = [rng.standard_normal(size).astype(dtype) for _ in range(6)]
    state = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    expected = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    product = run_nadam(compiled, state, grad_steps)
    expected_product = run_nadam(reference, expected, grad_steps)
    assert_states_equal(state, expected)
    assert product == expected_product


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", ADAM_VARIANTS, ids=ADAM_VARIANT_IDS)
def test_adam_variants_match_reference(variant, size, dtype, rng):
    params = rng.standard_normal(size).astype(dtype)
    # Gradients that shrink make v fall, so AMSGrad's maximum matters.
    grad_steps = [rng.standard_normal(size).astype(dtype) / (k + 1) for k in range(6)]
    state = [params.copy()] + [np.zeros(size, dtype) for _ in range(3)]
    expected = [params.copy()] + [np.zeros(size, dtype) for _ in range(3)]
    run_adam_variant(compiled, state, grad_steps, variant)
    run_adam_variant(reference, expected, grad_steps, variant)
    np.testing.assert_array_equal(state[0], expected[0])
    assert_states_equal(state[1:], expected[1:])
    if variant["amsgrad"]:
        assert (state[3] >= state[2]).all()


ADAM_PORTABLE_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from nnfast import _optimizers, _runtime

    if sys.argv[2] == "generic":
        assert _runtime.simd_name() == "generic", _runtime.simd_name()
    rng = np.random.default_rng(7)
    results = []
    for dtype in (np.float32, np.float64):
        for amsgrad, decay in ((False, 0.0), (True, 0.0), (False, 0.004), (True, 0.1)):
            params = rng.standard_normal(1013).astype(dtype)
            state = [np.zeros_like(params) for _ in range(3)]
            for step in range(1, 5):
                grads = (rng.standard_normal(1013) / step).astype(dtype)
                _optimizers.adam_update(params, grads, state[0], state[1], 0.01, 0.9, 0.999,
                                        1e-7, step, v_hat=state[2] if amsgrad else None,
                                        weight_decay=decay)
            results += [params] + state
    np.savez(sys.argv[1], *results)
    """
)


def run_adam_script(out, simd):
    """Run ADAM_PORTABLE_SCRIPT in a child, with the portable loop forced for "generic"."""
    env = dict(os.environ)
    env.pop("NNFAST_SIMD", None)
    if simd == "generic":
        env["NNFAST_SIMD"] = "generic"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", ADAM_PORTABLE_SCRIPT, str(out), simd],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.load(out)


def test_adam_portable_loop_matches_simd_loop(tmp_path):
    # The portable loop runs where the CPU lacks AVX2, and both loops must
    # give the same bits.
    portable = run_adam_script(tmp_path / "portable.npz", "generic")
    default = run_adam_script(tmp_path / "default.npz", "default")
    assert sorted(portable.files) == sorted(default.files)
    for name in portable.files:
        np.testing.assert_array_equal(default[name], portable[name])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_optimizer_kernels_independent_of_threads(dtype, rng):
    size = 40_003
    params = rng.standard_normal(size).astype(dtype)
    grad_steps = [rng.standard_normal(size).astype(dtype) for _ in range(3)]
    for case in RMSPROP_CASES:
        one_thread, two_threads = rmsprop_state(params, case), rmsprop_state(params, case)
        run_rmsprop(compiled, one_thread, grad_steps, case, n_threads=1)
        run_rmsprop(compiled, two_threads, grad_steps, case, n_threads=2)
        assert_states_equal(one_thread, two_threads)
    one_thread = [params.copy(), np.full(size, 0.1, dtype)]
    two_threads = [params.copy(), np.full(size, 0.1, dtype)]
    run_adagrad(compiled, one_thread, grad_steps, n_threads=1)
    run_adagrad(compiled, two_threads, grad_steps, n_threads=2)
    assert_states_equal(one_thread, two_threads)
    one_thread = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    two_threads = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    run_nadam(compiled, one_thread, grad_steps, n_threads=1)
    run_nadam(compiled, two_threads, grad_steps, n_threads=2)
    assert_states_equal(one_thread, two_threads)
    for variant in ADAM_VARIANTS:
        one_thread = [params.copy()] + [np.zeros(size, dtype) for _ in range(3)]
        two_threads = [params.copy()] + [np.zeros(size, dtype) for _ in range(3)]
        run_adam_variant(compiled, one_thread, grad_steps, variant, n_threads=1)
        run_adam_variant(compiled, two_threads, grad_steps, variant, n_threads=2)
        assert_states_equal(one_thread, two_threads)


def test_optimizer_kernels_accept_strided_grads(rng):
    params = rng.standard_normal(9)
    padded = np.zeros(18)
    padded[::2] = rng.standard_normal(9)
    grads = padded[::2]
    for run in (
        lambda module, p: module.rmsprop_update(p, grads, np.zeros(9), None, None, 0.1,
                                                0.9, 0.0, 1e-7),
        lambda module, p: module.adagrad_update(p, grads, np.full(9, 0.1), 0.1, 1e-7),
        lambda module, p: module.nadam_update(p, grads, np.zeros(9), np.zeros(9), 0.1, 0.9,
                                              0.999, 1e-7, 1, 1.0),
    ):
        actual, expected = params.copy(), params.copy()
        run(compiled, actual)
        run(reference, expected)
        np.testing.assert_array_equal(actual, expected)


def test_optimizer_kernels_empty_buffers():
    empty = np.zeros(0)
    compiled.rmsprop_update(empty, empty.copy(), empty.copy(), empty.copy(), empty.copy(),
                            0.1, 0.9, 0.9, 1e-7)
    compiled.adagrad_update(empty, empty.copy(), empty.copy(), 0.1, 1e-7)
    product = compiled.nadam_update(empty, empty.copy(), empty.copy(), empty.copy(), 0.1,
                                    0.9, 0.999, 1e-7, 1, 1.0)
    assert product == reference.nadam_momentum(0.9, 1)


def test_rmsprop_momentum_buffer_required():
    with pytest.raises(ValueError, match="momentum_buffer is required when momentum > 0"):
        compiled.rmsprop_update(np.zeros(4), np.zeros(4), np.zeros(4), None, None, 0.1, 0.9,
                                0.9, 1e-7)


def test_rmsprop_length_mismatch():
    expected = ("rmsprop_update: params, grads, velocity, momentum_buffer, average_grad "
                "must have the same length, got 4, 4, 4, 4, 3")
    with pytest.raises(ValueError, match=expected):
        compiled.rmsprop_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4),
                                np.zeros(3), 0.1, 0.9, 0.9, 1e-7)


def test_adagrad_dtype_mismatch():
    with pytest.raises(TypeError, match="params, grads, accumulator must have the same dtype, got float64, float64, float32"):
        compiled.adagrad_update(np.zeros(4), np.zeros(4), np.zeros(4, np.float32), 0.1, 1e-7)


def test_adam_v_hat_checked():
    with pytest.raises(ValueError, match="params, grads, m, v, v_hat must have the same length, got 4, 4, 4, 4, 5"):
        compiled.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), 0.1, 0.9,
                             0.999, 1e-7, 1, v_hat=np.zeros(5))
    v_hat = np.zeros(4)
    v_hat.flags.writeable = False
    with pytest.raises(ValueError, match="v_hat must be writeable"):
        compiled.adam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), 0.1, 0.9,
                             0.999, 1e-7, 1, v_hat=v_hat)


@pytest.mark.parametrize("step", [0, -1])
def test_nadam_step_must_be_positive(step):
    with pytest.raises(ValueError, match=f"nadam_update: step must be a 1-based update count >= 1, got step={step}"):
        compiled.nadam_update(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), 0.1, 0.9,
                              0.999, 1e-7, step, 1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_adaptive_kernels_property(dtype, data):
    # Any values, NaN, inf and subnormals included, in parameters and
    # gradients: bit-for-bit agreement for all three kernels.
    width = 32 if dtype == np.float32 else 64
    floats = st.floats(width=width)
    size = data.draw(st.integers(1, 40))
    params = data.draw(hnp.arrays(dtype, size, elements=floats))
    grads = data.draw(hnp.arrays(dtype, size, elements=floats))
    state = data.draw(hnp.arrays(dtype, size, elements=st.floats(0.0, width=width)))
    case = data.draw(st.sampled_from(RMSPROP_CASES))
    step = data.draw(st.integers(1, 5000))
    with np.errstate(all="ignore"):
        actual = rmsprop_state(params, case)
        actual[1][...] = state
        expected = [None if a is None else a.copy() for a in actual]
        run_rmsprop(compiled, actual, [grads], case)
        run_rmsprop(reference, expected, [grads], case)
        assert_states_equal(actual, expected)

        actual = [params.copy(), state.copy()]
        expected = [params.copy(), state.copy()]
        run_adagrad(compiled, actual, [grads])
        run_adagrad(reference, expected, [grads])
        assert_states_equal(actual, expected)

        actual = [params.copy(), state.copy(), state.copy()]
        expected = [params.copy(), state.copy(), state.copy()]
        compiled.nadam_update(actual[0], grads, actual[1], actual[2], 0.01, 0.9, 0.999,
                              1e-7, step, 0.5)
        reference.nadam_update(expected[0], grads, expected[1], expected[2], 0.01, 0.9,
                               0.999, 1e-7, step, 0.5)
        assert_states_equal(actual, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_amsgrad_nan_in_v_hat(dtype):
    # maximum(v_hat, v) is NaN when either is NaN, as np.maximum gives.
    params = np.ones(3, dtype=dtype)
    grads = np.array([0.5, np.nan, 0.5], dtype=dtype)
    state = [params.copy(), np.zeros(3, dtype), np.zeros(3, dtype),
             np.array([0.0, 0.0, np.nan], dtype=dtype)]
    expected = [a.copy() for a in state]
    run_adam_variant(compiled, state, [grads], {"amsgrad": True, "weight_decay": 0.0})
    with np.errstate(all="ignore"):
        run_adam_variant(reference, expected, [grads], {"amsgrad": True, "weight_decay": 0.0})
    np.testing.assert_array_equal(state[0], expected[0])
    assert_states_equal(state[1:], expected[1:])
    assert np.isnan(state[3][1:]).all()
    assert np.isfinite(state[0][0])


# ---------------------------------------------------------------------------
# Optimizer classes.
# ---------------------------------------------------------------------------

# Keras 3's defaults.
CLASS_DEFAULTS = {
    "RMSprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                "centered": False},
    "Adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1,
                "epsilon": 1e-7},
    "AdamW": {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9,
              "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "Nadam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "Adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
             "amsgrad": False},
}


@pytest.mark.parametrize("name", list(CLASS_DEFAULTS))
def test_optimizer_defaults(name):
    config = getattr(optimizers, name)().get_config()
    for key, value in CLASS_DEFAULTS[name].items():
        assert config[key] == value, key


@pytest.mark.parametrize(
    "name, cls",
    [("rmsprop", "RMSprop"), ("adagrad", "Adagrad"), ("adamw", "AdamW"),
     ("nadam", "Nadam"), ("RMSprop", "RMSprop"), ("adam", "Adam"), ("sgd", "SGD")],
)
def test_optimizer_registry_names(name, cls):
    assert type(optimizers.get(name)).__name__ == cls


@pytest.mark.parametrize(
    "optimizer",
    [optimizers.RMSprop(learning_rate=0.01, rho=0.8, momentum=0.5, centered=True),
     optimizers.Adagrad(initial_accumulator_value=0.5, epsilon=1e-6),
     optimizers.AdamW(weight_decay=0.01, amsgrad=True),
     optimizers.Nadam(beta_1=0.8),
     optimizers.Adam(amsgrad=True)],
    ids=["rmsprop", "adagrad", "adamw", "nadam", "amsgrad"],
)
def test_optimizer_config_round_trip(optimizer):
    restored = optimizers.deserialize(optimizers.serialize(optimizer))
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (optimizers.RMSprop, {"learning_rate": float("nan")}, "`learning_rate` must be finite"),
        (optimizers.RMSprop, {"learning_rate": -0.1}, "got learning_rate=-0.1"),
        (optimizers.RMSprop, {"rho": 1.5}, r"`rho` must be finite and >= 0.0 and <= 1.0, got rho=1.5"),
        (optimizers.RMSprop, {"rho": -0.1}, "got rho=-0.1"),
        (optimizers.RMSprop, {"momentum": -0.5}, "got momentum=-0.5"),
        (optimizers.RMSprop, {"momentum": 1.5}, "got momentum=1.5"),
        (optimizers.RMSprop, {"epsilon": -1e-7}, "got epsilon=-1e-07"),
        (optimizers.Adagrad, {"initial_accumulator_value": -0.1},
         "got initial_accumulator_value=-0.1"),
        (optimizers.Adagrad, {"learning_rate": float("inf")}, "got learning_rate=inf"),
        (optimizers.AdamW, {"weight_decay": -0.01}, "AdamW: `weight_decay` must be finite"),
        (optimizers.AdamW, {"beta_1": 1.0}, "AdamW: `beta_1` must be < 1"),
        (optimizers.Nadam, {"beta_2": 1.0}, "Nadam: `beta_2` must be < 1"),
        (optimizers.Nadam, {"beta_1": 2.0}, "got beta_1=2.0"),
        (optimizers.Adam, {"beta_1": 1.0}, "Adam: `beta_1` must be < 1"),
    ],
)
def test_optimizer_arguments_rejected(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_optimizer_argument_type():
    with pytest.raises(TypeError, match="RMSprop: `rho` must be a float, got rho='0.9'"):
        optimizers.RMSprop(rho="0.9")


def test_zero_momentum_accepted():
    optimizer = optimizers.RMSprop(momentum=0.0)
    params = np.ones(3)
    optimizer.apply(params, np.ones(3))
    assert "momentum" not in optimizer._slots
    assert optimizer.momentum == 0.0


def apply_steps(optimizer, params, grad_steps):
    for grads in grad_steps:
        optimizer.apply(params, grads.copy())


@pytest.mark.parametrize(
    "make, run",
    [
        (lambda: optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
         lambda module, state, grads, lr, step: module.rmsprop_update(
             state[0], grads, state[1], state[2], state[3], lr, 0.9, 0.5, 1e-7)),
        (lambda: optimizers.Adagrad(learning_rate=0.01),
         lambda module, state, grads, lr, step: module.adagrad_update(
             state[0], grads, state[4], lr, 1e-7)),
        (lambda: optimizers.AdamW(learning_rate=0.01, amsgrad=True),
         lambda module, state, grads, lr, step: module.adam_update(
             state[0], grads, state[1], state[2], lr, 0.9, 0.999, 1e-7, step,
             v_hat=state[3], weight_decay=0.004)),
    ],
    ids=["rmsprop", "adagrad", "adamw"],
)
def test_optimizer_class_steps(make, run, rng):
    # Several steps of the class on the compiled backend against the
    # reference formula, with a schedule for the learning rate.
    schedule = optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    optimizer = make()
    optimizer.learning_rate = schedule
    params = rng.standard_normal(30)
    grad_steps = [rng.standard_normal(30) for _ in range(5)]
    expected = [params.copy(), np.zeros(30), np.zeros(30), np.zeros(30), np.full(30, 0.1)]
    apply_steps(optimizer, params, grad_steps)
    for step, grads in enumerate(grad_steps, start=1):
        run(reference, expected, grads, schedule(step - 1), step)
    np.testing.assert_array_equal(params, expected[0])


def test_nadam_class_steps(rng):
    optimizer = optimizers.Nadam(learning_rate=0.02)
    params = rng.standard_normal(30)
    grad_steps = [rng.standard_normal(30) for _ in range(5)]
    expected = [params.copy(), np.zeros(30), np.zeros(30)]
    apply_steps(optimizer, params, grad_steps)
    product = 1.0
    for step, grads in enumerate(grad_steps, start=1):
        product = reference.nadam_update(expected[0], grads, expected[1], expected[2],
                                         0.02, 0.9, 0.999, 1e-7, step, product)
    np.testing.assert_array_equal(params, expected[0])


def test_nadam_state_restored(rng):
    # The momentum product is rebuilt from the step count after set_state,
    # so an interrupted run continues exactly as an uninterrupted one.
    grad_steps = [rng.standard_normal(12) for _ in range(6)]
    params = rng.standard_normal(12)
    straight = optimizers.Nadam(learning_rate=0.01)
    expected = params.copy()
    apply_steps(straight, expected, grad_steps)

    first = optimizers.Nadam(learning_rate=0.01)
    resumed_params = params.copy()
    apply_steps(first, resumed_params, grad_steps[:3])
    second = optimizers.Nadam(learning_rate=0.01)
    second.set_state(first.get_state())
    apply_steps(second, resumed_params, grad_steps[3:])
    np.testing.assert_array_equal(resumed_params, expected)


def test_adagrad_initial_accumulator(rng):
    optimizer = optimizers.Adagrad(initial_accumulator_value=0.25)
    params = np.zeros(4)
    optimizer.apply(params, np.zeros(4))
    np.testing.assert_array_equal(optimizer._slots["accumulator"], np.full(4, 0.25))


@pytest.mark.parametrize("name", ["rmsprop", "adagrad", "adamw", "nadam"])
def test_optimizer_clipvalue(name, rng):
    # Gradients are clipped by the base class before the kernel runs.
    clipped = optimizers.get({"class_name": type(optimizers.get(name)).__name__,
                              "config": {"clipvalue": 0.1}})
    plain = optimizers.get(name)
    grads = 10 * rng.standard_normal(8)
    a, b = np.zeros(8), np.zeros(8)
    clipped.apply(a, grads.copy())
    plain.apply(b, np.clip(grads, -0.1, 0.1))
    np.testing.assert_array_equal(a, b)


def test_compile_default_is_rmsprop():
    model = nnfast.Sequential([nnfast.layers.Input((3,)), nnfast.layers.Dense(2)])
    model.compile(loss="mse")
    assert type(model.optimizer).__name__ == "RMSprop"
