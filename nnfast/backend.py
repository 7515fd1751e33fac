"""The switch between compiled kernels and the NumPy reference path."""

import importlib

BACKENDS = ("compiled", "reference")

_name = "compiled"
_module = None


def set_backend(name):
    """Select the kernels that models use: ``"compiled"`` or ``"reference"``.

    The reference path computes every kernel with plain NumPy formulas. It is
    slow, and exists to check the compiled kernels and to debug models.
    """
    global _name, _module
    if name not in BACKENDS:
        raise ValueError(
            f"set_backend: unknown backend {name!r}; expected one of {BACKENDS}"
        )
    _name = name
    _module = None


def get_backend():
    """Return the name of the selected backend."""
    return _name


def kernels():
    """Return the module of kernels for the selected backend."""
    global _module
    if _module is None:
        if _name == "compiled":
            _module = importlib.import_module("nnfast._compiled")
        else:
            _module = importlib.import_module("nnfast._reference")
    return _module
