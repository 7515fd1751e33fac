"""Global settings: the default float type of new layers."""

import numpy as np

_FLOATX = "float32"
_ALLOWED = ("float32", "float64")


def floatx():
    """Return the default float type of new layers, as a string."""
    return _FLOATX


def set_floatx(value):
    """Set the default float type of new layers: ``"float32"`` or ``"float64"``."""
    global _FLOATX
    name = np.dtype(value).name if not isinstance(value, str) else value
    if name not in _ALLOWED:
        raise ValueError(
            f"set_floatx: `value` must be one of {_ALLOWED}, got {value!r}"
        )
    _FLOATX = name


def standardize_dtype(dtype):
    """Return the float dtype name for ``dtype``, or floatx() when it is None."""
    if dtype is None:
        return _FLOATX
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(
            f"`dtype` must be 'float32' or 'float64', got {dtype!r}"
        ) from None
    if name not in _ALLOWED:
        raise TypeError(f"`dtype` must be 'float32' or 'float64', got {dtype!r}")
    return name
