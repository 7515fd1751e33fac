"""The thread count that compiled kernels use."""

import numbers

from nnfast import _runtime

_num_threads = None


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
    _num_threads = int(n)


def get_num_threads():
    """Return the number of threads the compiled kernels use.

    Defaults to OpenMP's own default, which honours ``OMP_NUM_THREADS``.
    """
    if _num_threads is None:
        return _runtime.omp_max_threads()
    return _runtime.effective_threads(_num_threads)


def resolve(n_threads):
    """Return the thread count for one kernel call that was passed ``n_threads``."""
    if n_threads is None:
        return get_num_threads()
    return _runtime.effective_threads(n_threads)
