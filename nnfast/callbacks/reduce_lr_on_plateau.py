"""The callback that lowers the learning rate when progress stalls."""

import numbers

from nnfast.callbacks import _learning_rate
from nnfast.callbacks._checks import check_nonnegative_int, check_real, check_verbose
from nnfast.callbacks._monitor import MonitorCallback
from nnfast.utils import io_utils


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when a quantity stops improving.

    At each epoch end, after ``patience`` epochs in a row without an
    improvement of more than ``min_delta``, the rate becomes
    ``max(lr * factor, min_lr)``, unless it is already at or below
    ``min_lr``. For ``cooldown`` epochs after a reduction, epochs without
    improvement are not counted. Each epoch's logs get a "learning_rate" entry.

    Args:
        monitor: the logged quantity to watch (default "val_loss").
        factor: the multiplier, a float in [0, 1).
        patience: the number of epochs without improvement before a
            reduction, an int >= 0.
        verbose: 0 is silent; 1 prints a line at each reduction.
        mode: "min", "max", or "auto" to take the direction from the
            monitored name (losses fall, each metric has its own direction).
        min_delta: the smallest change that counts as an improvement.
        cooldown: the number of epochs to wait after a reduction, an int >= 0.
        min_lr: the lower bound of the learning rate, a float >= 0.

    The optimizer must have a float learning rate, not a schedule, since a
    reduction would replace the schedule; on_train_begin raises TypeError
    otherwise. An unknown ``mode`` raises ValueError, where Keras warns and
    falls back to "auto".
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0,
                 mode="auto", min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        owner = "ReduceLROnPlateau"
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            raise TypeError(f"{owner}: `factor` must be a float, got factor={factor!r}")
        if factor >= 1.0:
            raise ValueError(
                f"{owner}: `factor` must be < 1.0 because the rate is multiplied by "
                f"it, got factor={factor}"
            )
        self.factor = check_real(owner, "factor", factor, low=0.0)
        self.patience = check_nonnegative_int(owner, "patience", patience)
        self.verbose = check_verbose(owner, verbose)
        self.cooldown = check_nonnegative_int(owner, "cooldown", cooldown)
        self.min_lr = check_real(owner, "min_lr", min_lr, low=0.0)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.cooldown_counter = 0
        self.best = None
        self._direction = None

    def in_cooldown(self):
        """Return True while epochs after a reduction are still being skipped."""
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()
        _learning_rate.check_settable(self.model, "ReduceLROnPlateau")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate.current_learning_rate(self.model)
        self._resolve_direction()
        current = self._monitor_value(logs)
        if current is None:
            return

        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait < self.patience:
            return

        old_lr = _learning_rate.current_learning_rate(self.model)
        if old_lr <= self.min_lr:
            return
        new_lr = max(old_lr * self.factor, self.min_lr)
        _learning_rate.set_learning_rate(self.model, new_lr)
        if self.verbose > 0:
            io_utils.print_msg(
                f"Epoch {epoch + 1}: ReduceLROnPlateau reducing the learning rate "
                f"to {new_lr}."
            )
        self.cooldown_counter = self.cooldown
        self.wait = 0
