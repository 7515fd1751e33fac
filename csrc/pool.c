/*
 * 2-D max and average pooling (channels last), forward and backward.
 *
 * Forward passes split the output rows (image, oh) across threads; each
 * output element is computed by one thread, reading its window in
 * row-major order. Backward passes add each output gradient into the
 * window it came from, and windows may overlap, so threads split whole
 * images: every element of dx is summed by one thread in output order, and
 * results do not depend on the thread count.
 */
#include <math.h>
#include <string.h>

#include "pool.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/*
 * Loops that touch fewer elements than this run on one thread: at about a
 * nanosecond per element, 32768 elements take tens of microseconds, well
 * above the few microseconds an OpenMP team costs to wake. An estimate, not
 * measured.
 */
#define NNF_POOL_PARALLEL_MIN_ELEMENTS 32768

#define NNF_CAT_(a, b) a##b
#define NNF_CAT(a, b) NNF_CAT_(a, b)

int nnf_pool_check_shape(const nnf_pool_shape *s)
{
    if (s->batch < 0 || s->in_h < 0 || s->in_w < 0 || s->channels < 0 || s->out_h < 0 ||
        s->out_w < 0 || s->pad_top < 0 || s->pad_left < 0) {
        return NNF_EINVAL;
    }
    if (s->pool_h < 1 || s->pool_w < 1 || s->stride_h < 1 || s->stride_w < 1) {
        return NNF_EINVAL;
    }
    if ((double)s->in_h * (double)s->in_w * (double)s->channels >= 2147483648.0) {
        return NNF_EINVAL;
    }
    return NNF_OK;
}

/* Return the thread count for a loop of `elements` elements split into
 * `parts` independent parts. */
static int pool_threads(double elements, nnf_int parts, int n_threads)
{
    if (parts < 2) {
        return 1;
    }
    int nt = nnf_parallel_threads(n_threads, elements, NNF_POOL_PARALLEL_MIN_ELEMENTS);
    return parts < nt ? (int)parts : nt;
}

/* The window of output row oh (or column ow): input rows [*lo, *hi), clipped
 * to the input. */
static inline void pool_window(nnf_int o, nnf_int stride, nnf_int pad, nnf_int size,
                               nnf_int extent, nnf_int *lo, nnf_int *hi)
{
    nnf_int start = o * stride - pad;
    nnf_int end = start + size;
    *lo = start > 0 ? start : 0;
    *hi = end < extent ? end : extent;
}

#define T float
#define SUF f32
#include "pool_typed.h"
#undef T
#undef SUF

#define T double
#define SUF f64
#include "pool_typed.h"
#undef T
#undef SUF
