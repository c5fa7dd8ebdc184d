/* ZeroPadding2D(((top, bottom), (left, right))) on NHWC activations. */
#include "layers/layer.h"
#include "layers/config_json.h"

#include <limits.h>
#include <string.h>

typedef struct {
    int top, bottom, left, right;
    int h, w, c; /* input */
} zero_padding2d;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    zero_padding2d *p = l->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (ZeroPadding2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (p->top < 0 || p->bottom < 0 || p->left < 0 || p->right < 0)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (ZeroPadding2D): padding ((%d, %d), (%d, %d)) has a negative "
                          "entry; every pad must be >= 0",
                          l->name, p->top, p->bottom, p->left, p->right);
    p->h = in[0].dim[0];
    p->w = in[0].dim[1];
    p->c = in[0].dim[2];
    if ((long long)p->h + p->top + p->bottom > INT_MAX ||
        (long long)p->w + p->left + p->right > INT_MAX)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (ZeroPadding2D): the padded size is too large",
                          l->name);
    l->out_shape = graft_shape3(p->h + p->top + p->bottom, p->w + p->left + p->right, p->c);
    return GRAFT_OK;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const zero_padding2d *p = l->cfg;
    const int oh = l->out_shape.dim[0], ow = l->out_shape.dim[1], C = p->c;
    const size_t in_row = (size_t)p->w * C, out_row = (size_t)ow * C;
    const long rows = (long)f->n * oh;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        long s = r / oh;
        int y = (int)(r % oh) - p->top;
        float *o = f->out + (size_t)r * out_row;
        if (y < 0 || y >= p->h) {
            memset(o, 0, out_row * sizeof(float));
            continue;
        }
        const float *x = f->in[0] + ((size_t)s * p->h + (size_t)y) * in_row;
        memset(o, 0, (size_t)p->left * C * sizeof(float));
        memcpy(o + (size_t)p->left * C, x, in_row * sizeof(float));
        memset(o + (size_t)p->left * C + in_row, 0, (size_t)p->right * C * sizeof(float));
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const zero_padding2d *p = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const int oh = l->out_shape.dim[0], ow = l->out_shape.dim[1];
    const size_t in_row = (size_t)p->w * p->c, out_row = (size_t)ow * p->c;
    const bool acc = b->din_accumulate[0];
    const long rows = (long)b->n * p->h;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        long s = r / p->h;
        int y = (int)(r % p->h);
        const float *g =
            b->dout + ((size_t)s * oh + (size_t)(y + p->top)) * out_row + (size_t)p->left * p->c;
        float *d = dx + (size_t)r * in_row;
        if (acc)
            for (size_t i = 0; i < in_row; i++)
                d[i] += g[i];
        else
            memcpy(d, g, in_row * sizeof(float));
    }
}

/* Keras 2's ZeroPadding2D.get_config(): padding ((top, bottom), (left, right)). */
bool graft_zero_padding2d_pads(const graft_layer *l, int *top, int *bottom, int *left, int *right)
{
    if (strcmp(l->ops->class_name, "ZeroPadding2D") != 0) return false;
    const zero_padding2d *p = l->cfg;
    *top = p->top;
    *bottom = p->bottom;
    *left = p->left;
    *right = p->right;
    return true;
}

static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const zero_padding2d *p = l->cfg;
    const int v[4] = {p->top, p->bottom, p->left, p->right};
    return graft_config_done(l, graft_config_add_sides(o, "padding", v));
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    int v[4];
    graft_status s = graft_config_sides(c, cfg, "padding", 1, v);
    if (s == GRAFT_OK) *out = graft_zero_padding2d(c->m, c->in[0], c->name, v[0], v[1], v[2], v[3]);
    return s;
}

const graft_layer_ops graft_zero_padding2d_ops = {
    .class_name = "ZeroPadding2D",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_zero_padding2d(graft_model *m, graft_layer *in, const char *name, int top,
                                  int bottom, int left, int right)
{
    zero_padding2d p = {.top = top, .bottom = bottom, .left = left, .right = right};
    return graft_model_add_unary(m, &graft_zero_padding2d_ops, name, "zero_padding2d", &p, sizeof p, in);
}
