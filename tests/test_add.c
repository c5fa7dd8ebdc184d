/* Add: sums of several inputs against PyTorch, Add(x, x), mismatched shapes. */
#include "layer_check.h"

static void test_forward_matches_torch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_B) == 0);
    if (!fx.n) return;
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(3, 3, 4));
    graft_layer *three[3] = {in, graft_relu(m, in, (graft_relu_cfg){0}),
                             graft_activation_layer(m, in, NULL, GRAFT_TANH)};
    graft_layer *sum = graft_add(m, NULL, 3, three);
    CHECK(sum && strcmp(graft_layer_name(sum), "add") == 0);
    CHECK(sum && strcmp(graft_layer_class(sum), "Add") == 0);
    check_forward(m, fixture_get(&fx, "add/x"), fixture_get(&fx, "add/y"), false, 1e-6, 1e-6);
    graft_model_free(m);
    fixture_free(&fx);
}

static void test_same_input_twice(void)
{
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(2, 3, 2));
    graft_layer *twice[2] = {in, in};
    graft_add(m, NULL, 2, twice);
    CHECK_OK(graft_model_status(m));
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = (float)i - 5.5f;
    CHECK_OK(graft_model_forward(m, x, 1, false));
    for (int i = 0; i < 12; i++)
        CHECK(graft_model_output(m)->out[i] == 2 * x[i]);
    CHECK(gradcheck_model(m, 2, NULL, 111, 24) == 0);
    graft_model_free(m);
}

static void test_gradients(void)
{
    /* Three inputs, one of them reached by two paths. */
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(3, 2, 3));
    graft_layer *a = graft_activation_layer(m, in, NULL, GRAFT_SIGMOID);
    graft_layer *b = graft_activation_layer(m, in, NULL, GRAFT_TANH);
    graft_layer *list[3] = {a, b, a};
    graft_layer *s = graft_add(m, NULL, 3, list);
    graft_layer *again[2] = {s, b};
    graft_add(m, NULL, 2, again);
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 2, NULL, 112, 36) == 0);
    graft_model_free(m);

    /* A trainable layer before and after: the weight gradients flow through. */
    m = graft_model_new("t");
    in = graft_input(m, NULL, graft_shape3(4, 4, 2));
    graft_layer *c = graft_conv2d(
        m, in, (graft_conv2d_cfg){.filters = 2, .kernel_size = {3, 3}, .padding = GRAFT_SAME});
    graft_layer *pair[2] = {c, in};
    graft_add(m, NULL, 2, pair);
    graft_global_average_pooling2d(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3});
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 2, NULL, 113, 30) == 0);
    graft_model_free(m);
}

static void test_mismatched_shapes_refused(void)
{
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(4, 4, 3));
    graft_layer *p = graft_max_pooling2d(m, in, (graft_pool2d_cfg){0});
    graft_layer *pair[2] = {in, p};
    CHECK(graft_add(m, "sum", 2, pair) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    const char *e = graft_model_error(m);
    CHECK(strstr(e, "'sum'") != NULL);
    CHECK(strstr(e, "(None, 4, 4, 3)") != NULL);
    CHECK(strstr(e, "(None, 2, 2, 3)") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    in = graft_input(m, NULL, graft_shape3(2, 2, 3));
    graft_layer *f = graft_flatten(m, in, NULL);
    graft_layer *pair2[2] = {f, in};
    CHECK(graft_add(m, NULL, 2, pair2) == NULL);
    CHECK(strstr(graft_model_error(m), "'add'") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    in = graft_input(m, NULL, graft_shape1(3));
    CHECK(graft_add(m, NULL, 1, &in) == NULL);
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "add") != NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_forward_matches_torch);
    RUN(test_same_input_twice);
    RUN(test_gradients);
    RUN(test_mismatched_shapes_refused);
    return CHECK_SUMMARY();
}
