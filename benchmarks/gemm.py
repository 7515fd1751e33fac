"""Compare nnfast's GEMM with NumPy's matmul (OpenBLAS) in one process.

Usage::

    python benchmarks/gemm.py [--dtype float32 float64] [--threads 1 2]
                              [--sizes 64 128 ...] [--repeats 7]

Both libraries run the same products on the same arrays, with the output
preallocated, the same dtype and the same thread count (NumPy's BLAS threads
are pinned with threadpoolctl). For each product the two sides alternate,
batch by batch, so that a change in machine load hits both. Each batch repeats
the product until it takes about --batch-seconds, after untimed calls that
wake the worker threads, and the reported rate is the median over --repeats
batches. The ratio nnfast/numpy is the median of the per-pair ratios. A
pair is an nnfast batch and the numpy batch that ran right after it, so a
slow spell of the machine that spans both batches cancels out, and one that
hits a single batch moves only one ratio. On a shared
machine, --timer thread (one thread only) measures the calling thread's CPU
time, which other processes do not inflate. Multi-threaded runs need an
otherwise idle machine whose CPUs are not shared with each other. With more
than one thread the script prints, before and after the table, the speed-up
of nnfast's float32 1024^3 GEMM on that many threads over one. On a VM it
drops to about 1 while the host runs its virtual CPUs on one core, and the
two-thread rows of such a run compare little.

Products: square sizes, and the six products of one training step of the
Fashion-MNIST MLP 784 -> 128 -> 10 at batch sizes 32 and 256: X W, dY W^T
and X^T dY for both layers.

Some machines set OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE, which make OpenBLAS
use an older, slower kernel. The script re-executes itself without them
before NumPy is imported, so NumPy runs its best kernel for this CPU.
"""

import argparse
import os
import sys

OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

if any(name in os.environ for name in OPENBLAS_OVERRIDES):
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402
except ImportError:
    sys.exit("benchmarks/gemm.py needs threadpoolctl: pip install threadpoolctl")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnfast  # noqa: E402
from nnfast import _runtime  # noqa: E402
from nnfast._gemm import gemm  # noqa: E402

MLP_LAYERS = ((784, 128), (128, 10))


def training_step_products(batch):
    """Return (label, m, n, k, trans_a, trans_b) for one MLP training step."""
    products = []
    for index, (n_in, n_out) in enumerate(MLP_LAYERS, start=1):
        products.append((f"b{batch} L{index} X W", batch, n_out, n_in, False, False))
        products.append((f"b{batch} L{index} dY W^T", batch, n_in, n_out, False, True))
        products.append((f"b{batch} L{index} X^T dY", n_in, n_out, batch, True, False))
    return products


def make_operands(m, n, k, trans_a, trans_b, dtype, rng):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b, np.empty((m, n), dtype=dtype)


# Shortest warm-up before a timed batch. On the project's 2-vCPU VM a worker
# thread woken after a pause sometimes waited 3 to 8 ms before it ran, two or
# three times in a row. A warm-up of a few calls left those waits in the
# timed batch.
MIN_WARM_UP_SECONDS = 0.02


def time_batch(call, batch_seconds, clock):
    """Return the seconds per call, from a batch of about batch_seconds.

    Untimed calls run first for at least MIN_WARM_UP_SECONDS (and a tenth of
    the batch time), so that worker threads asleep since the last batch wake
    up. The median time of the last half of those calls sets the batch's
    call count, because the first calls after a pause are no guide to it.
    """
    warm_up = max(batch_seconds / 10.0, MIN_WARM_UP_SECONDS)
    durations = []
    start = time.perf_counter()
    while len(durations) < 2 or time.perf_counter() - start < warm_up:
        before = time.perf_counter()
        call()
        durations.append(time.perf_counter() - before)
    once = max(statistics.median(durations[len(durations) // 2:]), 1e-7)
    count = max(1, int(batch_seconds / once))
    start = clock()
    for _ in range(count):
        call()
    return (clock() - start) / count


def thread_scaling(n_threads, size=1024):
    """Return the speed-up of a float32 size^3 nnfast GEMM on n_threads.

    The figure checks that the threads had CPUs of their own. On a shared VM
    two virtual CPUs sometimes deliver one core's throughput together, and
    then the two-thread rows of the run compare little.
    """
    a = np.ones((size, size), dtype=np.float32)
    c = np.empty((size, size), dtype=np.float32)

    def best_time(threads):
        gemm(a, a, c, n_threads=threads)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            gemm(a, a, c, n_threads=threads)
            times.append(time.perf_counter() - start)
        return min(times)

    return best_time(1) / best_time(n_threads)


def bench_product(m, n, k, trans_a, trans_b, dtype, n_threads, args, rng):
    a, b, c = make_operands(m, n, k, trans_a, trans_b, dtype, rng)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b

    def run_nnfast():
        gemm(a, b, c, trans_a, trans_b, n_threads=n_threads)

    def run_numpy():
        np.matmul(op_a, op_b, out=c)

    nnfast_times, numpy_times = [], []
    with threadpool_limits(limits=n_threads, user_api="blas"):
        for _ in range(args.repeats):
            nnfast_times.append(time_batch(run_nnfast, args.batch_seconds, args.clock))
            time.sleep(args.pause)
            numpy_times.append(time_batch(run_numpy, args.batch_seconds, args.clock))
            time.sleep(args.pause)
    flops = 2.0 * m * n * k
    ratio = statistics.median(theirs / ours for ours, theirs in zip(nnfast_times, numpy_times))
    return (flops / statistics.median(nnfast_times) / 1e9,
            flops / statistics.median(numpy_times) / 1e9, ratio)


def describe_setup():
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    lines = [
        f"nnfast {nnfast.__version__}, kernel {_runtime.simd_name()}, "
        f"openmp {'on' if nnfast.openmp_enabled() else 'off'}",
        f"numpy {np.__version__}",
    ]
    for info in blas:
        lines.append(
            f"numpy BLAS: {info.get('internal_api')} {info.get('version')}, "
            f"kernel architecture {info.get('architecture')}, "
            f"threading {info.get('threading_layer')}"
        )
    return "\n".join(lines)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                        choices=["float32", "float64"], help="dtypes to run")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="thread counts to run, for both libraries")
    parser.add_argument("--sizes", nargs="+", type=int,
                        default=[64, 128, 256, 512, 1024, 2048],
                        help="square sizes n of the n x n x n products")
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 256],
                        help="MLP batch sizes for the training-step products")
    parser.add_argument("--repeats", type=int, default=7,
                        help="alternating batches per product and library")
    parser.add_argument("--batch-seconds", type=float, default=0.05,
                        help="target duration of one batch, in seconds")
    parser.add_argument("--pause", type=float, default=0.3,
                        help="sleep between batches in seconds, so that the "
                             "other library's worker threads, which may "
                             "busy-wait for a while after a call, are idle "
                             "(with 0.01 s, nnfast's two-thread runs stalled "
                             "behind NumPy's threads on a 2-core machine)")
    parser.add_argument("--timer", choices=["wall", "thread"], default="wall",
                        help="wall: elapsed time. thread: CPU time of the calling "
                             "thread, which ignores time the OS gives to other "
                             "processes; only valid with --threads 1")
    args = parser.parse_args()
    if args.timer == "thread" and args.threads != [1]:
        parser.error("--timer thread measures one thread; use it with --threads 1")
    args.clock = time.thread_time if args.timer == "thread" else time.perf_counter
    return args


def main():
    args = parse_args()
    print(describe_setup())
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    rng = np.random.default_rng(0)
    header = (f"{'dtype':8} {'thr':>3} {'product':22} {'m':>5} {'n':>5} {'k':>5} "
              f"{'nnfast GF/s':>11} {'numpy GF/s':>11} {'ratio':>6}")
    max_threads = max(args.threads)
    if max_threads > 1:
        print(f"thread scaling at start: {thread_scaling(max_threads):.2f}x on "
              f"{max_threads} threads (float32 1024^3, nnfast)")
    print(header)
    print("-" * len(header))
    for dtype_name in args.dtype:
        dtype = np.dtype(dtype_name).type
        for n_threads in args.threads:
            products = [(f"square {s}", s, s, s, False, False) for s in args.sizes]
            for batch in args.batches:
                products += training_step_products(batch)
            for label, m, n, k, trans_a, trans_b in products:
                ours, theirs, ratio = bench_product(m, n, k, trans_a, trans_b, dtype,
                                                    n_threads, args, rng)
                print(f"{dtype_name:8} {n_threads:>3} {label:22} {m:>5} {n:>5} {k:>5} "
                      f"{ours:>11.1f} {theirs:>11.1f} {ratio:>6.2f}", flush=True)
    if max_threads > 1:
        print(f"thread scaling at end: {thread_scaling(max_threads):.2f}x")


if __name__ == "__main__":
    main()
