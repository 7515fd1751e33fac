"""Training run for the MPI tests; started by tests/test_distributed.py.

Usage: mpirun -np 2 python tests/_mpi_train.py MODE OUTPUT_DIR
"""

import json
import os
import sys

import numpy as np

import nnfast
from nnfast import distributed, layers


def make_model(strategy=None, metrics=("accuracy",)):
    nnfast.utils.set_random_seed(11)
    model = nnfast.Sequential([
        nnfast.Input(shape=(12,), dtype="float64"),
        layers.Dense(16, activation="tanh", dtype="float64"),
        layers.Dense(3, dtype="float64"),
    ])
    model.compile(optimizer=nnfast.optimizers.Adam(learning_rate=0.01),
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=list(metrics), distribute=strategy)
    return model


def data(n):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 12))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    return x, y


def main():
    mode, out_dir = sys.argv[1], sys.argv[2]
    strategy = distributed.DataParallel()
    rank = strategy.rank
    result = {"rank": rank, "size": strategy.size}
    if mode in ("equal", "partial"):
        n = 256 if mode == "equal" else 250
        x, y = data(n)
        model = make_model(strategy)
        csv_path = os.path.join(out_dir, "log.csv")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                            validation_data=(x[:64], y[:64]),
                            callbacks=[nnfast.callbacks.CSVLogger(csv_path)])
        result["history"] = history.history
        np.save(os.path.join(out_dir, f"weights_{rank}.npy"),
                np.concatenate([w.ravel() for w in model.get_weights()]))
        if rank == 0:
            single = make_model(None)
            single_history = single.fit(x, y, batch_size=16 * strategy.size,
                                        epochs=2, verbose=0,
                                        validation_data=(x[:64], y[:64]))
            result["single_history"] = single_history.history
            np.save(os.path.join(out_dir, "weights_single.npy"),
                    np.concatenate([w.ravel() for w in single.get_weights()]))
    elif mode == "fail":
        x, y = data(256)
        model = make_model(strategy)
        if rank == 1:
            y = y.copy()
            y[3] = 9
        model.fit(x, y, batch_size=16, epochs=50, verbose=0)
    with open(os.path.join(out_dir, f"result_{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
