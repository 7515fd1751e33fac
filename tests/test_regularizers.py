"""Weight and activity regularizers: penalties in the loss and their gradients."""

import numpy as np
import pytest

import nnfast
from nnfast import layers, regularizers


def test_penalty_values():
    x = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert regularizers.L1(0.1)(x) == pytest.approx(0.1 * 3.5)
    assert regularizers.L2(0.1)(x) == pytest.approx(0.1 * 5.25)
    assert regularizers.get("l1_l2")(x) == pytest.approx(0.01 * 3.5 + 0.01 * 5.25)
    assert regularizers.get("l2").l2 == 0.01


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    reg = regularizers.L1L2(l1=0.3, l2=0.2)
    grad = reg.gradient(x)
    eps = 1e-6
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric = (reg(x + step) - reg(x - step)) / (2 * eps)
        assert grad[index] == pytest.approx(numeric, rel=1e-6)


def test_negative_factor_rejected():
    with pytest.raises(ValueError, match="l2"):
        regularizers.L2(-1.0)


def _one_layer_model(**kwargs):
    model = nnfast.Sequential([
        nnfast.Input(shape=(2,), dtype="float64"),
        layers.Dense(1, dtype="float64", **kwargs),
    ])
    model.set_weights([np.array([[1.0], [-2.0]]), np.array([0.5])])
    return model


def test_kernel_penalty_in_reported_loss():
    model = _one_layer_model(kernel_regularizer=regularizers.L2(0.1))
    model.compile(optimizer=nnfast.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.array([[1.0, 1.0]])
    y = np.array([[0.0]])
    # Output 1 - 2 + 0.5 = -0.5, so the squared error is 0.25; the penalty
    # is 0.1 * (1 + 4).
    loss = model.test_on_batch(x, y)
    assert loss == pytest.approx(0.25 + 0.5)


def test_kernel_penalty_in_gradient():
    model = _one_layer_model(kernel_regularizer=regularizers.L2(0.1),
                             bias_regularizer=regularizers.L1(0.2))
    model.compile(optimizer=nnfast.optimizers.SGD(learning_rate=0.5), loss="mse")
    x = np.array([[1.0, 1.0]])
    y = np.array([[0.0]])
    model.train_on_batch(x, y)
    kernel, bias = model.get_weights()
    # d mse / d out = 2 * (-0.5) = -1; d out / d kernel = x; plus 2 * 0.1 * w.
    expected_kernel = np.array([[1.0], [-2.0]]) - 0.5 * (
        np.array([[-1.0], [-1.0]]) + 0.2 * np.array([[1.0], [-2.0]]))
    expected_bias = 0.5 - 0.5 * (-1.0 + 0.2 * np.sign(0.5))
    np.testing.assert_allclose(kernel, expected_kernel, rtol=1e-12)
    np.testing.assert_allclose(bias, [expected_bias], rtol=1e-12)


def test_activity_penalty():
    model = _one_layer_model(activity_regularizer=regularizers.L2(0.5))
    model.compile(optimizer=nnfast.optimizers.SGD(learning_rate=0.5), loss="mse")
    x = np.array([[1.0, 1.0]])
    y = np.array([[0.0]])
    assert model.test_on_batch(x, y) == pytest.approx(0.25 + 0.5 * 0.25)
    model.train_on_batch(x, y)
    kernel, _ = model.get_weights()
    # d/d out of (out^2 + 0.5 out^2) at out = -0.5 is -1 - 0.5.
    np.testing.assert_allclose(kernel, np.array([[1.0], [-2.0]]) + 0.5 * 1.5,
                               rtol=1e-12)


def test_frozen_layer_keeps_weights():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 3, size=64)
    model = nnfast.Sequential([
        nnfast.Input(shape=(4,)),
        layers.Dense(8, activation="relu", kernel_regularizer="l2"),
        layers.Dense(3),
    ])
    model.layers[0].trainable = False
    before = model.layers[0].get_weights()
    model.compile(optimizer="adam",
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(before, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.layers[1].get_weights()[0].std() > 0
