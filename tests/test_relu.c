/* ReLU with max_value / negative_slope / threshold: Keras's definition, gradients. */
#include "layer_check.h"

static graft_model *relu_model(graft_shape in, graft_relu_cfg cfg)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", in);
    graft_relu(m, NULL, cfg);
    return m;
}

static graft_relu_cfg cfg_from(const fixture_array *a)
{
    return (graft_relu_cfg){
        .max_value = a->data[0], .negative_slope = a->data[1], .threshold = a->data[2]};
}

static void test_forward_matches_reference(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_B) == 0);
    if (!fx.n) return;
    const fixture_array *x = fixture_get(&fx, "relu/x");
    for (int i = 0;; i++) {
        char cname[64], yname[64];
        snprintf(cname, sizeof cname, "relu/%d/cfg", i);
        snprintf(yname, sizeof yname, "relu/%d/y", i);
        const fixture_array *cfg = NULL;
        for (int k = 0; k < fx.n; k++)
            if (strcmp(fx.a[k].name, cname) == 0) cfg = &fx.a[k];
        if (!cfg) {
            CHECK_MSG(i >= 6, "only %d ReLU cases in the fixture", i);
            break;
        }
        graft_model *m = relu_model(graft_shape3(4, 5, 3), cfg_from(cfg));
        check_forward(m, x, fixture_get(&fx, yname), false, 1e-6, 1e-6);
        graft_model_free(m);
    }
    fixture_free(&fx);
}

static void test_keras_examples(void)
{
    /* The examples in Keras's ReLU and relu documentation. */
    static const struct {
        graft_relu_cfg cfg;
        float x[4], y[4];
    } cases[] = {
        {{0}, {-3, -1, 0, 2}, {0, 0, 0, 2}},
        {{.max_value = 1}, {-3, -1, 0, 2}, {0, 0, 0, 1}},
        {{.negative_slope = 1}, {-3, -1, 0, 2}, {-3, -1, 0, 2}},
        {{.threshold = 1.5f}, {-3, -1, 1, 2}, {0, 0, 0, 2}},
        {{.max_value = 10, .negative_slope = 0.5f}, {-10, -5, 5, 10}, {-5, -2.5f, 5, 10}},
        /* keras.activations.relu's example: x == threshold gives 0, not x. */
        {{.threshold = 5}, {-5, 0, 5, 10}, {0, 0, 0, 10}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = relu_model(graft_shape1(4), cases[i].cfg);
        CHECK_OK(graft_model_forward(m, cases[i].x, 1, false));
        for (int j = 0; j < 4; j++) {
            float y = graft_model_output(m)->out[j];
            CHECK_MSG(y == cases[i].y[j], "case %zu [%d]: %g", i, j, (double)y);
        }
        graft_model_free(m);
    }
}

static const graft_relu_cfg grad_cfgs[] = {
    {0},
    {.max_value = 6},
    {.negative_slope = 0.1f, .threshold = 0.5f},
    {.max_value = 2.5f, .negative_slope = 0.2f, .threshold = 1.0f},
    {.max_value = 0.5f, .negative_slope = 0.2f, .threshold = 1.0f},
};

static void test_gradients(void)
{
    for (size_t i = 0; i < sizeof grad_cfgs / sizeof *grad_cfgs; i++) {
        graft_model *m = relu_model(graft_shape3(5, 3, 4), grad_cfgs[i]);
        CHECK_OK(graft_model_status(m));
        /* Spread 0.1 apart over [-6, 6]: every branch and none on a kink. */
        CHECK_MSG(gradcheck_spaced(m, 2, 0.1f, 21 + i, 60) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

static void test_gradients_accumulate(void)
{
    for (size_t i = 0; i < sizeof grad_cfgs / sizeof *grad_cfgs; i++) {
        graft_model *m = graft_model_new("t");
        graft_layer *in = graft_input(m, "in", graft_shape3(3, 3, 4));
        graft_layer *pair[2] = {graft_relu(m, in, grad_cfgs[i]),
                                graft_relu(m, in, (graft_relu_cfg){.negative_slope = 0.3f})};
        graft_add(m, NULL, 2, pair);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_spaced(m, 2, 0.1f, 31 + i, 40) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

static void test_names_and_invalid(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(4));
    graft_layer *a = graft_relu(m, NULL, (graft_relu_cfg){0});
    graft_layer *b = graft_relu(m, NULL, (graft_relu_cfg){.max_value = 6});
    CHECK_OK(graft_model_status(m));
    CHECK(a && strcmp(graft_layer_name(a), "re_lu") == 0);
    CHECK(b && strcmp(graft_layer_name(b), "re_lu_1") == 0);
    CHECK(a && strcmp(graft_layer_class(a), "ReLU") == 0);
    CHECK(graft_relu(m, NULL, (graft_relu_cfg){.negative_slope = -0.5f}) == NULL);
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "re_lu_2") != NULL);
    CHECK(strstr(graft_model_error(m), "negative_slope") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(4));
    CHECK(graft_relu(m, NULL, (graft_relu_cfg){.name = "r", .threshold = -1}) == NULL);
    CHECK(strstr(graft_model_error(m), "'r'") != NULL);
    CHECK(strstr(graft_model_error(m), "threshold") != NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_forward_matches_reference);
    RUN(test_keras_examples);
    RUN(test_gradients);
    RUN(test_gradients_accumulate);
    RUN(test_names_and_invalid);
    return CHECK_SUMMARY();
}
