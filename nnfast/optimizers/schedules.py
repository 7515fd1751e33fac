"""Learning-rate schedules, with Keras's names, arguments and formulas.

A schedule is a callable that maps the optimizer's step count
(``optimizer.iterations``, 0 before the first update) to a learning rate.
Pass one as ``learning_rate`` to any optimizer.
"""

import bisect
import math
import numbers


class LearningRateSchedule:
    """Base class of learning-rate schedules.

    Subclasses implement ``__call__(step)``, returning a float, and
    ``get_config()``, returning the constructor arguments as a dict.
    """

    def __call__(self, step):
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(step)"
        )

    def get_config(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_config()"
        )

    @classmethod
    def from_config(cls, config):
        """Return a schedule built from the dict that :meth:`get_config` returns."""
        return cls(**config)


def _check_real(owner, name, value, low=None, low_open=False, high=None):
    """Return ``value`` as a float after checking its type, finiteness and range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: `{name}` must be a float, got {name}={value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: `{name}` must be finite, got {name}={value}")
    if low is not None and (value < low or (low_open and value == low)):
        sign = ">" if low_open else ">="
        raise ValueError(f"{owner}: `{name}` must be {sign} {low}, got {name}={value}")
    if high is not None and value > high:
        raise ValueError(f"{owner}: `{name}` must be <= {high}, got {name}={value}")
    return value


def _check_int(owner, name, value, low):
    """Return ``value`` as an int after checking that it is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: `{name}` must be an int, got {name}={value!r}")
    if value < low:
        raise ValueError(f"{owner}: `{name}` must be >= {low}, got {name}={value}")
    return int(value)


def _check_step(owner, step):
    if isinstance(step, bool) or not isinstance(step, numbers.Real):
        raise TypeError(f"{owner}: the step must be a number, got {step!r}")
    return float(step)


class ExponentialDecay(LearningRateSchedule):
    """Decay the learning rate exponentially with the step.

    ``lr(step) = initial_learning_rate * decay_rate ** (step / decay_steps)``,
    where ``step / decay_steps`` is rounded down to an integer when
    ``staircase`` is True, so the rate changes only every ``decay_steps``.

    Args:
        initial_learning_rate: the rate at step 0, a float >= 0.
        decay_steps: the number of steps over which the rate is multiplied by
            ``decay_rate``, an int > 0.
        decay_rate: the multiplier per ``decay_steps``, a float >= 0.
        staircase: whether to decay in discrete intervals.
        name: an optional name, kept in the config.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate,
                 staircase=False, name="ExponentialDecay"):
        owner = "ExponentialDecay"
        self.initial_learning_rate = _check_real(
            owner, "initial_learning_rate", initial_learning_rate, low=0.0)
        self.decay_steps = _check_int(owner, "decay_steps", decay_steps, low=1)
        self.decay_rate = _check_real(owner, "decay_rate", decay_rate, low=0.0)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        step = _check_step("ExponentialDecay", step)
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant learning rate between step boundaries.

    With ``boundaries = [b0, b1, ...]`` and ``values = [v0, v1, ...]``, the rate
    is ``v0`` for ``step <= b0``, ``v1`` for ``b0 < step <= b1``, and so on,
    and ``values[-1]`` after the last boundary.

    Args:
        boundaries: strictly increasing step numbers.
        values: the rates, one more than ``boundaries``.
        name: an optional name, kept in the config.
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        owner = "PiecewiseConstantDecay"
        boundaries = list(boundaries)
        values = list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{owner}: `values` must have one more element than `boundaries`, "
                f"got {len(boundaries)} boundaries and {len(values)} values "
                f"(boundaries={boundaries}, values={values})"
            )
        boundaries = [_check_real(owner, "boundaries", b) for b in boundaries]
        for previous, current in zip(boundaries, boundaries[1:]):
            if current <= previous:
                raise ValueError(
                    f"{owner}: `boundaries` must be strictly increasing, got "
                    f"boundaries={boundaries}"
                )
        self.boundaries = boundaries
        self.values = [_check_real(owner, "values", v, low=0.0) for v in values]
        self.name = name

    def __call__(self, step):
        step = _check_step("PiecewiseConstantDecay", step)
        # bisect_left counts the boundaries strictly below the step, so a step
        # equal to a boundary still takes the value before it.
        return self.values[bisect.bisect_left(self.boundaries, step)]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Decay the learning rate along a cosine, after an optional linear warmup.

    Without warmup (``warmup_target`` is None), the rate at step ``s`` is
    ``initial_learning_rate * ((1 - alpha) * c + alpha)`` with
    ``c = 0.5 * (1 + cos(pi * min(s, decay_steps) / decay_steps))``, so it falls
    from ``initial_learning_rate`` to ``alpha * initial_learning_rate`` and
    stays there.

    With ``warmup_target``, the rate first rises linearly from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``, then
    decays as above from ``warmup_target`` over the next ``decay_steps`` steps.

    Args:
        initial_learning_rate: the rate at step 0, a float >= 0.
        decay_steps: the number of steps to decay over, an int > 0.
        alpha: the final rate as a fraction of the rate decayed from, in [0, 1].
        warmup_target: the rate reached at the end of warmup, or None for no
            warmup.
        warmup_steps: the number of warmup steps, an int >= 0.
        name: an optional name, kept in the config.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0,
                 warmup_target=None, warmup_steps=0, name="CosineDecay"):
        owner = "CosineDecay"
        self.initial_learning_rate = _check_real(
            owner, "initial_learning_rate", initial_learning_rate, low=0.0)
        self.decay_steps = _check_int(owner, "decay_steps", decay_steps, low=1)
        self.alpha = _check_real(owner, "alpha", alpha, low=0.0, high=1.0)
        if warmup_target is not None:
            warmup_target = _check_real(owner, "warmup_target", warmup_target,
                                        low=0.0)
        self.warmup_target = warmup_target
        self.warmup_steps = _check_int(owner, "warmup_steps", warmup_steps, low=0)
        self.name = name

    def _decay(self, step, decay_from):
        fraction = step / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = _check_step("CosineDecay", step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            rise = self.warmup_target - self.initial_learning_rate
            return self.initial_learning_rate + rise * step / self.warmup_steps
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }


_CLASSES = {
    cls.__name__: cls
    for cls in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay)
}


def serialize(schedule):
    """Return a JSON-friendly dict ``{"class_name", "config"}`` for ``schedule``."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(
            "serialize: expected a LearningRateSchedule, got "
            f"{type(schedule).__name__}"
        )
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config, custom_objects=None):
    """Return the schedule described by a dict from :func:`serialize`.

    The class is looked up by name among nnfast's schedules and in
    ``custom_objects``, a dict from class name to class. No module is
    imported, so a config cannot load code.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            "deserialize: expected a dict with 'class_name' and 'config', got "
            f"{config!r}"
        )
    name = config["class_name"]
    classes = dict(_CLASSES)
    if custom_objects:
        classes.update(custom_objects)
    cls = classes.get(name)
    if cls is None:
        raise ValueError(
            f"deserialize: unknown learning-rate schedule {name!r}; expected one of "
            f"{', '.join(sorted(classes))}, or pass the class in `custom_objects`"
        )
    return cls.from_config(dict(config.get("config", {})))


__all__ = [
    "CosineDecay",
    "ExponentialDecay",
    "LearningRateSchedule",
    "PiecewiseConstantDecay",
    "deserialize",
    "serialize",
]
