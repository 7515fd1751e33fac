"""Time ``import nnfast`` against ``import torch`` in fresh interpreters.

Usage::

    python benchmarks/import_time.py [--repeats 9] [--quick]

Each import runs in a new Python process, which times the import statement
alone with ``time.perf_counter`` (interpreter start-up is not counted). The
modules alternate, one process each, after one untimed warm-up import per
module that brings their files into the page cache. ``import numpy`` is
timed too, because nnfast imports it and so does PyTorch.

pip compiles every module it installs, so an installed PyTorch imports
from ``.pyc`` files. A source checkout of nnfast has none when
``PYTHONDONTWRITEBYTECODE`` is set, and then every import compiles about 50
modules again (about 55 ms on the project's VM). So the script compiles
nnfast's modules with :mod:`compileall` before timing, and both packages are
timed as pip installs them.
"""

import sys

import _common

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import compileall  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402

MODULES = ("nnfast", "torch", "numpy")
TARGET = 0.1

CHILD_CODE = (
    "import time\n"
    "start = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - start)\n"
)


def time_import(module):
    """Return the seconds a fresh interpreter takes to import ``module``."""
    result = _common.run_json_child(["-c", CHILD_CODE.format(module=module)],
                                    timeout=300)
    return float(result)


def write_bytecode(package):
    """Compile ``package``'s modules to ``.pyc`` files, as pip does."""
    spec = importlib.util.find_spec(package)
    directory = os.path.dirname(spec.origin)
    if not compileall.compile_dir(directory, quiet=1):
        raise RuntimeError(
            f"failed to write bytecode for the modules in {directory}; "
            "make the directory writable and run the benchmark again"
        )
    print(f"{package}: bytecode written under {directory}")


def main():
    args = parse_args()
    _common.print_header("Import time: `import MODULE` in a fresh interpreter")
    modules = [m for m in MODULES if _common.is_installed(m)]
    write_bytecode("nnfast")
    for missing in sorted(set(MODULES) - set(modules)):
        print(f"{missing} not installed, not measured.")
    seconds = {module: [] for module in modules}
    load = _common.OtherLoad()
    for module in modules:
        time_import(module)
    for repeat in range(args.repeats):
        _common.wait_for_quiet(args)
        order = modules if repeat % 2 == 0 else modules[::-1]
        for module in order:
            with load.measuring():
                seconds[module].append(time_import(module))

    print(f"Median of {args.repeats} fresh processes (milliseconds)")
    print(f"  {'module':8} {'median':>8} {'min':>8} {'max':>8}")
    medians = {}
    for module, values in seconds.items():
        medians[module] = _common.median(values)
        print(f"  {module:8} {medians[module] * 1e3:8.1f} {min(values) * 1e3:8.1f} "
              f"{max(values) * 1e3:8.1f}")
    _common.print_other_load(load)
    print()
    goal = f"import nnfast <= {TARGET}x import torch"
    if "torch" in medians:
        ratio = medians["nnfast"] / medians["torch"]
        target = _common.Target(goal, f"{ratio:.3f}x", ratio <= TARGET)
    else:
        target = _common.Target(goal, "PyTorch not installed", None)
    _common.print_targets([target])


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9,
                        help="timed imports per module, each in a new process")
    parser.add_argument("--quick", action="store_true",
                        help="3 repeats and no wait for a quiet machine, to "
                             "check that the script works")
    _common.add_quiet_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats = 3
        args.max_wait = 0.0
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


if __name__ == "__main__":
    sys.exit(main())
