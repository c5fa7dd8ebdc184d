/*
 * MobileNet v1 as tf.keras.applications builds it: stride-2 depthwise blocks
 * pad ((0,1),(0,1)) then convolve 'valid' (conv_pad_N), which is not TF's
 * 'same' on odd sizes (75 -> 37, not 38), so 150x150 gives 4x4 features as
 * in Keras. The top is Keras's reshape_1 / dropout / conv_preds / reshape_2 /
 * act_softmax, matching the published ImageNet files.
 */
#include "zoo.h"

#include <stdio.h>

static graft_layer *conv_bn_relu6(graft_model *m, graft_layer *x, int filters, const char *name)
{
    char bn[64], relu[64];
    snprintf(bn, sizeof bn, "%s_bn", name);
    snprintf(relu, sizeof relu, "%s_relu", name);
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = filters,
                                              .kernel_size = {3, 3}, .strides = {2, 2},
                                              .padding = GRAFT_SAME, .no_bias = 1});
    x = graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = bn});
    return graft_relu(m, x, (graft_relu_cfg){.name = relu, .max_value = 6.0f});
}

static graft_layer *depthwise_block(graft_model *m, graft_layer *x, int pointwise_filters,
                                    const zoo_spec *s, int stride, int id)
{
    char name[64];
    int filters = (int)(pointwise_filters * s->alpha);
    if (stride != 1) {
        snprintf(name, sizeof name, "conv_pad_%d", id);
        x = graft_zero_padding2d(m, x, name, 0, 1, 0, 1);
    }
    snprintf(name, sizeof name, "conv_dw_%d", id);
    x = graft_depthwise_conv2d(m, x, (graft_depthwise_conv2d_cfg){
                                         .name = name, .kernel_size = {3, 3},
                                         .strides = {stride, stride},
                                         .padding = stride == 1 ? GRAFT_SAME : GRAFT_VALID,
                                         .depth_multiplier = s->cfg.depth_multiplier,
                                         .no_bias = 1});
    snprintf(name, sizeof name, "conv_dw_%d_bn", id);
    x = graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = name});
    snprintf(name, sizeof name, "conv_dw_%d_relu", id);
    x = graft_relu(m, x, (graft_relu_cfg){.name = name, .max_value = 6.0f});
    snprintf(name, sizeof name, "conv_pw_%d", id);
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = filters,
                                              .kernel_size = {1, 1}, .padding = GRAFT_SAME,
                                              .no_bias = 1});
    snprintf(name, sizeof name, "conv_pw_%d_bn", id);
    x = graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = name});
    snprintf(name, sizeof name, "conv_pw_%d_relu", id);
    return graft_relu(m, x, (graft_relu_cfg){.name = name, .max_value = 6.0f});
}

void graft_zoo_mobilenet(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    static const struct {
        int filters, stride;
    } blocks[13] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1}, {512, 2},  {512, 1},
                    {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};
    graft_layer *x = conv_bn_relu6(m, in, (int)(32 * s->alpha), "conv1");
    for (int i = 0; i < 13; i++) x = depthwise_block(m, x, blocks[i].filters, s, blocks[i].stride, i + 1);
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "global_average_pooling2d", "global_max_pooling2d");
        return;
    }
    x = graft_global_average_pooling2d(m, x, "global_average_pooling2d");
    x = graft_reshape(m, x, "reshape_1", graft_shape3(1, 1, (int)(1024 * s->alpha)));
    x = graft_dropout(m, x, "dropout", c->dropout);
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = "conv_preds", .filters = c->classes,
                                              .kernel_size = {1, 1}, .padding = GRAFT_SAME});
    x = graft_reshape(m, x, "reshape_2", graft_shape1(c->classes));
    graft_activation_layer(m, x, "act_softmax", GRAFT_SOFTMAX);
}
