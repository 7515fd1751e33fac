"""The callback that sets the learning rate from a function of the epoch."""

import math
import numbers

from nnfast.callbacks import _learning_rate
from nnfast.callbacks._checks import check_verbose
from nnfast.callbacks.callback import Callback
from nnfast.utils import io_utils


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch from ``schedule``.

    Args:
        schedule: a function ``schedule(epoch, lr)`` of the epoch index (from
            0) and the current learning rate, returning the new learning rate
            as a float >= 0.
        verbose: 0 is silent; 1 prints the new rate at each epoch.

    Each epoch's logs get a "learning_rate" entry. The optimizer must have a
    float learning rate, not a schedule object; on_train_begin raises
    TypeError otherwise.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                "LearningRateScheduler: `schedule` must be a function "
                f"schedule(epoch, lr), got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.verbose = check_verbose("LearningRateScheduler", verbose)

    def on_train_begin(self, logs=None):
        _learning_rate.check_settable(self.model, "LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        current = _learning_rate.current_learning_rate(self.model)
        new_lr = self.schedule(epoch, current)
        invalid = isinstance(new_lr, bool) or not isinstance(new_lr, numbers.Real)
        if invalid or not math.isfinite(new_lr) or new_lr < 0:
            raise ValueError(
                "LearningRateScheduler: `schedule` must return a finite float >= 0, "
                f"got {new_lr!r} at epoch {epoch}"
            )
        new_lr = float(new_lr)
        _learning_rate.set_learning_rate(self.model, new_lr)
        if self.verbose > 0:
            io_utils.print_msg(
                f"Epoch {epoch + 1}: LearningRateScheduler setting the learning "
                f"rate to {new_lr}."
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate.current_learning_rate(self.model)
