/*
 * MobileNetV3Small and MobileNetV3Large as tf.keras.applications builds them
 * (mobilenet_v3.py, TF 2.9 on): Rescaling to [-1, 1] in front
 * (include_preprocessing), inverted residual blocks with squeeze-and-excite
 * (GlobalAveragePooling2D keepdims, 1x1 ReLU, 1x1, hard sigmoid, Multiply),
 * stride-2 depthwise convolutions behind correct_pad, BatchNormalization
 * epsilon 1e-3 and momentum 0.999; the top pools before Conv_2. Layer names
 * are those of the published weight files ("expanded_conv_3/depthwise").
 * Keras 2 wrote hard_sigmoid and hard_swish as TF operations (x + 3, ReLU(6),
 * * 1/6, Multiply); graft has them as Activation layers, Keras 3's form of
 * the same function, relu6(x + 3) / 6. minimalistic: 3x3 kernels, ReLU, no
 * squeeze-and-excite.
 */
#include "zoo.h"

#include <stdio.h>

static int depth(double v)
{
    int nv = (int)(v + 4.0) / 8 * 8;
    if (nv < 8) nv = 8;
    if (nv < 0.9 * v) nv += 8;
    return nv;
}

static graft_layer *bn(graft_model *m, graft_layer *x, const char *name)
{
    return graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = name, .epsilon = 1e-3f,
                                                         .momentum = 0.999f});
}

/* activation: GRAFT_RELU (a ReLU layer) or GRAFT_HARD_SWISH (an Activation). */
static graft_layer *act(graft_model *m, graft_layer *x, graft_activation a)
{
    if (a == GRAFT_RELU) return graft_relu(m, x, (graft_relu_cfg){0});
    return graft_activation_layer(m, x, NULL, a);
}

static graft_layer *conv(graft_model *m, graft_layer *x, const char *name, int filters, int bias)
{
    return graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = filters,
                                                 .kernel_size = {1, 1}, .padding = GRAFT_SAME,
                                                 .no_bias = !bias});
}

static graft_layer *se_block(graft_model *m, graft_layer *in, int filters, const char *p)
{
    char n[80];
    snprintf(n, sizeof n, "%ssqueeze_excite/AvgPool", p);
    graft_layer *x = graft_global_average_pooling2d_keepdims(m, in, n);
    snprintf(n, sizeof n, "%ssqueeze_excite/Conv", p);
    x = conv(m, x, n, depth(filters * 0.25), 1);
    snprintf(n, sizeof n, "%ssqueeze_excite/Relu", p);
    x = graft_relu(m, x, (graft_relu_cfg){.name = n});
    snprintf(n, sizeof n, "%ssqueeze_excite/Conv_1", p);
    x = conv(m, x, n, filters, 1);
    x = graft_activation_layer(m, x, NULL, GRAFT_HARD_SIGMOID);
    if (!x) return NULL;
    snprintf(n, sizeof n, "%ssqueeze_excite/Mul", p);
    graft_layer *pair[2] = {in, x};
    return graft_multiply(m, n, 2, pair);
}

static graft_layer *block(graft_model *m, graft_layer *in, double expansion, int filters,
                          int kernel, int stride, int se, graft_activation a, int id)
{
    char p[32], n[80];
    graft_layer *x = in;
    int infilters = graft_layer_output_shape(in).dim[2];
    snprintf(p, sizeof p, id ? "expanded_conv_%d/" : "expanded_conv/", id);
    if (id) {
        snprintf(n, sizeof n, "%sexpand", p);
        x = conv(m, x, n, depth(infilters * expansion), 0);
        snprintf(n, sizeof n, "%sexpand/BatchNorm", p);
        x = bn(m, x, n);
        x = act(m, x, a);
    }
    if (stride == 2 && x) {
        graft_shape s = graft_layer_output_shape(x);
        int c = kernel / 2, ah = 1 - s.dim[0] % 2, aw = 1 - s.dim[1] % 2;
        snprintf(n, sizeof n, "%sdepthwise/pad", p);
        x = graft_zero_padding2d(m, x, n, c - ah, c, c - aw, c);
    }
    snprintf(n, sizeof n, "%sdepthwise", p);
    x = graft_depthwise_conv2d(m, x, (graft_depthwise_conv2d_cfg){
                                         .name = n, .kernel_size = {kernel, kernel},
                                         .strides = {stride, stride},
                                         .padding = stride == 1 ? GRAFT_SAME : GRAFT_VALID,
                                         .no_bias = 1});
    snprintf(n, sizeof n, "%sdepthwise/BatchNorm", p);
    x = bn(m, x, n);
    x = act(m, x, a);
    if (se && x) x = se_block(m, x, depth(infilters * expansion), p);
    snprintf(n, sizeof n, "%sproject", p);
    x = conv(m, x, n, filters, 0);
    snprintf(n, sizeof n, "%sproject/BatchNorm", p);
    x = bn(m, x, n);
    if (stride == 1 && infilters == filters && x) {
        snprintf(n, sizeof n, "%sAdd", p);
        graft_layer *pair[2] = {in, x};
        x = graft_add(m, n, 2, pair);
    }
    return x;
}

void graft_zoo_mobilenet_v3(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    /* expansion, filters, kernel (0: the model's), stride, squeeze-excite, hard swish */
    static const struct {
        double e;
        int f, k, s, se, hs;
    } small[11] = {{1, 16, 3, 2, 1, 0},      {72. / 16, 24, 3, 2, 0, 0}, {88. / 24, 24, 3, 1, 0, 0},
                   {4, 40, 0, 2, 1, 1},      {6, 40, 0, 1, 1, 1},        {6, 40, 0, 1, 1, 1},
                   {3, 48, 0, 1, 1, 1},      {3, 48, 0, 1, 1, 1},        {6, 96, 0, 2, 1, 1},
                   {6, 96, 0, 1, 1, 1},      {6, 96, 0, 1, 1, 1}},
      large[15] = {{1, 16, 3, 1, 0, 0},   {4, 24, 3, 2, 0, 0},   {3, 24, 3, 1, 0, 0},
                   {3, 40, 0, 2, 1, 0},   {3, 40, 0, 1, 1, 0},   {3, 40, 0, 1, 1, 0},
                   {6, 80, 3, 2, 0, 1},   {2.5, 80, 3, 1, 0, 1}, {2.3, 80, 3, 1, 0, 1},
                   {2.3, 80, 3, 1, 0, 1}, {6, 112, 3, 1, 1, 1}, {6, 112, 3, 1, 1, 1},
                   {6, 160, 0, 2, 1, 1},  {6, 160, 0, 1, 1, 1}, {6, 160, 0, 1, 1, 1}};
    const graft_zoo_cfg *c = &s->cfg;
    int is_large = s->arch->variant == 1, n_blocks = is_large ? 15 : 11;
    int minimal = c->minimalistic, kernel = minimal ? 3 : 5;
    graft_activation hswish = minimal ? GRAFT_RELU : GRAFT_HARD_SWISH;
    graft_layer *x = in;
    if (c->include_preprocessing)
        x = graft_rescaling(m, x, (graft_rescaling_cfg){.n_scale = 1, .scale = {1.0f / 127.5f},
                                                        .n_offset = 1, .offset = {-1.0f}});
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = "Conv", .filters = 16, .kernel_size = {3, 3},
                                              .strides = {2, 2}, .padding = GRAFT_SAME,
                                              .no_bias = 1});
    x = bn(m, x, "Conv/BatchNorm");
    x = act(m, x, hswish);
    for (int i = 0; i < n_blocks && x; i++) {
        double e = is_large ? large[i].e : small[i].e;
        int f = is_large ? large[i].f : small[i].f, k = is_large ? large[i].k : small[i].k;
        int st = is_large ? large[i].s : small[i].s, se = is_large ? large[i].se : small[i].se;
        int hs = is_large ? large[i].hs : small[i].hs;
        x = block(m, x, e, depth(f * s->alpha), k ? k : kernel, st, se && !minimal,
                  hs ? hswish : GRAFT_RELU, i);
    }
    if (!x) return;
    int last_conv = depth(graft_layer_output_shape(x).dim[2] * 6);
    x = conv(m, x, "Conv_1", last_conv, 0);
    x = bn(m, x, "Conv_1/BatchNorm");
    x = act(m, x, hswish);
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "avg_pool", "max_pool");
        return;
    }
    int last_point = is_large ? 1280 : 1024;
    if (s->alpha > 1.0) last_point = depth(last_point * s->alpha);
    x = graft_global_average_pooling2d_keepdims(m, x, NULL);
    x = conv(m, x, "Conv_2", last_point, 1);
    x = act(m, x, hswish);
    x = graft_dropout(m, x, NULL, 0.2f); /* Keras's dropout_rate default */
    x = conv(m, x, "Logits", c->classes, 1);
    x = graft_flatten(m, x, NULL);
    graft_activation_layer(m, x, "Predictions", GRAFT_SOFTMAX);
}
