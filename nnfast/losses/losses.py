"""Loss classes.

Each loss computes per-sample values and, for training, the gradient of the
reduced loss with respect to the model's output in the same kernel call.
"""

import math
import numbers

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

        ``logits`` marks ``y_pred`` as logits even though this loss expects
        probabilities. The model sets it when it fuses the output activation
        into the loss.
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
        from_logits: whether ``y_pred`` contains logits rather than probabilities.
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
        from_logits = logits or self.from_logits
        if self.ignore_class is None:
            weights = _combine_ignore(labels, None, sample_weight, y_pred.dtype)
            return _categorical(self, labels, y_pred, weights, want_grad, from_logits,
                                grad_out)
        return self._compute_ignoring(labels, y_pred, sample_weight, want_grad,
                                      from_logits, grad_out)

    def _compute_ignoring(self, labels, y_pred, sample_weight, want_grad, from_logits,
                          grad_out):
        """Compute the loss with the samples labelled ``ignore_class`` masked out.

        As in Keras 3, masked samples have loss 0, and the mean reductions
        ("sum_over_batch_size", "mean") divide by the number of kept samples
        (plus EPSILON) instead of the batch size, while
        "mean_with_sample_weight" divides by the kept samples' weights. Each
        kept loss is scaled so that :meth:`reduce` with the caller's
        ``sample_weight`` gives that value, and the gradient follows it.
        """
        n = y_pred.shape[0]
        keep = labels != self.ignore_class
        labels = np.where(keep, labels, 0)
        weights = (np.ones(n) if sample_weight is None
                   else np.asarray(sample_weight, dtype=np.float64).reshape(-1))
        if self.reduction in ("sum_over_batch_size", "mean"):
            correction = n / (float(np.sum(keep)) + EPSILON)
        elif self.reduction == "mean_with_sample_weight":
            kept_weight = float(np.sum(weights * keep))
            correction = float(np.sum(weights)) / kept_weight if kept_weight else 0.0
        else:
            correction = 1.0
        sample_scale = (keep * correction).astype(y_pred.dtype)
        scale = self.grad_scale(n, sample_weight)
        per_sample, grad = _categorical(self, labels, y_pred,
                                        (sample_scale * weights).astype(y_pred.dtype),
                                        want_grad, from_logits, grad_out, scale=scale)
        return (per_sample * sample_scale).astype(y_pred.dtype, copy=False), grad

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
        from_logits: whether ``y_pred`` contains logits rather than probabilities.
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


def _categorical(loss, targets, y_pred, weights, want_grad, from_logits, grad_out,
                 scale=None):
    """Shared body of the two cross-entropies: targets are labels or one-hot.

    ``scale`` is the gradient's factor, by default ``loss.grad_scale`` of
    ``weights``.
    """
    kernels = backend.kernels()
    n = y_pred.shape[0]
    if scale is None:
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


class _ElementwiseLoss(Loss):
    """Base of the losses computed element by element over the last axis.

    Targets have the predictions' shape, or lack a trailing axis of 1. A
    subclass sets ``_kernel_name``, the kernel that computes per-row losses
    and gradients, and may override :meth:`_kernel_arguments` and
    :meth:`_prepare_targets`.
    """

    _kernel_name = None
    _target_hint = "reshape the targets or change the last layer's units"

    def _match_shape(self, target, pred_shape):
        pred_shape = tuple(pred_shape)
        if target.ndim == len(pred_shape) - 1 and pred_shape[-1] == 1:
            target = target.reshape(pred_shape)
        if target.shape != pred_shape:
            raise ValueError(
                f"{self.name}: targets of shape {target.shape} do not match "
                f"predictions of shape {pred_shape}; {self._target_hint}"
            )
        return target

    def validate_targets(self, y_true, output_shape):
        self._match_shape(np.asarray(y_true), output_shape)

    def _prepare_targets(self, target):
        return target

    def _kernel_arguments(self, logits):
        return {}

    def compute(self, y_true, y_pred, sample_weight=None, want_grad=True,
                logits=False, grad_out=None):
        _check_batch(self.name, y_true, y_pred)
        target = self._match_shape(np.asarray(y_true), y_pred.shape)
        target = self._prepare_targets(np.ascontiguousarray(target, dtype=y_pred.dtype))
        n = y_pred.shape[0]
        # The kernels see rows along the last axis. A sample with more axes
        # has several rows, and its loss is their mean, as Keras's
        # sum_over_batch_size reduction of the per-row values gives.
        width = y_pred.shape[-1] if y_pred.ndim > 1 else 1
        pred_rows = y_pred.reshape(-1, width)
        target_rows = target.reshape(pred_rows.shape)
        rows_per_sample = pred_rows.shape[0] // max(n, 1)
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=y_pred.dtype).reshape(-1)
        scale = self.grad_scale(n, weights) / max(rows_per_sample, 1)
        row_weights = weights
        if weights is not None and rows_per_sample != 1:
            row_weights = np.repeat(weights, rows_per_sample)
        grad_rows = None
        if want_grad:
            if grad_out is None:
                grad_out = np.empty_like(y_pred)
            grad_rows = grad_out.reshape(pred_rows.shape)
        kernel = getattr(backend.kernels(), self._kernel_name)
        per_row, _ = kernel(pred_rows, target_rows, sample_weight=row_weights,
                            grad_scale=scale, grad_out=grad_rows,
                            **self._kernel_arguments(logits))
        per_sample = per_row
        if rows_per_sample != 1:
            per_sample = per_row.reshape(n, rows_per_sample).mean(axis=1)
            per_sample = per_sample.astype(y_pred.dtype, copy=False)
        return per_sample, (grad_out if want_grad else None)


class MeanAbsoluteError(_ElementwiseLoss):
    """Mean of the absolute differences over the last axis.

    loss = mean(|y_true - y_pred|), whose gradient is sign(y_pred - y_true)
    (0 where they are equal) over the number of outputs.
    """

    _kernel_name = "mean_absolute_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


class Huber(_ElementwiseLoss):
    """Huber loss: quadratic for small errors, linear for large ones.

    With e = y_pred - y_true, each element costs 0.5 * e^2 where
    |e| <= delta, else delta * |e| - 0.5 * delta^2, averaged over the last
    axis.

    Args:
        delta: a finite float > 0, where the loss turns from quadratic to
            linear (default 1.0).
    """

    _kernel_name = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
            raise TypeError(f"Huber: `delta` must be a float, got delta={delta!r}")
        if not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"Huber: `delta` must be finite and > 0, got delta={delta}")
        self.delta = float(delta)

    def _kernel_arguments(self, logits):
        return {"delta": self.delta}

    def get_config(self):
        config = super().get_config()
        config["delta"] = self.delta
        return config


class BinaryCrossentropy(_ElementwiseLoss):
    """Cross-entropy between binary (or soft) targets and predicted probabilities.

    Each output is a separate yes/no prediction, so targets have the
    predictions' shape, or lack a trailing axis of 1 for one sigmoid unit.
    From probabilities p, clipped to [1e-7, 1 - 1e-7], each element costs
    -(t log(p) + (1 - t) log(1 - p)). From logits z it costs
    max(z, 0) - z t + log1p(exp(-|z|)), which stays finite for any finite z.
    The loss averages over the last axis.

    A model whose last Dense layer has the sigmoid activation trains from
    that layer's logits when this loss expects probabilities, as with
    softmax and the categorical cross-entropies.

    Args:
        from_logits: whether ``y_pred`` contains logits rather than
            probabilities.
        label_smoothing: float in [0, 1]; targets become
            ``t * (1 - label_smoothing) + 0.5 * label_smoothing``.
        axis: the axis of the outputs; only -1 is supported.
    """

    _kernel_name = "binary_cross_entropy"
    _target_hint = (
        "binary cross-entropy needs one 0/1 target per output. For integer "
        "class labels with several classes use SparseCategoricalCrossentropy "
        "(loss='sparse_categorical_crossentropy')"
    )

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"BinaryCrossentropy: `label_smoothing` must be in [0, 1], got "
                f"label_smoothing={label_smoothing}"
            )
        if axis != -1:
            raise ValueError(
                f"BinaryCrossentropy: only axis=-1 is supported, got axis={axis!r}"
            )
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)
        self.axis = axis

    def _prepare_targets(self, target):
        if not self.label_smoothing:
            return target
        smoothed = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return smoothed.astype(target.dtype, copy=False)

    def _kernel_arguments(self, logits):
        return {"from_logits": bool(logits or self.from_logits)}

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits,
                       "label_smoothing": self.label_smoothing, "axis": self.axis})
        return config


class KLDivergence(_ElementwiseLoss):
    """Kullback-Leibler divergence between target and predicted distributions.

    As Keras does, both are clipped to [1e-7, 1], and each sample's loss is
    sum(y_true * log(y_true / y_pred)) over the last axis (a sum, not a mean).
    """

    _kernel_name = "kl_divergence"

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
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


def mean_absolute_error(y_true, y_pred):
    """Return the per-sample mean absolute error."""
    return MeanAbsoluteError(reduction=None)(y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    """Return the per-sample Huber loss."""
    return Huber(delta=delta, reduction=None)(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Return the per-sample binary cross-entropy."""
    return BinaryCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing,
                              axis=axis, reduction=None)(y_true, y_pred)


def kl_divergence(y_true, y_pred):
    """Return the per-sample Kullback-Leibler divergence."""
    return KLDivergence(reduction=None)(y_true, y_pred)


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
