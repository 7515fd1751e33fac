"""nnfast: Keras-style neural networks with compiled CPU kernels."""

__version__ = "0.1.0"

import os as _os
import warnings as _warnings

from nnfast import _runtime


def _check_setting(name, allowed, meaning):
    """Warn when the environment sets name to a value outside allowed.

    The C kernels read these variables once, when first used, and treat an
    unknown value as unset. ``meaning`` is what that does.
    """
    value = _os.environ.get(name, "")
    if value not in allowed + ("",):
        _warnings.warn(
            f"{name}={value!r} is not one of {', '.join(allowed)}, so {meaning}. "
            f"Set one of those values before importing nnfast",
            RuntimeWarning,
            stacklevel=3,
        )


# NNFAST_SIMD lowers the SIMD level, NNFAST_PIN_THREADS=0 stops the binding
# of OpenMP workers to CPUs, and NNFAST_FMA512 overrides the 512-bit FMA
# rate that sets the GEMM's choice between 256-bit and 512-bit tiles.
_check_setting("NNFAST_SIMD", ("generic", "avx2", "avx512"), "it is ignored")
_check_setting("NNFAST_PIN_THREADS", ("0", "1"), "worker binding stays on")
_check_setting("NNFAST_FMA512", ("full", "half"), "the detected rate is used")
from nnfast._threads import get_num_threads, set_num_threads
from nnfast.backend import get_backend, set_backend
from nnfast import (
    activations,
    callbacks,
    config,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    utils,
)
from nnfast.layers import Input
from nnfast.models import Model, Sequential


def __getattr__(name):
    # The data loaders are imported on first use, which keeps `import nnfast`
    # fast.
    if name in ("datasets", "data", "saving"):
        import importlib

        return importlib.import_module(f"nnfast.{name}")
    raise AttributeError(f"module 'nnfast' has no attribute {name!r}")


def openmp_enabled():
    """Return True when the kernels were compiled with OpenMP."""
    return _runtime.openmp_enabled()


def _simd_description():
    name = _runtime.simd_name()
    if name == "avx512":
        units = "two 512-bit FMAs" if _runtime.fma512_full() else "one 512-bit FMA"
        name += f" ({units} per cycle)"
    return name


def show_config(file=None):
    """Print the version, build and run-time settings of nnfast."""
    import platform
    import sys
    import sysconfig

    import numpy as np

    lines = [
        f"nnfast {__version__}",
        f"python {platform.python_version()} ({sys.executable})",
        f"numpy {np.__version__}",
        f"compiler: {sysconfig.get_config_var('CC') or 'unknown'}",
        f"openmp: {'enabled' if openmp_enabled() else 'disabled'}",
        f"threads: {get_num_threads()}",
        f"simd: {_simd_description()}",
        f"worker binding: {'on' if _runtime.binds_workers() else 'off'}",
        f"backend: {get_backend()}",
    ]
    print("\n".join(lines), file=file if file is not None else sys.stdout)


__all__ = [
    "Input",
    "Model",
    "Sequential",
    "activations",
    "callbacks",
    "config",
    "datasets",
    "get_backend",
    "get_num_threads",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "openmp_enabled",
    "optimizers",
    "set_backend",
    "set_num_threads",
    "show_config",
    "utils",
]
