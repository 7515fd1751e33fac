"""The thread count that compiled kernels use."""

import numbers
import os

from nnfast import _runtime

_num_threads = None

# Thread counts go to C as int. A larger request means "as many as allowed",
# which OpenMP's own limit caps anyway.
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
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(
            f"set_num_threads: `n` must be a positive int, got {n!r} "
            f"of type {type(n).__name__}"
        )
    if n < 1:
        raise ValueError(f"set_num_threads: `n` must be a positive int, got n={n}")
    _num_threads = min(int(n), _INT_MAX)


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

    Raises TypeError or ValueError, as ``set_num_threads`` does, unless
    ``n_threads`` is None or a positive int.
    """
    if n_threads is None:
        return get_num_threads()
    if type(n_threads) is not int:
        if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
            raise TypeError(
                f"`n_threads` must be a positive int or None, got {n_threads!r} "
                f"of type {type(n_threads).__name__}"
            )
        n_threads = int(n_threads)
    if n_threads < 1:
        raise ValueError(
            f"`n_threads` must be a positive int or None, got n_threads={n_threads}"
        )
    if _forked_child:
        return 1
    return _runtime.effective_threads(min(n_threads, _INT_MAX))
