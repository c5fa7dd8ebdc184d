/*
 * ConvNeXtTiny ... ConvNeXtXLarge as Keras Applications builds them
 * (convnext.py): a Normalization with ImageNet's mean and variance in front
 * (include_preprocessing, 3 channels only), a 4x4 stride-4 stem and 2x2
 * stride-2 downsamplers with LayerNormalization (epsilon 1e-6), and blocks of
 * a 7x7 Conv2D with groups = channels, LayerNormalization, Dense to 4C, exact
 * gelu, Dense back to C, LayerScale (1e-6) and a linear Activation (the
 * stochastic depth of drop_path_rate 0) added to the block's input.
 *
 * Keras nests the stem and each downsampler in a Sequential model
 * ("convnext_tiny_stem", "convnext_tiny_downsampling_block_0"); graft builds
 * their layers flat under their inner names, which is how its readers flatten
 * a nested model's config and weights. The residual sum is an operator in
 * Keras's source (Keras 2 saves it as a TFOpLambda, Keras 3 as no layer);
 * here it is an Add layer with its automatic name. Without top Keras ends
 * with an unnamed LayerNormalization after the optional pooling.
 */
#include "zoo.h"

#include <stdio.h>

static const struct {
    int depths[4], dims[4];
} configs[] = {
    {{3, 3, 9, 3}, {96, 192, 384, 768}},     {{3, 3, 27, 3}, {96, 192, 384, 768}},
    {{3, 3, 27, 3}, {128, 256, 512, 1024}},  {{3, 3, 27, 3}, {192, 384, 768, 1536}},
    {{3, 3, 27, 3}, {256, 512, 1024, 2048}},
};

static graft_layer *layer_norm(graft_model *m, graft_layer *x, const char *name)
{
    return graft_layer_norm(m, x, (graft_layer_norm_cfg){.name = name, .epsilon = 1e-6f});
}

static graft_layer *block(graft_model *m, graft_layer *in, const char *p, int dim)
{
    char n[96];
    snprintf(n, sizeof n, "%s_depthwise_conv", p);
    graft_layer *x = graft_conv2d(m, in, (graft_conv2d_cfg){.name = n, .filters = dim,
                                                            .kernel_size = {7, 7},
                                                            .padding = GRAFT_SAME, .groups = dim});
    snprintf(n, sizeof n, "%s_layernorm", p);
    x = layer_norm(m, x, n);
    snprintf(n, sizeof n, "%s_pointwise_conv_1", p);
    x = graft_dense(m, x, (graft_dense_cfg){.name = n, .units = 4 * dim});
    snprintf(n, sizeof n, "%s_gelu", p);
    x = graft_activation_layer(m, x, n, GRAFT_GELU);
    snprintf(n, sizeof n, "%s_pointwise_conv_2", p);
    x = graft_dense(m, x, (graft_dense_cfg){.name = n, .units = dim});
    snprintf(n, sizeof n, "%s_layer_scale", p);
    x = graft_layer_scale(m, x, n, 1e-6f, dim);
    snprintf(n, sizeof n, "%s_identity", p);
    x = graft_activation_layer(m, x, n, GRAFT_LINEAR);
    if (!x) return NULL;
    graft_layer *pair[2] = {in, x};
    return graft_add(m, NULL, 2, pair);
}

void graft_zoo_convnext(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    const char *name = s->arch->model_name;
    const int *depths = configs[s->arch->variant].depths, *dims = configs[s->arch->variant].dims;
    const graft_zoo_cfg *c = &s->cfg;
    char n[96];
    graft_layer *x = in;
    if (c->include_preprocessing && c->input_shape[2] == 3) {
        /* In double, then float, as Keras's Python lists become float32. */
        static const double mean[3] = {0.485 * 255, 0.456 * 255, 0.406 * 255},
                            sd[3] = {0.229 * 255, 0.224 * 255, 0.225 * 255};
        graft_normalization_cfg norm = {.name = n, .axis = -1, .n_values = 3};
        for (int i = 0; i < 3; i++) {
            norm.mean[i] = (float)mean[i];
            norm.variance[i] = (float)(sd[i] * sd[i]);
        }
        snprintf(n, sizeof n, "%s_prestem_normalization", name);
        x = graft_normalization(m, x, norm);
    }
    snprintf(n, sizeof n, "%s_stem_conv", name);
    x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = n, .filters = dims[0], .kernel_size = {4, 4},
                                              .strides = {4, 4}});
    snprintf(n, sizeof n, "%s_stem_layernorm", name);
    x = layer_norm(m, x, n);
    for (int i = 0; i < 4 && x; i++) {
        if (i > 0) {
            snprintf(n, sizeof n, "%s_downsampling_layernorm_%d", name, i - 1);
            x = layer_norm(m, x, n);
            snprintf(n, sizeof n, "%s_downsampling_conv_%d", name, i - 1);
            x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = n, .filters = dims[i],
                                                      .kernel_size = {2, 2}, .strides = {2, 2}});
        }
        for (int j = 0; j < depths[i] && x; j++) {
            char p[64];
            snprintf(p, sizeof p, "%s_stage_%d_block_%d", name, i, j);
            x = block(m, x, p, dims[i]);
        }
    }
    if (!c->include_top) {
        x = graft_zoo_pooling(m, x, c->pooling, NULL, NULL);
        layer_norm(m, x, NULL);
        return;
    }
    snprintf(n, sizeof n, "%s_head_gap", name);
    x = graft_global_average_pooling2d(m, x, n);
    snprintf(n, sizeof n, "%s_head_layernorm", name);
    x = layer_norm(m, x, n);
    snprintf(n, sizeof n, "%s_head_dense", name);
    graft_dense(m, x, (graft_dense_cfg){.name = n, .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
