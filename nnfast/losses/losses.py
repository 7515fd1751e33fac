"""Loss classes.

Each loss computes per-sample values and, for training, the gradient of the
reduced loss with respect to the model's output in the same kernel call.
"""

import numpy as np

from nnfast import backend

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None,
              "none")

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before a log, as Keras does.
EPSILON = 1e-7


class Loss:
    """Base class of losses.

    Args:
        reduction: how per-sample losses become one number:
            ``"sum_over_batch_size"`` (default) and ``"mean"`` divide the
            weighted sum by the number of samples, ``"sum"`` does not divide,
            ``"mean_with_sample_weight"`` divides by the sum of the weights,
            and ``None`` or ``"none"`` returns the per-sample losses.
        name: name of the loss.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: `reduction` must be one of {REDUCTIONS}, "
                f"got reduction={reduction!r}"
            )
        self.name = name or _default_name(type(self).__name__)
        self.reduction = reduction
        self.dtype = dtype

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred)
        if y_pred.dtype not in (np.float32, np.float64):
            y_pred = y_pred.astype("float32")
        y_true = np.asarray(y_true)
        per_sample, _ = self.compute(y_true, y_pred, sample_weight, want_grad=False)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=per_sample.dtype)
        return self.reduce(per_sample, sample_weight)

    def grad_scale(self, n_samples, sample_weight):
        """Return d(reduced loss) / d(weighted per-sample loss)."""
        if self.reduction == "sum":
            return 1.0
        if self.reduction == "mean_with_sample_weight" and sample_weight is not None:
            total = float(np.sum(sample_weight))
            return 1.0 / total if total != 0.0 else 0.0
        return 1.0 / max(n_samples, 1)

    def reduce(self, per_sample, sample_weight=None):
        """Reduce per-sample losses to one number, weighting by ``sample_weight``."""
        values = per_sample if sample_weight is None else per_sample * sample_weight
        if self.reduction in (None, "none"):
            return values
        total = values.sum(dtype=np.float64)
        if self.reduction == "sum":
            return float(total)
        return float(total) * self.grad_scale(per_sample.shape[0], sample_weight)

    def compute(self, y_true, y_pred, sample_weight=None, want_grad=True,
                logits=False, grad_out=None):
        """Return (per-sample losses, gradient of the reduced loss or None).

        ``logits`` says that ``y_pred`` holds logits even though this loss
        expects probabilities; the model sets it when it fuses the output
        activation into the loss.
        """
        raise NotImplementedError

    def validate_targets(self, y_true, output_shape):
        """Raise when targets ``y_true`` cannot match outputs of ``output_shape``."""

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _default_name(class_name):
    out = []
    for i, ch in enumerate(class_name):
        if ch.isupper() and i > 0:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _check_batch(name, y_true, y_pred):
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"{name}: y_true and y_pred have different numbers of samples, "
            f"y_true has shape {y_true.shape} and y_pred {y_pred.shape}"
        )


def _sparse_labels(name, y_true, y_pred, ignore_class=None):
    """Return integer labels of shape (n,), or raise naming what is wrong."""
    n_classes = y_pred.shape[-1]
    labels = y_true
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if labels.ndim != y_pred.ndim - 1 or labels.shape != y_pred.shape[:-1]:
        raise ValueError(
            f"{name}: expected integer labels of shape {y_pred.shape[:-1]} (or with "
            f"a trailing axis of 1) for predictions of shape {y_pred.shape}, got "
            f"targets of shape {y_true.shape}. For one-hot targets use "
            "CategoricalCrossentropy (loss='categorical_crossentropy')."
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            bad = labels[~np.isfinite(labels)].flat[0]
            raise ValueError(f"{name}: labels must be finite integers, got {bad}")
        rounded = np.round(labels)
        if not np.array_equal(rounded, labels):
            where = np.flatnonzero(rounded.ravel() != labels.ravel())[0]
            raise ValueError(
                f"{name}: labels must be integers, got {labels.ravel()[where]} at "
                f"index {where}"
            )
        labels = rounded.astype(np.int64)
    elif labels.dtype.kind == "b":
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise TypeError(
            f"{name}: labels must be integers, got dtype {labels.dtype}"
        )
    labels = labels.reshape(-1)
    valid = (labels >= 0) & (labels < n_classes)
    if ignore_class is not None:
        valid |= labels == ignore_class
    if not valid.all():
        where = int(np.flatnonzero(~valid)[0])
        raise ValueError(
            f"{name}: label {labels[where]} at index {where} is out of range; "
            f"labels must be in [0, {n_classes}) for {n_classes} classes"
        )
    return labels.astype(np.int64, copy=False)


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy between integer labels and predicted class scores.

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        ignore_class: optional label whose samples contribute no loss.
    """

    def __init__(self, from_logits=False, ignore_class=None,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class

    def validate_targets(self, y_true, output_shape):
        _sparse_labels(self.name, y_true, _PredictionShape(output_shape),
                       self.ignore_class)

    def compute(self, y_true, y_pred, sample_weight=None, want_grad=True,
                logits=False, grad_out=None):
        _check_batch(self.name, y_true, y_pred)
        labels = _sparse_labels(self.name, y_true, y_pred, self.ignore_class)
        weights = _combine_ignore(labels, self.ignore_class, sample_weight, y_pred.dtype)
        if self.ignore_class is not None:
            labels = np.where(labels == self.ignore_class, 0, labels)
        return _categorical(self, labels, y_pred, weights, want_grad,
                            logits or self.from_logits, grad_out)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits,
                       "ignore_class": self.ignore_class})
        return config


class _PredictionShape:
    """Stands for a prediction array when only its shape is known."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.ndim = len(shape)


def _combine_ignore(labels, ignore_class, sample_weight, dtype):
    if ignore_class is None:
        if sample_weight is None:
            return None
        return np.asarray(sample_weight, dtype=dtype).reshape(-1)
    keep = (labels != ignore_class).astype(dtype)
    if sample_weight is not None:
        keep *= np.asarray(sample_weight, dtype=dtype).reshape(-1)
    return keep


class CategoricalCrossentropy(Loss):
    """Cross-entropy between one-hot (or probability) targets and predictions.

    Args:
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        label_smoothing: float in [0, 1]; targets become
            ``t * (1 - label_smoothing) + label_smoothing / n_classes``.
    """

    def __init__(self, from_logits=False, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name="categorical_crossentropy",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CategoricalCrossentropy: `label_smoothing` must be in [0, 1], got "
                f"label_smoothing={label_smoothing}"
            )
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def compute(self, y_true, y_pred, sample_weight=None, want_grad=True,
                logits=False, grad_out=None):
        _check_batch(self.name, y_true, y_pred)
        self.validate_targets(y_true, y_pred.shape)
        targets = np.ascontiguousarray(y_true, dtype=y_pred.dtype)
        if self.label_smoothing:
            n_classes = y_pred.shape[-1]
            targets = (targets * (1.0 - self.label_smoothing)
                       + self.label_smoothing / n_classes).astype(y_pred.dtype)
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=y_pred.dtype).reshape(-1)
        return _categorical(self, targets, y_pred, weights, want_grad,
                            logits or self.from_logits, grad_out)

    def validate_targets(self, y_true, output_shape):
        if y_true.shape != tuple(output_shape):
            raise ValueError(
                f"{self.name}: expected one-hot targets of shape {tuple(output_shape)} "
                f"to match the predictions, got targets of shape {y_true.shape}. For "
                "integer labels use SparseCategoricalCrossentropy "
                "(loss='sparse_categorical_crossentropy')."
            )

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits,
                       "label_smoothing": self.label_smoothing})
        return config


def _categorical(loss, targets, y_pred, weights, want_grad, from_logits, grad_out):
    """Shared body of the two cross-entropies: targets are labels or one-hot."""
    kernels = backend.kernels()
    n = y_pred.shape[0]
    scale = loss.grad_scale(n, weights)
    if from_logits:
        if want_grad and grad_out is None:
            grad_out = np.empty_like(y_pred)
        per_sample, grad = kernels.softmax_cross_entropy(
            y_pred, targets, sample_weight=weights, grad_scale=scale,
            grad_out=grad_out if want_grad else None)
        return per_sample, grad
    # Probabilities: clip, as Keras does, so that log(0) never appears.
    probs = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
    clipped = np.clip(probs, EPSILON, 1.0 - EPSILON)
    if targets.ndim == 1:
        onehot = np.zeros_like(y_pred)
        onehot[np.arange(n), targets] = 1
    else:
        onehot = targets
    per_sample = -np.sum(onehot * np.log(clipped), axis=-1).astype(y_pred.dtype)
    grad = None
    if want_grad:
        inside = (probs > EPSILON) & (probs < 1.0 - EPSILON)
        dclipped = np.where(inside, -onehot / clipped, 0.0)
        # Chain through the normalization p = y / sum(y).
        total = np.sum(y_pred, axis=-1, keepdims=True)
        dprobs = (dclipped - np.sum(dclipped * probs, axis=-1, keepdims=True)) / total
        dprobs *= scale
        if weights is not None:
            dprobs *= weights[:, None]
        grad = dprobs.astype(y_pred.dtype)
        if grad_out is not None:
            grad_out[...] = grad
            grad = grad_out
    return per_sample, grad


class MeanSquaredError(Loss):
    """Mean of the squared differences over the last axis."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _match_shape(self, target, pred_shape):
        if target.ndim == len(pred_shape) - 1 and pred_shape[-1] == 1:
            target = target.reshape(pred_shape)
        if target.shape != tuple(pred_shape):
            raise ValueError(
                f"{self.name}: targets of shape {target.shape} do not match "
                f"predictions of shape {tuple(pred_shape)}; reshape the targets "
                "or change the last layer's units"
            )
        return target

    def validate_targets(self, y_true, output_shape):
        self._match_shape(y_true, output_shape)

    def compute(self, y_true, y_pred, sample_weight=None, want_grad=True,
                logits=False, grad_out=None):
        _check_batch(self.name, y_true, y_pred)
        target = self._match_shape(np.asarray(y_true), y_pred.shape)
        target = np.ascontiguousarray(target, dtype=y_pred.dtype)
        pred2 = y_pred.reshape(y_pred.shape[0], -1) if y_pred.ndim != 2 else y_pred
        target2 = target.reshape(pred2.shape)
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=y_pred.dtype).reshape(-1)
        scale = self.grad_scale(y_pred.shape[0], weights)
        if want_grad and grad_out is None:
            grad_out = np.empty_like(pred2)
        per_sample, grad = backend.kernels().mean_squared_error(
            pred2, target2, sample_weight=weights, grad_scale=scale,
            grad_out=grad_out.reshape(pred2.shape) if want_grad else None)
        if grad is not None:
            grad = grad.reshape(y_pred.shape)
        return per_sample, grad


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}
_CLASSES = {cls.__name__: cls for cls in _BY_NAME.values()}


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Return per-sample sparse categorical cross-entropy."""
    return SparseCategoricalCrossentropy(from_logits=from_logits,
                                         reduction=None)(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Return per-sample categorical cross-entropy."""
    return CategoricalCrossentropy(from_logits=from_logits,
                                   label_smoothing=label_smoothing,
                                   reduction=None)(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """Return the per-sample mean squared error."""
    return MeanSquaredError(reduction=None)(y_true, y_pred)


def get(identifier):
    """Return a Loss for a name, a config dict or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(
        f"Unknown loss {identifier!r}; expected one of {', '.join(_BY_NAME)} or a "
        "Loss instance"
    )


def serialize(loss):
    """Return a JSON-friendly dict that :func:`deserialize` turns back into ``loss``."""
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config):
    """Return the Loss described by a dict from :func:`serialize`."""
    name = config.get("class_name")
    if name not in _CLASSES:
        raise ValueError(f"Unknown loss class {name!r}")
    return _CLASSES[name].from_config(config.get("config", {}))
