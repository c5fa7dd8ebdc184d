/*
 * InceptionV3 as tf.keras.applications builds it (inception_v3.py): every
 * convolution is conv2d_bn (Conv2D without bias, BatchNormalization without
 * scale, ReLU), all with Keras's automatic names (conv2d, conv2d_1, ...,
 * batch_normalization_N, activation_N) in Keras's creation order; the mixed
 * blocks concatenate their branches (mixed0 ... mixed10; mixed9_0/1 and two
 * unnamed ones inside mixed9 and mixed10).
 */
#include "zoo.h"

#include <stdio.h>

static graft_layer *cbr(graft_model *m, graft_layer *x, int filters, int rows, int cols,
                        int stride, graft_padding pad)
{
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.filters = filters, .kernel_size = {rows, cols},
                                              .strides = {stride, stride}, .padding = pad,
                                              .no_bias = 1});
    x = graft_batch_norm(m, x, (graft_batch_norm_cfg){.no_scale = 1});
    return graft_activation_layer(m, x, NULL, GRAFT_RELU);
}

static graft_layer *cb(graft_model *m, graft_layer *x, int filters, int rows, int cols)
{
    return cbr(m, x, filters, rows, cols, 1, GRAFT_SAME);
}

static graft_layer *avg3(graft_model *m, graft_layer *x)
{
    return graft_average_pooling2d(m, x, (graft_pool2d_cfg){.pool_size = {3, 3},
                                                            .strides = {1, 1},
                                                            .padding = GRAFT_SAME});
}

static graft_layer *max3(graft_model *m, graft_layer *x)
{
    return graft_max_pooling2d(m, x, (graft_pool2d_cfg){.pool_size = {3, 3}, .strides = {2, 2}});
}

static graft_layer *concat(graft_model *m, const char *name, int n, graft_layer **parts)
{
    for (int i = 0; i < n; i++)
        if (!parts[i]) return NULL;
    return graft_concatenate(m, name, -1, n, parts);
}

void graft_zoo_inception_v3(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    char name[32]; /* "mixedN_M": room for any int, which GCC cannot rule out */
    graft_layer *x = cbr(m, in, 32, 3, 3, 2, GRAFT_VALID);
    x = cbr(m, x, 32, 3, 3, 1, GRAFT_VALID);
    x = cb(m, x, 64, 3, 3);
    x = max3(m, x);
    x = cbr(m, x, 80, 1, 1, 1, GRAFT_VALID);
    x = cbr(m, x, 192, 3, 3, 1, GRAFT_VALID);
    x = max3(m, x);
    /* mixed 0, 1, 2: 35 x 35 x 256 (288) */
    for (int i = 0; i < 3 && x; i++) {
        graft_layer *b[4];
        b[0] = cb(m, x, 64, 1, 1);
        b[1] = cb(m, cb(m, x, 48, 1, 1), 64, 5, 5);
        b[2] = cb(m, cb(m, cb(m, x, 64, 1, 1), 96, 3, 3), 96, 3, 3);
        b[3] = cb(m, avg3(m, x), i == 0 ? 32 : 64, 1, 1);
        snprintf(name, sizeof name, "mixed%d", i);
        x = concat(m, name, 4, b);
    }
    /* mixed 3: 17 x 17 x 768 */
    if (x) {
        graft_layer *b[3];
        b[0] = cbr(m, x, 384, 3, 3, 2, GRAFT_VALID);
        b[1] = cbr(m, cb(m, cb(m, x, 64, 1, 1), 96, 3, 3), 96, 3, 3, 2, GRAFT_VALID);
        b[2] = max3(m, x);
        x = concat(m, "mixed3", 3, b);
    }
    /* mixed 4, 5, 6, 7: 17 x 17 x 768 */
    static const int c7[4] = {128, 160, 160, 192};
    for (int i = 0; i < 4 && x; i++) {
        int c = c7[i];
        graft_layer *b[4];
        b[0] = cb(m, x, 192, 1, 1);
        b[1] = cb(m, cb(m, cb(m, x, c, 1, 1), c, 1, 7), 192, 7, 1);
        graft_layer *d = cb(m, cb(m, x, c, 1, 1), c, 7, 1);
        b[2] = cb(m, cb(m, cb(m, d, c, 1, 7), c, 7, 1), 192, 1, 7);
        b[3] = cb(m, avg3(m, x), 192, 1, 1);
        snprintf(name, sizeof name, "mixed%d", 4 + i);
        x = concat(m, name, 4, b);
    }
    /* mixed 8: 8 x 8 x 1280 */
    if (x) {
        graft_layer *b[3];
        b[0] = cbr(m, cb(m, x, 192, 1, 1), 320, 3, 3, 2, GRAFT_VALID);
        graft_layer *d = cb(m, cb(m, cb(m, x, 192, 1, 1), 192, 1, 7), 192, 7, 1);
        b[1] = cbr(m, d, 192, 3, 3, 2, GRAFT_VALID);
        b[2] = max3(m, x);
        x = concat(m, "mixed8", 3, b);
    }
    /* mixed 9, 10: 8 x 8 x 2048 */
    for (int i = 0; i < 2 && x; i++) {
        graft_layer *b[4], *pair[2];
        b[0] = cb(m, x, 320, 1, 1);
        graft_layer *t = cb(m, x, 384, 1, 1);
        pair[0] = cb(m, t, 384, 1, 3);
        pair[1] = cb(m, t, 384, 3, 1);
        snprintf(name, sizeof name, "mixed9_%d", i);
        b[1] = concat(m, name, 2, pair);
        t = cb(m, cb(m, x, 448, 1, 1), 384, 3, 3);
        pair[0] = cb(m, t, 384, 1, 3);
        pair[1] = cb(m, t, 384, 3, 1);
        b[2] = concat(m, NULL, 2, pair);
        b[3] = cb(m, avg3(m, x), 192, 1, 1);
        snprintf(name, sizeof name, "mixed%d", 9 + i);
        x = concat(m, name, 4, b);
    }
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "global_average_pooling2d", "global_max_pooling2d");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "avg_pool");
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
