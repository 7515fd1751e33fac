/*
 * The typed half of pool.c, included once per dtype with T (float or
 * double) and SUF (f32 or f64) defined. FN(name) appends the suffix.
 */
#define FN(name) NNF_CAT(name##_, SUF)

int FN(nnf_max_pool2d_forward)(const nnf_pool_shape *s, const T *x, T *y, int32_t *argmax,
                               int n_threads)
{
    if (nnf_pool_check_shape(s) != NNF_OK) {
        return NNF_EINVAL;
    }
    const nnf_int c = s->channels;
    const nnf_int rows = s->batch * s->out_h;
    double work = (double)rows * (double)s->out_w * (double)c * (double)(s->pool_h * s->pool_w);
    int nt = pool_threads(work, rows, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int row = 0; row < rows; row++) {
        nnf_int image = row / s->out_h;
        nnf_int oh = row - image * s->out_h;
        nnf_int ih_lo, ih_hi;
        pool_window(oh, s->stride_h, s->pad_top, s->pool_h, s->in_h, &ih_lo, &ih_hi);
        const T *img = x + image * s->in_h * s->in_w * c;
        for (nnf_int ow = 0; ow < s->out_w; ow++) {
            nnf_int iw_lo, iw_hi;
            pool_window(ow, s->stride_w, s->pad_left, s->pool_w, s->in_w, &iw_lo, &iw_hi);
            nnf_int offset = (row * s->out_w + ow) * c;
            T *restrict out = y + offset;
            int32_t *restrict arg = argmax != NULL ? argmax + offset : NULL;
            if (ih_lo >= ih_hi || iw_lo >= iw_hi) {
                for (nnf_int ci = 0; ci < c; ci++) {
                    out[ci] = (T)-INFINITY;
                    if (arg != NULL) {
                        arg[ci] = -1;
                    }
                }
                continue;
            }
            int first = 1;
            for (nnf_int ih = ih_lo; ih < ih_hi; ih++) {
                for (nnf_int iw = iw_lo; iw < iw_hi; iw++) {
                    int32_t base = (int32_t)((ih * s->in_w + iw) * c);
                    const T *restrict src = img + base;
                    if (first) {
                        first = 0;
                        for (nnf_int ci = 0; ci < c; ci++) {
                            out[ci] = src[ci];
                        }
                        if (arg != NULL) {
                            for (nnf_int ci = 0; ci < c; ci++) {
                                arg[ci] = base + (int32_t)ci;
                            }
                        }
                    } else if (arg == NULL) {
                        for (nnf_int ci = 0; ci < c; ci++) {
                            out[ci] = src[ci] > out[ci] ? src[ci] : out[ci];
                        }
                    } else {
                        /* The index is chosen with a mask instead of a
                         * branch, so that the loop vectorizes. */
                        for (nnf_int ci = 0; ci < c; ci++) {
                            T value = src[ci];
                            T best = out[ci];
                            int32_t larger = -(int32_t)(value > best);
                            out[ci] = value > best ? value : best;
                            arg[ci] = (arg[ci] & ~larger) | ((base + (int32_t)ci) & larger);
                        }
                    }
                }
            }
        }
    }
    return NNF_OK;
}

int FN(nnf_max_pool2d_backward)(const nnf_pool_shape *s, const T *dy, const int32_t *argmax,
                                T *dx, int n_threads)
{
    if (nnf_pool_check_shape(s) != NNF_OK) {
        return NNF_EINVAL;
    }
    const nnf_int in_size = s->in_h * s->in_w * s->channels;
    const nnf_int out_size = s->out_h * s->out_w * s->channels;
    int nt = pool_threads((double)s->batch * (double)(in_size + out_size), s->batch, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int image = 0; image < s->batch; image++) {
        T *dx_img = dx + image * in_size;
        const T *dy_img = dy + image * out_size;
        const int32_t *arg = argmax + image * out_size;
        memset(dx_img, 0, (size_t)in_size * sizeof(T));
        for (nnf_int e = 0; e < out_size; e++) {
            if (arg[e] >= 0) {
                dx_img[arg[e]] += dy_img[e];
            }
        }
    }
    return NNF_OK;
}

int FN(nnf_avg_pool2d_forward)(const nnf_pool_shape *s, const T *x, T *y, int n_threads)
{
    if (nnf_pool_check_shape(s) != NNF_OK) {
        return NNF_EINVAL;
    }
    const nnf_int c = s->channels;
    const nnf_int rows = s->batch * s->out_h;
    double work = (double)rows * (double)s->out_w * (double)c * (double)(s->pool_h * s->pool_w);
    int nt = pool_threads(work, rows, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int row = 0; row < rows; row++) {
        nnf_int image = row / s->out_h;
        nnf_int oh = row - image * s->out_h;
        nnf_int ih_lo, ih_hi;
        pool_window(oh, s->stride_h, s->pad_top, s->pool_h, s->in_h, &ih_lo, &ih_hi);
        const T *img = x + image * s->in_h * s->in_w * c;
        for (nnf_int ow = 0; ow < s->out_w; ow++) {
            nnf_int iw_lo, iw_hi;
            pool_window(ow, s->stride_w, s->pad_left, s->pool_w, s->in_w, &iw_lo, &iw_hi);
            T *restrict out = y + (row * s->out_w + ow) * c;
            for (nnf_int ci = 0; ci < c; ci++) {
                out[ci] = (T)0;
            }
            for (nnf_int ih = ih_lo; ih < ih_hi; ih++) {
                for (nnf_int iw = iw_lo; iw < iw_hi; iw++) {
                    const T *src = img + (ih * s->in_w + iw) * c;
                    for (nnf_int ci = 0; ci < c; ci++) {
                        out[ci] += src[ci];
                    }
                }
            }
            nnf_int count = (ih_hi - ih_lo) * (iw_hi - iw_lo);
            if (count > 0) {
                T scale = (T)1 / (T)count;
                for (nnf_int ci = 0; ci < c; ci++) {
                    out[ci] *= scale;
                }
            }
        }
    }
    return NNF_OK;
}

int FN(nnf_avg_pool2d_backward)(const nnf_pool_shape *s, const T *dy, T *dx, int n_threads)
{
    if (nnf_pool_check_shape(s) != NNF_OK) {
        return NNF_EINVAL;
    }
    const nnf_int c = s->channels;
    const nnf_int in_size = s->in_h * s->in_w * c;
    const nnf_int out_size = s->out_h * s->out_w * c;
    double work = (double)s->batch * (double)(in_size + out_size * s->pool_h * s->pool_w);
    int nt = pool_threads(work, s->batch, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int image = 0; image < s->batch; image++) {
        T *dx_img = dx + image * in_size;
        memset(dx_img, 0, (size_t)in_size * sizeof(T));
        for (nnf_int oh = 0; oh < s->out_h; oh++) {
            nnf_int ih_lo, ih_hi;
            pool_window(oh, s->stride_h, s->pad_top, s->pool_h, s->in_h, &ih_lo, &ih_hi);
            for (nnf_int ow = 0; ow < s->out_w; ow++) {
                nnf_int iw_lo, iw_hi;
                pool_window(ow, s->stride_w, s->pad_left, s->pool_w, s->in_w, &iw_lo, &iw_hi);
                nnf_int count = (ih_hi - ih_lo) * (iw_hi - iw_lo);
                if (count <= 0) {
                    continue;
                }
                T scale = (T)1 / (T)count;
                const T *g = dy + ((image * s->out_h + oh) * s->out_w + ow) * c;
                for (nnf_int ih = ih_lo; ih < ih_hi; ih++) {
                    for (nnf_int iw = iw_lo; iw < iw_hi; iw++) {
                        T *restrict dst = dx_img + (ih * s->in_w + iw) * c;
                        for (nnf_int ci = 0; ci < c; ci++) {
                            dst[ci] += g[ci] * scale;
                        }
                    }
                }
            }
        }
    }
    return NNF_OK;
}

#undef FN
