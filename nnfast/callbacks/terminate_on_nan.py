"""The callback that stops training when the loss becomes NaN or infinite."""

import math

from nnfast.callbacks.callback import Callback
from nnfast.utils import io_utils


class TerminateOnNaN(Callback):
    """Stop training after a batch whose logged loss is NaN or infinite.

    The logged loss is the running mean over the epoch, so it stays
    non-finite once one batch loss is. The message naming the batch is
    printed only when fit runs with verbose > 0.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        if self.params.get("verbose", 0):
            io_utils.print_msg(
                f"Batch {batch}: the loss is {float(loss)}; terminating training"
            )
        self.model.stop_training = True
