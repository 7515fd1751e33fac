"""fit, evaluate and predict on generators and other kinds of input."""

import warnings

import numpy as np
import pytest

import nnfast
from nnfast import layers


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)
    return x, y


def make_model():
    nnfast.utils.set_random_seed(0)
    model = nnfast.Sequential([
        nnfast.Input(shape=(5,)),
        layers.Dense(8, activation="tanh"),
        layers.Dense(3),
    ])
    model.compile(optimizer="sgd",
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def batches(x, y, size):
    for start in range(0, x.shape[0], size):
        yield x[start:start + size], y[start:start + size]


def test_generator_matches_unshuffled_arrays(data):
    x, y = data
    from_arrays = make_model()
    from_arrays.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    from_generator = make_model()
    history = from_generator.fit(batches(x, y, 16), epochs=1, verbose=0)
    for a, b in zip(from_arrays.get_weights(), from_generator.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(history.history["loss"]) == 1


def test_generator_runs_out_warns(data):
    x, y = data
    model = make_model()
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(batches(x, y, 16), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


def test_generator_with_steps_per_epoch(data):
    x, y = data

    def forever():
        while True:
            yield from batches(x, y, 16)

    model = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(forever(), epochs=3, steps_per_epoch=4, verbose=0)
    assert len(history.history["loss"]) == 3


def test_generator_rejects_separate_y(data):
    x, y = data
    model = make_model()
    with pytest.raises(ValueError, match="must not be given"):
        model.fit(batches(x, y, 16), y, verbose=0)


def test_bad_batch_raises_before_update(data):
    x, y = data
    model = make_model()
    model.build((None, 5))
    before = model.get_weights()

    def broken():
        bad = y[:16].copy()
        bad[4] = 7
        yield x[:16], bad

    with pytest.raises(ValueError, match="label 7 at index 4"):
        model.fit(broken(), verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_evaluate_and_predict_generators(data):
    x, y = data
    model = make_model()
    expected = model.evaluate(x, y, batch_size=16, verbose=0)
    got = model.evaluate(batches(x, y, 16), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    predicted = model.predict(batches(x, y, 16), verbose=0)
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0), rtol=1e-6)


def test_validation_data_generator_is_evaluated(data):
    x, y = data
    model = make_model()
    history = model.fit(x, y, epochs=2, verbose=0,
                        validation_data=list(batches(x, y, 32)).__iter__())
    assert len(history.history["val_loss"]) >= 1


def test_class_weight_scales_loss(data):
    x, y = data
    model = make_model()
    plain = model.evaluate(x, y, verbose=0)[0]
    weighted = make_model()
    weighted.compile(optimizer=nnfast.optimizers.SGD(learning_rate=0.0),
                     loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = weighted.fit(x, y, epochs=1, batch_size=96, shuffle=False, verbose=0,
                           class_weight={0: 2.0, 1: 2.0, 2: 2.0})
    assert history.history["loss"][0] == pytest.approx(2 * plain, rel=1e-5)


def test_sample_weight_zero_ignores_samples(data):
    x, y = data
    model = make_model()
    weights = np.zeros(96)
    weights[:48] = 1.0
    # With "sum_over_batch_size", zero weights still count in the divisor.
    loss = model.evaluate(x, y, sample_weight=weights, batch_size=96, verbose=0)[0]
    half = model.evaluate(x[:48], y[:48], batch_size=96, verbose=0)[0]
    assert loss == pytest.approx(half / 2, rel=1e-5)


@pytest.mark.parametrize("dtype", ["float64", "int32", "uint8", "bool"])
def test_input_dtypes_convert_once(data, dtype):
    x, _ = data
    model = make_model()
    cast = (x > 0).astype(dtype) if dtype in ("uint8", "bool", "int32") else x.astype(
        dtype)
    expected = model.predict(cast.astype("float32"), verbose=0)
    np.testing.assert_array_equal(model.predict(cast, verbose=0), expected)


def test_lists_and_readonly_arrays(data):
    x, y = data
    model = make_model()
    expected = model.predict(x, verbose=0)
    readonly = x.copy()
    readonly.setflags(write=False)
    np.testing.assert_array_equal(model.predict(readonly, verbose=0), expected)
    np.testing.assert_allclose(model.predict(x.tolist(), verbose=0), expected,
                               rtol=1e-6)
    fortran = np.asfortranarray(x)
    np.testing.assert_allclose(model.predict(fortran, verbose=0), expected, rtol=1e-6)
    strided = np.repeat(x, 2, axis=0)[::2]
    np.testing.assert_allclose(model.predict(strided, verbose=0), expected, rtol=1e-6)


def test_pandas_by_position(data):
    pd = pytest.importorskip("pandas")
    x, y = data
    model = make_model()
    frame = pd.DataFrame(x, index=np.arange(96)[::-1] + 1000)
    series = pd.Series(y, index=np.arange(96) * 3)
    expected = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(model.evaluate(frame, series, verbose=0), expected)
    model.fit(frame, series, epochs=1, verbose=0)


def test_metrics_ignore_weights_weighted_metrics_use_them(data):
    x, y = data
    model = make_model()
    model.compile(optimizer=nnfast.optimizers.SGD(learning_rate=0.0),
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    assert model.metrics_names == ["loss", "accuracy", "weighted_accuracy"]
    weights = np.where(np.arange(96) < 48, 1.0, 0.0)
    logs = model.evaluate(x, y, sample_weight=weights, return_dict=True, verbose=0)
    hits = model.predict(x, verbose=0).argmax(axis=1) == y
    assert logs["accuracy"] == pytest.approx(hits.mean())
    assert logs["weighted_accuracy"] == pytest.approx(hits[:48].mean())


def test_loss_weights_scale_loss(data):
    x, y = data
    model = make_model()
    plain = model.evaluate(x, y, verbose=0)[0]
    model.compile(optimizer="sgd",
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
                  loss_weights=[2.5])
    assert model.evaluate(x, y, verbose=0) == pytest.approx(2.5 * plain, rel=1e-6)


def test_predict_on_batch_zero_rows(data):
    model = make_model()
    out = model.predict_on_batch(np.zeros((0, 5), dtype="float32"))
    assert out.shape == (0, 3)
    assert model(np.zeros((0, 5), dtype="float32")).shape == (0, 3)


def test_unbatched_dataset_says_batch(data):
    x, y = data
    model = make_model()
    dataset = nnfast.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match=r"\.batch\(batch_size\)"):
        model.fit(dataset, verbose=0)


def test_validation_split_leaving_nothing(data):
    x, y = data
    model = make_model()
    with pytest.raises(ValueError, match="leaves no training samples"):
        model.fit(x[:1], y[:1], validation_split=0.5, verbose=0)


def test_layer_names_follow_keras():
    assert layers.Conv2D(2, 3).name.startswith("conv2d")
    assert layers.MaxPooling2D().name.startswith("max_pooling2d")
    assert layers.BatchNormalization().name.startswith("batch_normalization")


def test_save_into_missing_folder(tmp_path, data):
    model = make_model()
    target = tmp_path / "missing" / "model.nnf"
    with pytest.raises(FileNotFoundError, match="missing"):
        model.save(str(target))
