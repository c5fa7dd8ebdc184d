/* Conv2D: im2col + GEMM, with a direct GEMM for 1x1 stride-1 kernels. */
#include "internal.h"
#include "kernels/kernels.h"
#include "layers/config_json.h"

#include <string.h>

typedef struct {
    graft_conv2d_cfg cfg;
    graft_conv_geom g;
    int chunk; /* samples per im2col block, to bound the scratch */
} conv2d;

/* Patch matrices stay under this many floats (32 MiB) per block. */
#define COL_BUDGET (8u << 20)

static bool pointwise(const conv2d *c)
{
    const graft_conv_geom *g = &c->g;
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1;
}

static graft_status build(graft_layer *l, const graft_shape *in)
{
    conv2d *c = l->cfg;
    graft_conv2d_cfg *k = &c->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (Conv2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (k->filters <= 0 || k->kernel_size[0] <= 0 || k->kernel_size[1] <= 0 || k->strides[0] <= 0 ||
        k->strides[1] <= 0)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Conv2D): filters, kernel_size and strides must be positive",
                          l->name);
    graft_conv_geom *g = &c->g;
    g->h = in[0].dim[0];
    g->w = in[0].dim[1];
    g->c = in[0].dim[2];
    g->kh = k->kernel_size[0];
    g->kw = k->kernel_size[1];
    g->sh = k->strides[0];
    g->sw = k->strides[1];
    g->oh = graft_conv_out_size(g->h, g->kh, g->sh, k->padding, &g->pad_top);
    g->ow = graft_conv_out_size(g->w, g->kw, g->sw, k->padding, &g->pad_left);
    l->out_shape = graft_shape3(g->oh, g->ow, k->filters);
    size_t row = (size_t)g->oh * g->ow * g->kh * g->kw * g->c;
    c->chunk = row ? (int)(COL_BUDGET / row) : 1;
    if (c->chunk < 1) c->chunk = 1;
    graft_shape ks = {4, {g->kh, g->kw, g->c, k->filters}};
    graft_status s = graft_layer_add_weight(l, "kernel", ks, true, GRAFT_INIT_GLOROT_UNIFORM);
    if (s == GRAFT_OK && !k->no_bias)
        s = graft_layer_add_weight(l, "bias", graft_shape1(k->filters), true, GRAFT_INIT_ZEROS);
    return s;
}

static size_t scratch_floats(const graft_layer *l, int n)
{
    const conv2d *c = l->cfg;
    const graft_conv_geom *g = &c->g;
    int chunk = c->chunk < n ? c->chunk : n;
    size_t col = pointwise(c) ? 0 : (size_t)chunk * g->oh * g->ow * g->kh * g->kw * g->c;
    return col;
}

static void add_bias(float *out, const float *bias, size_t rows, int cols)
{
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) out[r * cols + j] += bias[j];
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    conv2d *c = l->cfg;
    const graft_conv_geom *g = &c->g;
    const int F = c->cfg.filters, K = g->kh * g->kw * g->c;
    const float *W = l->weights[0].data;
    const size_t in_sz = (size_t)g->h * g->w * g->c, out_sz = (size_t)g->oh * g->ow * F;
    for (int b0 = 0; b0 < f->n; b0 += c->chunk) {
        int nb = f->n - b0 < c->chunk ? f->n - b0 : c->chunk;
        const float *A = f->in[0] + b0 * in_sz;
        if (!pointwise(c)) {
            graft_im2col(g, A, nb, f->scratch);
            A = f->scratch;
        }
        graft_gemm(false, false, nb * g->oh * g->ow, F, K, 1.0f, A, K, W, F, 0.0f,
                   f->out + b0 * out_sz, F);
    }
    size_t rows = (size_t)f->n * g->oh * g->ow;
    if (!c->cfg.no_bias) add_bias(f->out, l->weights[1].data, rows, F);
    graft_activation_forward(c->cfg.activation, f->out, rows, (size_t)F);
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    conv2d *c = l->cfg;
    const graft_conv_geom *g = &c->g;
    const int F = c->cfg.filters, K = g->kh * g->kw * g->c;
    const size_t in_sz = (size_t)g->h * g->w * g->c, out_sz = (size_t)g->oh * g->ow * F;
    const size_t rows = (size_t)b->n * g->oh * g->ow;
    int chunk = c->chunk < b->n ? c->chunk : b->n;
    float *col = b->scratch;
    /* dL/d(pre-activation), in place: dout is ours to overwrite. */
    float *dz = b->dout;
    graft_activation_backward(c->cfg.activation, b->out, dz, dz, rows, (size_t)F, false);
    if (b->param_grads) {
        if (!c->cfg.no_bias) {
            float *db = l->weights[1].grad;
            memset(db, 0, (size_t)F * sizeof(float));
            for (size_t r = 0; r < rows; r++)
                for (int j = 0; j < F; j++) db[j] += dz[r * F + j];
        }
    }
    float *dW = l->weights[0].grad;
    const float *W = l->weights[0].data;
    float *dx = b->din[0];
    if (dx && !b->din_accumulate[0] && !pointwise(c)) memset(dx, 0, (size_t)b->n * in_sz * sizeof(float));
    for (int b0 = 0; b0 < b->n; b0 += chunk) {
        int nb = b->n - b0 < chunk ? b->n - b0 : chunk;
        int M = nb * g->oh * g->ow;
        const float *X = b->in[0] + b0 * in_sz;
        const float *dZ = dz + b0 * out_sz;
        if (!pointwise(c)) {
            if (b->param_grads) graft_im2col(g, X, nb, col);
            X = col;
        }
        if (b->param_grads)
            graft_gemm(true, false, K, F, M, 1.0f, X, K, dZ, F, b0 == 0 ? 0.0f : 1.0f, dW, F);
        if (dx) {
            if (pointwise(c)) {
                graft_gemm(false, true, M, K, F, 1.0f, dZ, F, W, F, b->din_accumulate[0] ? 1.0f : 0.0f,
                           dx + b0 * in_sz, K);
            } else {
                graft_gemm(false, true, M, K, F, 1.0f, dZ, F, W, F, 0.0f, col, K);
                graft_col2im(g, col, nb, dx + b0 * in_sz);
            }
        }
    }
}

/* Keras 2's Conv2D.get_config(). */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_conv2d_cfg *k = &((const conv2d *)l->cfg)->cfg;
    bool ok = cJSON_AddNumberToObject(o, "filters", k->filters) &&
              graft_config_add_pair(o, "kernel_size", k->kernel_size[0], k->kernel_size[1]) &&
              graft_config_add_pair(o, "strides", k->strides[0], k->strides[1]) &&
              graft_config_add_padding(o, k->padding) &&
              cJSON_AddStringToObject(o, "data_format", "channels_last") &&
              graft_config_add_pair(o, "dilation_rate", 1, 1) &&
              cJSON_AddNumberToObject(o, "groups", 1) &&
              cJSON_AddStringToObject(o, "activation", graft_activation_name(k->activation)) &&
              cJSON_AddBoolToObject(o, "use_bias", !k->no_bias) &&
              graft_config_add_initializer(o, "kernel_initializer", "GlorotUniform") &&
              graft_config_add_initializer(o, "bias_initializer", "Zeros") &&
              GRAFT_CONFIG_NULLS(o, "kernel_regularizer", "bias_regularizer",
                                 "activity_regularizer", "kernel_constraint", "bias_constraint");
    return graft_config_done(l, ok);
}

static const graft_layer_ops ops = {
    .class_name = "Conv2D",
    .build = build,
    .forward = forward,
    .backward = backward,
    .scratch_floats = scratch_floats,
    .get_config = get_config,
};

graft_layer *graft_conv2d(graft_model *m, graft_layer *in, graft_conv2d_cfg cfg)
{
    if (!cfg.strides[0]) cfg.strides[0] = 1;
    if (!cfg.strides[1]) cfg.strides[1] = 1;
    conv2d c = {.cfg = cfg};
    c.cfg.name = NULL; /* the layer keeps its own copy of the name */
    return graft_model_add_unary(m, &ops, cfg.name, "conv2d", &c, sizeof c, in);
}
