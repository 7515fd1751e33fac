"""Layers, with Keras's names and arguments."""

from nnfast.layers.activation_layers import ELU, LeakyReLU, ReLU, Softmax
from nnfast.layers.convolutional import Conv1D, Conv2D
from nnfast.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
)
from nnfast.layers.layer import Layer, Weight
from nnfast.layers.normalization import BatchNormalization, LayerNormalization
from nnfast.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from nnfast.layers.reshaping import Reshape, ZeroPadding2D

_BUILTIN = {cls.__name__: cls for cls in (Activation, Dense, Dropout, Flatten,
                                         InputLayer)}
_BUILTIN.update({cls.__name__: cls for cls in (
    AveragePooling1D, AveragePooling2D, BatchNormalization, Conv1D, Conv2D,
    GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D,
    GlobalMaxPooling2D, LayerNormalization, MaxPooling1D, MaxPooling2D, Reshape,
    ZeroPadding2D)})
_BUILTIN.update({cls.__name__: cls for cls in (ELU, LeakyReLU, ReLU, Softmax)})


def serialize(layer):
    """Return a JSON-friendly dict that :func:`deserialize` turns back into a layer."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config, custom_objects=None):
    """Return a new layer from a dict made by :func:`serialize`.

    The class is looked up in ``custom_objects`` and then among nnfast's own
    layers; an unknown name raises ValueError and never imports anything.
    """
    name = config.get("class_name")
    classes = dict(_BUILTIN)
    classes.update(custom_objects or {})
    cls = classes.get(name)
    if cls is None:
        raise ValueError(
            f"Unknown layer class {name!r}; nnfast has {', '.join(sorted(_BUILTIN))}. "
            "Pass your own classes in custom_objects."
        )
    return cls.from_config(dict(config.get("config", {})))


__all__ = [
    "Activation",
    "AveragePooling1D",
    "AveragePooling2D",
    "BatchNormalization",
    "Conv1D",
    "Conv2D",
    "Dense",
    "Dropout",
    "ELU",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "Input",
    "InputLayer",
    "Layer",
    "LayerNormalization",
    "LeakyReLU",
    "MaxPooling1D",
    "MaxPooling2D",
    "ReLU",
    "Reshape",
    "Softmax",
    "Weight",
    "ZeroPadding2D",
    "deserialize",
    "serialize",
]
