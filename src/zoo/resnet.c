/*
 * ResNet50, ResNet101 and ResNet152 as tf.keras.applications builds them
 * (resnet.py, v1): the stride sits on each stage's first 1x1 convolution,
 * convolutions carry biases, BatchNormalization uses epsilon 1.001e-5. Layers
 * are added in the order Keras lists them in `model.layers`, which sorts by
 * depth: in a block with a projection shortcut, 0_conv comes after 2_relu and
 * 0_bn after 3_conv.
 */
#include "zoo.h"

#include <stdio.h>

static graft_layer *conv(graft_model *m, graft_layer *x, const char *name, int filters, int k,
                         int stride, graft_padding pad)
{
    return graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = filters,
                                                 .kernel_size = {k, k},
                                                 .strides = {stride, stride}, .padding = pad});
}

static graft_layer *bn(graft_model *m, graft_layer *x, const char *name)
{
    return graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = name, .epsilon = 1.001e-5f});
}

/* Keras's block1: 1x1 (stride) -> 3x3 -> 1x1 (4x filters), plus the shortcut. */
static graft_layer *block(graft_model *m, graft_layer *in, int filters, int stride, int projection,
                          const char *prefix)
{
    char n[64];
    graft_layer *x;
    snprintf(n, sizeof n, "%s_1_conv", prefix);
    x = conv(m, in, n, filters, 1, stride, GRAFT_VALID);
    snprintf(n, sizeof n, "%s_1_bn", prefix);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "%s_1_relu", prefix);
    x = graft_activation_layer(m, x, n, GRAFT_RELU);
    snprintf(n, sizeof n, "%s_2_conv", prefix);
    x = conv(m, x, n, filters, 3, 1, GRAFT_SAME);
    snprintf(n, sizeof n, "%s_2_bn", prefix);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "%s_2_relu", prefix);
    x = graft_activation_layer(m, x, n, GRAFT_RELU);
    graft_layer *shortcut = in;
    if (projection) {
        snprintf(n, sizeof n, "%s_0_conv", prefix);
        shortcut = conv(m, in, n, 4 * filters, 1, stride, GRAFT_VALID);
    }
    snprintf(n, sizeof n, "%s_3_conv", prefix);
    x = conv(m, x, n, 4 * filters, 1, 1, GRAFT_VALID);
    if (projection) {
        snprintf(n, sizeof n, "%s_0_bn", prefix);
        shortcut = bn(m, shortcut, n);
    }
    snprintf(n, sizeof n, "%s_3_bn", prefix);
    x = bn(m, x, n);
    if (!x || !shortcut) return NULL;
    snprintf(n, sizeof n, "%s_add", prefix);
    graft_layer *pair[2] = {shortcut, x};
    x = graft_add(m, n, 2, pair);
    snprintf(n, sizeof n, "%s_out", prefix);
    return graft_activation_layer(m, x, n, GRAFT_RELU);
}

void graft_zoo_resnet(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    static const int filters[4] = {64, 128, 256, 512}, strides[4] = {1, 2, 2, 2};
    /* Blocks per stage of ResNet50, 101 and 152. */
    int depth = s->arch->variant;
    const int *blocks = depth == 152   ? (const int[4]){3, 8, 36, 3}
                        : depth == 101 ? (const int[4]){3, 4, 23, 3}
                                       : (const int[4]){3, 4, 6, 3};
    graft_layer *x = graft_zero_padding2d(m, in, "conv1_pad", 3, 3, 3, 3);
    x = conv(m, x, "conv1_conv", 64, 7, 2, GRAFT_VALID);
    x = bn(m, x, "conv1_bn");
    x = graft_activation_layer(m, x, "conv1_relu", GRAFT_RELU);
    x = graft_zero_padding2d(m, x, "pool1_pad", 1, 1, 1, 1);
    x = graft_max_pooling2d(m, x, (graft_pool2d_cfg){.name = "pool1_pool", .pool_size = {3, 3},
                                                     .strides = {2, 2}});
    for (int st = 0; st < 4; st++) {
        for (int b = 1; b <= blocks[st] && x; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "conv%d_block%d", st + 2, b);
            x = block(m, x, filters[st], b == 1 ? strides[st] : 1, b == 1, prefix);
        }
    }
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "avg_pool", "max_pool");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "avg_pool");
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
