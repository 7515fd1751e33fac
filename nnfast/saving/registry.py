"""The classes that loading may instantiate, looked up by name.

A saved file names classes as strings. Loading turns a name into a class only
through this registry: nnfast's own public layers, models, losses, optimizers
and metrics, plus user classes registered with :func:`register_serializable`
or passed in ``custom_objects``. A name found nowhere raises FormatError, and
no name ever causes an import.
"""

import inspect

# "package>name" -> class, for user classes.
_REGISTERED = {}
# class -> "package>name", the reverse of _REGISTERED.
_NAMES_BY_CLASS = {}


def register_serializable(package="Custom", name=None):
    """Return a class decorator that registers the class for loading.

    The class is saved under ``"package>name"``, where ``name`` defaults to
    the class name. It must define ``get_config``. Its ``from_config``
    (inherited from nnfast's base classes) calls the class with the config as
    keyword arguments.

    Example:
        >>> @nnfast.saving.register_serializable(package="my_project")
        ... class Scale(nnfast.layers.Layer):
        ...     ...
    """
    if not isinstance(package, str) or not package or ">" in package:
        raise ValueError(
            "register_serializable: `package` must be a non-empty string without "
            f"'>', got package={package!r}"
        )
    if name is not None and (not isinstance(name, str) or not name or ">" in name):
        raise ValueError(
            "register_serializable: `name` must be None or a non-empty string "
            f"without '>', got name={name!r}"
        )

    def decorator(cls):
        if not inspect.isclass(cls):
            raise TypeError(
                "register_serializable: only classes can be registered, got "
                f"{cls!r}"
            )
        if not hasattr(cls, "get_config"):
            raise TypeError(
                f"register_serializable: class {cls.__qualname__} must define "
                "get_config() to be saved"
            )
        key = f"{package}>{name or cls.__name__}"
        existing = _REGISTERED.get(key)
        if existing is not None and existing is not cls and not _same_definition(
                existing, cls):
            raise ValueError(
                f"register_serializable: {key!r} is already registered to "
                f"{existing.__module__}.{existing.__qualname__}. Pick another "
                "`package` or `name`"
            )
        if existing is not None:
            _NAMES_BY_CLASS.pop(existing, None)
        _REGISTERED[key] = cls
        _NAMES_BY_CLASS[cls] = key
        return cls

    return decorator


def _same_definition(old, new):
    # Re-running a class definition (a reloaded module or notebook cell)
    # replaces the earlier registration instead of failing.
    return old.__module__ == new.__module__ and old.__qualname__ == new.__qualname__


def get_registered_name(cls):
    """Return the name ``cls`` is saved under: ``"package>name"`` or its class name."""
    return _NAMES_BY_CLASS.get(cls, cls.__name__)


def get_registered_object(name, custom_objects=None):
    """Return the class registered as ``name``, or None.

    ``custom_objects`` is searched first, then the classes registered with
    :func:`register_serializable`.
    """
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    return _REGISTERED.get(name)


def _public_subclasses(module, base):
    return {
        name: value for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, base) and value is not base
        and not name.startswith("_")
    }


def builtin_classes(kind):
    """Return {class name: class} of nnfast's own classes of ``kind``.

    ``kind`` is "layer", "model", "loss", "optimizer" or "metric". The tables
    are read from the public package namespaces on each call, so classes that
    those packages add later are found without a change here.
    """
    from nnfast import layers, losses, metrics, models, optimizers

    module, base = {
        "layer": (layers, layers.Layer),
        "model": (models, models.Model),
        "loss": (losses, losses.Loss),
        "optimizer": (optimizers, optimizers.Optimizer),
        "metric": (metrics, metrics.Metric),
    }[kind]
    return _public_subclasses(module, base)


def base_class(kind):
    """Return the class that every class of ``kind`` must derive from."""
    from nnfast import layers, losses, metrics, models, optimizers

    return {
        "layer": layers.Layer,
        "model": models.Model,
        "loss": losses.Loss,
        "optimizer": optimizers.Optimizer,
        "metric": metrics.Metric,
    }[kind]


def resolve_class(kind, class_name, registered_name=None, custom_objects=None):
    """Return the class for a saved ``class_name`` of ``kind``.

    Looks in ``custom_objects`` (under the registered name, then the class
    name), among registered classes, among nnfast's own classes, and finally
    among registered classes whose name part equals ``class_name``. Raises
    LookupError when nothing matches or when the match is not a ``kind``.
    """
    cls = None
    for key in (registered_name, class_name):
        if cls is None and key is not None and custom_objects and key in custom_objects:
            cls = custom_objects[key]
    if cls is None and registered_name is not None:
        cls = _REGISTERED.get(registered_name)
    if cls is None:
        cls = builtin_classes(kind).get(class_name)
    if cls is None:
        matches = [registered for key, registered in _REGISTERED.items()
                   if key.split(">", 1)[1] == class_name]
        if len(matches) > 1:
            raise LookupError(
                f"{kind} class name {class_name!r} matches {len(matches)} "
                "registered classes. Pass the one to use in custom_objects"
            )
        if matches:
            cls = matches[0]
    if cls is None:
        raise LookupError(
            f"unknown {kind} class {class_name!r}. nnfast has "
            f"{', '.join(sorted(builtin_classes(kind)))}. Register your own class "
            "with @nnfast.saving.register_serializable or pass it in "
            "custom_objects"
        )
    base = base_class(kind)
    if not inspect.isclass(cls) or not issubclass(cls, base):
        raise LookupError(
            f"{class_name!r} resolves to {cls!r}, which is not a subclass of "
            f"{base.__name__}"
        )
    return cls
