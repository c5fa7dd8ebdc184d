/*
 * EfficientNetB0 ... B7 as tf.keras.applications builds them (efficientnet.py):
 * Rescaling(1/255) and an adapted Normalization in front (and for ImageNet
 * weights one more Rescaling), a stem, seven stages of MBConv blocks (expand 1x1, depthwise k x k
 * behind correct_pad's ZeroPadding2D when strided, squeeze-and-excitation,
 * project 1x1, Dropout and Add where the shape is kept), and the top conv.
 * Widths round as Keras's round_filters, repeats as ceil(depth * repeats).
 * The blocks' drop_connect is Dropout(noise_shape=(None, 1, 1, 1)): identity
 * at inference; graft's Dropout drops single values when training.
 */
#include "zoo.h"

#include <math.h>
#include <stdio.h>

static const struct {
    double width, depth, dropout;
} scales[8] = {{1.0, 1.0, 0.2}, {1.0, 1.1, 0.2}, {1.1, 1.2, 0.3}, {1.2, 1.4, 0.3},
               {1.4, 1.8, 0.4}, {1.6, 2.2, 0.4}, {1.8, 2.6, 0.5}, {2.0, 3.1, 0.5}};

static const struct {
    int kernel, repeats, filters_in, filters_out, expand, stride;
} stages[7] = {{3, 1, 32, 16, 1, 1},  {3, 2, 16, 24, 6, 2},  {5, 2, 24, 40, 6, 2},
               {3, 3, 40, 80, 6, 2},  {5, 3, 80, 112, 6, 1}, {5, 4, 112, 192, 6, 2},
               {3, 1, 192, 320, 6, 1}};

static int round_filters(int filters, double width)
{
    double f = filters * width;
    int nf = (int)(f + 4.0) / 8 * 8;
    if (nf < 8) nf = 8;
    if (nf < 0.9 * f) nf += 8;
    return nf;
}

static int round_repeats(int repeats, double depth) { return (int)ceil(depth * repeats); }

static graft_layer *bn(graft_model *m, graft_layer *x, const char *prefix, const char *what)
{
    char n[64];
    snprintf(n, sizeof n, "%s%s", prefix, what);
    return graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = n});
}

static graft_layer *act(graft_model *m, graft_layer *x, const char *prefix, const char *what)
{
    char n[64];
    snprintf(n, sizeof n, "%s%s", prefix, what);
    return graft_activation_layer(m, x, n, GRAFT_SWISH);
}

static graft_layer *conv1x1(graft_model *m, graft_layer *x, const char *prefix, const char *what,
                            int filters, int bias, graft_activation a)
{
    char n[64];
    snprintf(n, sizeof n, "%s%s", prefix, what);
    return graft_conv2d(m, x, (graft_conv2d_cfg){.name = n, .filters = filters,
                                                 .kernel_size = {1, 1}, .padding = GRAFT_SAME,
                                                 .no_bias = !bias, .activation = a});
}

/* imagenet_utils.correct_pad: one less row/column before than after on even sizes. */
static graft_layer *correct_pad(graft_model *m, graft_layer *x, const char *name, int k)
{
    if (!x) return NULL;
    graft_shape s = graft_layer_output_shape(x);
    int c = k / 2, ah = 1 - s.dim[0] % 2, aw = 1 - s.dim[1] % 2;
    return graft_zero_padding2d(m, x, name, c - ah, c, c - aw, c);
}

static graft_layer *block(graft_model *m, graft_layer *in, const char *p, double drop_rate,
                          int filters_in, int filters_out, int kernel, int stride, int expand)
{
    char n[64];
    int filters = filters_in * expand;
    graft_layer *x = in;
    if (expand != 1) {
        x = conv1x1(m, x, p, "expand_conv", filters, 0, GRAFT_LINEAR);
        x = bn(m, x, p, "expand_bn");
        x = act(m, x, p, "expand_activation");
    }
    if (stride == 2) {
        snprintf(n, sizeof n, "%sdwconv_pad", p);
        x = correct_pad(m, x, n, kernel);
    }
    snprintf(n, sizeof n, "%sdwconv", p);
    x = graft_depthwise_conv2d(m, x, (graft_depthwise_conv2d_cfg){
                                         .name = n, .kernel_size = {kernel, kernel},
                                         .strides = {stride, stride},
                                         .padding = stride == 2 ? GRAFT_VALID : GRAFT_SAME,
                                         .no_bias = 1});
    x = bn(m, x, p, "bn");
    x = act(m, x, p, "activation");
    int filters_se = (int)(filters_in * 0.25);
    if (filters_se < 1) filters_se = 1;
    snprintf(n, sizeof n, "%sse_squeeze", p);
    graft_layer *se = graft_global_average_pooling2d(m, x, n);
    snprintf(n, sizeof n, "%sse_reshape", p);
    se = graft_reshape(m, se, n, graft_shape3(1, 1, filters));
    se = conv1x1(m, se, p, "se_reduce", filters_se, 1, GRAFT_SWISH);
    se = conv1x1(m, se, p, "se_expand", filters, 1, GRAFT_SIGMOID);
    if (!x || !se) return NULL;
    snprintf(n, sizeof n, "%sse_excite", p);
    graft_layer *pair[2] = {x, se};
    x = graft_multiply(m, n, 2, pair);
    x = conv1x1(m, x, p, "project_conv", filters_out, 0, GRAFT_LINEAR);
    x = bn(m, x, p, "project_bn");
    if (stride == 1 && filters_in == filters_out && x) {
        if (drop_rate > 0) {
            snprintf(n, sizeof n, "%sdrop", p);
            x = graft_dropout(m, x, n, (float)drop_rate);
        }
        snprintf(n, sizeof n, "%sadd", p);
        graft_layer *sum[2] = {x, in};
        x = graft_add(m, n, 2, sum);
    }
    return x;
}

void graft_zoo_efficientnet(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    int v = s->arch->variant;
    double width = scales[v].width, depth = scales[v].depth;
    graft_layer *x = graft_rescaling(m, in, (graft_rescaling_cfg){.n_scale = 1,
                                                                  .scale = {1.0f / 255.0f}});
    x = graft_normalization(m, x, (graft_normalization_cfg){.axis = -1});
    if (s->cfg.imagenet_weights) {
        /* Keras adds this layer (rescaling_1) only for weights="imagenet":
         * the published files' Normalization holds the ImageNet standard
         * deviations as its variance, so it divides by their square roots
         * and this by the square roots again (tensorflow/tensorflow#49930). */
        static const double stddev[3] = {0.229, 0.224, 0.225};
        graft_rescaling_cfg r = {.n_scale = 3};
        for (int i = 0; i < 3; i++) r.scale[i] = (float)(1.0 / sqrt(stddev[i]));
        x = graft_rescaling(m, x, r);
    }
    x = correct_pad(m, x, "stem_conv_pad", 3);
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = "stem_conv", .filters = round_filters(32, width),
                                              .kernel_size = {3, 3}, .strides = {2, 2},
                                              .no_bias = 1});
    x = bn(m, x, "", "stem_bn");
    x = act(m, x, "", "stem_activation");
    int total = 0, b = 0;
    for (int i = 0; i < 7; i++) total += round_repeats(stages[i].repeats, depth);
    for (int i = 0; i < 7 && x; i++) {
        int fin = round_filters(stages[i].filters_in, width);
        int fout = round_filters(stages[i].filters_out, width);
        for (int j = 0; j < round_repeats(stages[i].repeats, depth) && x; j++, b++) {
            char p[32]; /* "blockNx_": room for any int, which GCC cannot rule out */
            snprintf(p, sizeof p, "block%d%c_", i + 1, 'a' + j);
            x = block(m, x, p, 0.2 * b / total, j ? fout : fin, fout, stages[i].kernel,
                      j ? 1 : stages[i].stride, stages[i].expand);
        }
    }
    x = conv1x1(m, x, "", "top_conv", round_filters(1280, width), 0, GRAFT_LINEAR);
    x = bn(m, x, "", "top_bn");
    x = act(m, x, "", "top_activation");
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "avg_pool", "max_pool");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "avg_pool");
    x = graft_dropout(m, x, "top_dropout", (float)scales[v].dropout);
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
