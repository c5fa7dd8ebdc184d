/* TF.js export (src/export/tfjs.c): @tensorflow/tfjs under Node
 * (tests/js/tfjs_run.js, tf.loadLayersModel through a file IO handler) gives
 * graft's outputs to 1e-4 of their range (float16: 1e-3; uint8: 1e-2), graft
 * reads its own export back, shards stay under their size, metadata.json
 * holds the classes and preprocessing. TF.js (one process for the suite,
 * tests/oracle.h) is skipped where node or js/node_modules/@tensorflow/tfjs
 * is absent. */
#include "check.h"
#include "oracle.h"
#include "test_util.h"

#include "graft.h"

#include <stdbool.h>
#include <stdlib.h>

static char tmp[64];
static bool have_tfjs;
static oracle tfjs;
static double worst[3];

static graft_model *scratch_cnn(void)
{
    graft_model *m = graft_model_new("scratch_cnn");
    graft_input(m, "input_1", graft_shape3(24, 24, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 64, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3, .activation = GRAFT_SOFTMAX});
    return m;
}

/* MobileNetV2 (alpha 0.35) without top and the lesson's head. */
static graft_model *mobilenet_v2_head(void)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = 0.35f;
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 48;
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build("mobilenet_v2", &c, &m));
    if (!m) return NULL;
    graft_layer *x = graft_global_average_pooling2d(m, NULL, NULL);
    x = graft_dense(m, x, (graft_dense_cfg){.units = 32, .activation = GRAFT_RELU});
    graft_layer *top = graft_dense(m, x, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    /* A sigmoid away from saturation, where a difference would show. */
    float *kernel = graft_layer_weight_data(top, 0);
    for (int i = 0; i < 32; i++) kernel[i] *= 0.05f;
    /* Moving statistics and biases away from their initial values. */
    graft_rng r;
    graft_rng_seed(&r, 3);
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            const char *w = graft_layer_weight_name(l, k);
            graft_shape s = graft_layer_weight_shape(l, k);
            float *d = graft_layer_weight_data(l, k);
            if (!strcmp(w, "moving_variance") || !strcmp(w, "moving_mean"))
                for (size_t j = 0; j < graft_shape_size(&s); j++)
                    d[j] = (w[7] == 'v' ? 0.5f : -0.2f) + 0.4f * graft_rng_uniform(&r);
        }
    }
    return m;
}

static void max_err(const float *a, const float *b, size_t n, double *err)
{
    double range = 0, e = 0;
    for (size_t i = 0; i < n; i++) range = fmax(range, fabs(b[i]));
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs(a[i] - b[i]));
    *err = e / (range > 0 ? range : 1);
}

/* Exports m into tmp/label, checks the files, graft's reading back and TF.js. */
static void check_tfjs(graft_model *m, const char *label, graft_quantization q, size_t shard, double tol)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", tmp, label);
    const char *classes[] = {"ant", "bee", "cicada"};
    graft_tfjs_opts o = {.quantize = q, .shard_bytes = shard,
                         .meta = {.classes = classes, .n_classes = 3, .preprocess = "mobilenet_v2",
                                  .val_accuracy = 0.875f}};
    CHECK_OK(graft_export_tfjs(m, dir, &o));

    /* Shards: all present, none above the limit, one more file than needed none. */
    size_t limit = shard ? shard : (size_t)4 << 20, total = 0;
    int n_shards = 0;
    for (int k = 1; k < 1000; k++) {
        char name[512];
        struct stat st;
        int found = 0;
        for (int n = k; n < 1000 && !found; n++) {
            snprintf(name, sizeof name, "%s/group1-shard%dof%d.bin", dir, k, n);
            if (stat(name, &st) == 0) found = 1;
        }
        if (!found) break;
        n_shards++;
        total += (size_t)st.st_size;
        CHECK_MSG((size_t)st.st_size <= limit, "%s is %lld bytes", name, (long long)st.st_size);
    }
    CHECK(n_shards >= 1);
    size_t want = 0; /* kernels quantized, vectors float32 */
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            size_t per = q == GRAFT_QUANT_NONE || s.rank < 2 ? 4 : q == GRAFT_QUANT_FLOAT16 ? 2 : 1;
            want += per * graft_shape_size(&s);
        }
    }
    CHECK_MSG(total == want, "%s: %zu bytes of weights, wanted %zu", label, total, want);
    char *meta = read_text(path_in(dir, "metadata.json"), NULL);
    CHECK(meta && strstr(meta, "\"classes\":[\"ant\",\"bee\",\"cicada\"]") &&
          strstr(meta, "\"name\":\"mobilenet_v2\"") && strstr(meta, "\"val_accuracy\":0.875"));
    free(meta);

    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t xs = graft_shape_size(&is), ys = graft_shape_size(&os);
    int n = 2;
    float *x = malloc(n * xs * sizeof *x), *y = malloc(n * ys * sizeof *y), *back = malloc(n * ys * sizeof *y);
    graft_rng r;
    graft_rng_seed(&r, 1);
    for (size_t i = 0; i < n * xs; i++) x[i] = 2.0f * graft_rng_uniform(&r) - 1.0f;
    CHECK_OK(graft_model_predict(m, x, n, y));

    /* graft reads its own export (the dequantized weights). */
    graft_model *again = NULL;
    CHECK_OK(graft_model_load(path_in(dir, "model.json"), &again));
    if (again) {
        CHECK_OK(graft_model_predict(again, x, n, back));
        double e;
        max_err(back, y, n * ys, &e);
        CHECK_MSG(e <= tol, "%s: graft's reading back differs by %.3g", label, e);
        graft_model_free(again);
    }

    if (have_tfjs) {
        char in[512], out[512];
        snprintf(in, sizeof in, "%s.in", dir);
        snprintf(out, sizeof out, "%s.out", dir);
        CHECK(write_bytes(in, x, n * xs * sizeof *x) == 0);
        char reply[2048];
        bool ran = oracle_ask(&tfjs, reply, sizeof reply, "%s %s %s %d,%d,%d,%d", dir, in, out,
                              n, is.dim[0], is.dim[1], is.dim[2]) &&
                   oracle_ok(reply);
        CHECK_MSG(ran, "%s: TF.js could not load or run the export: %s", label, reply);
        size_t got_n = 0;
        float *got = (float *)read_bytes(out, &got_n);
        CHECK(got && got_n == n * ys * sizeof(float));
        if (got && got_n == n * ys * sizeof(float)) {
            double e;
            max_err(got, y, n * ys, &e);
            printf("# %-24s max |TF.js - graft| / max |graft| = %.2e (first output %.5f)\n", label, e, y[0]);
            worst[q] = fmax(worst[q], e);
            CHECK_MSG(e <= tol, "%s: TF.js differs from graft by %.3g of the range (tolerance %g)", label, e, tol);
        }
        free(got);
        remove(in);
        remove(out);
    }
    free(x);
    free(y);
    free(back);
}

static void test_scratch_cnn(void)
{
    graft_model *m = scratch_cnn();
    CHECK_OK(graft_model_init_weights(m, 2));
    check_tfjs(m, "scratch", GRAFT_QUANT_NONE, 0, 1e-4);
    /* Small shards: the weights span several files, one tensor across two. */
    check_tfjs(m, "scratch_shards", GRAFT_QUANT_NONE, 10000, 1e-4);
    check_tfjs(m, "scratch_f16", GRAFT_QUANT_FLOAT16, 0, 1e-3);
    check_tfjs(m, "scratch_u8", GRAFT_QUANT_UINT8, 0, 1e-2);
    graft_model_free(m);
}

static void test_mobilenet_v2_head(void)
{
    graft_model *m = mobilenet_v2_head();
    if (!m) return;
    check_tfjs(m, "mnv2", GRAFT_QUANT_NONE, 0, 1e-4);
    check_tfjs(m, "mnv2_f16", GRAFT_QUANT_FLOAT16, 0, 1e-2);
    graft_model_free(m);
}

/* A model graft read from a TF.js file, written again: the same weights. */
static void test_round_trip_file(void)
{
    const char *file = "../shared/models/teachable_machine_mobilenet_v2_0.35/model.json";
    if (access(file, R_OK) != 0) {
        printf("# skip: %s is absent\n", file);
        return;
    }
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(file, &m));
    if (m) check_tfjs(m, "teachable_machine", GRAFT_QUANT_NONE, 0, 1e-4);
    graft_model_free(m);
}

static void test_errors(void)
{
    graft_model *m = scratch_cnn();
    char file[256];
    snprintf(file, sizeof file, "%s/a_file", tmp);
    CHECK(write_bytes(file, "x", 1) == 0);
    CHECK(graft_export_tfjs(m, file, NULL) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "a_file") != NULL);
    CHECK(graft_export_web(m, path_in(tmp, "web"), NULL, "/nonexistent/tf.min.js") == GRAFT_ENOTFOUND);
    CHECK(strstr(graft_last_error(), "/nonexistent/tf.min.js") != NULL);
    CHECK(graft_export_tfjs(m, path_in(tmp, "q"), &(graft_tfjs_opts){.quantize = 7}) == GRAFT_EINVAL);
    graft_model_free(m);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/graft_tfjs_XXXXXX");
    if (make_tmpdir(tmp) != 0) return 1;
    have_tfjs =
        oracle_start_or_skip(&tfjs, (char *[]){"node", "tests/js/tfjs_run.js", "--serve", NULL},
                             "TF.js (node, js/node_modules/@tensorflow/tfjs)");
    graft_threads_set(2);
    RUN(test_errors);
    RUN(test_scratch_cnn);
    RUN(test_mobilenet_v2_head);
    RUN(test_round_trip_file);
    printf("# worst TF.js difference: float32 %.2e, float16 %.2e, uint8 %.2e of the output range\n", worst[0],
           worst[2], worst[1]);
    oracle_stop(&tfjs);
    return CHECK_SUMMARY();
}
