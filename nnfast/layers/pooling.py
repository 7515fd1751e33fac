"""Pooling layers, channels last, as in Keras.

The 1-D layers pass their (batch, steps, channels) input to the kernels as
an image one pixel tall, and the global layers pool with one window as
large as the image, so every layer runs on the backend's 2-D pooling
kernels.
"""

import numpy as np

from nnfast import backend
from nnfast.layers.convolutional import (
    check_data_format,
    normalize_padding,
    normalize_tuple,
    window_padding,
)
from nnfast.layers.core import _buffer
from nnfast.layers.layer import Layer


class _Pooling(Layer):
    """Shared code of the windowed pooling layers of rank 1 and 2."""

    rank = 2
    mode = "max"

    def __init__(
        self, pool_size, strides=None, padding="valid", data_format=None, **kwargs
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.pool_size = normalize_tuple(owner, "pool_size", pool_size, self.rank)
        if strides is None:
            self.strides = self.pool_size
        else:
            self.strides = normalize_tuple(owner, "strides", strides, self.rank)
        self.padding = normalize_padding(owner, padding)
        check_data_format(owner, data_format)
        self._geometry_key = None
        self._geometry = None

    def _check_input_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 1 or any(d is None for d in input_shape):
            expected = (
                "(batch, height, width, channels)"
                if self.rank == 2
                else "(batch, steps, channels)"
            )
            raise ValueError(
                f"{self.name}: {type(self).__name__} expects inputs of shape "
                f"{expected}, got input shape {(None,) + input_shape}"
            )
        return input_shape

    def _spatial_geometry(self, spatial):
        """Return (padding pairs, output sizes) for the spatial input sizes."""
        if spatial != self._geometry_key:
            pads = []
            sizes = []
            for axis, size in enumerate(spatial):
                before, after, out = window_padding(
                    self.name,
                    size,
                    self.pool_size[axis],
                    self.strides[axis],
                    1,
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
        return sizes + (input_shape[-1],)

    def _image_args(self, x):
        """Return the 4-D image view, pool size, strides, padding and output shape."""
        pads, sizes = self._spatial_geometry(x.shape[1:-1])
        channels = x.shape[-1]
        if self.rank == 1:
            image = x.reshape(x.shape[0], 1, x.shape[1], channels)
            return (
                image,
                (1, self.pool_size[0]),
                (1, self.strides[0]),
                ((0, 0), pads[0]),
                (x.shape[0], 1, sizes[0], channels),
            )
        return (
            x,
            self.pool_size,
            self.strides,
            pads,
            (x.shape[0],) + sizes + (channels,),
        )

    def forward(self, x, training, cache):
        kernels = backend.kernels()
        image, pool, strides, pads, out_shape = self._image_args(x)
        y = _buffer(cache, "y", out_shape, x.dtype)
        if self.mode == "max":
            # The argmax is only needed to route gradients back.
            argmax = _buffer(cache, "argmax", out_shape, np.int32) if training else None
            kernels.max_pool2d_forward(
                image, pool, strides, pads, out=y, argmax_out=argmax
            )
        else:
            kernels.avg_pool2d_forward(image, pool, strides, pads, out=y)
        if training:
            cache["args"] = (image.shape, pool, strides, pads)
        if self.rank == 1:
            return y.reshape(out_shape[0], out_shape[2], out_shape[3])
        return y

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        kernels = backend.kernels()
        image_shape, pool, strides, pads = cache["args"]
        dy = dy.reshape(cache["y"].shape)
        dx = _buffer(cache, "dx", image_shape, dy.dtype)
        if self.mode == "max":
            kernels.max_pool2d_backward(dy, cache["argmax"], pool, strides, pads, dx)
        else:
            kernels.avg_pool2d_backward(dy, pool, strides, pads, dx)
        if self.rank == 1:
            return dx.reshape(dx.shape[0], dx.shape[2], dx.shape[3])
        return dx

    def get_config(self):
        config_ = super().get_config()
        config_.update(
            {
                "pool_size": list(self.pool_size),
                "strides": list(self.strides),
                "padding": self.padding,
                "data_format": "channels_last",
            }
        )
        return config_


class MaxPooling2D(_Pooling):
    """Take the maximum over each (rows, columns) window of each channel.

    Args:
        pool_size: int or tuple, the window size (default (2, 2)).
        strides: int or tuple, the step between windows; None means
            pool_size.
        padding: "valid" (no padding) or "same" (ceil(size / stride)
            outputs, the odd pixel of padding at the end). Padded positions
            take no part in a window.
        data_format: None or "channels_last".

    Input shape:
        (batch_size, height, width, channels).
    Output shape:
        (batch_size, pooled_height, pooled_width, channels).
    """

    rank = 2
    mode = "max"

    def __init__(
        self,
        pool_size=(2, 2),
        strides=None,
        padding="valid",
        data_format=None,
        **kwargs,
    ):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(_Pooling):
    """Average each (rows, columns) window of each channel over its input pixels.

    Args:
        pool_size: int or tuple, the window size (default (2, 2)).
        strides: int or tuple, the step between windows; None means
            pool_size.
        padding: "valid" (no padding) or "same" (ceil(size / stride)
            outputs, the odd pixel of padding at the end). Padded positions
            take no part in a window.
        data_format: None or "channels_last".

    Input shape:
        (batch_size, height, width, channels).
    Output shape:
        (batch_size, pooled_height, pooled_width, channels).
    """

    rank = 2
    mode = "average"

    def __init__(
        self,
        pool_size=(2, 2),
        strides=None,
        padding="valid",
        data_format=None,
        **kwargs,
    ):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling1D(_Pooling):
    """Take the maximum over each window of steps of each channel.

    Args:
        pool_size: int or tuple, the window size (default 2).
        strides: int or tuple, the step between windows; None means
            pool_size.
        padding: "valid" (no padding) or "same" (ceil(size / stride)
            outputs, the odd pixel of padding at the end). Padded positions
            take no part in a window.
        data_format: None or "channels_last".

    Input shape:
        (batch_size, steps, channels).
    Output shape:
        (batch_size, pooled_steps, channels).
    """

    rank = 1
    mode = "max"

    def __init__(
        self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs
    ):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_Pooling):
    """Average each window of steps of each channel over its input steps.

    Args:
        pool_size: int or tuple, the window size (default 2).
        strides: int or tuple, the step between windows; None means
            pool_size.
        padding: "valid" (no padding) or "same" (ceil(size / stride)
            outputs, the odd pixel of padding at the end). Padded positions
            take no part in a window.
        data_format: None or "channels_last".

    Input shape:
        (batch_size, steps, channels).
    Output shape:
        (batch_size, pooled_steps, channels).
    """

    rank = 1
    mode = "average"

    def __init__(
        self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs
    ):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _GlobalPooling(Layer):
    """Pool each channel over all of its pixels (or steps) with one window."""

    rank = 2
    mode = "max"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_data_format(type(self).__name__, data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 1 or any(d is None for d in input_shape):
            expected = (
                "(batch, height, width, channels)"
                if self.rank == 2
                else "(batch, steps, channels)"
            )
            raise ValueError(
                f"{self.name}: {type(self).__name__} expects inputs of shape "
                f"{expected}, got input shape {(None,) + input_shape}"
            )
        if self.keepdims:
            return (1,) * self.rank + (input_shape[-1],)
        return (input_shape[-1],)

    def forward(self, x, training, cache):
        kernels = backend.kernels()
        image = (
            x if self.rank == 2 else x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
        )
        window = image.shape[1:3]
        pads = ((0, 0), (0, 0))
        y = _buffer(cache, "y", (x.shape[0], 1, 1, x.shape[-1]), x.dtype)
        if self.mode == "max":
            argmax = _buffer(cache, "argmax", y.shape, np.int32) if training else None
            kernels.max_pool2d_forward(
                image, window, window, pads, out=y, argmax_out=argmax
            )
        else:
            kernels.avg_pool2d_forward(image, window, window, pads, out=y)
        if training:
            cache["image_shape"] = image.shape
        return y.reshape((x.shape[0],) + self.compute_output_shape(x.shape[1:]))

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        kernels = backend.kernels()
        image_shape = cache["image_shape"]
        window = image_shape[1:3]
        pads = ((0, 0), (0, 0))
        dy = dy.reshape(cache["y"].shape)
        dx = _buffer(cache, "dx", image_shape, dy.dtype)
        if self.mode == "max":
            kernels.max_pool2d_backward(dy, cache["argmax"], window, window, pads, dx)
        else:
            kernels.avg_pool2d_backward(dy, window, window, pads, dx)
        if self.rank == 1:
            return dx.reshape(dx.shape[0], dx.shape[2], dx.shape[3])
        return dx

    def get_config(self):
        config_ = super().get_config()
        config_.update({"data_format": "channels_last", "keepdims": self.keepdims})
        return config_


class GlobalAveragePooling2D(_GlobalPooling):
    """Average each channel over all pixels of the image.

    Args:
        data_format: None or "channels_last".
        keepdims: keep the spatial axes with length 1.

    Input shape:
        (batch_size, height, width, channels).
    Output shape:
        (batch_size, channels), or (batch_size, 1, 1, channels) with keepdims.
    """

    rank = 2
    mode = "average"


class GlobalMaxPooling2D(_GlobalPooling):
    """Take the maximum of each channel over all pixels of the image.

    Args:
        data_format: None or "channels_last".
        keepdims: keep the spatial axes with length 1.

    Input shape:
        (batch_size, height, width, channels).
    Output shape:
        (batch_size, channels), or (batch_size, 1, 1, channels) with keepdims.
    """

    rank = 2
    mode = "max"


class GlobalAveragePooling1D(_GlobalPooling):
    """Average each channel over all steps.

    Args:
        data_format: None or "channels_last".
        keepdims: keep the steps axis with length 1.

    Input shape:
        (batch_size, steps, channels).
    Output shape:
        (batch_size, channels), or (batch_size, 1, channels) with keepdims.
    """

    rank = 1
    mode = "average"


class GlobalMaxPooling1D(_GlobalPooling):
    """Take the maximum of each channel over all steps.

    Args:
        data_format: None or "channels_last".
        keepdims: keep the steps axis with length 1.

    Input shape:
        (batch_size, steps, channels).
    Output shape:
        (batch_size, channels), or (batch_size, 1, channels) with keepdims.
    """

    rank = 1
    mode = "max"


__all__ = [
    "AveragePooling1D",
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "MaxPooling1D",
    "MaxPooling2D",
]
