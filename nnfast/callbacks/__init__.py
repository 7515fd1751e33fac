"""Callbacks, with Keras's names and hooks."""

from nnfast.callbacks.callback import Callback, CallbackList
from nnfast.callbacks.history import History
from nnfast.callbacks.progbar_logger import ProgbarLogger

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger"]
