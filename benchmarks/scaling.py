"""Speed-up of data-parallel training from 1 to 2 MPI processes.

Trains one epoch of the Fashion-MNIST MLP (and of the CNN, when nnfast has
convolutional layers) at a global batch of 256 under ``mpirun -np 1`` and
``mpirun -np 2``, each process on one thread, and prints the epoch time,
the speed-up and the test accuracy of each run.

    python benchmarks/scaling.py [--models mlp cnn] [--epochs 1]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import _common

_common.reexec_without_openblas_overrides()

GLOBAL_BATCH = 256


def build(name):
    import nnfast
    from nnfast import layers

    if name == "mlp":
        stack = [nnfast.Input(shape=(28, 28)), layers.Flatten(),
                 layers.Dense(128, activation="relu"), layers.Dense(10)]
    else:
        stack = [nnfast.Input(shape=(28, 28, 1)),
                 layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                 layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
                 layers.Flatten(), layers.Dropout(0.5), layers.Dense(10)]
    return nnfast.Sequential(stack)


def worker(name, epochs, out_path):
    """Train in this MPI process and write rank 0's figures to ``out_path``."""
    import time

    import nnfast
    from nnfast import distributed

    nnfast.set_num_threads(1)
    strategy = distributed.DataParallel()
    nnfast.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = nnfast.datasets.fashion_mnist.load_data()
    x = x.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    if name == "cnn":
        x = x[..., None]
        x_test = x_test[..., None]
    model = build(name)
    model.compile(optimizer="adam",
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], distribute=strategy)
    per_process = GLOBAL_BATCH // strategy.size
    # Start every clock together, so that one process's slower start-up
    # (loading the data) is not counted as training time of the others.
    strategy.comm.Barrier()
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=per_process, verbose=0)
    seconds = (time.perf_counter() - start) / epochs
    if strategy.rank == 0:
        _, accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
        with open(out_path, "w") as f:
            json.dump({"seconds": seconds, "accuracy": accuracy}, f)


def run(name, processes, epochs):
    launcher = shutil.which("mpirun")
    if launcher is None:
        raise SystemExit("mpirun not found; install openmpi-bin")
    with tempfile.TemporaryDirectory() as folder:
        out_path = os.path.join(folder, "result.json")
        command = [launcher, "-np", str(processes), "--oversubscribe"]
        if os.geteuid() == 0:
            command.append("--allow-run-as-root")
        command += [sys.executable, os.path.abspath(__file__), "--worker", name,
                    "--epochs", str(epochs), "--out", out_path]
        env = _common.child_environment()
        env["OMP_NUM_THREADS"] = "1"
        subprocess.run(command, check=True, env=env)
        with open(out_path) as f:
            return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"],
                        choices=["mlp", "cnn"], help="models to measure")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.epochs, args.out)
        return

    import nnfast

    print(f"nnfast {nnfast.__version__}, global batch {GLOBAL_BATCH}, one thread per "
          f"process, {args.epochs} epoch(s)")
    print(f"{'model':<6}{'1 proc s/epoch':>16}{'2 proc s/epoch':>16}{'speed-up':>10}"
          f"{'acc 1':>8}{'acc 2':>8}")
    for name in args.models:
        if name == "cnn" and not hasattr(nnfast.layers, "Conv2D"):
            print("cnn: nnfast has no Conv2D in this build, not measured")
            continue
        one = run(name, 1, args.epochs)
        two = run(name, 2, args.epochs)
        print(f"{name:<6}{one['seconds']:>16.2f}{two['seconds']:>16.2f}"
              f"{one['seconds'] / two['seconds']:>10.2f}{one['accuracy']:>8.4f}"
              f"{two['accuracy']:>8.4f}")


if __name__ == "__main__":
    main()
