"""Reshaping layers: Reshape and ZeroPadding2D, as in Keras."""

import math
import numbers

import numpy as np

from nnfast.layers.convolutional import check_data_format
from nnfast.layers.layer import Layer


class Reshape(Layer):
    """Reshape each sample to ``target_shape``.

    Args:
        target_shape: tuple of ints, the shape of one sample without the
            batch axis. One entry may be -1, which takes the size that keeps
            the number of values.

    Input shape:
        (batch_size, ...) with any sample shape of the same size.
    Output shape:
        (batch_size,) + target_shape, with the -1 resolved.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        if isinstance(target_shape, numbers.Integral) and not isinstance(
            target_shape, bool
        ):
            target_shape = (target_shape,)
        try:
            shape = tuple(target_shape)
        except TypeError:
            raise TypeError(
                f"Reshape: `target_shape` must be a tuple of ints, got "
                f"target_shape={target_shape!r}"
            ) from None
        for dim in shape:
            if (
                isinstance(dim, bool)
                or not isinstance(dim, numbers.Integral)
                or (dim < 1 and dim != -1)
            ):
                raise ValueError(
                    f"Reshape: every entry of `target_shape` must be a positive int or "
                    f"-1, got target_shape={target_shape!r}"
                )
        if sum(1 for dim in shape if dim == -1) > 1:
            raise ValueError(
                f"Reshape: `target_shape` may contain -1 at most once, got "
                f"target_shape={target_shape!r}"
            )
        self.target_shape = tuple(int(dim) for dim in shape)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(dim for dim in self.target_shape if dim != -1)
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(
                    f"{self.name}: cannot reshape a sample of shape "
                    f"{tuple(input_shape)} ({size} values) to {self.target_shape}; "
                    f"{size} is not a multiple of {known}"
                )
            return tuple(
                size // known if dim == -1 else dim for dim in self.target_shape
            )
        if known != size:
            raise ValueError(
                f"{self.name}: cannot reshape a sample of shape {tuple(input_shape)} "
                f"({size} values) to {self.target_shape} ({known} values)"
            )
        return self.target_shape

    def forward(self, x, training, cache):
        if training:
            cache["shape"] = x.shape
        return x.reshape((x.shape[0],) + self.compute_output_shape(x.shape[1:]))

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        return dy.reshape(cache["shape"])

    def get_config(self):
        config_ = super().get_config()
        config_["target_shape"] = list(self.target_shape)
        return config_


def _padding_pairs(padding):
    """Return ((top, bottom), (left, right)) from ZeroPadding2D's padding argument."""
    message = (
        "ZeroPadding2D: `padding` must be an int, a pair of ints (rows, columns) or "
        f"a pair of pairs ((top, bottom), (left, right)) of ints >= 0, got "
        f"padding={padding!r}"
    )

    def amount(value):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < 0
        ):
            raise ValueError(message)
        return int(value)

    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        p = amount(padding)
        return (p, p), (p, p)
    try:
        rows, cols = padding
    except (TypeError, ValueError):
        raise ValueError(message) from None
    pairs = []
    for item in (rows, cols):
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            pairs.append((amount(item), amount(item)))
            continue
        try:
            before, after = item
        except (TypeError, ValueError):
            raise ValueError(message) from None
        pairs.append((amount(before), amount(after)))
    return tuple(pairs)


class ZeroPadding2D(Layer):
    """Add rows and columns of zeros around each image.

    Args:
        padding: int (the same on all four sides), a pair (rows, columns)
            added on both sides, or ((top, bottom), (left, right)).
            Default (1, 1).
        data_format: None or "channels_last".

    Input shape:
        (batch_size, height, width, channels).
    Output shape:
        (batch_size, top + height + bottom, left + width + right, channels).
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format("ZeroPadding2D", data_format)
        self.padding = _padding_pairs(padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.name}: ZeroPadding2D expects inputs of shape (batch, height, "
                f"width, channels), got input shape {(None,) + tuple(input_shape)}"
            )
        (top, bottom), (left, right) = self.padding
        height, width, channels = input_shape
        return (top + height + bottom, left + width + right, channels)

    def forward(self, x, training, cache):
        (top, _), (left, _) = self.padding
        shape = (x.shape[0],) + self.compute_output_shape(x.shape[1:])
        y = cache.get("y")
        if y is None or y.shape != shape or y.dtype != x.dtype:
            # The border is zeroed once; later calls only overwrite the inside.
            y = np.zeros(shape, dtype=x.dtype)
            cache["y"] = y
        y[:, top : top + x.shape[1], left : left + x.shape[2], :] = x
        if training:
            cache["input_hw"] = x.shape[1:3]
        return y

    def backward(self, dy, cache, need_dx):
        if not need_dx:
            return None
        (top, _), (left, _) = self.padding
        height, width = cache["input_hw"]
        return dy[:, top : top + height, left : left + width, :]

    def get_config(self):
        config_ = super().get_config()
        config_.update(
            {
                "padding": [list(pair) for pair in self.padding],
                "data_format": "channels_last",
            }
        )
        return config_


__all__ = ["Reshape", "ZeroPadding2D"]
