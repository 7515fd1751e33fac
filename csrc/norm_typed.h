/*
 * The typed half of norm.c, included once per dtype with T (float or
 * double) and SUF (f32 or f64) defined. FN(name) appends the suffix.
 */
#define FN(name) NNF_CAT(name##_, SUF)

int FN(nnf_batch_norm_forward)(nnf_int rows, nnf_int channels, const T *x, const T *gamma,
                               const T *beta, double epsilon, T *y, T *mean, T *var,
                               int n_threads)
{
    if (rows < 1 || channels < 0 || !(epsilon >= 0.0)) {
        return NNF_EINVAL;
    }
    const nnf_int chunks = norm_chunk_count(rows);
    double *sums = (double *)malloc((size_t)((chunks + 2) * channels) * sizeof(double) + 1);
    T *coef = (T *)malloc((size_t)(2 * channels) * sizeof(T) + 1);
    if (sums == NULL || coef == NULL) {
        free(sums);
        free(coef);
        return NNF_ENOMEM;
    }
    double *mean_d = sums + chunks * channels;
    double *var_d = mean_d + channels;
    T *mean_t = coef;
    T *scale = coef + channels;
    int nt = norm_threads((double)rows * (double)channels, n_threads);
    (void)nt;

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* Mean of each channel. */
#pragma omp for schedule(static)
        for (nnf_int q = 0; q < chunks; q++) {
            nnf_int r0, r1;
            norm_chunk_rows(rows, chunks, q, &r0, &r1);
            double *sum = sums + q * channels;
            for (nnf_int j = 0; j < channels; j++) {
                sum[j] = 0.0;
            }
            for (nnf_int r = r0; r < r1; r++) {
                const T *row = x + r * channels;
                for (nnf_int j = 0; j < channels; j++) {
                    sum[j] += row[j];
                }
            }
        }
#pragma omp single
        {
            norm_add_chunks(chunks, channels, sums, mean_d);
            for (nnf_int j = 0; j < channels; j++) {
                mean_d[j] /= (double)rows;
            }
        }

        /* Variance, from the squared deviations (two passes keep it accurate
         * when the mean is large next to the spread). */
#pragma omp for schedule(static)
        for (nnf_int q = 0; q < chunks; q++) {
            nnf_int r0, r1;
            norm_chunk_rows(rows, chunks, q, &r0, &r1);
            double *sum = sums + q * channels;
            for (nnf_int j = 0; j < channels; j++) {
                sum[j] = 0.0;
            }
            for (nnf_int r = r0; r < r1; r++) {
                const T *row = x + r * channels;
                for (nnf_int j = 0; j < channels; j++) {
                    double d = (double)row[j] - mean_d[j];
                    sum[j] += d * d;
                }
            }
        }
#pragma omp single
        {
            norm_add_chunks(chunks, channels, sums, var_d);
            for (nnf_int j = 0; j < channels; j++) {
                var_d[j] /= (double)rows;
                double g = gamma != NULL ? (double)gamma[j] : 1.0;
                mean[j] = (T)mean_d[j];
                var[j] = (T)var_d[j];
                mean_t[j] = (T)mean_d[j];
                scale[j] = (T)(g / sqrt(var_d[j] + epsilon));
            }
        }

        /* y = (x - mean) * gamma / sqrt(var + epsilon) + beta. */
#pragma omp for schedule(static)
        for (nnf_int r = 0; r < rows; r++) {
            const T *row = x + r * channels;
            T *out = y + r * channels;
            for (nnf_int j = 0; j < channels; j++) {
                out[j] = (row[j] - mean_t[j]) * scale[j] + (beta != NULL ? beta[j] : (T)0);
            }
        }
    }
    free(sums);
    free(coef);
    return NNF_OK;
}

int FN(nnf_batch_norm_inference)(nnf_int rows, nnf_int channels, const T *x, const T *mean,
                                 const T *var, const T *gamma, const T *beta, double epsilon,
                                 T *y, int n_threads)
{
    if (rows < 0 || channels < 0 || !(epsilon >= 0.0)) {
        return NNF_EINVAL;
    }
    T *scale = (T *)malloc((size_t)channels * sizeof(T) + 1);
    if (scale == NULL) {
        return NNF_ENOMEM;
    }
    for (nnf_int j = 0; j < channels; j++) {
        double g = gamma != NULL ? (double)gamma[j] : 1.0;
        scale[j] = (T)(g / sqrt((double)var[j] + epsilon));
    }
    int nt = norm_threads((double)rows * (double)channels, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int r = 0; r < rows; r++) {
        const T *row = x + r * channels;
        T *out = y + r * channels;
        for (nnf_int j = 0; j < channels; j++) {
            out[j] = (row[j] - mean[j]) * scale[j] + (beta != NULL ? beta[j] : (T)0);
        }
    }
    free(scale);
    return NNF_OK;
}

int FN(nnf_batch_norm_backward)(nnf_int rows, nnf_int channels, const T *x, const T *mean,
                                const T *var, const T *gamma, double epsilon, const T *dy,
                                T *dx, T *gamma_grad, T *beta_grad, int n_threads)
{
    if (rows < 1 || channels < 0 || !(epsilon >= 0.0)) {
        return NNF_EINVAL;
    }
    const nnf_int chunks = norm_chunk_count(rows);
    double *sums = (double *)malloc((size_t)((2 * chunks + 2) * channels) * sizeof(double) + 1);
    T *coef = (T *)malloc((size_t)(4 * channels) * sizeof(T) + 1);
    if (sums == NULL || coef == NULL) {
        free(sums);
        free(coef);
        return NNF_ENOMEM;
    }
    double *dy_sums = sums;
    double *dyx_sums = sums + chunks * channels;
    double *sum_dy = dyx_sums + chunks * channels;
    double *sum_dyx = sum_dy + channels;
    T *inv_std = coef;
    T *dx_scale = coef + channels;
    T *dy_mean = coef + 2 * channels;
    T *dyx_mean = coef + 3 * channels;
    for (nnf_int j = 0; j < channels; j++) {
        inv_std[j] = (T)(1.0 / sqrt((double)var[j] + epsilon));
    }
    int nt = norm_threads((double)rows * (double)channels, n_threads);
    (void)nt;

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* Sums of dy and of dy * x_hat over the rows. */
#pragma omp for schedule(static)
        for (nnf_int q = 0; q < chunks; q++) {
            nnf_int r0, r1;
            norm_chunk_rows(rows, chunks, q, &r0, &r1);
            double *s_dy = dy_sums + q * channels;
            double *s_dyx = dyx_sums + q * channels;
            for (nnf_int j = 0; j < channels; j++) {
                s_dy[j] = 0.0;
                s_dyx[j] = 0.0;
            }
            for (nnf_int r = r0; r < r1; r++) {
                const T *x_row = x + r * channels;
                const T *dy_row = dy + r * channels;
                for (nnf_int j = 0; j < channels; j++) {
                    T x_hat = (x_row[j] - mean[j]) * inv_std[j];
                    s_dy[j] += dy_row[j];
                    s_dyx[j] += (double)(dy_row[j] * x_hat);
                }
            }
        }
#pragma omp single
        {
            norm_add_chunks(chunks, channels, dy_sums, sum_dy);
            norm_add_chunks(chunks, channels, dyx_sums, sum_dyx);
            for (nnf_int j = 0; j < channels; j++) {
                if (gamma_grad != NULL) {
                    gamma_grad[j] = (T)sum_dyx[j];
                }
                if (beta_grad != NULL) {
                    beta_grad[j] = (T)sum_dy[j];
                }
                dx_scale[j] = (gamma != NULL ? gamma[j] : (T)1) * inv_std[j];
                dy_mean[j] = (T)(sum_dy[j] / (double)rows);
                dyx_mean[j] = (T)(sum_dyx[j] / (double)rows);
            }
        }

        /* dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)). */
        if (dx != NULL) {
#pragma omp for schedule(static)
            for (nnf_int r = 0; r < rows; r++) {
                const T *x_row = x + r * channels;
                const T *dy_row = dy + r * channels;
                T *out = dx + r * channels;
                for (nnf_int j = 0; j < channels; j++) {
                    T x_hat = (x_row[j] - mean[j]) * inv_std[j];
                    out[j] = dx_scale[j] * (dy_row[j] - dy_mean[j] - x_hat * dyx_mean[j]);
                }
            }
        }
    }
    free(sums);
    free(coef);
    return NNF_OK;
}

/* Mean and biased variance of one row of n values, in double. */
static void FN(row_moments)(const T *row, nnf_int n, double *mean, double *var)
{
    double sum = 0.0;
    for (nnf_int j = 0; j < n; j++) {
        sum += row[j];
    }
    double mu = n > 0 ? sum / (double)n : 0.0;
    double sq = 0.0;
    for (nnf_int j = 0; j < n; j++) {
        double d = (double)row[j] - mu;
        sq += d * d;
    }
    *mean = mu;
    *var = n > 0 ? sq / (double)n : 0.0;
}

int FN(nnf_layer_norm_forward)(nnf_int rows, nnf_int channels, const T *x, const T *gamma,
                               const T *beta, double epsilon, T *y, T *mean, T *var,
                               int n_threads)
{
    if (rows < 0 || channels < 0 || !(epsilon >= 0.0)) {
        return NNF_EINVAL;
    }
    int nt = norm_threads((double)rows * (double)channels, n_threads);
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int r = 0; r < rows; r++) {
        const T *row = x + r * channels;
        T *out = y + r * channels;
        double mu, sigma2;
        FN(row_moments)(row, channels, &mu, &sigma2);
        mean[r] = (T)mu;
        var[r] = (T)sigma2;
        T mu_t = (T)mu;
        T inv_std = (T)(1.0 / sqrt(sigma2 + epsilon));
        for (nnf_int j = 0; j < channels; j++) {
            T x_hat = (row[j] - mu_t) * inv_std;
            T g = gamma != NULL ? gamma[j] : (T)1;
            out[j] = x_hat * g + (beta != NULL ? beta[j] : (T)0);
        }
    }
    return NNF_OK;
}

int FN(nnf_layer_norm_backward)(nnf_int rows, nnf_int channels, const T *x, const T *mean,
                                const T *var, const T *gamma, double epsilon, const T *dy,
                                T *dx, T *gamma_grad, T *beta_grad, int n_threads)
{
    if (rows < 0 || channels < 0 || !(epsilon >= 0.0)) {
        return NNF_EINVAL;
    }
    const nnf_int chunks = norm_chunk_count(rows);
    double *sums = (double *)malloc((size_t)((2 * chunks + 2) * channels) * sizeof(double) + 1);
    if (sums == NULL) {
        return NNF_ENOMEM;
    }
    double *dyx_sums = sums;
    double *dy_sums = sums + chunks * channels;
    double *total = dy_sums + chunks * channels;
    int nt = norm_threads((double)rows * (double)channels, n_threads);
    (void)nt;

    /* Each chunk of rows: dx row by row, and the chunk's gamma and beta sums. */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (nnf_int q = 0; q < chunks; q++) {
        nnf_int r0, r1;
        norm_chunk_rows(rows, chunks, q, &r0, &r1);
        double *s_dyx = dyx_sums + q * channels;
        double *s_dy = dy_sums + q * channels;
        for (nnf_int j = 0; j < channels; j++) {
            s_dyx[j] = 0.0;
            s_dy[j] = 0.0;
        }
        for (nnf_int r = r0; r < r1; r++) {
            const T *x_row = x + r * channels;
            const T *dy_row = dy + r * channels;
            T mu = mean[r];
            T inv_std = (T)(1.0 / sqrt((double)var[r] + epsilon));
            double sum_g = 0.0;
            double sum_gx = 0.0;
            for (nnf_int j = 0; j < channels; j++) {
                T x_hat = (x_row[j] - mu) * inv_std;
                T g = dy_row[j] * (gamma != NULL ? gamma[j] : (T)1);
                sum_g += g;
                sum_gx += (double)(g * x_hat);
                s_dyx[j] += (double)(dy_row[j] * x_hat);
                s_dy[j] += dy_row[j];
            }
            if (dx != NULL && channels > 0) {
                T g_mean = (T)(sum_g / (double)channels);
                T gx_mean = (T)(sum_gx / (double)channels);
                T *out = dx + r * channels;
                for (nnf_int j = 0; j < channels; j++) {
                    T x_hat = (x_row[j] - mu) * inv_std;
                    T g = dy_row[j] * (gamma != NULL ? gamma[j] : (T)1);
                    out[j] = inv_std * (g - g_mean - x_hat * gx_mean);
                }
            }
        }
    }
    if (gamma_grad != NULL) {
        norm_add_chunks(chunks, channels, dyx_sums, total);
        for (nnf_int j = 0; j < channels; j++) {
            gamma_grad[j] = (T)total[j];
        }
    }
    if (beta_grad != NULL) {
        norm_add_chunks(chunks, channels, dy_sums, total);
        for (nnf_int j = 0; j < channels; j++) {
            beta_grad[j] = (T)total[j];
        }
    }
    free(sums);
    return NNF_OK;
}

#undef FN
