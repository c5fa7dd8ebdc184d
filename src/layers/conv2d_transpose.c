/*
 * Conv2DTranspose: the gradient of a Conv2D with respect to its input, as
 * TensorFlow defines it. Its kernel (kh, kw, filters, in_channels) is the
 * kernel of the convolution from the (larger) output back to the input, so
 * forward is that convolution's input gradient and backward its forward
 * pass (layers/conv_plain.c). Output size as Keras's deconv_output_length:
 * 'same' in * stride, 'valid' in * stride + max(k - stride, 0), or with
 * output_padding (in - 1) * stride + k - 2 * pad + output_padding.
 */
#include "layers/config_json.h"
#include "layers/conv_plain.h"
#include "layers/layer.h"

#include <string.h>

typedef struct {
    graft_conv2d_transpose_cfg cfg;
    graft_plain_conv pc; /* the convolution from the output (pc.h, pc.w, filters) to the input */
} deconv;

static int out_length(int in, int k, int s, int d, graft_padding p, int op)
{
    int ek = (k - 1) * d + 1;
    if (op < 0) return p == GRAFT_SAME ? in * s : in * s + (ek - s > 0 ? ek - s : 0);
    int pad = p == GRAFT_SAME ? ek / 2 : 0;
    return (in - 1) * s + ek - 2 * pad + op;
}

static graft_status build(graft_layer *l, const graft_shape *in)
{
    deconv *z = l->cfg;
    const graft_conv2d_transpose_cfg *k = &z->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (Conv2DTranspose): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (k->filters <= 0 || k->kernel_size[0] <= 0 || k->kernel_size[1] <= 0 || k->strides[0] <= 0 ||
        k->strides[1] <= 0 || k->dilation_rate[0] <= 0 || k->dilation_rate[1] <= 0 ||
        k->kernel_size[0] > 1 << 12 || k->kernel_size[1] > 1 << 12 || k->strides[0] > 1 << 12 ||
        k->strides[1] > 1 << 12 || k->dilation_rate[0] > 1 << 12 || k->dilation_rate[1] > 1 << 12)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Conv2DTranspose): filters, kernel_size, strides and "
                          "dilation_rate must be positive (and not huge)",
                          l->name);
    long oh = out_length(in[0].dim[0], k->kernel_size[0], k->strides[0], k->dilation_rate[0],
                         k->padding, k->has_output_padding ? k->output_padding[0] : -1);
    long ow = out_length(in[0].dim[1], k->kernel_size[1], k->strides[1], k->dilation_rate[1],
                         k->padding, k->has_output_padding ? k->output_padding[1] : -1);
    if (oh < 1 || ow < 1 || oh > 1 << 24 || ow > 1 << 24)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (Conv2DTranspose): an output of %ld x %ld",
                          l->name, oh, ow);
    graft_shape big = graft_shape3((int)oh, (int)ow, k->filters);
    graft_status s = graft_plain_conv_init(&z->pc, l->name, "Conv2DTranspose", &big, k->kernel_size,
                                           k->strides, k->dilation_rate, k->padding, 1, in[0].dim[2]);
    if (s != GRAFT_OK) return s;
    if (z->pc.oh != in[0].dim[0] || z->pc.ow != in[0].dim[1])
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Conv2DTranspose): output_padding (%d, %d) does not fit "
                          "strides (%d, %d)",
                          l->name, k->output_padding[0], k->output_padding[1], k->strides[0],
                          k->strides[1]);
    l->out_shape = big;
    graft_shape ks = {4, {k->kernel_size[0], k->kernel_size[1], k->filters, in[0].dim[2]}};
    s = graft_layer_add_weight(l, "kernel", ks, true, GRAFT_INIT_GLOROT_UNIFORM);
    if (s == GRAFT_OK && !k->no_bias)
        s = graft_layer_add_weight(l, "bias", graft_shape1(k->filters), true, GRAFT_INIT_ZEROS);
    return s;
}

static size_t in_floats(const deconv *z, int n) { return (size_t)n * z->pc.oh * z->pc.ow * z->pc.f; }

static size_t aux_floats(const graft_layer *l, int n)
{
    const deconv *z = l->cfg;
    return graft_activation_needs_input(z->cfg.activation) ? (size_t)n * graft_shape_size(&l->out_shape)
                                                           : 0;
}

static size_t scratch_floats(const graft_layer *l, int n) { return in_floats(l->cfg, n); }

static void forward(graft_layer *l, const graft_fwd *f)
{
    const deconv *z = l->cfg;
    const int F = z->cfg.filters;
    const size_t rows = (size_t)f->n * z->pc.h * z->pc.w;
    graft_plain_conv_backward_data(&z->pc, f->n, f->in[0], l->weights[0].data, f->out, false);
    if (!z->cfg.no_bias) {
        const float *bias = l->weights[1].data;
#pragma omp parallel for schedule(static) if (rows * F > 32768)
        for (size_t r = 0; r < rows; r++)
            for (int j = 0; j < F; j++) f->out[r * F + j] += bias[j];
    }
    if (f->aux) memcpy(f->aux, f->out, rows * F * sizeof(float));
    graft_activation_forward(z->cfg.activation, f->out, rows, (size_t)F);
    graft_epilogue_apply(f->epi, f->out, rows, F);
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const deconv *z = l->cfg;
    const int F = z->cfg.filters;
    const size_t rows = (size_t)b->n * z->pc.h * z->pc.w;
    float *dz = b->dout;
    graft_activation_backward_x(z->cfg.activation, b->aux, b->out, dz, dz, rows, (size_t)F, false);
    if (b->param_grads) {
        graft_plain_conv_backward_weights(&z->pc, b->n, dz, b->in[0], l->weights[0].grad, NULL);
        if (!z->cfg.no_bias) {
            float *db = l->weights[1].grad;
            memset(db, 0, (size_t)F * sizeof(float));
            for (size_t r = 0; r < rows; r++)
                for (int j = 0; j < F; j++) db[j] += dz[r * F + j];
        }
    }
    float *dx = b->din[0];
    if (!dx) return;
    if (!b->din_accumulate[0]) {
        graft_plain_conv_forward(&z->pc, b->n, dz, l->weights[0].data, NULL, dx);
        return;
    }
    const size_t n = in_floats(z, b->n);
    graft_plain_conv_forward(&z->pc, b->n, dz, l->weights[0].data, NULL, b->scratch);
    for (size_t i = 0; i < n; i++) dx[i] += b->scratch[i];
}

/* Keras 2's Conv2DTranspose.get_config(). */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_conv2d_transpose_cfg *k = &((const deconv *)l->cfg)->cfg;
    bool ok = cJSON_AddNumberToObject(o, "filters", k->filters) &&
              graft_config_add_conv_common(o, k->kernel_size, k->strides, k->padding,
                                           k->dilation_rate, 1, k->activation, k->no_bias) &&
              graft_config_add_initializer(o, "kernel_initializer", "GlorotUniform") &&
              graft_config_add_initializer(o, "bias_initializer", "Zeros") &&
              GRAFT_CONFIG_NULLS(o, "kernel_regularizer", "bias_regularizer",
                                 "activity_regularizer", "kernel_constraint", "bias_constraint");
    if (ok && k->has_output_padding)
        ok = graft_config_add_pair(o, "output_padding", k->output_padding[0], k->output_padding[1]);
    else if (ok)
        ok = cJSON_AddNullToObject(o, "output_padding") != NULL;
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_conv2d_transpose_cfg k = {.name = c->name};
    bool use_bias = true;
    graft_status s = graft_config_int(c, cfg, "filters", 0, 1, &k.filters);
    if (s == GRAFT_OK && !k.filters) s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'filters'");
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "kernel_size", 0, k.kernel_size);
    if (s == GRAFT_OK && !k.kernel_size[0])
        s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'kernel_size'");
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "strides", 1, k.strides);
    if (s == GRAFT_OK) s = graft_config_padding(c, cfg, &k.padding);
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "dilation_rate", 1, k.dilation_rate);
    if (s == GRAFT_OK && graft_config_present(cfg, "output_padding")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "output_padding");
        bool ok = graft_config_small_int(v, 0, &k.output_padding[0]);
        if (ok) k.output_padding[1] = k.output_padding[0];
        else
            ok = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
                 graft_config_small_int(cJSON_GetArrayItem(v, 0), 0, &k.output_padding[0]) &&
                 graft_config_small_int(cJSON_GetArrayItem(v, 1), 0, &k.output_padding[1]);
        if (!ok) s = graft_config_refuse(c, GRAFT_EFORMAT, "'output_padding' is not understood");
        k.has_output_padding = 1;
    }
    if (s == GRAFT_OK) s = graft_config_activation(c, cfg, "activation", &k.activation);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "use_bias", true, &use_bias);
    k.no_bias = !use_bias;
    if (s == GRAFT_OK) *out = graft_conv2d_transpose(c->m, c->in[0], k);
    return s;
}

const graft_layer_ops graft_conv2d_transpose_ops = {
    .class_name = "Conv2DTranspose",
    .build = build,
    .forward = forward,
    .backward = backward,
    .aux_floats = aux_floats,
    .scratch_floats = scratch_floats,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_conv2d_transpose(graft_model *m, graft_layer *in, graft_conv2d_transpose_cfg cfg)
{
    if (!cfg.strides[0]) cfg.strides[0] = 1;
    if (!cfg.strides[1]) cfg.strides[1] = 1;
    if (!cfg.dilation_rate[0]) cfg.dilation_rate[0] = 1;
    if (!cfg.dilation_rate[1]) cfg.dilation_rate[1] = 1;
    deconv z = {.cfg = cfg};
    z.cfg.name = NULL;
    return graft_model_add_unary(m, &graft_conv2d_transpose_ops, cfg.name, "conv2d_transpose", &z,
                                 sizeof z, in);
}
