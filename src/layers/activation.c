/* Activation: one of graft's activation functions as its own layer (softmax over the last axis). */
#include "layers/layer.h"
#include "layers/config_json.h"

#include <math.h>
#include <string.h>

typedef struct {
    graft_activation a;
    size_t cols; /* the last axis, which softmax normalises over */
} activation;

bool graft_activation_clamp(const graft_layer *l, float *lo, float *hi)
{
    if (strcmp(l->ops->class_name, "Activation") != 0) return false;
    const activation *c = l->cfg;
    if (c->a != GRAFT_RELU && c->a != GRAFT_RELU6) return false;
    *lo = 0;
    *hi = c->a == GRAFT_RELU6 ? 6.0f : INFINITY;
    return true;
}

bool graft_activation_elementwise(const graft_layer *l, graft_activation *a)
{
    if (strcmp(l->ops->class_name, "Activation") != 0) return false;
    const activation *c = l->cfg;
    if (c->a == GRAFT_SOFTMAX || c->a == GRAFT_LINEAR) return false;
    *a = c->a;
    return true;
}

static graft_status build(graft_layer *l, const graft_shape *in)
{
    activation *c = l->cfg;
    if (strcmp(graft_activation_name(c->a), "unknown") == 0)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (Activation): unknown activation code %d",
                          l->name, (int)c->a);
    l->out_shape = in[0];
    c->cols = (size_t)in[0].dim[in[0].rank - 1];
    return GRAFT_OK;
}

/* Floats copied and activated at a time, while in L1. */
#define SPAN 4096

static void forward(graft_layer *l, const graft_fwd *f)
{
    const activation *c = l->cfg;
    size_t total = (size_t)f->n * graft_shape_size(&l->out_shape);
    if (c->a == GRAFT_SOFTMAX) {
        memcpy(f->out, f->in[0], total * sizeof(float));
        graft_activation_forward(c->a, f->out, total / c->cols, c->cols);
        return;
    }
    /* One pass: each span copied then activated in place (element-wise, so
     * the same bits as over the whole tensor). */
#pragma omp parallel for schedule(static) if (total >= 8 * SPAN)
    for (size_t b = 0; b < total; b += SPAN) {
        const size_t m = total - b < SPAN ? total - b : SPAN;
        memcpy(f->out + b, f->in[0] + b, m * sizeof(float));
        graft_activation_rows(c->a, f->out + b, 1, m, m);
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const activation *c = l->cfg;
    if (!b->din[0]) return;
    size_t total = (size_t)b->n * graft_shape_size(&l->out_shape);
    graft_activation_backward_x(c->a, b->in[0], b->out, b->dout, b->din[0], total / c->cols,
                                c->cols, b->din_accumulate[0]);
}

static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const activation *c = l->cfg;
    return graft_config_done(
        l, cJSON_AddStringToObject(o, "activation", graft_activation_name(c->a)) != NULL);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_activation a;
    if (!graft_config_present(cfg, "activation"))
        return graft_config_refuse(c, GRAFT_EFORMAT, "no 'activation'");
    graft_status s = graft_config_activation(c, cfg, "activation", &a);
    if (s == GRAFT_OK) *out = graft_activation_layer(c->m, c->in[0], c->name, a);
    return s;
}

const graft_layer_ops graft_activation_ops = {
    .class_name = "Activation",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_activation_layer(graft_model *m, graft_layer *in, const char *name,
                                    graft_activation a)
{
    activation c = {.a = a};
    return graft_model_add_unary(m, &graft_activation_ops, name, "activation", &c, sizeof c, in);
}
