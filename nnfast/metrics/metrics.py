"""Metric classes.

Metrics keep running totals, so ``result()`` after a whole epoch is the exact
value over all samples seen, not an average of batch averages.
"""

import numpy as np


class Metric:
    """Base class: ``update_state``, ``result`` and ``reset_state``.

    ``state_names`` lists the attributes that hold the running state (sums
    and counts that add up across batches), so that states kept on several
    processes can be summed into one.
    """

    state_names = ()

    def __init__(self, name=None, dtype=None):
        self.name = name or type(self).__name__.lower()
        self.dtype = dtype
        self.reset_state()

    def reset_state(self):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _MeanOfValues(Metric):
    """A weighted mean of per-sample values produced by ``_values``."""

    state_names = ("total", "count")

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._values(np.asarray(y_true), np.asarray(y_pred))
        if sample_weight is None and values.dtype == np.bool_:
            # Counting is exact, as the float sum of zeros and ones is.
            self.total += float(np.count_nonzero(values))
            self.count += values.size
            return
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            self.total += float(np.dot(values, weights))
            self.count += float(weights.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0

    def _values(self, y_true, y_pred):
        raise NotImplementedError


class Mean(_MeanOfValues):
    """The weighted mean of the values passed to ``update_state(values)``."""

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            weights = np.broadcast_to(np.asarray(sample_weight, np.float64),
                                      values.shape)
            self.total += float(np.dot(values, weights))
            self.count += float(weights.sum())

    def add(self, value, weight):
        """Add one value with its weight, as ``update_state([value], [weight])`` does."""
        self.total += float(value) * float(weight)
        self.count += float(weight)


class SparseCategoricalAccuracy(_MeanOfValues):
    """The fraction of samples whose highest-scoring class equals the label."""

    # Softmax keeps the argmax, so this metric may be fed logits.
    argmax_only = True

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true, y_pred):
        labels = y_true.reshape(y_pred.shape[0], -1)[:, 0]
        return np.argmax(y_pred, axis=-1) == labels


class CategoricalAccuracy(_MeanOfValues):
    """The fraction of samples whose highest-scoring class is the one-hot class."""

    argmax_only = True

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true, y_pred):
        return np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)


class BinaryAccuracy(_MeanOfValues):
    """The fraction of predictions on the right side of ``threshold``."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        self.threshold = float(threshold)
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true, y_pred):
        predicted = y_pred > self.threshold
        truth = y_true.reshape(y_pred.shape) > 0.5
        return np.mean(predicted == truth, axis=-1)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class Accuracy(_MeanOfValues):
    """The fraction of predictions exactly equal to the targets."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true, y_pred):
        return np.mean(y_true.reshape(y_pred.shape) == y_pred,
                       axis=tuple(range(1, y_pred.ndim)) or None)


class MeanSquaredError(_MeanOfValues):
    """The mean of squared differences."""

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true, y_pred):
        diff = y_pred - y_true.reshape(y_pred.shape)
        return np.mean(diff * diff, axis=-1)


class MeanAbsoluteError(_MeanOfValues):
    """The mean of absolute differences."""

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _values(self, y_true, y_pred):
        return np.mean(np.abs(y_pred - y_true.reshape(y_pred.shape)), axis=-1)


# Imported here, after Metric is defined, because classification.py
# subclasses it.
from nnfast.metrics.classification import (  # noqa: E402
    AUC,
    Precision,
    Recall,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
)

_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
}
_CLASSES = {cls.__name__: cls for cls in list(_BY_NAME.values()) + [Accuracy, Mean]}


def resolve_accuracy(loss, output_shape, name="accuracy"):
    """Return the accuracy metric Keras picks for ``"accuracy"``.

    Binary accuracy for one output or a binary cross-entropy, sparse
    categorical accuracy for a sparse loss, categorical accuracy otherwise.
    """
    loss_name = type(loss).__name__ if loss is not None else ""
    if loss_name == "BinaryCrossentropy" or (output_shape and output_shape[-1] == 1):
        return BinaryAccuracy(name=name)
    if loss_name == "SparseCategoricalCrossentropy":
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)


def get(identifier, loss=None, output_shape=None):
    """Return a Metric for a name or an instance.

    ``"accuracy"`` and ``"acc"`` resolve from the loss and the output shape.
    """
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        return resolve_accuracy(loss, output_shape, name=identifier)
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier](name=identifier)
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    raise ValueError(
        f"Unknown metric {identifier!r}; expected 'accuracy', one of "
        f"{', '.join(_BY_NAME)} or a Metric instance"
    )
