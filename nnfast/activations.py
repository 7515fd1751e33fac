"""Activation functions by name, as in ``keras.activations``.

Layers store the canonical name and hand it to the kernels. The functions
below apply an activation to an array with the selected backend.

Parametrised activations (leaky_relu, elu) get Keras 3's default parameter
when chosen by name, as in ``Dense(activation="leaky_relu")``. For another
parameter use the LeakyReLU or ELU layer.
"""

import numpy as np

from nnfast import backend

_NAMES = ("linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "selu",
          "gelu", "silu", "softplus", "softsign", "hard_sigmoid", "exponential",
          "log_softmax")
# Keras 3 resolves "swish" to silu.
_ALIASES = {None: "linear", "linear": "linear", "swish": "silu"}


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


def _apply(name, x, alpha=None):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype("float32")
    return backend.kernels().activation_forward(name, x, alpha=alpha)


def _along_last_axis(name, x, axis):
    """Apply the row-wise activation ``name`` along ``axis`` of ``x``."""
    x = np.asarray(x)
    moved = np.moveaxis(x, axis, -1)
    return np.moveaxis(_apply(name, moved), -1, axis)


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


def leaky_relu(x, negative_slope=0.2):
    """Return x where x > 0, else negative_slope * x.

    The backward pass reads the input x.
    """
    return _apply("leaky_relu", x, alpha=negative_slope)


def elu(x, alpha=1.0):
    """Return x where x > 0, else alpha * (exp(x) - 1).

    The backward pass reads the input x.
    """
    return _apply("elu", x, alpha=alpha)


def selu(x):
    """Return scale * elu(x, alpha) with SELU's alpha = 1.67326... and scale = 1.05070....

    The backward pass reads the input x.
    """
    return _apply("selu", x)


def gelu(x, approximate=False):
    """Return x * Phi(x), where Phi is the standard normal CDF.

    ``approximate=True`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    The name "gelu" (in a layer) means the exact form, Keras 3's default.
    The backward pass reads the input x.
    """
    return _apply("gelu_approximate" if approximate else "gelu", x)


def silu(x):
    """Return x * sigmoid(x), also called swish.

    The backward pass reads the input x.
    """
    return _apply("silu", x)


swish = silu


def softplus(x):
    """Return log(1 + exp(x)), computed without overflow.

    The backward pass reads the input x.
    """
    return _apply("softplus", x)


def softsign(x):
    """Return x / (1 + |x|).

    The backward pass reads the input x.
    """
    return _apply("softsign", x)


def hard_sigmoid(x):
    """Return relu6(x + 3) / 6: 0 below -3, 1 above 3, x / 6 + 0.5 between.

    The backward pass reads the input x.
    """
    return _apply("hard_sigmoid", x)


def exponential(x):
    """Return exp(x).

    The backward pass reads the output y, which is also the derivative.
    """
    return _apply("exponential", x)


def log_softmax(x, axis=-1):
    """Return x - log(sum(exp(x))) along ``axis``, computed without overflow.

    The backward pass reads the output y.
    """
    if axis == -1:
        return _apply("log_softmax", x)
    return _along_last_axis("log_softmax", x, axis)
