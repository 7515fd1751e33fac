"""The base class of callbacks and the list that dispatches to them."""


class Callback:
    """Base class of callbacks: override the hooks you need.

    ``self.model`` is the model being trained and ``self.params`` contains
    ``epochs``, ``steps`` and ``verbose``. Setting ``self.model.stop_training``
    to True in any hook ends training after the current step.
    """

    # True for callbacks that write files; distributed training runs those on
    # rank 0 only.
    writes_files = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


_HOOKS = [name for name in vars(Callback) if name.startswith("on_")]


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)
        # Hooks that no callback overrides are skipped in the batch loop.
        self._active = {
            hook: [getattr(cb, hook) for cb in self.callbacks
                   if getattr(type(cb), hook) is not getattr(Callback, hook)]
            for hook in _HOOKS
        }

    def has(self, hook):
        return bool(self._active[hook])

    def call(self, hook, *args):
        for method in self._active[hook]:
            method(*args)
