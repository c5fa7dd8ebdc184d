/* Convolution -> BatchNormalization -> ReLU (or swish, ...) chains fused into one output pass
 * (inference) give exactly the unfused results, and fuse only where allowed. */
#include "check.h"
#include "plan_check.h"
#include "internal.h"

#include <stdlib.h>

static graft_model *chains(void)
{
    graft_model *m = graft_model_new("chains");
    graft_input(m, NULL, graft_shape3(9, 8, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv", .filters = 8, .kernel_size = {3, 3},
                                             .strides = {2, 2}, .padding = GRAFT_SAME, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "conv_bn"});
    graft_relu(m, NULL, (graft_relu_cfg){.name = "conv_relu", .max_value = 6});
    graft_depthwise_conv2d(m, NULL, (graft_depthwise_conv2d_cfg){.name = "dw", .kernel_size = {3, 3},
                                                                 .padding = GRAFT_SAME});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "dw_bn", .no_scale = 1});
    graft_activation_layer(m, NULL, "dw_relu", GRAFT_RELU);
    /* A BN whose input is also read elsewhere must not be folded. */
    graft_layer *pw = graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "pw", .filters = 4, .kernel_size = {1, 1}});
    graft_layer *bn = graft_batch_norm(m, pw, (graft_batch_norm_cfg){.name = "pw_bn"});
    graft_layer *both[2] = {pw, bn};
    graft_add(m, "add", 2, both);
    graft_global_average_pooling2d(m, NULL, NULL);
    CHECK_OK(graft_model_status(m));
    /* Random BN statistics so that folding matters. */
    graft_rng r;
    graft_rng_seed(&r, 8);
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        if (strcmp(graft_layer_class(l), "BatchNormalization") != 0) continue;
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            float *w = graft_layer_weight_data(l, k);
            bool var = strcmp(graft_layer_weight_name(l, k), "moving_variance") == 0;
            for (size_t e = 0; e < graft_shape_size(&s); e++)
                w[e] = var ? 0.2f + graft_rng_uniform(&r) : graft_rng_normal(&r);
        }
    }
    return m;
}

static void test_fused_equals_unfused(void)
{
    graft_model *m = chains();
    enum { N = 5 };
    size_t xs = 9 * 8 * 3;
    float *x = malloc(N * xs * sizeof(float)), fused[N * 4], plain[N * 4];
    graft_rng r;
    graft_rng_seed(&r, 1);
    for (size_t i = 0; i < N * xs; i++) x[i] = graft_rng_normal(&r) * 3;
    CHECK_OK(graft_model_predict(m, x, N, fused));
    CHECK(fused_into(m, graft_model_find(m, "conv_bn")) == 1 && fused_into(m, graft_model_find(m, "conv_relu")) == 1);
    CHECK(fused_into(m, graft_model_find(m, "dw_bn")) == 4 && fused_into(m, graft_model_find(m, "dw_relu")) == 4);
    CHECK(fused_into(m, graft_model_find(m, "pw_bn")) == -1); /* pw's output is read twice */
    /* The same model with every layer needing a gradient: nothing fuses; BN
     * stays in inference mode because no layer trains. */
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
    m->want_input_grad = true;
    m->capacity = 0;
    CHECK_OK(graft_model_forward(m, x, N, true));
    CHECK(fused_into(m, graft_model_find(m, "conv_bn")) == -1);
    memcpy(plain, graft_model_output(m)->out, sizeof plain);
    CHECK(bits_equal(fused, plain, sizeof plain / sizeof *plain));
    free(x);
    graft_model_free(m);
}

/* Conv -> BN -> swish, depthwise -> BN -> hard_swish, conv -> sigmoid (no BN)
 * and conv -> BN -> gelu: the activation runs in the convolution's epilogue,
 * with the same bits as the layers one by one. */
static void test_activation_epilogue_equals_unfused(void)
{
    graft_model *m = graft_model_new("acts");
    graft_input(m, NULL, graft_shape3(9, 8, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv", .filters = 24, .kernel_size = {3, 3},
                                             .padding = GRAFT_SAME, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "conv_bn"});
    graft_activation_layer(m, NULL, "conv_swish", GRAFT_SWISH);
    graft_depthwise_conv2d(m, NULL, (graft_depthwise_conv2d_cfg){.name = "dw", .kernel_size = {3, 3},
                                                                 .padding = GRAFT_SAME});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "dw_bn"});
    graft_activation_layer(m, NULL, "dw_hswish", GRAFT_HARD_SWISH);
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "c2", .filters = 20, .kernel_size = {3, 3},
                                             .padding = GRAFT_SAME});
    graft_activation_layer(m, NULL, "c2_sigmoid", GRAFT_SIGMOID);
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "c3", .filters = 16, .kernel_size = {3, 3},
                                             .strides = {2, 2}, .padding = GRAFT_SAME});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "c3_bn"});
    graft_activation_layer(m, NULL, "c3_gelu", GRAFT_GELU_APPROXIMATE);
    graft_activation_layer(m, NULL, "c3_softmax", GRAFT_SOFTMAX); /* never fused */
    CHECK_OK(graft_model_status(m));
    graft_rng r;
    graft_rng_seed(&r, 9);
    set_random_from(m, &r); /* the inputs below continue the stream */
    enum { N = 3, OUT = 5 * 4 * 16 };
    size_t xs = 9 * 8 * 3;
    float *x = malloc(N * xs * sizeof(float)), fused[N * OUT], plain[N * OUT];
    CHECK(x != NULL);
    if (!x) goto done;
    for (size_t i = 0; i < N * xs; i++) x[i] = graft_rng_normal(&r) * 3;
    CHECK_OK(graft_model_predict(m, x, N, fused));
    int conv = graft_model_find(m, "conv")->index, dw = graft_model_find(m, "dw")->index;
    CHECK(fused_into(m, graft_model_find(m, "conv_swish")) == conv);
    CHECK(fused_into(m, graft_model_find(m, "dw_hswish")) == dw);
    CHECK(fused_into(m, graft_model_find(m, "c2_sigmoid")) == graft_model_find(m, "c2")->index);
    CHECK(fused_into(m, graft_model_find(m, "c3_gelu")) == graft_model_find(m, "c3")->index);
    CHECK(fused_into(m, graft_model_find(m, "c3_softmax")) == -1);
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
    m->want_input_grad = true;
    m->capacity = 0;
    CHECK_OK(graft_model_forward(m, x, N, true));
    CHECK(fused_into(m, graft_model_find(m, "conv_swish")) == -1);
    memcpy(plain, graft_model_output(m)->out, sizeof plain);
    CHECK(bits_equal(fused, plain, sizeof plain / sizeof *plain));
done:
    free(x);
    graft_model_free(m);
}

int main(void)
{
    /* The depthwise -> pointwise pair would be a DW_BLOCK step, whose own
     * kernels round differently (tests/test_plan_dw_block.c). */
    setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
    RUN(test_fused_equals_unfused);
    RUN(test_activation_epilogue_equals_unfused);
    return CHECK_SUMMARY();
}
