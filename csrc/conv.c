/*
 * 2-D convolution (channels last) as a lowering plus the blocked GEMM.
 *
 * The lowered ("im2col") matrix X has one row per output pixel and one
 * column per kernel tap and input channel, (kh, kw, ci) in the kernel's
 * memory order, so that the kernel array is already a K x out_c matrix W
 * with K = kernel_h * kernel_w * in_c:
 *
 *   forward      Y  = act(X W + bias)       m = pixels, n = out_c, k = K
 *   kernel grad  dW = X^T dZ                m = K, n = out_c, k = pixels
 *   input grad   dX = col2im(dZ W^T)        m = pixels, n = K, k = out_c
 *
 * X is never stored whole. The output rows (one image row of output
 * pixels each) are cut into tiles whose lowered rows and outputs fit in
 * NNF_CONV_TILE_BYTES. Tile by tile, the team lowers the tile into the
 * calling thread's workspace and the GEMM (itself parallel) multiplies it.
 * The forward pass then adds the bias and applies the activation in a
 * separate pass over the tile's output. That pass measured faster than the
 * GEMM epilogue, which runs per MR x NR tile: on the Fashion-MNIST model's
 * first layer (43264 x 32 outputs, k = 9) the epilogue took about 4 ms and
 * the pass 0.4 ms, on one thread of a shared 2-core AMD EPYC VM.
 *
 * The backward pass computes dZ = act'(dY) for the tile, adds the tile's
 * X^T dZ into the kernel gradient, and, when dX is wanted, computes dZ W^T
 * for the tile and adds each of its rows back to the input pixels it was
 * read from. That last step (col2im) is written as a gather over input
 * pixels, so that threads never add into the same element.
 *
 * Small float32 kernel matrices (see conv_avx2.c) skip the lowering: the
 * forward pass and the kernel and bias gradients run as direct AVX2 loops
 * in one parallel region each. On the first layer above they measured
 * 0.8 ms (forward) and 1.1 ms (gradients) on one thread, against 1.1 and
 * 1.2 ms through the GEMM. With two threads they also avoid the GEMM's
 * barrier per k block of 256 pixels, over 500 barriers for that layer's
 * kernel gradient. Each barrier costs milliseconds when another process
 * holds the second core.
 *
 * Tiles and chunks depend on the shapes only, and the GEMM's results do not
 * depend on its thread count, so neither do these kernels' results. Loops
 * over fewer than NNF_CONV_PARALLEL_MIN_ELEMENTS elements run on the
 * calling thread.
 */
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "conv.h"
#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/*
 * Bytes per tile of lowered rows plus output rows (forward) or dZ rows
 * (backward); at least one output row is taken whatever its size. Each tile
 * costs three or more parallel regions, so fewer, larger tiles pay off: on
 * the Fashion-MNIST model's second layer, 4 MiB tiles measured 2-5% faster
 * on one thread than 1 MiB and 512 KiB ones, although they exceed L2.
 */
#define NNF_CONV_TILE_BYTES ((size_t)4096 * 1024)

/*
 * Element loops (lowering, dZ, col2im) over fewer elements than this run on
 * one thread: at about a nanosecond per element, 32768 elements take tens
 * of microseconds, well above the few microseconds an OpenMP team costs to
 * wake. An estimate, not measured.
 */
#define NNF_CONV_PARALLEL_MIN_ELEMENTS 32768

/*
 * The direct kernel gradient sums chunks of NNF_CONV_DIRECT_CHUNK_PIXELS
 * output pixels, at most NNF_CONV_DIRECT_MAX_CHUNKS of them, each into its
 * own buffer.
 */
#define NNF_CONV_DIRECT_CHUNK_PIXELS 1024
#define NNF_CONV_DIRECT_MAX_CHUNKS 64

#define NNF_CAT_(a, b) a##b
#define NNF_CAT(a, b) NNF_CAT_(a, b)

static nnf_int conv_min(nnf_int a, nnf_int b)
{
    return a < b ? a : b;
}

static size_t conv_round_up_64(size_t bytes)
{
    return (bytes + 63) / 64 * 64;
}

/* Split `count` items into `parts` near-equal contiguous ranges; return the
 * range [*begin, *end) of part `index`. */
static void conv_split_range(nnf_int count, int parts, int index, nnf_int *begin,
                             nnf_int *end)
{
    nnf_int base = count / parts;
    nnf_int extra = count % parts;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}

/* The calling thread's number and team size inside a parallel region. */
static int conv_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int conv_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Return the thread count for an element loop of `elements` elements. */
static int conv_loop_threads(double elements, int n_threads)
{
    return nnf_parallel_threads(n_threads, elements, NNF_CONV_PARALLEL_MIN_ELEMENTS);
}

int nnf_conv_check_shape(const nnf_conv_shape *s)
{
    if (s->batch < 0 || s->in_h < 0 || s->in_w < 0 || s->in_c < 0 || s->out_h < 0 ||
        s->out_w < 0 || s->out_c < 0) {
        return NNF_EINVAL;
    }
    if (s->kernel_h < 1 || s->kernel_w < 1 || s->stride_h < 1 || s->stride_w < 1 ||
        s->dilation_h < 1 || s->dilation_w < 1 || s->pad_top < 0 || s->pad_left < 0) {
        return NNF_EINVAL;
    }
    return NNF_OK;
}

/* Return the output rows per tile when each output pixel needs
 * bytes_per_pixel bytes of tile buffers. */
static nnf_int conv_tile_rows(const nnf_conv_shape *s, size_t bytes_per_pixel)
{
    size_t row_bytes = bytes_per_pixel * (size_t)s->out_w;
    nnf_int rows = row_bytes > 0 ? (nnf_int)(NNF_CONV_TILE_BYTES / row_bytes) : 1;
    return rows > 0 ? rows : 1;
}

/* Whether the lowered matrix is x itself: a 1 x 1 kernel, stride 1, no padding. */
static int conv_lowering_is_identity(const nnf_conv_shape *s)
{
    return s->kernel_h == 1 && s->kernel_w == 1 && s->stride_h == 1 && s->stride_w == 1 &&
           s->pad_top == 0 && s->pad_left == 0 && s->out_h == s->in_h && s->out_w == s->in_w;
}

/* ---------------------------------------------------------------------------
 * Direct float32 path (small kernel matrices, see conv_avx2.c)
 * ------------------------------------------------------------------------- */

/* y = act(conv(x, kernel) + bias), the threads splitting the output rows. */
static void conv_direct_forward_f32(const nnf_conv_shape *s, const float *x,
                                    const float *kernel, const float *bias, int activation,
                                    float *y, int n_threads)
{
    const nnf_int out_rows = s->batch * s->out_h;
    const nnf_int k = s->kernel_h * s->kernel_w * s->in_c;
    int nt = conv_loop_threads((double)out_rows * (double)s->out_w * (double)k, n_threads);
    (void)nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        nnf_int q0, q1;
        conv_split_range(out_rows, conv_team_size(), conv_thread_id(), &q0, &q1);
        if (q1 > q0) {
            nnf_conv_direct_forward_f32(s, x, kernel, bias, activation, y, q0, q1);
        }
    }
}

/*
 * kernel_grad = X^T dZ + beta * kernel_grad and bias_grad = colsum(dZ) +
 * beta * bias_grad (skipped when NULL). The pixels are cut into chunks fixed
 * by the pixel count, each chunk sums into its own buffer, and the buffers
 * are added in chunk order, so results do not depend on the thread count.
 */
static int conv_direct_kernel_grad_f32(const nnf_conv_shape *s, const float *x, const float *y,
                                       const float *dy, int activation, float *kernel_grad,
                                       float *bias_grad, float beta, int n_threads)
{
    const nnf_int n = s->out_c;
    const nnf_int kn = s->kernel_h * s->kernel_w * s->in_c * n;
    const nnf_int m = s->batch * s->out_h * s->out_w;
    nnf_int chunks = (m + NNF_CONV_DIRECT_CHUNK_PIXELS - 1) / NNF_CONV_DIRECT_CHUNK_PIXELS;
    chunks = chunks < NNF_CONV_DIRECT_MAX_CHUNKS ? chunks : NNF_CONV_DIRECT_MAX_CHUNKS;
    const nnf_int stride = kn + n;
    float *sums = (float *)nnf_workspace(NNF_WORKSPACE_CONV,
                                         (size_t)(chunks * stride) * sizeof(float));
    if (sums == NULL) {
        return NNF_ENOMEM;
    }
    int nt = conv_loop_threads((double)m * (double)kn, n_threads);
    (void)nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (nnf_int q = 0; q < chunks; q++) {
            nnf_int p0, p1;
            conv_split_range(m, (int)chunks, (int)q, &p0, &p1);
            float *chunk = sums + q * stride;
            memset(chunk, 0, (size_t)stride * sizeof(float));
            nnf_conv_direct_kernel_grad_f32(s, x, y, dy, activation, p0, p1, chunk,
                                            chunk + kn);
        }

        /* Add the chunks in order, each thread over its own elements. */
        nnf_int e0, e1;
        conv_split_range(bias_grad != NULL ? stride : kn, conv_team_size(), conv_thread_id(),
                         &e0, &e1);
        for (nnf_int e = e0; e < e1; e++) {
            float total = 0.0f;
            for (nnf_int q = 0; q < chunks; q++) {
                total += sums[q * stride + e];
            }
            float *target = e < kn ? kernel_grad + e : bias_grad + (e - kn);
            *target = beta != 0.0f ? total + beta * *target : total;
        }
    }
    return NNF_OK;
}

#define T float
#define SUF f32
#define CONV_TYPED_F32 1
#include "conv_typed.h"
#undef T
#undef SUF
#undef CONV_TYPED_F32

#define T double
#define SUF f64
#define CONV_TYPED_F32 0
#include "conv_typed.h"
#undef T
#undef SUF
#undef CONV_TYPED_F32
