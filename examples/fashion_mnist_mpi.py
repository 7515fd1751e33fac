"""Train the Fashion-MNIST MLP data-parallel over MPI processes.

Run with one process per core, for example on one machine:

    mpirun -np 2 python examples/fashion_mnist_mpi.py

or across machines with a hostfile listing them:

    mpirun -np 4 --hostfile hosts python examples/fashion_mnist_mpi.py

Each process trains on its slice of every global batch (32 samples per
process); rank 0 prints the progress and the test accuracy.
"""

import argparse
import time

import nnfast
from nnfast import distributed, layers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="samples per process and step (default 32)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    args = parser.parse_args()

    strategy = distributed.DataParallel()
    nnfast.utils.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = nnfast.datasets.fashion_mnist.load_data()
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0

    model = nnfast.Sequential([
        nnfast.Input(shape=(28, 28)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10),
    ])
    model.compile(
        optimizer="adam",
        loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        distribute=strategy,
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              verbose=2)
    seconds = time.perf_counter() - start
    if strategy.rank == 0:
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        print(f"\nTest accuracy: {accuracy:.4f}")
        print(f"Training time: {seconds:.1f} s on {strategy.size} processes "
              f"(global batch {args.batch_size * strategy.size})")


if __name__ == "__main__":
    main()
