"""The thread count that compiled kernels use."""

import numbers
import os

from nnfast import _runtime

_num_threads = None

# The largest count passed to C, whose parameter is an int. Larger requests
# are cut to it, and OpenMP's own limit caps the count anyway.
_INT_MAX = 2**31 - 1

# GNU OpenMP's thread pool does not survive fork(): a child that opens a
# parallel region after the parent used one waits forever for threads that
# do not exist. A child made by fork therefore runs the kernels on one
# thread; children started with "spawn" or "forkserver" are not affected.
_forked_child = False


def _after_fork_in_child():
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _checked_count(value, name, expected, where=""):
    """Return the thread count ``value`` as an int for C.

    Raises TypeError or ValueError, naming parameter ``name`` and the
    ``expected`` values, unless ``value`` is a positive int.
    """
    if type(value) is int and 1 <= value <= _INT_MAX:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{where}`{name}` must be {expected}, got {value!r} "
            f"of type {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(f"{where}`{name}` must be {expected}, got {name}={value}")
    return min(int(value), _INT_MAX)


def set_num_threads(n):
    """Set the number of threads the compiled kernels use.

    Parameters
    ----------
    n : int
        A positive thread count. The kernels still use no more than
        ``omp_get_max_threads()`` at call time, so ``OMP_NUM_THREADS`` and
        ``threadpoolctl`` limits cap it.
    """
    global _num_threads
    _num_threads = _checked_count(n, "n", "a positive int", "set_num_threads: ")


def get_num_threads():
    """Return the number of threads the compiled kernels use.

    Defaults to OpenMP's own default, which honours ``OMP_NUM_THREADS``.
    In a process made by ``fork`` it is 1 (see the note at the top of this
    module).
    """
    if _forked_child:
        return 1
    if _num_threads is None:
        return _runtime.omp_max_threads()
    return _runtime.effective_threads(_num_threads)


def resolve(n_threads):
    """Return the thread count for one kernel call that was passed ``n_threads``.

    Raises TypeError or ValueError unless ``n_threads`` is None or a
    positive int.
    """
    if n_threads is None:
        return get_num_threads()
    count = _checked_count(n_threads, "n_threads", "a positive int or None")
    if _forked_child:
        return 1
    return _runtime.effective_threads(count)


def resolve_for_size(n_threads, size, min_size):
    """Return ``resolve(n_threads)``, or 1 when ``size`` is below ``min_size``.

    ``n_threads`` is checked either way, so a bad value fails on small inputs too.
    """
    threads = resolve(n_threads)
    return 1 if size < min_size else threads
