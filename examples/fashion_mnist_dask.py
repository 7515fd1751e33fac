"""Score Fashion-MNIST test images on a local Dask cluster of two workers.

Trains the tutorial MLP for one epoch, then predicts the test set as a Dask
array with ``map_blocks`` on two worker processes and checks the result
against one ``predict`` call.

    python examples/fashion_mnist_dask.py
"""

import numpy as np

import dask.array as da
from dask.distributed import Client, LocalCluster

import nnfast
from nnfast import layers
from nnfast.distributed import dask as nnfast_dask


def main():
    nnfast.utils.set_random_seed(42)
    (x_train, y_train), (x_test, y_test) = nnfast.datasets.fashion_mnist.load_data()
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0

    model = nnfast.Sequential([
        nnfast.Input(shape=(28, 28)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=1, verbose=2)

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        images = da.from_array(x_test, chunks=(1000, 28, 28))
        scores = client.compute(nnfast_dask.predict(model, images)).result()

    expected = model.predict(x_test, verbose=0)
    print(f"Dask predictions equal one predict call: {np.array_equal(scores, expected)}")
    print(f"Test accuracy: {np.mean(scores.argmax(axis=1) == y_test):.4f}")


if __name__ == "__main__":
    main()
