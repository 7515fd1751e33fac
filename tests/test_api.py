"""Public names, configuration and Keras defaults."""

import io

import pytest

import nnfast


def test_keras_names_exist():
    assert nnfast.layers.Input is nnfast.Input
    for name in ("Dense", "Flatten", "Activation", "Dropout", "InputLayer"):
        assert hasattr(nnfast.layers, name)
    assert hasattr(nnfast.losses, "SparseCategoricalCrossentropy")
    assert hasattr(nnfast.losses, "CategoricalCrossentropy")
    assert hasattr(nnfast.losses, "MeanSquaredError")
    assert hasattr(nnfast.optimizers, "Adam")
    assert hasattr(nnfast.optimizers, "SGD")
    assert hasattr(nnfast.metrics, "SparseCategoricalAccuracy")
    assert nnfast.models.Sequential is nnfast.Sequential
    assert hasattr(nnfast.datasets.fashion_mnist, "load_data")
    assert hasattr(nnfast.utils, "set_random_seed")
    assert hasattr(nnfast.callbacks, "History")


def test_adam_defaults():
    adam = nnfast.optimizers.get("adam")
    assert adam.learning_rate == 0.001
    assert adam.beta_1 == 0.9
    assert adam.beta_2 == 0.999
    assert adam.epsilon == 1e-7


def test_show_config_fields():
    buffer = io.StringIO()
    nnfast.show_config(file=buffer)
    text = buffer.getvalue()
    for field in ("nnfast 0.1.0", "compiler:", "openmp:", "threads:", "simd:"):
        assert field in text


def test_set_num_threads_roundtrip():
    before = nnfast.get_num_threads()
    try:
        nnfast.set_num_threads(1)
        assert nnfast.get_num_threads() == 1
    finally:
        nnfast.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_rejects_values(bad):
    with pytest.raises(ValueError, match="positive int"):
        nnfast.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", None, True])
def test_set_num_threads_rejects_types(bad):
    with pytest.raises(TypeError, match="positive int"):
        nnfast.set_num_threads(bad)


def test_backend_switch():
    assert nnfast.get_backend() == "compiled"
    nnfast.set_backend("reference")
    try:
        assert nnfast.get_backend() == "reference"
    finally:
        nnfast.set_backend("compiled")
    with pytest.raises(ValueError, match="unknown backend"):
        nnfast.set_backend("gpu")


def test_set_floatx_rejects_ints():
    with pytest.raises(ValueError, match="float32"):
        nnfast.config.set_floatx("int32")
    assert nnfast.config.floatx() == "float32"


def test_openmp_enabled_here():
    # The build on Linux with GCC always finds OpenMP; a serial build here
    # would mean the flags were lost.
    assert nnfast.openmp_enabled()
