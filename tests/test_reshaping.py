"""Reshape and ZeroPadding2D layers."""

import numpy as np
import pytest

import nnfast
from nnfast import layers


def run_layer(layer, x, dy=None):
    """Return (y, dx) from one training forward and backward pass of ``layer``."""
    layer._ensure_built(x.shape[1:])
    cache = {}
    y = layer.forward(x, True, cache)
    dx = layer.backward(y if dy is None else dy, cache, True)
    return y, dx


def test_reshape_forward_and_backward(rng):
    x = rng.standard_normal((3, 784)).astype(np.float32)
    y, dx = run_layer(layers.Reshape((28, 28, 1)), x)
    assert y.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(y.reshape(3, -1), x)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, x)


def test_reshape_resolves_minus_one():
    layer = layers.Reshape((-1, 4))
    assert layer.compute_output_shape((6, 2)) == (3, 4)
    assert layers.Reshape((2, -1, 2)).compute_output_shape((12,)) == (2, 3, 2)
    assert layers.Reshape(6).compute_output_shape((2, 3)) == (6,)


def test_reshape_rejects_bad_shapes():
    with pytest.raises(ValueError, match="-1 at most once"):
        layers.Reshape((-1, -1))
    with pytest.raises(ValueError, match="positive int or -1"):
        layers.Reshape((0, 4))
    with pytest.raises(ValueError, match="positive int or -1"):
        layers.Reshape((2, 2.5))
    with pytest.raises(TypeError, match="tuple of ints"):
        layers.Reshape(None)
    with pytest.raises(ValueError, match=r"\(6 values\) to \(4,\)"):
        layers.Reshape((4,)).compute_output_shape((2, 3))
    with pytest.raises(ValueError, match="not a multiple of 4"):
        layers.Reshape((-1, 4)).compute_output_shape((2, 3))


def test_reshape_in_a_model(rng):
    model = nnfast.Sequential([layers.Input(shape=(12,)), layers.Reshape((3, 4)),
                               layers.Flatten(), layers.Dense(2)])
    x = rng.standard_normal((5, 12)).astype(np.float32)
    assert model.predict(x, verbose=0).shape == (5, 2)
    config = model.get_config()
    restored = nnfast.Sequential.from_config(config)
    assert restored.layers[0].target_shape == (3, 4)


@pytest.mark.parametrize("padding, expected", [
    (1, ((1, 1), (1, 1))),
    ((2, 3), ((2, 2), (3, 3))),
    (((0, 1), (2, 3)), ((0, 1), (2, 3))),
    ([1, (0, 2)], ((1, 1), (0, 2))),
])
def test_zero_padding_arguments(padding, expected):
    assert layers.ZeroPadding2D(padding).padding == expected


def test_zero_padding_default_and_errors():
    assert layers.ZeroPadding2D().padding == ((1, 1), (1, 1))
    with pytest.raises(ValueError, match="`padding` must be an int"):
        layers.ZeroPadding2D(-1)
    with pytest.raises(ValueError, match="`padding` must be an int"):
        layers.ZeroPadding2D((1, 2, 3))
    with pytest.raises(ValueError, match="`padding` must be an int"):
        layers.ZeroPadding2D(((1, 2, 3), 1))
    with pytest.raises(ValueError, match="channels_last"):
        layers.ZeroPadding2D(data_format="channels_first")
    with pytest.raises(ValueError, match="expects inputs of shape"):
        layers.ZeroPadding2D()(np.zeros((2, 3, 3), dtype=np.float32))


def test_zero_padding_forward_and_backward(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    layer = layers.ZeroPadding2D(((1, 2), (0, 3)))
    dy = rng.standard_normal((2, 6, 7, 5)).astype(np.float32)
    y, dx = run_layer(layer, x, dy)
    assert y.shape == (2, 6, 7, 5)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 0))))
    np.testing.assert_array_equal(dx, dy[:, 1:4, 0:4, :])
    # A second call reuses the buffer, whose border must still be zero.
    y2 = layer.forward(2 * x, False, {"y": y})
    np.testing.assert_array_equal(y2, np.pad(2 * x, ((0, 0), (1, 2), (0, 3), (0, 0))))
    config = layer.get_config()
    assert layers.ZeroPadding2D.from_config(config).padding == ((1, 2), (0, 3))
