"""Learning-rate schedules: Keras's formulas, validation and serialization.

Expected values are worked out by hand from the formulas in Keras's
documentation of each schedule.
"""

import math

import numpy as np
import pytest

import nnfast
from nnfast import layers, optimizers
from nnfast.optimizers import schedules


@pytest.mark.parametrize("step, expected", [
    (0, 0.1),
    (5, 0.1 * math.sqrt(0.5)),
    (10, 0.05),
    (20, 0.025),
])
def test_exponential_decay_smooth(step, expected):
    schedule = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert schedule(step) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step, expected", [
    (0, 0.1),
    (5, 0.1),
    (9, 0.1),
    (10, 0.05),
    (19, 0.05),
    (20, 0.025),
])
def test_exponential_decay_staircase(step, expected):
    schedule = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5,
                                          staircase=True)
    assert schedule(step) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step, expected", [
    (0, 1.0),
    (100, 1.0),
    (101, 0.5),
    (200, 0.5),
    (201, 0.1),
    (10**6, 0.1),
])
def test_piecewise_constant_boundaries(step, expected):
    schedule = schedules.PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
    assert schedule(step) == expected


@pytest.mark.parametrize("step, expected", [
    (0, 1.0),
    (25, 0.5 * (1.0 + math.cos(math.pi / 4))),
    (50, 0.5),
    (100, 0.0),
    (150, 0.0),
])
def test_cosine_decay_no_alpha(step, expected):
    schedule = schedules.CosineDecay(1.0, decay_steps=100)
    assert schedule(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("step, expected", [
    (0, 2.0),
    (50, 2.0 * (0.9 * 0.5 + 0.1)),
    (100, 0.2),
    (1000, 0.2),
])
def test_cosine_decay_alpha_floor(step, expected):
    schedule = schedules.CosineDecay(2.0, decay_steps=100, alpha=0.1)
    assert schedule(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("step, expected", [
    (0, 0.1),
    (1, 0.2),
    (3, 0.4),
    (4, 0.5),
    (4 + 50, 0.25),
    (4 + 100, 0.0),
    (500, 0.0),
])
def test_cosine_decay_with_warmup(step, expected):
    # Linear rise from 0.1 to 0.5 over 4 steps, then a cosine from 0.5 to 0.
    schedule = schedules.CosineDecay(0.1, decay_steps=100, warmup_target=0.5,
                                     warmup_steps=4)
    assert schedule(step) == pytest.approx(expected, abs=1e-12)


def test_cosine_decay_warmup_target_without_steps():
    schedule = schedules.CosineDecay(0.1, decay_steps=10, warmup_target=0.4)
    assert schedule(0) == pytest.approx(0.4)
    assert schedule(5) == pytest.approx(0.2)


@pytest.mark.parametrize("make, argument", [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
    (lambda: schedules.ExponentialDecay(0.1, -3, 0.5), "decay_steps"),
    (lambda: schedules.ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate"),
    (lambda: schedules.ExponentialDecay(0.1, 10, -0.5), "decay_rate"),
    (lambda: schedules.ExponentialDecay(float("nan"), 10, 0.5),
     "initial_learning_rate"),
    (lambda: schedules.CosineDecay(0.1, 0), "decay_steps"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=1.5), "alpha"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_steps=-1), "warmup_steps"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_target=-1.0), "warmup_target"),
    (lambda: schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5]), "values"),
    (lambda: schedules.PiecewiseConstantDecay([20, 10], [1.0, 0.5, 0.1]),
     "boundaries"),
    (lambda: schedules.PiecewiseConstantDecay([10], [1.0, -0.5]), "values"),
])
def test_schedule_rejects_bad_values(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("make, argument", [
    (lambda: schedules.ExponentialDecay(0.1, 2.5, 0.5), "decay_steps"),
    (lambda: schedules.ExponentialDecay("0.1", 10, 0.5), "initial_learning_rate"),
    (lambda: schedules.CosineDecay(0.1, True), "decay_steps"),
])
def test_schedule_rejects_bad_types(make, argument):
    with pytest.raises(TypeError, match=argument):
        make()


def test_base_schedule_is_abstract():
    with pytest.raises(NotImplementedError):
        schedules.LearningRateSchedule()(0)


@pytest.mark.parametrize("schedule", [
    schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True),
    schedules.PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1]),
    schedules.CosineDecay(0.1, 100, alpha=0.05, warmup_target=0.5, warmup_steps=7),
])
def test_serialize_roundtrip(schedule):
    config = schedules.serialize(schedule)
    assert config["class_name"] == type(schedule).__name__
    restored = schedules.deserialize(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 3, 150, 250):
        assert restored(step) == schedule(step)


@pytest.mark.parametrize("name", ["NoSuchSchedule", "os.system", ""])
def test_deserialize_unknown_name(name):
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        schedules.deserialize({"class_name": name, "config": {}})


def test_deserialize_rejects_non_dict():
    with pytest.raises(ValueError, match="class_name"):
        schedules.deserialize("ExponentialDecay")


def test_deserialize_custom_objects():
    class Halving(schedules.LearningRateSchedule):
        def __init__(self, rate):
            self.rate = rate

        def __call__(self, step):
            return self.rate / 2 ** step

        def get_config(self):
            return {"rate": self.rate}

    config = schedules.serialize(Halving(0.8))
    with pytest.raises(ValueError, match="Halving"):
        schedules.deserialize(config)
    restored = schedules.deserialize(config, custom_objects={"Halving": Halving})
    assert restored(2) == 0.2


def test_optimizer_config_roundtrip():
    schedule = schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    sgd = optimizers.SGD(learning_rate=schedule)
    config = optimizers.serialize(sgd)
    assert config["config"]["learning_rate"]["class_name"] == "ExponentialDecay"
    restored = optimizers.deserialize(config)
    assert isinstance(restored._learning_rate, schedules.ExponentialDecay)
    assert restored.learning_rate == pytest.approx(0.1)


def test_schedule_drives_sgd_steps():
    # One weight w and loss (w * 1 - 0)^2, so the gradient is 2w and each step
    # gives w <- w * (1 - 2 * lr). The rates are 0.1, 0.05, 0.025.
    model = nnfast.Sequential([nnfast.Input(shape=(1,)),
                               layers.Dense(1, use_bias=False)])
    schedule = schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model.compile(optimizer=optimizers.SGD(learning_rate=schedule), loss="mse")
    model.set_weights([np.array([[1.0]], dtype="float32")])
    x = np.ones((1, 1), dtype="float32")
    y = np.zeros((1, 1), dtype="float32")
    model.fit(x, y, batch_size=1, epochs=3, verbose=0, shuffle=False)
    expected = 1.0 * (1 - 0.2) * (1 - 0.1) * (1 - 0.05)
    assert model.get_weights()[0][0, 0] == pytest.approx(expected, rel=1e-6)
    assert model.optimizer.iterations == 3
    assert model.optimizer.learning_rate == pytest.approx(0.0125)
