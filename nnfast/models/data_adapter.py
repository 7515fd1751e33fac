"""Checks and conversions of the arrays given to fit, evaluate and predict."""

import numbers

import numpy as np


def is_iterator(data):
    """Return True for a one-pass iterator such as a Python generator."""
    return hasattr(data, "__next__")


def is_batch_iterable(data):
    """Return True for a Dataset, generator or iterator of batches."""
    if data is None or isinstance(data, (np.ndarray, list, tuple, dict, str)):
        return False
    if hasattr(data, "__array__") or hasattr(data, "to_numpy"):
        return False
    return is_iterator(data) or (hasattr(data, "__iter__")
                                 and hasattr(data, "cardinality"))


def known_length(data):
    """Return the number of batches of a finite Dataset, else None."""
    try:
        return len(data)
    except TypeError:
        return None


def check_no_y(data, y, where):
    if y is not None:
        raise ValueError(
            f"{where}: `y` must not be given when `x` is a Dataset or generator; "
            "yield (x, y) pairs from it instead"
        )


def unpack_batch(element, where):
    """Split one yielded batch into (x, y, sample_weight)."""
    if isinstance(element, (tuple, list)) and len(element) in (2, 3):
        weights = element[2] if len(element) == 3 else None
        return element[0], element[1], weights
    raise ValueError(
        f"{where}: each batch must be a tuple (x, y) or (x, y, sample_weight), "
        f"got {type(element).__name__}"
        + (f" of length {len(element)}" if isinstance(element, (tuple, list)) else "")
    )


def to_array(value, name):
    """Return ``value`` as a NumPy array, taking pandas objects by position."""
    if value is None:
        return None
    to_numpy = getattr(value, "to_numpy", None)
    if to_numpy is not None and not isinstance(value, np.ndarray):
        value = to_numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"`{name}` must hold numbers, got an array of dtype {array.dtype}; "
            "convert it to a numeric array first"
        )
    return array


def check_finite(array, name):
    """Raise ValueError when a float array contains NaN or inf."""
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        flat = array.reshape(-1)
        where = int(np.flatnonzero(~np.isfinite(flat))[0])
        index = np.unravel_index(where, array.shape)
        raise ValueError(
            f"`{name}` contains {flat[where]} at index {tuple(int(i) for i in index)}; "
            "remove or replace non-finite values before training"
        )


def convert_inputs(x, dtype, name="x"):
    """Return ``x`` as a float array of ``dtype``, converting only when needed."""
    array = to_array(x, name)
    if array.dtype != dtype:
        array = array.astype(dtype)
    check_finite(array, name)
    return array


def check_sample_counts(x, y, where):
    if y is not None and x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{where}: x and y must have the same number of samples, got "
            f"{x.shape[0]} samples in x (shape {x.shape}) and {y.shape[0]} in y "
            f"(shape {y.shape})"
        )


def check_batch_size(batch_size, name="batch_size"):
    """Return a valid batch size, or raise naming the argument."""
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive int, got {name}={batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"`{name}` must be a positive int, got {name}={batch_size}")
    return int(batch_size)


def check_nonnegative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int >= 0, got {name}={value!r}")
    if value < 0:
        raise ValueError(f"`{name}` must be an int >= 0, got {name}={value}")
    return int(value)


def sample_weights_from(y, sample_weight, class_weight, n, dtype):
    """Combine ``sample_weight`` and ``class_weight`` into one vector or None."""
    weights = None
    if sample_weight is not None:
        weights = np.asarray(to_array(sample_weight, "sample_weight"), dtype=dtype)
        weights = weights.reshape(-1)
        if weights.shape[0] != n:
            raise ValueError(
                f"`sample_weight` must have one value per sample, got "
                f"{weights.shape[0]} values for {n} samples"
            )
        check_finite(weights, "sample_weight")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(
                f"`class_weight` must be a dict mapping class index to weight, got "
                f"{type(class_weight).__name__}"
            )
        labels = y.reshape(n, -1)
        labels = labels[:, 0] if labels.shape[1] == 1 else np.argmax(labels, axis=1)
        labels = labels.astype(np.int64)
        table = np.ones(max([int(k) for k in class_weight] + [int(labels.max()) + 1
                                                             if n else 0]), dtype)
        for key, value in class_weight.items():
            table[int(key)] = value
        per_class = table[labels]
        weights = per_class if weights is None else weights * per_class
    return weights
