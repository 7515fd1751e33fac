"""The lean training path for Dense stacks against the general layer-by-layer path."""

import numpy as np
import pytest

import nnfast
from nnfast import layers
from nnfast.models import model as model_module


def make_model(activations, dtype, seed=3, use_bias=True, flatten=False):
    nnfast.utils.set_random_seed(seed)
    stack = [nnfast.Input(shape=(4, 5) if flatten else (20,), dtype=dtype)]
    if flatten:
        stack.append(layers.Flatten())
    for i, activation in enumerate(activations):
        stack.append(layers.Dense(7 if i < len(activations) - 1 else 4,
                                  activation=activation, use_bias=use_bias, dtype=dtype))
    return nnfast.Sequential(stack)


def train(lean, activations, dtype, loss, monkeypatch, labels_dtype=np.int64, **kwargs):
    monkeypatch.setattr(model_module, "_LEAN_TRAINING", lean)
    model = make_model(activations, dtype, **{k: v for k, v in kwargs.items()
                                              if k in ("use_bias", "flatten")})
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(203, 4, 5) if kwargs.get("flatten") else (203, 20)).astype(dtype)
    y = rng.integers(0, 4, size=203).astype(labels_dtype)
    history = model.fit(x, y, epochs=2, batch_size=kwargs.get("batch_size", 16), verbose=0)
    return model, history


def lean_is_used(model):
    return model._train_chain is not None


CASES = [
    (["relu", "linear"], nnfast.losses.SparseCategoricalCrossentropy(from_logits=True)),
    (["tanh", "sigmoid", "softmax"], "sparse_categorical_crossentropy"),
    (["relu", "softmax"], "sparse_categorical_crossentropy"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activations,loss", CASES, ids=["logits", "deep_softmax", "softmax"])
def test_lean_path_matches_general_path(activations, loss, dtype, monkeypatch):
    lean, lean_history = train(True, activations, dtype, loss, monkeypatch)
    general, general_history = train(False, activations, dtype, loss, monkeypatch)
    assert lean_is_used(lean)
    assert not lean_is_used(general)
    for got, want in zip(lean.get_weights(), general.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert lean_history.history == general_history.history


@pytest.mark.parametrize("batch_size", [1, 7])
def test_lean_path_small_batches_and_flatten(batch_size, monkeypatch):
    loss = nnfast.losses.SparseCategoricalCrossentropy(from_logits=True)
    kwargs = {"flatten": True, "use_bias": False, "batch_size": batch_size}
    lean, _ = train(True, ["relu", "linear"], "float32", loss, monkeypatch,
                    labels_dtype=np.uint8, **kwargs)
    general, _ = train(False, ["relu", "linear"], "float32", loss, monkeypatch,
                       labels_dtype=np.uint8, **kwargs)
    assert lean_is_used(lean)
    for got, want in zip(lean.get_weights(), general.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_lean_path_leaves_bad_labels_to_general_checks():
    model = make_model(["relu", "linear"], "float32")
    model.compile(optimizer="adam",
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    x = np.zeros((4, 20), dtype="float32")
    with pytest.raises(ValueError, match="4"):
        model.train_on_batch(x, np.array([0, 1, 2, 4]))
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_lean_path_follows_a_changed_activation(monkeypatch):
    loss = nnfast.losses.SparseCategoricalCrossentropy(from_logits=True)
    results = []
    for lean in (True, False):
        monkeypatch.setattr(model_module, "_LEAN_TRAINING", lean)
        model = make_model(["relu", "linear"], "float64")
        model.compile(optimizer="sgd", loss=loss)
        x = np.random.default_rng(1).normal(size=(8, 20))
        y = np.arange(8) % 4
        model.train_on_batch(x, y)
        model.layers[0].activation = "tanh"
        model.train_on_batch(x, y)
        results.append(model.get_weights())
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
