/* LeakyReLU, ELU, PReLU, Softmax (any axis), Conv2DTranspose, UpSampling2D
 * (nearest, bilinear), Cropping2D, Permute, and the noise layers
 * SpatialDropout2D, GaussianNoise, GaussianDropout: forward against torch,
 * central-difference gradients, Keras config in (Keras 2 and 3 names) and
 * out, .h5 round trip; the noise layers' inference identity and training
 * statistics. */
#include "layers_util.h"

static fixture fx;

static graft_model *model_345(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 4, 5));
    return m;
}

static void check_345(graft_model *m, const char *ref, uint64_t seed)
{
    CHECK_OK(graft_model_status(m));
    check_forward(m, fixture_get(&fx, "more/x"), fixture_get(&fx, ref), false, 1e-6, 1e-5);
    CHECK_MSG(gradcheck_spaced(m, 2, 0.05f, seed, 40) == 0, "%s", ref);
    graft_model_free(m);
}

static void test_activation_layers(void)
{
    graft_model *m = model_345();
    graft_layer *l = graft_leaky_relu(m, NULL, NULL, 0.3f);
    CHECK(l && strcmp(graft_layer_name(l), "leaky_re_lu") == 0);
    check_345(m, "more/leaky_0.3", 200);
    m = model_345();
    graft_elu(m, NULL, NULL, 0.5f);
    check_345(m, "more/elu_0.5", 201);
    m = model_345();
    l = graft_prelu(m, NULL, NULL, 2, (const int[]){1, 2});
    CHECK(l && graft_layer_weight_shape(l, 0).dim[0] == 1 && graft_layer_weight_shape(l, 0).dim[2] == 5);
    set_weight(l, 0, fixture_get(&fx, "more/prelu_alpha"));
    check_345(m, "more/prelu_y", 202);
    for (int axis = 1; axis <= 3; axis++) {
        char ref[32];
        snprintf(ref, sizeof ref, "more/softmax_%d", axis);
        m = model_345();
        graft_softmax(m, NULL, NULL, axis == 3 ? -1 : axis);
        check_345(m, ref, 203 + axis);
    }
    /* PReLU without sharing: one alpha per position. */
    m = model_345();
    l = graft_prelu(m, NULL, NULL, 0, NULL);
    CHECK(l && graft_layer_weight_shape(l, 0).rank == 3);
    if (l) {
        float *a = graft_layer_weight_data(l, 0);
        for (int i = 0; i < 60; i++) a[i] = 0.01f * (float)i;
    }
    CHECK(gradcheck_spaced(m, 2, 0.05f, 207, 60) == 0);
    graft_model_free(m);
}

static void test_shape_layers(void)
{
    graft_model *m = model_345();
    graft_permute(m, NULL, NULL, 3, (const int[]){3, 1, 2});
    check_345(m, "more/permute_312", 210);
    m = model_345();
    graft_cropping2d(m, NULL, NULL, 1, 0, 2, 1);
    check_345(m, "more/cropping_1021", 211);
    m = model_345();
    graft_upsampling2d(m, NULL, NULL, 2, 3, 0);
    check_345(m, "more/up_nearest_23", 212);
    m = model_345();
    graft_upsampling2d(m, NULL, NULL, 2, 3, 1);
    check_345(m, "more/up_bilinear_23", 213);
    m = model_345();
    CHECK(graft_permute(m, NULL, "pp", 3, (const int[]){1, 1, 2}) == NULL);
    CHECK(strstr(graft_model_error(m), "'pp' (Permute)") != NULL);
    graft_model_free(m);
    m = model_345();
    CHECK(graft_cropping2d(m, NULL, "cc", 2, 1, 0, 0) == NULL);
    CHECK(strstr(graft_model_error(m), "'cc' (Cropping2D)") != NULL);
    graft_model_free(m);
}

static void test_conv2d_transpose(void)
{
    static const struct {
        const char *name;
        int k[2], s[2], d[2];
        graft_padding pad;
        int op[2], has_op, f;
    } D[] = {{"same_s2", {3, 3}, {2, 2}, {1, 1}, GRAFT_SAME, {0, 0}, 0, 4},
             {"valid_s2", {3, 2}, {2, 2}, {1, 1}, GRAFT_VALID, {0, 0}, 0, 2},
             {"valid_k1_s3", {1, 1}, {3, 3}, {1, 1}, GRAFT_VALID, {0, 0}, 0, 2},
             {"same_op", {3, 3}, {2, 2}, {1, 1}, GRAFT_SAME, {1, 0}, 1, 2},
             {"dil", {3, 3}, {1, 1}, {2, 2}, GRAFT_SAME, {0, 0}, 0, 2}};
    for (size_t i = 0; i < sizeof D / sizeof *D; i++) {
        char n[64];
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(3, 4, 3));
        graft_layer *l = graft_conv2d_transpose(
            m, NULL,
            (graft_conv2d_transpose_cfg){.filters = D[i].f, .kernel_size = {D[i].k[0], D[i].k[1]},
                                         .strides = {D[i].s[0], D[i].s[1]}, .padding = D[i].pad,
                                         .dilation_rate = {D[i].d[0], D[i].d[1]},
                                         .has_output_padding = D[i].has_op,
                                         .output_padding = {D[i].op[0], D[i].op[1]}});
        CHECK_OK(graft_model_status(m));
        if (!l) {
            graft_model_free(m);
            continue;
        }
        snprintf(n, sizeof n, "deconv/%s/kernel", D[i].name);
        set_weight(l, 0, fixture_get(&fx, n));
        snprintf(n, sizeof n, "deconv/%s/bias", D[i].name);
        set_weight(l, 1, fixture_get(&fx, n));
        snprintf(n, sizeof n, "deconv/%s/y", D[i].name);
        check_forward(m, fixture_get(&fx, "deconv/x"), fixture_get(&fx, n), false, 1e-5, 1e-5);
        CHECK_MSG(gradcheck_model(m, 2, NULL, 220 + i, 40) == 0, "%s", D[i].name);
        graft_model_free(m);
    }
    /* Accumulating into an input read twice. */
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(3, 3, 2));
    graft_layer *up = graft_conv2d_transpose(
        m, in, (graft_conv2d_transpose_cfg){.filters = 2, .kernel_size = {2, 2}, .strides = {1, 1},
                                            .padding = GRAFT_SAME, .activation = GRAFT_GELU});
    graft_layer *pair[2] = {up, in};
    graft_add(m, NULL, 2, pair);
    CHECK_OK(graft_model_init_weights(m, 2));
    CHECK(gradcheck_model(m, 2, NULL, 230, 30) == 0);
    graft_model_free(m);
}

/* Inference is the identity; training draws Keras's noise from the model's RNG. */
static void test_noise_layers(void)
{
    const int H = 8, W = 8, C = 64, n = 4;
    const size_t size = (size_t)n * H * W * C;
    float *x = malloc(size * sizeof(float));
    for (size_t i = 0; i < size; i++) x[i] = 1.0f + (float)(i % 7);
    for (int kind = 0; kind < 3; kind++) {
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(H, W, C));
        graft_layer *l = kind == 0 ? graft_spatial_dropout2d(m, NULL, NULL, 0.5f)
                         : kind == 1 ? graft_gaussian_noise(m, NULL, NULL, 0.5f)
                                     : graft_gaussian_dropout(m, NULL, NULL, 0.2f);
        CHECK_OK(graft_model_status(m));
        if (!l) {
            graft_model_free(m);
            continue;
        }
        CHECK_OK(graft_model_forward(m, x, n, false));
        CHECK(memcmp(l->out, x, size * sizeof(float)) == 0);
        CHECK_OK(graft_model_forward(m, x, n, true));
        double sum = 0, sq = 0;
        int dropped = 0, kept = 0;
        for (size_t i = 0; i < size; i++) {
            double r = kind == 1 ? l->out[i] - x[i] : l->out[i] / x[i];
            sum += r;
            sq += r * r;
        }
        double mean = sum / (double)size, var = sq / (double)size - mean * mean;
        if (kind == 0) {
            /* A channel is all dropped or all kept (x 2) within each sample. */
            for (int s = 0; s < n; s++)
                for (int c = 0; c < C; c++) {
                    float first = l->out[(size_t)s * H * W * C + c] / x[(size_t)s * H * W * C + c];
                    bool same = first == 0.0f || first == 2.0f;
                    for (int p = 1; p < H * W && same; p++) {
                        size_t i = ((size_t)s * H * W + p) * C + c;
                        same = l->out[i] / x[i] == first;
                    }
                    CHECK_MSG(same, "sample %d channel %d is not dropped whole", s, c);
                    if (first == 0) dropped++;
                    else kept++;
                }
            CHECK_MSG(dropped > 64 && kept > 64, "dropped %d of %d channels", dropped, n * C);
        } else if (kind == 1) {
            CHECK_MSG(fabs(mean) < 0.02 && fabs(sqrt(var) - 0.5) < 0.02, "noise mean %g sd %g", mean,
                      sqrt(var));
        } else {
            CHECK_MSG(fabs(mean - 1) < 0.02 && fabs(sqrt(var) - 0.5) < 0.02, "factor mean %g sd %g",
                      mean, sqrt(var));
        }
        graft_model_free(m);
        /* Gradients through the drawn noise (the same draws at every evaluation). */
        m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(2, 3, 4));
        if (kind == 0) graft_spatial_dropout2d(m, NULL, NULL, 0.5f);
        else if (kind == 1) graft_gaussian_noise(m, NULL, NULL, 0.5f);
        else graft_gaussian_dropout(m, NULL, NULL, 0.3f);
        CHECK(gradcheck_model(m, 2, NULL, 240 + kind, 30) == 0);
        graft_model_free(m);
    }
    free(x);
}

static void test_config_in_and_out(void)
{
    graft_model *m = NULL;
    CHECK_OK(sequential_from_json(
        "6, 6, 3",
        "{\"class_name\": \"LeakyReLU\", \"config\": {\"name\": \"lk2\", \"alpha\": 0.1}},"
        "{\"class_name\": \"LeakyReLU\", \"config\": {\"name\": \"lk3\", \"negative_slope\": 0.2}},"
        "{\"class_name\": \"LeakyReLU\", \"config\": {\"name\": \"lkd\"}},"
        "{\"class_name\": \"ELU\", \"config\": {\"name\": \"el\", \"alpha\": 0.7}},"
        "{\"class_name\": \"PReLU\", \"config\": {\"name\": \"pr\", \"shared_axes\": [1, 2]}},"
        "{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"up\", \"filters\": 2,"
        " \"kernel_size\": 3, \"strides\": 2, \"padding\": \"same\", \"output_padding\": null}},"
        "{\"class_name\": \"Cropping2D\", \"config\": {\"name\": \"cr\", \"cropping\": [[1, 1], [2, 0]]}},"
        "{\"class_name\": \"UpSampling2D\", \"config\": {\"name\": \"us\", \"size\": [2, 2],"
        " \"interpolation\": \"bilinear\"}},"
        "{\"class_name\": \"SpatialDropout2D\", \"config\": {\"name\": \"sd\", \"rate\": 0.2}},"
        "{\"class_name\": \"GaussianNoise\", \"config\": {\"name\": \"gn\", \"stddev\": 0.1}},"
        "{\"class_name\": \"GaussianDropout\", \"config\": {\"name\": \"gd\", \"rate\": 0.1}},"
        "{\"class_name\": \"Permute\", \"config\": {\"name\": \"pm\", \"dims\": [3, 1, 2]}},"
        "{\"class_name\": \"Softmax\", \"config\": {\"name\": \"sm\", \"axis\": 1}}",
        &m));
    if (!m) return;
    graft_shape o = graft_layer_output_shape(graft_model_output(m));
    CHECK(o.rank == 3 && o.dim[0] == 2 && o.dim[1] == 20 && o.dim[2] == 20);
    fill_random_weights(m, 9);
    check_h5_round_trip(m, 2);
    char *t = model_config_text(m);
    CHECK(t && strstr(t, "\"alpha\":0.2") && strstr(t, "\"shared_axes\":[1,2]") &&
          strstr(t, "\"interpolation\":\"bilinear\"") && strstr(t, "\"dims\":[3,1,2]") &&
          strstr(t, "\"cropping\":[[1,1],[2,0]]"));
    cJSON_free(t);
    graft_model_free(m);
    /* LeakyReLU's default slope: 0.3 in Keras 2 and 3. */
    CHECK_OK(sequential_from_json("2", "{\"class_name\": \"LeakyReLU\", \"config\": {\"name\": \"d\"}}", &m));
    if (m) {
        float x[2] = {-2.0f, 3.0f}, y[2];
        CHECK_OK(graft_model_predict(m, x, 1, y));
        CHECK(fabsf(y[0] + 0.6f) < 1e-6f && y[1] == 3.0f);
        graft_model_free(m);
    }
    CHECK(sequential_from_json("4, 4, 2", "{\"class_name\": \"UpSampling2D\", \"config\": "
                                          "{\"name\": \"ua\", \"interpolation\": \"area\"}}",
                               &m) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'ua' (UpSampling2D)") != NULL);
    CHECK(sequential_from_json("4, 4, 2", "{\"class_name\": \"SpatialDropout2D\", \"config\": "
                                          "{\"name\": \"sn\", \"rate\": 0.1, \"noise_shape\": [1]}}",
                               &m) == GRAFT_EUNSUPPORTED);
}

int main(void)
{
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_C) == 0);
    if (!fx.n) return CHECK_SUMMARY();
    RUN(test_activation_layers);
    RUN(test_shape_layers);
    RUN(test_conv2d_transpose);
    RUN(test_noise_layers);
    RUN(test_config_in_and_out);
    fixture_free(&fx);
    int r = CHECK_SUMMARY();
    test_tmpdirs_remove();
    return r;
}
