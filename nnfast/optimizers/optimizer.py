"""The base class of optimizers, updating one flat parameter buffer."""

import math
import numbers

import numpy as np


def check_rate(owner, name, value, low=0.0, high=None, low_open=False):
    """Return ``value`` as a float after checking its type and range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: `{name}` must be a float, got {name}={value!r}")
    value = float(value)
    bad = not math.isfinite(value) or value < low or (low_open and value == low)
    if high is not None and value > high:
        bad = True
    if bad:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ValueError(f"{owner}: `{name}` must be finite and {bound}, got "
                         f"{name}={value}")
    return value


class Optimizer:
    """Base class of optimizers.

    A model keeps all trainable weights in one flat buffer and their gradients
    in another; :meth:`apply` updates the buffer in place with one kernel call.

    Args:
        learning_rate: a float, or a schedule called with the step number.
        clipnorm: clip each weight's gradient to this L2 norm.
        clipvalue: clip each gradient element to [-clipvalue, clipvalue].
        global_clipnorm: clip all gradients together to this L2 norm.
    """

    def __init__(self, learning_rate=0.001, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None):
        name_ = type(self).__name__
        if callable(learning_rate):
            self._learning_rate = learning_rate
        else:
            self._learning_rate = check_rate(name_, "learning_rate", learning_rate)
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError(
                f"{name_}: set at most one of `clipnorm` and `global_clipnorm`"
            )
        for arg, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                           ("global_clipnorm", global_clipnorm)):
            if value is not None:
                check_rate(name_, arg, value, low_open=True)
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.name = name or name_.lower()
        self.iterations = 0
        self._slots = {}

    @property
    def learning_rate(self):
        """The learning rate that the next step uses."""
        if callable(self._learning_rate):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value):
            self._learning_rate = value
        else:
            self._learning_rate = check_rate(type(self).__name__, "learning_rate",
                                             value)

    def _slot(self, name, like):
        """Return the state array ``name`` shaped like ``like``, made on first use."""
        slot = self._slots.get(name)
        if slot is None or slot.shape != like.shape or slot.dtype != like.dtype:
            slot = np.zeros_like(like)
            self._slots[name] = slot
        return slot

    def _clip(self, grads, segments):
        if self.clipvalue is not None:
            np.clip(grads, -self.clipvalue, self.clipvalue, out=grads)
        if self.clipnorm is not None:
            for start, stop in segments:
                part = grads[start:stop]
                norm = float(np.sqrt(np.dot(part, part)))
                if norm > self.clipnorm:
                    part *= self.clipnorm / norm
        if self.global_clipnorm is not None:
            norm = float(np.sqrt(np.dot(grads, grads)))
            if norm > self.global_clipnorm:
                grads *= self.global_clipnorm / norm

    def apply(self, params, grads, segments=None):
        """Update the flat buffer ``params`` in place from ``grads``.

        ``segments`` lists (start, stop) for each weight, used by ``clipnorm``.
        ``grads`` may be modified by clipping.
        """
        if self.clipnorm is not None or self.clipvalue is not None or (
                self.global_clipnorm is not None):
            self._clip(grads, segments or [(0, grads.shape[0])])
        lr = self.learning_rate
        step = self.iterations + 1
        self._update(params, grads, lr, step)
        # Counted after the update, so an interrupt between the two leaves the
        # count matching the weights.
        self.iterations = step

    def _update(self, params, grads, lr, step):
        """Apply step number ``step`` (from 1) with learning rate ``lr``."""
        raise NotImplementedError

    def get_config(self):
        lr = self._learning_rate
        if callable(lr) and hasattr(lr, "get_config"):
            from nnfast.optimizers import schedules
            lr = schedules.serialize(lr)
        return {"name": self.name, "learning_rate": lr, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            from nnfast.optimizers import schedules
            config["learning_rate"] = schedules.deserialize(lr)
        return cls(**config)

    def get_state(self):
        """Return the iteration count and copies of the state arrays."""
        return {"iterations": self.iterations,
                "slots": {k: v.copy() for k, v in self._slots.items()}}

    def set_state(self, state):
        """Restore a state from :meth:`get_state`."""
        self.iterations = int(state["iterations"])
        self._slots = {k: np.array(v) for k, v in state["slots"].items()}
