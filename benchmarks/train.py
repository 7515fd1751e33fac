"""Time training epochs of the Fashion-MNIST MLP in nnfast and in PyTorch.

Usage::

    python benchmarks/train.py [--threads 1 2] [--batch-sizes 32 256]
                               [--epochs 1] [--repeats 3] [--quick]

The model is the Keras tutorial's classifier: Flatten, Dense(128, relu),
Dense(10), trained with Adam (learning rate 1e-3, epsilon 1e-7) on the sparse
categorical cross-entropy of the logits. PyTorch runs the same model as
``torch.nn.Linear`` layers in a plain loop over shuffled index batches of
preloaded float32 tensors, with ``torch.set_num_threads`` equal to nnfast's
thread count. TensorFlow/Keras runs it too when it is installed.

Each run is a child process, so that thread settings and peak memory belong
to one framework. A child loads the images as uint8, scales them to float32
once, trains, and reports the wall and CPU seconds per epoch, its peak
resident set size (ru_maxrss) after training and the test accuracy after the
last epoch. The frameworks alternate run by run, and the script reports
medians. Before each run it waits, for at most --max-wait seconds, until
other processes leave the CPUs mostly idle.
"""

import os
import sys

import _common

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import importlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

LEARNING_RATE = 1e-3
# Keras's default Adam epsilon; PyTorch's own default is 1e-8.
ADAM_EPSILON = 1e-7
HIDDEN_UNITS = 128
N_CLASSES = 10
QUICK_TRAIN_SAMPLES = 10_000

# Targets: nnfast's epoch time as a fraction of PyTorch's, per batch size.
EPOCH_TIME_TARGETS = {32: 0.25, 256: 0.6}
RSS_TARGET = 0.5
ACCURACY_TOLERANCE = 0.01


# Children: one training run each --------------------------------------------


class Clock:
    """Wall time, and CPU time of all threads of this process, since creation."""

    def __init__(self):
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def elapsed(self):
        """Return (wall seconds, CPU seconds) since creation."""
        return time.perf_counter() - self._wall, time.process_time() - self._cpu


def top1_accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def train_nnfast(data, n_threads, batch_size, epochs, seed):
    import nnfast

    x_train, y_train, x_test, y_test = data
    nnfast.set_num_threads(n_threads)
    nnfast.utils.set_random_seed(seed)
    model = nnfast.Sequential([
        nnfast.Input(shape=x_train.shape[1:]),
        nnfast.layers.Flatten(),
        nnfast.layers.Dense(HIDDEN_UNITS, activation="relu"),
        nnfast.layers.Dense(N_CLASSES),
    ])
    model.compile(
        optimizer=nnfast.optimizers.Adam(learning_rate=LEARNING_RATE,
                                         epsilon=ADAM_EPSILON),
        loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    clock = Clock()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    seconds = clock.elapsed()
    peak = _common.peak_rss_mib()
    logits = model.predict(x_test, batch_size=1024, verbose=0)
    return seconds, peak, top1_accuracy(logits, y_test)


def train_torch(data, n_threads, batch_size, epochs, seed):
    import torch

    x_train, y_train, x_test, y_test = data
    torch.set_num_threads(n_threads)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(x_train[0].size, HIDDEN_UNITS),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN_UNITS, N_CLASSES),
    )
    # Start from Keras's default initialization (Glorot-uniform kernels, zero
    # biases), so that the accuracy comparison measures the training and not
    # the initial weights.
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE,
                                 eps=ADAM_EPSILON)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(x_train)
    y = torch.from_numpy(y_train)
    n = x.shape[0]

    clock = Clock()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n)
        for begin in range(0, n, batch_size):
            indices = order[begin:begin + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[indices]), y[indices])
            loss.backward()
            optimizer.step()
    seconds = clock.elapsed()
    peak = _common.peak_rss_mib()

    model.eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(x_test)).numpy()
    return seconds, peak, top1_accuracy(logits, y_test)


def train_keras(data, n_threads, batch_size, epochs, seed):
    # NOTE: this path runs only where TensorFlow is installed, and it was not
    # run on the machine of the recorded results in docs/benchmarks.md.
    import tensorflow as tf

    x_train, y_train, x_test, y_test = data
    tf.config.threading.set_intra_op_parallelism_threads(n_threads)
    tf.config.threading.set_inter_op_parallelism_threads(n_threads)
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=x_train.shape[1:]),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(HIDDEN_UNITS, activation="relu"),
        tf.keras.layers.Dense(N_CLASSES),
    ])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=LEARNING_RATE,
                                           epsilon=ADAM_EPSILON),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    clock = Clock()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    seconds = clock.elapsed()
    peak = _common.peak_rss_mib()
    logits = model.predict(x_test, batch_size=1024, verbose=0)
    return seconds, peak, top1_accuracy(logits, y_test)


TRAINERS = {"nnfast": train_nnfast, "torch": train_torch, "keras": train_keras}
MODULES = {"nnfast": "nnfast", "torch": "torch", "keras": "tensorflow"}
LABELS = {"nnfast": "nnfast", "torch": "PyTorch", "keras": "TF/Keras"}


def run_child(args):
    # The framework is imported before the data is loaded, so that the first
    # RSS reading covers the imports and the data.
    importlib.import_module(MODULES[args.child])
    data = _common.load_scaled_fashion_mnist(args.data, args.n_train)
    rss_after_load = _common.peak_rss_mib()
    (seconds, cpu_seconds), peak, accuracy = TRAINERS[args.child](
        data, args.child_threads, args.child_batch_size, args.epochs, args.seed)
    _common.dump_json({
        "seconds_per_epoch": seconds / args.epochs,
        "cpu_seconds_per_epoch": cpu_seconds / args.epochs,
        "peak_rss_mib": peak,
        "rss_after_load_mib": rss_after_load,
        "accuracy": accuracy,
    })


# Parent: alternate frameworks and report ------------------------------------


def child_argv(args, framework, n_threads, batch_size, seed):
    argv = [os.path.abspath(__file__), "--child", framework, "--data", args.data,
            "--child-threads", str(n_threads), "--child-batch-size", str(batch_size),
            "--epochs", str(args.epochs), "--seed", str(seed)]
    if args.n_train is not None:
        argv += ["--n-train", str(args.n_train)]
    return argv


def measure(args, frameworks):
    """Return {(framework, threads, batch_size): [child results]}."""
    results = {}
    for n_threads in args.threads:
        for batch_size in args.batch_sizes:
            for repeat in range(args.repeats):
                # Alternate which framework goes first, so that a slow spell
                # of the machine does not always hit the same one.
                order = frameworks if repeat % 2 == 0 else frameworks[::-1]
                for framework in order:
                    _common.wait_for_quiet(args)
                    load = _common.OtherLoad()
                    with load.measuring():
                        result = _common.run_json_child(
                            child_argv(args, framework, n_threads, batch_size,
                                       repeat),
                            timeout=args.child_timeout)
                    result["other_load"] = load.share()
                    results.setdefault((framework, n_threads, batch_size),
                                       []).append(result)
            print_config(results, frameworks, n_threads, batch_size)
    return results


def summary(results, key, field):
    return _common.median([run[field] for run in results[key]])


def print_config(results, frameworks, n_threads, batch_size):
    torch_seconds = summary(results, ("torch", n_threads, batch_size),
                            "seconds_per_epoch")
    for framework in frameworks:
        key = (framework, n_threads, batch_size)
        seconds = summary(results, key, "seconds_per_epoch")
        runs = " ".join(f"{run['seconds_per_epoch']:.2f}" for run in results[key])
        shares = [run["other_load"] for run in results[key]
                  if run["other_load"] is not None]
        others = _common.format_share(max(shares) if shares else None)
        cpu_seconds = summary(results, key, "cpu_seconds_per_epoch")
        print(f"{n_threads:>7} {batch_size:>5} {LABELS[framework]:9} "
              f"{seconds:>9.2f} {seconds / torch_seconds:>6.2f} {cpu_seconds:>9.2f} "
              f"{summary(results, key, 'accuracy'):>8.4f} {others:>7}   {runs}",
              flush=True)


def rss_results(args, results, frameworks):
    """Return {framework: median peak RSS in MiB} of batch-32 runs.

    Takes the timed runs at batch 32 when there are any, otherwise runs one
    epoch at batch 32 per framework.
    """
    rss = {}
    for framework in frameworks:
        runs = [run for (fw, _, batch_size), group in results.items()
                if fw == framework and batch_size == 32 for run in group]
        if not runs:
            _common.wait_for_quiet(args)
            runs = [_common.run_json_child(
                child_argv(args, framework, args.threads[0], 32, 0),
                timeout=args.child_timeout)]
        rss[framework] = (
            _common.median([run["peak_rss_mib"] for run in runs]),
            _common.median([run["rss_after_load_mib"] for run in runs]),
        )
    return rss


def build_targets(args, results, rss):
    targets = []
    for batch_size in args.batch_sizes:
        limit = EPOCH_TIME_TARGETS.get(batch_size)
        if limit is None:
            continue
        for n_threads in args.threads:
            nnfast_key = ("nnfast", n_threads, batch_size)
            torch_key = ("torch", n_threads, batch_size)
            ratio = (summary(results, nnfast_key, "seconds_per_epoch")
                     / summary(results, torch_key, "seconds_per_epoch"))
            cpu_ratio = (summary(results, nnfast_key, "cpu_seconds_per_epoch")
                         / summary(results, torch_key, "cpu_seconds_per_epoch"))
            targets.append(_common.Target(
                f"epoch, batch {batch_size}, {n_threads} thr <= {limit}x PyTorch",
                f"{ratio:.2f}x (cpu s {cpu_ratio:.2f}x)", ratio <= limit))
    ratio = rss["nnfast"][0] / rss["torch"][0]
    targets.append(_common.Target(
        f"peak RSS, batch 32 <= {RSS_TARGET}x PyTorch",
        f"{ratio:.2f}x ({rss['nnfast'][0]:.0f} / {rss['torch'][0]:.0f} MiB)",
        ratio <= RSS_TARGET))
    epochs = "1 epoch" if args.epochs == 1 else f"{args.epochs} epochs"
    for batch_size in args.batch_sizes:
        differences = [
            summary(results, ("nnfast", n_threads, batch_size), "accuracy")
            - summary(results, ("torch", n_threads, batch_size), "accuracy")
            for n_threads in args.threads
        ]
        worst = max(differences, key=abs)
        targets.append(_common.Target(
            f"test accuracy, batch {batch_size}, after {epochs} within "
            f"{ACCURACY_TOLERANCE} of PyTorch",
            f"{worst:+.4f}", abs(worst) <= ACCURACY_TOLERANCE))
    return targets


def run_parent(args):
    _common.print_header("Training: seconds per epoch of the Fashion-MNIST MLP")
    frameworks = ["nnfast", "torch"]
    if _common.is_installed("tensorflow"):
        frameworks.append("keras")
    else:
        print(f"{_common.TENSORFLOW_ABSENT}.")
    if args.n_train is not None:
        print(f"Quick run: {args.n_train} training samples per epoch, "
              f"{args.repeats} repeat(s); the numbers are only indicative.")
    print(f"Each value is the median of {args.repeats} run(s), one child process "
          f"each. 'ratio' is to PyTorch, and accuracy is on the 10,000 test images "
          f"after {args.epochs} epoch(s). 'cpu s' is the CPU time of all the "
          "child's threads per epoch, which other processes inflate less than "
          "the wall time when the run has one thread. 'others' is the largest "
          "share of the CPUs that other processes used during one of the runs.\n")
    print(f"{'threads':>7} {'batch':>5} {'framework':9} {'s/epoch':>9} {'ratio':>6} "
          f"{'cpu s':>9} {'accuracy':>8} {'others':>7}   runs (s/epoch)")

    with tempfile.TemporaryDirectory(prefix="nnfast-bench-") as folder:
        args.data = os.path.join(folder, "fashion_mnist.npz")
        _common.save_fashion_mnist(args.data)
        results = measure(args, frameworks)
        rss = rss_results(args, results, frameworks)

    print("\nPeak RSS of one child at batch 32 (median, MiB): after training, "
          "and after imports and data loading")
    for framework in frameworks:
        peak, after_load = rss[framework]
        print(f"  {LABELS[framework]:9} {peak:7.0f} {after_load:7.0f}")
    print()
    _common.print_targets(build_targets(args, results, rss))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="thread counts to run, the same for every framework")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 256],
                        help="batch sizes to run")
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs per run; the time is reported per epoch")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per framework, thread count and batch size")
    parser.add_argument("--quick", action="store_true",
                        help=f"one repeat on the first {QUICK_TRAIN_SAMPLES} "
                             "training samples and no wait for a quiet machine, "
                             "to check that the script works")
    parser.add_argument("--child-timeout", type=float, default=900.0,
                        help="seconds after which a child run is stopped")
    _common.add_quiet_arguments(parser)

    # Arguments of a child process, set by the parent.
    parser.add_argument("--child", choices=sorted(TRAINERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if min(args.threads) < 1 or min(args.batch_sizes) < 1:
        parser.error("--threads and --batch-sizes take positive integers")
    if args.quick and args.child is None:
        args.repeats = 1
        args.n_train = QUICK_TRAIN_SAMPLES
        args.max_wait = 0.0
    return args


def main():
    args = parse_args()
    if args.child is not None:
        run_child(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
