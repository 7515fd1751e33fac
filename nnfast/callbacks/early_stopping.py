"""The callback that stops training when a monitored quantity stops improving."""

from nnfast.callbacks._checks import check_nonnegative_int, check_real, check_verbose
from nnfast.callbacks._monitor import MonitorCallback
from nnfast.utils import io_utils


class EarlyStopping(MonitorCallback):
    """Stop training when a monitored quantity has stopped improving.

    At each epoch end, ``logs[monitor]`` is compared with the best value so
    far. Training stops once ``patience`` epochs in a row brought no
    improvement of more than ``min_delta``. It never stops at the first epoch.

    Args:
        monitor: the logged quantity to watch (default "val_loss").
        min_delta: the smallest change that counts as an improvement; its
            absolute value is used.
        patience: the number of epochs without improvement after which
            training stops, an int >= 0.
        verbose: 0 is silent; 1 prints a line when training stops and when
            weights are restored.
        mode: "min", "max", or "auto" to take the direction from the
            monitored name (losses fall, each metric has its own direction).
        baseline: a value the monitored quantity must beat. An epoch that
            improves on the best value but not on ``baseline`` still counts
            towards ``patience``, so if no epoch beats it, training runs for
            ``patience`` epochs.
        restore_best_weights: whether to restore, at the end of training,
            the weights from the end of the best epoch (even when that epoch
            did not beat ``baseline``). If False, the model keeps the weights
            of the last step.
        start_from_epoch: the number of epochs to run before monitoring
            starts, an int >= 0.

    Raises:
        ValueError: for a bad argument, or at the first epoch end when
            ``mode="auto"`` cannot tell the direction of ``monitor``.

    Unlike Keras, which warns and falls back to "auto", an unknown ``mode``
    raises ValueError.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0,
                 mode="auto", baseline=None, restore_best_weights=False,
                 start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        owner = "EarlyStopping"
        self.patience = check_nonnegative_int(owner, "patience", patience)
        self.verbose = check_verbose(owner, verbose)
        if baseline is not None:
            baseline = check_real(owner, "baseline", baseline)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_nonnegative_int(owner, "start_from_epoch",
                                                      start_from_epoch)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None
        self._direction = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        self._resolve_direction()
        current = self._monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Only an epoch that beats both the previous best and the
            # baseline restarts the count.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            io_utils.print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                io_utils.print_msg(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)
