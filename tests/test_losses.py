"""Compiled loss kernels against the NumPy reference."""

import warnings

import numpy as np
import pytest
from _tolerances import eps, tolerance

from nnfast import _losses as compiled
from nnfast import _reference as reference
from nnfast import losses

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]

# (n_samples, n_classes): one sample, one class, odd and prime sizes, tall
# and wide, and sizes past the parallel thresholds (4,096 elements for
# cross-entropy, 16,384 for mean squared error).
SHAPES = [
    (1, 1),
    (1, 7),
    (7, 1),
    (5, 3),
    (13, 17),
    (257, 2),
    (2, 1009),
    (311, 67),
]

LAYOUTS = ["c", "fortran", "strided", "readonly"]

LABEL_KINDS = ["int32", "int64", "onehot", "soft"]


def as_layout(array, layout):
    """Return a 2-D array equal to ``array`` with the named memory layout."""
    if layout == "c":
        return np.ascontiguousarray(array)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "strided":
        rows, cols = array.shape
        padded = np.zeros((2 * rows, 2 * cols), dtype=array.dtype)
        padded[::2, 1::2] = array
        return padded[::2, 1::2]
    if layout == "readonly":
        view = array.copy()
        view.flags.writeable = False
        return view
    raise ValueError(f"unknown layout {layout!r}")


def make_labels(kind, n_samples, n_classes, dtype, rng):
    """Return labels of ``kind``: integer indices, one-hot rows, or soft targets."""
    indices = rng.integers(0, n_classes, n_samples)
    if kind in ("int32", "int64"):
        return indices.astype(kind)
    if kind == "onehot":
        return np.eye(n_classes, dtype=dtype)[indices]
    # Nonnegative rows that do not sum to one, which the formula allows.
    return rng.random((n_samples, n_classes)).astype(dtype)


def cross_entropy_atol(logits, dtype):
    """Return the atol for cross-entropy losses and gradients.

    loss = lse - (z_label - max) subtracts two numbers of the size of the
    row's spread max - min, so both paths carry an absolute error of a few
    eps times that spread. The reference also rounds exp(z - max - lse),
    whose argument carries the same absolute error, so each probability,
    and so each gradient element, has a relative error of a few eps times
    the spread as well.
    """
    # Scale before subtracting, so that the spread of logits near the
    # dtype's max does not overflow to inf.
    scale = 16 * eps(dtype)
    finite = np.where(np.isfinite(logits), logits, 0).astype(np.float64) * scale
    scaled_spread = finite.max(axis=1) - finite.min(axis=1)
    return scale + float(np.max(scaled_spread, initial=0.0))


def assert_close(actual, expected, dtype, atol):
    tol = dict(tolerance(dtype))
    tol["atol"] = max(tol["atol"], atol)
    np.testing.assert_allclose(actual, expected, **tol)


# ---------------------------------------------------------------------------
# Softmax cross-entropy.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", LABEL_KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cross_entropy_matches_reference(shape, kind, weighted, dtype, rng):
    n_samples, n_classes = shape
    logits = (4 * rng.standard_normal(shape)).astype(dtype)
    labels = make_labels(kind, n_samples, n_classes, dtype, rng)
    weights = rng.random(n_samples).astype(dtype) if weighted else None
    grad = np.empty_like(logits)
    expected_grad = np.empty_like(logits)

    loss, grad_result = compiled.softmax_cross_entropy(
        logits, labels, sample_weight=weights, grad_scale=0.25, grad_out=grad)
    expected_loss, _ = reference.softmax_cross_entropy(
        logits, labels, sample_weight=weights, grad_scale=0.25, grad_out=expected_grad)

    assert grad_result is grad
    assert loss.dtype == dtype
    assert loss.shape == (n_samples,)
    atol = cross_entropy_atol(logits, dtype)
    assert_close(loss, expected_loss, dtype, atol * (1 + np.abs(labels).max()))
    assert_close(grad, expected_grad, dtype, atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", LABEL_KINDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cross_entropy_any_layout(layout, kind, dtype, rng):
    logits = (4 * rng.standard_normal((23, 9))).astype(dtype)
    labels = make_labels(kind, 23, 9, dtype, rng)
    expected_loss, expected_grad = compiled.softmax_cross_entropy(
        logits, labels, grad_out=np.empty_like(logits))
    if labels.ndim == 2:
        labels = as_layout(labels, layout)
    elif layout == "readonly":
        labels.flags.writeable = False
    loss, grad = compiled.softmax_cross_entropy(
        as_layout(logits, layout), labels, grad_out=np.empty_like(logits))
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_cross_entropy_without_gradient(kind, rng):
    logits = rng.standard_normal((6, 4))
    labels = make_labels(kind, 6, 4, np.float64, rng)
    loss, grad = compiled.softmax_cross_entropy(logits, labels)
    assert grad is None
    expected, _ = compiled.softmax_cross_entropy(logits, labels, grad_out=np.empty((6, 4)))
    np.testing.assert_array_equal(loss, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_cross_entropy_independent_of_threads(kind, dtype, rng):
    # 600 x 70 logits are past the threshold, and a row is never split.
    logits = (4 * rng.standard_normal((600, 70))).astype(dtype)
    labels = make_labels(kind, 600, 70, dtype, rng)
    weights = rng.random(600).astype(dtype)
    results = []
    for n_threads in (1, 2):
        grad = np.empty_like(logits)
        loss, _ = compiled.softmax_cross_entropy(
            logits, labels, sample_weight=weights, grad_out=grad, n_threads=n_threads)
        results.append((loss, grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_cross_entropy_writes_outputs(rng):
    logits = rng.standard_normal((5, 3))
    labels = rng.integers(0, 3, 5)
    loss_out = np.full(5, np.nan)
    grad_out = np.full((5, 3), np.nan)
    loss, grad = compiled.softmax_cross_entropy(logits, labels, loss_out=loss_out,
                                                grad_out=grad_out)
    assert loss is loss_out
    assert grad is grad_out
    expected_loss, expected_grad = reference.softmax_cross_entropy(
        logits, labels, grad_out=np.empty((5, 3)))
    np.testing.assert_allclose(loss_out, expected_loss, **tolerance(np.float64))
    np.testing.assert_allclose(grad_out, expected_grad, **tolerance(np.float64))


def test_cross_entropy_strided_outputs(rng):
    logits = rng.standard_normal((5, 3))
    labels = rng.integers(0, 3, 5)
    loss_out = np.full(10, np.nan)[::2]
    grad_out = np.asfortranarray(np.full((5, 3), np.nan))
    loss, grad = compiled.softmax_cross_entropy(logits, labels, loss_out=loss_out,
                                                grad_out=grad_out)
    assert np.shares_memory(loss, loss_out)
    assert np.shares_memory(grad, grad_out)
    expected_loss, expected_grad = compiled.softmax_cross_entropy(
        logits, labels, grad_out=np.empty((5, 3)))
    np.testing.assert_array_equal(loss_out, expected_loss)
    np.testing.assert_array_equal(grad_out, expected_grad)


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_cross_entropy_gradient_in_place(kind, rng):
    logits = rng.standard_normal((5, 4))
    labels = make_labels(kind, 5, 4, np.float64, rng)
    expected_loss, expected_grad = compiled.softmax_cross_entropy(
        logits, labels, grad_out=np.empty((5, 4)))
    loss, grad = compiled.softmax_cross_entropy(logits, labels, grad_out=logits)
    assert grad is logits
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(logits, expected_grad)


def test_cross_entropy_gradient_over_targets(rng):
    # The target row is read after the gradient row is started, so an output
    # that is the target array must not be written directly.
    logits = rng.standard_normal((5, 4))
    targets = rng.random((5, 4))
    expected_loss, expected_grad = compiled.softmax_cross_entropy(
        logits, targets, grad_out=np.empty((5, 4)))
    loss, grad = compiled.softmax_cross_entropy(logits, targets, grad_out=targets)
    assert grad is targets
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(targets, expected_grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_large_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]], dtype=dtype)
    labels = np.array([2, 0])
    grad = np.empty_like(logits)
    loss, _ = compiled.softmax_cross_entropy(logits, labels, grad_out=grad)
    assert np.isfinite(loss).all()
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(loss, [2e4, 2e4 + np.log(dtype(2))])
    np.testing.assert_array_equal(grad[0], [1.0, 0.0, -1.0])
    np.testing.assert_allclose(grad[1], [-1.0, 0.5, 0.5], rtol=eps(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["int64", "onehot"])
def test_cross_entropy_two_classes_300(kind, dtype):
    # log(1 + e^-300) rounds to 0, so the loss is exactly 300.
    logits = np.array([[0.0, 300.0]], dtype=dtype)
    labels = np.array([0]) if kind == "int64" else np.array([[1.0, 0.0]], dtype=dtype)
    grad = np.empty_like(logits)
    loss, _ = compiled.softmax_cross_entropy(logits, labels, grad_out=grad)
    assert loss[0] == 300.0
    np.testing.assert_array_equal(grad, [[-1.0, 1.0]])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["int64", "onehot"])
def test_cross_entropy_nan_and_inf_rows(kind, dtype):
    logits = np.array(
        [
            [np.nan, 0.0, 1.0],
            [np.inf, 0.0, 1.0],
            [0.0, -np.inf, 1.0],
            [0.0, 1.0, 2.0],
        ],
        dtype=dtype,
    )
    labels = np.array([0, 2, 1, 1])
    if kind == "onehot":
        labels = np.eye(3, dtype=dtype)[labels]
    grad = np.empty_like(logits)
    loss, _ = compiled.softmax_cross_entropy(logits, labels, grad_out=grad)
    with np.errstate(all="ignore"):
        expected_loss, _ = reference.softmax_cross_entropy(logits, labels)
    # A NaN logit, or +inf which gives inf - inf, makes the row NaN.
    assert np.isnan(loss[0])
    assert np.isnan(grad[0]).all()
    assert np.isnan(loss[1])
    assert np.isnan(grad[1]).all()
    # The label's logit is -inf: its probability is 0, so the loss is +inf.
    assert loss[2] == np.inf
    assert expected_loss[2] == np.inf
    np.testing.assert_allclose(grad[2, 1], -1.0)
    assert np.isfinite(grad[2]).all()
    # An ordinary row next to them is unaffected.
    np.testing.assert_allclose(loss[3], expected_loss[3], **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_minus_inf_other_class(dtype):
    # A -inf logit on a class other than the label has probability 0. Integer
    # labels use lse - z_label, so the loss is that of the row without the
    # class. Targets use sum_j t_j (lse - z_j), where 0 * inf is NaN, as in
    # the reference, which computes every label kind that way.
    logits = np.array([[0.0, -np.inf, 1.0]], dtype=dtype)
    sparse_loss, _ = compiled.softmax_cross_entropy(logits, np.array([0]))
    without_class, _ = compiled.softmax_cross_entropy(logits[:, [0, 2]], np.array([0]))
    np.testing.assert_allclose(sparse_loss, without_class, **tolerance(dtype))
    onehot_loss, _ = compiled.softmax_cross_entropy(logits, np.eye(3, dtype=dtype)[[0]])
    assert np.isnan(onehot_loss[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_subnormal_logits(dtype):
    # All logits subnormal: probabilities are 1/3 and the loss is log(3).
    tiny = np.finfo(dtype).smallest_subnormal
    logits = np.array([[tiny, 2 * tiny, 0.0]], dtype=dtype)
    grad = np.empty_like(logits)
    loss, _ = compiled.softmax_cross_entropy(logits, np.array([0]), grad_out=grad)
    np.testing.assert_allclose(loss, [np.log(3.0)], rtol=4 * eps(dtype))
    np.testing.assert_allclose(grad, [[-2 / 3, 1 / 3, 1 / 3]], rtol=4 * eps(dtype))


def test_cross_entropy_subnormal_gradient_kept():
    # exp(-740) is a subnormal float64, and so is its gradient entry.
    logits = np.array([[0.0, -740.0]])
    grad = np.empty_like(logits)
    compiled.softmax_cross_entropy(logits, np.array([0]), grad_out=grad)
    assert 0.0 < grad[0, 1] < np.finfo(np.float64).tiny


# ---------------------------------------------------------------------------
# Cross-entropy argument errors.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 5, 1000])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_cross_entropy_label_out_of_range(bad, label_dtype):
    logits = np.zeros((4, 5))
    labels = np.array([0, 4, bad, 1], dtype=label_dtype)
    expected = (
        rf"softmax_cross_entropy: label {bad} at position 2 is out of range, "
        r"expected a class index in \[0, 5\)"
    )
    with pytest.raises(ValueError, match=expected):
        compiled.softmax_cross_entropy(logits, labels)


def test_cross_entropy_label_checked_before_outputs_written():
    logits = np.zeros((2, 3))
    grad_out = np.full((2, 3), 7.0)
    with pytest.raises(ValueError, match="label 3 at position 1"):
        compiled.softmax_cross_entropy(logits, np.array([0, 3]), grad_out=grad_out)
    assert (grad_out == 7.0).all()


def test_cross_entropy_small_integer_labels(rng):
    logits = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2], dtype=np.uint8)
    loss, _ = compiled.softmax_cross_entropy(logits, labels)
    expected, _ = compiled.softmax_cross_entropy(logits, labels.astype(np.int64))
    np.testing.assert_array_equal(loss, expected)


def test_cross_entropy_float_labels_1d():
    with pytest.raises(TypeError, match="1-D labels must be integer class indices, got dtype float64"):
        compiled.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2))


def test_cross_entropy_label_count():
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match logits, got \(3,\)"):
        compiled.softmax_cross_entropy(np.zeros((4, 3)), np.zeros(3, dtype=np.int64))


def test_cross_entropy_targets_mixed_dtypes():
    logits = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="logits and labels must have the same dtype, got float32 and float64"):
        compiled.softmax_cross_entropy(logits, np.zeros((2, 3)))


def test_cross_entropy_targets_shape():
    with pytest.raises(ValueError, match=r"got \(2, 3\) and \(2, 4\)"):
        compiled.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 4)))


def test_cross_entropy_logits_rank():
    with pytest.raises(ValueError, match=r"logits must be 2-D \(n_samples, n_features\), got shape \(6,\)"):
        compiled.softmax_cross_entropy(np.zeros(6), np.zeros(6, dtype=np.int64))


def test_cross_entropy_no_classes():
    with pytest.raises(ValueError, match="at least one column"):
        compiled.softmax_cross_entropy(np.zeros((2, 0)), np.zeros(2, dtype=np.int64))


def test_cross_entropy_integer_logits():
    with pytest.raises(TypeError, match="logits must have dtype float32 or float64, got int64"):
        compiled.softmax_cross_entropy(np.zeros((2, 3), dtype=np.int64), np.zeros(2, dtype=np.int64))


def test_cross_entropy_sample_weight_shape():
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(2,\), got \(3,\)"):
        compiled.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2, dtype=np.int64),
                                       sample_weight=np.ones(3))


def test_cross_entropy_grad_out_wrong_shape():
    expected = (
        r"softmax_cross_entropy: grad_out must have shape \(2, 3\) and dtype float32, "
        r"got \(3, 2\) float32"
    )
    with pytest.raises(ValueError, match=expected):
        compiled.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.zeros(2, np.int64),
                                       grad_out=np.zeros((3, 2), np.float32))


def test_cross_entropy_loss_out_wrong_dtype():
    expected = r"loss_out must have shape \(2,\) and dtype float32, got \(2,\) float64"
    with pytest.raises(TypeError, match=expected):
        compiled.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.zeros(2, np.int64),
                                       loss_out=np.zeros(2))


def test_cross_entropy_empty_batch():
    loss, grad = compiled.softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64),
                                                grad_out=np.zeros((0, 3)))
    assert loss.shape == (0,)
    assert grad.shape == (0, 3)


# ---------------------------------------------------------------------------
# Mean squared error.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_squared_error_matches_reference(shape, weighted, dtype, rng):
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    weights = rng.random(shape[0]).astype(dtype) if weighted else None
    grad = np.empty_like(pred)
    expected_grad = np.empty_like(pred)
    loss, grad_result = compiled.mean_squared_error(
        pred, target, sample_weight=weights, grad_scale=0.3, grad_out=grad)
    expected_loss, _ = reference.mean_squared_error(
        pred, target, sample_weight=weights, grad_scale=0.3, grad_out=expected_grad)
    assert grad_result is grad
    assert loss.dtype == dtype
    # The loss is a mean of squares: positive terms, so summing them in
    # another order changes it by a relative error only.
    np.testing.assert_allclose(loss, expected_loss, **tolerance(dtype))
    # The gradient is (pred - target) * factor * w with the reference's
    # operations in the same order, so it matches to the last bit.
    np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_squared_error_any_layout(layout, dtype, rng):
    pred = rng.standard_normal((19, 7)).astype(dtype)
    target = rng.standard_normal((19, 7)).astype(dtype)
    expected = compiled.mean_squared_error(pred, target, grad_out=np.empty_like(pred))
    actual = compiled.mean_squared_error(as_layout(pred, layout), as_layout(target, layout),
                                         grad_out=np.empty_like(pred))
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_squared_error_independent_of_threads(dtype, rng):
    pred = rng.standard_normal((600, 70)).astype(dtype)
    target = rng.standard_normal((600, 70)).astype(dtype)
    results = []
    for n_threads in (1, 2):
        grad = np.empty_like(pred)
        loss, _ = compiled.mean_squared_error(pred, target, grad_out=grad,
                                              n_threads=n_threads)
        results.append((loss, grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("target_is_out", [False, True], ids=["over_pred", "over_target"])
def test_squared_error_gradient_in_place(target_is_out, rng):
    pred = rng.standard_normal((5, 4))
    target = rng.standard_normal((5, 4))
    expected_loss, expected_grad = compiled.mean_squared_error(
        pred, target, grad_out=np.empty((5, 4)))
    out = target if target_is_out else pred
    loss, grad = compiled.mean_squared_error(pred, target, grad_out=out)
    assert grad is out
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(out, expected_grad)


def test_squared_error_writes_loss_out(rng):
    pred = rng.standard_normal((5, 4))
    loss_out = np.empty(5)
    loss, grad = compiled.mean_squared_error(pred, np.zeros((5, 4)), loss_out=loss_out)
    assert loss is loss_out
    assert grad is None
    np.testing.assert_allclose(loss_out, (pred ** 2).mean(axis=1), **tolerance(np.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_squared_error_extreme_values(dtype):
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    pred = np.array(
        [
            [info.max, 0.0],  # the square overflows to inf
            [np.nan, 0.0],
            [np.inf, 0.0],
            [np.inf, 0.0],  # inf - inf is NaN
            [2 * tiny, 0.0],  # the square underflows, the gradient stays subnormal
        ],
        dtype=dtype,
    )
    target = np.zeros_like(pred)
    target[3, 0] = np.inf
    grad = np.empty_like(pred)
    loss, _ = compiled.mean_squared_error(pred, target, grad_out=grad)
    with np.errstate(all="ignore"):
        expected_loss, _ = reference.mean_squared_error(
            pred, target, grad_out=np.empty_like(pred))
    np.testing.assert_array_equal(loss, expected_loss)
    assert loss[0] == np.inf
    assert np.isnan(loss[1])
    assert loss[2] == np.inf
    assert grad[2, 0] == np.inf
    assert np.isnan(loss[3])
    assert loss[4] == 0.0
    # 2 * tiny * (2 / 2) == 2 * tiny: not flushed to zero.
    assert grad[4, 0] == 2 * tiny


def test_squared_error_mixed_dtypes():
    with pytest.raises(TypeError, match="pred and target must have the same dtype, got float64 and float32"):
        compiled.mean_squared_error(np.zeros((2, 3)), np.zeros((2, 3), np.float32))


def test_squared_error_shapes():
    with pytest.raises(ValueError, match=r"got \(2, 3\) and \(3, 2\)"):
        compiled.mean_squared_error(np.zeros((2, 3)), np.zeros((3, 2)))


def test_squared_error_grad_out_read_only():
    grad_out = np.zeros((2, 3))
    grad_out.flags.writeable = False
    with pytest.raises(ValueError, match="grad_out must be writeable"):
        compiled.mean_squared_error(np.zeros((2, 3)), np.zeros((2, 3)), grad_out=grad_out)


def test_squared_error_sample_weight_converted(rng):
    # Weights of another dtype are converted to the dtype of pred.
    pred = rng.standard_normal((3, 2)).astype(np.float32)
    weights = np.array([1, 2, 3])
    grad = np.empty_like(pred)
    compiled.mean_squared_error(pred, np.zeros_like(pred), sample_weight=weights,
                                grad_out=grad)
    np.testing.assert_array_equal(grad, pred * np.float32(1.0) * weights[:, None].astype(np.float32))


# ---------------------------------------------------------------------------
# Properties over arbitrary finite values.
# ---------------------------------------------------------------------------

def logits_arrays(dtype):
    width = 32 if dtype == np.float32 else 64
    return hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
        elements=st.floats(width=width, allow_nan=False, allow_infinity=False,
                           allow_subnormal=True),
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_cross_entropy_property(dtype, data):
    # Any finite logits, huge and subnormal ones included. Where the
    # reference loss is finite the two agree, and where it is inf the
    # compiled loss is inf too. When z - max overflows to -inf the reference
    # loss is 0 * inf = NaN on rows whose label is another class, so those
    # rows are skipped.
    logits = data.draw(logits_arrays(dtype))
    n_samples, n_classes = logits.shape
    labels = np.array(data.draw(st.lists(st.integers(0, n_classes - 1),
                                         min_size=n_samples, max_size=n_samples)))
    grad = np.empty_like(logits)
    loss, _ = compiled.softmax_cross_entropy(logits, labels, grad_out=grad)
    expected_grad = np.empty_like(logits)
    with np.errstate(all="ignore"):
        expected_loss, _ = reference.softmax_cross_entropy(logits, labels,
                                                           grad_out=expected_grad)
    finite = np.isfinite(expected_loss)
    atol = cross_entropy_atol(logits, dtype)
    assert_close(loss[finite], expected_loss[finite], dtype, atol)
    assert (loss[np.isposinf(expected_loss)] == np.inf).all()
    assert not np.isnan(loss).any()
    assert np.isfinite(grad).all()
    assert_close(grad[finite], expected_grad[finite], dtype, atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_squared_error_property(dtype, data):
    # Any values, inf and NaN included: the gradient matches the reference
    # to the last bit. The loss matches where the reference is finite and is
    # NaN where the reference is. Where the reference is inf, either a square
    # overflowed (the compiled loss is inf too) or only the float32 sum did,
    # and then the compiled double sum gives a finite mean of at least
    # max / n_outputs.
    width = 32 if dtype == np.float32 else 64
    pred = data.draw(hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
        elements=st.floats(width=width),
    ))
    target = data.draw(hnp.arrays(dtype=dtype, shape=pred.shape,
                                  elements=st.floats(width=width)))
    grad = np.empty_like(pred)
    loss, _ = compiled.mean_squared_error(pred, target, grad_out=grad)
    expected_grad = np.empty_like(pred)
    with np.errstate(all="ignore"):
        expected_loss, _ = reference.mean_squared_error(pred, target,
                                                        grad_out=expected_grad)
    np.testing.assert_array_equal(grad, expected_grad)
    finite = np.isfinite(expected_loss)
    np.testing.assert_allclose(loss[finite], expected_loss[finite], **tolerance(dtype))
    assert np.isnan(loss[np.isnan(expected_loss)]).all()
    overflowed = loss[np.isposinf(expected_loss)]
    assert (overflowed >= np.finfo(dtype).max / pred.shape[1]).all()


def test_squared_error_sum_overflow():
    # Each square fits float32 but their sum does not. The reference sums in
    # float32 and returns inf. The compiled kernel sums in double and returns
    # the finite mean. In float64 both overflow, and both return inf.
    half = np.sqrt(np.finfo(np.float32).max * 0.75)
    pred = np.array([[half, half]], dtype=np.float32)
    loss, _ = compiled.mean_squared_error(pred, np.zeros_like(pred))
    square = float(pred[0, 0]) ** 2
    np.testing.assert_allclose(loss, [square], rtol=4 * eps(np.float32))

    half = np.sqrt(np.finfo(np.float64).max * 0.75)
    pred = np.array([[half, half]])
    loss, _ = compiled.mean_squared_error(pred, np.zeros_like(pred))
    assert loss[0] == np.inf


# ---------------------------------------------------------------------------
# Elementwise losses: mean absolute error, Huber, binary cross-entropy and
# KL divergence.
# ---------------------------------------------------------------------------

def elementwise_inputs(case, shape, dtype, rng):
    """Return (pred, target) for an elementwise loss ``case``.

    Probabilities include exact 0 and 1 on some rows, so that the clipping
    paths run, and KL targets include zeros.
    """
    n_samples, n_outputs = shape
    if case in ("mae", "huber", "huber_narrow"):
        pred = 2 * rng.standard_normal(shape)
        target = 2 * rng.standard_normal(shape)
    elif case == "bce_logits":
        pred = 4 * rng.standard_normal(shape)
        target = rng.random(shape)
    elif case == "bce_probabilities":
        pred = rng.random(shape)
        pred[::3, 0] = 0.0
        pred[1::3, -1] = 1.0
        target = (rng.random(shape) > 0.5).astype(np.float64)
    else:
        pred = rng.random(shape)
        pred[::4, 0] = 0.0
        target = rng.random(shape)
        target[1::4, -1] = 0.0
    return pred.astype(dtype), target.astype(dtype)


# Kernel name and keyword arguments per case.
ELEMENTWISE_CASES = {
    "mae": ("mean_absolute_error", {}),
    "huber": ("huber", {}),
    "huber_narrow": ("huber", {"delta": 0.3}),
    "bce_logits": ("binary_cross_entropy", {"from_logits": True}),
    "bce_probabilities": ("binary_cross_entropy", {}),
    "kld": ("kl_divergence", {}),
}

# Cases whose gradients use only +, -, *, / and comparisons, in the
# reference's order, so they match bit for bit. The logits form calls exp.
EXACT_GRADIENT = ("mae", "huber", "huber_narrow", "bce_probabilities", "kld")


def run_elementwise(module, case, pred, target, **kwargs):
    name, case_kwargs = ELEMENTWISE_CASES[case]
    return getattr(module, name)(pred, target, **case_kwargs, **kwargs)


def elementwise_loss_atol(case, n_outputs, dtype):
    """Return the atol for per-sample losses.

    Element losses are rounded to the dtype in both paths and summed in a
    different order (double in the compiled kernels, pairwise in the dtype
    in NumPy). KL terms t log(t / p) may have either sign and reach
    |log(1e-7)| < 17, so their sum may cancel. The others are sums of
    nonnegative terms, where the rtol covers it.
    """
    if case != "kld":
        return tolerance(dtype)["atol"]
    return 4 * 17 * n_outputs * eps(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_matches_reference(case, shape, weighted, dtype, rng):
    pred, target = elementwise_inputs(case, shape, dtype, rng)
    weights = rng.random(shape[0]).astype(dtype) if weighted else None
    grad = np.empty_like(pred)
    expected_grad = np.empty_like(pred)
    loss, grad_result = run_elementwise(compiled, case, pred, target, sample_weight=weights,
                                        grad_scale=0.3, grad_out=grad)
    expected_loss, _ = run_elementwise(reference, case, pred, target, sample_weight=weights,
                                       grad_scale=0.3, grad_out=expected_grad)
    assert grad_result is grad
    assert loss.dtype == dtype
    assert loss.shape == (shape[0],)
    assert_close(loss, expected_loss, dtype, elementwise_loss_atol(case, shape[1], dtype))
    if case in EXACT_GRADIENT:
        np.testing.assert_array_equal(grad, expected_grad)
    else:
        np.testing.assert_allclose(grad, expected_grad, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_any_layout(case, layout, dtype, rng):
    pred, target = elementwise_inputs(case, (19, 7), dtype, rng)
    expected = run_elementwise(compiled, case, pred, target, grad_out=np.empty_like(pred))
    actual = run_elementwise(compiled, case, as_layout(pred, layout),
                             as_layout(target, layout), grad_out=np.empty_like(pred))
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_independent_of_threads(case, dtype, rng):
    # 600 x 70 elements are past both thresholds, and a row is never split.
    pred, target = elementwise_inputs(case, (600, 70), dtype, rng)
    weights = rng.random(600).astype(dtype)
    results = []
    for n_threads in (1, 2):
        grad = np.empty_like(pred)
        loss, _ = run_elementwise(compiled, case, pred, target, sample_weight=weights,
                                  grad_out=grad, n_threads=n_threads)
        results.append((loss, grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("over", ["pred", "target"])
@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_gradient_in_place(case, over, rng):
    pred, target = elementwise_inputs(case, (5, 4), np.float64, rng)
    expected_loss, expected_grad = run_elementwise(compiled, case, pred, target,
                                                   grad_out=np.empty((5, 4)))
    out = pred if over == "pred" else target
    loss, grad = run_elementwise(compiled, case, pred, target, grad_out=out)
    assert grad is out
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(out, expected_grad)


@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_outputs(case, rng):
    pred, target = elementwise_inputs(case, (5, 3), np.float64, rng)
    loss_out = np.full(10, np.nan)[::2]
    grad_out = np.asfortranarray(np.full((5, 3), np.nan))
    loss, grad = run_elementwise(compiled, case, pred, target, loss_out=loss_out,
                                 grad_out=grad_out)
    assert np.shares_memory(loss, loss_out)
    assert grad is grad_out
    expected_loss, expected_grad = run_elementwise(compiled, case, pred, target,
                                                   grad_out=np.empty((5, 3)))
    np.testing.assert_array_equal(loss_out, expected_loss)
    np.testing.assert_array_equal(grad_out, expected_grad)
    only_loss, no_grad = run_elementwise(compiled, case, pred, target)
    assert no_grad is None
    np.testing.assert_array_equal(only_loss, expected_loss)


@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_empty_batch(case):
    pred = np.zeros((0, 3))
    loss, grad = run_elementwise(compiled, case, pred, pred.copy(), grad_out=np.zeros((0, 3)))
    assert loss.shape == (0,)
    assert grad.shape == (0, 3)


@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_argument_errors(case):
    name = ELEMENTWISE_CASES[case][0]
    with pytest.raises(TypeError, match=f"{name}: pred and target must have the same dtype, got float64 and float32"):
        run_elementwise(compiled, case, np.zeros((2, 3)), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=rf"{name}: pred and target must have the same shape, got \(2, 3\) and \(3, 2\)"):
        run_elementwise(compiled, case, np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"pred must be 2-D \(n_samples, n_features\), got shape \(6,\)"):
        run_elementwise(compiled, case, np.zeros(6), np.zeros(6))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(2,\), got \(3,\)"):
        run_elementwise(compiled, case, np.zeros((2, 3)), np.zeros((2, 3)),
                        sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="pred must have dtype float32 or float64, got int64"):
        run_elementwise(compiled, case, np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64))


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan"), float("inf")])
def test_huber_delta_rejected(delta):
    with pytest.raises(ValueError, match="huber: delta must be finite and > 0"):
        compiled.huber(np.zeros((2, 3)), np.zeros((2, 3)), delta=delta)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_absolute_error_sign_at_zero(dtype):
    # np.sign(0) = 0, so an exact prediction has gradient 0, and NaN stays NaN.
    pred = np.array([[1.0, 2.0, np.nan, -1.0]], dtype=dtype)
    target = np.array([[1.0, 1.0, 0.0, 1.0]], dtype=dtype)
    grad = np.empty_like(pred)
    loss, _ = compiled.mean_absolute_error(pred, target, grad_out=grad, grad_scale=4.0)
    np.testing.assert_array_equal(grad[0, [0, 1, 3]], [0.0, 1.0, -1.0])
    assert np.isnan(grad[0, 2])
    assert np.isnan(loss[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_huber_branches(dtype):
    # |e| = 0.5 <= 1 is quadratic, |e| = 1 sits on the boundary (quadratic),
    # |e| = 3 and inf are linear.
    pred = np.array([[0.5, -1.0, 3.0, np.inf]], dtype=dtype)
    target = np.zeros_like(pred)
    grad = np.empty_like(pred)
    loss, _ = compiled.huber(pred, target, grad_out=grad, grad_scale=4.0)
    np.testing.assert_array_equal(grad, [[0.5, -1.0, 1.0, 1.0]])
    assert loss[0] == np.inf
    finite = compiled.huber(pred[:, :3], target[:, :3])[0]
    # (0.125 + 0.5 + (3 - 0.5)) / 3
    np.testing.assert_allclose(finite, [3.125 / 3], rtol=4 * eps(dtype))


@pytest.mark.parametrize("module", [compiled, reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_binary_logits_extremes(module, dtype):
    # Columns: logits of +-100 and +-inf, each with both labels. A logit that
    # agrees with its label costs log1p(exp(-100)) (below 4e-44, a subnormal
    # in float32) or exactly 0 for inf, and one that disagrees costs exactly
    # 100, or inf. Every gradient stays finite.
    z = np.array([[100.0, 100.0, -100.0, -100.0, np.inf, np.inf, -np.inf, -np.inf]],
                 dtype=dtype)
    t = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]], dtype=dtype)
    grad = np.empty_like(z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            module.binary_cross_entropy(z, t, from_logits=True, grad_out=grad)
    per_element = np.empty(8, dtype=dtype)
    for j in range(8):
        per_element[j] = module.binary_cross_entropy(z[:, j:j + 1], t[:, j:j + 1],
                                                     from_logits=True)[0][0]
    tiny = np.log1p(np.exp(dtype(-100)))
    assert 0 < tiny < 4e-44
    np.testing.assert_array_equal(per_element,
                                  [tiny, 100, tiny, 100, 0, np.inf, 0, np.inf])
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(grad[0, 4:], [0.0, 1 / 8, 0.0, -1 / 8])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_binary_logits_soft_label_at_infinity(dtype):
    # With a soft label the wrong side costs inf: inf * (1 - 0.3).
    z = np.array([[np.inf], [-np.inf]], dtype=dtype)
    t = np.array([[0.3], [0.3]], dtype=dtype)
    loss, _ = compiled.binary_cross_entropy(z, t, from_logits=True)
    np.testing.assert_array_equal(loss, [np.inf, np.inf])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_binary_probabilities_clip(dtype):
    # p = 0 and 1 are clipped to [1e-7, 1 - 1e-7] (rounded to the dtype), so
    # a confident wrong prediction costs -log(1e-7) = 16.1 and its gradient is 0,
    # the derivative of the clip. NaN passes through the clip.
    low = dtype(1e-7)
    high = dtype(1 - 1e-7)
    p = np.array([[0.0, 1.0, 0.0, 1.0, np.nan]], dtype=dtype)
    t = np.array([[1.0, 0.0, 0.0, 1.0, 1.0]], dtype=dtype)
    grad = np.empty_like(p)
    compiled.binary_cross_entropy(p, t, grad_out=grad, grad_scale=5.0)
    np.testing.assert_array_equal(grad[0, :4], [0.0, 0.0, 0.0, 0.0])
    assert np.isnan(grad[0, 4])
    wrong, _ = compiled.binary_cross_entropy(p[:, :1], t[:, :1])
    np.testing.assert_allclose(wrong, [-np.log(low)], rtol=16 * eps(dtype))
    right, _ = compiled.binary_cross_entropy(p[:, 3:4], t[:, 3:4])
    np.testing.assert_allclose(right, [-np.log(high)], rtol=16 * eps(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_kl_divergence_clip(dtype):
    # Targets of 0 are clipped to 1e-7, so they add 1e-7 log(1e-7 / p), and
    # predictions outside [1e-7, 1] get gradient 0.
    p = np.array([[0.5, 0.0, 2.0]], dtype=dtype)
    t = np.array([[0.0, 0.5, 0.5]], dtype=dtype)
    grad = np.empty_like(p)
    loss, _ = compiled.kl_divergence(p, t, grad_out=grad)
    expected, _ = reference.kl_divergence(p, t)
    np.testing.assert_allclose(loss, expected, **tolerance(dtype))
    tiny = float(dtype(1e-7))
    by_hand = (tiny * np.log(tiny / 0.5) + 0.5 * np.log(0.5 / tiny) + 0.5 * np.log(0.5))
    np.testing.assert_allclose(loss, [by_hand], rtol=64 * eps(dtype))
    np.testing.assert_array_equal(grad[0, 1:], [0.0, 0.0])
    np.testing.assert_allclose(grad[0, 0], -tiny / 0.5, rtol=4 * eps(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_elementwise_property(case, dtype, data):
    # Any finite or infinite values and NaN: the gradients of the exact cases
    # match to the last bit (NaN included), and the losses agree where the
    # reference's is finite and are NaN where it is.
    width = 32 if dtype == np.float32 else 64
    pred = data.draw(hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(width=width),
    ))
    target = data.draw(hnp.arrays(dtype=dtype, shape=pred.shape,
                                  elements=st.floats(-2.0, 2.0, width=width)))
    grad = np.empty_like(pred)
    loss, _ = run_elementwise(compiled, case, pred, target, grad_out=grad)
    expected_grad = np.empty_like(pred)
    with np.errstate(all="ignore"):
        expected_loss, _ = run_elementwise(reference, case, pred, target,
                                           grad_out=expected_grad)
    if case in EXACT_GRADIENT:
        np.testing.assert_array_equal(grad, expected_grad)
    else:
        np.testing.assert_allclose(grad, expected_grad, equal_nan=True, **tolerance(dtype))
    finite = np.isfinite(expected_loss)
    # Element losses may be huge here, so the atol scales with the largest.
    with np.errstate(all="ignore"):
        scale = float(np.max(np.abs(expected_loss[finite]), initial=1.0))
    atol = max(elementwise_loss_atol(case, pred.shape[1], dtype),
               8 * pred.shape[1] * eps(dtype) * scale)
    assert_close(loss[finite], expected_loss[finite], dtype, atol)
    assert np.isnan(loss[np.isnan(expected_loss)]).all()


# ---------------------------------------------------------------------------
# Loss classes: reductions, targets, names and configs.
# ---------------------------------------------------------------------------

NEW_LOSS_CLASSES = {
    "mean_absolute_error": lambda **kw: losses.MeanAbsoluteError(**kw),
    "huber": lambda **kw: losses.Huber(delta=0.5, **kw),
    "binary_crossentropy": lambda **kw: losses.BinaryCrossentropy(**kw),
    "binary_crossentropy_logits": lambda **kw: losses.BinaryCrossentropy(from_logits=True,
                                                                         **kw),
    "kl_divergence": lambda **kw: losses.KLDivergence(**kw),
}


def class_inputs(name, rng, shape=(6, 3)):
    if name in ("binary_crossentropy", "kl_divergence"):
        return rng.random(shape), rng.random(shape)
    if name == "binary_crossentropy_logits":
        return (rng.random(shape) > 0.5).astype(float), 3 * rng.standard_normal(shape)
    return rng.standard_normal(shape), rng.standard_normal(shape)


@pytest.mark.parametrize("reduction", losses.losses.REDUCTIONS[:4] + ("none",))
@pytest.mark.parametrize("name", list(NEW_LOSS_CLASSES))
def test_loss_class_reductions(name, reduction, rng):
    y_true, y_pred = class_inputs(name, rng)
    weights = rng.random(6) + 0.5
    loss = NEW_LOSS_CLASSES[name](reduction=reduction)
    per_sample = NEW_LOSS_CLASSES[name](reduction="none")(y_true, y_pred)
    weighted = per_sample * weights
    value = loss(y_true, y_pred, sample_weight=weights)
    if reduction == "none":
        np.testing.assert_allclose(value, weighted, rtol=1e-12)
    elif reduction == "sum":
        np.testing.assert_allclose(value, weighted.sum(), rtol=1e-12)
    elif reduction == "mean_with_sample_weight":
        np.testing.assert_allclose(value, weighted.sum() / weights.sum(), rtol=1e-12)
    else:
        np.testing.assert_allclose(value, weighted.mean(), rtol=1e-12)


@pytest.mark.parametrize("name", list(NEW_LOSS_CLASSES))
def test_loss_class_gradient_is_reduced(name, rng):
    # compute's gradient is that of the reduced, weighted loss.
    y_true, y_pred = class_inputs(name, rng)
    weights = rng.random(6) + 0.5
    loss = NEW_LOSS_CLASSES[name]()
    _, grad = loss.compute(y_true, y_pred, weights)
    kernel_name, kwargs = {
        "mean_absolute_error": ("mean_absolute_error", {}),
        "huber": ("huber", {"delta": 0.5}),
        "binary_crossentropy": ("binary_cross_entropy", {}),
        "binary_crossentropy_logits": ("binary_cross_entropy", {"from_logits": True}),
        "kl_divergence": ("kl_divergence", {}),
    }[name]
    expected = np.empty_like(y_pred)
    getattr(compiled, kernel_name)(y_pred, y_true, sample_weight=weights,
                                   grad_scale=1 / 6, grad_out=expected, **kwargs)
    np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize("name", list(NEW_LOSS_CLASSES))
def test_loss_class_higher_rank(name, rng):
    # Outputs of shape (n, 2, 3): each sample's loss is the mean over its two
    # rows, and the reduced loss equals that of the six rows flattened.
    y_true, y_pred = class_inputs(name, rng, shape=(4, 2, 3))
    loss = NEW_LOSS_CLASSES[name]()
    per_sample, grad = loss.compute(y_true, y_pred)
    rows, row_grad = loss.compute(y_true.reshape(8, 3), y_pred.reshape(8, 3))
    np.testing.assert_allclose(per_sample, rows.reshape(4, 2).mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(grad.reshape(8, 3), row_grad, rtol=1e-14)


@pytest.mark.parametrize("name", list(NEW_LOSS_CLASSES))
def test_loss_class_trailing_axis_of_one(name, rng):
    y_true, y_pred = class_inputs(name, rng, shape=(5, 1))
    loss = NEW_LOSS_CLASSES[name](reduction="none")
    np.testing.assert_array_equal(loss(y_true[:, 0], y_pred), loss(y_true, y_pred))
    loss.validate_targets(y_true[:, 0], (5, 1))


def test_binary_crossentropy_target_error():
    loss = losses.BinaryCrossentropy()
    expected = (
        r"binary_crossentropy: targets of shape \(4,\) do not match predictions of "
        r"shape \(4, 3\); binary cross-entropy needs one 0/1 target per output. For "
        r"integer class labels with several classes use SparseCategoricalCrossentropy"
    )
    with pytest.raises(ValueError, match=expected):
        loss.validate_targets(np.zeros(4), (4, 3))


def test_regression_target_error():
    with pytest.raises(ValueError, match=r"mean_absolute_error: targets of shape \(4, 2\) do not match"):
        losses.MeanAbsoluteError().validate_targets(np.zeros((4, 2)), (4, 3))


def test_binary_crossentropy_label_smoothing(rng):
    y_true = (rng.random((5, 2)) > 0.5).astype(float)
    y_pred = rng.random((5, 2))
    smoothed = losses.BinaryCrossentropy(label_smoothing=0.2, reduction="none")
    plain = losses.BinaryCrossentropy(reduction="none")
    np.testing.assert_allclose(smoothed(y_true, y_pred),
                               plain(y_true * 0.8 + 0.1, y_pred), rtol=1e-15)


def test_binary_crossentropy_logits_flag(rng):
    # compute(logits=True), which the model passes when it fuses a sigmoid,
    # reads y_pred as logits even though the loss expects probabilities.
    y_true = (rng.random((5, 2)) > 0.5).astype(float)
    z = 3 * rng.standard_normal((5, 2))
    on_logits = losses.BinaryCrossentropy(from_logits=True)
    fused = losses.BinaryCrossentropy()
    expected = on_logits.compute(y_true, z)
    actual = fused.compute(y_true, z, logits=True)
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [({"label_smoothing": 1.5}, ValueError, r"`label_smoothing` must be in \[0, 1\]"),
     ({"axis": 0}, ValueError, "only axis=-1 is supported, got axis=0")],
)
def test_binary_crossentropy_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        losses.BinaryCrossentropy(**kwargs)


@pytest.mark.parametrize(
    "delta, error, message",
    [(0.0, ValueError, "Huber: `delta` must be finite and > 0, got delta=0.0"),
     (-1, ValueError, "got delta=-1"),
     (float("nan"), ValueError, "got delta=nan"),
     ("1", TypeError, "Huber: `delta` must be a float, got delta='1'")],
)
def test_huber_arguments(delta, error, message):
    with pytest.raises(error, match=message):
        losses.Huber(delta=delta)


@pytest.mark.parametrize(
    "name, cls",
    [("mae", "MeanAbsoluteError"), ("mean_absolute_error", "MeanAbsoluteError"),
     ("huber", "Huber"), ("binary_crossentropy", "BinaryCrossentropy"),
     ("kl_divergence", "KLDivergence"), ("kld", "KLDivergence")],
)
def test_loss_registry_names(name, cls):
    assert type(losses.get(name)).__name__ == cls


@pytest.mark.parametrize(
    "loss",
    [losses.MeanAbsoluteError(reduction="sum"), losses.Huber(delta=2.5),
     losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
     losses.KLDivergence(name="kl")],
    ids=["mae", "huber", "bce", "kld"],
)
def test_loss_config_round_trip(loss):
    restored = losses.deserialize(losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()


def test_loss_default_names():
    assert losses.MeanAbsoluteError().name == "mean_absolute_error"
    assert losses.Huber().name == "huber_loss"
    assert losses.BinaryCrossentropy().name == "binary_crossentropy"
    assert losses.KLDivergence().name == "kl_divergence"


def test_loss_functions(rng):
    y_true, y_pred = rng.random((4, 3)), rng.random((4, 3))
    assert losses.mae is losses.MAE is losses.mean_absolute_error
    assert losses.kld is losses.KLD is losses.kl_divergence
    np.testing.assert_array_equal(losses.mae(y_true, y_pred),
                                  np.abs(y_true - y_pred).mean(axis=-1))
    np.testing.assert_array_equal(losses.huber(y_true, y_pred, delta=0.1),
                                  losses.Huber(delta=0.1, reduction=None)(y_true, y_pred))
    np.testing.assert_array_equal(
        losses.binary_crossentropy(y_true, y_pred, label_smoothing=0.1),
        losses.BinaryCrossentropy(label_smoothing=0.1, reduction=None)(y_true, y_pred))
    np.testing.assert_array_equal(losses.kl_divergence(y_true, y_pred),
                                  losses.KLDivergence(reduction=None)(y_true, y_pred))
