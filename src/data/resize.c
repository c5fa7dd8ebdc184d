/*
 * Image.resize as Pillow computes it on 8-bit images, because Keras's
 * flow_from_directory and load_img resize with Pillow:
 *  - NEAREST maps output pixel x to floor(x*scale + scale/2) through
 *    ImagingScaleAffine's accumulated double steps;
 *  - the other filters are a separable convolution, horizontal pass first
 *    with an 8-bit intermediate, 22-bit fixed-point weights, and a support
 *    widened by the scale when shrinking. That widening is an antialias:
 *    Pillow's "bilinear" shrink averages over all covered pixels, whereas
 *    tf.image.resize's bilinear (used by image_dataset_from_directory) reads
 *    only the 2x2 nearest. We match Pillow since that is what
 *    flow_from_directory feeds the model.
 */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

graft_status graft_interpolation_parse(const char *name, graft_interpolation *out)
{
    static const struct {
        const char *name;
        graft_interpolation v;
    } names[] = {{"nearest", GRAFT_INTERP_NEAREST}, {"bilinear", GRAFT_INTERP_BILINEAR},
                 {"bicubic", GRAFT_INTERP_BICUBIC}, {"box", GRAFT_INTERP_BOX},
                 {"area", GRAFT_INTERP_BOX},        {"hamming", GRAFT_INTERP_HAMMING},
                 {"lanczos", GRAFT_INTERP_LANCZOS}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (name && strcmp(name, names[i].name) == 0) {
            *out = names[i].v;
            return GRAFT_OK;
        }
    return graft_fail(GRAFT_EINVAL,
                      "unknown interpolation '%s' (nearest, bilinear, bicubic, box/area, "
                      "hamming, lanczos)",
                      name ? name : "(null)");
}

static double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double bilinear_filter(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x)
{
    x = fabs(x);
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x *= M_PI;
    return sin(x) / x * (0.54 + 0.46 * cos(x));
}

static double bicubic_filter(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x)
{
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x)
{
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

typedef struct {
    double (*fn)(double);
    double support;
} filter;

#define PRECISION_BITS (32 - 8 - 2)

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output pixel
 * the first input pixel, the count, and ksize fixed-point weights. */
static int coeffs(int in_size, int out_size, const filter *f, int **bounds_out, int32_t **k_out)
{
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    double *pre = malloc(sizeof(double) * (size_t)ksize);
    int32_t *kk = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)ksize);
    if (!bounds || !pre || !kk) {
        free(bounds);
        free(pre);
        free(kk);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            pre[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) pre[x] /= ww;
        for (; x < ksize; x++) pre[x] = 0;
        int32_t *k = kk + (size_t)xx * (size_t)ksize;
        for (x = 0; x < ksize; x++)
            k[x] = pre[x] < 0 ? (int32_t)(-0.5 + pre[x] * (1 << PRECISION_BITS))
                              : (int32_t)(0.5 + pre[x] * (1 << PRECISION_BITS));
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(pre);
    *bounds_out = bounds;
    *k_out = kk;
    return ksize;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass over rows [y0, y0 + rows) of src into dst (rows x out_w).
 * RGB, the common case, keeps its three sums in registers. Integer sums are
 * exact in any order, so every path here gives Pillow's bytes. */
static void pass_h(const uint8_t *src, int src_w, int c, int y0, int rows, uint8_t *dst,
                   int out_w, int ksize, const int *bounds, const int32_t *kk)
{
    for (int y = 0; y < rows; y++) {
        const uint8_t *s = src + ((size_t)(y0 + y) * (size_t)src_w) * (size_t)c;
        uint8_t *d = dst + (size_t)y * (size_t)out_w * (size_t)c;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1];
            const int32_t *k = kk + (size_t)xx * (size_t)ksize;
            const uint8_t *p = s + (size_t)xmin * (size_t)c;
            if (c == 3) {
                int32_t r = 1 << (PRECISION_BITS - 1), g = r, b = r;
                for (int x = 0; x < xmax; x++) {
                    r += p[3 * x] * k[x];
                    g += p[3 * x + 1] * k[x];
                    b += p[3 * x + 2] * k[x];
                }
                d[3 * (size_t)xx] = clip8(r);
                d[3 * (size_t)xx + 1] = clip8(g);
                d[3 * (size_t)xx + 2] = clip8(b);
                continue;
            }
            for (int ch = 0; ch < c; ch++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++) ss += p[(size_t)x * (size_t)c + ch] * k[x];
                d[(size_t)xx * (size_t)c + ch] = clip8(ss);
            }
        }
    }
}

/* Vertical pass: each output row sums whole input rows, a strip at a time,
 * so that the inner loops run along memory and vectorise. */
static void pass_v(const uint8_t *src, int w, int c, uint8_t *dst, int out_h, int ksize,
                   const int *bounds, const int32_t *kk)
{
    enum { STRIP = 512 };
    int32_t acc[STRIP];
    size_t row = (size_t)w * (size_t)c;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = bounds[2 * yy], ymax = bounds[2 * yy + 1];
        const int32_t *k = kk + (size_t)yy * (size_t)ksize;
        uint8_t *d = dst + (size_t)yy * row;
        for (size_t i0 = 0; i0 < row; i0 += STRIP) {
            size_t n = row - i0 < STRIP ? row - i0 : STRIP;
#pragma omp simd
            for (size_t i = 0; i < n; i++) acc[i] = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++) {
                const uint8_t *s = src + (size_t)(y + ymin) * row + i0;
                int32_t ky = k[y];
                /* pass_h wrote every tmp row read here; the analyzer cannot match them up. */
#pragma omp simd
                // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
                for (size_t i = 0; i < n; i++) acc[i] += s[i] * ky;
            }
#pragma omp simd
            for (size_t i = 0; i < n; i++) d[i0 + i] = clip8(acc[i]);
        }
    }
}

static graft_status resize_nearest(const graft_img *src, graft_img *out)
{
    int c = src->c;
    /* Pillow passes the box as floats, then steps in doubles. */
    double ax = (double)(float)src->w / out->w, ay = (double)(float)src->h / out->h;
    int *xin = malloc(sizeof(int) * (size_t)out->w);
    double xo = ax * 0.5, yo = ay * 0.5;
    if (!xin) return graft_fail(GRAFT_ENOMEM, "no memory to resize to %dx%d", out->w, out->h);
    for (int x = 0; x < out->w; x++) {
        int xi = (int)xo;
        xin[x] = xi < src->w ? xi : src->w - 1;
        xo += ax;
    }
    for (int y = 0; y < out->h; y++) {
        int yi = (int)yo;
        if (yi >= src->h) yi = src->h - 1;
        yo += ay;
        const uint8_t *s = src->px + (size_t)yi * (size_t)src->w * (size_t)c;
        uint8_t *d = out->px + (size_t)y * (size_t)out->w * (size_t)c;
        if (c == 3) {
            for (int x = 0; x < out->w; x++) {
                const uint8_t *p = s + 3 * (size_t)xin[x];
                d[3 * x] = p[0];
                d[3 * x + 1] = p[1];
                d[3 * x + 2] = p[2];
            }
        } else {
            for (int x = 0; x < out->w; x++) memcpy(d + (size_t)x * c, s + (size_t)xin[x] * c, (size_t)c);
        }
    }
    free(xin);
    return GRAFT_OK;
}

graft_status graft_img_resize(const graft_img *src, int h, int w, graft_interpolation interp,
                              graft_img *out)
{
    memset(out, 0, sizeof *out);
    if (h <= 0 || w <= 0 || src->h <= 0 || src->w <= 0)
        return graft_fail(GRAFT_EINVAL, "resize from %dx%d to %dx%d", src->w, src->h, w, h);
    size_t n = (size_t)h * (size_t)w * (size_t)src->c;
    out->px = malloc(n);
    if (!out->px) return graft_fail(GRAFT_ENOMEM, "no memory to resize to %dx%d", w, h);
    out->h = h;
    out->w = w;
    out->c = src->c;
    if (h == src->h && w == src->w) {
        memcpy(out->px, src->px, n);
        return GRAFT_OK;
    }
    if (interp == GRAFT_INTERP_NEAREST) {
        graft_status st = resize_nearest(src, out);
        if (st != GRAFT_OK) graft_img_free(out);
        return st;
    }
    filter flt;
    switch (interp) {
    case GRAFT_INTERP_BILINEAR: flt = (filter){bilinear_filter, 1.0}; break;
    case GRAFT_INTERP_BICUBIC: flt = (filter){bicubic_filter, 2.0}; break;
    case GRAFT_INTERP_BOX: flt = (filter){box_filter, 0.5}; break;
    case GRAFT_INTERP_HAMMING: flt = (filter){hamming_filter, 1.0}; break;
    case GRAFT_INTERP_LANCZOS: flt = (filter){lanczos_filter, 3.0}; break;
    default:
        graft_img_free(out);
        return graft_fail(GRAFT_EINVAL, "unknown interpolation %d", (int)interp);
    }
    const filter *f = &flt;
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    uint8_t *tmp = NULL;
    int ksh = coeffs(src->w, w, f, &bh, &kh);
    int ksv = ksh ? coeffs(src->h, h, f, &bv, &kv) : 0;
    graft_status st = GRAFT_OK;
    if (!ksh || !ksv) {
        st = graft_fail(GRAFT_ENOMEM, "no memory for resize weights");
        goto done;
    }
    int need_h = w != src->w, need_v = h != src->h;
    /* The rows the vertical pass reads. */
    int y_first = bv[0], y_last = bv[2 * h - 2] + bv[2 * h - 1];
    if (need_h && need_v) {
        tmp = malloc((size_t)(y_last - y_first) * (size_t)w * (size_t)src->c);
        if (!tmp) {
            st = graft_fail(GRAFT_ENOMEM, "no memory to resize to %dx%d", w, h);
            goto done;
        }
        for (int i = 0; i < h; i++) bv[2 * i] -= y_first;
        pass_h(src->px, src->w, src->c, y_first, y_last - y_first, tmp, w, ksh, bh, kh);
        pass_v(tmp, w, src->c, out->px, h, ksv, bv, kv);
    } else if (need_h) {
        pass_h(src->px, src->w, src->c, 0, h, out->px, w, ksh, bh, kh);
    } else {
        pass_v(src->px, w, src->c, out->px, h, ksv, bv, kv);
    }
done:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(tmp);
    if (st != GRAFT_OK) graft_img_free(out);
    return st;
}
