/*
 * ImageDataGenerator's random transforms with Keras's exact meaning:
 * the matrix of apply_affine_transform (rotation . shift . shear . zoom about
 * the image centre, then Keras's x/y swap), resampled the way
 * scipy.ndimage.affine_transform does (order 1, modes nearest / constant /
 * reflect / wrap), then apply_channel_shift and apply_brightness_shift.
 * Flips are folded into the same matrix, so one pass does all the geometry.
 */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double uniform(graft_rng *rng, double lo, double hi)
{
    double u = (double)(graft_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return lo + (hi - lo) * u;
}

bool graft_generator_is_random(const graft_image_data_generator *g)
{
    bool zoom = g->zoom_range[1] == 0 ? g->zoom_range[0] != 0
                                      : !(g->zoom_range[0] == 1 && g->zoom_range[1] == 1);
    return g->rotation_range || g->height_shift_range || g->width_shift_range || g->shear_range ||
           zoom || g->horizontal_flip || g->vertical_flip || g->channel_shift_range ||
           g->brightness_range[0] || g->brightness_range[1];
}

void graft_transform_random(const graft_image_data_generator *g, int h, int w, graft_rng *rng,
                            graft_transform *t)
{
    memset(t, 0, sizeof *t);
    t->zx = t->zy = 1.0;
    if (g->rotation_range) t->theta = uniform(rng, -g->rotation_range, g->rotation_range);
    if (g->height_shift_range) {
        t->tx = uniform(rng, -g->height_shift_range, g->height_shift_range);
        if (g->height_shift_range < 1) t->tx *= h;
    }
    if (g->width_shift_range) {
        t->ty = uniform(rng, -g->width_shift_range, g->width_shift_range);
        if (g->width_shift_range < 1) t->ty *= w;
    }
    if (g->shear_range) t->shear = uniform(rng, -g->shear_range, g->shear_range);
    double zlo = g->zoom_range[0], zhi = g->zoom_range[1];
    if (zhi == 0) {
        zlo = 1.0 - g->zoom_range[0];
        zhi = 1.0 + g->zoom_range[0];
    }
    if (!(zlo == 1 && zhi == 1)) {
        t->zx = uniform(rng, zlo, zhi);
        t->zy = uniform(rng, zlo, zhi);
    }
    t->flip_horizontal = g->horizontal_flip && uniform(rng, 0, 1) < 0.5;
    t->flip_vertical = g->vertical_flip && uniform(rng, 0, 1) < 0.5;
    if (g->channel_shift_range) {
        t->has_channel_shift = 1;
        t->channel_shift_intensity = uniform(rng, -g->channel_shift_range, g->channel_shift_range);
    }
    if (g->brightness_range[0] || g->brightness_range[1]) {
        t->has_brightness = 1;
        t->brightness = uniform(rng, g->brightness_range[0], g->brightness_range[1]);
    }
}

static void matmul3(const double a[3][3], const double b[3][3], double out[3][3])
{
    double r[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) r[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
    memcpy(out, r, sizeof r);
}

/* Keras's matrix (in its x, y order), centred and swapped into (row, col):
 * input index = A . output index + off. Returns 0 when the transform is the
 * identity (Keras then skips the resampling). */
static int keras_matrix(const graft_transform *t, int h, int w, double A[2][2], double off[2])
{
    double m[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    int any = 0;
    if (t->theta != 0) {
        double th = t->theta * M_PI / 180.0;
        double r[3][3] = {{cos(th), -sin(th), 0}, {sin(th), cos(th), 0}, {0, 0, 1}};
        matmul3(m, r, m);
        any = 1;
    }
    if (t->tx != 0 || t->ty != 0) {
        double s[3][3] = {{1, 0, t->tx}, {0, 1, t->ty}, {0, 0, 1}};
        matmul3(m, s, m);
        any = 1;
    }
    if (t->shear != 0) {
        double sh = t->shear * M_PI / 180.0;
        double s[3][3] = {{1, -sin(sh), 0}, {0, cos(sh), 0}, {0, 0, 1}};
        matmul3(m, s, m);
        any = 1;
    }
    if (t->zx != 1 || t->zy != 1) {
        double z[3][3] = {{t->zx, 0, 0}, {0, t->zy, 0}, {0, 0, 1}};
        matmul3(m, z, m);
        any = 1;
    }
    if (!any) {
        A[0][0] = A[1][1] = 1;
        A[0][1] = A[1][0] = 0;
        off[0] = off[1] = 0;
        return 0;
    }
    /* transform_matrix_offset_center(m, h, w): Keras centres its first
     * coordinate with the height and the second with the width. */
    double ox = h / 2.0 - 0.5, oy = w / 2.0 - 0.5;
    double o[3][3] = {{1, 0, ox}, {0, 1, oy}, {0, 0, 1}};
    double r[3][3] = {{1, 0, -ox}, {0, 1, -oy}, {0, 0, 1}};
    matmul3(o, m, m);
    matmul3(m, r, m);
    /* M' = P M P with P swapping the first two coordinates. */
    A[0][0] = m[1][1];
    A[0][1] = m[1][0];
    A[1][0] = m[0][1];
    A[1][1] = m[0][0];
    off[0] = m[1][2];
    off[1] = m[0][2];
    return 1;
}

/* scipy.ndimage's map_coordinate for the modes Keras offers; returns -1 for
 * a point that takes cval. */
static double map_coord(double in, int len, graft_fill_mode mode)
{
    if (in < 0) {
        switch (mode) {
        case GRAFT_FILL_REFLECT:
            if (len <= 1) return 0;
            {
                double sz2 = 2.0 * len;
                if (in < -sz2) in = sz2 * (double)(long)(-in / sz2) + in;
                in = in < -len ? in + sz2 : -in - 1;
            }
            return in;
        case GRAFT_FILL_WRAP:
            if (len <= 1) return 0;
            {
                double sz = len - 1;
                in += sz * ((double)(long)(-in / sz) + 1);
            }
            return in;
        case GRAFT_FILL_NEAREST: return 0;
        case GRAFT_FILL_CONSTANT: return -1;
        }
    } else if (in > len - 1) {
        switch (mode) {
        case GRAFT_FILL_REFLECT:
            if (len <= 1) return 0;
            {
                double sz2 = 2.0 * len;
                in -= sz2 * (double)(long)(in / sz2);
                if (in >= len) in = sz2 - in - 1;
            }
            return in;
        case GRAFT_FILL_WRAP:
            if (len <= 1) return 0;
            {
                double sz = len - 1;
                in -= sz * (double)(long)(in / sz);
            }
            return in;
        case GRAFT_FILL_NEAREST: return len - 1;
        case GRAFT_FILL_CONSTANT: return -1;
        }
    }
    return in;
}

/* scipy's whole-sample mirror for spline neighbours outside the image. */
static inline int mirror(long i, int len)
{
    if (len <= 1) return 0;
    long s2 = 2L * len - 2;
    if (i < 0) {
        i = s2 * (-i / s2) + i;
        i = i <= 1 - len ? i + s2 : -i;
    } else if (i >= len) {
        i -= s2 * (i / s2);
        if (i >= len) i = s2 - i;
    }
    return (int)i;
}

/* Per axis: the neighbours and weights of one coordinate; 0 when it takes cval. */
static int axis_taps(double cc, int len, graft_fill_mode mode, int order, int idx[2], double wt[2])
{
    cc = map_coord(cc, len, mode);
    if (!(cc > -1.0) && mode != GRAFT_FILL_NEAREST) return 0;
    if (order == 0) {
        long s = (long)floor(cc + 0.5);
        idx[0] = idx[1] = mirror(s, len);
        wt[0] = 1;
        wt[1] = 0;
        return 1;
    }
    long s = (long)floor(cc);
    double f = cc - floor(cc);
    idx[0] = mirror(s, len);
    idx[1] = mirror(s + 1, len);
    wt[0] = 1.0 - f;
    wt[1] = 1.0 - wt[0];
    return 1;
}

void graft_transform_apply(const graft_transform *t, graft_fill_mode fill, float cval, int order,
                           float *x, float *tmp, int h, int w, int c)
{
    double A[2][2], off[2];
    int affine = keras_matrix(t, h, w, A, off);
    if (affine || t->flip_horizontal || t->flip_vertical) {
        /* Flipping the output after the transform is reading output index
         * (r, W-1-c) / (H-1-r, c): fold it into A and off. */
        if (t->flip_horizontal) {
            off[0] += A[0][1] * (w - 1);
            off[1] += A[1][1] * (w - 1);
            A[0][1] = -A[0][1];
            A[1][1] = -A[1][1];
        }
        if (t->flip_vertical) {
            off[0] += A[0][0] * (h - 1);
            off[1] += A[1][0] * (h - 1);
            A[0][0] = -A[0][0];
            A[1][0] = -A[1][0];
        }
        size_t n = (size_t)h * (size_t)w * (size_t)c;
        memcpy(tmp, x, n * sizeof(float));
        for (int r = 0; r < h; r++) {
            for (int col = 0; col < w; col++) {
                float *o = x + ((size_t)r * (size_t)w + (size_t)col) * (size_t)c;
                double cr = A[0][0] * r + A[0][1] * col + off[0];
                double cc = A[1][0] * r + A[1][1] * col + off[1];
                int ir[2], ic[2];
                double wr[2], wc[2];
                if (order == 1 && cr >= 0 && cr < h - 1 && cc >= 0 && cc < w - 1) {
                    /* Inside: no boundary mode applies (the same weights as axis_taps). */
                    ir[0] = (int)cr;
                    ic[0] = (int)cc;
                    wr[0] = 1.0 - (cr - ir[0]);
                    wc[0] = 1.0 - (cc - ic[0]);
                    wr[1] = 1.0 - wr[0];
                    wc[1] = 1.0 - wc[0];
                    const float *p0 = tmp + ((size_t)ir[0] * (size_t)w + (size_t)ic[0]) * (size_t)c;
                    const float *p1 = p0 + (size_t)w * (size_t)c;
                    for (int k = 0; k < c; k++)
                        o[k] = (float)(wr[0] * (wc[0] * p0[k] + wc[1] * p0[k + c]) +
                                       wr[1] * (wc[0] * p1[k] + wc[1] * p1[k + c]));
                    continue;
                }
                if (!axis_taps(cr, h, fill, order, ir, wr) || !axis_taps(cc, w, fill, order, ic, wc)) {
                    for (int k = 0; k < c; k++) o[k] = cval;
                    continue;
                }
                const float *p00 = tmp + ((size_t)ir[0] * (size_t)w + (size_t)ic[0]) * (size_t)c;
                const float *p01 = tmp + ((size_t)ir[0] * (size_t)w + (size_t)ic[1]) * (size_t)c;
                const float *p10 = tmp + ((size_t)ir[1] * (size_t)w + (size_t)ic[0]) * (size_t)c;
                const float *p11 = tmp + ((size_t)ir[1] * (size_t)w + (size_t)ic[1]) * (size_t)c;
                for (int k = 0; k < c; k++)
                    o[k] = (float)(wr[0] * (wc[0] * p00[k] + wc[1] * p01[k]) +
                                   wr[1] * (wc[0] * p10[k] + wc[1] * p11[k]));
            }
        }
    }
    size_t n = (size_t)h * (size_t)w * (size_t)c;
    if (t->has_channel_shift) {
        /* apply_channel_shift clips to the image's own range. */
        float lo = x[0], hi = x[0];
        for (size_t i = 1; i < n; i++) {
            if (x[i] < lo) lo = x[i];
            if (x[i] > hi) hi = x[i];
        }
        float s = (float)t->channel_shift_intensity;
        for (size_t i = 0; i < n; i++) {
            float v = x[i] + s;
            x[i] = v < lo ? lo : v > hi ? hi : v;
        }
    }
    if (t->has_brightness) {
        /* apply_brightness_shift goes through an 8-bit PIL image
         * (array_to_img truncates) and ImageEnhance.Brightness, i.e.
         * Image.blend with black at a C float alpha; values outside 0..255
         * are min-max scaled there and back. */
        float lo = x[0], hi = x[0];
        for (size_t i = 1; i < n; i++) {
            if (x[i] < lo) lo = x[i];
            if (x[i] > hi) hi = x[i];
        }
        int local_scale = lo < 0 || hi > 255;
        float alpha = (float)t->brightness;
        float span = hi - lo;
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            if (local_scale) {
                v -= lo;
                if (span != 0) v /= span;
                v *= 255;
            }
            int u8 = (int)v;
            float b = (float)u8 * alpha;
            int out;
            if (alpha >= 0 && alpha <= 1)
                out = (int)b;
            else
                out = b <= 0.0f ? 0 : b >= 255.0f ? 255 : (int)b;
            x[i] = local_scale ? (float)out / 255 * span + lo : (float)out;
        }
    }
}

graft_status graft_standardize(const graft_image_data_generator *g, float *x, int h, int w, int c)
{
    size_t n = (size_t)h * (size_t)w * (size_t)c;
    if (g->preprocessing_function) {
        graft_status st = g->preprocessing_function(g->preprocessing_ctx, x, h, w, c);
        if (st != GRAFT_OK) return st;
    }
    if (g->rescale)
        for (size_t i = 0; i < n; i++) x[i] *= g->rescale;
    if (g->samplewise_center || g->samplewise_std_normalization) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += x[i];
        double mean = sum / (double)n;
        if (g->samplewise_center)
            for (size_t i = 0; i < n; i++) x[i] -= (float)mean;
        if (g->samplewise_std_normalization) {
            double m2 = g->samplewise_center ? 0 : mean, ss = 0;
            for (size_t i = 0; i < n; i++) ss += (x[i] - m2) * (x[i] - m2);
            float d = (float)sqrt(ss / (double)n) + 1e-6f;
            for (size_t i = 0; i < n; i++) x[i] /= d;
        }
    }
    if (g->featurewise_center)
        for (size_t i = 0; i < n; i++) x[i] -= g->mean[i % (size_t)c];
    if (g->featurewise_std_normalization)
        for (size_t i = 0; i < n; i++) x[i] /= g->std[i % (size_t)c] + 1e-6f;
    if (g->zca_whitening) {
        if (!g->principal_components || (size_t)g->zca_dim != n)
            return graft_fail(GRAFT_ESHAPE,
                              "ZCA whitening: the principal components were fitted on %d values "
                              "an image, these images have %zu (%dx%dx%d)",
                              g->zca_dim, n, h, w, c);
        float *flat = malloc((n ? n : 1) * sizeof *flat);
        if (!flat) return graft_fail(GRAFT_ENOMEM, "no memory for ZCA whitening");
        memcpy(flat, x, n * sizeof *flat);
        /* x = flat . principal_components (a row vector times the matrix). */
        const float *pc = g->principal_components;
        for (size_t j = 0; j < n; j++) x[j] = 0;
        for (size_t i = 0; i < n; i++) {
            float v = flat[i];
            const float *row = pc + i * n;
            for (size_t j = 0; j < n; j++) x[j] += v * row[j];
        }
        free(flat);
    }
    return GRAFT_OK;
}
