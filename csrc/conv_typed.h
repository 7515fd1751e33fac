/*
 * The typed half of conv.c, included once per dtype with T (float or
 * double) and SUF (f32 or f64) defined. FN(name) appends the suffix.
 */
#define FN(name) NNF_CAT(name##_, SUF)
#define GEMM NNF_CAT(nnf_gemm_, SUF)

static T FN(activate)(int activation, T z)
{
    switch (activation) {
    case NNF_ACT_RELU:
        return NNF_CAT(nnf_relu_fwd_, SUF)(z);
    case NNF_ACT_SIGMOID:
        return NNF_CAT(nnf_sigmoid_fwd_, SUF)(z);
    case NNF_ACT_TANH:
        return NNF_CAT(nnf_tanh_fwd_, SUF)(z);
    default:
        return z;
    }
}

/* dz[j] = act'(dy[j]) from the output y[j], for j < len (y unused for linear). */
static void FN(activation_grad_row)(int activation, nnf_int len, const T *y, const T *dy,
                                    T *restrict dz)
{
    switch (activation) {
    case NNF_ACT_RELU:
        for (nnf_int j = 0; j < len; j++) {
            dz[j] = NNF_CAT(nnf_relu_bwd_, SUF)(y[j], dy[j]);
        }
        break;
    case NNF_ACT_SIGMOID:
        for (nnf_int j = 0; j < len; j++) {
            dz[j] = NNF_CAT(nnf_sigmoid_bwd_, SUF)(y[j], dy[j]);
        }
        break;
    case NNF_ACT_TANH:
        for (nnf_int j = 0; j < len; j++) {
            dz[j] = NNF_CAT(nnf_tanh_bwd_, SUF)(y[j], dy[j]);
        }
        break;
    default:
        for (nnf_int j = 0; j < len; j++) {
            dz[j] = dy[j];
        }
        break;
    }
}

/*
 * Write the lowered rows of the output rows [q0, q1) to cols, one row of K
 * values per output pixel. Output row q is row q % out_h of image q / out_h,
 * and taps that fall outside the input read zero. Each tap fills a strided
 * column block of the tile, so the inner loops run over output pixels
 * without a bounds check.
 */
static void FN(lower)(const nnf_conv_shape *s, const T *x, nnf_int q0, nnf_int q1, T *cols,
                      int n_threads)
{
    const nnf_int c = s->in_c;
    const nnf_int k = s->kernel_h * s->kernel_w * c;
    const nnf_int out_w = s->out_w;
    const nnf_int image_size = s->in_h * s->in_w * c;
    int nt = conv_loop_threads((double)(q1 - q0) * (double)out_w * (double)k, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int q = q0; q < q1; q++) {
        nnf_int image = q / s->out_h;
        nnf_int oh = q - image * s->out_h;
        const T *img = x + image * image_size;
        T *row = cols + (q - q0) * out_w * k;
        for (nnf_int kh = 0; kh < s->kernel_h; kh++) {
            nnf_int ih = oh * s->stride_h - s->pad_top + kh * s->dilation_h;
            for (nnf_int kw = 0; kw < s->kernel_w; kw++) {
                T *dst = row + (kh * s->kernel_w + kw) * c;
                /* Output columns [lo, hi) read input columns inside the image. */
                nnf_int offset = kw * s->dilation_w - s->pad_left;
                nnf_int lo = 0;
                nnf_int hi = 0;
                if (ih >= 0 && ih < s->in_h) {
                    lo = offset >= 0 ? 0 : (-offset + s->stride_w - 1) / s->stride_w;
                    hi = s->in_w - 1 - offset >= 0 ? (s->in_w - 1 - offset) / s->stride_w + 1
                                                   : 0;
                    hi = hi < out_w ? hi : out_w;
                    lo = lo < hi ? lo : hi;
                }
                for (nnf_int ow = 0; ow < lo; ow++) {
                    for (nnf_int ci = 0; ci < c; ci++) {
                        dst[ow * k + ci] = (T)0;
                    }
                }
                if (hi > lo) {
                    const T *src = img + ih * s->in_w * c;
                    nnf_int step = s->stride_w * c;
                    if (c == 1) {
                        for (nnf_int ow = lo; ow < hi; ow++) {
                            dst[ow * k] = src[ow * s->stride_w + offset];
                        }
                    } else {
                        for (nnf_int ow = lo; ow < hi; ow++) {
                            const T *pixel = src + ow * step + offset * c;
                            T *out = dst + ow * k;
                            for (nnf_int ci = 0; ci < c; ci++) {
                                out[ci] = pixel[ci];
                            }
                        }
                    }
                }
                for (nnf_int ow = hi; ow < out_w; ow++) {
                    for (nnf_int ci = 0; ci < c; ci++) {
                        dst[ow * k + ci] = (T)0;
                    }
                }
            }
        }
    }
}

/* y = act(y + bias) over `rows` rows of n channels (bias may be NULL). */
static void FN(bias_activation)(nnf_int rows, nnf_int n, const T *bias, int activation, T *y,
                                int n_threads)
{
    int nt = conv_loop_threads((double)rows * (double)n, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int i = 0; i < rows; i++) {
        T *restrict row = y + i * n;
        if (bias != NULL) {
            for (nnf_int j = 0; j < n; j++) {
                row[j] += bias[j];
            }
        }
        switch (activation) {
        case NNF_ACT_RELU:
            for (nnf_int j = 0; j < n; j++) {
                row[j] = NNF_CAT(nnf_relu_fwd_, SUF)(row[j]);
            }
            break;
        case NNF_ACT_SIGMOID:
            for (nnf_int j = 0; j < n; j++) {
                row[j] = NNF_CAT(nnf_sigmoid_fwd_, SUF)(row[j]);
            }
            break;
        case NNF_ACT_TANH:
            for (nnf_int j = 0; j < n; j++) {
                row[j] = NNF_CAT(nnf_tanh_fwd_, SUF)(row[j]);
            }
            break;
        default:
            break;
        }
    }
}

/*
 * For `rows` rows of n channels: dz = act'(dy) from y (skipped when dz is
 * NULL), and bias_sums[j] += the sum of column j of dz (or of dy when dz is
 * NULL; skipped when bias_sums is NULL). Threads split the columns, so each
 * sum is added in row order whatever the thread count.
 */
static void FN(tile_dz)(int activation, nnf_int rows, nnf_int n, const T *y, const T *dy,
                        T *dz, double *bias_sums, int n_threads)
{
    if (dz == NULL && bias_sums == NULL) {
        return;
    }
    int nt = conv_loop_threads((double)rows * (double)n, n_threads);
    if (nt > n) {
        nt = (int)n;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        nnf_int j0, j1;
        conv_split_range(n, conv_team_size(), conv_thread_id(), &j0, &j1);
        for (nnf_int i = 0; i < rows && j0 < j1; i++) {
            const T *src = dy + i * n + j0;
            if (dz != NULL) {
                FN(activation_grad_row)(activation, j1 - j0, y + i * n + j0, src,
                                        dz + i * n + j0);
                src = dz + i * n + j0;
            }
            if (bias_sums != NULL) {
                for (nnf_int j = 0; j < j1 - j0; j++) {
                    bias_sums[j0 + j] += src[j];
                }
            }
        }
    }
}

/*
 * dx += col2im(cols) for the output rows [q0, q1), where output row q is
 * row q % out_h of image q / out_h. cols contains their rows of dZ W^T, and
 * each value goes back to the input element its tap read. Threads split the
 * input rows, and each input element sums its taps in (kh, kw) order.
 */
static void FN(col2im_add)(const nnf_conv_shape *s, const T *cols, nnf_int q0, nnf_int q1,
                           T *dx, int n_threads)
{
    const nnf_int c = s->in_c;
    const nnf_int k = s->kernel_h * s->kernel_w * c;
    const nnf_int image0 = q0 / s->out_h;
    const nnf_int image1 = (q1 - 1) / s->out_h + 1;
    const nnf_int items = (image1 - image0) * s->in_h;
    int nt = conv_loop_threads((double)(q1 - q0) * (double)s->out_w * (double)k, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int item = 0; item < items; item++) {
        nnf_int image = image0 + item / s->in_h;
        nnf_int ih = item % s->in_h;
        /* The output rows of this image that lie in the tile. */
        nnf_int oh_lo = q0 - image * s->out_h;
        nnf_int oh_hi = q1 - image * s->out_h;
        oh_lo = oh_lo > 0 ? oh_lo : 0;
        oh_hi = oh_hi < s->out_h ? oh_hi : s->out_h;
        T *dst_row = dx + (image * s->in_h + ih) * s->in_w * c;
        for (nnf_int kh = 0; kh < s->kernel_h; kh++) {
            nnf_int t = ih + s->pad_top - kh * s->dilation_h;
            if (t < 0 || t % s->stride_h != 0) {
                continue;
            }
            nnf_int oh = t / s->stride_h;
            if (oh < oh_lo || oh >= oh_hi) {
                continue;
            }
            const T *src_row = cols + ((image * s->out_h + oh - q0) * s->out_w) * k;
            for (nnf_int iw = 0; iw < s->in_w; iw++) {
                T *restrict dst = dst_row + iw * c;
                for (nnf_int kw = 0; kw < s->kernel_w; kw++) {
                    nnf_int u = iw + s->pad_left - kw * s->dilation_w;
                    if (u < 0 || u % s->stride_w != 0 || u / s->stride_w >= s->out_w) {
                        continue;
                    }
                    const T *src = src_row + (u / s->stride_w) * k + (kh * s->kernel_w + kw) * c;
                    for (nnf_int ci = 0; ci < c; ci++) {
                        dst[ci] += src[ci];
                    }
                }
            }
        }
    }
}

/* Set count elements of a to zero, split across threads when large. */
static void FN(zero_fill)(T *a, nnf_int count, int n_threads)
{
    int nt = conv_loop_threads((double)count, n_threads);
    (void)nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        nnf_int e0, e1;
        conv_split_range(count, conv_team_size(), conv_thread_id(), &e0, &e1);
        if (e1 > e0) {
            memset(a + e0, 0, (size_t)(e1 - e0) * sizeof(T));
        }
    }
}

/* ---------------------------------------------------------------------------
 * Forward
 * ------------------------------------------------------------------------- */

int FN(nnf_conv2d_forward)(const nnf_conv_shape *s, const T *x, const T *kernel,
                           const T *bias, int activation, T *y, int n_threads)
{
    if (nnf_conv_check_shape(s) != NNF_OK || activation < NNF_ACT_LINEAR ||
        activation > NNF_ACT_TANH) {
        return NNF_EINVAL;
    }
    const nnf_int n = s->out_c;
    const nnf_int k = s->kernel_h * s->kernel_w * s->in_c;
    const nnf_int out_rows = s->batch * s->out_h;
    if (out_rows == 0 || s->out_w == 0 || n == 0) {
        return NNF_OK;
    }
    if (k == 0) {
        /* No input channels: every pixel is act(bias). */
        nnf_int m = out_rows * s->out_w;
        for (nnf_int i = 0; i < m; i++) {
            for (nnf_int j = 0; j < n; j++) {
                y[i * n + j] = FN(activate)(activation, bias != NULL ? bias[j] : (T)0);
            }
        }
        return NNF_OK;
    }

#if CONV_TYPED_F32
    if (nnf_conv_direct_supported_f32(s)) {
        conv_direct_forward_f32(s, x, kernel, bias, activation, y, n_threads);
        return NNF_OK;
    }
#endif

    const int epilogue = bias != NULL || activation != NNF_ACT_LINEAR;
    nnf_int tile_rows = conv_tile_rows(s, (size_t)(k + n) * sizeof(T));
    if (tile_rows > out_rows) {
        tile_rows = out_rows;
    }
    const int identity = conv_lowering_is_identity(s);
    T *cols = NULL;
    if (!identity) {
        cols = (T *)nnf_workspace(NNF_WORKSPACE_CONV,
                                  (size_t)(tile_rows * s->out_w * k) * sizeof(T));
        if (cols == NULL) {
            return NNF_ENOMEM;
        }
    }
    for (nnf_int q0 = 0; q0 < out_rows; q0 += tile_rows) {
        nnf_int q1 = conv_min(q0 + tile_rows, out_rows);
        nnf_int m0 = q0 * s->out_w;
        nnf_int pixels = (q1 - q0) * s->out_w;
        const T *lowered = x + m0 * k;
        if (!identity) {
            FN(lower)(s, x, q0, q1, cols, n_threads);
            lowered = cols;
        }
        int status = GEMM(pixels, n, k, (T)1, lowered, k, 1, kernel, n, 1, (T)0, y + m0 * n,
                          n, 1, NULL, n_threads);
        if (status != NNF_OK) {
            return status;
        }
        if (epilogue) {
            FN(bias_activation)(pixels, n, bias, activation, y + m0 * n, n_threads);
        }
    }
    return NNF_OK;
}

/* ---------------------------------------------------------------------------
 * Backward
 * ------------------------------------------------------------------------- */

/* Finish the bias gradient: bias_grad = sums + beta * bias_grad. */
static void FN(store_bias_grad)(nnf_int n, const double *sums, T beta, T *bias_grad)
{
    for (nnf_int j = 0; j < n; j++) {
        T sum = (T)sums[j];
        bias_grad[j] = beta != (T)0 ? sum + beta * bias_grad[j] : sum;
    }
}

int FN(nnf_conv2d_backward)(const nnf_conv_shape *s, const T *x, const T *kernel, const T *y,
                            const T *dy, int activation, T *kernel_grad, T *bias_grad, T *dx,
                            T beta, int n_threads)
{
    if (nnf_conv_check_shape(s) != NNF_OK || activation < NNF_ACT_LINEAR ||
        activation > NNF_ACT_TANH || (y == NULL && activation != NNF_ACT_LINEAR)) {
        return NNF_EINVAL;
    }
    const nnf_int n = s->out_c;
    const nnf_int k = s->kernel_h * s->kernel_w * s->in_c;
    const nnf_int out_rows = s->batch * s->out_h;
    const nnf_int m = out_rows * s->out_w;
    const int identity = conv_lowering_is_identity(s);
    const int need_dz = activation != NNF_ACT_LINEAR;
    if (dx != NULL) {
        FN(zero_fill)(dx, s->batch * s->in_h * s->in_w * s->in_c, n_threads);
    }

    /* Small kernels: the direct kernel computes both parameter gradients, and
     * the tile loop below only runs for dx. */
    int direct = 0;
#if CONV_TYPED_F32
    direct = m > 0 && nnf_conv_direct_supported_f32(s);
    if (direct) {
        int status = conv_direct_kernel_grad_f32(s, x, need_dz ? y : NULL, dy, activation,
                                                 kernel_grad, bias_grad, beta, n_threads);
        if (status != NNF_OK || dx == NULL) {
            return status;
        }
    }
#endif

    /* Tile buffers: lowered rows (also reused for dZ W^T), dZ rows, bias sums. */
    nnf_int tile_rows = conv_tile_rows(s, (size_t)(k + n) * sizeof(T));
    if (tile_rows > out_rows) {
        tile_rows = out_rows > 0 ? out_rows : 1;
    }
    size_t tile_pixels = (size_t)(tile_rows * s->out_w);
    size_t cols_bytes = conv_round_up_64(tile_pixels * (size_t)k * sizeof(T));
    size_t dz_bytes = need_dz ? conv_round_up_64(tile_pixels * (size_t)n * sizeof(T)) : 0;
    size_t sums_bytes = (size_t)n * sizeof(double);
    char *ws = (char *)nnf_workspace(NNF_WORKSPACE_CONV, cols_bytes + dz_bytes + sums_bytes);
    if (ws == NULL) {
        return NNF_ENOMEM;
    }
    T *cols = (T *)ws;
    T *dz = need_dz ? (T *)(ws + cols_bytes) : NULL;
    double *bias_sums = NULL;
    if (bias_grad != NULL && !direct) {
        bias_sums = (double *)(ws + cols_bytes + dz_bytes);
        for (nnf_int j = 0; j < n; j++) {
            bias_sums[j] = 0.0;
        }
    }

    if (m == 0 || n == 0 || k == 0) {
        /* Nothing to multiply: the kernel gradient is beta times its old value. */
        for (nnf_int e = 0; e < k * n; e++) {
            kernel_grad[e] = beta != (T)0 ? beta * kernel_grad[e] : (T)0;
        }
        if (bias_grad != NULL && n > 0) {
            for (nnf_int i = 0; i < m; i++) {
                FN(tile_dz)(activation, 1, n, y != NULL ? y + i * n : NULL, dy + i * n, dz,
                            bias_sums, 1);
            }
            FN(store_bias_grad)(n, bias_sums, beta, bias_grad);
        }
        return NNF_OK;
    }

    T kernel_beta = beta;
    for (nnf_int q0 = 0; q0 < out_rows; q0 += tile_rows) {
        nnf_int q1 = conv_min(q0 + tile_rows, out_rows);
        nnf_int m0 = q0 * s->out_w;
        nnf_int pixels = (q1 - q0) * s->out_w;
        const T *y_tile = need_dz ? y + m0 * n : NULL;
        FN(tile_dz)(activation, pixels, n, y_tile, dy + m0 * n, dz, bias_sums, n_threads);
        const T *dz_tile = need_dz ? dz : dy + m0 * n;
        int status;

        /* Kernel gradient: kernel_grad = X^T dZ + kernel_beta * kernel_grad. */
        if (!direct) {
            const T *lowered = x + m0 * k;
            if (!identity) {
                FN(lower)(s, x, q0, q1, cols, n_threads);
                lowered = cols;
            }
            status = GEMM(k, n, pixels, (T)1, lowered, 1, k, dz_tile, n, 1, kernel_beta,
                          kernel_grad, n, 1, NULL, n_threads);
            if (status != NNF_OK) {
                return status;
            }
            kernel_beta = (T)1;
        }

        /* Input gradient: cols = dZ W^T, then back to the input pixels. */
        if (dx != NULL) {
            if (identity) {
                status = GEMM(pixels, k, n, (T)1, dz_tile, n, 1, kernel, 1, n, (T)0,
                              dx + m0 * k, k, 1, NULL, n_threads);
            } else {
                status = GEMM(pixels, k, n, (T)1, dz_tile, n, 1, kernel, 1, n, (T)0, cols, k,
                              1, NULL, n_threads);
                FN(col2im_add)(s, cols, q0, q1, dx, n_threads);
            }
            if (status != NNF_OK) {
                return status;
            }
        }
    }
    if (bias_sums != NULL) {
        FN(store_bias_grad)(n, bias_sums, beta, bias_grad);
    }
    return NNF_OK;
}

#undef FN
#undef GEMM
