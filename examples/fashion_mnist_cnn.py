"""Train a small convolutional network on Fashion-MNIST with nnfast.

Conv2D(32, 3, relu) -> MaxPooling2D -> Conv2D(64, 3, relu) -> MaxPooling2D
-> Flatten -> Dropout(0.5) -> Dense(10), Adam, sparse categorical
cross-entropy from logits, 10 epochs at batch size 64, with a fixed seed.
The convolutions use padding="same", so the second one still sees 14 x 14
maps and the dense layer 7 x 7 x 64 features; with Keras's default
padding="valid" (5 x 5 x 64 features) this recipe stops near 0.90.
Prints the progress of each epoch, then the test accuracy and the time.

Usage:
    python examples/fashion_mnist_cnn.py [--epochs N] [--batch-size N] [--seed N]
                                         [--threads N]
"""

import argparse
import time

import nnfast
from nnfast import layers


def build_model():
    """Return the uncompiled network for (28, 28, 1) images and 10 classes."""
    return nnfast.Sequential([
        nnfast.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="samples per step (default 64)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default: OpenMP's default)")
    args = parser.parse_args()

    nnfast.utils.set_random_seed(args.seed)
    if args.threads is not None:
        nnfast.set_num_threads(args.threads)

    (x_train, y_train), (x_test, y_test) = nnfast.datasets.fashion_mnist.load_data()
    # Conv2D takes (batch, height, width, channels): one grey channel here.
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255.0

    model = build_model()
    model.compile(
        optimizer="adam",
        loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.summary()

    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size)
    train_seconds = time.perf_counter() - start

    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"\nTest accuracy: {test_accuracy:.4f} (loss {test_loss:.4f})")
    print(f"Training time: {train_seconds:.1f} s for {args.epochs} epochs "
          f"({nnfast.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
