"""The callback that saves the model (or its weights) during training."""

import math
import numbers
import os
import warnings

import numpy as np

from nnfast.callbacks.callback import Callback
from nnfast.utils import io_utils


class ModelCheckpoint(Callback):
    """Save the model or its weights every epoch or every few batches.

    Saves go through :meth:`Model.save` or :meth:`Model.save_weights`, so each
    one is atomic: an interrupted save leaves the previous checkpoint whole.
    A checkpoint written at the end of an epoch restores the optimizer and
    random state too, so ``fit(..., initial_epoch=k)`` on the loaded model
    repeats the uninterrupted run.

    Args:
        filepath: path of the checkpoint. It may contain ``str.format`` fields
            filled from ``epoch`` (counted from 1), ``batch`` (from 1, when
            ``save_freq`` is an int) and the logs, for example
            ``"ckpt-{epoch:02d}-{val_loss:.2f}.nnf"``. Any ending is accepted,
            and the file is always nnfast's own format.
        monitor: the log entry that ``save_best_only`` compares.
        verbose: 0 is silent, 1 prints a line for each save or skip.
        save_best_only: save only when ``monitor`` improves on the best value
            seen so far. With a fixed ``filepath`` the file keeps the best model.
        save_weights_only: write only the weights (``model.save_weights``).
        mode: "min", "max" or "auto". "auto" picks "max" when ``monitor``
            contains "acc" or starts with "fmeasure", and "min" otherwise.
        save_freq: "epoch" to save at the end of each epoch, or an int n to
            save after every n batches, counted across epochs.
        initial_value_threshold: the best value to beat before the first save
            when ``save_best_only`` is True.
    """

    # In distributed training only rank 0 runs callbacks that write files.
    writes_files = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        if not isinstance(monitor, str):
            raise TypeError(f"ModelCheckpoint: `monitor` must be a string, got "
                            f"{monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint: `mode` must be 'auto', 'min' or "
                             f"'max', got mode={mode!r}")
        if save_freq != "epoch" and not (
                isinstance(save_freq, numbers.Integral)
                and not isinstance(save_freq, bool) and save_freq > 0):
            raise ValueError(
                "ModelCheckpoint: `save_freq` must be 'epoch' or a positive int "
                f"(a number of batches), got save_freq={save_freq!r}"
            )
        if initial_value_threshold is not None and (
                isinstance(initial_value_threshold, bool)
                or not isinstance(initial_value_threshold, numbers.Real)):
            raise TypeError(
                "ModelCheckpoint: `initial_value_threshold` must be a number or "
                f"None, got {initial_value_threshold!r}"
            )
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq
        if mode == "auto":
            higher_is_better = "acc" in monitor or monitor.startswith("fmeasure")
            mode = "max" if higher_is_better else "min"
        self.mode = mode
        self.monitor_op = np.greater if mode == "max" else np.less
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = -math.inf if mode == "max" else math.inf
        self._current_epoch = 0
        self._batches_since_save = 0
        self._last_batch_seen = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Batch numbers restart at 0 each epoch, but save_freq counts batches
        # across epochs.
        if batch <= self._last_batch_seen:
            self._batches_since_save += batch + 1
        else:
            self._batches_since_save += batch - self._last_batch_seen
        self._last_batch_seen = batch
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _file_path(self, epoch, batch, logs):
        fields = dict(logs)
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"ModelCheckpoint: cannot fill in filepath={self.filepath!r} "
                f"({type(err).__name__}: {err}). The available fields are "
                f"{', '.join(sorted(fields))}"
            ) from None

    def _save(self, epoch, batch, logs):
        filepath = self._file_path(epoch, batch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(
                    f"ModelCheckpoint: `{self.monitor}` is not in the logs "
                    f"(available: {', '.join(sorted(logs))}), so save_best_only "
                    "cannot compare and no checkpoint is written",
                    stacklevel=2,
                )
                return
            if np.ndim(current) != 0:
                warnings.warn(
                    f"ModelCheckpoint: `{self.monitor}` is an array of shape "
                    f"{np.shape(current)}, not a number, so save_best_only cannot "
                    "compare and no checkpoint is written",
                    stacklevel=2,
                )
                return
            current = float(current)
            if not self.monitor_op(current, self.best):
                if self.verbose > 0:
                    io_utils.print_msg(
                        f"\nEpoch {epoch + 1}: {self.monitor} = {current:.5f} is "
                        f"no better than {self.best:.5f}, so no checkpoint is written"
                    )
                return
            if self.verbose > 0:
                io_utils.print_msg(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from "
                    f"{self.best:.5f} to {current:.5f}, saving the model to {filepath}"
                )
            self.best = current
        elif self.verbose > 0:
            io_utils.print_msg(f"\nEpoch {epoch + 1}: saving the model to {filepath}")
        self._write(filepath)

    def _write(self, filepath):
        directory = os.path.dirname(filepath)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)
