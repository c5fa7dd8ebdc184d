/* DepthwiseConv2D: forward against PyTorch (scripts/gen_fixtures_layers_a.py),
 * gradients by central differences, determinism, invalid configurations. */
#include "fixture.h"
#include "gradcheck.h"

#define FIXTURES "tests/fixtures/layers_a.bin"

static graft_model *dw_model(int h, int w, int c, graft_depthwise_conv2d_cfg cfg)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", graft_shape3(h, w, c));
    graft_depthwise_conv2d(m, NULL, cfg);
    return m;
}

static void test_shapes_and_weights(void)
{
    graft_model *m = dw_model(7, 6, 3, (graft_depthwise_conv2d_cfg){
        .kernel_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME, .depth_multiplier = 2});
    CHECK_OK(graft_model_status(m));
    graft_layer *l = graft_model_output(m);
    graft_shape s = graft_layer_output_shape(l);
    CHECK(s.rank == 3 && s.dim[0] == 4 && s.dim[1] == 3 && s.dim[2] == 6);
    CHECK(strcmp(graft_layer_name(l), "depthwise_conv2d") == 0);
    CHECK(strcmp(graft_layer_class(l), "DepthwiseConv2D") == 0);
    CHECK(graft_layer_num_weights(l) == 2);
    CHECK(strcmp(graft_layer_weight_name(l, 0), "depthwise_kernel") == 0);
    graft_shape k = graft_layer_weight_shape(l, 0);
    CHECK(k.rank == 4 && k.dim[0] == 3 && k.dim[1] == 3 && k.dim[2] == 3 && k.dim[3] == 2);
    CHECK(strcmp(graft_layer_weight_name(l, 1), "bias") == 0);
    CHECK(graft_layer_weight_shape(l, 1).dim[0] == 6);
    /* A second one gets Keras's next automatic name. */
    graft_layer *l2 = graft_depthwise_conv2d(m, NULL, (graft_depthwise_conv2d_cfg){
        .kernel_size = {1, 1}, .no_bias = 1});
    CHECK(l2 && strcmp(graft_layer_name(l2), "depthwise_conv2d_1") == 0);
    CHECK(l2 && graft_layer_num_weights(l2) == 1);
    graft_model_free(m);
}

static void check_case(const fixture *fx, const char *name)
{
    char key[160];
#define GET(field) (snprintf(key, sizeof key, "%s/%s", name, field), fixture_get(fx, key))
    const fixture_array *cfg = GET("cfg"), *x = GET("x"), *k = GET("depthwise_kernel"),
                        *out = GET("out");
    CHECK_MSG(cfg && x && k && out, "%s: arrays missing", name);
    if (!cfg || !x || !k || !out) return;
    const float *c = cfg->data;
    int n = (int)c[0], h = (int)c[1], w = (int)c[2], ch = (int)c[3];
    graft_depthwise_conv2d_cfg dc = {
        .kernel_size = {(int)c[4], (int)c[5]},
        .strides = {(int)c[6], (int)c[7]},
        .padding = c[8] != 0 ? GRAFT_SAME : GRAFT_VALID,
        .depth_multiplier = (int)c[9],
        .no_bias = c[10] == 0,
        .activation = (graft_activation)(int)c[11],
    };
    graft_model *m = dw_model(h, w, ch, dc);
    CHECK_OK(graft_model_status(m));
    graft_layer *l = graft_model_output(m);
    CHECK(graft_shape_size(&l->weights[0].shape) == k->size);
    memcpy(graft_layer_weight_data(l, 0), k->data, k->size * sizeof(float));
    if (!dc.no_bias) {
        const fixture_array *bias = GET("bias");
        CHECK(bias && bias->size == graft_shape_size(&l->weights[1].shape));
        if (bias) memcpy(graft_layer_weight_data(l, 1), bias->data, bias->size * sizeof(float));
    }
#undef GET
    size_t ys = (size_t)n * graft_shape_size(&l->out_shape);
    CHECK_MSG(ys == out->size, "%s: output size %zu, reference %zu", name, ys, out->size);
    float *y = malloc(ys * sizeof(float));
    CHECK_OK(graft_model_predict(m, x->data, n, y));
    size_t worst = 0;
    double r = check_close_ratio(y, out->data, ys, 1e-5, 1e-5, &worst);
    CHECK_MSG(r <= 1, "%s: [%zu] %.7g vs %.7g", name, worst, y[worst], out->data[worst]);
    free(y);
    graft_model_free(m);
}

static void test_forward_matches_pytorch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURES) == 0);
    static const char *cases[] = {"dw_valid_s1_dm1", "dw_same_s1_dm1_relu6", "dw_same_s2_dm1",
                                  "dw_same_s2_dm2", "dw_valid_s2_dm2", "dw_same_k5_s1_dm3_nobias",
                                  "dw_same_s1_dm1_c40", "dw_same_s2_dm1_c64"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(&fx, cases[i]);
    fixture_free(&fx);
}

static void test_gradients(void)
{
    struct {
        int h, w, c;
        graft_depthwise_conv2d_cfg cfg;
    } cases[] = {
        {5, 6, 3, {.kernel_size = {3, 3}}},
        {6, 6, 4, {.kernel_size = {3, 3}, .padding = GRAFT_SAME, .activation = GRAFT_TANH}},
        {7, 6, 3, {.kernel_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME,
                   .activation = GRAFT_SIGMOID}},
        {6, 7, 2, {.kernel_size = {3, 3}, .strides = {2, 2}, .depth_multiplier = 2}},
        {5, 5, 2, {.kernel_size = {2, 3}, .strides = {1, 2}, .padding = GRAFT_SAME,
                   .depth_multiplier = 3, .no_bias = 1}},
        {4, 5, 3, {.kernel_size = {3, 3}, .padding = GRAFT_SAME, .activation = GRAFT_SOFTMAX,
                   .depth_multiplier = 2}},
        /* 33 channels: one register-blocked group of 32 and a tail of 1. */
        {4, 4, 33, {.kernel_size = {3, 3}, .padding = GRAFT_SAME}},
        {5, 4, 33, {.kernel_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = dw_model(cases[i].h, cases[i].w, cases[i].c, cases[i].cfg);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_model(m, 2, NULL, 11 + i, 40) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

/* The input feeds two depthwise layers: the second backward must add to the
 * input gradient the first one wrote. */
static void test_gradient_accumulates_over_consumers(void)
{
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, "in", graft_shape3(5, 5, 3));
    graft_layer *a = graft_depthwise_conv2d(m, in, (graft_depthwise_conv2d_cfg){
        .kernel_size = {3, 3}, .padding = GRAFT_SAME});
    graft_layer *b = graft_depthwise_conv2d(m, in, (graft_depthwise_conv2d_cfg){
        .kernel_size = {3, 3}, .padding = GRAFT_SAME, .activation = GRAFT_TANH});
    graft_layer *both[] = {a, b};
    graft_add(m, NULL, 2, both);
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 2, NULL, 5, 60) == 0);
    graft_model_free(m);
}

/* Kernel gradients are summed in a fixed order: bit-identical for any
 * number of threads. */
static void test_backward_deterministic(void)
{
    graft_model *m = dw_model(12, 12, 40, (graft_depthwise_conv2d_cfg){
        .kernel_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME, .activation = GRAFT_RELU6});
    CHECK_OK(graft_model_status(m));
    const int n = 4;
    size_t xs = (size_t)n * 12 * 12 * 40, ys = (size_t)n * 6 * 6 * 40;
    float *x = malloc(xs * sizeof(float)), *dy = malloc(ys * sizeof(float));
    graft_rng rng;
    graft_rng_seed(&rng, 3);
    for (size_t i = 0; i < xs; i++) x[i] = 3 * graft_rng_normal(&rng);
    for (size_t i = 0; i < ys; i++) dy[i] = graft_rng_normal(&rng);
    float *grads[2] = {NULL, NULL};
    int saved = graft_threads_get();
    for (int t = 0; t < 2; t++) {
        graft_threads_set(t == 0 ? 1 : 3);
        CHECK_OK(graft_model_forward(m, x, n, true));
        CHECK_OK(graft_model_backward(m, dy, n));
        grads[t] = malloc(m->n_weight_floats * sizeof(float));
        memcpy(grads[t], m->grads, m->n_weight_floats * sizeof(float));
    }
    graft_threads_set(saved);
    CHECK(memcmp(grads[0], grads[1], m->n_weight_floats * sizeof(float)) == 0);
    free(grads[0]);
    free(grads[1]);
    free(x);
    free(dy);
    graft_model_free(m);
}

static void test_invalid_configs_refused(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", graft_shape1(8));
    CHECK(graft_depthwise_conv2d(m, NULL, (graft_depthwise_conv2d_cfg){
              .name = "dw_flat", .kernel_size = {3, 3}}) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "dw_flat") != NULL);
    graft_model_free(m);

    m = dw_model(4, 4, 2, (graft_depthwise_conv2d_cfg){.kernel_size = {3, 3},
                                                       .depth_multiplier = -1});
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "depthwise_conv2d") != NULL);
    graft_model_free(m);

    m = dw_model(4, 4, 2, (graft_depthwise_conv2d_cfg){.kernel_size = {0, 3}});
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    graft_model_free(m);

    m = dw_model(2, 4, 2, (graft_depthwise_conv2d_cfg){.kernel_size = {3, 3}});
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "depthwise_conv2d") != NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_shapes_and_weights);
    RUN(test_forward_matches_pytorch);
    RUN(test_gradients);
    RUN(test_gradient_accumulates_over_consumers);
    RUN(test_backward_deterministic);
    RUN(test_invalid_configs_refused);
    return CHECK_SUMMARY();
}
