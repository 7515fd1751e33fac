"""Classification metrics: top-k accuracy, precision, recall and AUC.

Each metric keeps weighted counts over every sample seen since the last
``reset_state``, so ``result()`` is exact over all batches, as in Keras.
"""

import math
import numbers

import numpy as np

from nnfast.metrics.metrics import Metric

# Keras's backend epsilon. AUC's outer thresholds are -epsilon and
# 1 + epsilon, so every prediction in [0, 1] is above the first and below
# the last.
_EPSILON = 1e-7


# Checks and shapes -----------------------------------------------------------


def _check_positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: `{name}` must be an int >= 1, got {name}={value!r}")
    if value < 1:
        raise ValueError(f"{owner}: `{name}` must be an int >= 1, got {name}={value}")
    return int(value)


def _check_thresholds(owner, thresholds):
    """Return ``thresholds`` (a float or a sequence) as a list of floats in [0, 1]."""
    if isinstance(thresholds, numbers.Real) and not isinstance(thresholds, bool):
        values = [thresholds]
    else:
        values = list(np.asarray(thresholds, dtype=np.float64).reshape(-1))
    if not values:
        raise ValueError(f"{owner}: `thresholds` must not be empty")
    values = [float(value) for value in values]
    invalid = [value for value in values if not 0.0 <= value <= 1.0]
    if invalid:
        raise ValueError(
            f"{owner}: `thresholds` must be in [0, 1], got thresholds={thresholds!r}"
        )
    return values


def _align(owner, y_true, y_pred):
    """Return float arrays of equal shape, dropping or adding a trailing 1 axis."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true.reshape(y_true.shape[:-1])
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_true = y_true.reshape(y_true.shape + (1,))
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{owner}: y_true and y_pred must have the same shape, got y_true of "
            f"shape {y_true.shape} and y_pred of shape {y_pred.shape}"
        )
    return y_true, y_pred


def _broadcast_weights(owner, sample_weight, shape):
    """Return per-element weights of ``shape``, or None when there are none.

    A weight array of lower rank is aligned on the leading axes, so one
    weight per sample applies to every element of that sample.
    """
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.ndim < len(shape):
        weights = weights.reshape(weights.shape + (1,) * (len(shape) - weights.ndim))
    try:
        return np.broadcast_to(weights, shape)
    except ValueError:
        raise ValueError(
            f"{owner}: sample_weight of shape {np.shape(sample_weight)} does not "
            f"match predictions of shape {shape}"
        ) from None


def _divide_no_nan(numerator, denominator):
    """Return numerator / denominator, with 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _counts_above(predictions, positive, weights, thresholds):
    """Return weighted (true positives, false positives) for each threshold.

    A prediction counts as positive for threshold t when it is strictly
    greater than t; NaN predictions count as negative. Each prediction is
    binned once by the number of thresholds below it, which costs
    O(n log T) instead of comparing every prediction with every threshold.

    Args:
        predictions: 1-D float array.
        positive: 1-D bool array, True where the label is positive.
        weights: 1-D float array, or None for weight 1.
        thresholds: 1-D float array, in any order.
    """
    order = np.argsort(thresholds, kind="stable")
    sorted_thresholds = thresholds[order]
    n_thresholds = sorted_thresholds.shape[0]
    # n_below[i] is how many thresholds prediction i is strictly above.
    n_below = np.searchsorted(sorted_thresholds, predictions, side="left")
    n_below[np.isnan(predictions)] = 0
    if weights is None:
        weights = np.ones(predictions.shape[0])
    positive_hist = np.bincount(n_below, weights=weights * positive,
                                minlength=n_thresholds + 1)
    negative_hist = np.bincount(n_below, weights=weights * ~positive,
                                minlength=n_thresholds + 1)
    # A prediction in bin b is above the sorted thresholds 0 .. b - 1, so the
    # count for sorted threshold j sums the bins j + 1 and up.
    true_sorted = np.cumsum(positive_hist[::-1])[::-1][1:]
    false_sorted = np.cumsum(negative_hist[::-1])[::-1][1:]
    true_positives = np.empty(n_thresholds)
    false_positives = np.empty(n_thresholds)
    true_positives[order] = true_sorted
    false_positives[order] = false_sorted
    return true_positives, false_positives


def _keep_top_k(y_pred, k):
    """Return ``y_pred`` with all but the k largest of each row set to -inf.

    Among equal values the lower index is kept, as tf.math.top_k orders them.
    """
    order = np.argsort(-y_pred, axis=-1, kind="stable")
    top = order[..., :k]
    kept = np.full(y_pred.shape, -np.inf)
    np.put_along_axis(kept, top, np.take_along_axis(y_pred, top, axis=-1), axis=-1)
    return kept


# Top-k accuracy --------------------------------------------------------------


class _TopKAccuracy(Metric):
    """The weighted fraction of samples whose true class is among the k best."""

    state_names = ("total", "count")

    _direction = "up"

    def __init__(self, k, name, dtype):
        self.k = _check_positive_int(type(self).__name__, "k", k)
        super().__init__(name=name, dtype=dtype)

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def _labels(self, y_true, scores):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        owner = type(self).__name__
        scores = np.asarray(y_pred, dtype=np.float64)
        if scores.ndim < 2:
            raise ValueError(
                f"{owner}: y_pred must have shape (batch_size, num_classes), got "
                f"shape {scores.shape}"
            )
        labels = self._labels(np.asarray(y_true), scores)

        n_classes = scores.shape[-1]
        flat_scores = scores.reshape(-1, n_classes)
        flat_labels = labels.reshape(-1)
        if flat_labels.size and (flat_labels.min() < 0
                                 or flat_labels.max() >= n_classes):
            raise ValueError(
                f"{owner}: labels must be in [0, {n_classes}), got values from "
                f"{flat_labels.min()} to {flat_labels.max()}"
            )
        # The true class is in the top k when fewer than k classes score
        # strictly higher, so ties at the k-th score count as hits, as in
        # tf.math.in_top_k.
        target = np.take_along_axis(flat_scores, flat_labels[:, None], axis=1)
        hits = (np.sum(flat_scores > target, axis=1) < self.k).astype(np.float64)

        weights = _broadcast_weights(owner, sample_weight, scores.shape[:-1])
        if weights is None:
            self.total += float(hits.sum())
            self.count += hits.size
        else:
            weights = weights.reshape(-1)
            self.total += float(np.dot(hits, weights))
            self.count += float(weights.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0

    def get_config(self):
        return {"name": self.name, "k": self.k}


class TopKCategoricalAccuracy(_TopKAccuracy):
    """How often the one-hot target class is among the ``k`` highest predictions.

    Args:
        k: the number of top predictions to look at (default 5).
        name: the name in logs (default "top_k_categorical_accuracy").
    """

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(k, name, dtype)

    def _labels(self, y_true, scores):
        if y_true.shape != scores.shape:
            raise ValueError(
                "TopKCategoricalAccuracy: y_true must be one-hot with the shape of "
                f"y_pred, got y_true of shape {y_true.shape} and y_pred of shape "
                f"{scores.shape}"
            )
        return np.argmax(y_true, axis=-1)


class SparseTopKCategoricalAccuracy(_TopKAccuracy):
    """How often the integer target class is among the ``k`` highest predictions.

    Args:
        k: the number of top predictions to look at (default 5).
        name: the name in logs (default "sparse_top_k_categorical_accuracy").
    """

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        super().__init__(k, name, dtype)

    def _labels(self, y_true, scores):
        expected = scores.shape[:-1]
        if y_true.shape == expected + (1,):
            y_true = y_true.reshape(expected)
        if y_true.shape != expected:
            raise ValueError(
                "SparseTopKCategoricalAccuracy: y_true must hold one class index "
                f"per sample, shape {expected}, got shape {y_true.shape}"
            )
        labels = y_true.astype(np.int64)
        if not np.array_equal(labels, y_true):
            raise ValueError(
                "SparseTopKCategoricalAccuracy: y_true must hold integer class "
                "indices"
            )
        return labels


# Precision and recall --------------------------------------------------------


class _PrecisionRecall(Metric):
    """Shared state of Precision and Recall: counts per threshold."""

    state_names = ("true_positives", "false_positives", "false_negatives")

    _direction = "up"

    def __init__(self, thresholds, top_k, class_id, name, dtype):
        owner = type(self).__name__
        self.init_thresholds = thresholds
        if top_k is not None:
            top_k = _check_positive_int(owner, "top_k", top_k)
        if class_id is not None:
            if isinstance(class_id, bool) or not isinstance(class_id, numbers.Integral):
                raise TypeError(
                    f"{owner}: `class_id` must be an int >= 0, got "
                    f"class_id={class_id!r}"
                )
            if class_id < 0:
                raise ValueError(
                    f"{owner}: `class_id` must be an int >= 0, got class_id={class_id}"
                )
            class_id = int(class_id)
        self.top_k = top_k
        self.class_id = class_id
        if thresholds is None:
            # With top_k alone, every one of the k predictions counts as
            # positive, so the threshold is -inf.
            self.thresholds = [0.5] if top_k is None else [-math.inf]
        else:
            self.thresholds = _check_thresholds(owner, thresholds)
        self._threshold_array = np.asarray(self.thresholds, dtype=np.float64)
        super().__init__(name=name, dtype=dtype)

    def reset_state(self):
        n_thresholds = len(self.thresholds)
        self.true_positives = np.zeros(n_thresholds)
        self.false_positives = np.zeros(n_thresholds)
        self.false_negatives = np.zeros(n_thresholds)

    def update_state(self, y_true, y_pred, sample_weight=None):
        owner = type(self).__name__
        y_true, y_pred = _align(owner, y_true, y_pred)
        weights = _broadcast_weights(owner, sample_weight, y_pred.shape)
        if self.top_k is not None:
            y_pred = _keep_top_k(y_pred, self.top_k)
        if self.class_id is not None:
            if y_pred.ndim < 2:
                raise ValueError(
                    f"{owner}: with `class_id`, y_pred must have shape "
                    f"(batch_size, num_classes), got shape {y_pred.shape}"
                )
            if self.class_id >= y_pred.shape[-1]:
                raise ValueError(
                    f"{owner}: class_id={self.class_id} is out of range for "
                    f"{y_pred.shape[-1]} classes"
                )
            y_true = y_true[..., self.class_id]
            y_pred = y_pred[..., self.class_id]
            if weights is not None:
                weights = weights[..., self.class_id]

        positive = y_true.reshape(-1) != 0
        flat_weights = None if weights is None else weights.reshape(-1)
        true_positives, false_positives = _counts_above(
            y_pred.reshape(-1), positive, flat_weights, self._threshold_array)
        if flat_weights is None:
            total_positive = float(positive.sum())
        else:
            total_positive = float(np.dot(flat_weights, positive))
        self.true_positives += true_positives
        self.false_positives += false_positives
        self.false_negatives += total_positive - true_positives

    def _finish(self, values):
        if len(self.thresholds) == 1:
            return float(values[0])
        return values

    def get_config(self):
        return {"name": self.name, "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """The fraction of positive predictions that are truly positive.

    ``precision = true_positives / (true_positives + false_positives)``, and
    0 when nothing was predicted positive. A prediction is positive when it
    is strictly above the threshold, and a label is positive when nonzero.

    Args:
        thresholds: a float or a list of floats in [0, 1] (default 0.5, or
            -inf with ``top_k``). With a list, ``result()`` returns an array
            with one precision per threshold.
        top_k: only the ``top_k`` highest predictions of each sample can be
            positive.
        class_id: compute the metric for this class (last axis) only.
        name: the name in logs (default "precision").
    """

    def __init__(self, thresholds=None, top_k=None, class_id=None, name="precision",
                 dtype=None):
        super().__init__(thresholds, top_k, class_id, name or "precision", dtype)

    def result(self):
        return self._finish(_divide_no_nan(
            self.true_positives, self.true_positives + self.false_positives))


class Recall(_PrecisionRecall):
    """The fraction of positive labels that are predicted positive.

    ``recall = true_positives / (true_positives + false_negatives)``, and 0
    when there were no positive labels. The arguments are those of
    :class:`Precision`; the default name is "recall".
    """

    def __init__(self, thresholds=None, top_k=None, class_id=None, name="recall",
                 dtype=None):
        super().__init__(thresholds, top_k, class_id, name or "recall", dtype)

    def result(self):
        return self._finish(_divide_no_nan(
            self.true_positives, self.true_positives + self.false_negatives))


# AUC ---------------------------------------------------------------------------


class AUC(Metric):
    """The area under the ROC or precision-recall curve, from threshold counts.

    Predictions are compared with ``num_thresholds`` thresholds: -epsilon,
    i / (num_thresholds - 1) for i = 1 .. num_thresholds - 2, and
    1 + epsilon, with epsilon = 1e-7. Predictions are clipped to [0, 1]
    (after a sigmoid when ``from_logits``), and a label is positive when
    nonzero. For each threshold the metric keeps weighted counts of true and
    false positives and negatives, and ``result()`` sums the area between
    neighbouring thresholds:

    - "interpolation": trapezoids on the ROC curve. For the PR curve, true
      and false positives vary linearly between thresholds and precision is
      integrated exactly along that line, as Keras does.
    - "minoring": the lower of the two heights of each interval.
    - "majoring": the higher of the two heights of each interval.

    Args:
        num_thresholds: the number of thresholds, an int > 1 (default 200).
        curve: "ROC" (default) or "PR".
        summation_method: "interpolation" (default), "minoring" or "majoring".
        name: the name in logs (default "auc").
        thresholds: thresholds in [0, 1] to use instead of the evenly spaced
            ones; -epsilon and 1 + epsilon are added, and ``num_thresholds``
            becomes ``len(thresholds) + 2``.
        multi_label: treat the last axis as separate labels, compute one area
            per label and average them. If False, all entries are pooled.
        num_labels: the number of labels, checked against the data when
            ``multi_label`` is True.
        label_weights: non-negative weights per label. With ``multi_label``
            they weight the average of the label areas, otherwise they weight
            each label's entries in the counts.
        from_logits: whether predictions are logits.
    """

    state_names = ("true_positives", "false_positives", "true_negatives",
                   "false_negatives")

    _direction = "up"

    _CURVES = ("ROC", "PR")
    _SUMMATION_METHODS = ("interpolation", "minoring", "majoring")

    def __init__(self, num_thresholds=200, curve="ROC",
                 summation_method="interpolation", name="auc", dtype=None,
                 thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        owner = "AUC"
        if not isinstance(curve, str) or curve.upper() not in self._CURVES:
            raise ValueError(f"{owner}: `curve` must be 'ROC' or 'PR', got "
                             f"curve={curve!r}")
        if (not isinstance(summation_method, str)
                or summation_method.lower() not in self._SUMMATION_METHODS):
            raise ValueError(
                f"{owner}: `summation_method` must be 'interpolation', 'minoring' "
                f"or 'majoring', got summation_method={summation_method!r}"
            )
        self.curve = curve.upper()
        self.summation_method = summation_method.lower()
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_check_thresholds(owner, thresholds))
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(
                    num_thresholds, numbers.Integral) or num_thresholds <= 1:
                raise ValueError(
                    f"{owner}: `num_thresholds` must be an int > 1, got "
                    f"num_thresholds={num_thresholds!r}"
                )
            self.num_thresholds = int(num_thresholds)
            count = self.num_thresholds
            inner = [i / (count - 1) for i in range(1, count - 1)]
        self.thresholds = [0.0 - _EPSILON] + inner + [1.0 + _EPSILON]
        self._threshold_array = np.asarray(self.thresholds, dtype=np.float64)
        self.multi_label = bool(multi_label)
        if num_labels is not None:
            num_labels = _check_positive_int(owner, "num_labels", num_labels)
        self.num_labels = num_labels
        if label_weights is not None:
            label_weights = np.asarray(label_weights, dtype=np.float64).reshape(-1)
            if np.any(label_weights < 0) or not np.all(np.isfinite(label_weights)):
                raise ValueError(
                    f"{owner}: `label_weights` must be finite and >= 0, got "
                    f"label_weights={label_weights.tolist()}"
                )
        self.label_weights = label_weights
        self.from_logits = bool(from_logits)
        super().__init__(name=name or "auc", dtype=dtype)

    def reset_state(self):
        if self.multi_label:
            shape = (self.num_thresholds, self.num_labels or 0)
        else:
            shape = (self.num_thresholds,)
        self.true_positives = np.zeros(shape)
        self.false_positives = np.zeros(shape)
        self.true_negatives = np.zeros(shape)
        self.false_negatives = np.zeros(shape)
        self._labels_seen = self.num_labels

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _align("AUC", y_true, y_pred)
        if self.from_logits:
            y_pred = 1.0 / (1.0 + np.exp(-y_pred))
        y_pred = np.clip(y_pred, 0.0, 1.0)
        weights = _broadcast_weights("AUC", sample_weight, y_pred.shape)
        if self.label_weights is not None and (
                y_pred.ndim == 0 or self.label_weights.size != y_pred.shape[-1]):
            raise ValueError(
                f"AUC: `label_weights` has {self.label_weights.size} entries but "
                f"y_pred of shape {y_pred.shape} has a different number of labels "
                "on its last axis"
            )
        if self.multi_label:
            self._update_per_label(y_true, y_pred, weights)
            return
        if self.label_weights is not None:
            per_label = np.broadcast_to(self.label_weights, y_pred.shape)
            weights = per_label if weights is None else weights * per_label
        flat_weights = None if weights is None else weights.reshape(-1)
        self._add_counts(slice(None), y_true.reshape(-1), y_pred.reshape(-1),
                         flat_weights)

    def _update_per_label(self, y_true, y_pred, weights):
        if y_pred.ndim != 2:
            raise ValueError(
                "AUC: with multi_label=True, y_pred must have shape (batch_size, "
                f"num_labels), got shape {y_pred.shape}"
            )
        n_labels = y_pred.shape[1]
        if self._labels_seen is None:
            self._labels_seen = n_labels
            for name in ("true_positives", "false_positives", "true_negatives",
                         "false_negatives"):
                setattr(self, name, np.zeros((self.num_thresholds, n_labels)))
        if n_labels != self._labels_seen:
            raise ValueError(
                f"AUC: expected {self._labels_seen} labels, got y_pred of shape "
                f"{y_pred.shape}"
            )
        for label in range(n_labels):
            label_weights = None if weights is None else weights[:, label]
            self._add_counts((slice(None), label), y_true[:, label],
                             y_pred[:, label], label_weights)

    def _add_counts(self, index, y_true, y_pred, weights):
        positive = y_true != 0
        true_positives, false_positives = _counts_above(
            y_pred, positive, weights, self._threshold_array)
        if weights is None:
            total_positive = float(positive.sum())
            total_negative = float(positive.size - total_positive)
        else:
            total_positive = float(np.dot(weights, positive))
            total_negative = float(np.dot(weights, ~positive))
        self.true_positives[index] += true_positives
        self.false_positives[index] += false_positives
        self.false_negatives[index] += total_positive - true_positives
        self.true_negatives[index] += total_negative - false_positives

    def _interpolated_pr_area(self):
        """Return the PR area per label, interpolating within each interval.

        Between thresholds A and B, true positives (TP) and predicted
        positives (P = TP + FP) are taken as linear in each other, with
        slope s = dTP / dP and intercept c = TP_B - s * P_B. Integrating
        precision TP / P over recall then gives, per interval,
        s * (dTP + c * log(P_A / P_B)) / (TP_B + FN_B), where the log term is
        dropped when P_A or P_B is 0.
        """
        tp = self.true_positives
        predicted = tp + self.false_positives
        tp_delta = tp[:-1] - tp[1:]
        predicted_delta = predicted[:-1] - predicted[1:]
        slope = _divide_no_nan(tp_delta, np.maximum(predicted_delta, 0))
        intercept = tp[1:] - slope * predicted[1:]
        both_positive = (predicted[:-1] > 0) & (predicted[1:] > 0)
        ratio = np.where(both_positive,
                         _divide_no_nan(predicted[:-1], np.maximum(predicted[1:], 0)),
                         1.0)
        increments = _divide_no_nan(
            slope * (tp_delta + intercept * np.log(ratio)),
            np.maximum(tp[1:] + self.false_negatives[1:], 0))
        return increments.sum(axis=0)

    def _riemann_area(self):
        """Return the area per label from the (x, y) points of the curve."""
        recall = _divide_no_nan(self.true_positives,
                                self.true_positives + self.false_negatives)
        if self.curve == "ROC":
            x = _divide_no_nan(self.false_positives,
                               self.false_positives + self.true_negatives)
            y = recall
        else:
            x = recall
            y = _divide_no_nan(self.true_positives,
                               self.true_positives + self.false_positives)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return ((x[:-1] - x[1:]) * heights).sum(axis=0)

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            area = self._interpolated_pr_area()
        else:
            area = self._riemann_area()
        if not self.multi_label:
            return float(area)
        if area.size == 0:
            return 0.0
        if self.label_weights is None:
            return float(np.mean(area))
        return float(_divide_no_nan(np.dot(area, self.label_weights),
                                    self.label_weights.sum()))

    def get_config(self):
        config = {
            "name": self.name,
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": (None if self.label_weights is None
                              else self.label_weights.tolist()),
            "from_logits": self.from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config
