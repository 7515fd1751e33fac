"""The callback built from plain functions."""

from nnfast.callbacks.callback import _HOOKS, Callback


class LambdaCallback(Callback):
    """Call the given functions from the matching hooks.

    ``on_epoch_begin`` and ``on_epoch_end`` are called as ``f(epoch, logs)``,
    ``on_train_batch_begin`` and ``on_train_batch_end`` as ``f(batch, logs)``,
    and ``on_train_begin`` and ``on_train_end`` as ``f(logs)``. Any other hook
    of :class:`Callback` (``on_test_begin``, ``on_predict_batch_end``, ...)
    may be given as a keyword argument too.

    Example::

        weights = []
        record = LambdaCallback(
            on_epoch_end=lambda epoch, logs: weights.append(model.get_weights()))
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None,
                 on_train_batch_end=None, **kwargs):
        super().__init__()
        functions = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
        }
        unknown = sorted(set(kwargs) - set(_HOOKS))
        if unknown:
            raise TypeError(
                f"LambdaCallback: unknown hook {', '.join(unknown)}; expected one "
                f"of {', '.join(sorted(_HOOKS))}"
            )
        functions.update(kwargs)
        for hook, function in functions.items():
            if function is not None and not callable(function):
                raise TypeError(
                    f"LambdaCallback: `{hook}` must be a function, got "
                    f"{type(function).__name__}"
                )
        self._functions = {hook: f for hook, f in functions.items() if f is not None}

    # CallbackList skips hooks that a class leaves as Callback's, so every
    # hook is defined here and forwards to the function given, if any.

    def _call(self, hook, *args):
        function = self._functions.get(hook)
        if function is not None:
            function(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)
