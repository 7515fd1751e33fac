"""Initializers: Keras's formulas for limits and standard deviations."""

import numpy as np
import pytest

import nnfast
from nnfast import initializers

SHAPE = (400, 300)
FAN_IN, FAN_OUT = SHAPE


def draw(name, shape=SHAPE, **kwargs):
    nnfast.utils.set_random_seed(0)
    init = initializers.get(name) if not kwargs else type(initializers.get(name))(
        **kwargs)
    return init(shape, "float64")


def test_constant_kinds():
    assert np.all(draw("zeros") == 0)
    assert np.all(draw("ones") == 1)
    assert np.all(initializers.Constant(2.5)((3, 2)) == 2.5)


@pytest.mark.parametrize("name, limit", [
    ("glorot_uniform", np.sqrt(6.0 / (FAN_IN + FAN_OUT))),
    ("he_uniform", np.sqrt(6.0 / FAN_IN)),
    ("lecun_uniform", np.sqrt(3.0 / FAN_IN)),
])
def test_uniform_limits(name, limit):
    values = draw(name)
    assert np.abs(values).max() <= limit
    assert np.abs(values).max() > 0.99 * limit
    # U[-a, a] has standard deviation a / sqrt(3).
    assert values.std() == pytest.approx(limit / np.sqrt(3.0), rel=0.02)


@pytest.mark.parametrize("name, stddev", [
    ("glorot_normal", np.sqrt(2.0 / (FAN_IN + FAN_OUT))),
    ("he_normal", np.sqrt(2.0 / FAN_IN)),
    ("lecun_normal", np.sqrt(1.0 / FAN_IN)),
])
def test_truncated_normal_stddev(name, stddev):
    values = draw(name)
    # The draw is truncated at two of its own standard deviations, which Keras
    # sets to stddev / 0.8796..., so the kept values have stddev `stddev`.
    assert values.std() == pytest.approx(stddev, rel=0.02)
    assert np.abs(values).max() <= 2.0 * stddev / 0.87962566103423978 + 1e-12


def test_random_defaults():
    normal = draw("random_normal")
    assert normal.std() == pytest.approx(0.05, rel=0.02)
    uniform = draw("random_uniform")
    assert uniform.min() >= -0.05
    assert uniform.max() < 0.05
    truncated = draw("truncated_normal")
    assert np.abs(truncated).max() <= 0.1


def test_orthogonal_columns():
    values = draw("orthogonal", shape=(50, 20))
    np.testing.assert_allclose(values.T @ values, np.eye(20), atol=1e-10)
    wide = draw("orthogonal", shape=(20, 50))
    np.testing.assert_allclose(wide @ wide.T, np.eye(20), atol=1e-10)


def test_seeded_initializer_repeats():
    a = initializers.GlorotUniform(seed=3)((5, 4))
    b = initializers.GlorotUniform(seed=3)((5, 4))
    np.testing.assert_array_equal(a, b)


def test_conv_kernel_fans():
    # A 3x3 kernel from 8 to 16 channels has fans 72 and 144.
    values = initializers.HeUniform(seed=0)((3, 3, 8, 16), "float64")
    assert np.abs(values).max() <= np.sqrt(6.0 / 72)


def test_unknown_initializer():
    with pytest.raises(ValueError, match="Unknown initializer"):
        initializers.get("glorot_wrong")


def test_serialize_roundtrip():
    init = initializers.RandomNormal(mean=1.0, stddev=0.5, seed=2)
    again = initializers.get(initializers.serialize(init))
    assert isinstance(again, initializers.RandomNormal)
    assert again.get_config() == init.get_config()


def test_dense_uses_initializers():
    layer = nnfast.layers.Dense(4, kernel_initializer="ones", bias_initializer=
                                initializers.Constant(0.5))
    layer._ensure_built((3,))
    assert np.all(layer.kernel == 1)
    assert np.all(layer.bias == 0.5)
