/*
 * ResNet50V2, ResNet101V2 and ResNet152V2 as tf.keras.applications builds
 * them (resnet.py with preact): each block starts with BatchNormalization and
 * ReLU ("preact"), a stage's stride sits on its last block's 3x3 convolution
 * (behind a ZeroPadding2D), identity shortcuts of strided blocks are a 1x1
 * MaxPooling2D, and post_bn/post_relu close the stack. Epsilon 1.001e-5.
 */
#include "zoo.h"

#include <stdio.h>

static graft_layer *conv(graft_model *m, graft_layer *x, const char *name, int filters, int k,
                         int stride, int bias)
{
    return graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = filters,
                                                 .kernel_size = {k, k},
                                                 .strides = {stride, stride},
                                                 .padding = GRAFT_VALID, .no_bias = !bias});
}

static graft_layer *bn(graft_model *m, graft_layer *x, const char *name)
{
    return graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = name, .epsilon = 1.001e-5f});
}

static graft_layer *relu(graft_model *m, graft_layer *x, const char *name)
{
    return graft_activation_layer(m, x, name, GRAFT_RELU);
}

/* Keras's block2. */
static graft_layer *block(graft_model *m, graft_layer *in, int filters, int stride,
                          int conv_shortcut, const char *prefix)
{
    char n[64];
    snprintf(n, sizeof n, "%s_preact_bn", prefix);
    graft_layer *pre = bn(m, in, n);
    snprintf(n, sizeof n, "%s_preact_relu", prefix);
    pre = relu(m, pre, n);
    graft_layer *shortcut = in;
    if (conv_shortcut) {
        snprintf(n, sizeof n, "%s_0_conv", prefix);
        shortcut = conv(m, pre, n, 4 * filters, 1, stride, 1);
    } else if (stride > 1) {
        shortcut = graft_max_pooling2d(m, in, (graft_pool2d_cfg){.pool_size = {1, 1},
                                                                 .strides = {stride, stride}});
    }
    snprintf(n, sizeof n, "%s_1_conv", prefix);
    graft_layer *x = conv(m, pre, n, filters, 1, 1, 0);
    snprintf(n, sizeof n, "%s_1_bn", prefix);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "%s_1_relu", prefix);
    x = relu(m, x, n);
    snprintf(n, sizeof n, "%s_2_pad", prefix);
    x = graft_zero_padding2d(m, x, n, 1, 1, 1, 1);
    snprintf(n, sizeof n, "%s_2_conv", prefix);
    x = conv(m, x, n, filters, 3, stride, 0);
    snprintf(n, sizeof n, "%s_2_bn", prefix);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "%s_2_relu", prefix);
    x = relu(m, x, n);
    snprintf(n, sizeof n, "%s_3_conv", prefix);
    x = conv(m, x, n, 4 * filters, 1, 1, 1);
    if (!x || !shortcut) return NULL;
    snprintf(n, sizeof n, "%s_out", prefix);
    graft_layer *pair[2] = {shortcut, x};
    return graft_add(m, n, 2, pair);
}

void graft_zoo_resnet_v2(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    static const int filters[4] = {64, 128, 256, 512}, strides[4] = {2, 2, 2, 1};
    int depth = s->arch->variant;
    const int *blocks = depth == 152   ? (const int[4]){3, 8, 36, 3}
                        : depth == 101 ? (const int[4]){3, 4, 23, 3}
                                       : (const int[4]){3, 4, 6, 3};
    graft_layer *x = graft_zero_padding2d(m, in, "conv1_pad", 3, 3, 3, 3);
    x = conv(m, x, "conv1_conv", 64, 7, 2, 1);
    x = graft_zero_padding2d(m, x, "pool1_pad", 1, 1, 1, 1);
    x = graft_max_pooling2d(m, x, (graft_pool2d_cfg){.name = "pool1_pool", .pool_size = {3, 3},
                                                     .strides = {2, 2}});
    for (int st = 0; st < 4; st++) {
        for (int b = 1; b <= blocks[st] && x; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "conv%d_block%d", st + 2, b);
            x = block(m, x, filters[st], b == blocks[st] ? strides[st] : 1, b == 1, prefix);
        }
    }
    x = bn(m, x, "post_bn");
    x = relu(m, x, "post_relu");
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "avg_pool", "max_pool");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "avg_pool");
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
