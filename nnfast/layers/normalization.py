"""Normalization layers: BatchNormalization and LayerNormalization, as in Keras."""

import numbers

import numpy as np

from nnfast import backend, initializers, regularizers
from nnfast.layers.core import _buffer
from nnfast.layers.layer import Layer


def _check_float(layer, name, value, low=None, high=None):
    """Return ``value`` as a float, or raise naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{layer}: `{name}` must be a float, got {name}={value!r}")
    value = float(value)
    if (
        not np.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(
            f"{layer}: `{name}` must be a finite float {bounds}, got {name}={value}"
        )
    return value


def _check_axis(layer, axis, ndim):
    """Return ``axis`` as a non-negative int below ``ndim`` (axes include the batch)."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{layer}: `axis` must be an int, got axis={axis!r}")
    resolved = axis + ndim if axis < 0 else axis
    if not 1 <= resolved < ndim:
        raise ValueError(
            f"{layer}: `axis` must name a non-batch axis of the {ndim}-D input, got "
            f"axis={axis}"
        )
    return int(resolved)


class BatchNormalization(Layer):
    """Normalize each feature with the batch's statistics in training.

    In training (and only while the layer is trainable, as in Keras), the
    layer normalizes each feature along ``axis`` with the mean and biased
    variance over all other axes of the batch, and updates
    moving = moving * momentum + batch * (1 - momentum). In inference, or
    when ``trainable`` is False, it uses the moving mean and variance, which
    are non-trainable weights and so are saved with the model.

    Args:
        axis: int, the feature axis (default -1, the channels).
        momentum: float in [0, 1], the moving averages' momentum.
        epsilon: float >= 0 added to the variance.
        center: whether to add the learned offset beta.
        scale: whether to multiply by the learned gamma.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: initializers of the four weights.
        beta_regularizer, gamma_regularizer: optional penalties.

    Input shape:
        Any, with the batch axis first.
    Output shape:
        Same as the input.
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = "BatchNormalization"
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"{owner}: `axis` must be an int, got axis={axis!r}")
        self.axis = int(axis)
        self.momentum = _check_float(owner, "momentum", momentum, 0.0, 1.0)
        self.epsilon = _check_float(owner, "epsilon", epsilon, 0.0)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self._gamma = None
        self._beta = None
        self._moving_mean = None
        self._moving_variance = None
        self._feature_axis = None

    def build(self, input_shape):
        ndim = len(input_shape) + 1
        self._feature_axis = _check_axis(self.name, self.axis, ndim)
        features = input_shape[self._feature_axis - 1]
        if features is None:
            raise ValueError(
                f"{self.name}: the feature axis of the input must be known, "
                f"got input shape {(None,) + tuple(input_shape)}"
            )
        shape = (int(features),)
        if self.scale:
            self._gamma = self.add_weight(
                "gamma",
                shape,
                self.gamma_initializer,
                regularizer=self.gamma_regularizer,
            )
        if self.center:
            self._beta = self.add_weight(
                "beta", shape, self.beta_initializer, regularizer=self.beta_regularizer
            )
        self._moving_mean = self.add_weight(
            "moving_mean", shape, self.moving_mean_initializer, trainable=False
        )
        self._moving_variance = self.add_weight(
            "moving_variance", shape, self.moving_variance_initializer, trainable=False
        )
        self.built = True

    @property
    def gamma(self):
        return self._gamma.value if self._gamma is not None else None

    @property
    def beta(self):
        return self._beta.value if self._beta is not None else None

    @property
    def moving_mean(self):
        return self._moving_mean.value if self._moving_mean is not None else None

    @property
    def moving_variance(self):
        return (
            self._moving_variance.value if self._moving_variance is not None else None
        )

    def _as_rows(self, x):
        """Return x as (rows, features) with the feature axis last and contiguous."""
        if self._feature_axis != x.ndim - 1:
            x = np.moveaxis(x, self._feature_axis, -1)
        x = np.ascontiguousarray(x)
        return x.reshape(-1, x.shape[-1])

    def _from_rows(self, rows, shape):
        """Undo :meth:`_as_rows` for an array of the input's ``shape``."""
        if self._feature_axis == len(shape) - 1:
            return rows.reshape(shape)
        moved = list(shape)
        moved.append(moved.pop(self._feature_axis))
        return np.moveaxis(rows.reshape(moved), -1, self._feature_axis)

    def forward(self, x, training, cache):
        kernels = backend.kernels()
        rows = self._as_rows(x)
        gamma = self._gamma.value if self._gamma is not None else None
        beta = self._beta.value if self._beta is not None else None
        y = _buffer(cache, "y", rows.shape, rows.dtype)
        batch_statistics = training and self.trainable
        if batch_statistics:
            features = rows.shape[1]
            mean = _buffer(cache, "mean", (features,), rows.dtype)
            var = _buffer(cache, "var", (features,), rows.dtype)
            kernels.batch_norm_forward(
                rows, gamma, beta, self.epsilon, out=y, mean_out=mean, var_out=var
            )
            keep = rows.dtype.type(self.momentum)
            blend = rows.dtype.type(1.0 - self.momentum)
            moving_mean = self._moving_mean.value
            moving_variance = self._moving_variance.value
            moving_mean *= keep
            moving_mean += blend * mean
            moving_variance *= keep
            moving_variance += blend * var
        else:
            kernels.batch_norm_inference(
                rows,
                self._moving_mean.value,
                self._moving_variance.value,
                gamma,
                beta,
                self.epsilon,
                out=y,
            )
        if training:
            cache["rows"] = rows
            cache["shape"] = x.shape
            cache["batch_statistics"] = batch_statistics
        return self._from_rows(y, x.shape)

    def backward(self, dy, cache, need_dx):
        kernels = backend.kernels()
        rows = cache["rows"]
        dy_rows = self._as_rows(dy)
        dx = _buffer(cache, "dx", rows.shape, rows.dtype) if need_dx else None
        if cache["batch_statistics"]:
            gamma_grad = self._gamma.grad if self._gamma is not None else None
            beta_grad = self._beta.grad if self._beta is not None else None
            kernels.batch_norm_backward(
                rows,
                cache["mean"],
                cache["var"],
                self._gamma.value if self._gamma is not None else None,
                self.epsilon,
                dy_rows,
                dx_out=dx,
                gamma_grad_out=gamma_grad,
                beta_grad_out=beta_grad,
            )
        elif dx is not None:
            # Fixed statistics: y is affine in x, with slope gamma / sqrt(var + eps).
            slope = 1.0 / np.sqrt(
                self._moving_variance.value.astype(np.float64) + self.epsilon
            )
            if self._gamma is not None:
                slope = slope * self._gamma.value
            np.multiply(dy_rows, slope.astype(rows.dtype), out=dx)
        if dx is None:
            return None
        return self._from_rows(dx, cache["shape"])

    def get_config(self):
        config_ = super().get_config()
        config_.update(
            {
                "axis": self.axis,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(
                    self.moving_mean_initializer
                ),
                "moving_variance_initializer": initializers.serialize(
                    self.moving_variance_initializer
                ),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            }
        )
        return config_


class LayerNormalization(Layer):
    """Normalize each sample over its trailing feature axes.

    y = gamma * (x - mean) / sqrt(var + epsilon) + beta, with the mean and
    biased variance of each sample taken over the axes in ``axis``, in
    training and inference alike.

    Args:
        axis: int or list of ints, the axes to normalize over (default -1).
            They must be the trailing axes of the input, for example
            [-3, -2, -1] for whole images.
        epsilon: float >= 0 added to the variance.
        center: whether to add the learned offset beta.
        scale: whether to multiply by the learned gamma.
        beta_initializer, gamma_initializer: initializers of the weights.
        beta_regularizer, gamma_regularizer: optional penalties.

    Input shape:
        Any, with the batch axis first.
    Output shape:
        Same as the input.
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = "LayerNormalization"
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        for item in axes:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise TypeError(
                    f"{owner}: `axis` must be an int or a list of ints, "
                    f"got axis={axis!r}"
                )
        if not axes:
            raise ValueError(
                f"{owner}: `axis` must name at least one axis, got axis={axis!r}"
            )
        self.axis = (
            [int(item) for item in axes]
            if isinstance(axis, (list, tuple))
            else int(axis)
        )
        self._axes = [int(item) for item in axes]
        self.epsilon = _check_float(owner, "epsilon", epsilon, 0.0)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self._gamma = None
        self._beta = None
        self._n_axes = None

    def build(self, input_shape):
        ndim = len(input_shape) + 1
        resolved = sorted(_check_axis(self.name, item, ndim) for item in self._axes)
        if resolved != list(range(ndim - len(resolved), ndim)):
            raise ValueError(
                f"{self.name}: `axis` must be the trailing axes of the {ndim}-D input, "
                f"got axis={self.axis}"
            )
        shape = tuple(int(input_shape[a - 1]) for a in resolved)
        self._n_axes = len(resolved)
        if self.scale:
            self._gamma = self.add_weight(
                "gamma",
                shape,
                self.gamma_initializer,
                regularizer=self.gamma_regularizer,
            )
        if self.center:
            self._beta = self.add_weight(
                "beta", shape, self.beta_initializer, regularizer=self.beta_regularizer
            )
        self.built = True

    @property
    def gamma(self):
        return self._gamma.value if self._gamma is not None else None

    @property
    def beta(self):
        return self._beta.value if self._beta is not None else None

    def _as_rows(self, x):
        features = int(np.prod(x.shape[x.ndim - self._n_axes :]))
        return np.ascontiguousarray(x).reshape(-1, features)

    def forward(self, x, training, cache):
        kernels = backend.kernels()
        rows = self._as_rows(x)
        gamma = self._gamma.value.reshape(-1) if self._gamma is not None else None
        beta = self._beta.value.reshape(-1) if self._beta is not None else None
        y = _buffer(cache, "y", rows.shape, rows.dtype)
        mean = _buffer(cache, "mean", (rows.shape[0],), rows.dtype)
        var = _buffer(cache, "var", (rows.shape[0],), rows.dtype)
        kernels.layer_norm_forward(
            rows, gamma, beta, self.epsilon, out=y, mean_out=mean, var_out=var
        )
        if training:
            cache["rows"] = rows
            cache["shape"] = x.shape
        return y.reshape(x.shape)

    def backward(self, dy, cache, need_dx):
        kernels = backend.kernels()
        rows = cache["rows"]
        dy_rows = self._as_rows(dy)
        dx = _buffer(cache, "dx", rows.shape, rows.dtype) if need_dx else None
        gamma = self._gamma.value.reshape(-1) if self._gamma is not None else None
        gamma_grad = self._gamma.grad.reshape(-1) if self._gamma is not None else None
        beta_grad = self._beta.grad.reshape(-1) if self._beta is not None else None
        kernels.layer_norm_backward(
            rows,
            cache["mean"],
            cache["var"],
            gamma,
            self.epsilon,
            dy_rows,
            dx_out=dx,
            gamma_grad_out=gamma_grad,
            beta_grad_out=beta_grad,
        )
        if dx is None:
            return None
        return dx.reshape(cache["shape"])

    def get_config(self):
        config_ = super().get_config()
        config_.update(
            {
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            }
        )
        return config_


__all__ = ["BatchNormalization", "LayerNormalization"]
