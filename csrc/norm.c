/*
 * Batch and layer normalization, forward and backward.
 *
 * Column sums over the rows (batch statistics, gamma and beta gradients)
 * are taken in chunks of rows fixed by the row count alone. One thread sums
 * each chunk in row order, and the chunk sums are added in chunk order, so
 * results do not depend on the thread count. Row-wise work (the
 * normalization itself, layer normalization's statistics) splits the rows
 * across threads. All sums are in double precision.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "norm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Column sums use one chunk per NNF_NORM_CHUNK_ROWS rows, at most
 * NNF_NORM_MAX_CHUNKS chunks, so the chunk sums take little memory. */
#define NNF_NORM_CHUNK_ROWS 256
#define NNF_NORM_MAX_CHUNKS 64

/*
 * Calls over fewer elements than this run on one thread: at about a
 * nanosecond per element, 32768 elements take tens of microseconds, well
 * above the few microseconds an OpenMP team costs to wake. An estimate, not
 * measured.
 */
#define NNF_NORM_PARALLEL_MIN_ELEMENTS 32768

#define NNF_CAT_(a, b) a##b
#define NNF_CAT(a, b) NNF_CAT_(a, b)

static nnf_int norm_chunk_count(nnf_int rows)
{
    nnf_int chunks = (rows + NNF_NORM_CHUNK_ROWS - 1) / NNF_NORM_CHUNK_ROWS;
    if (chunks > NNF_NORM_MAX_CHUNKS) {
        chunks = NNF_NORM_MAX_CHUNKS;
    }
    return chunks > 0 ? chunks : 1;
}

/* Rows [*begin, *end) of chunk `index` of `chunks`. */
static void norm_chunk_rows(nnf_int rows, nnf_int chunks, nnf_int index, nnf_int *begin,
                            nnf_int *end)
{
    nnf_int base = rows / chunks;
    nnf_int extra = rows % chunks;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}

static int norm_threads(double elements, int n_threads)
{
    return nnf_parallel_threads(n_threads, elements, NNF_NORM_PARALLEL_MIN_ELEMENTS);
}

/* Set out[j] to the sum of the chunks' rows of `sums` (chunks x channels),
 * adding the chunks in order. */
static void norm_add_chunks(nnf_int chunks, nnf_int channels, const double *sums, double *out)
{
    for (nnf_int j = 0; j < channels; j++) {
        double total = 0.0;
        for (nnf_int q = 0; q < chunks; q++) {
            total += sums[q * channels + j];
        }
        out[j] = total;
    }
}

#define T float
#define SUF f32
#include "norm_typed.h"
#undef T
#undef SUF

#define T double
#define SUF f64
#include "norm_typed.h"
#undef T
#undef SUF
