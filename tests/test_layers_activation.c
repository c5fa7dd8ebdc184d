/* Keras's activation functions (as Activation layers and as the
 * activation= of Dense, Conv2D and DepthwiseConv2D): forward against torch,
 * central-difference gradients (through the pre-activation that swish, gelu
 * and hard_swish keep), names in and out of Keras configs, the .h5 round trip. */
#include "layers_util.h"

static const graft_activation ALL[] = {
    GRAFT_LINEAR,     GRAFT_RELU,        GRAFT_RELU6,      GRAFT_SIGMOID,
    GRAFT_TANH,       GRAFT_SOFTMAX,     GRAFT_SWISH,      GRAFT_SILU,
    GRAFT_HARD_SIGMOID, GRAFT_HARD_SWISH, GRAFT_HARD_SILU, GRAFT_GELU,
    GRAFT_GELU_APPROXIMATE, GRAFT_SOFTPLUS, GRAFT_SOFTSIGN, GRAFT_SELU,
    GRAFT_ELU,        GRAFT_EXPONENTIAL, GRAFT_LEAKY_RELU,
};
#define N_ALL (sizeof ALL / sizeof *ALL)

static void test_forward_matches_torch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_C) == 0);
    if (!fx.n) return;
    const fixture_array *x = fixture_get(&fx, "act/x");
    for (size_t i = 0; i < N_ALL; i++) {
        char ref[64];
        snprintf(ref, sizeof ref, "act/%s", graft_activation_name(ALL[i]));
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(3, 4, 6));
        graft_activation_layer(m, NULL, NULL, ALL[i]);
        check_forward(m, x, fixture_get(&fx, ref), false, 1e-6, 2e-6);
        graft_model_free(m);
    }
    fixture_free(&fx);
}

static void test_gradients(void)
{
    for (size_t i = 0; i < N_ALL; i++) {
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(3, 2, 5));
        graft_activation_layer(m, NULL, NULL, ALL[i]);
        CHECK_OK(graft_model_status(m));
        /* 0.1 apart over [-3, 3]: every branch, none on a kink (0, +-3, 6). */
        CHECK_MSG(gradcheck_spaced(m, 2, 0.1f, 60 + i, 60) == 0, "%s",
                  graft_activation_name(ALL[i]));
        graft_model_free(m);
    }
}

/* The activations inside weighted layers: their backward uses the kept pre-activation. */
static void test_fused_gradients(void)
{
    static const graft_activation acts[] = {GRAFT_SWISH, GRAFT_GELU, GRAFT_HARD_SWISH,
                                            GRAFT_GELU_APPROXIMATE, GRAFT_SELU, GRAFT_SOFTPLUS};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(5, 5, 3));
        graft_conv2d(m, NULL,
                     (graft_conv2d_cfg){.filters = 4, .kernel_size = {3, 3}, .activation = acts[i]});
        graft_depthwise_conv2d(m, NULL,
                               (graft_depthwise_conv2d_cfg){.kernel_size = {2, 2}, .activation = acts[i]});
        graft_flatten(m, NULL, NULL);
        graft_dense(m, NULL, (graft_dense_cfg){.units = 3, .activation = acts[i]});
        CHECK_OK(graft_model_status(m));
        CHECK_OK(graft_model_init_weights(m, 3));
        CHECK_MSG(gradcheck_model(m, 2, NULL, 70 + i, 30) == 0, "%s",
                  graft_activation_name(acts[i]));
        graft_model_free(m);
    }
}

static void test_names(void)
{
    for (size_t i = 0; i < N_ALL; i++) {
        graft_activation a;
        CHECK_OK(graft_activation_parse(graft_activation_name(ALL[i]), &a));
        CHECK(a == ALL[i]);
    }
    graft_activation a;
    CHECK_OK(graft_activation_parse("gelu_new", &a)); /* TF.js */
    CHECK(a == GRAFT_GELU_APPROXIMATE);
    CHECK(graft_activation_parse("mish", &a) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'mish'") && strstr(graft_last_error(), "hard_silu"));
}

static void test_config_in_and_out(void)
{
    /* Keras 2 strings and Keras 3's {"class_name": "function"} form, as layers and options. */
    char layers[6000];
    size_t len = 0;
    for (size_t i = 0; i < N_ALL; i++) {
        const char *n = graft_activation_name(ALL[i]);
        len += (size_t)snprintf(layers + len, sizeof layers - len,
                                "%s{\"class_name\": \"Activation\", \"config\": {\"name\": \"a_%s\","
                                " \"activation\": %s%s%s}}",
                                i ? ", " : "", n, i % 2 ? "{\"class_name\": \"function\", \"config\": \"" : "\"",
                                n, i % 2 ? "\"}" : "\"");
    }
    snprintf(layers + len, sizeof layers - len,
             ", {\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 2,"
             " \"kernel_size\": 1, \"activation\": \"swish\"}}"
             ", {\"class_name\": \"Flatten\", \"config\": {\"name\": \"f\"}}"
             ", {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 2,"
             " \"activation\": \"gelu\"}}");
    graft_model *m = NULL;
    CHECK_OK(sequential_from_json("2, 2, 3", layers, &m));
    if (!m) return;
    for (size_t i = 0; i < N_ALL; i++) {
        char name[64];
        snprintf(name, sizeof name, "a_%s", graft_activation_name(ALL[i]));
        CHECK_MSG(graft_model_find(m, name) != NULL, "%s", name);
    }
    /* exponential and friends stay finite on the round trip's inputs in [-2, 2]. */
    fill_random_weights(m, 11);
    check_h5_round_trip(m, 2);
    char *t = model_config_text(m);
    CHECK(t && strstr(t, "\"activation\":\"hard_silu\"") && strstr(t, "\"activation\":\"swish\"") &&
          strstr(t, "\"activation\":\"gelu\""));
    cJSON_free(t);
    graft_model_free(m);
    CHECK(sequential_from_json("4", "{\"class_name\": \"Activation\", \"config\": {\"name\": \"m\","
                                    " \"activation\": \"mish\"}}",
                               &m) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'m' (Activation): activation 'mish'") != NULL);
}

int main(void)
{
    RUN(test_forward_matches_torch);
    RUN(test_gradients);
    RUN(test_fused_gradients);
    RUN(test_names);
    RUN(test_config_in_and_out);
    int r = CHECK_SUMMARY();
    test_tmpdirs_remove();
    return r;
}
