"""Optimizers, with Keras's names, arguments and defaults."""

from nnfast.optimizers.optimizer import Optimizer
from nnfast.optimizers.sgd import SGD
from nnfast.optimizers.adam import Adam
from nnfast.optimizers.adamw import AdamW
from nnfast.optimizers.adagrad import Adagrad
from nnfast.optimizers.nadam import Nadam
from nnfast.optimizers.rmsprop import RMSprop
from nnfast.optimizers.registry import deserialize, get, serialize
from nnfast.optimizers import schedules

__all__ = ["Adagrad", "Adam", "AdamW", "Nadam", "Optimizer", "RMSprop", "SGD",
           "deserialize", "get", "serialize"]
