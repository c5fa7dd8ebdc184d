/* ONNX export of the layer kinds and activations beyond the first sixteen
 * (src/export/onnx_layers2.c), checked as tests/test_export_onnx.c checks the
 * others: the ONNX checker (python3-onnx) accepts every file and ONNX Runtime
 * (tests/js/ort_run.js) gives graft's outputs to 1e-4 of the output's range,
 * at opsets 11, 13 and 17 (the decompositions and the operators). TF.js
 * (tests/js/tfjs_run.js) loads the same models and agrees where it has the
 * kinds. Each oracle is skipped, with a note, where it is not installed.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "onnx_check.h"

enum { TFJS_REFUSES, TFJS_AGREES, TFJS_DIFFERS, TFJS_ABSENT };

/* Whether TF.js loads m's export and gives graft's outputs (a failure unless
 * `lax`, then only a note), or refuses it (a note: a kind TF.js lacks). */
static int tfjs_agrees(graft_model *m, const char *label, int n, bool lax)
{
    if (!have_tfjs) return TFJS_ABSENT;
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t xs = graft_shape_size(&is), ys = graft_shape_size(&os);
    float *x = malloc((size_t)n * xs * sizeof *x), *y = malloc((size_t)n * ys * sizeof *y), *got = NULL;
    char dir[256], in[256], out[256];
    int ok = TFJS_REFUSES;
    snprintf(dir, sizeof dir, "%s/%s_tfjs", tmp, label);
    snprintf(in, sizeof in, "%s/%s_tfjs.in", tmp, label);
    snprintf(out, sizeof out, "%s/%s_tfjs.out", tmp, label);
    CHECK(x && y);
    if (!x || !y) goto done;
    graft_rng r;
    graft_rng_seed(&r, 9);
    for (size_t i = 0; i < (size_t)n * xs; i++) x[i] = 2.0f * graft_rng_uniform(&r) - 1.0f;
    CHECK_OK(graft_model_predict(m, x, n, y));
    CHECK_OK(graft_export_tfjs(m, dir, NULL));
    CHECK(write_bytes(in, x, (size_t)n * xs * sizeof *x) == 0);
    char shape[64];
    snprintf(shape, sizeof shape, "%d", n);
    for (int d = 0; d < is.rank; d++) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), ",%d", is.dim[d]);
    char reply[2048];
    bool ran = oracle_ask(&tfjs, reply, sizeof reply, "%s %s %s %s", dir, in, out, shape) &&
               oracle_ok(reply);
    if (!ran) {
        printf("# TF.js refuses %s: %s\n", label, reply + (strncmp(reply, "error ", 6) ? 0 : 6));
        goto done;
    }
    size_t got_bytes = 0;
    got = (float *)read_bytes(out, &got_bytes);
    if (!lax) CHECK_MSG(got && got_bytes == (size_t)n * ys * sizeof(float), "%s: TF.js gave %zu bytes", label, got_bytes);
    ok = TFJS_DIFFERS;
    if (got && got_bytes == (size_t)n * ys * sizeof(float)) {
        double range = 0, err = 0;
        for (size_t i = 0; i < (size_t)n * ys; i++) range = fmax(range, fabs(y[i]));
        for (size_t i = 0; i < (size_t)n * ys; i++) err = fmax(err, fabs(got[i] - y[i]));
        err /= range > 0 ? range : 1;
        printf("# %-28s max |TF.js - graft| / max |graft| = %.2e\n", label, err);
        if (!lax) worst_tfjs = fmax(worst_tfjs, err);
        if (!lax) CHECK_MSG(err <= TOL, "%s: TF.js differs from graft by %.3g of the output range", label, err);
        ok = err <= TOL ? TFJS_AGREES : TFJS_DIFFERS;
    }
done:
    remove(in);
    remove(out);
    remove_tree(dir);
    free(got);
    free(x);
    free(y);
    return ok;
}

static void at_opsets(graft_model *m, const char *label)
{
    static const int opsets[] = {11, 13, 17};
    for (size_t k = 0; k < sizeof opsets / sizeof *opsets; k++) {
        char name[96];
        snprintf(name, sizeof name, "%s_opset%d", label, opsets[k]);
        check_model(m, name, &(graft_onnx_opts){.opset = opsets[k]}, 2);
    }
}

/* Merges with broadcasting (a squeeze-and-excitation Multiply), Concatenate
 * along channels and along height, grouped and dilated Conv2D, the
 * per-channel affine layers and normalisations, and the activation layers
 * with options (PReLU sharing height and width, Softmax along height), on
 * odd sizes. */
static graft_model *merges_model(void)
{
    graft_model *m = graft_model_new("merges");
    graft_layer *in = graft_input(m, "img", graft_shape3(9, 7, 4));
    graft_layer *a = graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 6, .kernel_size = {3, 3}, .padding = GRAFT_SAME,
                                                            .groups = 2});
    graft_layer *se = graft_global_average_pooling2d_keepdims(m, a, NULL);
    se = graft_conv2d(m, se, (graft_conv2d_cfg){.filters = 6, .kernel_size = {1, 1}, .activation = GRAFT_SIGMOID});
    graft_layer *mul = graft_multiply(m, NULL, 2, (graft_layer *[]){a, se});
    graft_layer *b = graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 6, .kernel_size = {3, 2}, .padding = GRAFT_SAME,
                                                            .dilation_rate = {2, 3}});
    graft_layer *sub = graft_subtract(m, NULL, mul, b);
    graft_layer *avg = graft_average(m, NULL, 3, (graft_layer *[]){a, b, sub});
    graft_layer *mx = graft_maximum(m, NULL, 2, (graft_layer *[]){avg, se});
    graft_layer *mn = graft_minimum(m, NULL, 3, (graft_layer *[]){mx, a, b});
    graft_rescaling_cfg rc = {.n_scale = 6, .n_offset = 1, .offset = {0.25f}};
    for (int c = 0; c < 6; c++) rc.scale[c] = 0.5f + 0.1f * (float)c;
    graft_layer *rs = graft_rescaling(m, mn, rc);
    graft_normalization_cfg nc = {.n_values = 6};
    for (int c = 0; c < 6; c++) {
        nc.mean[c] = 0.1f * (float)c - 0.2f;
        nc.variance[c] = 0.5f + 0.2f * (float)c;
    }
    graft_layer *nm = graft_normalization(m, rs, nc);
    graft_layer *ad = graft_normalization(m, nm, (graft_normalization_cfg){.axis = 1}); /* adapted: weights */
    graft_layer *inv = graft_normalization(m, ad, (graft_normalization_cfg){.n_values = 1, .mean = {0.3f},
                                                                          .variance = {2.0f}, .invert = 1});
    graft_layer *cat = graft_concatenate(m, NULL, -1, 2, (graft_layer *[]){inv, b});
    graft_layer *ls = graft_layer_scale(m, cat, NULL, 0.5f, 12);
    graft_layer *ln = graft_layer_norm(m, ls, (graft_layer_norm_cfg){.epsilon = 0.01f});
    graft_layer *ln2 = graft_layer_norm(m, ln, (graft_layer_norm_cfg){.first_axis = 2, .no_center = 1});
    graft_layer *pr = graft_prelu(m, ln2, NULL, 2, (const int[]){1, 2});
    graft_layer *pr2 = graft_prelu(m, pr, NULL, 0, NULL);
    graft_layer *lk = graft_leaky_relu(m, pr2, NULL, 0.15f);
    graft_layer *el = graft_elu(m, lk, NULL, 0.7f);
    graft_layer *sd = graft_spatial_dropout2d(m, el, NULL, 0.3f);
    sd = graft_gaussian_noise(m, sd, NULL, 0.2f);
    sd = graft_gaussian_dropout(m, sd, NULL, 0.2f);
    graft_layer *sm = graft_softmax(m, sd, NULL, 1);
    graft_layer *sm2 = graft_softmax(m, el, NULL, 0);
    graft_concatenate(m, NULL, 1, 2, (graft_layer *[]){sm, sm2});
    CHECK_OK(graft_model_status(m));
    if (graft_model_status(m) != GRAFT_OK) {
        printf("# %s\n", graft_model_error(m));
        graft_model_free(m);
        return NULL;
    }
    CHECK_OK(graft_model_init_weights(m, 3));
    perturb(m, 4);
    return m;
}

static void test_merges(void)
{
    graft_model *m = merges_model();
    if (!m) return;
    at_opsets(m, "merges");
    check_model(m, "merges_nchw", &(graft_onnx_opts){.nchw = 1}, 3);
    graft_model_free(m);
}

/* SeparableConv2D (depth_multiplier 2, strides, asymmetric 'same'),
 * DepthwiseConv2D (depth_multiplier 3, dilation), Conv2DTranspose in each
 * output-size case (strides with 'same', 'valid' with a kernel smaller than
 * the stride, output_padding), UpSampling2D nearest and bilinear,
 * Cropping2D, Permute, a keepdims GlobalMaxPooling2D. */
static graft_model *convs_model(void)
{
    graft_model *m = graft_model_new("convs");
    graft_layer *in = graft_input(m, "img", graft_shape3(11, 10, 3));
    graft_layer *x = graft_separable_conv2d(m, in, (graft_separable_conv2d_cfg){.filters = 5, .kernel_size = {3, 3},
                                                                                .strides = {2, 2},
                                                                                .padding = GRAFT_SAME,
                                                                                .depth_multiplier = 2,
                                                                                .activation = GRAFT_RELU});
    x = graft_separable_conv2d(m, x, (graft_separable_conv2d_cfg){.filters = 4, .kernel_size = {2, 3},
                                                                  .dilation_rate = {2, 1}, .no_bias = 1});
    x = graft_depthwise_conv2d(m, x, (graft_depthwise_conv2d_cfg){.kernel_size = {3, 3}, .padding = GRAFT_SAME,
                                                                  .depth_multiplier = 3, .dilation_rate = {2, 2},
                                                                  .activation = GRAFT_HARD_SWISH});
    graft_layer *t1 = graft_conv2d_transpose(m, x, (graft_conv2d_transpose_cfg){.filters = 4, .kernel_size = {3, 3},
                                                                                 .strides = {2, 2},
                                                                                 .padding = GRAFT_SAME});
    graft_layer *t2 = graft_conv2d_transpose(m, t1, (graft_conv2d_transpose_cfg){.filters = 3, .kernel_size = {2, 2},
                                                                                  .strides = {3, 2},
                                                                                  .activation = GRAFT_TANH});
    graft_layer *t3 = graft_conv2d_transpose(m, x, (graft_conv2d_transpose_cfg){.filters = 3, .kernel_size = {3, 4},
                                                                                 .strides = {2, 3},
                                                                                 .padding = GRAFT_SAME,
                                                                                 .has_output_padding = 1,
                                                                                 .output_padding = {1, 2},
                                                                                 .no_bias = 1});
    graft_layer *t4 = graft_conv2d_transpose(m, x, (graft_conv2d_transpose_cfg){.filters = 2, .kernel_size = {3, 3},
                                                                                 .dilation_rate = {2, 2}});
    graft_layer *u1 = graft_upsampling2d(m, t3, NULL, 2, 3, 0);
    graft_layer *u2 = graft_upsampling2d(m, t4, NULL, 3, 2, 1);
    graft_layer *c1 = graft_cropping2d(m, u1, NULL, 1, 2, 0, 3);
    graft_layer *p1 = graft_permute(m, c1, NULL, 3, (const int[]){2, 1, 3});
    graft_layer *p2 = graft_permute(m, p1, NULL, 3, (const int[]){3, 1, 2});
    graft_layer *g1 = graft_global_max_pooling2d_keepdims(m, p2, NULL);
    graft_layer *g2 = graft_global_average_pooling2d(m, u2, NULL);
    graft_layer *g3 = graft_global_average_pooling2d(m, t2, NULL);
    graft_layer *f1 = graft_flatten(m, g1, NULL);
    graft_layer *f2 = graft_dense(m, g2, (graft_dense_cfg){.units = 7});
    graft_layer *f3 = graft_dense(m, g3, (graft_dense_cfg){.units = 7});
    graft_layer *cat = graft_concatenate(m, NULL, -1, 3, (graft_layer *[]){f1, f2, f3});
    graft_dense(m, cat, (graft_dense_cfg){.units = 5, .activation = GRAFT_GELU});
    CHECK_OK(graft_model_status(m));
    if (graft_model_status(m) != GRAFT_OK) {
        printf("# %s\n", graft_model_error(m));
        graft_model_free(m);
        return NULL;
    }
    CHECK_OK(graft_model_init_weights(m, 5));
    perturb(m, 6);
    return m;
}

static void test_convs(void)
{
    graft_model *m = convs_model();
    if (!m) return;
    at_opsets(m, "convs");
    graft_model_free(m);
}

/* Each output-size case of Conv2DTranspose alone, as the model's output
 * (an image: its size is checked by the byte count). */
static void test_transpose_sizes(void)
{
    static const struct { int k[2], s[2], same, op, opv[2], d; } cases[] = {
        {{3, 3}, {2, 2}, 1, 0, {0, 0}, 1}, {{4, 4}, {2, 2}, 1, 0, {0, 0}, 1}, {{2, 5}, {3, 2}, 0, 0, {0, 0}, 1},
        {{1, 1}, {3, 3}, 0, 0, {0, 0}, 1}, {{3, 2}, {2, 3}, 1, 1, {1, 2}, 1}, {{5, 3}, {2, 2}, 0, 1, {1, 0}, 1},
        {{3, 3}, {1, 1}, 1, 0, {0, 0}, 2}, {{3, 3}, {1, 1}, 0, 0, {0, 0}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = graft_model_new("deconv");
        graft_layer *in = graft_input(m, "img", graft_shape3(5, 4, 2));
        graft_conv2d_transpose(m, in, (graft_conv2d_transpose_cfg){.filters = 3, .kernel_size = {cases[i].k[0], cases[i].k[1]},
                                                                    .strides = {cases[i].s[0], cases[i].s[1]},
                                                                    .padding = cases[i].same ? GRAFT_SAME : GRAFT_VALID,
                                                                    .has_output_padding = cases[i].op,
                                                                    .output_padding = {cases[i].opv[0], cases[i].opv[1]},
                                                                    .dilation_rate = {cases[i].d, cases[i].d}});
        CHECK_MSG(graft_model_status(m) == GRAFT_OK, "case %zu: %s", i, graft_model_error(m));
        if (graft_model_status(m) == GRAFT_OK) {
            CHECK_OK(graft_model_init_weights(m, 7));
            perturb(m, 8);
            char label[32];
            snprintf(label, sizeof label, "deconv_%zu", i);
            check_model(m, label, &(graft_onnx_opts){0}, 2);
        }
        graft_model_free(m);
    }
}

/* Every activation graft knows, as Activation layers side by side on an
 * image (softmax over its channels), and as a Dense layer's on a vector. */
static void test_activations(void)
{
    graft_model *m = graft_model_new("acts");
    graft_layer *in = graft_input(m, "img", graft_shape3(3, 5, 4));
    graft_layer *in2 = graft_flatten(m, in, NULL);
    graft_layer *branches[2 * (GRAFT_LEAKY_RELU + 1)];
    int n = 0;
    for (int a = 0; a <= GRAFT_LEAKY_RELU; a++) {
        graft_layer *c = graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 2, .kernel_size = {1, 1},
                                                                .activation = (graft_activation)a});
        branches[n++] = graft_flatten(m, graft_activation_layer(m, c, NULL, (graft_activation)a), NULL);
        branches[n++] = graft_dense(m, in2, (graft_dense_cfg){.units = 3, .activation = (graft_activation)a});
    }
    graft_concatenate(m, NULL, -1, n, branches);
    CHECK_MSG(graft_model_status(m) == GRAFT_OK, "%s", graft_model_error(m));
    if (graft_model_status(m) == GRAFT_OK) {
        CHECK_OK(graft_model_init_weights(m, 9));
        perturb(m, 10);
        at_opsets(m, "activations");
    }
    graft_model_free(m);
    /* TF.js, one activation at a time: it lacks Keras 3's silu, hard_swish
     * (hard_silu), gelu_approximate, exponential and leaky_relu, and its
     * hard_sigmoid is Keras 2's (0.2 x + 0.5, not x / 6 + 0.5). */
    static const char *const tfjs_lacks = " silu hard_sigmoid hard_swish hard_silu gelu_approximate exponential leaky_relu ";
    for (int a = 0; a <= GRAFT_LEAKY_RELU && have_tfjs; a++) {
        m = graft_model_new("act");
        graft_layer *i = graft_input(m, "img", graft_shape3(3, 5, 4));
        graft_activation_layer(m, i, NULL, (graft_activation)a);
        char label[64];
        snprintf(label, sizeof label, "act_%s", graft_activation_name((graft_activation)a));
        char key[40];
        snprintf(key, sizeof key, " %s ", graft_activation_name((graft_activation)a));
        bool lax = strstr(tfjs_lacks, key) != NULL;
        int r = tfjs_agrees(m, label, 2, lax);
        if (!lax) CHECK_MSG(r == TFJS_AGREES, "TF.js does not load activation %s", key);
        printf("# TF.js on activation %s: %s\n", graft_activation_name((graft_activation)a),
               r == TFJS_AGREES ? "agrees" : r == TFJS_DIFFERS ? "DIFFERS" : "refuses");
        graft_model_free(m);
    }
}

/* One new kind at a time on a (6, 5, 4) image, for TF.js: the kinds it
 * lacks are named in the log; those it has must agree with graft. It lacks
 * Subtract, Normalization, LayerScale, SpatialDropout2D and Conv2D groups,
 * ELU's non-default alpha; its UpSampling2D bilinear has no half-pixel
 * centres and its DepthwiseConv2D ignores dilation (both differ). */
static graft_layer *one_kind(graft_model *m, graft_layer *in, int k, const char **name, bool *tfjs_has)
{
    /* The merges' second input (only for them: TF.js refuses a dangling layer's weights). */
    graft_layer *b = k <= 5 ? graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 4, .kernel_size = {1, 1}}) : NULL;
    graft_layer *two[2] = {in, b};
    graft_rescaling_cfg rc = {.n_scale = 1, .scale = {0.5f}, .n_offset = 1, .offset = {0.1f}};
    *tfjs_has = true;
    switch (k) {
    case 0: *name = "Concatenate"; return graft_concatenate(m, NULL, -1, 2, two);
    case 1: *name = "Multiply"; return graft_multiply(m, NULL, 2, two);
    case 2: *name = "Subtract"; *tfjs_has = false; return graft_subtract(m, NULL, in, b);
    case 3: *name = "Average"; return graft_average(m, NULL, 2, two);
    case 4: *name = "Maximum"; return graft_maximum(m, NULL, 2, two);
    case 5: *name = "Minimum"; return graft_minimum(m, NULL, 2, two);
    case 6: *name = "Rescaling"; return graft_rescaling(m, in, rc);
    case 7: *name = "Normalization"; *tfjs_has = false; return graft_normalization(m, in, (graft_normalization_cfg){0});
    case 8: *name = "LayerNormalization"; return graft_layer_norm(m, in, (graft_layer_norm_cfg){0});
    case 9: *name = "LayerScale"; *tfjs_has = false; return graft_layer_scale(m, in, NULL, 0.5f, 4);
    case 10:
        *name = "SeparableConv2D";
        return graft_separable_conv2d(m, in, (graft_separable_conv2d_cfg){.filters = 3, .kernel_size = {3, 3},
                                                                          .depth_multiplier = 2, .padding = GRAFT_SAME});
    case 11: *name = "LeakyReLU"; return graft_leaky_relu(m, in, NULL, 0.2f);
    case 12: *name = "PReLU"; return graft_prelu(m, in, NULL, 2, (const int[]){1, 2});
    case 13: *name = "ELU"; return graft_elu(m, in, NULL, 1.0f); /* TF.js refuses other alphas */
    case 14: *name = "Softmax"; return graft_softmax(m, in, NULL, 0);
    case 15:
        *name = "Conv2DTranspose";
        return graft_conv2d_transpose(m, in, (graft_conv2d_transpose_cfg){.filters = 3, .kernel_size = {3, 3},
                                                                          .strides = {2, 2}, .padding = GRAFT_SAME});
    case 16: *name = "UpSampling2D nearest"; return graft_upsampling2d(m, in, NULL, 2, 3, 0);
    case 17: /* TF.js resizes without half-pixel centres (TF1's resize_bilinear) */
        *name = "UpSampling2D bilinear";
        *tfjs_has = false;
        return graft_upsampling2d(m, in, NULL, 2, 2, 1);
    case 18: *name = "Cropping2D"; return graft_cropping2d(m, in, NULL, 1, 0, 2, 1);
    case 19: *name = "Permute"; return graft_permute(m, in, NULL, 3, (const int[]){2, 3, 1});
    case 20: *name = "SpatialDropout2D"; *tfjs_has = false; return graft_spatial_dropout2d(m, in, NULL, 0.5f);
    case 21: *name = "GaussianNoise"; return graft_gaussian_noise(m, in, NULL, 0.5f);
    case 22: *name = "GaussianDropout"; return graft_gaussian_dropout(m, in, NULL, 0.5f);
    case 23: *name = "GlobalAveragePooling2D keepdims"; return graft_global_average_pooling2d_keepdims(m, in, NULL);
    case 24:
        *name = "Conv2D groups";
        *tfjs_has = false;
        return graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 6, .kernel_size = {3, 3}, .groups = 2});
    case 25:
        *name = "Conv2D dilation";
        return graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 3, .kernel_size = {3, 3}, .dilation_rate = {2, 2},
                                                      .padding = GRAFT_SAME});
    case 26:
        *name = "DepthwiseConv2D depth_multiplier 2";
        return graft_depthwise_conv2d(m, in, (graft_depthwise_conv2d_cfg){.kernel_size = {3, 3}, .depth_multiplier = 2});
    case 27: /* TF.js's DepthwiseConv2D ignores dilation_rate */
        *name = "DepthwiseConv2D dilation";
        *tfjs_has = false;
        return graft_depthwise_conv2d(m, in, (graft_depthwise_conv2d_cfg){.kernel_size = {3, 3}, .dilation_rate = {2, 1}});
    default: return NULL;
    }
}

static void test_tfjs_kinds(void)
{
    if (!have_tfjs) return;
    for (int k = 0;; k++) {
        graft_model *m = graft_model_new("kind");
        graft_layer *in = graft_input(m, "img", graft_shape3(6, 5, 4));
        const char *name = "";
        bool has;
        if (!one_kind(m, in, k, &name, &has)) {
            graft_model_free(m);
            break;
        }
        CHECK_MSG(graft_model_status(m) == GRAFT_OK, "%s: %s", name, graft_model_error(m));
        if (graft_model_status(m) == GRAFT_OK) {
            CHECK_OK(graft_model_init_weights(m, 11));
            perturb(m, 12);
            char label[32];
            snprintf(label, sizeof label, "kind_%d", k);
            int r = tfjs_agrees(m, label, 2, !has);
            printf("# TF.js on %s: %s\n", name, r == TFJS_AGREES ? "agrees" : r == TFJS_DIFFERS ? "DIFFERS" : "refuses");
            if (has) CHECK_MSG(r == TFJS_AGREES, "TF.js does not load %s", name);
        }
        graft_model_free(m);
    }
}

/* The zoo's newer families, without and with top, at their smallest input,
 * where this build has them (each is skipped, with a note, where
 * graft_zoo_build does not know it). */
static void test_zoo_families(void)
{
    static const struct { const char *arch; int size; } archs[] = {
        {"resnet50v2", 32},      {"densenet121", 32},      {"inceptionv3", 75},      {"xception", 71},
        {"efficientnetb0", 32},  {"mobilenetv3small", 32}, {"mobilenetv3large", 32},
        {"convnexttiny", 32},
    };
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        for (int top = 0; top <= 1; top++) {
            graft_zoo_cfg c = graft_zoo_default_cfg();
            c.include_top = top;
            c.classes = 10;
            c.input_shape[0] = c.input_shape[1] = archs[i].size;
            graft_model *m = NULL;
            if (graft_zoo_build(archs[i].arch, &c, &m) != GRAFT_OK) {
                printf("# skip: no zoo architecture %s in this build\n", archs[i].arch);
                break;
            }
            perturb(m, 13);
            char label[64];
            snprintf(label, sizeof label, "%s_%s", archs[i].arch, top ? "top" : "notop");
            check_model(m, label, &(graft_onnx_opts){0}, 2);
            graft_model_free(m);
        }
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/graft_onnxk_XXXXXX");
    if (make_tmpdir(tmp) != 0) return 1;
    probe_oracles();
    graft_threads_set(2);
    RUN(test_activations);
    RUN(test_transpose_sizes);
    RUN(test_merges);
    RUN(test_convs);
    RUN(test_tfjs_kinds);
    RUN(test_zoo_families);
    printf("# worst ONNX Runtime difference: %.2e of the output range\n", worst_err);
    printf("# worst TF.js difference: %.2e of the output range\n", worst_tfjs);
    remove_tree(tmp);
    return CHECK_SUMMARY();
}
