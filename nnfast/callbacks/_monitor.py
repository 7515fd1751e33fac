"""The base of callbacks that watch one logged quantity for improvement."""

import warnings

from nnfast.callbacks._checks import check_real
from nnfast.callbacks.callback import Callback
from nnfast.metrics import metrics as metrics_module

# Directions of the metrics in nnfast.metrics.metrics, which do not declare a
# `_direction` attribute. A metric that declares "up" or "down" uses that.
_HIGHER_IS_BETTER = (
    metrics_module.Accuracy,
    metrics_module.BinaryAccuracy,
    metrics_module.CategoricalAccuracy,
    metrics_module.SparseCategoricalAccuracy,
)
_LOWER_IS_BETTER = (
    metrics_module.MeanAbsoluteError,
    metrics_module.MeanSquaredError,
)


def metric_direction(metric):
    """Return "up" or "down" for a metric that should rise or fall, else None."""
    direction = getattr(metric, "_direction", None)
    if direction in ("up", "down"):
        return direction
    if isinstance(metric, _HIGHER_IS_BETTER):
        return "up"
    if isinstance(metric, _LOWER_IS_BETTER):
        return "down"
    return None


class MonitorCallback(Callback):
    """A callback that compares ``logs[monitor]`` with the best value so far.

    In "auto" mode the direction comes from the monitored name: a loss
    ("loss" or "val_loss") must fall, and a compiled metric of that name
    (with or without the "val_" prefix) must move in its own direction. A
    value counts as an improvement only when it beats the reference by more
    than ``min_delta``.
    """

    def __init__(self, monitor, mode, min_delta):
        super().__init__()
        owner = type(self).__name__
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(
                f"{owner}: `monitor` must be the name of a logged quantity such as "
                f"'val_loss', got monitor={monitor!r}"
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                f"{owner}: `mode` must be 'auto', 'min' or 'max', got mode={mode!r}"
            )
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(check_real(owner, "min_delta", min_delta))
        # "min" or "max", found at the first epoch end of each training run,
        # when the model's metrics exist.
        self._direction = None

    def _resolve_direction(self):
        """Set ``_direction`` to "min" or "max" unless it is already set."""
        if self._direction is None:
            self._direction = self._direction_from_mode()

    def _direction_from_mode(self):
        if self.mode != "auto":
            return self.mode
        name = self.monitor.removeprefix("val_")
        if name == "loss":
            return "min"
        for metric in getattr(self.model, "compiled_metrics", None) or []:
            if metric.name == name:
                direction = metric_direction(metric)
                if direction is not None:
                    return "max" if direction == "up" else "min"
        raise ValueError(
            f"{type(self).__name__}: cannot tell whether monitor={self.monitor!r} "
            "should be minimized or maximized; pass mode='min' to watch for the "
            "lowest value or mode='max' for the highest"
        )

    def _is_improvement(self, value, reference):
        """Return True when ``value`` beats ``reference`` by more than min_delta."""
        if reference is None:
            return True
        if self._direction == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def _monitor_value(self, logs):
        """Return ``logs[monitor]``, warning and returning None when it is absent."""
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                f"{type(self).__name__}: the monitored quantity {self.monitor!r} is "
                f"not in the logs; available: {', '.join(logs) or 'none'}",
                stacklevel=3,
            )
        return value
