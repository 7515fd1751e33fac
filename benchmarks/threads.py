"""Measure how nnfast uses threads: Python threads, and kernel threads.

Usage::

    python benchmarks/threads.py [--call-sizes 1 32 1024]
                                 [--batch-sizes 1 2 4 ... 512] [--repeats 5]
                                 [--quick]

(a) Calling threads: 1 and 2 Python threads call ``predict`` on the same
model at once, with nnfast set to 1 kernel thread, so any speed-up comes
from nnfast releasing the GIL. One Python thread with 2 kernel threads is
shown for reference. Each thread checks that its outputs equal those of a
single-threaded call.

(b) Small products: one Dense layer's forward and backward kernels at batch
sizes 1 to 256 with 1 and with 2 kernel threads, for both layers of the
Fashion-MNIST MLP (784 -> 128 relu, 128 -> 10). The backward pass of the
first layer computes no input gradient, as in training. The ratio shows
from which batch size the second thread pays off.

(c) The same as (b), called from a second Python thread while the main
thread's OpenMP team exists, as in a server whose request threads each
call nnfast. Each thread that opens a parallel region owns its own team,
and where the teams outnumber the CPUs nnfast keeps small products on one
thread (see csrc/threads.c).
"""

import sys

import _common

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import functools  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import nnfast  # noqa: E402
from nnfast._dense import dense_backward, dense_forward  # noqa: E402

# Sleep between measurements, so that the OpenMP worker threads of the last
# one stop spinning before the next one starts.
PAUSE_SECONDS = 0.02

# (n_in, n_out, activation, computes the input gradient) of the MLP's layers.
MLP_LAYERS = ((784, 128, "relu", False), (128, 10, "linear", True))

# The second thread "pays off" when it cuts the time by at least this share.
PAYOFF = 0.10


# (a) Python threads calling predict ----------------------------------------------


def build_model():
    nnfast.utils.set_random_seed(0)
    model = nnfast.Sequential([
        nnfast.Input(shape=(28, 28)),
        nnfast.layers.Flatten(),
        nnfast.layers.Dense(128, activation="relu"),
        nnfast.layers.Dense(10),
    ])
    model.build((None, 28, 28))
    return model


def run_calling_threads(model, x, n_python_threads, calls):
    """Return samples per second of n Python threads, each making ``calls`` calls.

    Raises RuntimeError when a thread's last output differs from that of a
    call made before the threads start.
    """
    expected = model.predict(x, batch_size=x.shape[0], verbose=0)
    barrier = threading.Barrier(n_python_threads + 1)
    mismatches = []
    errors = []

    def work():
        try:
            barrier.wait()
            output = None
            for _ in range(calls):
                output = model.predict(x, batch_size=x.shape[0], verbose=0)
            if not np.array_equal(output, expected):
                mismatches.append(float(np.max(np.abs(output - expected))))
        except Exception as error:  # reported by the main thread below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(n_python_threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"a calling thread failed: {errors[0]!r}") from errors[0]
    if mismatches:
        raise RuntimeError(
            f"outputs of {n_python_threads} calling threads differ from a "
            f"single call by up to {max(mismatches):.3e}"
        )
    return n_python_threads * calls * x.shape[0] / seconds


def calls_for(model, x, seconds):
    """Return how many predict calls take about ``seconds`` on one thread."""
    per_call = _common.seconds_per_call(
        lambda: model.predict(x, batch_size=x.shape[0], verbose=0), 0.05)
    return max(1, int(seconds / per_call))


def report_calling_threads(args, model, rng):
    # (Python threads, kernel threads) per row.
    setups = ((1, 1), (2, 1), (1, 2))
    print("(a) Python threads calling predict on one model at once, samples per "
          f"second (median of {args.repeats})")
    print(f"  {'call size':>9} {'1 py x 1 thr':>13} {'2 py x 1 thr':>13} "
          f"{'speed-up':>8} {'1 py x 2 thr':>13}")
    speedups = {}
    load = _common.OtherLoad()
    for call_size in args.call_sizes:
        x = rng.random((call_size, 28, 28), dtype=np.float32)
        nnfast.set_num_threads(1)
        _common.wait_for_quiet(args)
        calls = calls_for(model, x, args.seconds)
        rates = {setup: [] for setup in setups}
        for repeat in range(args.repeats):
            shift = repeat % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                n_python, n_kernel = setup
                nnfast.set_num_threads(n_kernel)
                time.sleep(PAUSE_SECONDS)
                with load.measuring():
                    samples_per_second = run_calling_threads(model, x, n_python,
                                                             calls)
                rates[setup].append(samples_per_second)
        rate = {setup: _common.median(values) for setup, values in rates.items()}
        speedups[call_size] = rate[(2, 1)] / rate[(1, 1)]
        print(f"  {call_size:>9} {rate[(1, 1)]:>13,.0f} {rate[(2, 1)]:>13,.0f} "
              f"{speedups[call_size]:>7.2f}x {rate[(1, 2)]:>13,.0f}")
    print("  Every calling thread's outputs equal a single-threaded call's.")
    _common.print_other_load(load)
    print()
    return speedups


# (b) Kernel threads on small products -------------------------------------------


def dense_step(n_in, n_out, activation, with_dx, batch_size, rng):
    """Return a function(n_threads) that runs one forward and backward pass."""
    x = rng.standard_normal((batch_size, n_in), dtype=np.float32)
    kernel = rng.standard_normal((n_in, n_out), dtype=np.float32) * 0.05
    bias = np.zeros(n_out, dtype=np.float32)
    y = np.empty((batch_size, n_out), dtype=np.float32)
    dy = rng.standard_normal((batch_size, n_out), dtype=np.float32)
    kernel_grad = np.empty_like(kernel)
    bias_grad = np.empty_like(bias)
    dx = np.empty_like(x) if with_dx else None

    def step(n_threads):
        dense_forward(x, kernel, bias, activation, out=y, n_threads=n_threads)
        dense_backward(x, kernel, y, dy, activation, kernel_grad, bias_grad,
                       dx_out=dx, n_threads=n_threads)

    return step


def first_payoff(ratios):
    """Return the smallest batch size from which every ratio is below 1 - PAYOFF."""
    payoff_batch = None
    for batch_size in sorted(ratios, reverse=True):
        if ratios[batch_size] > 1.0 - PAYOFF:
            break
        payoff_batch = batch_size
    return payoff_batch


def report_small_products(args, rng, part="(b)"):
    print(f"{part} Dense forward + backward, microseconds per step with 1 and 2 kernel "
          f"threads (median of {args.repeats})")
    payoff = {}
    for n_in, n_out, activation, with_dx in MLP_LAYERS:
        label = f"{n_in} -> {n_out} {activation}"
        label += ", with dx" if with_dx else ", no dx"
        print(f"  layer {label}")
        print(f"  {'batch':>5} {'1 thread':>10} {'2 threads':>10} {'2 / 1':>6}")
        ratios = {}
        load = _common.OtherLoad()
        for batch_size in args.batch_sizes:
            step = dense_step(n_in, n_out, activation, with_dx, batch_size, rng)
            _common.wait_for_quiet(args)
            times = {1: [], 2: []}
            for repeat in range(args.repeats):
                for n_threads in ((1, 2) if repeat % 2 == 0 else (2, 1)):
                    time.sleep(PAUSE_SECONDS)
                    with load.measuring():
                        seconds = _common.seconds_per_call(
                            functools.partial(step, n_threads), args.batch_seconds)
                    times[n_threads].append(seconds)
            one_thread = _common.median(times[1])
            two_threads = _common.median(times[2])
            ratios[batch_size] = two_threads / one_thread
            print(f"  {batch_size:>5} {one_thread * 1e6:>10.1f} "
                  f"{two_threads * 1e6:>10.1f} {ratios[batch_size]:>6.2f}")
        _common.print_other_load(load)
        payoff[label] = first_payoff(ratios)
        paying = [str(b) for b, ratio in ratios.items() if ratio <= 1.0 - PAYOFF]
        print(f"  The second thread cuts the time by at least {PAYOFF:.0%} at "
              f"batch sizes: {', '.join(paying) or 'none'}.")
        if payoff[label] is None:
            print("  It does not do so at every size up to the largest measured.\n")
        else:
            print(f"  It does so at every size from batch {payoff[label]} up.\n")
    return payoff


def main():
    args = parse_args()
    _common.print_header("Threads: calling threads and kernel threads")
    if not nnfast.openmp_enabled():
        print("nnfast was built without OpenMP: the kernels run on one thread.\n")
    rng = np.random.default_rng(0)
    model = build_model()
    report_calling_threads(args, model, rng)
    report_small_products(args, rng)
    report_beside_other_team(args, rng)


def report_beside_other_team(args, rng):
    """Run part (b) again in a second Python thread while the main thread's team lives."""
    # The main thread has opened a team of 2 threads in part (b), so a second
    # team would give OpenMP more threads than a 2-CPU machine has.
    print("(c) As (b), called from a second Python thread while the main thread's "
          "2-thread team exists")
    failures = []

    def work():
        try:
            report_small_products(args, rng, part="   ")
        except Exception as error:  # reported by the main thread below
            failures.append(error)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    if failures:
        raise failures[0]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--call-sizes", nargs="+", type=int, default=[1, 32, 1024],
                        help="samples per predict call in part (a)")
    parser.add_argument("--batch-sizes", nargs="+", type=int,
                        default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
                        help="batch sizes of the Dense kernels in part (b)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="alternating measurements per setting")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="target seconds of one calling-thread measurement")
    parser.add_argument("--batch-seconds", type=float, default=0.05,
                        help="target seconds of one kernel-timing batch")
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, short timings and no wait for a quiet "
                             "machine, to check that the script works")
    _common.add_quiet_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds, args.batch_seconds = 1, 0.1, 0.01
        args.max_wait = 0.0
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if min(args.call_sizes) < 1 or min(args.batch_sizes) < 1:
        parser.error("--call-sizes and --batch-sizes take positive integers")
    return args


if __name__ == "__main__":
    sys.exit(main())
