"""Core layers: Input, Dense, Activation, Flatten and Dropout."""

import math
import numbers

import numpy as np

from nnfast import _rng, activations, backend, initializers, regularizers
from nnfast._reference import ACTIVATIONS as _DENSE_FUSED_ACTIVATIONS
from nnfast.layers.layer import Layer, check_positive_int


def _buffer(cache, key, shape, dtype):
    """Return the reusable array ``cache[key]``, reallocating it on a new shape."""
    buf = cache.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype=dtype)
        cache[key] = buf
    return buf


class InputLayer(Layer):
    """The input of a model, giving the shape of one sample.

    Args:
        shape: the shape of one sample, without the batch axis.
        batch_size: optional fixed batch size (recorded, not enforced).
    """

    def __init__(self, shape=None, batch_size=None, name=None, dtype=None, **kwargs):
        if "input_shape" in kwargs and shape is None:
            shape = kwargs.pop("input_shape")
        if shape is None:
            raise ValueError(
                "InputLayer: `shape` is required, for example Input(shape=(784,))"
            )
        if isinstance(shape, numbers.Integral):
            shape = (shape,)
        shape = tuple(shape)
        for dim in shape:
            if dim is None or isinstance(dim, bool) or not isinstance(
                    dim, numbers.Integral) or dim < 0:
                raise ValueError(
                    f"InputLayer: every dimension of `shape` must be an int >= 0, "
                    f"got shape={shape}"
                )
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.shape = tuple(int(d) for d in shape)
        self.batch_size = batch_size
        self._batch_input_shape = (batch_size,) + self.shape

    def forward(self, x, training, cache):
        return x

    def backward(self, dy, cache, need_dx):
        return dy

    def get_config(self):
        return {"shape": list(self.shape), "batch_size": self.batch_size,
                "name": self.name, "dtype": self.dtype}


def Input(shape=None, batch_size=None, name=None, dtype=None):
    """Return an :class:`InputLayer` to start a :class:`~nnfast.Sequential` model.

    Args:
        shape: the shape of one sample, without the batch axis.
    """
    return InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype)


class Dense(Layer):
    """A densely connected layer: ``activation(x @ kernel + bias)``.

    Args:
        units: positive int, the size of the output.
        activation: activation name or function; None means linear.
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the kernel (glorot_uniform).
        bias_initializer: initializer of the bias (zeros).
        kernel_regularizer: optional penalty on the kernel.
        bias_regularizer: optional penalty on the bias.
        activity_regularizer: optional penalty on the output.

    Input shape:
        (batch_size, ..., input_dim); leading axes are flattened.
    Output shape:
        (batch_size, ..., units).
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("Dense", "units", units)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(
                f"{self.name}: the last axis of the input must be known, got input "
                f"shape {tuple(input_shape)}"
            )
        input_dim = int(input_shape[-1])
        self._kernel = self.add_weight("kernel", (input_dim, self.units),
                                       self.kernel_initializer,
                                       regularizer=self.kernel_regularizer)
        if self.use_bias:
            self._bias = self.add_weight("bias", (self.units,), self.bias_initializer,
                                         regularizer=self.bias_regularizer)
        else:
            self._bias = None
        self.built = True

    # The arrays behind the weights change when a model gathers them into its
    # flat buffer, so read them through the Weight objects.
    @property
    def kernel(self):
        return self._kernel.value if self.built else None

    @kernel.setter
    def kernel(self, value):
        if value is not None:
            raise AttributeError("Dense.kernel: use set_weights to change weights")

    @property
    def bias(self):
        if not self.built or self._bias is None:
            return None
        return self._bias.value

    @bias.setter
    def bias(self, value):
        if value is not None:
            raise AttributeError("Dense.bias: use set_weights to change weights")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training, cache, activation=None):
        kernels = backend.kernels()
        act = self.activation if activation is None else activation
        leading = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        y = _buffer(cache, "y", (x2.shape[0], self.units), x2.dtype)
        bias = self._bias.value if self._bias is not None else None
        if act in _DENSE_FUSED_ACTIVATIONS:
            kernels.dense_forward(x2, self._kernel.value, bias, act, out=y)
        else:
            # The dense kernels fuse only five activations. The others run on
            # the cached preactivations z, which their backward pass reads.
            z = _buffer(cache, "z", y.shape, y.dtype)
            kernels.dense_forward(x2, self._kernel.value, bias, "linear", out=z)
            kernels.activation_forward(act, z, out=y)
        if training:
            cache["x"] = x2
            cache["act"] = act
        if x.ndim != 2:
            return y.reshape(leading + (self.units,))
        return y

    def backward(self, dy, cache, need_dx):
        kernels = backend.kernels()
        x2 = cache["x"]
        dy2 = dy.reshape(-1, self.units) if dy.ndim != 2 else dy
        dx = None
        if need_dx:
            dx = _buffer(cache, "dx", x2.shape, x2.dtype)
        bias_grad = self._bias.grad if self._bias is not None else None
        act = cache["act"]
        if act in _DENSE_FUSED_ACTIVATIONS:
            kernels.dense_backward(x2, self._kernel.value, cache["y"], dy2, act,
                                   self._kernel.grad, bias_grad, dx_out=dx)
        else:
            z = cache["z"]
            dz = _buffer(cache, "dz", z.shape, z.dtype)
            kernels.activation_backward(act, z, cache["y"], dy2, out=dz)
            kernels.dense_backward(x2, self._kernel.value, z, dz, "linear",
                                   self._kernel.grad, bias_grad, dx_out=dx)
        if dx is not None and dy.ndim != 2:
            return dx.reshape(dy.shape[:-1] + (x2.shape[1],))
        return dx

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        })
        return config_


class Activation(Layer):
    """Apply an activation function to the input.

    Args:
        activation: activation name or function.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def forward(self, x, training, cache):
        y = _buffer(cache, "y", x.shape, x.dtype)
        backend.kernels().activation_forward(self.activation, x, out=y)
        # Activations such as gelu need their input in the backward pass.
        cache["x"] = x
        return y

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        dx = _buffer(cache, "dx", dy.shape, dy.dtype)
        backend.kernels().activation_backward(self.activation, cache["x"], cache["y"],
                                              dy, out=dx)
        return dx

    def get_config(self):
        config_ = super().get_config()
        config_["activation"] = self.activation
        return config_


class Flatten(Layer):
    """Flatten every axis but the batch axis.

    Input shape:
        (batch_size, d1, d2, ...).
    Output shape:
        (batch_size, d1 * d2 * ...).
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(
                "Flatten: only data_format='channels_last' is supported, got "
                f"data_format={data_format!r}"
            )

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training, cache):
        if training:
            cache["shape"] = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        return dy.reshape(cache["shape"])


class Dropout(Layer):
    """Set a fraction ``rate`` of inputs to zero in training, scaling the rest.

    Kept inputs are scaled by 1 / (1 - rate), so inference needs no change.

    Args:
        rate: float in [0, 1), the fraction of inputs to drop.
        seed: optional int; otherwise the global generator is used.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise TypeError(f"Dropout: `rate` must be a float in [0, 1), got {rate!r}")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: `rate` must be in [0, 1), got rate={rate}")
        if noise_shape is not None:
            raise ValueError("Dropout: `noise_shape` is not supported; leave it None")
        self.rate = float(rate)
        self.seed = seed
        self._generator = np.random.default_rng(seed) if seed is not None else None

    def forward(self, x, training, cache):
        if not training or self.rate == 0.0:
            if training:
                cache["identity"] = True
            return x
        cache["identity"] = False
        rng = self._generator if self._generator is not None else _rng.generator()
        noise = _buffer(cache, "noise", x.shape, x.dtype)
        rng.random(out=noise, dtype=x.dtype)
        scale = _buffer(cache, "scale", x.shape, x.dtype)
        # scale = [noise >= rate] / (1 - rate), reused by the backward pass.
        np.greater_equal(noise, self.rate, out=scale, casting="unsafe")
        scale *= x.dtype.type(1.0 / (1.0 - self.rate))
        y = _buffer(cache, "y", x.shape, x.dtype)
        np.multiply(x, scale, out=y)
        return y

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        if cache["identity"]:
            return dy
        dx = _buffer(cache, "dx", dy.shape, dy.dtype)
        np.multiply(dy, cache["scale"], out=dx)
        return dx

    def get_config(self):
        config_ = super().get_config()
        config_.update({"rate": self.rate, "seed": self.seed})
        return config_
