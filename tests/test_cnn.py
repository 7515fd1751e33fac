"""Conv2D and Conv1D layers, and small convolutional networks end to end."""

import numpy as np
import pytest

import nnfast
from nnfast import _reference as reference
from nnfast import layers, losses, optimizers, regularizers


def run_layer(layer, x):
    """Return the layer's training-mode output and its cache."""
    layer._ensure_built(x.shape[1:])
    cache = {}
    return layer.forward(x, True, cache), cache


# ---------------------------------------------------------------------------
# Conv2D.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, strides, padding, expected",
    [
        (7, 1, "valid", 5),
        (7, 1, "same", 7),
        (7, 2, "valid", 3),
        (7, 2, "same", 4),
        (8, 2, "same", 4),
        (8, 3, "same", 3),
    ],
)
def test_conv2d_output_shape(size, strides, padding, expected):
    layer = layers.Conv2D(5, 3, strides=strides, padding=padding)
    assert layer.compute_output_shape((size, size + 1, 2)) == (
        expected,
        layer.compute_output_shape((size + 1, size + 1, 2))[0],
        5,
    )
    y = layer(np.zeros((2, size, size, 2), dtype=np.float32))
    assert y.shape == (2, expected, expected, 5)


def test_conv2d_same_padding_extra_at_bottom_right(rng):
    # 8 x 8 input, 3 x 3 kernel, stride 2, "same": 4 outputs need 9 input
    # rows, so one row of padding, which Keras puts at the bottom (and one
    # column at the right).
    layer = layers.Conv2D(3, 3, strides=2, padding="same", use_bias=False)
    x = rng.standard_normal((2, 8, 8, 2)).astype(np.float64)
    layer.dtype = "float64"
    y = layer(x)
    expected = reference.conv2d_forward(
        x, layer.kernel, None, "linear", (2, 2), ((0, 1), (0, 1)), (1, 1)
    )
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_conv2d_hand_computed():
    layer = layers.Conv2D(1, 2, activation="relu")
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    layer(x)
    layer.set_weights(
        [np.array([1.0, -1.0, 2.0, 0.0]).reshape(2, 2, 1, 1), np.array([-6.0])]
    )
    # Each output is x[i, j] - x[i, j + 1] + 2 x[i + 1, j] - 6, then relu.
    y = layer(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0.0, 1.0], [5.0, 7.0]])


def test_conv2d_weights_and_config():
    layer = layers.Conv2D(
        8,
        (3, 2),
        strides=(2, 1),
        padding="SAME",
        dilation_rate=1,
        activation="tanh",
        use_bias=True,
    )
    layer(np.zeros((1, 6, 6, 3), dtype=np.float32))
    assert layer.kernel.shape == (3, 2, 3, 8)
    assert layer.bias.shape == (8,)
    assert layer.count_params() == 3 * 2 * 3 * 8 + 8
    config = layer.get_config()
    assert config["padding"] == "same"
    assert config["kernel_size"] == [3, 2]
    restored = layers.Conv2D.from_config(config)
    assert restored.strides == (2, 1)
    assert restored.activation == "tanh"
    assert layers.deserialize(layers.serialize(layer)).filters == 8


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"filters": 0}, ValueError, "`filters` must be a positive int, got filters=0"),
        ({"filters": 2.5}, TypeError, "`filters` must be a positive int"),
        ({"kernel_size": 0}, ValueError, "every entry of `kernel_size` must be >= 1"),
        (
            {"kernel_size": (3,)},
            ValueError,
            "`kernel_size` must be an int or a tuple of 2",
        ),
        ({"strides": 0}, ValueError, "every entry of `strides` must be >= 1"),
        ({"strides": (1, "2")}, TypeError, "`strides` must contain ints"),
        ({"padding": "full"}, ValueError, "`padding` must be one of 'valid', 'same'"),
        ({"padding": "causal"}, ValueError, "`padding` must be one of 'valid', 'same'"),
        (
            {"dilation_rate": 0},
            ValueError,
            "every entry of `dilation_rate` must be >= 1",
        ),
        ({"strides": 2, "dilation_rate": 2}, ValueError, "cannot be combined"),
        ({"groups": 2}, ValueError, "only groups=1"),
        ({"data_format": "channels_first"}, ValueError, "channels_last"),
        ({"activation": "no_such_activation"}, ValueError, "Unknown activation"),
    ],
)
def test_conv2d_rejects_bad_arguments(kwargs, error, message):
    arguments = {"filters": 4, "kernel_size": 3}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        layers.Conv2D(**arguments)


def test_conv2d_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"add Reshape\(\(28, 28, 1\)\)"):
        layers.Conv2D(4, 3)(np.zeros((2, 784), dtype=np.float32))
    with pytest.raises(ValueError, match="input is too small"):
        layers.Conv2D(4, 5)(np.zeros((1, 4, 8, 1), dtype=np.float32))


@pytest.mark.parametrize("activation", ["relu", "softmax", "linear"])
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_conv2d_backward_matches_difference(activation, backend, rng):
    # For a random direction v, sum(dy * (f(x + h v) - f(x - h v))) / 2h
    # approaches sum(dx * v). In float64 the match is tight.
    nnfast.set_backend(backend)
    try:
        layer = layers.Conv2D(
            3, 3, padding="same", activation=activation, dtype="float64"
        )
        x = rng.standard_normal((2, 5, 4, 2))
        y, cache = run_layer(layer, x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy, cache, True)
        kernel_grad = layer._kernel.grad.copy()
        direction = rng.standard_normal(x.shape)
        step = 1e-6
        plus = layer.forward(x + step * direction, False, {})
        minus = layer.forward(x - step * direction, False, {})
        slope = float(np.sum(dy * (plus - minus))) / (2 * step)
        np.testing.assert_allclose(slope, float(np.sum(dx * direction)), rtol=1e-5)

        kernel = layer._kernel.value
        saved = kernel.copy()
        k_direction = rng.standard_normal(kernel.shape)
        kernel[...] = saved + step * k_direction
        plus = layer.forward(x, False, {})
        kernel[...] = saved - step * k_direction
        minus = layer.forward(x, False, {})
        kernel[...] = saved
        slope = float(np.sum(dy * (plus - minus))) / (2 * step)
        np.testing.assert_allclose(
            slope, float(np.sum(kernel_grad * k_direction)), rtol=1e-5
        )
    finally:
        nnfast.set_backend("compiled")


def test_conv2d_kernel_regularizer():
    layer = layers.Conv2D(2, 2, kernel_regularizer=regularizers.L2(0.1))
    layer(np.zeros((1, 3, 3, 1), dtype=np.float32))
    expected = 0.1 * float(np.sum(layer.kernel.astype(np.float64) ** 2))
    assert layer.weight_penalty() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------
# Conv1D.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "padding, strides, expected",
    [
        ("valid", 1, 8),
        ("same", 1, 10),
        ("causal", 1, 10),
        ("same", 3, 4),
        ("causal", 2, 5),
    ],
)
def test_conv1d_output_shape(padding, strides, expected):
    layer = layers.Conv1D(4, 3, strides=strides, padding=padding)
    y = layer(np.zeros((2, 10, 3), dtype=np.float32))
    assert y.shape == (2, expected, 4)
    assert layer.kernel.shape == (3, 3, 4)


def test_conv1d_matches_conv2d_one_row(rng):
    x = rng.standard_normal((2, 9, 3)).astype(np.float32)
    conv1d = layers.Conv1D(4, 3, dilation_rate=2, padding="same", activation="relu")
    y1 = conv1d(x)
    conv2d = layers.Conv2D(
        4, (1, 3), dilation_rate=(1, 2), padding="same", activation="relu"
    )
    conv2d(x[:, None])
    conv2d.set_weights([conv1d.kernel[None], conv1d.bias])
    np.testing.assert_allclose(y1, conv2d(x[:, None])[:, 0], rtol=1e-6)


def test_conv1d_causal_sees_only_the_past(rng):
    layer = layers.Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = rng.standard_normal((1, 12, 2)).astype(np.float32)
    before = layer(x)
    changed = x.copy()
    changed[0, 7:] += 1.0
    after = layer(changed)
    np.testing.assert_array_equal(after[0, :7], before[0, :7])
    assert not np.allclose(after[0, 7:], before[0, 7:])


def test_conv1d_backward_shape(rng):
    layer = layers.Conv1D(3, 2, strides=2)
    x = rng.standard_normal((2, 7, 4)).astype(np.float32)
    y, cache = run_layer(layer, x)
    dx = layer.backward(np.ones_like(y), cache, True)
    assert dx.shape == x.shape
    assert layer.backward(np.ones_like(y), cache, False) is None


# ---------------------------------------------------------------------------
# Networks.
# ---------------------------------------------------------------------------


def small_cnn(dtype):
    return nnfast.Sequential(
        [
            layers.Input(shape=(10, 9, 2), dtype=dtype),
            layers.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype),
            layers.BatchNormalization(dtype=dtype),
            layers.MaxPooling2D(dtype=dtype),
            layers.ZeroPadding2D(1, dtype=dtype),
            layers.Conv2D(5, (2, 3), strides=(2, 1), activation="tanh", dtype=dtype),
            layers.AveragePooling2D(
                pool_size=2, strides=1, padding="same", dtype=dtype
            ),
            layers.LayerNormalization(dtype=dtype),
            layers.Flatten(dtype=dtype),
            layers.Dropout(0.25, seed=3, dtype=dtype),
            layers.Dense(3, dtype=dtype),
        ]
    )


@pytest.mark.parametrize(
    "dtype, rtol, atol",
    [("float64", 1e-9, 1e-12), ("float32", 2e-3, 1e-5)],
    ids=["float64", "float32"],
)
def test_cnn_training_matches_between_backends(dtype, rtol, atol, rng):
    x = rng.standard_normal((6, 10, 9, 2)).astype(dtype)
    y = rng.integers(0, 3, 6)
    initial = None
    results = {}
    for backend in ("reference", "compiled"):
        nnfast.set_backend(backend)
        try:
            model = small_cnn(dtype)
            if initial is None:
                initial = model.get_weights()
            model.set_weights(initial)
            model.compile(
                optimizer=optimizers.Adam(learning_rate=0.01),
                loss=losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            history = [float(model.train_on_batch(x, y)) for _ in range(4)]
            results[backend] = (
                model.get_weights(),
                history,
                model.predict(x, batch_size=4, verbose=0),
            )
        finally:
            nnfast.set_backend("compiled")
    ref_weights, ref_history, ref_pred = results["reference"]
    weights, history, pred = results["compiled"]
    np.testing.assert_allclose(history, ref_history, rtol=rtol)
    for actual, expected in zip(weights, ref_weights):
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
    np.testing.assert_allclose(pred, ref_pred, rtol=rtol, atol=atol)
    # Training moved the weights, and the moving statistics of the batch
    # normalization, which are not trained by the optimizer.
    assert not np.allclose(weights[0], initial[0])
    assert not np.allclose(weights[4], initial[4])


def test_cnn_learns_and_restores(rng):
    nnfast.utils.set_random_seed(5)
    model = nnfast.Sequential(
        [
            layers.Input(shape=(36,)),
            layers.Reshape((6, 6, 1)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.GlobalMaxPooling2D(),
            layers.Dense(2),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # Class 1 images have a bright vertical bar, class 0 a horizontal one.
    labels = rng.integers(0, 2, 256)
    images = 0.1 * rng.standard_normal((256, 6, 6)).astype(np.float32)
    for image, label in zip(images, labels):
        position = rng.integers(1, 5)
        if label:
            image[:, position] += 1.0
        else:
            image[position, :] += 1.0
    x = images.reshape(256, 36)
    history = model.fit(x, labels, batch_size=32, epochs=20, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert history.history["loss"][-1] < history.history["loss"][0]

    restored = nnfast.Sequential.from_config(model.get_config())
    restored.build((None, 36))
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(
        restored.predict(x, verbose=0),
        model.predict(x, verbose=0),
        rtol=1e-6,
        atol=1e-6,
    )
    moving_variance = model.layers[2].moving_variance
    assert not np.allclose(moving_variance, 1.0)


def test_cnn_predict_batch_one_matches_batch(rng):
    model = nnfast.Sequential(
        [
            layers.Input(shape=(28, 28, 1)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10),
        ]
    )
    x = rng.random((5, 28, 28, 1), dtype=np.float32)
    batch = model.predict(x, batch_size=5, verbose=0)
    for i in range(5):
        np.testing.assert_allclose(
            model.predict_on_batch(x[i : i + 1])[0], batch[i], rtol=1e-5, atol=1e-6
        )


def test_cnn_save_and_load_keeps_moving_statistics(tmp_path, rng):
    model = nnfast.Sequential(
        [
            layers.Input(shape=(10, 10, 2)),
            layers.ZeroPadding2D(((1, 0), (0, 1))),
            layers.Conv2D(4, 3, strides=2, padding="same", activation="tanh"),
            layers.BatchNormalization(momentum=0.8),
            layers.LayerNormalization(axis=[-2, -1]),
            layers.AveragePooling2D(2, padding="same"),
            layers.Reshape((-1,)),
            layers.Dense(3),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.random((8, 10, 10, 2), dtype=np.float32)
    model.fit(x, rng.integers(0, 3, 8), epochs=2, verbose=0)
    path = tmp_path / "cnn.nnf"
    model.save(path)
    restored = nnfast.models.load_model(path)
    assert [type(layer).__name__ for layer in restored.layers] == [
        type(layer).__name__ for layer in model.layers
    ]
    np.testing.assert_array_equal(
        restored.layers[2].moving_mean, model.layers[2].moving_mean
    )
    np.testing.assert_array_equal(
        restored.predict(x, verbose=0), model.predict(x, verbose=0)
    )
