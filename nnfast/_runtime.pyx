"""Facts about the compiled build and the OpenMP runtime, read from C."""

cdef extern from "nnfast.h":
    int nnf_simd_level() nogil
    const char *nnf_simd_name(int level) nogil
    int nnf_fma512_full() nogil
    int nnf_openmp_enabled() nogil
    int nnf_omp_max_threads() nogil
    int nnf_effective_threads(int requested) nogil
    int nnf_observed_team_size(int n_threads) nogil
    int nnf_omp_num_procs() nogil
    int nnf_parallel_threads(int n_threads, double work, double min_work) nogil
    int nnf_binds_workers() nogil


def openmp_enabled():
    """Return True when the kernels were compiled with OpenMP."""
    return bool(nnf_openmp_enabled())


def omp_max_threads():
    """Return ``omp_get_max_threads()`` now (1 without OpenMP)."""
    return nnf_omp_max_threads()


def effective_threads(int requested):
    """Return the threads a kernel asked for ``requested`` would use."""
    return nnf_effective_threads(requested)


def observed_team_size(int n_threads):
    """Return the team size seen inside a parallel region of ``n_threads``.

    1 in a child made by fork, where the kernels run on one thread because
    GNU OpenMP's thread pool does not survive the fork.
    """
    from nnfast import _threads
    if _threads._forked_child:
        return 1
    cdef int size
    with nogil:
        size = nnf_observed_team_size(nnf_effective_threads(n_threads))
    return size


def omp_num_procs():
    """Return ``omp_get_num_procs()`` (1 without OpenMP)."""
    return nnf_omp_num_procs()


def parallel_threads(int n_threads, double work, double min_work):
    """Return the threads the kernels would use for ``work`` units of work.

    1 below ``min_work``. While the OpenMP teams of live threads would
    outnumber the CPUs, also 1 below 100 times ``min_work``. Otherwise
    ``n_threads``, and the calling thread's team then counts as holding
    ``n_threads - 1`` workers until the thread exits.
    """
    return nnf_parallel_threads(n_threads, work, min_work)


def binds_workers():
    """Return True when nnfast binds each new OpenMP worker to its own CPU."""
    return bool(nnf_binds_workers())


def simd_name():
    """Return the SIMD level the kernels chose for this CPU."""
    return nnf_simd_name(nnf_simd_level()).decode("ascii")


def fma512_full():
    """Return True when the level is AVX-512 and the CPU runs two 512-bit
    FMAs per cycle. The GEMM then prefers its 512-bit tiles."""
    return bool(nnf_fma512_full())
