"""Losses, with Keras's names, arguments and reductions."""

from nnfast.losses.losses import (
    CategoricalCrossentropy,
    Loss,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    categorical_crossentropy,
    deserialize,
    get,
    mean_squared_error,
    serialize,
    sparse_categorical_crossentropy,
)

MSE = mse = mean_squared_error

__all__ = [
    "CategoricalCrossentropy",
    "Loss",
    "MSE",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "categorical_crossentropy",
    "deserialize",
    "get",
    "mean_squared_error",
    "mse",
    "serialize",
    "sparse_categorical_crossentropy",
]
