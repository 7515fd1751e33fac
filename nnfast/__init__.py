"""nnfast: Keras-style neural networks with compiled CPU kernels."""

__version__ = "0.1.0"

from nnfast import _runtime
from nnfast._threads import get_num_threads, set_num_threads
from nnfast.backend import get_backend, set_backend


def openmp_enabled():
    """Return True when the kernels were compiled with OpenMP."""
    return _runtime.openmp_enabled()


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
        f"simd: {_runtime.simd_name()}",
        f"backend: {get_backend()}",
    ]
    print("\n".join(lines), file=file if file is not None else sys.stdout)
