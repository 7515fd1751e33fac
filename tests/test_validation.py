"""Bad arguments and inputs raise clear errors; valid edge values are accepted."""

import warnings

import numpy as np
import pytest

import nnfast
from nnfast import callbacks, layers, optimizers
from nnfast import _activations, _gather, _losses
from nnfast._gemm import gemm


def small_model(loss="sparse_categorical_crossentropy", out=3, activation=None):
    model = nnfast.Sequential([
        nnfast.Input(shape=(4,)),
        layers.Dense(8, activation="relu"),
        layers.Dense(out, activation=activation),
    ])
    model.compile(optimizer="adam", loss=loss)
    return model


def small_gemm(n_threads):
    a = np.ones((3, 4), dtype=np.float32)
    return gemm(a, a.T, n_threads=n_threads)


def small_kernel_calls(n_threads):
    """Return one call of each element-wise kernel on an input too small for threads."""
    x = np.ones((4, 3), dtype=np.float32)
    labels = np.array([0, 1, 2, 0])
    return [
        lambda: _activations.activation_forward("relu", x, n_threads=n_threads),
        lambda: _losses.mean_squared_error(x, x, n_threads=n_threads),
        lambda: _losses.softmax_cross_entropy(x, labels, n_threads=n_threads),
        lambda: _gather.gather_rows(x, np.array([0, 1]), np.empty((2, 3), np.float32),
                                    n_threads=n_threads),
    ]


@pytest.mark.parametrize("n_threads, error", [
    (0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
    ("2", TypeError),
])
def test_small_kernels_check_n_threads(n_threads, error):
    for call in small_kernel_calls(n_threads):
        with pytest.raises(error, match="n_threads"):
            call()


def test_huge_thread_counts_mean_all_allowed():
    before = nnfast.get_num_threads()
    try:
        nnfast.set_num_threads(2**40)
        assert nnfast.get_num_threads() >= 1
        assert small_gemm(2**31).shape == (3, 3)
        assert small_gemm(np.int64(2**40)).shape == (3, 3)
    finally:
        nnfast.set_num_threads(before)


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 4)).astype("float32"), np.arange(12) % 3


# Numeric arguments -----------------------------------------------------------

@pytest.mark.parametrize("make, name", [
    (lambda: layers.Dense(0), "units"),
    (lambda: layers.Dense(-3), "units"),
    (lambda: layers.Dropout(1.5), "rate"),
    (lambda: layers.Dropout(-0.1), "rate"),
    (lambda: optimizers.Adam(learning_rate=float("nan")), "learning_rate"),
    (lambda: optimizers.Adam(learning_rate=-1.0), "learning_rate"),
    (lambda: optimizers.Adam(beta_1=1.5), "beta_1"),
    (lambda: optimizers.SGD(momentum=-0.5), "momentum"),
    (lambda: optimizers.RMSprop(rho=2.0), "rho"),
    (lambda: callbacks.EarlyStopping(patience=-1), "patience"),
    (lambda: callbacks.ReduceLROnPlateau(factor=1.5), "factor"),
    (lambda: nnfast.set_num_threads(0), "n"),
    (lambda: small_gemm(0), "n_threads"),
    (lambda: small_gemm(-1), "n_threads"),
    (lambda: nnfast.losses.CategoricalCrossentropy(label_smoothing=2.0),
     "label_smoothing"),
])
def test_out_of_range_values(make, name):
    with pytest.raises(ValueError, match=f"`?{name}`?"):
        make()


@pytest.mark.parametrize("make, name", [
    (lambda: layers.Dense(2.5), "units"),
    (lambda: layers.Dense("8"), "units"),
    (lambda: layers.Dropout("half"), "rate"),
    (lambda: optimizers.SGD(learning_rate="fast"), "learning_rate"),
    (lambda: nnfast.set_num_threads(1.0), "n"),
    (lambda: small_gemm(1.5), "n_threads"),
    (lambda: small_gemm(True), "n_threads"),
    (lambda: small_gemm("2"), "n_threads"),
])
def test_wrong_kinds(make, name):
    with pytest.raises(TypeError, match=name):
        make()


@pytest.mark.parametrize("make", [
    lambda: callbacks.EarlyStopping(patience=0),
    lambda: optimizers.SGD(momentum=0.0),
    lambda: optimizers.Adam(learning_rate=0.0),
    lambda: layers.Dropout(0.0),
    lambda: callbacks.ReduceLROnPlateau(patience=0, cooldown=0),
    lambda: small_gemm(np.int64(2)),
])
def test_keras_edge_values_accepted(make):
    make()


@pytest.mark.parametrize("kwargs, name", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"epochs": -1}, "epochs"),
    ({"validation_split": 1.0}, "validation_split"),
    ({"verbose": 3}, "verbose"),
    ({"validation_freq": 0}, "validation_freq"),
])
def test_fit_arguments(xy, kwargs, name):
    x, y = xy
    model = small_model()
    with pytest.raises((ValueError, TypeError), match=name):
        model.fit(x, y, **kwargs)


# Labels and targets ----------------------------------------------------------

@pytest.mark.parametrize("bad, fragment", [
    (3, r"label 3 at index 5 is out of range; labels must be in \[0, 3\)"),
    (-1, r"label -1 at index 5 is out of range"),
    (1.5, r"labels must be integers, got 1.5 at index 5"),
])
def test_bad_labels_before_any_update(xy, bad, fragment):
    x, y = xy
    labels = y.astype("float64")
    labels[5] = bad
    model = small_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=fragment):
        model.fit(x, labels, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_ignore_class_accepts_its_label(xy):
    x, y = xy
    labels = y.copy()
    labels[2] = -1
    model = small_model(loss=nnfast.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1))
    model.fit(x, labels, epochs=1, verbose=0)


def test_width_mismatch_names_shapes(xy):
    x, _ = xy
    model = small_model(loss="mse", out=3)
    with pytest.raises(ValueError, match=r"\(12, 1\).*\(12, 3\)"):
        model.fit(x, np.ones((12, 1)), verbose=0)


def test_validation_data_counts(xy):
    x, y = xy
    model = small_model()
    with pytest.raises(ValueError, match="12 samples in x.*11 in y"):
        model.fit(x, y, validation_data=(x, y[:-1]), verbose=0)


# Numerics ------------------------------------------------------------------

def test_softmax_probabilities_large_logits():
    model = nnfast.Sequential([nnfast.Input(shape=(1,)),
                               layers.Dense(2, activation="softmax")])
    model.set_weights([np.array([[0.0, 300.0]]), np.zeros(2)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert model.evaluate(np.ones((1, 1)), np.array([0]), verbose=0) == (
        pytest.approx(300.0))


@pytest.mark.parametrize("logit, label, expected", [
    (100.0, 1.0, 0.0),
    (100.0, 0.0, 100.0),
    (-100.0, 0.0, 0.0),
    (-100.0, 1.0, 100.0),
    (np.inf, 1.0, 0.0),
    (-np.inf, 0.0, 0.0),
])
def test_binary_crossentropy_from_logits(logit, label, expected):
    loss = nnfast.losses.BinaryCrossentropy(from_logits=True, reduction=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_sample, grad = loss.compute(np.array([[label]]), np.array([[logit]]))
    assert per_sample[0] == pytest.approx(expected, abs=1e-12)
    assert np.isfinite(grad).all()


def test_sigmoid_extremes_exact():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = nnfast.activations.sigmoid(np.array([-1000.0, 1000.0]))
    assert values[0] == 0.0
    assert values[1] == 1.0


def test_sigmoid_output_trains_from_logits():
    model = nnfast.Sequential([nnfast.Input(shape=(1,)),
                               layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.array([[300.0]]), np.zeros(1)])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    loss = model.evaluate(np.ones((1, 1)), np.zeros((1, 1)), verbose=0)
    assert loss == pytest.approx(300.0)


def test_terminate_on_nan_stops(xy):
    x, _ = xy
    model = nnfast.Sequential([nnfast.Input(shape=(4,)), layers.Dense(1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=1e30), loss="mse")
    targets = np.full((12, 1), 1e20)
    history = model.fit(x, targets, epochs=20, batch_size=4, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) < 20


def test_inf_targets_raise(xy):
    x, _ = xy
    model = small_model(loss="mse")
    targets = np.zeros((12, 3))
    targets[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"`y` contains inf at index \(4, 1\)"):
        model.fit(x, targets, verbose=0)
