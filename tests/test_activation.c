/* Activation layer: every activation against PyTorch, gradients, name parsing. */
#include "layer_check.h"

static const graft_activation all[] = {GRAFT_LINEAR,  GRAFT_RELU, GRAFT_RELU6,
                                       GRAFT_SIGMOID, GRAFT_TANH, GRAFT_SOFTMAX};

static graft_model *act_model(graft_shape in, graft_activation a)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", in);
    graft_activation_layer(m, NULL, NULL, a);
    return m;
}

static void test_forward_matches_torch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_B) == 0);
    if (!fx.n) return;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        char name[64];
        snprintf(name, sizeof name, "activation/%s", graft_activation_name(all[i]));
        graft_model *m = act_model(graft_shape3(3, 4, 5), all[i]);
        check_forward(m, fixture_get(&fx, "activation/x"), fixture_get(&fx, name), false, 1e-6,
                      1e-5);
        graft_model_free(m);
    }
    graft_model *m = act_model(graft_shape1(7), GRAFT_SOFTMAX);
    check_forward(m, fixture_get(&fx, "activation/flat_x"),
                  fixture_get(&fx, "activation/flat_softmax"), false, 1e-7, 1e-5);
    graft_model_free(m);
    fixture_free(&fx);
}

static void test_gradients(void)
{
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        graft_model *m = act_model(graft_shape3(3, 2, 5), all[i]);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_spaced(m, 2, 0.1f, 11 + i, 40) == 0, "%s",
                  graft_activation_name(all[i]));
        graft_model_free(m);
    }
    graft_model *m = act_model(graft_shape1(6), GRAFT_SOFTMAX);
    CHECK(gradcheck_model(m, 3, NULL, 5, 40) == 0);
    graft_model_free(m);
}

/* Two consumers of one tensor: the second backward must add to the first's gradient. */
static void test_gradients_accumulate(void)
{
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        graft_model *m = graft_model_new("t");
        graft_layer *in = graft_input(m, "in", graft_shape3(2, 3, 4));
        graft_layer *pair[2] = {graft_activation_layer(m, in, NULL, all[i]),
                                graft_activation_layer(m, in, NULL, GRAFT_SIGMOID)};
        graft_add(m, NULL, 2, pair);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_spaced(m, 2, 0.1f, 3 + i, 30) == 0, "%s",
                  graft_activation_name(all[i]));
        graft_model_free(m);
    }
}

static void test_names(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(4));
    graft_layer *a = graft_activation_layer(m, NULL, NULL, GRAFT_RELU);
    graft_layer *b = graft_activation_layer(m, NULL, NULL, GRAFT_TANH);
    CHECK_OK(graft_model_status(m));
    CHECK(a && strcmp(graft_layer_name(a), "activation") == 0);
    CHECK(b && strcmp(graft_layer_name(b), "activation_1") == 0);
    CHECK(a && strcmp(graft_layer_class(a), "Activation") == 0);
    CHECK(a && graft_layer_count_params(a) == 0);
    graft_model_free(m);
}

static void test_unknown_activation_refused(void)
{
    graft_activation a = GRAFT_TANH;
    CHECK(graft_activation_parse("swishy", &a) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "swishy") != NULL);
    CHECK(a == GRAFT_TANH);
    CHECK_OK(graft_activation_parse("softmax", &a));
    CHECK(a == GRAFT_SOFTMAX);

    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(4));
    CHECK(graft_activation_layer(m, NULL, "act", (graft_activation)42) == NULL);
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "'act'") != NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_forward_matches_torch);
    RUN(test_gradients);
    RUN(test_gradients_accumulate);
    RUN(test_names);
    RUN(test_unknown_activation_refused);
    return CHECK_SUMMARY();
}
