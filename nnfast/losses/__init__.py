"""Losses, with Keras's names, arguments and reductions."""

from nnfast.losses.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    KLDivergence,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    deserialize,
    get,
    huber,
    kl_divergence,
    mean_absolute_error,
    mean_squared_error,
    serialize,
    sparse_categorical_crossentropy,
)

MSE = mse = mean_squared_error
MAE = mae = mean_absolute_error
KLD = kld = kl_divergence

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "KLD",
    "KLDivergence",
    "Loss",
    "MAE",
    "MSE",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "deserialize",
    "get",
    "huber",
    "kl_divergence",
    "kld",
    "mae",
    "mean_absolute_error",
    "mean_squared_error",
    "mse",
    "serialize",
    "sparse_categorical_crossentropy",
]
