/*
 * ImageDataGenerator.fit: the featurewise statistics and the ZCA whitening
 * matrix from sample images, in Keras's order, in double precision. The
 * covariance and the matrix products go through BLAS and the symmetric
 * eigendecomposition through LAPACK (sigma is symmetric positive
 * semi-definite, so its eigenvectors and |eigenvalues| are the U and s of
 * the SVD Keras takes; the result U diag(1/sqrt(s + eps)) U^T does not
 * depend on the eigenvectors' signs or order).
 */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fortran LAPACK and BLAS (the trailing lengths are gfortran's hidden
 * string-length arguments). */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);
void dsyrk_(const char *uplo, const char *trans, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *beta, double *c, const int *ldc,
            size_t uplo_len, size_t trans_len);
void dgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
            const double *alpha, const double *a, const int *lda, const double *b, const int *ldb,
            const double *beta, double *c, const int *ldc, size_t ta_len, size_t tb_len);

void graft_generator_stats_free(graft_generator_stats *st)
{
    if (!st) return;
    free(st->principal_components);
    memset(st, 0, sizeof *st);
}

/* principal_components from the n x d rows of x (already transformed). */
static graft_status zca(const double *x, int n, int d, double eps, float *pc)
{
    graft_status s = GRAFT_OK;
    double *sigma = NULL, *vals = NULL, *work = NULL, *scaled = NULL, *prod = NULL;
    int *iwork = NULL;
    size_t dd = (size_t)d * (size_t)d;
    sigma = malloc(dd * sizeof *sigma);
    vals = malloc((size_t)d * sizeof *vals);
    scaled = malloc(dd * sizeof *scaled);
    prod = malloc(dd * sizeof *prod);
    if (!sigma || !vals || !scaled || !prod) {
        s = graft_fail(GRAFT_ENOMEM, "ZCA: no memory for %dx%d matrices", d, d);
        goto done;
    }
    /* Row-major x (n x d) is column-major X^T (d x n): sigma = X^T X / n is
     * "N" in Fortran's terms. Only the upper triangle (lower, row-major) is
     * filled; dsyevd reads the same one. */
    double alpha = 1.0 / n, zero = 0, one = 1;
    dsyrk_("U", "N", &d, &n, &alpha, x, &d, &zero, sigma, &d, 1, 1);
    int lwork = -1, liwork = -1, info = 0, iw_query = 0;
    double w_query = 0;
    dsyevd_("V", "U", &d, sigma, &d, vals, &w_query, &lwork, &iw_query, &liwork, &info, 1, 1);
    if (info != 0 || w_query < 1 || w_query > 1e12 || iw_query < 1) {
        s = graft_fail(GRAFT_EINVAL, "ZCA: LAPACK's dsyevd workspace query failed (info %d)", info);
        goto done;
    }
    lwork = (int)w_query;
    liwork = iw_query;
    work = malloc((size_t)lwork * sizeof *work);
    iwork = malloc((size_t)liwork * sizeof *iwork);
    if (!work || !iwork) {
        s = graft_fail(GRAFT_ENOMEM, "ZCA: no memory for LAPACK's workspace");
        goto done;
    }
    dsyevd_("V", "U", &d, sigma, &d, vals, work, &lwork, iwork, &liwork, &info, 1, 1);
    if (info != 0) {
        s = graft_fail(GRAFT_EINVAL,
                       "ZCA: the eigendecomposition of the %dx%d covariance did "
                       "not converge (LAPACK dsyevd info %d)",
                       d, d, info);
        goto done;
    }
    /* sigma now holds the eigenvectors, column-major: column k at sigma + k*d. */
    for (int k = 0; k < d; k++) {
        double f = 1.0 / sqrt(fabs(vals[k]) + eps);
        for (int i = 0; i < d; i++)
            scaled[(size_t)k * d + i] = sigma[(size_t)k * d + i] * f;
    }
    /* (U diag(f)) U^T, symmetric, so the layout does not matter. */
    dgemm_("N", "T", &d, &d, &d, &one, scaled, &d, sigma, &d, &zero, prod, &d, 1, 1);
    for (size_t i = 0; i < dd; i++)
        pc[i] = (float)prod[i];
done:
    free(sigma);
    free(vals);
    free(work);
    free(iwork);
    free(scaled);
    free(prod);
    return s;
}

graft_status graft_generator_fit(graft_image_data_generator *gen, const float *x, int n, int h,
                                 int w, int c, graft_generator_stats *st)
{
    if (!gen || !x || !st) return graft_fail(GRAFT_EINVAL, "generator fit: NULL argument");
    memset(st, 0, sizeof *st);
    if (n < 1 || h < 1 || w < 1 || c < 1 || c > 4)
        return graft_fail(GRAFT_EINVAL, "generator fit: %d images of %dx%dx%d (1 to 4 channels)", n,
                          h, w, c);
    size_t d = (size_t)h * (size_t)w * (size_t)c, total;
    if (gen->zca_whitening && d > 46340)
        return graft_fail(GRAFT_EINVAL,
                          "generator fit: ZCA on %dx%dx%d images needs a %zux%zu matrix; use "
                          "smaller images",
                          h, w, c, d, d);
    if (!graft_mul_ok(d, (size_t)n, &total) || total > (size_t)INT32_MAX)
        return graft_fail(GRAFT_EINVAL, "generator fit: %d images of %zu values is too many", n, d);
    double *v = malloc((total ? total : 1) * sizeof *v);
    if (!v) return graft_fail(GRAFT_ENOMEM, "generator fit: no memory for %d images", n);
    double scale = gen->rescale ? gen->rescale : 1.0;
    for (size_t i = 0; i < total; i++)
        v[i] = (double)x[i] * scale;
    st->c = c;
    /* Two passes per channel (mean, then squared deviations), as np.mean and np.std. */
    double mean[4] = {0}, var[4] = {0};
    size_t per = total / (size_t)c;
    for (size_t i = 0; i < total; i++)
        mean[i % (size_t)c] += v[i];
    for (int k = 0; k < c; k++)
        mean[k] /= (double)per;
    for (size_t i = 0; i < total; i++) {
        double e = v[i] - mean[i % (size_t)c];
        var[i % (size_t)c] += e * e;
    }
    for (int k = 0; k < c; k++) {
        st->mean[k] = (float)mean[k];
        st->std[k] = (float)sqrt(var[k] / (double)per);
    }
    if (gen->featurewise_center)
        for (size_t i = 0; i < total; i++)
            v[i] -= mean[i % (size_t)c];
    if (gen->featurewise_std_normalization)
        for (size_t i = 0; i < total; i++)
            v[i] /= sqrt(var[i % (size_t)c] / (double)per) + 1e-6;
    graft_status s = GRAFT_OK;
    if (gen->zca_whitening) {
        st->principal_components = malloc(d * d * sizeof *st->principal_components);
        if (!st->principal_components) {
            s = graft_fail(GRAFT_ENOMEM, "generator fit: no memory for a %zux%zu ZCA matrix", d, d);
        } else {
            double eps = gen->zca_epsilon ? gen->zca_epsilon : 1e-6;
            s = zca(v, n, (int)d, eps, st->principal_components);
        }
        st->dim = (int)d;
    }
    free(v);
    if (s != GRAFT_OK) {
        graft_generator_stats_free(st);
        return s;
    }
    if (gen->featurewise_center) gen->mean = st->mean;
    if (gen->featurewise_std_normalization) gen->std = st->std;
    if (gen->zca_whitening) {
        gen->principal_components = st->principal_components;
        gen->zca_dim = st->dim;
    }
    return GRAFT_OK;
}

graft_status graft_generator_fit_augmented(graft_image_data_generator *gen, const float *x, int n,
                                           int h, int w, int c, int rounds, uint64_t seed,
                                           graft_generator_stats *st)
{
    if (!gen || !x || !st) return graft_fail(GRAFT_EINVAL, "generator fit: NULL argument");
    if (rounds < 1 || rounds > 1000 || n < 1 || n > INT32_MAX / rounds)
        return graft_fail(GRAFT_EINVAL, "generator fit: %d rounds of %d images", rounds, n);
    if (h < 1 || w < 1 || c < 1 || c > 4)
        return graft_fail(GRAFT_EINVAL, "generator fit: images of %dx%dx%d (1 to 4 channels)", h, w,
                          c);
    size_t per = (size_t)h * (size_t)w * (size_t)c, total;
    if (!graft_mul_ok(per, (size_t)n * (size_t)rounds, &total) || total == 0 ||
        total > (size_t)INT32_MAX)
        return graft_fail(GRAFT_EINVAL, "generator fit: %d rounds of %d images is too many", rounds,
                          n);
    float *ax = malloc(total * sizeof *ax), *tmp = malloc(per * sizeof *tmp);
    if (!ax || !tmp) {
        free(ax);
        free(tmp);
        return graft_fail(GRAFT_ENOMEM, "generator fit: no memory for %d rounds of %d images",
                          rounds, n);
    }
    /* Keras: ax[i + r * n] = random_transform(x[i]), before rescaling. */
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            float *dst = ax + ((size_t)r * (size_t)n + (size_t)i) * per;
            memcpy(dst, x + (size_t)i * per, per * sizeof *dst);
            graft_rng rng;
            graft_rng_seed(&rng, graft_mix64(graft_mix64(seed, (uint64_t)r), (uint64_t)i));
            graft_transform t;
            graft_transform_random(gen, h, w, &rng, &t);
            graft_transform_apply(&t, gen->fill_mode, gen->cval,
                                  gen->interpolation_order_nearest ? 0 : 1, dst, tmp, h, w, c);
        }
    free(tmp);
    graft_status s = graft_generator_fit(gen, ax, n * rounds, h, w, c, st);
    free(ax);
    return s;
}

graft_status graft_generator_fit_directory(graft_image_data_generator *gen, const char *dir,
                                           const graft_flow_cfg *cfg_in, int n_sample,
                                           graft_generator_stats *st)
{
    if (!gen || !dir || !cfg_in || !st || n_sample < 0)
        return graft_fail(GRAFT_EINVAL, "generator fit on %s: bad argument", dir ? dir : "(null)");
    /* The images as the flow decodes them: no transform, no standardisation. */
    graft_image_data_generator plain = {.validation_split = gen->validation_split};
    graft_flow_cfg cfg = *cfg_in;
    cfg.quiet = 1;
    cfg.class_mode = GRAFT_CLASS_NONE;
    graft_source *src = NULL;
    graft_status s = graft_flow_from_directory(dir, &plain, &cfg, &src);
    if (s != GRAFT_OK) return s;
    int n_all = graft_flow_samples(src);
    int want = n_sample && n_sample < n_all ? n_sample : n_all;
    int h = src->x_shape.dim[0], w = src->x_shape.dim[1], c = src->x_shape.dim[2];
    size_t per = (size_t)h * (size_t)w * (size_t)c;
    float *x = malloc(((size_t)want + (size_t)src->batch_size) * per * sizeof *x);
    if (!x) {
        src->free(src);
        return graft_fail(GRAFT_ENOMEM, "generator fit on %s: no memory for %d images", dir, want);
    }
    int got = 0;
    for (int b = 0; b < src->length && got < want && s == GRAFT_OK; b++) {
        int k = 0;
        float no_labels[1]; /* class_mode NONE: y_dim is 0 */
        s = src->next(src, x + (size_t)got * per, no_labels, &k);
        got += k;
    }
    src->free(src);
    if (s == GRAFT_OK && got == 0)
        s = graft_fail(GRAFT_EFORMAT, "generator fit on %s: no image could be read", dir);
    if (s == GRAFT_OK) s = graft_generator_fit(gen, x, got < want ? got : want, h, w, c, st);
    free(x);
    return s;
}
