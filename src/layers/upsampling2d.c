/*
 * UpSampling2D(size, interpolation): each sample enlarged by (sh, sw),
 * 'nearest' repeating rows and columns, 'bilinear' as TensorFlow's resize
 * with half-pixel centres (source coordinate (d + 0.5) / s - 0.5, the
 * neighbours clamped to the edge), which Keras's layer calls.
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <math.h>
#include <string.h>

typedef struct {
    int sh, sw;
    bool bilinear;
    int h, w, c;
} upsampling;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    upsampling *z = l->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (UpSampling2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (z->sh < 1 || z->sw < 1 || (long)in[0].dim[0] * z->sh > 1 << 24 ||
        (long)in[0].dim[1] * z->sw > 1 << 24)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (UpSampling2D): size (%d, %d) is not usable",
                          l->name, z->sh, z->sw);
    z->h = in[0].dim[0];
    z->w = in[0].dim[1];
    z->c = in[0].dim[2];
    l->out_shape = graft_shape3(z->h * z->sh, z->w * z->sw, z->c);
    return GRAFT_OK;
}

/* The two source cells and the weight of the second for output coordinate d. */
static void taps(int d, int scale, int size, int *lo, int *hi, float *t)
{
    float src = ((float)d + 0.5f) / (float)scale - 0.5f;
    float f = floorf(src);
    *t = src - f;
    *lo = (int)f < 0 ? 0 : (int)f;
    *hi = (int)f + 1 > size - 1 ? size - 1 : (int)f + 1;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const upsampling *z = l->cfg;
    const int oh = z->h * z->sh, ow = z->w * z->sw, C = z->c;
    const long rows = (long)f->n * oh;
#pragma omp parallel for schedule(static) if (rows > 64)
    for (long r = 0; r < rows; r++) {
        const int s = (int)(r / oh), y = (int)(r % oh);
        const float *img = f->in[0] + (size_t)s * z->h * z->w * C;
        float *o = f->out + (size_t)r * ow * C;
        if (!z->bilinear) {
            const float *src = img + (size_t)(y / z->sh) * z->w * C;
            for (int x = 0; x < ow; x++) memcpy(o + (size_t)x * C, src + (size_t)(x / z->sw) * C, C * sizeof(float));
            continue;
        }
        int y0, y1, x0, x1;
        float ty, tx;
        taps(y, z->sh, z->h, &y0, &y1, &ty);
        for (int x = 0; x < ow; x++) {
            taps(x, z->sw, z->w, &x0, &x1, &tx);
            const float *a = img + ((size_t)y0 * z->w + x0) * C, *b = img + ((size_t)y0 * z->w + x1) * C;
            const float *cc = img + ((size_t)y1 * z->w + x0) * C, *d = img + ((size_t)y1 * z->w + x1) * C;
            for (int k = 0; k < C; k++) {
                float top = a[k] + (b[k] - a[k]) * tx, bot = cc[k] + (d[k] - cc[k]) * tx;
                o[(size_t)x * C + k] = top + (bot - top) * ty;
            }
        }
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const upsampling *z = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const int oh = z->h * z->sh, ow = z->w * z->sw, C = z->c;
    const size_t in_sz = (size_t)z->h * z->w * C;
    const bool acc = b->din_accumulate[0];
    /* One thread per sample: its gradient cells are its own. */
#pragma omp parallel for schedule(static)
    for (int s = 0; s < b->n; s++) {
        float *d = dx + (size_t)s * in_sz;
        if (!acc) memset(d, 0, in_sz * sizeof(float));
        const float *g = b->dout + (size_t)s * oh * ow * C;
        for (int y = 0; y < oh; y++) {
            int y0, y1, x0, x1;
            float ty, tx;
            taps(y, z->sh, z->h, &y0, &y1, &ty);
            for (int x = 0; x < ow; x++) {
                const float *gy = g + ((size_t)y * ow + x) * C;
                if (!z->bilinear) {
                    float *o = d + ((size_t)(y / z->sh) * z->w + x / z->sw) * C;
                    for (int k = 0; k < C; k++) o[k] += gy[k];
                    continue;
                }
                taps(x, z->sw, z->w, &x0, &x1, &tx);
                const float w00 = (1 - ty) * (1 - tx), w01 = (1 - ty) * tx, w10 = ty * (1 - tx),
                            w11 = ty * tx;
                float *a = d + ((size_t)y0 * z->w + x0) * C, *bb = d + ((size_t)y0 * z->w + x1) * C;
                float *cc = d + ((size_t)y1 * z->w + x0) * C, *dd = d + ((size_t)y1 * z->w + x1) * C;
                for (int k = 0; k < C; k++) {
                    a[k] += gy[k] * w00;
                    bb[k] += gy[k] * w01;
                    cc[k] += gy[k] * w10;
                    dd[k] += gy[k] * w11;
                }
            }
        }
    }
}

static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const upsampling *z = l->cfg;
    bool ok = graft_config_add_pair(o, "size", z->sh, z->sw) &&
              cJSON_AddStringToObject(o, "data_format", "channels_last") &&
              cJSON_AddStringToObject(o, "interpolation", z->bilinear ? "bilinear" : "nearest");
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    int size[2];
    graft_status s = graft_config_pair(c, cfg, "size", 2, size);
    const char *interp = graft_config_str(cfg, "interpolation");
    bool bilinear = false;
    if (s == GRAFT_OK && interp && strcmp(interp, "nearest") != 0) {
        if (strcmp(interp, "bilinear") == 0) bilinear = true;
        else
            s = graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                    "interpolation '%s' is not supported (nearest, bilinear)", interp);
    }
    if (s == GRAFT_OK) *out = graft_upsampling2d(c->m, c->in[0], c->name, size[0], size[1], bilinear);
    return s;
}

const graft_layer_ops graft_upsampling2d_ops = {
    .class_name = "UpSampling2D",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_upsampling2d(graft_model *m, graft_layer *in, const char *name, int sh, int sw,
                                int bilinear)
{
    upsampling z = {.sh = sh ? sh : 2, .sw = sw ? sw : 2, .bilinear = bilinear != 0};
    return graft_model_add_unary(m, &graft_upsampling2d_ops, name, "up_sampling2d", &z, sizeof z, in);
}
