"""Optimizers, with Keras's names, arguments and defaults."""

from nnfast.optimizers.optimizer import Optimizer
from nnfast.optimizers.sgd import SGD
from nnfast.optimizers.adam import Adam
from nnfast.optimizers.registry import deserialize, get, serialize
from nnfast.optimizers import schedules

__all__ = ["Adam", "Optimizer", "SGD", "deserialize", "get", "serialize"]
