"""Measure the first prediction after an idle pause, with and without worker binding.

Usage::

    python benchmarks/idle_latency.py [--batch-sizes 32 256] [--pauses 25]
                                      [--pause-seconds 0.3] [--threads 2]

A model of the Fashion-MNIST MLP (784 -> 128 relu -> 10) calls
``predict_on_batch`` once after each of ``--pauses`` sleeps, as a service
does when requests arrive now and then, and then 200 times back to back.
Each setting runs in its own process, because nnfast reads
NNFAST_PIN_THREADS once: binding on (the default on Linux) and off
(``NNFAST_PIN_THREADS=0``). The two processes alternate, twice. The table
gives the median and the largest time after a pause, and the median of the
back-to-back calls.
"""

import _common

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

BACK_TO_BACK_CALLS = 200


def measure(batch_sizes, pauses, pause_seconds, threads):
    """Return the times in seconds, {batch size: (after pauses, back to back)},
    and whether nnfast binds its workers in this process."""
    import numpy as np

    import nnfast
    from nnfast import layers

    nnfast.set_num_threads(threads)
    nnfast.utils.set_random_seed(0)
    model = nnfast.Sequential([
        nnfast.Input((784,)),
        layers.Dense(128, activation="relu"),
        layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((max(batch_sizes), 784), dtype=np.float32)
    model.predict_on_batch(x)
    results = {}
    for size in batch_sizes:
        batch = x[:size]
        after_pause = []
        for _ in range(pauses):
            time.sleep(pause_seconds)
            start = time.perf_counter()
            model.predict_on_batch(batch)
            after_pause.append(time.perf_counter() - start)
        back_to_back = []
        for _ in range(BACK_TO_BACK_CALLS):
            start = time.perf_counter()
            model.predict_on_batch(batch)
            back_to_back.append(time.perf_counter() - start)
        results[size] = (after_pause, back_to_back)
    return results, nnfast._runtime.binds_workers()


def run_child(args, binding):
    env = dict(os.environ)
    env.pop("NNFAST_PIN_THREADS", None)
    if not binding:
        env["NNFAST_PIN_THREADS"] = "0"
    command = [sys.executable, os.path.abspath(__file__), "--child",
               "--batch-sizes", *map(str, args.batch_sizes),
               "--pauses", str(args.pauses), "--pause-seconds", str(args.pause_seconds),
               "--threads", str(args.threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 256])
    parser.add_argument("--pauses", type=int, default=25,
                        help="calls after a pause, per batch size")
    parser.add_argument("--pause-seconds", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2, help="nnfast kernel threads")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.child:
        results, binds = measure(args.batch_sizes, args.pauses, args.pause_seconds,
                                 args.threads)
        print(json.dumps({"binds": binds, "results": results}))
        return
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    header = (f"{'binding':8} {'rows':>5} {'after pause median':>19} {'max':>9} "
              f"{'back-to-back median':>20}")
    print(header)
    print("-" * len(header))
    for _ in range(2):
        for binding in (True, False):
            child = run_child(args, binding)
            state = "on" if child["binds"] else "off"
            for size, (after_pause, back_to_back) in child["results"].items():
                print(f"{state:8} {size:>5} {statistics.median(after_pause) * 1e6:>16.0f} us "
                      f"{max(after_pause) * 1e6:>6.0f} us "
                      f"{statistics.median(back_to_back) * 1e6:>17.0f} us", flush=True)


if __name__ == "__main__":
    main()
