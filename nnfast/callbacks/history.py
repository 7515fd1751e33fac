"""The callback that records each epoch's logs."""

from nnfast.callbacks.callback import Callback


class History(Callback):
    """Record the logs of every epoch; ``fit`` returns it.

    ``history`` maps each name ("loss", metrics and their "val_" forms) to a
    list with one value per epoch.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)
