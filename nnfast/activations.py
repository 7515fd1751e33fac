"""Activation functions by name, as in ``keras.activations``.

Layers store the canonical name and hand it to the kernels. The functions
below apply an activation to an array with the selected backend.
"""

import numpy as np

from nnfast import backend

_NAMES = ("linear", "relu", "sigmoid", "tanh", "softmax")
_ALIASES = {None: "linear", "linear": "linear"}


def get(identifier):
    """Return the canonical activation name for ``identifier``.

    ``identifier`` is None (linear), a name, or one of the functions in this
    module.
    """
    if callable(identifier) and getattr(identifier, "__name__", None) in _NAMES:
        return identifier.__name__
    if identifier in _ALIASES:
        return _ALIASES[identifier]
    if isinstance(identifier, str) and identifier in _NAMES:
        return identifier
    raise ValueError(
        f"Unknown activation {identifier!r}; expected one of {', '.join(_NAMES)} "
        "or None"
    )


def serialize(name):
    """Return the name under which an activation is saved."""
    return get(name)


def _apply(name, x):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype("float32")
    return backend.kernels().activation_forward(name, x)


def linear(x):
    """Return ``x`` unchanged."""
    return _apply("linear", x)


def relu(x):
    """Return max(x, 0)."""
    return _apply("relu", x)


def sigmoid(x):
    """Return 1 / (1 + exp(-x))."""
    return _apply("sigmoid", x)


def tanh(x):
    """Return the hyperbolic tangent of ``x``."""
    return _apply("tanh", x)


def softmax(x):
    """Return exp(x) / sum(exp(x)) over the last axis."""
    return _apply("softmax", x)
