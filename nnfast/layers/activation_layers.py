"""Activation layers with their own arguments: ReLU, LeakyReLU, Softmax and ELU.

Each layer runs the activation kernels of the selected backend, except
ReLU with a ``max_value`` or a ``threshold``, which NumPy computes.
"""

import math
import numbers
import warnings

import numpy as np

from nnfast import backend
from nnfast.layers.core import _buffer
from nnfast.layers.layer import Layer


def _check_float(layer, name, value, allow_none=False):
    """Return ``value`` as a finite float >= 0 (or None when allowed), else raise."""
    if value is None and allow_none:
        return None
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{layer}: `{name}` must be a float >= 0, got {name}={value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(
            f"{layer}: `{name}` must be a finite float >= 0, got {name}={value}"
        )
    return value


class _KernelActivation(Layer):
    """Base of the layers that apply one named activation kernel elementwise.

    Subclasses set ``_kernel_activation`` and ``_kernel_parameter`` (the
    kernels' ``alpha``, or None).
    """

    _kernel_activation = None
    _kernel_parameter = None

    def forward(self, x, training, cache):
        y = _buffer(cache, "y", x.shape, x.dtype)
        backend.kernels().activation_forward(self._kernel_activation, x, out=y,
                                             alpha=self._kernel_parameter)
        cache["x"] = x
        return y

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        dx = _buffer(cache, "dx", dy.shape, dy.dtype)
        backend.kernels().activation_backward(self._kernel_activation, cache["x"],
                                              cache["y"], dy, out=dx,
                                              alpha=self._kernel_parameter)
        return dx


class ReLU(Layer):
    """Rectified linear unit with Keras 3's optional cap, slope and threshold.

    The output is min(x if x > threshold else 0, max_value), minus
    negative_slope * (threshold - x) where x < threshold. With the defaults
    this is max(x, 0).

    Args:
        max_value: float >= 0 capping the output, or None for no cap.
        negative_slope: float >= 0, the slope below the threshold.
        threshold: float >= 0; inputs at or below it give no positive part.

    Input shape:
        Any.
    Output shape:
        Same as the input.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = _check_float("ReLU", "max_value", max_value, allow_none=True)
        self.negative_slope = _check_float("ReLU", "negative_slope", negative_slope)
        self.threshold = _check_float("ReLU", "threshold", threshold)

    def _kernel(self):
        """Return (activation name, parameter) for a kernel, or None for NumPy."""
        if self.max_value is not None or self.threshold != 0.0:
            return None
        if self.negative_slope == 0.0:
            return "relu", None
        return "leaky_relu", self.negative_slope

    def forward(self, x, training, cache):
        y = _buffer(cache, "y", x.shape, x.dtype)
        cache["x"] = x
        kernel = self._kernel()
        if kernel is not None:
            backend.kernels().activation_forward(kernel[0], x, out=y, alpha=kernel[1])
            return y
        # NaN fails x <= threshold, so it reaches the output.
        y[...] = np.where(x <= self.threshold, 0, x)
        if self.max_value is not None:
            np.minimum(y, self.max_value, out=y)
        if self.negative_slope != 0.0:
            y -= self.negative_slope * np.maximum(self.threshold - x, 0)
        return y

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        dx = _buffer(cache, "dx", dy.shape, dy.dtype)
        x = cache["x"]
        kernel = self._kernel()
        if kernel is not None:
            backend.kernels().activation_backward(kernel[0], x, cache["y"], dy,
                                                  out=dx, alpha=kernel[1])
            return dx
        passes = x > self.threshold
        if self.max_value is not None:
            passes &= x < self.max_value
        dx[...] = np.where(passes, dy, 0)
        if self.negative_slope != 0.0:
            dx += np.where(x < self.threshold, self.negative_slope * dy, 0)
        return dx

    def get_config(self):
        config_ = super().get_config()
        config_.update({"max_value": self.max_value,
                        "negative_slope": self.negative_slope,
                        "threshold": self.threshold})
        return config_


class LeakyReLU(_KernelActivation):
    """Leaky rectified linear unit: x where x > 0, else negative_slope * x.

    Args:
        negative_slope: float >= 0 (default 0.3, Keras 3's layer default;
            the activation function "leaky_relu" defaults to 0.2).

    Input shape:
        Any.
    Output shape:
        Same as the input.
    """

    _kernel_activation = "leaky_relu"

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("LeakyReLU: `alpha` is deprecated, use `negative_slope`",
                          stacklevel=2)
        super().__init__(**kwargs)
        self.negative_slope = _check_float("LeakyReLU", "negative_slope", negative_slope)
        self._kernel_parameter = self.negative_slope

    def get_config(self):
        config_ = super().get_config()
        config_["negative_slope"] = self.negative_slope
        return config_


class ELU(_KernelActivation):
    """Exponential linear unit: x where x > 0, else alpha * (exp(x) - 1).

    Args:
        alpha: finite float, the scale of the negative part (default 1.0).

    Input shape:
        Any.
    Output shape:
        Same as the input.
    """

    _kernel_activation = "elu"

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"ELU: `alpha` must be a float, got alpha={alpha!r}")
        if not math.isfinite(alpha):
            raise ValueError(f"ELU: `alpha` must be finite, got alpha={alpha}")
        self.alpha = float(alpha)
        self._kernel_parameter = self.alpha

    def get_config(self):
        config_ = super().get_config()
        config_["alpha"] = self.alpha
        return config_


class Softmax(Layer):
    """Softmax along one axis: exp(x) / sum(exp(x)), computed without overflow.

    Args:
        axis: int, the axis to normalize, counted with the batch axis
            (default -1, the last).

    Input shape:
        Any with at least the batch axis.
    Output shape:
        Same as the input.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"Softmax: `axis` must be an int, got axis={axis!r}")
        self.axis = int(axis)

    def _axis_for(self, ndim):
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"{self.name}: `axis` {self.axis} is out of range for inputs with "
                f"{ndim} axes"
            )
        return self.axis % ndim

    def forward(self, x, training, cache):
        axis = self._axis_for(x.ndim)
        kernels = backend.kernels()
        if axis == x.ndim - 1:
            y = _buffer(cache, "y", x.shape, x.dtype)
            kernels.activation_forward("softmax", x, out=y)
        else:
            moved = kernels.activation_forward("softmax", np.moveaxis(x, axis, -1))
            y = np.moveaxis(moved, -1, axis)
        cache["y"] = y
        return y

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        axis = self._axis_for(dy.ndim)
        kernels = backend.kernels()
        y = cache["y"]
        if axis == dy.ndim - 1:
            dx = _buffer(cache, "dx", dy.shape, dy.dtype)
            kernels.activation_backward("softmax", None, y, dy, out=dx)
            return dx
        moved = kernels.activation_backward("softmax", None, np.moveaxis(y, axis, -1),
                                            np.moveaxis(dy, axis, -1))
        return np.moveaxis(moved, -1, axis)

    def get_config(self):
        config_ = super().get_config()
        config_["axis"] = self.axis
        return config_
