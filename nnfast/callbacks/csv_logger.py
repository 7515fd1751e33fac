"""The callback that writes each epoch's logs to a CSV file."""

import csv
import os

import numpy as np

from nnfast.callbacks.callback import Callback


def _format_value(value):
    """Return a CSV field for a logged value; sequences become "[a, b, ...]"."""
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim > 0:
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return value


class CSVLogger(Callback):
    """Write one CSV row per epoch: the epoch index, then every logged value.

    The columns are "epoch" and the sorted names of the first epoch's logs.
    A name missing from a later epoch's logs is written as "NA".

    Args:
        filename: the path of the CSV file.
        separator: the field separator, a single character (default ",").
        append: whether to append to an existing file, writing the header
            only if the file is empty, instead of overwriting it.

    The file is opened for each row and closed again, so it is complete
    after every epoch even if training later fails.
    """

    # In distributed training only rank 0 runs callbacks that write files.
    writes_files = True

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(
                "CSVLogger: `separator` must be a single character, got "
                f"separator={separator!r}"
            )
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._write_header = True

    def on_train_begin(self, logs=None):
        self.keys = None
        if self.append:
            self._write_header = not (os.path.exists(self.filename)
                                      and os.path.getsize(self.filename) > 0)
        else:
            self._write_header = True
            # Truncate now, so a run that ends before its first epoch leaves
            # no rows of an older run behind.
            with open(self.filename, "w", newline="", encoding="utf-8"):
                pass

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            # NOTE: names that first appear after the first epoch (for example
            # "val_" entries with validation_freq > 1) get no column and are
            # not written.
            self.keys = sorted(logs)
        row = {"epoch": epoch}
        for key in self.keys:
            row[key] = _format_value(logs.get(key, "NA"))
        with open(self.filename, "a", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=["epoch"] + self.keys,
                                    delimiter=self.sep)
            if self._write_header:
                writer.writeheader()
                self._write_header = False
            writer.writerow(row)
