/*
 * Xception as tf.keras.applications builds it (xception.py): an entry flow of
 * separable-convolution blocks with strided 1x1 residual projections (their
 * Conv2D and BatchNormalization unnamed: conv2d, batch_normalization, ...),
 * eight middle blocks of three ReLU-separable-BN steps around an identity
 * residual, and an exit flow. No bias anywhere; BatchNormalization epsilon 1e-3.
 */
#include "zoo.h"

#include <stdio.h>

static graft_layer *bn(graft_model *m, graft_layer *x, const char *name)
{
    return graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = name});
}

static graft_layer *relu(graft_model *m, graft_layer *x, const char *name)
{
    return graft_activation_layer(m, x, name, GRAFT_RELU);
}

static graft_layer *sep(graft_model *m, graft_layer *x, const char *name, int filters)
{
    return graft_separable_conv2d(m, x, (graft_separable_conv2d_cfg){
                                            .name = name, .filters = filters,
                                            .kernel_size = {3, 3}, .padding = GRAFT_SAME,
                                            .no_bias = 1});
}

static graft_layer *add2(graft_model *m, graft_layer *a, graft_layer *b)
{
    if (!a || !b) return NULL;
    graft_layer *pair[2] = {a, b};
    return graft_add(m, NULL, 2, pair);
}

/* Blocks 2, 3, 4 and 13: the residual projection first, then (ReLU,)
 * separable, BN, ReLU, separable, BN, max pool 'same', add. */
static graft_layer *entry_block(graft_model *m, graft_layer *x, int block, int f1, int f2)
{
    char n[48];
    graft_layer *res = graft_conv2d(m, x, (graft_conv2d_cfg){.filters = f2, .kernel_size = {1, 1},
                                                             .strides = {2, 2},
                                                             .padding = GRAFT_SAME, .no_bias = 1});
    res = bn(m, res, NULL);
    if (block != 2) {
        snprintf(n, sizeof n, "block%d_sepconv1_act", block);
        x = relu(m, x, n);
    }
    snprintf(n, sizeof n, "block%d_sepconv1", block);
    x = sep(m, x, n, f1);
    snprintf(n, sizeof n, "block%d_sepconv1_bn", block);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "block%d_sepconv2_act", block);
    x = relu(m, x, n);
    snprintf(n, sizeof n, "block%d_sepconv2", block);
    x = sep(m, x, n, f2);
    snprintf(n, sizeof n, "block%d_sepconv2_bn", block);
    x = bn(m, x, n);
    snprintf(n, sizeof n, "block%d_pool", block);
    x = graft_max_pooling2d(m, x, (graft_pool2d_cfg){.name = n, .pool_size = {3, 3},
                                                     .strides = {2, 2}, .padding = GRAFT_SAME});
    return add2(m, x, res);
}

void graft_zoo_xception(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    graft_layer *x = graft_conv2d(m, in, (graft_conv2d_cfg){.name = "block1_conv1", .filters = 32,
                                                            .kernel_size = {3, 3},
                                                            .strides = {2, 2}, .no_bias = 1});
    x = bn(m, x, "block1_conv1_bn");
    x = relu(m, x, "block1_conv1_act");
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = "block1_conv2", .filters = 64,
                                              .kernel_size = {3, 3}, .no_bias = 1});
    x = bn(m, x, "block1_conv2_bn");
    x = relu(m, x, "block1_conv2_act");
    if (x) x = entry_block(m, x, 2, 128, 128);
    if (x) x = entry_block(m, x, 3, 256, 256);
    if (x) x = entry_block(m, x, 4, 728, 728);
    for (int b = 5; b <= 12 && x; b++) {
        graft_layer *res = x;
        char n[48];
        for (int k = 1; k <= 3; k++) {
            snprintf(n, sizeof n, "block%d_sepconv%d_act", b, k);
            x = relu(m, x, n);
            snprintf(n, sizeof n, "block%d_sepconv%d", b, k);
            x = sep(m, x, n, 728);
            snprintf(n, sizeof n, "block%d_sepconv%d_bn", b, k);
            x = bn(m, x, n);
        }
        x = add2(m, x, res);
    }
    if (x) x = entry_block(m, x, 13, 728, 1024);
    x = sep(m, x, "block14_sepconv1", 1536);
    x = bn(m, x, "block14_sepconv1_bn");
    x = relu(m, x, "block14_sepconv1_act");
    x = sep(m, x, "block14_sepconv2", 2048);
    x = bn(m, x, "block14_sepconv2_bn");
    x = relu(m, x, "block14_sepconv2_act");
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "global_average_pooling2d", "global_max_pooling2d");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "avg_pool");
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
