"""Argument checks shared by the callbacks."""

import math
import numbers


def check_nonnegative_int(owner, name, value):
    """Return ``value`` as an int after checking that it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: `{name}` must be an int >= 0, got {name}={value!r}")
    if value < 0:
        raise ValueError(f"{owner}: `{name}` must be an int >= 0, got {name}={value}")
    return int(value)


def check_real(owner, name, value, low=None):
    """Return ``value`` as a finite float, checking it is >= ``low`` if given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: `{name}` must be a float, got {name}={value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: `{name}` must be finite, got {name}={value}")
    if low is not None and value < low:
        raise ValueError(f"{owner}: `{name}` must be >= {low}, got {name}={value}")
    return value


def check_verbose(owner, verbose):
    """Return ``verbose`` as an int >= 0; True counts as 1 and False as 0."""
    if isinstance(verbose, bool):
        return int(verbose)
    return check_nonnegative_int(owner, "verbose", verbose)
