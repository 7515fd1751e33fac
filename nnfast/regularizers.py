"""Weight and activity regularizers with Keras's names and defaults.

A regularizer adds ``penalty(x)`` to the loss. For training it also gives
``gradient(x)``, the derivative of the penalty, which the model adds to the
weight's gradient (or to the gradient flowing into a layer's output).
"""

import math
import numbers

import numpy as np


def _check_factor(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: `{name}` must be a float >= 0, got {name}={value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{owner}: `{name}` must be a finite float >= 0, got "
                         f"{name}={value}")
    return value


class Regularizer:
    """Base class: ``reg(x)`` returns the penalty as a float."""

    def __call__(self, x):
        raise NotImplementedError

    def gradient(self, x):
        """Return d penalty / d x, an array shaped like ``x``."""
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    """penalty = l1 * sum(|x|) + l2 * sum(x^2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check_factor(type(self).__name__, "l1", l1)
        self.l2 = _check_factor(type(self).__name__, "l2", l2)

    def __call__(self, x):
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(x), dtype=np.float64))
        if self.l2:
            penalty += self.l2 * float(np.sum(np.square(x), dtype=np.float64))
        return penalty

    def gradient(self, x):
        # The subgradient of |x| at 0 is taken as 0, as np.sign gives.
        grad = np.zeros_like(x)
        if self.l1:
            grad += x.dtype.type(self.l1) * np.sign(x)
        if self.l2:
            grad += x.dtype.type(2.0 * self.l2) * x
        return grad

    def add_gradient(self, x, grad_out):
        """Add :meth:`gradient` of ``x`` to ``grad_out`` in place."""
        if self.l1:
            grad_out += x.dtype.type(self.l1) * np.sign(x)
        if self.l2:
            grad_out += x.dtype.type(2.0 * self.l2) * x

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """penalty = l1 * sum(|x|)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1, l2=0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """penalty = l2 * sum(x^2)."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1_l2(l1=0.01, l2=0.01):
    """Return an :class:`L1L2` regularizer; both factors default to 0.01."""
    return L1L2(l1=l1, l2=l2)


l1 = L1
l2 = L2

_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": l1_l2, "l1l2": l1_l2}
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier):
    """Return a regularizer for None, a name, a config dict or an instance."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        cls = _CLASSES[identifier["class_name"]]
        return cls.from_config(identifier.get("config", {}))
    raise ValueError(
        f"Unknown regularizer {identifier!r}; expected 'l1', 'l2', 'l1_l2', a "
        "Regularizer instance or None"
    )


def serialize(regularizer):
    """Return a JSON-friendly dict for ``regularizer``, or None."""
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__,
            "config": regularizer.get_config()}
