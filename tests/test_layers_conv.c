/* The convolution and pooling options Keras Applications need: Conv2D with
 * dilation_rate and groups, DepthwiseConv2D with depth_multiplier > 1 and
 * dilation, SeparableConv2D, MaxPooling2D/AveragePooling2D with 'same'
 * padding, GlobalAveragePooling2D(keepdims=True): forward against torch,
 * central-difference gradients, Keras config in and out, .h5 round trip. */
#include "exec/exec.h"
#include "layers_util.h"

#include <math.h>

static fixture fx;

static const struct {
    const char *name;
    int k[2], s[2], d[2];
    graft_padding pad;
    int groups, filters;
} CONVS[] = {
    {"dil_same", {3, 3}, {1, 1}, {2, 2}, GRAFT_SAME, 1, 3},
    {"dil_valid", {3, 2}, {1, 1}, {2, 3}, GRAFT_VALID, 1, 2},
    {"groups", {3, 3}, {2, 2}, {1, 1}, GRAFT_SAME, 2, 6},
    {"groups_dil", {2, 2}, {1, 1}, {2, 1}, GRAFT_SAME, 4, 4},
};

static graft_conv2d_cfg conv_cfg(size_t i)
{
    return (graft_conv2d_cfg){.filters = CONVS[i].filters,
                              .kernel_size = {CONVS[i].k[0], CONVS[i].k[1]},
                              .strides = {CONVS[i].s[0], CONVS[i].s[1]},
                              .padding = CONVS[i].pad,
                              .dilation_rate = {CONVS[i].d[0], CONVS[i].d[1]},
                              .groups = CONVS[i].groups};
}

static void test_conv2d_dilation_groups(void)
{
    for (size_t i = 0; i < sizeof CONVS / sizeof *CONVS; i++) {
        char n[64];
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(7, 6, 4));
        graft_layer *c = graft_conv2d(m, NULL, conv_cfg(i));
        CHECK_OK(graft_model_status(m));
        if (!c) {
            graft_model_free(m);
            continue;
        }
        snprintf(n, sizeof n, "conv/%s/kernel", CONVS[i].name);
        set_weight(c, 0, fixture_get(&fx, n));
        snprintf(n, sizeof n, "conv/%s/bias", CONVS[i].name);
        set_weight(c, 1, fixture_get(&fx, n));
        snprintf(n, sizeof n, "conv/%s/y", CONVS[i].name);
        check_forward(m, fixture_get(&fx, "conv/x"), fixture_get(&fx, n), false, 1e-5, 1e-5);
        CHECK_MSG(gradcheck_model(m, 2, NULL, 80 + i, 40) == 0, "%s", CONVS[i].name);
        graft_model_free(m);
    }
    /* Refusals: groups not dividing the channels; dilation with strides. */
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(7, 6, 4));
    CHECK(graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "g3", .filters = 6, .kernel_size = {1, 1},
                                                   .groups = 3}) == NULL);
    CHECK(strstr(graft_model_error(m), "'g3' (Conv2D)") && strstr(graft_model_error(m), "groups=3"));
    graft_model_free(m);
    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(7, 6, 4));
    CHECK(graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "ds", .filters = 6, .kernel_size = {3, 3},
                                                   .strides = {2, 2}, .dilation_rate = {2, 2}}) == NULL);
    CHECK(strstr(graft_model_error(m), "'ds' (Conv2D)") != NULL);
    graft_model_free(m);
}

static void test_depthwise_multiplier_dilation(void)
{
    static const struct {
        const char *name;
        int k[2], s[2], d[2];
        graft_padding pad;
        int dm;
    } DWS[] = {{"dm3", {3, 3}, {2, 2}, {1, 1}, GRAFT_SAME, 3},
               {"dm2_dil", {3, 3}, {1, 1}, {2, 2}, GRAFT_VALID, 2}};
    for (size_t i = 0; i < 2; i++) {
        char n[64];
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(7, 6, 4));
        graft_layer *c = graft_depthwise_conv2d(
            m, NULL,
            (graft_depthwise_conv2d_cfg){.kernel_size = {DWS[i].k[0], DWS[i].k[1]},
                                         .strides = {DWS[i].s[0], DWS[i].s[1]},
                                         .padding = DWS[i].pad,
                                         .depth_multiplier = DWS[i].dm,
                                         .dilation_rate = {DWS[i].d[0], DWS[i].d[1]}});
        CHECK_OK(graft_model_status(m));
        if (!c) {
            graft_model_free(m);
            continue;
        }
        snprintf(n, sizeof n, "dw/%s/kernel", DWS[i].name);
        set_weight(c, 0, fixture_get(&fx, n));
        snprintf(n, sizeof n, "dw/%s/bias", DWS[i].name);
        set_weight(c, 1, fixture_get(&fx, n));
        snprintf(n, sizeof n, "dw/%s/y", DWS[i].name);
        check_forward(m, fixture_get(&fx, "conv/x"), fixture_get(&fx, n), false, 1e-5, 1e-5);
        CHECK_MSG(gradcheck_model(m, 2, NULL, 90 + i, 40) == 0, "%s", DWS[i].name);
        graft_model_free(m);
    }
}

static void test_separable(void)
{
    for (int v = 0; v < 2; v++) {
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(7, 6, 4));
        graft_layer *c = graft_separable_conv2d(
            m, NULL,
            (graft_separable_conv2d_cfg){.filters = 5, .kernel_size = {3, 3},
                                         .strides = {v ? 2 : 1, v ? 2 : 1},
                                         .padding = v ? GRAFT_VALID : GRAFT_SAME,
                                         .depth_multiplier = 2});
        CHECK_OK(graft_model_status(m));
        if (!c) {
            graft_model_free(m);
            continue;
        }
        CHECK(strcmp(graft_layer_name(c), "separable_conv2d") == 0);
        CHECK(strcmp(graft_layer_weight_name(c, 0), "depthwise_kernel") == 0 &&
              strcmp(graft_layer_weight_name(c, 1), "pointwise_kernel") == 0 &&
              strcmp(graft_layer_weight_name(c, 2), "bias") == 0);
        set_weight(c, 0, fixture_get(&fx, "sep/depthwise_kernel"));
        set_weight(c, 1, fixture_get(&fx, "sep/pointwise_kernel"));
        set_weight(c, 2, fixture_get(&fx, "sep/bias"));
        check_forward(m, fixture_get(&fx, "conv/x"),
                      fixture_get(&fx, v ? "sep/y_s2_valid" : "sep/y"), false, 1e-5, 1e-5);
        CHECK(gradcheck_model(m, 2, NULL, 95 + v, 40) == 0);
        graft_model_free(m);
    }
    /* With a swish activation (the pre-activation kept in aux). */
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(5, 5, 3));
    graft_separable_conv2d(m, NULL,
                           (graft_separable_conv2d_cfg){.filters = 2, .kernel_size = {3, 3},
                                                        .activation = GRAFT_SWISH,
                                                        .dilation_rate = {2, 1}});
    CHECK_OK(graft_model_status(m));
    CHECK_OK(graft_model_init_weights(m, 4));
    CHECK(gradcheck_model(m, 2, NULL, 97, 40) == 0);
    graft_model_free(m);
}

/* Depth multiplier 1 without dilation (Xception's) runs kernels/depthwise.c's
 * passes: against a direct loop over the taps, in inference and in a
 * training pass, with 20 channels (off the vector widths): 3x3 'same'
 * stride 1, linear (in inference a DW_BLOCK step), and 5x5 'same' stride 2
 * with swish (the layer, its pre-activation kept); and its gradients. */
static void test_separable_depthwise_kernels(void)
{
    enum { H = 9, W = 8, C = 20, F = 7, N = 2 };
    for (int v = 0; v < 2; v++) {
        const int k = v ? 5 : 3, st = v ? 2 : 1;
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(H, W, C));
        graft_layer *c = graft_separable_conv2d(
            m, NULL,
            (graft_separable_conv2d_cfg){.filters = F, .kernel_size = {k, k}, .strides = {st, st},
                                         .padding = GRAFT_SAME,
                                         .activation = v ? GRAFT_SWISH : GRAFT_LINEAR});
        CHECK_OK(graft_model_status(m));
        CHECK_OK(graft_model_init_weights(m, 11 + v));
        if (!c || graft_model_status(m) != GRAFT_OK) {
            graft_model_free(m);
            continue;
        }
        float *dk = graft_layer_weight_data(c, 0), *pk = graft_layer_weight_data(c, 1);
        float *bias = graft_layer_weight_data(c, 2);
        for (int j = 0; j < F; j++) bias[j] = 0.05f * (float)(j - 3);
        const int OH = (H + st - 1) / st, OW = (W + st - 1) / st;
        const int pt = ((OH - 1) * st + k - H) / 2, pl = ((OW - 1) * st + k - W) / 2;
        float *x = malloc(sizeof(float) * N * H * W * C);
        float *ref = malloc(sizeof(float) * N * OH * OW * F);
        float *got = malloc(sizeof(float) * N * OH * OW * F);
        if (!x || !ref || !got) {
            CHECK_MSG(0, "out of memory");
            free(x), free(ref), free(got);
            graft_model_free(m);
            continue;
        }
        for (int i = 0; i < N * H * W * C; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        for (int b = 0; b < N; b++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    double mid[C];
                    for (int ch = 0; ch < C; ch++) {
                        mid[ch] = 0;
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * st - pt + ky, ix = ox * st - pl + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                mid[ch] += (double)x[((b * H + iy) * W + ix) * C + ch] *
                                           dk[(ky * k + kx) * C + ch];
                            }
                    }
                    for (int j = 0; j < F; j++) {
                        double y = bias[j];
                        for (int ch = 0; ch < C; ch++) y += mid[ch] * pk[ch * F + j];
                        if (v) y = y / (1 + exp(-y));
                        ref[((b * OH + oy) * OW + ox) * F + j] = (float)y;
                    }
                }
        const size_t n_out = (size_t)N * OH * OW * F;
        size_t worst = 0;
        CHECK_OK(graft_model_predict(m, x, N, got));
        CHECK(strcmp(graft_plan_step_kind(m, 1, NULL), v ? "layer" : "dw_block") == 0);
        double r = check_close_ratio(got, ref, n_out, 1e-5, 1e-5, &worst);
        CHECK_MSG(r <= 1, "%dx%d/%d inference: [%zu] %g vs %g", k, k, st, worst, got[worst],
                  ref[worst]);
        CHECK_OK(graft_model_forward(m, x, N, true));
        r = check_close_ratio(graft_model_output(m)->out, ref, n_out, 1e-5, 1e-5, &worst);
        CHECK_MSG(r <= 1, "%dx%d/%d training pass: [%zu] %g vs %g", k, k, st, worst,
                  graft_model_output(m)->out[worst], ref[worst]);
        CHECK(gradcheck_spaced(m, N, 0.01f, 98 + v, 40) == 0);
        free(x), free(ref), free(got);
        graft_model_free(m);
    }
}

static void test_pooling_same_and_keepdims(void)
{
    static const struct {
        const char *ref;
        int max, k[2], s[2];
    } P[] = {{"pool/max_3x3_s2", 1, {3, 3}, {2, 2}},
             {"pool/avg_3x3_s2", 0, {3, 3}, {2, 2}},
             {"pool/max_2x3_s1", 1, {2, 3}, {1, 1}},
             {"pool/avg_2x3_s1", 0, {2, 3}, {1, 1}}};
    for (size_t i = 0; i < 4; i++) {
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(5, 7, 3));
        graft_pool2d_cfg cfg = {.pool_size = {P[i].k[0], P[i].k[1]},
                                .strides = {P[i].s[0], P[i].s[1]},
                                .padding = GRAFT_SAME};
        if (P[i].max) graft_max_pooling2d(m, NULL, cfg);
        else graft_average_pooling2d(m, NULL, cfg);
        check_forward(m, fixture_get(&fx, "pool/x"), fixture_get(&fx, P[i].ref), false, 1e-6, 1e-6);
        CHECK_MSG(gradcheck_spaced(m, 2, 0.05f, 100 + i, 40) == 0, "%s", P[i].ref);
        graft_model_free(m);
    }
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(5, 7, 3));
    graft_layer *g = graft_global_average_pooling2d_keepdims(m, NULL, NULL);
    CHECK(g && g->out_shape.rank == 3 && g->out_shape.dim[0] == 1 && g->out_shape.dim[2] == 3);
    check_forward(m, fixture_get(&fx, "pool/x"), fixture_get(&fx, "pool/gap_keepdims"), false,
                  1e-6, 1e-6);
    CHECK(gradcheck_model(m, 2, NULL, 105, 30) == 0);
    graft_model_free(m);
}

static void test_config_in_and_out(void)
{
    graft_model *m = NULL;
    CHECK_OK(sequential_from_json(
        "9, 9, 4",
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"dil\", \"filters\": 4,"
        " \"kernel_size\": [3, 3], \"padding\": \"same\", \"dilation_rate\": [2, 2]}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"grp\", \"filters\": 6,"
        " \"kernel_size\": 3, \"groups\": 2, \"activation\": \"relu\"}},"
        "{\"class_name\": \"DepthwiseConv2D\", \"config\": {\"name\": \"dw\", \"kernel_size\": 3,"
        " \"depth_multiplier\": 2, \"dilation_rate\": 2, \"padding\": \"same\"}},"
        "{\"class_name\": \"SeparableConv2D\", \"config\": {\"name\": \"sep\", \"filters\": 5,"
        " \"kernel_size\": 3, \"depth_multiplier\": 2, \"padding\": \"same\", \"use_bias\": false}},"
        "{\"class_name\": \"MaxPooling2D\", \"config\": {\"name\": \"mp\", \"pool_size\": 3,"
        " \"strides\": 2, \"padding\": \"same\"}},"
        "{\"class_name\": \"AveragePooling2D\", \"config\": {\"name\": \"ap\", \"pool_size\": 2,"
        " \"strides\": 1, \"padding\": \"same\"}},"
        "{\"class_name\": \"GlobalAveragePooling2D\", \"config\": {\"name\": \"gap\", \"keepdims\": true}}",
        &m));
    if (!m) return;
    graft_layer *l = graft_model_find(m, "grp");
    CHECK(l && graft_layer_weight_shape(l, 0).dim[2] == 2); /* (3, 3, 4 / 2, 6) */
    l = graft_model_find(m, "dw");
    CHECK(l && l->out_shape.dim[2] == 12);
    l = graft_model_find(m, "sep");
    CHECK(l && graft_layer_num_weights(l) == 2);
    graft_shape o = graft_layer_output_shape(graft_model_output(m));
    CHECK(o.rank == 3 && o.dim[0] == 1 && o.dim[1] == 1 && o.dim[2] == 5);
    fill_random_weights(m, 5);
    check_h5_round_trip(m, 2);
    char *t = model_config_text(m);
    CHECK(t && strstr(t, "\"dilation_rate\":[2,2]") && strstr(t, "\"groups\":2") &&
          strstr(t, "\"keepdims\":true") && strstr(t, "\"pointwise_initializer\""));
    cJSON_free(t);
    graft_model_free(m);
}

int main(void)
{
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_C) == 0);
    if (!fx.n) return CHECK_SUMMARY();
    RUN(test_conv2d_dilation_groups);
    RUN(test_depthwise_multiplier_dilation);
    RUN(test_separable);
    RUN(test_separable_depthwise_kernels);
    RUN(test_pooling_same_and_keepdims);
    RUN(test_config_in_and_out);
    fixture_free(&fx);
    int r = CHECK_SUMMARY();
    test_tmpdirs_remove();
    return r;
}
