"""The base class of all layers."""

import itertools
import re
import numbers

import numpy as np

from nnfast import config, regularizers

_name_counters = {}

# Bumped whenever a layer gains weights or changes its trainable flag, so a
# model can tell in one comparison that its flat-buffer layout is current.
structure_generation = [0]


def _unique_name(prefix):
    counter = _name_counters.setdefault(prefix, itertools.count())
    index = next(counter)
    return prefix if index == 0 else f"{prefix}_{index}"


def _snake_case(name):
    """Return a class name in snake case as Keras writes it: Conv2D -> conv2d."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class Weight:
    """One trainable or frozen array of a layer.

    ``value`` and ``grad`` start as arrays of their own. A model that builds
    the layer replaces them with views into its flat parameter and gradient
    buffers, so that one optimizer call updates every weight.
    """

    def __init__(self, name, value, trainable=True):
        self.name = name
        self.value = value
        self.grad = np.zeros_like(value)
        self.trainable = trainable

    @property
    def shape(self):
        return self.value.shape

    def __repr__(self):
        return f"<Weight {self.name} shape={self.shape} dtype={self.value.dtype}>"


def check_positive_int(layer, name, value):
    """Return ``value`` as an int, or raise naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{layer}: `{name}` must be a positive int, got {name}={value!r}"
        )
    if value < 1:
        raise ValueError(f"{layer}: `{name}` must be a positive int, got {name}={value}")
    return int(value)


class Layer:
    """Base class of layers.

    A subclass implements ``build(input_shape)`` (creating weights with
    :meth:`add_weight`), ``compute_output_shape(input_shape)``,
    ``forward(x, training, cache)`` and ``backward(dy, cache, need_dx)``.
    ``cache`` is a dict owned by one workspace (one thread and batch size),
    where ``forward`` keeps what ``backward`` needs and any reusable buffers.
    Shapes passed around exclude the batch axis.
    """

    def __init__(self, name=None, dtype=None, trainable=True, input_shape=None,
                 activity_regularizer=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}: unexpected keyword arguments "
                f"{sorted(kwargs)}"
            )
        self.name = name or _unique_name(_snake_case(type(self).__name__))
        self.dtype = config.standardize_dtype(dtype)
        self._trainable = bool(trainable)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._weights = []
        self._regularized = []
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self._batch_input_shape = None
        if input_shape is not None:
            self._batch_input_shape = (None,) + tuple(input_shape)

    # Weights ----------------------------------------------------------------

    def add_weight(self, name, shape, initializer, trainable=True, regularizer=None):
        """Create a weight filled by ``initializer`` and return it.

        A ``regularizer`` adds its penalty of the weight to the training loss.
        """
        value = np.ascontiguousarray(initializer(tuple(shape), self.dtype))
        weight = Weight(f"{self.name}/{name}", value, trainable)
        self._weights.append(weight)
        structure_generation[0] += 1
        if regularizer is not None:
            self._regularized.append((weight, regularizer))
        return weight

    def weight_penalty(self):
        """Return the sum of the weight regularizers' penalties."""
        return sum(reg(weight.value) for weight, reg in self._regularized)

    def add_penalty_gradients(self):
        """Add each weight regularizer's gradient to its weight's gradient."""
        for weight, reg in self._regularized:
            reg.add_gradient(weight.value, weight.grad)

    @property
    def trainable(self):
        """Whether training updates this layer's weights."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        structure_generation[0] += 1

    @property
    def weights(self):
        return list(self._weights)

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [w for w in self._weights if w.trainable]

    @property
    def non_trainable_weights(self):
        if self.trainable:
            return [w for w in self._weights if not w.trainable]
        return list(self._weights)

    def count_params(self):
        return int(sum(w.value.size for w in self._weights))

    def get_weights(self):
        """Return copies of the weights' values, in creation order."""
        return [w.value.copy() for w in self._weights]

    def set_weights(self, weights):
        """Set the weights' values from a list of arrays of matching shapes."""
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(
                f"{self.name}: set_weights expected {len(self._weights)} arrays, "
                f"got {len(weights)}"
            )
        for weight, value in zip(self._weights, weights):
            value = np.asarray(value)
            if value.shape != weight.shape:
                raise ValueError(
                    f"{self.name}: weight {weight.name} has shape {weight.shape}, "
                    f"got an array of shape {value.shape}"
                )
            weight.value[...] = value

    # Building ---------------------------------------------------------------

    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _ensure_built(self, input_shape):
        input_shape = tuple(input_shape)
        if not self.built:
            self.build(input_shape)
            self.built = True
        self.input_shape = input_shape
        self.output_shape = tuple(self.compute_output_shape(input_shape))
        return self.output_shape

    # Computation ------------------------------------------------------------

    def forward(self, x, training, cache):
        raise NotImplementedError

    def backward(self, dy, cache, need_dx):
        raise NotImplementedError

    def __call__(self, x, training=False):
        """Apply the layer to a batch array (inference unless ``training``)."""
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        self._ensure_built(x.shape[1:])
        return self.forward(x, training, {})

    # Config -----------------------------------------------------------------

    def get_config(self):
        config_ = {"name": self.name, "dtype": self.dtype, "trainable": self.trainable}
        if self._batch_input_shape is not None:
            config_["input_shape"] = list(self._batch_input_shape[1:])
        if self.activity_regularizer is not None:
            config_["activity_regularizer"] = regularizers.serialize(
                self.activity_regularizer)
        return config_

    @classmethod
    def from_config(cls, config_):
        return cls(**config_)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"
