/*
 * LayerScale, the layer Keras Applications' ConvNeXt defines and saves under
 * this class name: y = x * gamma, gamma one trainable value per channel (the
 * last axis) starting at init_values; config init_values and projection_dim.
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <math.h>
#include <string.h>

typedef struct {
    float init_values;
    int projection_dim;
} layer_scale;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    const layer_scale *z = l->cfg;
    int C = in[0].dim[in[0].rank - 1];
    if (z->projection_dim != C)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (LayerScale): projection_dim is %d but its input has %d "
                          "channels",
                          l->name, z->projection_dim, C);
    if (!isfinite(z->init_values))
        return graft_fail(GRAFT_EINVAL, "layer '%s' (LayerScale): init_values is not finite", l->name);
    l->out_shape = in[0];
    graft_status s = graft_layer_add_weight(l, "gamma", graft_shape1(C), true, GRAFT_INIT_CONSTANT);
    if (s == GRAFT_OK) l->weights[0].init_value = z->init_values;
    return s;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const size_t C = (size_t)l->out_shape.dim[l->out_shape.rank - 1];
    const size_t rows = (size_t)f->n * graft_shape_size(&l->out_shape) / C;
    const float *g = l->weights[0].data;
#pragma omp parallel for schedule(static) if (rows * C > 32768)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) f->out[r * C + c] = f->in[0][r * C + c] * g[c];
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const size_t C = (size_t)l->out_shape.dim[l->out_shape.rank - 1];
    const size_t rows = (size_t)b->n * graft_shape_size(&l->out_shape) / C;
    const float *g = l->weights[0].data;
    if (b->param_grads) {
        float *dg = l->weights[0].grad;
        memset(dg, 0, C * sizeof(float));
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < C; c++) dg[c] += b->dout[r * C + c] * b->in[0][r * C + c];
    }
    float *dx = b->din[0];
    if (!dx) return;
    const bool acc = b->din_accumulate[0];
#pragma omp parallel for schedule(static) if (rows * C > 32768)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) {
            float v = b->dout[r * C + c] * g[c];
            dx[r * C + c] = acc ? dx[r * C + c] + v : v;
        }
}

static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const layer_scale *z = l->cfg;
    return graft_config_done(l, graft_config_add_float(o, "init_values", z->init_values) &&
                                    cJSON_AddNumberToObject(o, "projection_dim", z->projection_dim));
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    float init;
    int dim;
    graft_status s = graft_config_float(c, cfg, "init_values", 1e-6f, &init);
    if (s == GRAFT_OK) s = graft_config_int(c, cfg, "projection_dim", 0, 1, &dim);
    if (s == GRAFT_OK && !dim) s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'projection_dim'");
    if (s == GRAFT_OK) *out = graft_layer_scale(c->m, c->in[0], c->name, init, dim);
    return s;
}

const graft_layer_ops graft_layer_scale_ops = {
    .class_name = "LayerScale",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_layer_scale(graft_model *m, graft_layer *in, const char *name,
                               float init_values, int projection_dim)
{
    layer_scale z = {init_values, projection_dim};
    return graft_model_add_unary(m, &graft_layer_scale_ops, name, "layer_scale", &z, sizeof z, in);
}
