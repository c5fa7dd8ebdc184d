/* The direct convolution behind the layers' dilated, grouped and
 * depth-multiplied options (layers/conv_plain.h). */
#include "layers/conv_plain.h"

#include <string.h>

static int out_size(int in, int k, int stride, graft_padding p, int *pad)
{
    if (p == GRAFT_VALID) {
        *pad = 0;
        return in >= k ? (in - k) / stride + 1 : 0;
    }
    int out = (in + stride - 1) / stride, total = (out - 1) * stride + k - in;
    *pad = total > 0 ? total / 2 : 0;
    return out;
}

graft_status graft_plain_conv_init(graft_plain_conv *p, const char *layer, const char *cls,
                                   const graft_shape *in, const int kernel[2], const int strides[2],
                                   const int dilation[2], graft_padding padding, int groups,
                                   int filters)
{
    if (in->rank != 3)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (%s): expects a 3-D input (H, W, C), got rank %d",
                          layer, cls, in->rank);
    if (dilation[0] <= 0 || dilation[1] <= 0 || groups <= 0 || filters <= 0)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (%s): dilation_rate, groups and filters must be positive",
                          layer, cls);
    if ((dilation[0] > 1 || dilation[1] > 1) && (strides[0] > 1 || strides[1] > 1))
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (%s): strides > 1 with dilation_rate > 1 is not allowed (as "
                          "in Keras)",
                          layer, cls);
    if (in->dim[2] % groups || filters % groups)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (%s): groups=%d must divide the input channels (%d) and the "
                          "filters (%d)",
                          layer, cls, groups, in->dim[2], filters);
    *p = (graft_plain_conv){.h = in->dim[0], .w = in->dim[1], .c = in->dim[2],
                            .kh = kernel[0], .kw = kernel[1], .sh = strides[0], .sw = strides[1],
                            .dh = dilation[0], .dw = dilation[1], .groups = groups, .f = filters};
    long ekh = (long)(kernel[0] - 1) * dilation[0] + 1, ekw = (long)(kernel[1] - 1) * dilation[1] + 1;
    if (ekh > 1 << 24 || ekw > 1 << 24)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (%s): the dilated kernel is too large", layer, cls);
    p->oh = out_size(p->h, (int)ekh, p->sh, padding, &p->pt);
    p->ow = out_size(p->w, (int)ekw, p->sw, padding, &p->pl);
    return GRAFT_OK;
}

void graft_plain_conv_forward(const graft_plain_conv *p, int n, const float *x, const float *W,
                              const float *bias, float *y)
{
    const int cg = p->c / p->groups, fg = p->f / p->groups, F = p->f;
    const long rows = (long)n * p->oh;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const int s = (int)(r / p->oh), oy = (int)(r % p->oh);
        const float *img = x + (size_t)s * p->h * p->w * p->c;
        for (int ox = 0; ox < p->ow; ox++) {
            float *o = y + ((size_t)r * p->ow + ox) * F;
            for (int f = 0; f < F; f++) o[f] = bias ? bias[f] : 0.0f;
            for (int ky = 0; ky < p->kh; ky++) {
                int iy = oy * p->sh - p->pt + ky * p->dh;
                if (iy < 0 || iy >= p->h) continue;
                for (int kx = 0; kx < p->kw; kx++) {
                    int ix = ox * p->sw - p->pl + kx * p->dw;
                    if (ix < 0 || ix >= p->w) continue;
                    const float *xi = img + ((size_t)iy * p->w + ix) * p->c;
                    const float *wk = W + ((size_t)ky * p->kw + kx) * cg * F;
                    if (cg == 1 && fg == 1) { /* groups = channels = filters (ConvNeXt's) */
#pragma omp simd
                        for (int f = 0; f < F; f++) o[f] += xi[f] * wk[f];
                        continue;
                    }
                    for (int f = 0; f < F; f++) {
                        const float *xg = xi + (f / fg) * cg;
                        float a = 0;
                        for (int ci = 0; ci < cg; ci++) a += xg[ci] * wk[(size_t)ci * F + f];
                        o[f] += a;
                    }
                }
            }
        }
    }
}

void graft_plain_conv_backward_weights(const graft_plain_conv *p, int n, const float *x,
                                       const float *dz, float *dW, float *db)
{
    const int cg = p->c / p->groups, fg = p->f / p->groups, F = p->f;
    /* One thread per output channel: its kernel column and bias are its own,
     * summed in sample order whatever the thread count. */
#pragma omp parallel for schedule(static)
    for (int f = 0; f < F; f++) {
        const int c0 = (f / fg) * cg;
        for (int ky = 0; ky < p->kh; ky++)
            for (int kx = 0; kx < p->kw; kx++)
                for (int ci = 0; ci < cg; ci++) dW[(((size_t)ky * p->kw + kx) * cg + ci) * F + f] = 0;
        double bsum = 0;
        for (int s = 0; s < n; s++) {
            const float *img = x + (size_t)s * p->h * p->w * p->c;
            for (int oy = 0; oy < p->oh; oy++)
                for (int ox = 0; ox < p->ow; ox++) {
                    const float d = dz[(((size_t)s * p->oh + oy) * p->ow + ox) * F + f];
                    bsum += d;
                    if (d == 0) continue;
                    for (int ky = 0; ky < p->kh; ky++) {
                        int iy = oy * p->sh - p->pt + ky * p->dh;
                        if (iy < 0 || iy >= p->h) continue;
                        for (int kx = 0; kx < p->kw; kx++) {
                            int ix = ox * p->sw - p->pl + kx * p->dw;
                            if (ix < 0 || ix >= p->w) continue;
                            const float *xi = img + ((size_t)iy * p->w + ix) * p->c + c0;
                            float *dw = dW + ((size_t)ky * p->kw + kx) * cg * F + f;
                            for (int ci = 0; ci < cg; ci++) dw[(size_t)ci * F] += d * xi[ci];
                        }
                    }
                }
        }
        if (db) db[f] = (float)bsum;
    }
}

void graft_plain_conv_backward_data(const graft_plain_conv *p, int n, const float *dz,
                                    const float *W, float *dx, bool accumulate)
{
    const int cg = p->c / p->groups, fg = p->f / p->groups, F = p->f;
    const size_t in_sz = (size_t)p->h * p->w * p->c;
    /* One thread per sample: its part of dx is its own. */
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        float *img = dx + (size_t)s * in_sz;
        if (!accumulate) memset(img, 0, in_sz * sizeof(float));
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < p->ow; ox++) {
                const float *d = dz + (((size_t)s * p->oh + oy) * p->ow + ox) * F;
                for (int ky = 0; ky < p->kh; ky++) {
                    int iy = oy * p->sh - p->pt + ky * p->dh;
                    if (iy < 0 || iy >= p->h) continue;
                    for (int kx = 0; kx < p->kw; kx++) {
                        int ix = ox * p->sw - p->pl + kx * p->dw;
                        if (ix < 0 || ix >= p->w) continue;
                        float *xi = img + ((size_t)iy * p->w + ix) * p->c;
                        const float *wk = W + ((size_t)ky * p->kw + kx) * cg * F;
                        if (cg == 1 && fg == 1) {
#pragma omp simd
                            for (int f = 0; f < F; f++) xi[f] += d[f] * wk[f];
                            continue;
                        }
                        for (int f = 0; f < F; f++) {
                            float *xg = xi + (f / fg) * cg;
                            for (int ci = 0; ci < cg; ci++) xg[ci] += d[f] * wk[(size_t)ci * F + f];
                        }
                    }
                }
            }
    }
}
