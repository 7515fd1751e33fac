"""Reading and setting the optimizer's learning rate from a callback."""

from nnfast.optimizers.schedules import LearningRateSchedule


def current_learning_rate(model):
    """Return the learning rate that the model's optimizer uses for its next step."""
    return float(model.optimizer.learning_rate)


def check_settable(model, owner):
    """Raise TypeError when the optimizer's learning rate comes from a schedule.

    Setting a float would silently replace the schedule, so, as in Keras, a
    callback that changes the rate needs an optimizer built with a float rate.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise RuntimeError(
            f"{owner}: the model has no optimizer; call model.compile() first"
        )
    # The optimizer keeps the schedule itself in _learning_rate; its public
    # property returns only the schedule's current value.
    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, LearningRateSchedule) or callable(rate):
        raise TypeError(
            f"{owner}: the optimizer's learning rate is the schedule "
            f"{type(rate).__name__}, which this callback cannot change; build the "
            "optimizer with a float learning_rate to use this callback"
        )


def set_learning_rate(model, value):
    """Set the learning rate of the model's optimizer to ``value``."""
    model.optimizer.learning_rate = value
