"""Compare builds of nnfast's C GEMM with each other and with NumPy.

Usage::

    python benchmarks/gemm_builds.py --variant NAME=SOURCE[:DEFINES] ...
                                     --shape "DTYPE M N K [TA TB]" ...
                                     [--rounds 9] [--threads 1]

Each variant compiles ``SOURCE/csrc/*.c`` into a shared library with the C
compiler (``$CC``, else ``cc``), ``-O3 -fopenmp`` and the comma-separated
DEFINES, such as ``NNF_KC_AVX512=128,NNF_L2_BYTES=2097152``. SOURCE may be
this checkout or a worktree of another commit (``git worktree add DIR REV``),
so that two versions of the code, or two block sizes, run side by side.
The libraries are called through ctypes, which adds about a microsecond
per call, so use products of 0.1 ms or more.

Each round times NumPy's matmul, then every variant, on the same arrays and
thread count. A variant's ratio is the median over rounds of NumPy's time
over its time in the same round, so that the clock changes of a shared VM
hit both sides of each ratio alike.
"""

import argparse
import ctypes
import glob
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    sys.exit("benchmarks/gemm_builds.py needs threadpoolctl: pip install threadpoolctl")


def build(name, source, defines, out_dir):
    """Compile SOURCE/csrc into out_dir/libNAME.so and return the library."""
    csrc = os.path.join(source, "csrc")
    sources = sorted(glob.glob(os.path.join(csrc, "*.c")))
    if not sources:
        sys.exit(f"variant {name}: no C sources in {csrc}")
    path = os.path.join(out_dir, f"lib{name}.so")
    command = shlex.split(os.environ.get("CC", "cc")) + [
        "-O3", "-std=c11", "-fno-strict-aliasing", "-fopenmp", "-fPIC", "-shared",
        f"-I{csrc}", *(f"-D{d}" for d in defines), *sources, "-o", path, "-lm",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"variant {name}: the build failed:\n{done.stderr}")
    return ctypes.CDLL(path)


def gemm_function(library, dtype):
    """Return the library's nnf_gemm_f32 or nnf_gemm_f64 with its argument types."""
    index, pointer = ctypes.c_ssize_t, ctypes.c_void_p
    value = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    function = library.nnf_gemm_f32 if dtype == np.float32 else library.nnf_gemm_f64
    function.argtypes = [
        index, index, index, value, pointer, index, index, pointer, index, index,
        value, pointer, index, index, pointer, ctypes.c_int,
    ]
    function.restype = ctypes.c_int
    return function


def parse_shape(text):
    """Return (dtype, m, n, k, trans_a, trans_b) from "DTYPE M N K [TA TB]"."""
    fields = text.split()
    if len(fields) not in (4, 6):
        sys.exit(f"--shape {text!r}: expected \"DTYPE M N K\" or \"DTYPE M N K TA TB\"")
    m, n, k, *trans = (int(x) for x in fields[1:])
    trans_a, trans_b = (bool(t) for t in trans) if trans else (False, False)
    return np.dtype(fields[0]), m, n, k, trans_a, trans_b


def compare(shape, variants, rounds, threads):
    """Print NumPy's rate, and each variant's rate and median ratio, for one product."""
    dtype, m, n, k, trans_a, trans_b = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    c = np.zeros((m, n), dtype)
    expected = op_a @ op_b
    size = dtype.itemsize
    calls = []
    for name, library in variants:
        function = gemm_function(library, dtype)
        args = (m, n, k, 1.0, op_a.ctypes.data, op_a.strides[0] // size,
                op_a.strides[1] // size, op_b.ctypes.data, op_b.strides[0] // size,
                op_b.strides[1] // size, 0.0, c.ctypes.data, n, 1, None, threads)
        calls.append((name, lambda function=function, args=args: function(*args)))
        calls[-1][1]()
        if not np.allclose(c, expected, rtol=1e-3, atol=1e-3 * np.sqrt(k)):
            sys.exit(f"variant {name}: wrong result for {m} x {n} x {k}")
    flops = 2.0 * m * n * k
    repeats = max(1, int(5e7 / flops))

    def seconds(run):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        return (time.perf_counter() - start) / repeats

    numpy_rates = []
    ratios = {name: [] for name, _ in calls}
    rates = {name: [] for name, _ in calls}
    with threadpool_limits(threads):
        for _ in range(rounds):
            numpy_time = seconds(lambda: np.matmul(op_a, op_b, out=c))
            numpy_rates.append(flops / numpy_time / 1e9)
            for name, run in calls:
                elapsed = seconds(run)
                ratios[name].append(numpy_time / elapsed)
                rates[name].append(flops / elapsed / 1e9)
    label = f"{dtype.name} {m}x{n}x{k}"
    label += " A^T" if trans_a else ""
    label += " B^T" if trans_b else ""
    parts = [f"{name} {statistics.median(ratios[name]):.3f} "
             f"({statistics.median(rates[name]):.1f} GF/s)" for name, _ in calls]
    print(f"{label}: " + ", ".join(parts) +
          f"; numpy {statistics.median(numpy_rates):.1f} GF/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME=SOURCE[:DEFINE,DEFINE...]")
    parser.add_argument("--shape", action="append", required=True,
                        help='"DTYPE M N K [TA TB]", such as "float64 2048 2048 2048"')
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args()
    variants = []
    with tempfile.TemporaryDirectory(prefix="nnfast-builds-") as out_dir:
        for text in options.variant:
            name, _, rest = text.partition("=")
            source, _, defines = rest.partition(":")
            if not name.isidentifier() or not source:
                sys.exit(f"--variant {text!r}: expected NAME=SOURCE[:DEFINES]")
            defines = [d for d in defines.split(",") if d]
            variants.append((name, build(name, source, defines, out_dir)))
        print("ratio = NumPy's time / the variant's time, median over "
              f"{options.rounds} rounds, {options.threads} thread(s)")
        for text in options.shape:
            compare(parse_shape(text), variants, options.rounds, options.threads)


if __name__ == "__main__":
    main()
