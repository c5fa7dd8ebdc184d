/* Cropping2D(((top, bottom), (left, right))): the inner window of each sample. */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <string.h>

typedef struct {
    int top, bottom, left, right;
    int h, w, c;
} cropping;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    cropping *z = l->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (Cropping2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (z->top < 0 || z->bottom < 0 || z->left < 0 || z->right < 0 ||
        (long)z->top + z->bottom >= in[0].dim[0] || (long)z->left + z->right >= in[0].dim[1])
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (Cropping2D): cropping ((%d, %d), (%d, %d)) leaves nothing "
                          "of a %d x %d input",
                          l->name, z->top, z->bottom, z->left, z->right, in[0].dim[0], in[0].dim[1]);
    z->h = in[0].dim[0];
    z->w = in[0].dim[1];
    z->c = in[0].dim[2];
    l->out_shape = graft_shape3(z->h - z->top - z->bottom, z->w - z->left - z->right, z->c);
    return GRAFT_OK;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const cropping *z = l->cfg;
    const int oh = l->out_shape.dim[0], ow = l->out_shape.dim[1];
    const size_t row = (size_t)ow * z->c;
    const long rows = (long)f->n * oh;
#pragma omp parallel for schedule(static) if (rows > 64)
    for (long r = 0; r < rows; r++) {
        long s = r / oh, y = r % oh;
        memcpy(f->out + (size_t)r * row,
               f->in[0] + (((size_t)s * z->h + (size_t)(y + z->top)) * z->w + (size_t)z->left) * z->c,
               row * sizeof(float));
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const cropping *z = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const int oh = l->out_shape.dim[0], ow = l->out_shape.dim[1];
    const size_t in_row = (size_t)z->w * z->c, row = (size_t)ow * z->c;
    const bool acc = b->din_accumulate[0];
    const long rows = (long)b->n * z->h;
#pragma omp parallel for schedule(static) if (rows > 64)
    for (long r = 0; r < rows; r++) {
        long s = r / z->h, y = r % z->h - z->top;
        float *d = dx + (size_t)r * in_row;
        if (!acc) memset(d, 0, in_row * sizeof(float));
        if (y < 0 || y >= oh) continue;
        const float *g = b->dout + ((size_t)s * oh + (size_t)y) * row;
        float *o = d + (size_t)z->left * z->c;
        for (size_t i = 0; i < row; i++) o[i] += g[i];
    }
}

static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const cropping *z = l->cfg;
    const int v[4] = {z->top, z->bottom, z->left, z->right};
    return graft_config_done(l, graft_config_add_sides(o, "cropping", v));
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    int v[4];
    graft_status s = graft_config_sides(c, cfg, "cropping", 0, v);
    if (s == GRAFT_OK) *out = graft_cropping2d(c->m, c->in[0], c->name, v[0], v[1], v[2], v[3]);
    return s;
}

const graft_layer_ops graft_cropping2d_ops = {
    .class_name = "Cropping2D",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_cropping2d(graft_model *m, graft_layer *in, const char *name, int top,
                              int bottom, int left, int right)
{
    cropping z = {top, bottom, left, right, 0, 0, 0};
    return graft_model_add_unary(m, &graft_cropping2d_ops, name, "cropping2d", &z, sizeof z, in);
}
