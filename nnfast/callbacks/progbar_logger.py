"""The callback that prints training progress."""

from nnfast.callbacks.callback import Callback
from nnfast.utils import io_utils
from nnfast.utils.progbar import Progbar


class ProgbarLogger(Callback):
    """Print a progress bar per epoch (verbose 1) or one line per epoch (2)."""

    def __init__(self):
        super().__init__()
        self._bar = None
        self._seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        verbose = self.params.get("verbose", 1)
        if verbose:
            epochs = self.params.get("epochs")
            io_utils.print_msg(f"Epoch {epoch + 1}/{epochs}")
        self._bar = Progbar(self.params.get("steps"), verbose=verbose)
        self._seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._bar.update(self._seen, logs, finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            self._bar.update(self._seen, logs, finalize=True)

    def on_test_begin(self, logs=None):
        if self.model is not None and self.model._in_fit:
            self._test_bar = None
            return
        self._test_bar = Progbar(self.params.get("steps"),
                                 verbose=self.params.get("verbose", 1))
        self._test_seen = 0

    def on_test_batch_end(self, batch, logs=None):
        if self._test_bar is not None:
            self._test_seen = batch + 1
            self._test_bar.update(self._test_seen, logs, finalize=False)

    def on_test_end(self, logs=None):
        if self._test_bar is not None:
            self._test_bar.update(self._test_seen, logs, finalize=True)
