"""Helpers shared by the benchmark scripts: environment, timing and versions.

A script imports this module and calls :func:`reexec_without_openblas_overrides`
before it imports NumPy. Some machines set OPENBLAS_CORETYPE or
OPENBLAS_L2_SIZE, which make OpenBLAS (behind NumPy, and behind PyTorch when
it uses OpenBLAS) fall back to an older, slower kernel. The benchmarks run
without both, so that every library gets its best kernel for the CPU, and
print the kernel that threadpoolctl reports.

Nothing here imports NumPy at module level.
"""

import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TENSORFLOW_ABSENT = "TensorFlow/Keras not installed, not measured"


# Environment ----------------------------------------------------------------


def reexec_without_openblas_overrides():
    """Re-execute the running script without the OpenBLAS overrides, if set.

    Call it before NumPy is imported: OpenBLAS reads both variables when it
    loads. It also puts the repository root on ``sys.path`` so that the
    scripts find nnfast without an install.
    """
    if any(name in os.environ for name in OPENBLAS_OVERRIDES):
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


def child_environment():
    """Return the environment for a child process of a benchmark.

    It is this process's environment (already free of the OpenBLAS
    overrides) with the repository root first on PYTHONPATH.
    """
    env = dict(os.environ)
    paths = [REPO_ROOT]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_json_child(argv, timeout):
    """Run ``python argv...`` and return the JSON object on its last stdout line.

    Raises RuntimeError with the child's stderr when it fails.
    """
    command = [sys.executable] + list(argv)
    completed = subprocess.run(command, capture_output=True, text=True,
                               env=child_environment(), timeout=timeout)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark child failed with exit status {completed.returncode}: "
            f"{' '.join(command)}\n{completed.stderr.strip()}"
        )
    return json.loads(lines[-1])


def is_installed(module_name):
    """Return True when ``module_name`` can be imported, without importing it."""
    return importlib.util.find_spec(module_name) is not None


def package_version(distribution):
    """Return the installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model():
    """Return the CPU's model name from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cpus():
    """Return the number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def describe_load():
    """Return the system load averages, which show other work on the machine."""
    if not hasattr(os, "getloadavg"):
        return "unknown"
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def describe_environment():
    """Return lines naming the date, machine and library versions.

    Imports nnfast and NumPy, but not PyTorch or ONNX Runtime: their versions
    come from the package metadata.
    """
    import numpy as np

    import nnfast
    from nnfast import _runtime

    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f"date: {now.strftime('%Y-%m-%d %H:%M UTC')}",
        f"cpu: {cpu_model()}, {usable_cpus()} usable logical CPUs",
        f"load average (1, 5, 15 min) at start: {describe_load()}",
        f"python: {platform.python_version()}",
        f"nnfast: {nnfast.__version__}, simd {_runtime.simd_name()}, "
        f"openmp {'on' if nnfast.openmp_enabled() else 'off'}, "
        f"source {describe_commit()}",
        f"numpy: {np.__version__}",
    ]
    lines.extend(describe_blas())
    for label, distribution in (("torch", "torch"), ("onnx", "onnx"),
                                ("onnxruntime", "onnxruntime"),
                                ("tensorflow", "tensorflow")):
        version = package_version(distribution)
        lines.append(f"{label}: {version or 'not installed'}")
    overrides = [name for name in OPENBLAS_OVERRIDES if name in os.environ]
    lines.append(f"OpenBLAS overrides in the environment: {overrides or 'none'}")
    lines.append(f"command: {' '.join(['python'] + sys.argv)}")
    return lines


def describe_commit():
    """Return the repository's commit, marked when the work tree differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, cwd=REPO_ROOT,
                                check=True, timeout=30).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain",
                                 "--untracked-files=no"],
                                capture_output=True, text=True, cwd=REPO_ROOT,
                                check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (" with local changes" if status.strip() else "")


def describe_blas():
    """Return one line per BLAS library loaded, as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["blas: threadpoolctl not installed, kernel not known"]
    lines = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        lines.append(
            f"blas: {info.get('internal_api')} {info.get('version')}, kernel "
            f"{info.get('architecture')}, {os.path.basename(info.get('filepath', ''))}"
        )
    return lines or ["blas: none loaded"]


def print_header(title):
    print(title)
    for line in describe_environment():
        print(f"  {line}")
    print()


# Timing ---------------------------------------------------------------------


def median(values):
    return statistics.median(values)


def percentile(values, q):
    """Return the q-th percentile (0 < q < 100) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def seconds_per_call(call, batch_seconds):
    """Return the mean seconds per call over a batch of about batch_seconds."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    count = max(1, int(batch_seconds / once))
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count


class OtherLoad:
    """Share of the machine's CPU time that other processes used while measuring.

    On a shared machine this shows how far a measurement was disturbed. Over
    the intervals run under :meth:`measuring`, it is the busy time in
    /proc/stat minus the CPU time of this process and its waited-for
    children, divided by the wall time times the CPUs that /proc/stat counts.
    """

    def __init__(self):
        self._other_seconds = 0.0
        self._capacity_seconds = 0.0
        self._available = True

    @staticmethod
    def _read_proc_stat():
        """Return (busy seconds of all CPUs, CPU count) from /proc/stat, or None."""
        try:
            with open("/proc/stat", encoding="ascii") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        # Fields after "cpu": user nice system idle iowait irq softirq steal.
        ticks = [int(value) for value in lines[0].split()[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]
        n_cpus = sum(1 for line in lines if line[:3] == "cpu" and line[3].isdigit())
        return busy / os.sysconf("SC_CLK_TCK"), n_cpus

    @classmethod
    def _sample(cls):
        own = os.times()
        return (cls._read_proc_stat(), own.user + own.system + own.children_user
                + own.children_system, time.perf_counter())

    @contextlib.contextmanager
    def measuring(self):
        """Count the other processes' CPU time while the block runs."""
        stat_start, own_start, wall_start = self._sample()
        yield
        stat_end, own_end, wall_end = self._sample()
        if stat_start is None or stat_end is None:
            self._available = False
            return
        self._other_seconds += max(
            (stat_end[0] - stat_start[0]) - (own_end - own_start), 0.0)
        self._capacity_seconds += (wall_end - wall_start) * stat_end[1]

    def share(self):
        """Return the share (0 to 1) over all measured intervals, or None."""
        if not self._available or self._capacity_seconds <= 0.0:
            return None
        return min(self._other_seconds / self._capacity_seconds, 1.0)


def format_share(share):
    return "unknown" if share is None else f"{share:.0%}"


def add_quiet_arguments(parser):
    """Add --quiet-share and --max-wait, the options of wait_for_quiet."""
    parser.add_argument("--quiet-share", type=float, default=0.10,
                        help="before each measurement, wait until other "
                             "processes use at most this share of the CPUs "
                             "(0 to 1) over one second")
    parser.add_argument("--max-wait", type=float, default=60.0,
                        help="seconds to wait for that before measuring anyway; "
                             "0 measures at once")


def wait_for_quiet(args):
    """Wait until other processes leave the CPUs mostly idle, or args.max_wait.

    A thread team that shares the CPUs with other work waits at each barrier
    for a thread that is not running, so a busy machine can slow a 2-thread
    run tenfold (seen on a 2-CPU machine). Returns the seconds waited.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < args.max_wait:
        load = OtherLoad()
        with load.measuring():
            time.sleep(1.0)
        share = load.share()
        if share is None or share <= args.quiet_share:
            break
    return time.perf_counter() - start


def print_other_load(load):
    """Print the share of the CPUs that other processes used, from an OtherLoad."""
    print(f"  Other processes used {format_share(load.share())} of the CPUs "
          "while this was measured.")


def peak_rss_mib():
    """Return this process's peak resident set size in MiB (Linux units)."""
    import resource

    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        return peak / 2**20
    return peak / 2**10


# Fashion-MNIST for child processes --------------------------------------------


def save_fashion_mnist(path):
    """Write Fashion-MNIST as uint8 arrays to the .npz file ``path``.

    Children read this file with NumPy alone, so every framework's process
    loads the data the same way and no child imports nnfast only to load it.
    """
    import numpy as np

    import nnfast

    (x_train, y_train), (x_test, y_test) = nnfast.datasets.fashion_mnist.load_data()
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def load_scaled_fashion_mnist(path, n_train=None):
    """Return (x_train, y_train, x_test, y_test) from a file of save_fashion_mnist.

    Images come back as float32 in [0, 1], scaled once in place, and labels
    as int64. ``n_train`` keeps only the first n training samples.
    """
    import numpy as np

    with np.load(path) as data:
        x_train = data["x_train"]
        y_train = data["y_train"]
        x_test = data["x_test"]
        y_test = data["y_test"]
    if n_train is not None:
        x_train = x_train[:n_train]
        y_train = y_train[:n_train]
    scaled = []
    for images in (x_train, x_test):
        images = images.astype(np.float32)
        images /= 255.0
        scaled.append(images)
    return scaled[0], y_train.astype(np.int64), scaled[1], y_test.astype(np.int64)


# Targets ---------------------------------------------------------------------


class Target:
    """One goal with its measured value: passed is True, False or None (not measured)."""

    def __init__(self, goal, measured, passed):
        self.goal = goal
        self.measured = measured
        self.passed = passed

    @property
    def verdict(self):
        if self.passed is None:
            return "n/a"
        return "PASS" if self.passed else "MISS"


def print_targets(targets):
    """Print the table of targets, measured values and PASS, MISS or n/a."""
    goal_width = max(len("target"), *(len(t.goal) for t in targets))
    measured_width = max(len("measured"), *(len(t.measured) for t in targets))
    print(f"{'target':{goal_width}}  {'measured':{measured_width}}  result")
    for target in targets:
        print(f"{target.goal:{goal_width}}  {target.measured:{measured_width}}  "
              f"{target.verdict}")


def dump_json(value):
    """Print ``value`` as one JSON line, for a parent process to read."""
    print(json.dumps(value), flush=True)
