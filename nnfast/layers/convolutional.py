"""Convolution layers: Conv2D and Conv1D, channels last, as in Keras.

Both run on the backend's ``conv2d_forward`` and ``conv2d_backward``
kernels. Conv1D passes its (batch, steps, channels) input to them as an
image one pixel tall.
"""

import numbers

from nnfast import activations, backend, initializers, regularizers
from nnfast.layers.core import _buffer
from nnfast.layers.layer import Layer, check_positive_int

# Activations the convolution kernels apply to their output; any other runs
# as a separate pass over the output.
_FUSED_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


def normalize_tuple(layer, name, value, rank, minimum=1):
    """Return ``value`` (an int or ``rank`` ints) as a tuple of ``rank`` ints.

    Raises naming the argument when an entry is not an int >= ``minimum``.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (value,) * rank
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(
                f"{layer}: `{name}` must be an int or a tuple of {rank} ints, got "
                f"{name}={value!r}"
            ) from None
    if len(values) != rank:
        raise ValueError(
            f"{layer}: `{name}` must be an int or a tuple of {rank} ints, got "
            f"{name}={value!r}"
        )
    for item in values:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(
                f"{layer}: `{name}` must contain ints, got {name}={value!r}"
            )
        if item < minimum:
            raise ValueError(
                f"{layer}: every entry of `{name}` must be >= {minimum}, got "
                f"{name}={value!r}"
            )
    return tuple(int(item) for item in values)


def normalize_padding(layer, padding, allowed=("valid", "same")):
    """Return ``padding`` lowercased, or raise ValueError listing the allowed names."""
    if isinstance(padding, str) and padding.lower() in allowed:
        return padding.lower()
    names = ", ".join(repr(name) for name in allowed)
    raise ValueError(
        f"{layer}: `padding` must be one of {names}, got padding={padding!r}"
    )


def check_data_format(layer, data_format):
    """Raise unless ``data_format`` is None or "channels_last"."""
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"{layer}: only data_format='channels_last' is supported, got "
            f"data_format={data_format!r}"
        )


def window_padding(layer, size, window, stride, dilation, padding):
    """Return (pad_before, pad_after, output_size) along one axis, as in Keras.

    "valid" pads nothing. "same" gives ceil(size / stride) outputs and puts
    the odd pixel of padding after (at the bottom or right). "causal" pads
    before only, so that output i depends on inputs up to i.
    """
    extent = (window - 1) * dilation + 1
    if padding == "valid":
        out = (size - extent) // stride + 1
        if out < 1:
            raise ValueError(
                f"{layer}: the input is too small for the window: size {size} along "
                f"an axis, window extent {extent} with 'valid' padding; use "
                "padding='same' or a larger input"
            )
        return 0, 0, out
    if padding == "causal":
        return extent - 1, 0, (size - 1) // stride + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2, out


class _Conv(Layer):
    """Shared code of Conv1D and Conv2D: a ``rank``-D convolution, channels last."""

    rank = 2

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        rank = self.rank
        self.filters = check_positive_int(owner, "filters", filters)
        self.kernel_size = normalize_tuple(owner, "kernel_size", kernel_size, rank)
        self.strides = normalize_tuple(owner, "strides", strides, rank)
        self.dilation_rate = normalize_tuple(
            owner, "dilation_rate", dilation_rate, rank
        )
        allowed = ("valid", "same", "causal") if rank == 1 else ("valid", "same")
        self.padding = normalize_padding(owner, padding, allowed)
        check_data_format(owner, data_format)
        if groups != 1:
            raise ValueError(
                f"{owner}: only groups=1 is supported, got groups={groups!r}"
            )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{owner}: `strides` > 1 cannot be combined with `dilation_rate` > 1, "
                f"got strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._kernel = None
        self._bias = None
        self._geometry_key = None
        self._geometry = None

    # The arrays behind the weights change when a model gathers them into its
    # flat buffer, so read them through the Weight objects.
    @property
    def kernel(self):
        return self._kernel.value if self._kernel is not None else None

    @property
    def bias(self):
        return self._bias.value if self._bias is not None else None

    def _check_input_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 1 or any(d is None for d in input_shape):
            if self.rank == 2:
                expected = "(batch, height, width, channels)"
                hint = (
                    "; for flat 28 x 28 images add Reshape((28, 28, 1)) or use "
                    "Input(shape=(28, 28, 1))"
                )
            else:
                expected = "(batch, steps, channels)"
                hint = ""
            raise ValueError(
                f"{self.name}: {type(self).__name__} expects inputs of shape "
                f"{expected}, got input shape {(None,) + input_shape}{hint}"
            )
        return input_shape

    def build(self, input_shape):
        input_shape = self._check_input_shape(input_shape)
        self.compute_output_shape(input_shape)
        channels = int(input_shape[-1])
        self._kernel = self.add_weight(
            "kernel",
            self.kernel_size + (channels, self.filters),
            self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self._bias = self.add_weight(
                "bias",
                (self.filters,),
                self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        self.built = True

    def _spatial_geometry(self, spatial):
        """Return (padding pairs, output sizes) for the spatial input sizes."""
        if spatial != self._geometry_key:
            pads = []
            sizes = []
            for axis, size in enumerate(spatial):
                before, after, out = window_padding(
                    self.name,
                    size,
                    self.kernel_size[axis],
                    self.strides[axis],
                    self.dilation_rate[axis],
                    self.padding,
                )
                pads.append((before, after))
                sizes.append(out)
            self._geometry = (tuple(pads), tuple(sizes))
            self._geometry_key = spatial
        return self._geometry

    def compute_output_shape(self, input_shape):
        input_shape = self._check_input_shape(input_shape)
        _, sizes = self._spatial_geometry(tuple(input_shape[:-1]))
        return sizes + (self.filters,)

    def _image_args(self, x):
        """Return x as a 4-D image view, with the kernels' geometry and output shape.

        The result is (image, padding pairs, strides, dilation, output shape),
        all for the (batch, height, width, channels) layout.
        """
        pads, sizes = self._spatial_geometry(x.shape[1:-1])
        if self.rank == 1:
            image = x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
            return (
                image,
                ((0, 0), pads[0]),
                (1, self.strides[0]),
                (1, self.dilation_rate[0]),
                (x.shape[0], 1, sizes[0], self.filters),
            )
        return (
            x,
            pads,
            self.strides,
            self.dilation_rate,
            (x.shape[0],) + sizes + (self.filters,),
        )

    def _kernel_4d(self, array):
        if self.rank == 1:
            return array.reshape((1,) + array.shape)
        return array

    def forward(self, x, training, cache):
        kernels = backend.kernels()
        image, pads, strides, dilation, out_shape = self._image_args(x)
        act = self.activation
        fused = act if act in _FUSED_ACTIVATIONS else "linear"
        y = _buffer(cache, "y", out_shape, x.dtype)
        bias = self._bias.value if self._bias is not None else None
        kernels.conv2d_forward(
            image,
            self._kernel_4d(self._kernel.value),
            bias,
            fused,
            strides,
            pads,
            dilation,
            out=y,
        )
        z = None
        if fused != act:
            z = y
            y = _buffer(cache, "y_activated", out_shape, x.dtype)
            kernels.activation_forward(
                act, z.reshape(-1, self.filters), out=y.reshape(-1, self.filters)
            )
        if training:
            cache["x"] = image
            cache["z"] = z
            cache["y_out"] = y
            cache["geometry"] = (pads, strides, dilation)
        if self.rank == 1:
            return y.reshape(out_shape[0], out_shape[2], out_shape[3])
        return y

    def backward(self, dy, cache, need_dx):
        kernels = backend.kernels()
        image = cache["x"]
        pads, strides, dilation = cache["geometry"]
        y = cache["y_out"]
        dy = dy.reshape(y.shape)
        act = self.activation
        if act not in _FUSED_ACTIVATIONS:
            # The activation ran after the kernel, so its derivative comes first;
            # some derivatives need the input z, softmax's needs the output y.
            dz = _buffer(cache, "dz", y.shape, y.dtype)
            kernels.activation_backward(
                act,
                cache["z"].reshape(-1, self.filters),
                y.reshape(-1, self.filters),
                dy.reshape(-1, self.filters),
                out=dz.reshape(-1, self.filters),
            )
            dy = dz
            act = "linear"
        dx = _buffer(cache, "dx", image.shape, image.dtype) if need_dx else None
        bias_grad = self._bias.grad if self._bias is not None else None
        kernels.conv2d_backward(
            image,
            self._kernel_4d(self._kernel.value),
            y,
            dy,
            act,
            strides,
            pads,
            dilation,
            self._kernel_4d(self._kernel.grad),
            bias_grad,
            dx_out=dx,
        )
        if dx is None:
            return None
        if self.rank == 1:
            return dx.reshape(dx.shape[0], dx.shape[2], dx.shape[3])
        return dx

    def get_config(self):
        config_ = super().get_config()
        config_.update(
            {
                "filters": self.filters,
                "kernel_size": list(self.kernel_size),
                "strides": list(self.strides),
                "padding": self.padding,
                "data_format": "channels_last",
                "dilation_rate": list(self.dilation_rate),
                "groups": 1,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            }
        )
        return config_


class Conv2D(_Conv):
    """2-D convolution (a cross-correlation, as in Keras), channels last.

    Args:
        filters: positive int, the number of output channels.
        kernel_size: int or (height, width) of the window.
        strides: int or (rows, columns) step between windows (default 1).
        padding: "valid" (no padding) or "same" (ceil(size / stride)
            outputs, with the odd pixel of padding at the bottom or right).
        data_format: None or "channels_last".
        dilation_rate: int or pair; spacing of the window's taps. Cannot be
            combined with strides > 1.
        groups: must be 1.
        activation: activation name or function; None means linear.
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the kernel (glorot_uniform).
        bias_initializer: initializer of the bias (zeros).
        kernel_regularizer: optional penalty on the kernel.
        bias_regularizer: optional penalty on the bias.
        activity_regularizer: optional penalty on the output.

    Input shape:
        (batch_size, height, width, channels).
    Output shape:
        (batch_size, new_height, new_width, filters).
    """

    rank = 2

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            groups=groups,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            **kwargs,
        )


class Conv1D(_Conv):
    """1-D convolution over steps (a cross-correlation, as in Keras), channels last.

    Args:
        filters: positive int, the number of output channels.
        kernel_size: int (or a 1-tuple), the window length.
        strides: int step between windows (default 1).
        padding: "valid", "same" or "causal" (pad before only, so that
            output i depends on inputs up to i).
        dilation_rate: int spacing of the window's taps. Cannot be combined
            with strides > 1.
        Other arguments as for :class:`Conv2D`.

    Input shape:
        (batch_size, steps, channels).
    Output shape:
        (batch_size, new_steps, filters).
    """

    rank = 1

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            groups=groups,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            **kwargs,
        )


__all__ = ["Conv1D", "Conv2D"]
