/*
 * OpenMP helpers. The header <omp.h> is used only when the build found
 * OpenMP. Without it, every query returns what a single-threaded runtime would.
 */
#include "nnfast.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int nnf_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int nnf_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int nnf_effective_threads(int requested)
{
    int limit = nnf_omp_max_threads();
    int n = requested < limit ? requested : limit;
    return n > 0 ? n : 1;
}

int nnf_observed_team_size(int n_threads)
{
    int size = 1;
#ifdef _OPENMP
    #pragma omp parallel num_threads(n_threads)
    {
        #pragma omp single
        size = omp_get_num_threads();
    }
#else
    (void)n_threads;
#endif
    return size;
}
