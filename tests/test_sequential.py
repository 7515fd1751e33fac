"""Sequential models: building, training, evaluation and prediction."""

import os
import subprocess
import sys

import numpy as np
import pytest

import nnfast
from nnfast import layers


@pytest.fixture(params=["compiled", "reference"])
def backend_name(request):
    previous = nnfast.get_backend()
    nnfast.set_backend(request.param)
    yield request.param
    nnfast.set_backend(previous)


@pytest.fixture
def blobs():
    """Three separable clusters in 6 dimensions, 300 samples."""
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=3.0, size=(3, 6))
    y = rng.integers(0, 3, size=300)
    x = (centers[y] + rng.normal(size=(300, 6))).astype("float32")
    return x, y


def make_mlp(n_in=6, n_out=3, activation=None, dtype=None):
    return nnfast.Sequential([
        nnfast.Input(shape=(n_in,), dtype=dtype),
        layers.Dense(16, activation="relu", dtype=dtype),
        layers.Dense(n_out, activation=activation, dtype=dtype),
    ])


def test_sequential_from_list_and_add():
    a = nnfast.Sequential([nnfast.Input(shape=(4,)), layers.Dense(3)])
    b = nnfast.Sequential()
    b.add(nnfast.Input(shape=(4,)))
    b.add(layers.Dense(3))
    assert len(a.layers) == 1
    assert len(b.layers) == 1
    assert a.output_shape == b.output_shape == (3,)
    assert a.count_params() == b.count_params() == 4 * 3 + 3


def test_add_rejects_non_layer():
    model = nnfast.Sequential()
    with pytest.raises(TypeError, match="expected a Layer"):
        model.add("dense")


def test_input_only_first():
    model = nnfast.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="first layer"):
        model.add(nnfast.Input(shape=(4,)))


def test_dense_keras_defaults():
    model = nnfast.Sequential([nnfast.Input(shape=(50,)), layers.Dense(40)])
    dense = model.layers[0]
    limit = np.sqrt(6.0 / (50 + 40))
    assert dense.kernel.dtype == np.float32
    assert np.all(np.abs(dense.kernel) <= limit)
    # A glorot_uniform draw of 2000 values spans most of [-limit, limit].
    assert dense.kernel.max() > 0.9 * limit
    assert np.all(dense.bias == 0)


def test_dense_hand_computed():
    dense = layers.Dense(2, activation="relu")
    dense._ensure_built((2,))
    dense.set_weights([np.array([[1.0, -1.0], [2.0, 0.5]]), np.array([0.5, -3.0])])
    out = dense(np.array([[1.0, 1.0], [-1.0, 2.0]]))
    np.testing.assert_allclose(out, [[3.5, 0.0], [3.5, 0.0]])


def test_summary_lists_layers(capsys):
    model = make_mlp()
    model.summary()
    text = capsys.readouterr().out
    assert "dense" in text
    assert "(None, 16)" in text
    assert f"Total params: {6 * 16 + 16 + 16 * 3 + 3:,}" in text


def test_summary_before_build_raises():
    model = nnfast.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="Input\\(shape=...\\)"):
        model.summary()


def test_predict_before_build_uses_data():
    model = nnfast.Sequential([layers.Dense(3)])
    out = model.predict(np.ones((5, 4), dtype="float32"), verbose=0)
    assert out.shape == (5, 3)
    assert model.input_shape == (None, 4)


def test_fit_history_keys(backend_name, blobs):
    x, y = blobs
    nnfast.utils.set_random_seed(1)
    model = make_mlp()
    model.compile(optimizer=nnfast.optimizers.Adam(learning_rate=0.01),
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8


def test_evaluate_return_forms(blobs):
    x, y = blobs
    model = make_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, list)
    assert len(result) == 2
    as_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(as_dict) == {"loss", "accuracy"}


def test_evaluate_accuracy_is_exact(blobs):
    x, y = blobs
    model = make_mlp(activation="softmax")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    _, accuracy = model.evaluate(x, y, batch_size=7, verbose=0)
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    assert accuracy == pytest.approx(np.mean(predicted == y), abs=1e-12)


def test_validation_split_takes_last_samples(blobs):
    x, y = blobs
    model = make_mlp()
    # A zero learning rate keeps the weights, so val_loss must equal the
    # loss evaluated on the last 20% of the samples.
    model.compile(optimizer=nnfast.optimizers.SGD(learning_rate=0.0),
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    expected = model.evaluate(x[240:], y[240:], verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(expected, rel=1e-6)


def test_predict_batches_match_one_pass(blobs):
    x, _ = blobs
    model = make_mlp()
    full = model.predict_on_batch(x)
    batched = model.predict(x, batch_size=7, verbose=0)
    np.testing.assert_allclose(batched, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x), full, rtol=1e-5, atol=1e-6)


def test_predict_zero_rows():
    model = make_mlp()
    out = model.predict(np.empty((0, 6), dtype="float32"), verbose=0)
    assert out.shape == (0, 3)
    assert out.dtype == np.float32


def test_predict_one_sample_without_batch_axis():
    model = make_mlp()
    with pytest.raises(ValueError, match="batch axis"):
        model.predict(np.ones(6, dtype="float32"), verbose=0)


def test_fit_zero_rows_raises():
    model = make_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="0 samples"):
        model.fit(np.empty((0, 6)), np.empty((0,), dtype=int), verbose=0)


def test_verbose_modes(blobs, capsys):
    x, y = blobs
    model = make_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, verbose=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines[0] == "Epoch 1/2"
    assert lines[1].startswith("10/10 - ")
    assert "loss: " in lines[1]
    assert "accuracy: " in lines[1]
    assert len(lines) == 4
    model.fit(x, y, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "10/10 \u2501" in out
    assert "/step" in out


def test_float64_models(backend_name, blobs):
    x, y = blobs
    nnfast.config.set_floatx("float64")
    try:
        model = make_mlp()
    finally:
        nnfast.config.set_floatx("float32")
    assert model.layers[0].kernel.dtype == np.float64
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.predict(x, verbose=0).dtype == np.float64


def test_seed_reproduces_weights(blobs):
    x, y = blobs

    def train():
        nnfast.utils.set_random_seed(123)
        model = nnfast.Sequential([
            nnfast.Input(shape=(6,)),
            layers.Dense(16, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(3),
        ])
        model.compile(optimizer="adam",
                      loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        return model.get_weights()

    first = train()
    second = train()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_backends_train_alike(blobs):
    x, y = blobs
    x = x.astype("float64")
    results = {}
    for name in ("compiled", "reference"):
        nnfast.set_backend(name)
        try:
            nnfast.utils.set_random_seed(5)
            model = make_mlp(dtype="float64")
            model.compile(optimizer="adam",
                          loss=nnfast.losses.SparseCategoricalCrossentropy(
                              from_logits=True))
            model.fit(x, y, epochs=2, batch_size=32, verbose=0)
            results[name] = model.get_weights()
        finally:
            nnfast.set_backend("compiled")
    # float64 kernels differ from NumPy only in summation order, about 1e-15
    # relative per operation; 20 Adam steps keep the weights within 1e-9.
    for a, b in zip(results["compiled"], results["reference"]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_dropout_only_in_training():
    model = nnfast.Sequential([nnfast.Input(shape=(100,)), layers.Dropout(0.5)])
    x = np.ones((4, 100), dtype="float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    dropped = model(x, training=True)
    kept = dropped != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(dropped[kept], 2.0)


def test_softmax_loss_uses_logits():
    model = nnfast.Sequential([
        nnfast.Input(shape=(1,)),
        layers.Dense(2, activation="softmax"),
    ])
    model.set_weights([np.array([[0.0, 300.0]]), np.zeros(2)])
    model.compile(optimizer=nnfast.optimizers.SGD(learning_rate=0.0),
                  loss="sparse_categorical_crossentropy")
    loss = model.test_on_batch(np.ones((1, 1)), np.array([0]))
    assert loss == pytest.approx(300.0, rel=1e-6)


def test_label_out_of_range_leaves_weights(blobs):
    x, y = blobs
    model = make_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    bad = y.copy()
    bad[17] = 3
    with pytest.raises(ValueError, match=r"label 3 at index 17.*\[0, 3\)"):
        model.fit(x, bad, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_mismatched_sample_counts(blobs):
    x, y = blobs
    model = make_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="300 samples in x.*299 in y"):
        model.fit(x, y[:-1], verbose=0)


def test_onehot_targets_with_sparse_loss(blobs):
    x, y = blobs
    model = make_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    onehot = nnfast.utils.to_categorical(y, 3)
    with pytest.raises(ValueError, match="CategoricalCrossentropy"):
        model.fit(x, onehot, verbose=0)


def test_integer_targets_with_categorical_loss(blobs):
    x, y = blobs
    model = make_mlp()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="SparseCategoricalCrossentropy"):
        model.fit(x, y, verbose=0)


def test_nan_inputs_raise(blobs):
    x, y = blobs
    x = x.copy()
    x[3, 2] = np.nan
    model = make_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"nan at index \(3, 2\)"):
        model.fit(x, y, verbose=0)


def test_string_inputs_raise():
    model = make_mlp()
    with pytest.raises(TypeError, match="must hold numbers"):
        model.predict(np.array([["a"] * 6]), verbose=0)


def test_categorical_loss_and_mse_train(blobs):
    x, y = blobs
    onehot = nnfast.utils.to_categorical(y, 3)
    for loss in ("categorical_crossentropy", "mse"):
        nnfast.utils.set_random_seed(3)
        activation = "softmax" if loss != "mse" else None
        model = make_mlp(activation=activation)
        model.compile(optimizer=nnfast.optimizers.Adam(learning_rate=0.01), loss=loss,
                      metrics=["accuracy"])
        history = model.fit(x, onehot, epochs=5, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]
        assert history.history["accuracy"][-1] > 0.8


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_chain_matches_reference(blobs, dtype):
    x, _ = blobs
    x = x.astype(dtype)
    model = nnfast.Sequential([
        nnfast.Input(shape=(6,), dtype=dtype),
        layers.Dense(16, activation="tanh", dtype=dtype),
        layers.Dropout(0.5, dtype=dtype),
        layers.Dense(9, activation="sigmoid", dtype=dtype),
        layers.Dense(3, activation="softmax", dtype=dtype),
    ])
    compiled = {"one": model(x[:1]), "batch": model.predict_on_batch(x),
                "predict": model.predict(x, batch_size=7, verbose=0)}
    assert model._dense_chain() is not None
    nnfast.set_backend("reference")
    try:
        reference = model.predict(x, verbose=0)
    finally:
        nnfast.set_backend("compiled")
    # float32 sums of 16 products differ from NumPy's by a few ulps.
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(compiled["one"], reference[:1], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(compiled["batch"], reference, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(compiled["predict"], reference, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("rows", [256, 257, 1031])
def test_dense_chain_rows_split_across_threads(rows):
    # From 256 rows the chain gives each thread its own block of rows. The
    # result must not depend on the thread count and must match the reference.
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 30)).astype("float32")
    nnfast.utils.set_random_seed(1)
    model = nnfast.Sequential([
        nnfast.Input(shape=(30,)),
        layers.Dense(40, activation="relu"),
        layers.Dense(5, activation="softmax"),
    ])
    outputs = {}
    previous = nnfast.get_num_threads()
    try:
        for threads in (1, 2):
            nnfast.set_num_threads(threads)
            outputs[threads] = model.predict_on_batch(x)
    finally:
        nnfast.set_num_threads(previous)
    np.testing.assert_array_equal(outputs[1], outputs[2])
    nnfast.set_backend("reference")
    try:
        reference = model.predict(x, verbose=0)
    finally:
        nnfast.set_backend("compiled")
    np.testing.assert_allclose(outputs[2], reference, rtol=1e-5, atol=1e-6)


SPLIT_ROWS_SCRIPT = """
import numpy as np
import nnfast
from nnfast import layers

nnfast.set_num_threads(2)
for dtype in ("float32", "float64"):
    for n_in, units in ((97, 300), (129, 10)):
        model = nnfast.Sequential([nnfast.Input(shape=(n_in,), dtype=dtype),
                                   layers.Dense(units, dtype=dtype)])
        for rows in (256, 257, 259, 513):
            model.predict_on_batch(np.zeros((rows, n_in), dtype=dtype))
print("done")
"""


def test_row_blocks_of_unequal_size_finish():
    # With 257 rows the two threads' blocks have 129 and 128 rows, whose
    # products are planned differently; neither may wait for the other.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", SPLIT_ROWS_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"


def test_predict_follows_a_changed_activation(blobs):
    x, _ = blobs
    x = x.astype("float32")
    model = make_mlp()
    model.predict(x, verbose=0)
    model.layers[0].activation = "tanh"
    compiled = model.predict(x, verbose=0)
    nnfast.set_backend("reference")
    try:
        reference = model.predict(x, verbose=0)
    finally:
        nnfast.set_backend("compiled")
    np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-6)
