"""Layers, with Keras's names and arguments."""

from nnfast.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
)
from nnfast.layers.layer import Layer, Weight

_BUILTIN = {cls.__name__: cls for cls in (Activation, Dense, Dropout, Flatten,
                                         InputLayer)}


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
    "Dense",
    "Dropout",
    "Flatten",
    "Input",
    "InputLayer",
    "Layer",
    "Weight",
    "deserialize",
    "serialize",
]
