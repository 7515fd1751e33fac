"""Compiled GEMM against the NumPy reference."""

import os
import subprocess
import sys
import textwrap
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nnfast import _reference, _runtime
from nnfast._gemm import (
    gemm,
    gemm_plan,
    gemm_with_dot,
    gemm_with_mixed,
    gemm_with_tiles,
    tile_kernels,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(**settings):
    """Return this process's environment with the checkout on PYTHONPATH and
    ``settings`` applied. A value of None removes that variable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_python(code, env, *args, warnings_fail=False, timeout=120):
    """Run ``code`` in a child Python with ``env`` and return its result.
    With ``warnings_fail`` a RuntimeWarning makes the child fail."""
    options = ["-W", "error::RuntimeWarning"] if warnings_fail else []
    return subprocess.run(
        [sys.executable, *options, "-c", code, *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DTYPES = [np.float32, np.float64]

# The rounding error of a k-term dot product computed in floating point, in
# any summation order, is at most about k * eps/2 times the dot product of
# the absolute values. Both the compiled and the reference result carry such
# an error, and alpha, beta and the final add each round once more. So the
# difference is bounded by (k + slack) * eps * scale, with
# scale = |alpha| |op(A)| |op(B)| + |beta| |C|. `tiny` covers exact zeros.
TOLERANCES = {
    np.float32: {"eps": float(np.finfo(np.float32).eps), "slack": 4, "tiny": 1e-30},
    np.float64: {"eps": float(np.finfo(np.float64).eps), "slack": 4, "tiny": 1e-300},
}

# Sizes around the micro-tile sizes (4, 5, 6, 8, 12, 16), primes, and sizes
# past the KC (256) block size.
SHAPES = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 1, 2),
    (2, 3, 1),
    (6, 16, 8),
    (7, 17, 9),
    (13, 31, 29),
    (37, 41, 43),
    (64, 30, 31),
    (97, 89, 101),
    (128, 128, 257),
    (257, 65, 131),
]


def rng_for(*key):
    """Return a generator seeded from the test's parameters, the same every run."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make_operands(m, n, k, trans_a, trans_b, dtype, rng):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    return a, b, c


def assert_gemm_close(result, expected, a, b, c0, trans_a, trans_b, alpha, beta):
    dtype = result.dtype.type
    tol = TOLERANCES[dtype]
    opa = np.abs(a.T if trans_a else a).astype(np.float64)
    opb = np.abs(b.T if trans_b else b).astype(np.float64)
    k = opa.shape[1]
    scale = abs(alpha) * (opa @ opb)
    if c0 is not None:
        scale = scale + abs(beta) * np.abs(c0.astype(np.float64))
    bound = (k + tol["slack"]) * tol["eps"] * scale + tol["tiny"]
    error = np.abs(result.astype(np.float64) - expected.astype(np.float64))
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else ()
    assert np.all(error <= bound), (
        f"max excess at {worst}: error {error[worst]:.3g} > bound {bound[worst]:.3g}"
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm_matches_reference(shape, trans_a, trans_b, dtype):
    m, n, k = shape
    rng = rng_for(shape, trans_a, trans_b, dtype.__name__)
    a, b, c0 = make_operands(m, n, k, trans_a, trans_b, dtype, rng)
    for alpha, beta in [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)]:
        expected = _reference.gemm(a, b, c0.copy(), trans_a, trans_b, alpha, beta)
        result = gemm(a, b, c0.copy(), trans_a, trans_b, alpha, beta)
        assert result.dtype == dtype
        assert_gemm_close(result, expected, a, b, c0, trans_a, trans_b, alpha, beta)


# Every tile kernel of this CPU's table, run directly: the plan picks only
# some of them for the products above (the AVX-512 tiles, for one, mostly
# for C with 8 or 10 rows). Per kernel, the shapes put m and n one below,
# at and one past the tile and past two tiles, and k at 0, 1 and past the
# 256-step k block.
TILE_KERNELS = [
    (dtype, index, mr, nr)
    for dtype in DTYPES
    for index, (_, mr, nr) in enumerate(tile_kernels(dtype))
]


def tile_kernel_id(case):
    dtype, index, mr, nr = case
    return f"{np.dtype(dtype).name}-{tile_kernels(dtype)[index][0]}-{mr}x{nr}"


def tile_shapes(mr, nr):
    return [
        (mr, nr, 1),
        (mr - 1, nr + 1, 0),
        (mr + 1, nr - 1, 7),
        (2 * mr + 3, 2 * nr + 5, 300),
        (1, 2 * nr, 33),
        (3 * mr, 1, 257),
    ]


@pytest.mark.parametrize("case", TILE_KERNELS, ids=tile_kernel_id)
def test_every_tile_kernel_matches_reference(case):
    dtype, index, mr, nr = case
    rng = rng_for("tile kernel", tile_kernel_id(case))
    for m, n, k in tile_shapes(mr, nr):
        for trans_a, trans_b in ((False, False), (True, False), (False, True), (True, True)):
            a, b, c0 = make_operands(m, n, k, trans_a, trans_b, dtype, rng)
            for alpha, beta, on_transpose, threads in (
                (1.0, 0.0, False, 1),
                (-0.5, 1.0, True, 1),
                (2.0, 0.25, False, 2),
                (1.0, 0.0, True, 2),
            ):
                want = _reference.gemm(a, b, c0.copy(), trans_a, trans_b, alpha, beta)
                c = c0.copy()
                if beta == 0.0:
                    c[...] = np.nan  # beta 0 must not read C
                got = gemm_with_tiles(index, a, b, c, trans_a, trans_b, alpha, beta,
                                      on_transpose=on_transpose, n_threads=threads)
                assert_gemm_close(got, want, a, b, c0, trans_a, trans_b, alpha, beta)
    # Operands read through strides: a Fortran-ordered A and every other
    # column of a wider B.
    m, n, k = 2 * mr + 1, nr + 3, 45
    a = np.asfortranarray(rng.standard_normal((m, k)).astype(dtype))
    b = rng.standard_normal((k, 2 * n)).astype(dtype)[:, ::2]
    for on_transpose in (False, True):
        got = gemm_with_tiles(index, a, b, on_transpose=on_transpose)
        assert_gemm_close(got, _reference.gemm(a, b), a, b, None, False, False, 1.0, 0.0)


def test_unknown_simd_value_warns():
    done = run_python("import nnfast", child_env(NNFAST_SIMD="sse"), warnings_fail=True)
    assert done.returncode != 0
    assert "NNFAST_SIMD='sse' is not one of generic, avx2, avx512" in done.stderr


def test_gemm_with_tiles_checks_kernel():
    a = np.ones((3, 4))
    count = len(tile_kernels(np.float64))
    with pytest.raises(ValueError, match=f"kernel must be below {count} for float64, got {count}"):
        gemm_with_tiles(count, a, a.T)
    with pytest.raises(ValueError, match="kernel must be 0 or more, got -1"):
        gemm_with_tiles(-1, a, a.T)
    with pytest.raises(ValueError, match="kernel must be below"):
        gemm_with_tiles(2**40, a, a.T)
    for bad in (1.5, None):
        with pytest.raises(TypeError, match="kernel must be an int"):
            gemm_with_tiles(bad, a, a.T)
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got int32"):
        tile_kernels(np.int32)


# Products with at most 2 rows of C and contiguous B rows take the
# row-by-row loop. These widths cover its 64- and 8-column blocks and tails.
FEW_ROWS_WIDTHS = [1, 3, 8, 10, 31, 64, 65, 100, 130]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("n", FEW_ROWS_WIDTHS)
def test_gemm_few_rows_match_reference(n, m, dtype):
    rng = rng_for("few rows", n, m, dtype)
    for k in (1, 3, 4, 7, 130):
        a, b, c = make_operands(m, n, k, False, False, dtype, rng)
        for alpha, beta in ((1.0, 0.0), (0.5, 2.0)):
            got = gemm(a, b, c.copy(), alpha=alpha, beta=beta)
            want = _reference.gemm(a, b, c.copy(), alpha=alpha, beta=beta)
            assert_gemm_close(got, want, a, b, c, False, False, alpha, beta)
        # Rows of A that are not contiguous, from a Fortran-ordered copy.
        a_strided = np.asfortranarray(a)
        got = gemm(a_strided, b)
        assert_gemm_close(got, _reference.gemm(a, b), a, b, None, False, False, 1.0, 0.0)


SIMD = _runtime.simd_name() != "generic"

# Narrow products whose A rows and B columns are contiguous along k take the
# dot plan on AVX2 CPUs. The shapes cover 1 to 3 columns (taller tiles),
# column counts around the 6-column tile, k with a partial last vector, and
# k over one k block (512 float32 or 256 float64 steps).
DOT_SHAPES = [
    (3, 1, 9),
    (19, 1, 600),
    (11, 2, 45),
    (10, 3, 70),
    (5, 5, 31),
    (7, 6, 64),
    (9, 7, 100),
    (64, 10, 128),
    (33, 12, 77),
    (17, 13, 250),
    (40, 24, 300),
    (21, 10, 1030),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", DOT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm_dot_plan_matches_reference(shape, dtype):
    m, n, k = shape
    rng = rng_for("dot", shape, dtype.__name__)
    a, b, c0 = make_operands(m, n, k, False, False, dtype, rng)
    b_rows = np.ascontiguousarray(b.T)
    # With SIMD the dot plan runs whatever gemm would choose: B.T's rows are
    # read in place, and row-major B is packed first. It reads the rows of A
    # forward, so A with negative strides goes through gemm's own plan.
    for alpha, beta in ((1.0, 0.0), (-0.75, 0.5)):
        want = _reference.gemm(a, b, c0.copy(), alpha=alpha, beta=beta)
        for name, b_view, tb in (("B", b, False), ("B.T rows", b_rows, True)):
            for a_name, a_view in layouts(a):
                if a_name in ("f-order", "strided"):
                    continue
                dot = SIMD and a_name != "negative-strides"
                product = gemm_with_dot if dot else gemm
                got = product(a_view, b_view, c0.copy(), False, tb, alpha, beta)
                try:
                    assert_gemm_close(got, want, a, b, c0, False, False, alpha, beta)
                except AssertionError as error:
                    raise AssertionError(f"A {a_name}, {name}: {error}") from None


# Row-major B reaches the dot plan through the transposing Bt packer. The
# shapes cover column groups of whole vectors and masked partial ones, k
# steps past the last whole block and k over one k block.
PACKED_BT_CASES = [
    (dtype, shape)
    for dtype in DTYPES
    for shape in [(11, 2, 45), (10, 3, 70), (64, 10, 128), (17, 13, 250), (21, 10, 1030)]
] + [(np.float32, (40, 24, 300))]


@pytest.mark.skipif(not SIMD, reason="the dot plan needs AVX2")
@pytest.mark.parametrize(
    "dtype, shape", PACKED_BT_CASES,
    ids=[f"{np.dtype(d).name}-{'x'.join(map(str, s))}" for d, s in PACKED_BT_CASES],
)
def test_gemm_dot_plan_packs_row_major_b(dtype, shape):
    m, n, k = shape
    rng = rng_for("dot packed Bt", shape, np.dtype(dtype).name)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    b_rows = np.ascontiguousarray(b.T)
    # Packing only moves values, so the result must equal, bit for bit, the
    # one from B^T's rows read in place.
    want = gemm_with_dot(a, b_rows, c0.copy(), False, True, -0.5, 0.25)
    padded = np.zeros((k, n + 3), dtype)
    padded[:, 1:n + 1] = b
    reversed_rows = np.ascontiguousarray(b[::-1])[::-1]
    for name, view in (("row-major", b), ("padded rows", padded[:, 1:n + 1]),
                       ("reversed rows", reversed_rows)):
        got = gemm_with_dot(a, view, c0.copy(), False, False, -0.5, 0.25)
        np.testing.assert_array_equal(got, want, err_msg=f"B {name}")
    assert_gemm_close(want, _reference.gemm(a, b, c0.copy(), alpha=-0.5, beta=0.25),
                      a, b, c0, False, False, -0.5, 0.25)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_dot_plan_on_transposed_product(dtype):
    # A short C whose B rows hold k contiguously: nnfast computes C^T with
    # the dot kernels and writes it with a column stride.
    rng = rng_for("dot C^T", dtype.__name__)
    a = rng.standard_normal((10, 130)).astype(dtype)
    b_rows = rng.standard_normal((200, 130)).astype(dtype)
    c0 = rng.standard_normal((10, 200)).astype(dtype)
    want = _reference.gemm(a, b_rows, c0.copy(), False, True, 2.0, -1.0)
    got = gemm(a, b_rows, c0.copy(), False, True, 2.0, -1.0)
    assert_gemm_close(got, want, a, b_rows, c0, False, True, 2.0, -1.0)
    if SIMD:
        got = gemm_with_dot(a, b_rows, c0.copy(), False, True, 2.0, -1.0, on_transpose=True)
        assert_gemm_close(got, want, a, b_rows, c0, False, True, 2.0, -1.0)


def test_gemm_with_dot_rejects_bad_layouts():
    a = np.ones((5, 40))
    if not SIMD:
        with pytest.raises(ValueError, match="the dot plan needs AVX2"):
            gemm_with_dot(a, np.ones((40, 3)))
        return
    with pytest.raises(ValueError, match=r"\(5, 40\) x \(40, 30\) .* C has 30 columns"):
        gemm_with_dot(a, np.ones((40, 30)))
    with pytest.raises(ValueError, match=r"rows of op\(A\) are not contiguous along k"):
        gemm_with_dot(np.ones((40, 5)).T, np.ones((40, 3)))
    # On C^T the rows of op(B)^T take op(A)'s place, and C's rows its columns.
    with pytest.raises(ValueError, match=r"rows of op\(B\)\^T are not contiguous"):
        gemm_with_dot(np.ones((3, 40)), np.ones((40, 5)), on_transpose=True)
    with pytest.raises(ValueError, match="C has 30 rows"):
        gemm_with_dot(np.ones((30, 8)), np.ones((5, 8)), trans_b=True, on_transpose=True)
    np.testing.assert_allclose(
        gemm_with_dot(np.ones((3, 40)), np.ones((5, 40)), trans_b=True, on_transpose=True),
        np.full((3, 5), 40.0),
    )


DOT_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    from nnfast import _reference, _runtime
    from nnfast._gemm import gemm_with_dot

    shapes = [tuple(int(x) for x in s.split("x")) for s in sys.argv[1].split(",")]
    rng = np.random.default_rng(3)
    for dtype, rtol in ((np.float32, 2e-4), (np.float64, 1e-11)):
        for m, n, k in shapes:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            c = rng.standard_normal((m, n)).astype(dtype)
            for alpha, beta in ((1.0, 0.0), (-0.75, 0.5)):
                want = _reference.gemm(a, b, c.copy(), alpha=alpha, beta=beta)
                for view, tb in ((b, False), (np.ascontiguousarray(b.T), True)):
                    got = gemm_with_dot(a, view, c.copy(), False, tb, alpha, beta)
                    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * k)
    print(_runtime.simd_name(), _runtime.fma512_full())
    """
)


@pytest.mark.skipif(not SIMD, reason="the dot plan needs AVX2")
@pytest.mark.parametrize("setting", ["NNFAST_SIMD=avx2", "NNFAST_FMA512=half"])
def test_avx2_dot_kernels_in_subprocess(setting):
    """CPUs with two 512-bit FMAs per cycle run the AVX-512 dot kernels, so
    the AVX2 ones are checked in a child that NNFAST_SIMD=avx2 or
    NNFAST_FMA512=half keeps on them."""
    name, value = setting.split("=")
    settings = {"NNFAST_SIMD": None, "NNFAST_FMA512": None, name: value}
    shapes = ",".join("x".join(map(str, s)) for s in DOT_SHAPES)
    done = run_python(DOT_SCRIPT, child_env(**settings), shapes)
    assert done.returncode == 0, done.stderr
    simd, full = done.stdout.split()
    assert full == "False"
    if name == "NNFAST_SIMD":
        assert simd == "avx2+fma"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_dot_plan_beta_zero_ignores_nan(dtype):
    rng = rng_for("dot nan", dtype.__name__)
    a, b, _ = make_operands(20, 10, 40, False, False, dtype, rng)
    c = np.full((20, 10), np.nan, dtype=dtype)
    (gemm_with_dot if SIMD else gemm)(a, b, c, beta=0.0)
    assert_gemm_close(c, _reference.gemm(a, b), a, b, None, False, False, 1.0, 0.0)


# The mixed plan runs where the CPU has two 512-bit FMAs per cycle. Its
# shapes put m below, at and past the 8-row tile. They put k at one step,
# below, at and past one vector of steps (8 float64, 16 float32), and past
# one k block (192 float64 or 224 float32 steps). The k steps left over
# after whole vectors then add to C. C has one vector of columns and 0 to 2
# more.
MIXED = _runtime.simd_name() == "avx512" and _runtime.fma512_full()
MIXED_SHAPES = [
    (1, 1, 1),
    (5, 2, 7),
    (8, 1, 8),
    (3, 0, 5),
    (13, 2, 23),
    (37, 2, 128),
    (29, 0, 130),
    (21, 1, 401),
    (64, 2, 200),
]
MIXED_CASES = [
    (dtype, (m, (8 if dtype is np.float64 else 16) + extra, k))
    for dtype in DTYPES
    for m, extra, k in MIXED_SHAPES
]


@pytest.mark.parametrize(
    "dtype, shape", MIXED_CASES,
    ids=[f"{np.dtype(d).name}-{'x'.join(map(str, s))}" for d, s in MIXED_CASES],
)
def test_gemm_mixed_plan_matches_reference(dtype, shape):
    m, n, k = shape
    rng = rng_for("mixed", shape, np.dtype(dtype).name)
    a, b, c0 = make_operands(m, n, k, False, False, dtype, rng)
    # A's rows must be contiguous along k; B may have any strides: its
    # vector of columns is packed, and its other columns are read in place
    # where they are contiguous along k. Without the mixed kernels the
    # same products go through gemm's own plan.
    product = gemm_with_mixed if MIXED else gemm
    for alpha, beta in ((1.0, 0.0), (-0.75, 0.5)):
        want = _reference.gemm(a, b, c0.copy(), alpha=alpha, beta=beta)
        for a_name, a_view in layouts(a):
            if a_name in ("f-order", "strided", "negative-strides"):
                continue
            for b_name, b_view in layouts(b):
                got = product(a_view, b_view, c0.copy(), False, False, alpha, beta)
                try:
                    assert_gemm_close(got, want, a, b, c0, False, False, alpha, beta)
                except AssertionError as error:
                    raise AssertionError(f"A {a_name}, B {b_name}: {error}") from None


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_mixed_plan_on_transposed_product(dtype):
    # C with 10 float64 (18 float32) rows whose B rows hold k contiguously:
    # C^T fits the mixed plan, which then writes C with a column stride.
    rows = 10 if dtype is np.float64 else 18
    rng = rng_for("mixed C^T", dtype.__name__)
    a = rng.standard_normal((rows, 131)).astype(dtype)
    b_rows = rng.standard_normal((45, 131)).astype(dtype)
    c0 = rng.standard_normal((rows, 45)).astype(dtype)
    want = _reference.gemm(a, b_rows, c0.copy(), False, True, 2.0, -1.0)
    if MIXED:
        got = gemm_with_mixed(a, b_rows, c0.copy(), False, True, 2.0, -1.0, on_transpose=True)
    else:
        got = gemm(a, b_rows, c0.copy(), False, True, 2.0, -1.0)
    assert_gemm_close(got, want, a, b_rows, c0, False, True, 2.0, -1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_mixed_plan_thread_counts(dtype):
    n = 10 if dtype is np.float64 else 18
    rng = rng_for("mixed threads", dtype.__name__)
    a, b, c0 = make_operands(61, n, 401, False, False, dtype, rng)
    product = gemm_with_mixed if MIXED else gemm
    one_thread = product(a, b, c0.copy(), False, False, 1.5, 0.5, n_threads=1)
    for threads in (2, 3):
        got = product(a, b, c0.copy(), False, False, 1.5, 0.5, n_threads=threads)
        np.testing.assert_array_equal(got, one_thread, err_msg=f"{threads} threads")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("on_transpose", [False, True], ids=["C", "C^T"])
def test_gemm_mixed_plan_beta_zero_ignores_nan(dtype, on_transpose):
    # On C^T, C has the 10 (18) rows and the tiles write it by columns.
    n = 10 if dtype is np.float64 else 18
    rng = rng_for("mixed nan", on_transpose, dtype.__name__)
    a, b, _ = make_operands(n if on_transpose else 20, 20 if on_transpose else n, 45, False,
                            on_transpose, dtype, rng)
    c = np.full((a.shape[0], b.shape[0] if on_transpose else b.shape[1]), np.nan, dtype)
    if MIXED:
        gemm_with_mixed(a, b, c, False, on_transpose, beta=0.0, on_transpose=on_transpose)
    else:
        gemm(a, b, c, False, on_transpose, beta=0.0)
    want = _reference.gemm(a, b, None, False, on_transpose)
    assert_gemm_close(c, want, a, b, None, False, on_transpose, 1.0, 0.0)


def test_gemm_with_mixed_rejects_what_it_cannot_run():
    a = np.ones((12, 40))
    if not MIXED:
        with pytest.raises(ValueError, match="the mixed plan needs AVX-512 with two 512-bit"):
            gemm_with_mixed(a, np.ones((40, 10)))
        return
    for n in (7, 11):
        with pytest.raises(ValueError, match=rf"C has {n} columns, and the mixed plan takes 8 to "
                                             r"10 for float64"):
            gemm_with_mixed(a, np.ones((40, n)))
    with pytest.raises(ValueError, match=r"takes 16 to 18 for float32"):
        gemm_with_mixed(a.astype(np.float32), np.ones((40, 10), np.float32))
    with pytest.raises(ValueError, match=r"rows of op\(A\) are not contiguous along k"):
        gemm_with_mixed(np.ones((40, 12)).T, np.ones((40, 9)))
    with pytest.raises(ValueError, match=r"rows of op\(B\)\^T are not contiguous"):
        gemm_with_mixed(np.ones((9, 40)), np.ones((40, 12)), on_transpose=True)
    with pytest.raises(ValueError, match="C has 12 rows"):
        gemm_with_mixed(a, np.ones((9, 40)), trans_b=True, on_transpose=True)
    with pytest.raises(ValueError, match="C has 1 row, and the mixed plan takes 8 to 10"):
        gemm_with_mixed(np.ones((1, 40)), np.ones((9, 40)), trans_b=True, on_transpose=True)


def test_gemm_plan_checks_operands():
    a = np.ones((64, 100), np.float32)
    with pytest.raises(TypeError, match="same dtype, got float32 and float64"):
        gemm_plan(a, np.ones((100, 10)))
    with pytest.raises(ValueError, match=r"inner dimensions differ, A.T is \(100, 64\)"):
        gemm_plan(a, np.ones((100, 10), np.float32), trans_a=True)


def test_gemm_plan_names():
    a = np.zeros((256, 128), np.float32)
    assert gemm_plan(a[:2], np.zeros((128, 10), np.float32)) == "rows"
    assert gemm_plan(a[:0], np.zeros((128, 10), np.float32)) == "empty"
    expected = "tiles"
    if SIMD:
        expected = "tiles 8x32" if _runtime.fma512_full() else "tiles 6x16"
    assert gemm_plan(a, np.zeros((128, 128), np.float32)).startswith(expected)
    if SIMD:
        # The batch's gradient X^T dY has no operand contiguous along k.
        assert gemm_plan(a, np.zeros((256, 10), np.float32), trans_a=True).startswith("tiles")
    else:
        assert gemm_plan(a, np.zeros((128, 10), np.float32)).startswith("tiles")
    if SIMD and _runtime.fma512_full():
        # On C^T the 10 columns of the output layer's weight gradient fill
        # the rows of one tile, and the tiles are stored through register
        # transposes.
        x, dy = np.zeros((32, 128)), np.zeros((32, 10))
        assert gemm_plan(x, dy, trans_a=True) == "tiles 10x16 on C^T"
        # The output layer's X W: 8 columns as tiles do, 2 as dot products.
        assert gemm_plan(np.zeros((256, 128)), np.zeros((128, 10))) == "mixed"


NARROW_DENSE = [(np.float32, 10), (np.float64, 10), (np.float32, 18), (np.float64, 8)]


@pytest.mark.parametrize(
    "dtype, n_out", NARROW_DENSE,
    ids=[f"{np.dtype(d).name}-{n}" for d, n in NARROW_DENSE],
)
@pytest.mark.parametrize("activation", _reference.ACTIVATIONS)
def test_dense_forward_narrow_plans_match_reference(activation, dtype, n_out):
    from nnfast._dense import dense_forward

    # A narrow output layer: the epilogue runs on each row chunk of C. With
    # 300 inputs, 10 columns take the dot plan. Where the CPU has two 512-bit
    # FMAs per cycle, 8 or 10 float64 columns and 18 float32 ones take the
    # mixed plan instead.
    rng = rng_for("narrow dense", activation, dtype, n_out)
    x = rng.standard_normal((37, 300)).astype(dtype)
    kernel = rng.standard_normal((300, n_out)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    vec = 8 if dtype is np.float64 else 16
    if MIXED and vec <= n_out <= vec + 2:
        assert gemm_plan(x, kernel) == "mixed"
    elif SIMD and n_out == 10:
        assert gemm_plan(x, kernel) == "dot"
    got = dense_forward(x, kernel, bias, activation)
    want = _reference.dense_forward(x, kernel, bias, activation)
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(got, want, rtol=100 * eps, atol=100 * eps * 300)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("activation", _reference.ACTIVATIONS)
def test_dense_forward_one_row_matches_reference(activation, dtype):
    from nnfast._dense import dense_forward

    rng = rng_for("one row", activation, dtype)
    x = rng.standard_normal((1, 70)).astype(dtype)
    kernel = rng.standard_normal((70, 130)).astype(dtype)
    bias = rng.standard_normal(130).astype(dtype)
    got = dense_forward(x, kernel, bias, activation)
    want = _reference.dense_forward(x, kernel, bias, activation)
    # Values up to about sqrt(70) before the activation, summed over 70 terms.
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(got, want, rtol=100 * eps, atol=100 * eps * 70)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_new_output(dtype):
    rng = rng_for("new", dtype.__name__)
    a, b, _ = make_operands(19, 23, 29, False, False, dtype, rng)
    result = gemm(a, b, beta=5.0)
    expected = _reference.gemm(a, b)
    assert result.shape == (19, 23)
    assert result.dtype == dtype
    assert result.flags.c_contiguous
    assert_gemm_close(result, expected, a, b, None, False, False, 1.0, 0.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(
    "shape",
    [(300, 20, 600), (20, 8300, 7), (600, 600, 300), (50, 1003, 520)],
    ids=["k-blocks", "n-blocks", "m-blocks", "column-chunks"],
)
def test_gemm_several_blocks(shape, dtype):
    # In (50, 1003, 520) each row panel runs along two or three chunks of
    # the packed B panel, the last one narrower than the others.
    m, n, k = shape
    rng = rng_for("blocks", shape, dtype.__name__)
    a, b, c0 = make_operands(m, n, k, False, True, dtype, rng)
    expected = _reference.gemm(a, b, c0.copy(), False, True, 0.75, 0.5)
    result = gemm(a, b, c0.copy(), False, True, 0.75, 0.5)
    assert_gemm_close(result, expected, a, b, c0, False, True, 0.75, 0.5)


def layouts(x):
    """Yield (name, array) views of x's values in several memory layouts."""
    yield "c-order", np.ascontiguousarray(x)
    yield "f-order", np.asfortranarray(x)
    padded = np.zeros((x.shape[0], x.shape[1] + 5), dtype=x.dtype)
    padded[:, : x.shape[1]] = x
    yield "padded-rows", padded[:, : x.shape[1]]
    wide = np.zeros((x.shape[0] * 2, x.shape[1] * 3), dtype=x.dtype)
    wide[::2, ::3] = x
    yield "strided", wide[::2, ::3]
    flipped = np.ascontiguousarray(x[::-1, ::-1])
    yield "negative-strides", flipped[::-1, ::-1]
    readonly = x.copy()
    readonly.flags.writeable = False
    yield "read-only", readonly


# The micro-kernel reads A and B in place for (10, 45, 33), because they are
# short. (23, 37, 41) packs B, and (61, 300, 20) packs A and B.
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("shape", [(10, 45, 33), (23, 37, 41), (61, 300, 20)],
                         ids=lambda s: "x".join(map(str, s)))
def test_gemm_input_layouts(shape, trans_a, trans_b, dtype):
    m, n, k = shape
    rng = rng_for("layouts", shape, trans_a, trans_b, dtype.__name__)
    a, b, c0 = make_operands(m, n, k, trans_a, trans_b, dtype, rng)
    expected = _reference.gemm(a, b, c0.copy(), trans_a, trans_b, 1.5, -1.0)
    for name_a, view_a in layouts(a):
        for name_b, view_b in layouts(b):
            result = gemm(view_a, view_b, c0.copy(), trans_a, trans_b, 1.5, -1.0)
            try:
                assert_gemm_close(result, expected, a, b, c0, trans_a, trans_b, 1.5, -1.0)
            except AssertionError as error:
                raise AssertionError(f"A {name_a}, B {name_b}: {error}") from None


def test_gemm_broadcast_input():
    a = np.broadcast_to(np.arange(5.0), (7, 5))
    b = np.broadcast_to(np.arange(3.0)[None, :], (5, 3))
    np.testing.assert_allclose(gemm(a, b), np.asarray(a) @ np.asarray(b))


def test_gemm_unaligned_input():
    raw = np.zeros(8 * 6 * 4 + 1, dtype=np.uint8)
    a = raw[1:].view(np.float64).reshape(6, 4)
    a[...] = np.arange(24.0).reshape(6, 4)
    assert not a.flags.aligned
    b = np.ones((4, 2))
    np.testing.assert_allclose(gemm(a, b), np.asarray(a) @ b)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_beta_zero_ignores_nan(dtype):
    rng = rng_for("nan", dtype.__name__)
    a, b, _ = make_operands(13, 35, 17, False, False, dtype, rng)
    c = np.full((13, 35), np.nan, dtype=dtype)
    result = gemm(a, b, c, beta=0.0)
    assert np.all(np.isfinite(result))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_beta_one_accumulates_in_place(dtype):
    rng = rng_for("accumulate", dtype.__name__)
    a, b, c0 = make_operands(20, 33, 9, False, False, dtype, rng)
    c = c0.copy()
    result = gemm(a, b, c, beta=1.0)
    assert result is c
    assert np.shares_memory(result, c)
    expected = _reference.gemm(a, b, c0.copy(), beta=1.0)
    assert_gemm_close(c, expected, a, b, c0, False, False, 1.0, 1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (0, 0, 0), (4, 5, 0)],
                         ids=["m0", "n0", "all0", "k0"])
def test_gemm_zero_size(shape, dtype):
    m, n, k = shape
    a = np.ones((m, k), dtype=dtype)
    b = np.ones((k, n), dtype=dtype)
    new = gemm(a, b)
    assert new.shape == (m, n)
    assert new.dtype == dtype
    assert np.all(new == 0)
    c = np.full((m, n), 3.0, dtype=dtype)
    result = gemm(a, b, c, beta=0.5)
    assert result is c
    assert np.all(c == 1.5)
    c[...] = np.nan
    gemm(a, b, c, beta=0.0)
    assert np.all(c == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(
    "shape",
    [(512, 96, 300), (24, 700, 64), (300, 300, 300), (20, 2000, 300), (37, 8300, 600),
     (301, 10, 700), (333, 1, 3000)],
    ids=["tall", "short-wide", "square", "short-wide-k-blocks", "short-wide-n-blocks",
         "narrow-dot-k-blocks", "one-column-dot"],
)
def test_gemm_same_result_for_any_thread_count(shape, dtype):
    # Short, wide shapes split the columns between threads over several k
    # blocks (the last one shorter) and several column blocks. A race between
    # threads shows up only in some runs, so each product runs 5 times.
    m, n, k = shape
    rng = rng_for("threads", shape, dtype.__name__)
    a, b, c0 = make_operands(m, n, k, False, False, dtype, rng)
    one = gemm(a, b, c0.copy(), alpha=1.25, beta=0.5, n_threads=1)
    for _ in range(5):
        two = gemm(a, b, c0.copy(), alpha=1.25, beta=0.5, n_threads=2)
        four = gemm(a, b, c0.copy(), alpha=1.25, beta=0.5, n_threads=4)
        np.testing.assert_array_equal(one, two)
        np.testing.assert_array_equal(one, four)
    expected = _reference.gemm(a, b, c0.copy(), alpha=1.25, beta=0.5)
    assert_gemm_close(two, expected, a, b, c0, False, False, 1.25, 0.5)


def test_gemm_concurrent_python_threads():
    rng = rng_for("concurrent")
    cases = []
    for i in range(8):
        dtype = DTYPES[i % 2]
        m, n, k = 70 + 13 * i, 90 - 5 * i, 150 + 7 * i
        a, b, _ = make_operands(m, n, k, i % 3 == 0, i % 4 == 0, dtype, rng)
        cases.append((a, b, i % 3 == 0, i % 4 == 0))
    expected = [gemm(a, b, None, ta, tb, n_threads=1) for a, b, ta, tb in cases]

    def run(index):
        a, b, ta, tb = cases[index % len(cases)]
        for _ in range(20):
            result = gemm(a, b, None, ta, tb, n_threads=2)
            if not np.array_equal(result, expected[index % len(cases)]):
                return index
        return None

    with ThreadPoolExecutor(max_workers=6) as pool:
        failures = [i for i in pool.map(run, range(24)) if i is not None]
    assert failures == []


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(0, 40),
    n=st.integers(0, 40),
    k=st.integers(0, 40),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    step_a=st.tuples(st.integers(1, 3), st.integers(-2, 3).filter(bool)),
    step_b=st.tuples(st.integers(-3, 3).filter(bool), st.integers(1, 2)),
    fortran=st.booleans(),
    use_f64=st.booleans(),
    beta=st.sampled_from([0.0, 1.0, -0.5]),
)
def test_gemm_property(m, n, k, trans_a, trans_b, step_a, step_b, fortran, use_f64, beta):
    dtype = np.float64 if use_f64 else np.float32
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    shape_a = (k, m) if trans_a else (m, k)
    shape_b = (n, k) if trans_b else (k, n)
    order = "F" if fortran else "C"
    base_a = rng.standard_normal(
        (shape_a[0] * abs(step_a[0]), shape_a[1] * abs(step_a[1]))
    ).astype(dtype, order=order)
    base_b = rng.standard_normal(
        (shape_b[0] * abs(step_b[0]), shape_b[1] * abs(step_b[1]))
    ).astype(dtype, order=order)
    a = base_a[:: step_a[0], :: step_a[1]][: shape_a[0], : shape_a[1]]
    b = base_b[:: step_b[0], :: step_b[1]][: shape_b[0], : shape_b[1]]
    c0 = rng.standard_normal((m, n)).astype(dtype)
    expected = _reference.gemm(a, b, c0.copy(), trans_a, trans_b, 0.5, beta)
    result = gemm(a, b, c0.copy(), trans_a, trans_b, 0.5, beta)
    assert_gemm_close(result, expected, a, b, c0, trans_a, trans_b, 0.5, beta)


def test_gemm_inner_dimension_error():
    a = np.ones((64, 30))
    b = np.ones((31, 16))
    with pytest.raises(ValueError, match=r"inner dimensions differ, A is \(64, 30\) "
                                         r"but B is \(31, 16\)"):
        gemm(a, b)
    with pytest.raises(ValueError, match=r"A\.T is \(30, 64\) but B\.T is \(16, 31\)"):
        gemm(a, b, trans_a=True, trans_b=True)


def test_gemm_dtype_errors():
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        gemm(np.ones((2, 2), dtype=np.int64), np.ones((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="same dtype, got float32 and float64"):
        gemm(np.ones((2, 2), dtype=np.float32), np.ones((2, 2)))
    with pytest.raises(TypeError, match="C must have the dtype of A and B"):
        gemm(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="non-native byte order"):
        gemm(np.ones((2, 2), dtype=">f8"), np.ones((2, 2), dtype=">f8"))
    with pytest.raises(TypeError, match="must be a numpy.ndarray, got list"):
        gemm([[1.0]], np.ones((1, 1)))


def test_gemm_output_errors():
    a = np.ones((4, 3))
    b = np.ones((3, 5))
    with pytest.raises(ValueError, match=r"C must have shape \(4, 5\), got \(5, 4\)"):
        gemm(a, b, np.empty((5, 4)))
    with pytest.raises(ValueError, match="C must be C-contiguous.*ascontiguousarray"):
        gemm(a, b, np.empty((4, 5), order="F"))
    readonly = np.empty((4, 5))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="C must be writeable"):
        gemm(a, b, readonly)
    square = np.ones((4, 4))
    with pytest.raises(ValueError, match="C shares memory with A or B"):
        gemm(square, np.ones((4, 4)), square, beta=1.0)
    with pytest.raises(ValueError, match="must be 2-D, got 1-D"):
        gemm(np.ones(3), b)


def test_cpu_with_avx2_gets_simd_kernel():
    if os.environ.get("NNFAST_SIMD") == "generic":
        pytest.skip("NNFAST_SIMD=generic forces the portable kernel")
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        pytest.skip("/proc/cpuinfo cannot be read")
    flag_lines = [line for line in text.splitlines() if line.startswith("flags")]
    if not flag_lines:
        pytest.skip("/proc/cpuinfo lists no CPU flags")
    flags = set(flag_lines[0].split(":", 1)[1].split())
    if not {"avx2", "fma"} <= flags:
        assert _runtime.simd_name() == "generic"
        return
    expected = "avx512" if "avx512f" in flags else "avx2+fma"
    if os.environ.get("NNFAST_SIMD") == "avx2":
        expected = "avx2+fma"
    assert _runtime.simd_name() == expected
    names = {name for name, _, _ in tile_kernels(np.float32) + tile_kernels(np.float64)}
    assert names == ({"avx2+fma", "avx512"} if expected == "avx512" else {"avx2+fma"})


PORTABLE_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    from nnfast import _reference, _runtime
    from nnfast._dense import dense_backward, dense_forward
    from nnfast._gemm import gemm

    assert _runtime.simd_name() == sys.argv[1], _runtime.simd_name()
    rng = np.random.default_rng(7)
    for dtype, rtol in ((np.float32, 2e-4), (np.float64, 1e-11)):
        for m, n, k in ((1, 1, 1), (5, 7, 3), (37, 41, 300), (130, 9, 17), (1, 130, 70),
                        (2, 9, 5), (2, 64, 33)):
            for ta in (False, True):
                for tb in (False, True):
                    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                    c = rng.standard_normal((m, n)).astype(dtype)
                    got = gemm(np.asfortranarray(a), b, c.copy(), ta, tb, 0.5, 2.0)
                    want = _reference.gemm(a, b, c.copy(), ta, tb, 0.5, 2.0)
                    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * k)
        x = rng.standard_normal((33, 20)).astype(dtype)
        w = rng.standard_normal((20, 11)).astype(dtype)
        bias = rng.standard_normal(11).astype(dtype)
        for activation in _reference.ACTIVATIONS:
            y = dense_forward(x, w, bias, activation)
            want = _reference.dense_forward(x, w, bias, activation)
            np.testing.assert_allclose(y, want, rtol=rtol, atol=rtol * 20)
            dy = rng.standard_normal(y.shape).astype(dtype)
            kg, bg, dx = np.empty_like(w), np.empty_like(bias), np.empty_like(x)
            dense_backward(x, w, y, dy, activation, kg, bg, dx)
            kg_ref, bg_ref, dx_ref = np.empty_like(w), np.empty_like(bias), np.empty_like(x)
            _reference.dense_backward(x, w, y, dy, activation, kg_ref, bg_ref, dx_ref)
            for got, want in ((kg, kg_ref), (bg, bg_ref), (dx, dx_ref)):
                np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 40)
    print("kernels ok")
    """
)


SIMD_NAME_SCRIPT = "from nnfast import _runtime; print(_runtime.simd_name())"


@pytest.mark.parametrize("level", ["generic", "avx2"])
def test_lower_simd_level_in_subprocess(level):
    """NNFAST_SIMD=generic forces the portable kernels. NNFAST_SIMD=avx2 keeps
    an AVX-512 CPU on the AVX2 ones and lowers nothing on other CPUs."""
    expected = level
    if level == "avx2":
        # This process may run with NNFAST_SIMD set, so ask a child without it.
        native = run_python(SIMD_NAME_SCRIPT, child_env(NNFAST_SIMD=None)).stdout.strip()
        expected = "generic" if native == "generic" else "avx2+fma"
    done = run_python(PORTABLE_SCRIPT, child_env(NNFAST_SIMD=level), expected, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "kernels ok" in done.stdout


def test_simd_avx512_keeps_detected_level():
    names = []
    for value in (None, "avx512"):
        done = run_python(SIMD_NAME_SCRIPT, child_env(NNFAST_SIMD=value), warnings_fail=True)
        assert done.returncode == 0, done.stderr
        names.append(done.stdout.strip())
    assert names[0] == names[1]


def cpuinfo_fields():
    """Return the vendor, family and flags of the first CPU in /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        pytest.skip("/proc/cpuinfo cannot be read")
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if not {"vendor_id", "cpu family", "flags"} <= fields.keys():
        pytest.skip("/proc/cpuinfo lacks the vendor, family or flags")
    return fields["vendor_id"], int(fields["cpu family"]), set(fields["flags"].split())


def test_fma512_rate_follows_cpu_family():
    if _runtime.simd_name() != "avx512":
        assert not _runtime.fma512_full()
        return
    if os.environ.get("NNFAST_FMA512"):
        pytest.skip("NNFAST_FMA512 overrides the detection")
    vendor, family, _ = cpuinfo_fields()
    # Intel server cores from Skylake-SP on and AMD Zen 5 (family 26) run
    # two 512-bit FMAs per cycle. Zen 4 (family 25) runs one.
    expected = vendor == "GenuineIntel" or (vendor == "AuthenticAMD" and family >= 26)
    assert _runtime.fma512_full() == expected


FMA512_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from nnfast import _runtime
    from nnfast._gemm import gemm_plan

    a = np.ones((1024, 1024), dtype=np.float32)
    print(_runtime.simd_name(), _runtime.fma512_full(), gemm_plan(a, a))
    """
)


@pytest.mark.parametrize("rate", ["full", "half"])
def test_fma512_override_sets_tile_width(rate):
    """NNFAST_FMA512=full makes the float32 1024^3 product take a 32-wide
    AVX-512 tile, and half the 16-wide AVX2 one, which the cost model rates
    faster where a 512-bit FMA takes both 256-bit pipes."""
    done = run_python(FMA512_SCRIPT, child_env(NNFAST_FMA512=rate, NNFAST_SIMD=None))
    assert done.returncode == 0, done.stderr
    simd, full, plan = done.stdout.split(maxsplit=2)
    if simd != "avx512":
        assert full == "False"
        return
    assert full == str(rate == "full")
    width = int(plan.split()[1].split("x")[1])
    assert width == (32 if rate == "full" else 16), plan


def test_unknown_fma512_value_warns():
    done = run_python("import nnfast", child_env(NNFAST_FMA512="double"), warnings_fail=True)
    assert done.returncode != 0
    assert "NNFAST_FMA512='double' is not one of full, half" in done.stderr
