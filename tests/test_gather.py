"""Compiled row gather against NumPy fancy indexing."""

import numpy as np
import pytest

from nnfast import _gather as compiled
from nnfast import _reference as reference

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

OUT_DTYPES = [np.float32, np.float64]
OUT_IDS = ["float32", "float64"]
SOURCE_DTYPES = ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32",
                 "uint64", "int64", "float32", "float64"]
LAYOUTS = ["c", "fortran", "transposed", "row_strided", "column_strided", "reversed",
           "readonly"]

# Every comparison below is exact: a gather copies values, and converting one
# value to float32 or float64 rounds to nearest in both C and NumPy's astype.


def as_layout(array, layout):
    """Return a 2-D array equal to ``array`` with the named memory layout."""
    if layout == "c":
        return np.ascontiguousarray(array)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "transposed":
        return np.ascontiguousarray(array.T).T
    if layout == "row_strided":
        padded = np.zeros((3 * array.shape[0], array.shape[1]), dtype=array.dtype)
        padded[::3] = array
        return padded[::3]
    if layout == "column_strided":
        padded = np.zeros((array.shape[0], 2 * array.shape[1]), dtype=array.dtype)
        padded[:, 1::2] = array
        return padded[:, 1::2]
    if layout == "reversed":
        return np.ascontiguousarray(array[::-1, ::-1])[::-1, ::-1]
    if layout == "readonly":
        view = array.copy()
        view.flags.writeable = False
        return view
    raise ValueError(f"unknown layout {layout!r}")


def random_source(shape, dtype, rng):
    """Return an array of ``dtype`` that uses much of the dtype's range."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return (1e3 * rng.standard_normal(shape)).astype(dtype)


def expected_gather(x, indices, out_dtype):
    return x[indices].astype(out_dtype)


@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=OUT_IDS)
@pytest.mark.parametrize("source_dtype", SOURCE_DTYPES)
def test_matches_numpy_for_each_dtype(source_dtype, out_dtype, rng):
    x = random_source((31, 13), source_dtype, rng)
    indices = rng.integers(0, 31, 40)
    out = np.full((40, 13), np.nan, dtype=out_dtype)
    result = compiled.gather_rows(x, indices, out)
    assert result is out
    np.testing.assert_array_equal(out, expected_gather(x, indices, out_dtype))


@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=OUT_IDS)
@pytest.mark.parametrize("source_dtype", ["uint8", "float32", "float64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_any_source_layout(layout, source_dtype, out_dtype, rng):
    x = random_source((17, 9), source_dtype, rng)
    indices = rng.permutation(17)
    out = np.empty((17, 9), dtype=out_dtype)
    compiled.gather_rows(as_layout(x, layout), indices, out)
    np.testing.assert_array_equal(out, expected_gather(x, indices, out_dtype))


@pytest.mark.parametrize("index_dtype", ["int32", "int64", "uint8", "uint64", "int16"])
def test_index_dtypes(index_dtype, rng):
    x = rng.standard_normal((20, 3))
    indices = rng.integers(0, 20, 11).astype(index_dtype)
    out = np.empty((11, 3))
    compiled.gather_rows(x, indices, out)
    np.testing.assert_array_equal(out, x[indices])


@pytest.mark.parametrize(
    "shape, n_out",
    [((1, 1), 1), ((1, 5), 3), ((7, 1), 7), ((13, 17), 0), ((2, 257), 5), ((257, 2), 100)],
    ids=str,
)
def test_shapes(shape, n_out, rng):
    x = rng.standard_normal(shape)
    indices = rng.integers(0, shape[0], n_out)
    out = np.empty((n_out, shape[1]), dtype=np.float32)
    compiled.gather_rows(x, indices, out)
    np.testing.assert_array_equal(out, x[indices].astype(np.float32))


def test_zero_columns():
    x = np.empty((4, 0))
    out = np.empty((2, 0))
    assert compiled.gather_rows(x, np.array([3, 0]), out) is out


def test_matches_reference(rng):
    x = rng.integers(0, 256, (50, 28), dtype=np.uint8)
    indices = rng.permutation(50)[:32]
    out = np.empty((32, 28), dtype=np.float32)
    expected = np.empty((32, 28), dtype=np.float32)
    compiled.gather_rows(x, indices, out)
    reference.gather_rows(x, indices, expected)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("source_dtype", ["uint8", "float64"])
def test_independent_of_threads(source_dtype, rng):
    # 2,000 x 64 = 128,000 copied elements are past the parallel threshold.
    x = random_source((3000, 64), source_dtype, rng)
    indices = rng.integers(0, 3000, 2000)
    serial = np.empty((2000, 64), dtype=np.float32)
    threaded = np.empty((2000, 64), dtype=np.float32)
    compiled.gather_rows(x, indices, serial, n_threads=1)
    compiled.gather_rows(x, indices, threaded, n_threads=2)
    np.testing.assert_array_equal(serial, threaded)
    np.testing.assert_array_equal(serial, x[indices].astype(np.float32))


# ---------------------------------------------------------------------------
# Conversion of extreme values.
# ---------------------------------------------------------------------------

def test_float64_extremes_to_float32():
    f32 = np.finfo(np.float32)
    values = [1e300, -1e300, np.inf, -np.inf, np.nan, 1e-40, -1e-44, 1e-300,
              float(f32.max), float(f32.smallest_subnormal), 0.1]
    x = np.array([values])
    out = np.empty((1, len(values)), dtype=np.float32)
    compiled.gather_rows(x, np.array([0]), out)
    with np.errstate(all="ignore"):
        expected = x.astype(np.float32)
    np.testing.assert_array_equal(out, expected)
    # Values in float32's subnormal range stay subnormal, not zero.
    assert 0.0 < out[0, 5] < f32.tiny
    assert -f32.tiny < out[0, 6] < 0.0
    assert out[0, 9] == f32.smallest_subnormal
    # A value past float32's range becomes inf; one below its smallest
    # subnormal becomes zero.
    assert out[0, 0] == np.inf
    assert out[0, 7] == 0.0


@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=OUT_IDS)
def test_subnormal_source_kept(out_dtype):
    tiny = np.finfo(out_dtype).smallest_subnormal
    x = np.array([[tiny, -tiny], [3 * tiny, 0.0]], dtype=out_dtype)
    out = np.empty((2, 2), dtype=out_dtype)
    compiled.gather_rows(x, np.array([1, 0]), out)
    np.testing.assert_array_equal(out, x[[1, 0]])


def test_large_integers_round_to_nearest():
    # Integers past 2**24 (float32) and 2**53 (float64) round as astype does.
    x = np.array([[2**24 + 1, 2**53 + 1, -(2**63), 2**63 - 1]], dtype=np.int64)
    for out_dtype in OUT_DTYPES:
        out = np.empty((1, 4), dtype=out_dtype)
        compiled.gather_rows(x, np.array([0]), out)
        np.testing.assert_array_equal(out, x.astype(out_dtype))
    x = np.array([[2**64 - 1, 2**63 + 1]], dtype=np.uint64)
    out = np.empty((1, 2))
    compiled.gather_rows(x, np.array([0]), out)
    np.testing.assert_array_equal(out, x.astype(np.float64))


# ---------------------------------------------------------------------------
# Argument errors.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 10, 99])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_index_out_of_range(bad, index_dtype):
    x = np.zeros((10, 2))
    indices = np.array([0, 9, 4, bad], dtype=index_dtype)
    expected = (
        rf"gather_rows: index {bad} at position 3 is out of range, "
        r"expected a row index in \[0, 10\)"
    )
    out = np.full((4, 2), 7.0)
    with pytest.raises(ValueError, match=expected):
        compiled.gather_rows(x, indices, out)
    assert (out == 7.0).all()


def test_float_indices():
    with pytest.raises(TypeError, match="indices must have an integer dtype, got float64"):
        compiled.gather_rows(np.zeros((3, 2)), np.zeros(2), np.zeros((2, 2)))


def test_indices_two_dimensional():
    with pytest.raises(ValueError, match=r"indices must be 1-D, got shape \(1, 2\)"):
        compiled.gather_rows(np.zeros((3, 2)), np.zeros((1, 2), np.int64), np.zeros((2, 2)))


def test_source_one_dimensional():
    with pytest.raises(ValueError, match=r"x must be 2-D \(n_rows, n_cols\), got shape \(3,\)"):
        compiled.gather_rows(np.zeros(3), np.zeros(2, np.int64), np.zeros((2, 1)))


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.dtype(">f4")])
def test_unsupported_source_dtype(dtype):
    with pytest.raises(TypeError, match="x must have a dtype among bool, uint8"):
        compiled.gather_rows(np.zeros((3, 2), dtype=dtype), np.zeros(2, np.int64),
                             np.zeros((2, 2)))


def test_out_wrong_shape():
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3\), got \(2, 2\)"):
        compiled.gather_rows(np.zeros((4, 3)), np.zeros(2, np.int64), np.zeros((2, 2)))


def test_out_integer_dtype():
    with pytest.raises(TypeError, match="out must have dtype float32 or float64, got int32"):
        compiled.gather_rows(np.zeros((4, 3)), np.zeros(2, np.int64),
                             np.zeros((2, 3), np.int32))


def test_out_not_contiguous():
    out = np.zeros((2, 6))[:, ::2]
    with pytest.raises(ValueError, match=r"out must be C-contiguous, got strides \(48, 16\)"):
        compiled.gather_rows(np.zeros((4, 3)), np.zeros(2, np.int64), out)


def test_out_read_only():
    out = np.zeros((2, 3))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        compiled.gather_rows(np.zeros((4, 3)), np.zeros(2, np.int64), out)


def test_out_overlaps_source():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="out must not overlap x"):
        compiled.gather_rows(x, np.array([3, 2]), x[:2])


# ---------------------------------------------------------------------------
# Properties.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=OUT_IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_gather_property(out_dtype, data):
    source_dtype = data.draw(st.sampled_from(SOURCE_DTYPES))
    x = data.draw(hnp.arrays(
        dtype=np.dtype(source_dtype),
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
    ))
    layout = data.draw(st.sampled_from(LAYOUTS))
    indices = np.array(data.draw(st.lists(st.integers(0, x.shape[0] - 1), max_size=30)),
                       dtype=np.int64)
    out = np.empty((indices.shape[0], x.shape[1]), dtype=out_dtype)
    compiled.gather_rows(as_layout(x, layout), indices, out)
    with np.errstate(all="ignore"):
        expected = x[indices].astype(out_dtype)
    np.testing.assert_array_equal(out, expected)
