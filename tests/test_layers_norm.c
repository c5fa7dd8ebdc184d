/* The preprocessing and normalisation layers inside Keras models:
 * Rescaling, Normalization (weights or constants, any one axis, invert),
 * LayerNormalization (channels, or trailing axes), ConvNeXt's LayerScale:
 * forward against numpy/torch, central-difference gradients, Keras config
 * in and out, .h5 round trip; Rescaling and Normalization over an RGB
 * tensor against their formula, bit for bit. */
#include "layers_util.h"

static fixture fx;

static graft_model *model_345(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 4, 5));
    return m;
}

static void test_rescaling(void)
{
    const fixture_array *sc = fixture_get(&fx, "norm/rescaling_scale");
    CHECK(sc && sc->size == 5);
    if (!sc) return;
    graft_rescaling_cfg k = {.n_scale = 5, .n_offset = 1, .offset = {0.75f}};
    memcpy(k.scale, sc->data, 5 * sizeof(float));
    graft_model *m = model_345();
    graft_layer *l = graft_rescaling(m, NULL, k);
    CHECK(l && strcmp(graft_layer_name(l), "rescaling") == 0);
    check_forward(m, fixture_get(&fx, "norm/x"), fixture_get(&fx, "norm/rescaling_y"), false, 1e-6,
                  1e-6);
    CHECK(gradcheck_model(m, 2, NULL, 120, 40) == 0);
    graft_model_free(m);
    /* Three scales for five channels do not fit. */
    m = model_345();
    CHECK(graft_rescaling(m, NULL, (graft_rescaling_cfg){.name = "r3", .n_scale = 3}) == NULL);
    CHECK(strstr(graft_model_error(m), "'r3' (Rescaling)") != NULL);
    graft_model_free(m);
}

static void test_normalization(void)
{
    for (int invert = 0; invert < 2; invert++) {
        graft_model *m = model_345();
        graft_layer *l = graft_normalization(m, NULL, (graft_normalization_cfg){.invert = invert});
        CHECK_OK(graft_model_status(m));
        if (!l) {
            graft_model_free(m);
            continue;
        }
        CHECK(graft_layer_num_weights(l) == 3 && strcmp(graft_layer_weight_name(l, 2), "count") == 0);
        set_weight(l, 0, fixture_get(&fx, "norm/norm_mean"));
        set_weight(l, 1, fixture_get(&fx, "norm/norm_variance"));
        check_forward(m, fixture_get(&fx, "norm/x"),
                      fixture_get(&fx, invert ? "norm/norm_y_invert" : "norm/norm_y"), false, 1e-5,
                      1e-6);
        /* The zero variance divides by 1e-7: keep the check to the other channels' scale. */
        float *v = graft_layer_weight_data(l, 1);
        v[2] = 0.5f;
        CHECK(gradcheck_model(m, 2, NULL, 121 + invert, 40) == 0);
        graft_model_free(m);
    }
    /* Along axis 2 (W) with the mean and variance given as constants. */
    const fixture_array *mw = fixture_get(&fx, "norm/norm_w_mean"),
                        *vw = fixture_get(&fx, "norm/norm_w_variance");
    CHECK(mw && vw);
    if (!mw || !vw) return;
    graft_normalization_cfg k = {.axis = 2, .n_values = 4};
    memcpy(k.mean, mw->data, 4 * sizeof(float));
    memcpy(k.variance, vw->data, 4 * sizeof(float));
    graft_model *m = model_345();
    graft_layer *l = graft_normalization(m, NULL, k);
    CHECK(l && graft_layer_num_weights(l) == 0);
    check_forward(m, fixture_get(&fx, "norm/x"), fixture_get(&fx, "norm/norm_w_y"), false, 1e-5,
                  1e-6);
    graft_model_free(m);
}

/* An image tensor (RGB, channels last), as in EfficientNet's stem: many
 * stretches of the periodic map and a partial last one, on two threads;
 * each float is the one expression of Keras's formula, so the bits are
 * those of a plain loop here. Then Normalization inverted. */
static void test_rgb_tensor(void)
{
    enum { N = 3, H = 37, W = 41, C = 3 };
    const size_t n = (size_t)N * H * W * C;
    graft_threads_set(2);
    for (int invert = 0; invert < 2; invert++) {
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(H, W, C));
        graft_rescaling_cfg rk = {.n_scale = 3, .n_offset = 3, .scale = {0.5f, 0.25f, 2.0f},
                                  .offset = {-1.0f, 0.125f, 3.0f}};
        graft_layer *r = graft_rescaling(m, NULL, rk);
        graft_layer *z = graft_normalization(m, NULL, (graft_normalization_cfg){.invert = invert});
        CHECK_OK(graft_model_status(m));
        if (!r || !z) {
            graft_model_free(m);
            return;
        }
        const float mean[C] = {0.485f, -0.456f, 0.406f}, var[C] = {0.052f, 0.0501f, 0.0f};
        memcpy(graft_layer_weight_data(z, 0), mean, sizeof mean);
        memcpy(graft_layer_weight_data(z, 1), var, sizeof var);
        float *x = malloc(n * sizeof(float));
        graft_rng rng;
        graft_rng_seed(&rng, 130 + (uint64_t)invert);
        for (size_t i = 0; x && i < n; i++) x[i] = graft_rng_normal(&rng);
        if (x) CHECK_OK(graft_model_forward(m, x, N, false));
        size_t bad_r = 0, bad_z = 0;
        for (size_t i = 0; x && i < n; i++) {
            const size_t c = i % C;
            const float y = x[i] * rk.scale[c] + rk.offset[c];
            const float s = sqrtf(var[c]) > 1e-7f ? sqrtf(var[c]) : 1e-7f;
            const float want = invert ? y * s + mean[c] : (y - mean[c]) / s;
            bad_r += memcmp(&r->out[i], &y, sizeof y) != 0;
            bad_z += memcmp(&z->out[i], &want, sizeof want) != 0;
        }
        CHECK_MSG(bad_r == 0, "Rescaling: %zu of %zu floats differ", bad_r, n);
        CHECK_MSG(bad_z == 0, "Normalization (invert %d): %zu of %zu floats differ", invert, bad_z,
                  n);
        free(x);
        graft_model_free(m);
    }
}

static void test_layer_norm(void)
{
    graft_model *m = model_345();
    graft_layer *l = graft_layer_norm(m, NULL, (graft_layer_norm_cfg){.epsilon = 1e-6f});
    CHECK_OK(graft_model_status(m));
    if (l) {
        CHECK(strcmp(graft_layer_name(l), "layer_normalization") == 0);
        set_weight(l, 0, fixture_get(&fx, "norm/ln_gamma"));
        set_weight(l, 1, fixture_get(&fx, "norm/ln_beta"));
        check_forward(m, fixture_get(&fx, "norm/x"), fixture_get(&fx, "norm/ln_y"), false, 1e-5,
                      1e-5);
        CHECK(gradcheck_model(m, 2, NULL, 130, 60) == 0);
    }
    graft_model_free(m);
    m = model_345();
    l = graft_layer_norm(m, NULL, (graft_layer_norm_cfg){.first_axis = 1});
    CHECK_OK(graft_model_status(m));
    if (l) {
        CHECK(graft_layer_weight_shape(l, 0).rank == 3);
        set_weight(l, 0, fixture_get(&fx, "norm/ln3_gamma"));
        set_weight(l, 1, fixture_get(&fx, "norm/ln3_beta"));
        check_forward(m, fixture_get(&fx, "norm/x"), fixture_get(&fx, "norm/ln3_y"), false, 1e-5,
                      1e-5);
        CHECK(gradcheck_model(m, 2, NULL, 131, 60) == 0);
    }
    graft_model_free(m);
    /* Without gamma, beta. */
    m = model_345();
    l = graft_layer_norm(m, NULL, (graft_layer_norm_cfg){.no_center = 1, .no_scale = 1});
    CHECK(l && graft_layer_num_weights(l) == 0);
    CHECK(gradcheck_model(m, 2, NULL, 132, 40) == 0);
    graft_model_free(m);
}

static void test_layer_scale(void)
{
    graft_model *m = model_345();
    graft_layer *l = graft_layer_scale(m, NULL, "ls", 1e-6f, 5);
    CHECK_OK(graft_model_status(m));
    if (l) {
        CHECK_OK(graft_model_init_weights(m, 1));
        CHECK(graft_layer_weight_data(l, 0)[4] == 1e-6f); /* Keras's Constant(init_values) */
        set_weight(l, 0, fixture_get(&fx, "norm/ls_gamma"));
        check_forward(m, fixture_get(&fx, "norm/x"), fixture_get(&fx, "norm/ls_y"), false, 1e-6,
                      1e-6);
        CHECK(gradcheck_model(m, 2, NULL, 140, 40) == 0);
    }
    graft_model_free(m);
    m = model_345();
    CHECK(graft_layer_scale(m, NULL, "ls4", 0.1f, 4) == NULL);
    CHECK(strstr(graft_model_error(m), "'ls4' (LayerScale)") != NULL);
    graft_model_free(m);
}

static void test_config_in_and_out(void)
{
    graft_model *m = NULL;
    CHECK_OK(sequential_from_json(
        "6, 6, 3",
        "{\"class_name\": \"Rescaling\", \"config\": {\"name\": \"rs\", \"scale\": 0.00392156862745098,"
        " \"offset\": 0.0}},"
        "{\"class_name\": \"Normalization\", \"config\": {\"name\": \"nm\", \"axis\": -1,"
        " \"mean\": null, \"variance\": null, \"invert\": false}},"
        "{\"class_name\": \"Rescaling\", \"config\": {\"name\": \"rs2\","
        " \"scale\": [4.367, 4.464, 4.444]}},"
        "{\"class_name\": \"Normalization\", \"config\": {\"name\": \"nc\", \"axis\": [3],"
        " \"mean\": [0.1, 0.2, 0.3], \"variance\": [1.0, 2.0, 3.0]}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 4, \"kernel_size\": 1}},"
        "{\"class_name\": \"LayerNormalization\", \"config\": {\"name\": \"ln\", \"axis\": -1,"
        " \"epsilon\": 1e-06}},"
        "{\"class_name\": \"LayerScale\", \"config\": {\"name\": \"ls\", \"init_values\": 1e-06,"
        " \"projection_dim\": 4}},"
        "{\"class_name\": \"LayerNormalization\", \"config\": {\"name\": \"ln3\", \"axis\": [1, 2, 3],"
        " \"center\": false}}",
        &m));
    if (!m) return;
    CHECK(graft_layer_num_weights(graft_model_find(m, "nm")) == 3);
    CHECK(graft_layer_num_weights(graft_model_find(m, "nc")) == 0);
    CHECK(graft_layer_num_weights(graft_model_find(m, "ln3")) == 1);
    fill_random_weights(m, 8);
    check_h5_round_trip(m, 2);
    char *t = model_config_text(m);
    CHECK(t && strstr(t, "\"scale\":[4.367,4.464,4.444]") && strstr(t, "\"projection_dim\":4") &&
          strstr(t, "\"axis\":[1,2,3]") && strstr(t, "\"mean\":null"));
    cJSON_free(t);
    graft_model_free(m);
    /* Refused: a leading axis only, rms_scaling, axis None. */
    CHECK(sequential_from_json("3, 4, 5", "{\"class_name\": \"LayerNormalization\", \"config\": "
                                          "{\"name\": \"l1\", \"axis\": 1}}",
                               &m) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'l1' (LayerNormalization)") != NULL);
    CHECK(sequential_from_json("3, 4, 5", "{\"class_name\": \"LayerNormalization\", \"config\": "
                                          "{\"name\": \"r\", \"rms_scaling\": true}}",
                               &m) == GRAFT_EUNSUPPORTED);
    CHECK(sequential_from_json("3, 4, 5", "{\"class_name\": \"Normalization\", \"config\": "
                                          "{\"name\": \"na\", \"axis\": null}}",
                               &m) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'na' (Normalization)") != NULL);
}

int main(void)
{
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_C) == 0);
    if (!fx.n) return CHECK_SUMMARY();
    RUN(test_rescaling);
    RUN(test_normalization);
    RUN(test_rgb_tensor);
    RUN(test_layer_norm);
    RUN(test_layer_scale);
    RUN(test_config_in_and_out);
    fixture_free(&fx);
    int r = CHECK_SUMMARY();
    test_tmpdirs_remove();
    return r;
}
