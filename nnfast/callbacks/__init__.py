"""Callbacks, with Keras's names and hooks."""

from nnfast.callbacks.callback import Callback, CallbackList
from nnfast.callbacks.csv_logger import CSVLogger
from nnfast.callbacks.early_stopping import EarlyStopping
from nnfast.callbacks.history import History
from nnfast.callbacks.lambda_callback import LambdaCallback
from nnfast.callbacks.learning_rate_scheduler import LearningRateScheduler
from nnfast.callbacks.model_checkpoint import ModelCheckpoint
from nnfast.callbacks.progbar_logger import ProgbarLogger
from nnfast.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from nnfast.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]
