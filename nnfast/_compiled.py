"""Compiled kernels, with the names and signatures of :mod:`nnfast._reference`."""

from nnfast._activations import activation_backward, activation_forward
from nnfast._conv import conv2d_backward, conv2d_forward
from nnfast._dense import dense_backward, dense_forward
from nnfast._gather import gather_rows
from nnfast._gemm import gemm
from nnfast._losses import (
    binary_cross_entropy,
    huber,
    kl_divergence,
    mean_absolute_error,
    mean_squared_error,
    softmax_cross_entropy,
)
from nnfast._norm import (
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_inference,
    layer_norm_backward,
    layer_norm_forward,
)
from nnfast._optimizers import (
    adagrad_update,
    adam_update,
    nadam_update,
    rmsprop_update,
    sgd_update,
)
from nnfast._pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "activation_backward",
    "activation_forward",
    "adagrad_update",
    "adam_update",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_inference",
    "binary_cross_entropy",
    "conv2d_backward",
    "conv2d_forward",
    "dense_backward",
    "dense_forward",
    "gather_rows",
    "gemm",
    "huber",
    "kl_divergence",
    "layer_norm_backward",
    "layer_norm_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mean_absolute_error",
    "mean_squared_error",
    "nadam_update",
    "rmsprop_update",
    "sgd_update",
    "softmax_cross_entropy",
]
