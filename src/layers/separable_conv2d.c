/*
 * SeparableConv2D: a depthwise convolution (depth_multiplier, dilation)
 * without bias, then a 1x1 convolution to `filters` with the bias and the
 * activation, as Keras computes it (Xception's blocks). Weights
 * depthwise_kernel (kh, kw, C, dm), pointwise_kernel (1, 1, C * dm, F), bias.
 * The depthwise stage is kernels/depthwise.c's passes (depth multiplier 1,
 * no dilation: Xception's) or else layers/conv_plain.c's; the pointwise
 * stage one GEMM. aux keeps the depthwise output (and the pre-activation
 * where the activation's derivative needs it) for backward. Where nothing
 * needs a gradient, the plan runs the layer as a DW_BLOCK step's depthwise
 * and 1x1 (exec/step_dw_block.c, graft_separable_conv2d_args).
 */
#include "kernels/kernels.h"
#include "layers/config_json.h"
#include "layers/conv_plain.h"
#include "layers/layer.h"

#include <string.h>

typedef struct {
    graft_separable_conv2d_cfg cfg;
    graft_plain_conv pc; /* the depthwise stage: groups C, C * dm outputs */
    bool dw;             /* ... or kernels/depthwise.c's, over g */
    graft_conv_geom g;
} sepconv;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    sepconv *z = l->cfg;
    const graft_separable_conv2d_cfg *k = &z->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (SeparableConv2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (k->filters <= 0 || k->kernel_size[0] <= 0 || k->kernel_size[1] <= 0 || k->strides[0] <= 0 ||
        k->strides[1] <= 0 || k->depth_multiplier <= 0)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (SeparableConv2D): filters, kernel_size, strides and "
                          "depth_multiplier must be positive",
                          l->name);
    long cd = (long)in[0].dim[2] * k->depth_multiplier;
    if (cd > 1 << 24)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (SeparableConv2D): too many channels", l->name);
    graft_status s = graft_plain_conv_init(&z->pc, l->name, "SeparableConv2D", &in[0],
                                           k->kernel_size, k->strides, k->dilation_rate,
                                           k->padding, in[0].dim[2], (int)cd);
    if (s != GRAFT_OK) return s;
    z->dw = k->depth_multiplier == 1 && k->dilation_rate[0] == 1 && k->dilation_rate[1] == 1 &&
            k->kernel_size[0] <= GRAFT_DW_MAX_KH;
    if (z->dw) graft_conv_geom_init(&z->g, &in[0], k->kernel_size, k->strides, k->padding);
    l->out_shape = graft_shape3(z->pc.oh, z->pc.ow, k->filters);
    graft_shape dks = {4, {k->kernel_size[0], k->kernel_size[1], in[0].dim[2], k->depth_multiplier}};
    graft_shape pks = {4, {1, 1, (int)cd, k->filters}};
    s = graft_layer_add_weight(l, "depthwise_kernel", dks, true, GRAFT_INIT_GLOROT_UNIFORM);
    if (s == GRAFT_OK)
        s = graft_layer_add_weight(l, "pointwise_kernel", pks, true, GRAFT_INIT_GLOROT_UNIFORM);
    if (s == GRAFT_OK && !k->no_bias)
        s = graft_layer_add_weight(l, "bias", graft_shape1(k->filters), true, GRAFT_INIT_ZEROS);
    return s;
}

static size_t mid_floats(const sepconv *z, int n) { return (size_t)n * z->pc.oh * z->pc.ow * z->pc.f; }

static size_t aux_floats(const graft_layer *l, int n)
{
    const sepconv *z = l->cfg;
    size_t a = mid_floats(z, n);
    if (graft_activation_needs_input(z->cfg.activation))
        a += (size_t)n * graft_shape_size(&l->out_shape);
    return a;
}

/* Backward's scratch: dL/d(depthwise output) in the first mid_room floats,
 * then the depthwise kernels' partial sums. */
static size_t mid_room(const sepconv *z, int n) { return (mid_floats(z, n) + 15) & ~(size_t)15; }

static size_t scratch_floats(const graft_layer *l, int n)
{
    const sepconv *z = l->cfg;
    return mid_room(z, n) + (z->dw ? graft_dw_backward_scratch_floats(&z->g, 1, n) : 0);
}

bool graft_separable_conv2d_args(const graft_layer *l, graft_conv_geom *g, int *filters,
                                 const float **dw_kernel, const float **pw_kernel,
                                 const float **bias, graft_activation *act)
{
    if (strcmp(l->ops->class_name, "SeparableConv2D") != 0) return false;
    const sepconv *z = l->cfg;
    if (!z->dw) return false;
    *g = z->g;
    *filters = z->cfg.filters;
    *dw_kernel = l->weights[0].data;
    *pw_kernel = l->weights[1].data;
    *bias = z->cfg.no_bias ? NULL : l->weights[2].data;
    *act = z->cfg.activation;
    return true;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const sepconv *z = l->cfg;
    const int F = z->cfg.filters, CD = z->pc.f;
    const size_t rows = (size_t)f->n * z->pc.oh * z->pc.ow;
    float *mid = f->aux ? f->aux : f->scratch;
    if (z->dw) graft_dw_forward(&z->g, f->n, f->in[0], l->weights[0].data, NULL, mid);
    else graft_plain_conv_forward(&z->pc, f->n, f->in[0], l->weights[0].data, NULL, mid);
    graft_gemm(false, false, (int)rows, F, CD, 1.0f, mid, CD, l->weights[1].data, F, 0.0f, f->out, F);
    if (!z->cfg.no_bias) {
        const float *bias = l->weights[2].data;
#pragma omp parallel for schedule(static) if (rows * F > 32768)
        for (size_t r = 0; r < rows; r++)
            for (int j = 0; j < F; j++) f->out[r * F + j] += bias[j];
    }
    if (f->aux && graft_activation_needs_input(z->cfg.activation))
        memcpy(f->aux + mid_floats(z, f->n), f->out, rows * F * sizeof(float));
    graft_activation_forward(z->cfg.activation, f->out, rows, (size_t)F);
    graft_epilogue_apply(f->epi, f->out, rows, F);
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const sepconv *z = l->cfg;
    const int F = z->cfg.filters, CD = z->pc.f;
    const size_t rows = (size_t)b->n * z->pc.oh * z->pc.ow;
    const float *mid = b->aux;
    const float *pre = graft_activation_needs_input(z->cfg.activation) ? b->aux + mid_floats(z, b->n)
                                                                      : NULL;
    float *dz = b->dout, *dmid = b->scratch;
    graft_activation_backward_x(z->cfg.activation, pre, b->out, dz, dz, rows, (size_t)F, false);
    if (b->param_grads) {
        graft_gemm(true, false, CD, F, (int)rows, 1.0f, mid, CD, dz, F, 0.0f, l->weights[1].grad, F);
        if (!z->cfg.no_bias) {
            float *db = l->weights[2].grad;
            memset(db, 0, (size_t)F * sizeof(float));
            for (size_t r = 0; r < rows; r++)
                for (int j = 0; j < F; j++) db[j] += dz[r * F + j];
        }
    }
    graft_gemm(false, true, (int)rows, CD, F, 1.0f, dz, F, l->weights[1].data, F, 0.0f, dmid, CD);
    if (z->dw) {
        float *partial = b->scratch + mid_room(z, b->n);
        graft_dw_backward(&z->g, 1, b->n, b->in[0], dmid, l->weights[0].data,
                          b->param_grads ? l->weights[0].grad : NULL, NULL, b->din[0],
                          b->din[0] && b->din_accumulate[0], partial);
        return;
    }
    if (b->param_grads)
        graft_plain_conv_backward_weights(&z->pc, b->n, b->in[0], dmid, l->weights[0].grad, NULL);
    if (b->din[0])
        graft_plain_conv_backward_data(&z->pc, b->n, dmid, l->weights[0].data, b->din[0],
                                       b->din_accumulate[0]);
}

/* Keras 2's SeparableConv2D.get_config(). */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_separable_conv2d_cfg *k = &((const sepconv *)l->cfg)->cfg;
    bool ok = cJSON_AddNumberToObject(o, "filters", k->filters) &&
              graft_config_add_conv_common(o, k->kernel_size, k->strides, k->padding,
                                           k->dilation_rate, 1, k->activation, k->no_bias) &&
              cJSON_AddNumberToObject(o, "depth_multiplier", k->depth_multiplier) &&
              graft_config_add_initializer(o, "depthwise_initializer", "GlorotUniform") &&
              graft_config_add_initializer(o, "pointwise_initializer", "GlorotUniform") &&
              graft_config_add_initializer(o, "bias_initializer", "Zeros") &&
              GRAFT_CONFIG_NULLS(o, "depthwise_regularizer", "pointwise_regularizer",
                                 "bias_regularizer", "activity_regularizer", "depthwise_constraint",
                                 "pointwise_constraint", "bias_constraint");
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_separable_conv2d_cfg k = {.name = c->name};
    bool use_bias = true;
    graft_status s = graft_config_int(c, cfg, "filters", 0, 1, &k.filters);
    if (s == GRAFT_OK && !k.filters) s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'filters'");
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "kernel_size", 0, k.kernel_size);
    if (s == GRAFT_OK && !k.kernel_size[0])
        s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'kernel_size'");
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "strides", 1, k.strides);
    if (s == GRAFT_OK) s = graft_config_padding(c, cfg, &k.padding);
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "dilation_rate", 1, k.dilation_rate);
    if (s == GRAFT_OK) s = graft_config_int(c, cfg, "depth_multiplier", 1, 1, &k.depth_multiplier);
    if (s == GRAFT_OK) s = graft_config_activation(c, cfg, "activation", &k.activation);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "use_bias", true, &use_bias);
    k.no_bias = !use_bias;
    if (s == GRAFT_OK) *out = graft_separable_conv2d(c->m, c->in[0], k);
    return s;
}

const graft_layer_ops graft_separable_conv2d_ops = {
    .class_name = "SeparableConv2D",
    .build = build,
    .forward = forward,
    .backward = backward,
    .aux_floats = aux_floats,
    .scratch_floats = scratch_floats,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_separable_conv2d(graft_model *m, graft_layer *in, graft_separable_conv2d_cfg cfg)
{
    if (!cfg.strides[0]) cfg.strides[0] = 1;
    if (!cfg.strides[1]) cfg.strides[1] = 1;
    if (!cfg.depth_multiplier) cfg.depth_multiplier = 1;
    if (!cfg.dilation_rate[0]) cfg.dilation_rate[0] = 1;
    if (!cfg.dilation_rate[1]) cfg.dilation_rate[1] = 1;
    sepconv z = {.cfg = cfg};
    z.cfg.name = NULL;
    return graft_model_add_unary(m, &graft_separable_conv2d_ops, cfg.name, "separable_conv2d", &z,
                                 sizeof z, in);
}
