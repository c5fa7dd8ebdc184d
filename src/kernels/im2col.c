/* Patch extraction for convolution as GEMM (NHWC, kernel order kh, kw, c). */
#include "kernels.h"
#include "core/core.h"

#include <string.h>

void graft_conv_geom_init(graft_conv_geom *g, const graft_shape *in, const int kernel[2],
                          const int strides[2], graft_padding padding)
{
    g->h = in->dim[0];
    g->w = in->dim[1];
    g->c = in->dim[2];
    g->kh = kernel[0];
    g->kw = kernel[1];
    g->sh = strides[0];
    g->sw = strides[1];
    g->oh = graft_conv_out_size(g->h, g->kh, g->sh, padding, &g->pad_top);
    g->ow = graft_conv_out_size(g->w, g->kw, g->sw, padding, &g->pad_left);
}

void graft_im2col(const graft_conv_geom *g, const float *x, int n, float *col)
{
    const int K = g->kh * g->kw * g->c;
    const long rows = (long)n * g->oh * g->ow;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / (g->oh * g->ow));
        int rem = (int)(r % (g->oh * g->ow));
        int oy = rem / g->ow, ox = rem % g->ow;
        float *dst = col + r * K;
        const float *img = x + (size_t)b * g->h * g->w * g->c;
        for (int ky = 0; ky < g->kh; ky++) {
            int iy = oy * g->sh - g->pad_top + ky;
            if (iy < 0 || iy >= g->h) {
                memset(dst, 0, (size_t)g->kw * g->c * sizeof(float));
                dst += g->kw * g->c;
                continue;
            }
            int ix0 = ox * g->sw - g->pad_left;
            if (ix0 >= 0 && ix0 + g->kw <= g->w) { /* the whole kernel row is inside */
                memcpy(dst, img + ((size_t)iy * g->w + ix0) * g->c,
                       (size_t)g->kw * g->c * sizeof(float));
                dst += g->kw * g->c;
                continue;
            }
            for (int kx = 0; kx < g->kw; kx++, dst += g->c) {
                int ix = ix0 + kx;
                if (ix < 0 || ix >= g->w) memset(dst, 0, (size_t)g->c * sizeof(float));
                else memcpy(dst, img + ((size_t)iy * g->w + ix) * g->c, (size_t)g->c * sizeof(float));
            }
        }
    }
}

void graft_col2im(const graft_conv_geom *g, const float *col, int n, float *dx)
{
    const int K = g->kh * g->kw * g->c;
    /* Samples are independent; windows inside one sample overlap, so one thread each. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; b++) {
        float *img = dx + (size_t)b * g->h * g->w * g->c;
        const float *src = col + (size_t)b * g->oh * g->ow * K;
        for (int oy = 0; oy < g->oh; oy++) {
            for (int ox = 0; ox < g->ow; ox++, src += K) {
                const float *s = src;
                for (int ky = 0; ky < g->kh; ky++) {
                    int iy = oy * g->sh - g->pad_top + ky;
                    if (iy < 0 || iy >= g->h) {
                        s += g->kw * g->c;
                        continue;
                    }
                    for (int kx = 0; kx < g->kw; kx++, s += g->c) {
                        int ix = ox * g->sw - g->pad_left + kx;
                        if (ix < 0 || ix >= g->w) continue;
                        float *d = img + ((size_t)iy * g->w + ix) * g->c;
                        for (int c = 0; c < g->c; c++) d[c] += s[c];
                    }
                }
            }
        }
    }
}
