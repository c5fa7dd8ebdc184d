/*
 * DenseNet121, DenseNet169 and DenseNet201 as tf.keras.applications builds
 * them (densenet.py): each conv block concatenates 32 new channels (BN, ReLU,
 * 1x1 to 128, BN, ReLU, 3x3 'same' to 32) to its input; transition blocks
 * halve the channels with a 1x1 convolution and the size with 2x2 average
 * pooling. Convolutions have no bias; BatchNormalization epsilon 1.001e-5.
 * The stem's names carry slashes ("conv1/conv"), as in the published files.
 */
#include "zoo.h"

#include <stdio.h>

static graft_layer *bn(graft_model *m, graft_layer *x, const char *name)
{
    return graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = name, .epsilon = 1.001e-5f});
}

static graft_layer *conv(graft_model *m, graft_layer *x, const char *name, int filters, int k)
{
    return graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = filters,
                                                 .kernel_size = {k, k},
                                                 .padding = k > 1 ? GRAFT_SAME : GRAFT_VALID,
                                                 .no_bias = 1});
}

static graft_layer *conv_block(graft_model *m, graft_layer *in, const char *prefix)
{
    char n[64];
    snprintf(n, sizeof n, "%s_0_bn", prefix);
    graft_layer *x = bn(m, in, n);
    snprintf(n, sizeof n, "%s_0_relu", prefix);
    x = graft_activation_layer(m, x, n, GRAFT_RELU);
    snprintf(n, sizeof n, "%s_1_conv", prefix);
    x = conv(m, x, n, 128, 1);
    snprintf(n, sizeof n, "%s_1_bn", prefix);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "%s_1_relu", prefix);
    x = graft_activation_layer(m, x, n, GRAFT_RELU);
    snprintf(n, sizeof n, "%s_2_conv", prefix);
    x = conv(m, x, n, 32, 3);
    if (!x) return NULL;
    snprintf(n, sizeof n, "%s_concat", prefix);
    graft_layer *pair[2] = {in, x};
    return graft_concatenate(m, n, -1, 2, pair);
}

static graft_layer *transition(graft_model *m, graft_layer *x, const char *prefix)
{
    char n[64];
    snprintf(n, sizeof n, "%s_bn", prefix);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "%s_relu", prefix);
    x = graft_activation_layer(m, x, n, GRAFT_RELU);
    if (!x) return NULL;
    snprintf(n, sizeof n, "%s_conv", prefix);
    x = conv(m, x, n, graft_layer_output_shape(x).dim[2] / 2, 1);
    snprintf(n, sizeof n, "%s_pool", prefix);
    return graft_average_pooling2d(m, x, (graft_pool2d_cfg){.name = n, .pool_size = {2, 2},
                                                             .strides = {2, 2}});
}

void graft_zoo_densenet(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    int depth = s->arch->variant;
    const int *blocks = depth == 201   ? (const int[4]){6, 12, 48, 32}
                        : depth == 169 ? (const int[4]){6, 12, 32, 32}
                                       : (const int[4]){6, 12, 24, 16};
    graft_layer *x = graft_zero_padding2d(m, in, NULL, 3, 3, 3, 3);
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = "conv1/conv", .filters = 64,
                                              .kernel_size = {7, 7}, .strides = {2, 2},
                                              .no_bias = 1});
    x = bn(m, x, "conv1/bn");
    x = graft_activation_layer(m, x, "conv1/relu", GRAFT_RELU);
    x = graft_zero_padding2d(m, x, NULL, 1, 1, 1, 1);
    x = graft_max_pooling2d(m, x, (graft_pool2d_cfg){.name = "pool1", .pool_size = {3, 3},
                                                     .strides = {2, 2}});
    for (int st = 0; st < 4 && x; st++) {
        for (int b = 1; b <= blocks[st] && x; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "conv%d_block%d", st + 2, b);
            x = conv_block(m, x, prefix);
        }
        if (st < 3 && x) {
            char prefix[16];
            snprintf(prefix, sizeof prefix, "pool%d", st + 2);
            x = transition(m, x, prefix);
        }
    }
    x = bn(m, x, "bn");
    x = graft_activation_layer(m, x, "relu", GRAFT_RELU);
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "avg_pool", "max_pool");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "avg_pool");
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
