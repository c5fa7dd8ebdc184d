/*
 * MobileNetV2 as tf.keras.applications builds it: Conv1 'same', inverted
 * residual blocks (expand 1x1, depthwise 3x3, linear project 1x1, Add when
 * the shape is kept), stride-2 depthwise convolutions behind Keras's
 * correct_pad ZeroPadding2D, BatchNormalization(epsilon 1e-3, momentum 0.999).
 */
#include "zoo.h"

#include <stdio.h>

/* Keras's _make_divisible: the nearest multiple of `divisor`, never below 90% of v. */
static int make_divisible(double v, int divisor)
{
    int nv = (int)(v + divisor / 2.0) / divisor * divisor;
    if (nv < divisor) nv = divisor;
    if (nv < 0.9 * v) nv += divisor;
    return nv;
}

static const graft_batch_norm_cfg bn_v2 = {.momentum = 0.999f, .epsilon = 1e-3f};

static graft_layer *bn(graft_model *m, graft_layer *x, const char *name)
{
    graft_batch_norm_cfg c = bn_v2;
    c.name = name;
    return graft_batch_norm(m, x, c);
}

static graft_layer *relu6(graft_model *m, graft_layer *x, const char *name)
{
    return graft_relu(m, x, (graft_relu_cfg){.name = name, .max_value = 6.0f});
}

static graft_layer *inverted_res_block(graft_model *m, graft_layer *in, int expansion, int stride,
                                       double alpha, int filters, int id)
{
    char prefix[32], name[64];
    int in_channels = graft_layer_output_shape(in).dim[2];
    int pointwise = make_divisible((int)(filters * alpha), 8);
    graft_layer *x = in;
    if (id) {
        snprintf(prefix, sizeof prefix, "block_%d_", id);
        snprintf(name, sizeof name, "%sexpand", prefix);
        x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = expansion * in_channels,
                                                  .kernel_size = {1, 1}, .padding = GRAFT_SAME,
                                                  .no_bias = 1});
        snprintf(name, sizeof name, "%sexpand_BN", prefix);
        x = bn(m, x, name);
        snprintf(name, sizeof name, "%sexpand_relu", prefix);
        x = relu6(m, x, name);
    } else {
        snprintf(prefix, sizeof prefix, "expanded_conv_");
    }
    if (stride == 2 && x) {
        /* correct_pad: one more row/column after than before on even sizes. */
        graft_shape s = graft_layer_output_shape(x);
        int adj_h = 1 - s.dim[0] % 2, adj_w = 1 - s.dim[1] % 2;
        snprintf(name, sizeof name, "%spad", prefix);
        x = graft_zero_padding2d(m, x, name, 1 - adj_h, 1, 1 - adj_w, 1);
    }
    snprintf(name, sizeof name, "%sdepthwise", prefix);
    x = graft_depthwise_conv2d(m, x, (graft_depthwise_conv2d_cfg){
                                         .name = name, .kernel_size = {3, 3},
                                         .strides = {stride, stride},
                                         .padding = stride == 1 ? GRAFT_SAME : GRAFT_VALID,
                                         .no_bias = 1});
    snprintf(name, sizeof name, "%sdepthwise_BN", prefix);
    x = bn(m, x, name);
    snprintf(name, sizeof name, "%sdepthwise_relu", prefix);
    x = relu6(m, x, name);
    snprintf(name, sizeof name, "%sproject", prefix);
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = pointwise,
                                              .kernel_size = {1, 1}, .padding = GRAFT_SAME,
                                              .no_bias = 1});
    snprintf(name, sizeof name, "%sproject_BN", prefix);
    x = bn(m, x, name);
    if (in_channels == pointwise && stride == 1) {
        snprintf(name, sizeof name, "%sadd", prefix);
        graft_layer *pair[2] = {in, x};
        x = graft_add(m, name, 2, pair);
    }
    return x;
}

void graft_zoo_mobilenet_v2(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    static const struct {
        int filters, stride, expansion;
    } blocks[17] = {{16, 1, 1},  {24, 2, 6},  {24, 1, 6},  {32, 2, 6},  {32, 1, 6},  {32, 1, 6},
                    {64, 2, 6},  {64, 1, 6},  {64, 1, 6},  {64, 1, 6},  {96, 1, 6},  {96, 1, 6},
                    {96, 1, 6},  {160, 2, 6}, {160, 1, 6}, {160, 1, 6}, {320, 1, 6}};
    const double alpha = s->alpha;
    graft_layer *x = graft_conv2d(m, in, (graft_conv2d_cfg){.name = "Conv1",
                                                            .filters = make_divisible(32 * alpha, 8),
                                                            .kernel_size = {3, 3},
                                                            .strides = {2, 2},
                                                            .padding = GRAFT_SAME,
                                                            .no_bias = 1});
    x = bn(m, x, "bn_Conv1");
    x = relu6(m, x, "Conv1_relu");
    for (int i = 0; i < 17 && x; i++)
        x = inverted_res_block(m, x, blocks[i].expansion, blocks[i].stride, alpha,
                               blocks[i].filters, i);
    int last = alpha > 1.0 ? make_divisible(1280 * alpha, 8) : 1280;
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = "Conv_1", .filters = last,
                                              .kernel_size = {1, 1}, .no_bias = 1});
    x = bn(m, x, "Conv_1_bn");
    x = relu6(m, x, "out_relu");
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "global_average_pooling2d", "global_max_pooling2d");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "global_average_pooling2d");
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
