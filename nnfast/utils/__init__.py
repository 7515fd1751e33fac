"""Utilities with Keras's names."""

import numpy as np

from nnfast._rng import set_seed as set_random_seed
from nnfast.utils.progbar import Progbar


def to_categorical(x, num_classes=None):
    """Return the one-hot encoding of integer labels ``x``.

    Args:
        x: array of non-negative integer labels.
        num_classes: the number of classes; max(x) + 1 when None.
    """
    x = np.asarray(x)
    if x.dtype.kind == "f":
        if not np.array_equal(x, np.round(x)):
            raise ValueError("to_categorical: `x` must hold integer labels")
    elif x.dtype.kind not in "iub":
        raise TypeError(f"to_categorical: `x` must hold integers, got dtype {x.dtype}")
    labels = x.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"to_categorical: labels must be in [0, {num_classes}), got values "
            f"from {labels.min()} to {labels.max()}"
        )
    out = np.zeros(labels.shape + (num_classes,), dtype="float32")
    np.put_along_axis(out, labels[..., None], 1.0, axis=-1)
    return out


def __getattr__(name):
    # The download helpers pull in urllib, so they load on first use.
    if name in ("get_file", "DatasetError", "DownloadError"):
        from nnfast.utils import data_utils

        return getattr(data_utils, name)
    raise AttributeError(f"module 'nnfast.utils' has no attribute {name!r}")


__all__ = [
    "DatasetError",
    "DownloadError",
    "Progbar",
    "get_file",
    "set_random_seed",
    "to_categorical",
]
