"""Look up optimizers by name or config."""

from nnfast.optimizers.adagrad import Adagrad
from nnfast.optimizers.adam import Adam
from nnfast.optimizers.adamw import AdamW
from nnfast.optimizers.nadam import Nadam
from nnfast.optimizers.optimizer import Optimizer
from nnfast.optimizers.rmsprop import RMSprop
from nnfast.optimizers.sgd import SGD

_BY_NAME = {"adam": Adam, "sgd": SGD, "adamw": AdamW, "rmsprop": RMSprop,
            "adagrad": Adagrad, "nadam": Nadam}
_CLASSES = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier):
    """Return an Optimizer for a name, a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(
        f"Unknown optimizer {identifier!r}; expected one of {', '.join(_BY_NAME)} "
        "or an Optimizer instance"
    )


def serialize(optimizer):
    """Return a JSON-friendly dict describing ``optimizer``."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config):
    """Return the Optimizer described by a dict from :func:`serialize`."""
    name = config.get("class_name")
    if name not in _CLASSES:
        raise ValueError(f"Unknown optimizer class {name!r}")
    return _CLASSES[name].from_config(config.get("config", {}))
