"""Build nnfast's compiled kernels.

Every ``nnfast/_*.pyx`` module becomes an extension module compiled together
with the C sources in ``csrc/``. Build switches, read from the environment:

``NNFAST_NATIVE=1``
    Add ``-march=native``. The default build targets any x86-64 CPU and picks
    SIMD kernels at run time, so only set this for a machine-local build.
``NNFAST_BOUNDSCHECK=1``
    Turn Cython's bounds and wraparound checks back on, for debugging.
``NNFAST_NO_OPENMP=1``
    Build serial kernels even when the compiler supports OpenMP.
"""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0 && omp_get_max_threads() > 0);
    return 0;
}
"""


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _compiler_command():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return cc.split()


def _openmp_flags():
    """Return the compile and link flags for OpenMP, or None when it is missing.

    Compiles and runs a small test program, because a flag the compiler accepts
    may still fail at link or run time (Apple clang without libomp).
    """
    if _env_flag("NNFAST_NO_OPENMP"):
        return None
    if sys.platform == "win32":
        return ["/openmp"], []
    flags = ["-fopenmp"]
    tmp = tempfile.mkdtemp(prefix="nnfast-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        cmd = _compiler_command() + flags + [src, "-o", exe]
        build = subprocess.run(cmd, capture_output=True, text=True)
        if build.returncode != 0:
            return None
        run = subprocess.run([exe], capture_output=True, text=True)
        if run.returncode != 0 or run.stdout.strip() != "1":
            return None
        return flags, flags
    except OSError:
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _warn_no_openmp():
    message = """
        ***************************************************************
        nnfast: the C compiler does not support OpenMP, so the kernels
        will be built single-threaded. nnfast still works, but it uses
        one core. On macOS, install libomp (for example with Homebrew)
        and set CC to a compiler that can use it, then rebuild.
        ***************************************************************
    """
    print(textwrap.dedent(message), file=sys.stderr)


def _extensions():
    compile_args = ["-O3", "-std=c11", "-fno-strict-aliasing"]
    link_args = []
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if sys.platform == "win32":
        compile_args = ["/O2"]
    if _env_flag("NNFAST_NATIVE"):
        compile_args.append("-march=native")

    omp = _openmp_flags()
    if omp is None:
        _warn_no_openmp()
    else:
        compile_args += omp[0]
        link_args += omp[1]

    c_sources = sorted(glob.glob(os.path.join("csrc", "*.c")))
    extensions = []
    for pyx in sorted(glob.glob(os.path.join("nnfast", "_*.pyx"))):
        name = "nnfast." + os.path.splitext(os.path.basename(pyx))[0]
        extensions.append(
            Extension(
                name,
                sources=[pyx] + c_sources,
                include_dirs=["csrc", np.get_include()],
                define_macros=macros,
                extra_compile_args=compile_args,
                extra_link_args=link_args,
            )
        )

    checks = _env_flag("NNFAST_BOUNDSCHECK")
    directives = {
        "language_level": 3,
        "boundscheck": checks,
        "wraparound": checks,
        "cdivision": True,
        "initializedcheck": checks,
        "embedsignature": True,
    }
    return cythonize(
        extensions,
        compiler_directives=directives,
        nthreads=os.cpu_count() or 1,
        # Cython does not track directives, so C files generated with other
        # checks must be regenerated.
        force=checks,
    )


setup(ext_modules=_extensions())
