"""nnfast: Keras-style neural networks with compiled CPU kernels."""

__version__ = "0.1.0"

import os as _os
import warnings as _warnings

from nnfast import _runtime

# The C kernels read NNFAST_SIMD when first used, and only these values lower
# the SIMD level. Any other value is ignored, so warn about it.
_SIMD_CAPS = ("generic", "avx2")
if _os.environ.get("NNFAST_SIMD", "") not in _SIMD_CAPS + ("",):
    _warnings.warn(
        f"NNFAST_SIMD={_os.environ['NNFAST_SIMD']!r} is not one of "
        f"{', '.join(_SIMD_CAPS)} and is ignored; unset it, or set one of those "
        f"values before importing nnfast",
        RuntimeWarning,
        stacklevel=2,
    )
# The C kernels read NNFAST_PIN_THREADS once: "0" stops them binding OpenMP
# workers to CPUs, and any other value leaves binding on.
if _os.environ.get("NNFAST_PIN_THREADS", "") not in ("0", "1", ""):
    _warnings.warn(
        f"NNFAST_PIN_THREADS={_os.environ['NNFAST_PIN_THREADS']!r} is not 0 or 1, "
        f"so worker binding stays on; set 0 to turn it off",
        RuntimeWarning,
        stacklevel=2,
    )
# NNFAST_FMA512 overrides the detected 512-bit FMA rate, which sets the
# GEMM's choice between its 256-bit and 512-bit tiles.
if _os.environ.get("NNFAST_FMA512", "") not in ("full", "half", ""):
    _warnings.warn(
        f"NNFAST_FMA512={_os.environ['NNFAST_FMA512']!r} is not full or half and is "
        f"ignored; unset it to use the detected rate",
        RuntimeWarning,
        stacklevel=2,
    )
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
