"""Facts about the compiled build and the OpenMP runtime, read from C."""

cdef extern from "nnfast.h":
    int nnf_simd_level() nogil
    const char *nnf_simd_name(int level) nogil
    int nnf_openmp_enabled() nogil
    int nnf_omp_max_threads() nogil
    int nnf_effective_threads(int requested) nogil
    int nnf_observed_team_size(int n_threads) nogil


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
    """Return the team size seen inside a parallel region of ``n_threads``."""
    cdef int size
    with nogil:
        size = nnf_observed_team_size(nnf_effective_threads(n_threads))
    return size


def simd_name():
    """Return the SIMD level the kernels chose for this CPU."""
    return nnf_simd_name(nnf_simd_level()).decode("ascii")
