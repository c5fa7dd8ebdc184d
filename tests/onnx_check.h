/* What the ONNX export tests share (tests/test_export_onnx*.c): the oracles
 * (the ONNX checker from python3-onnx, ONNX Runtime and TF.js under Node;
 * one process each for the suite, tests/oracle.h; each skipped with a note
 * where absent), weights moved off their initial values, and check_model,
 * which exports a model, has the checker accept it and compares ONNX
 * Runtime's outputs with graft's. Included once per test. */
#ifndef GRAFT_TESTS_ONNX_CHECK_H
#define GRAFT_TESTS_ONNX_CHECK_H

#include "check.h"
#include "oracle.h"
#include "test_util.h"

#include "graft.h"
#include "internal.h"

#include <stdlib.h>

static char tmp[64];
static bool have_checker, have_ort, have_tfjs __attribute__((unused));
/* over every comparison checked, for the summary (TF.js: where a test runs it) */
static double worst_err, worst_tfjs __attribute__((unused));

#define TOL 1e-4

static oracle checker, ort, tfjs __attribute__((unused));

static void stop_oracles(void)
{
    oracle_stop(&checker);
    oracle_stop(&ort);
    oracle_stop(&tfjs);
}

/* Starts the oracles this machine has, once for the suite. */
static void probe_oracles(void)
{
    have_tfjs =
        oracle_start_or_skip(&tfjs, (char *[]){"node", "tests/js/tfjs_run.js", "--serve", NULL},
                             "TF.js (node, js/node_modules/@tensorflow/tfjs)");
    have_checker = oracle_start_or_skip(
        &checker, (char *[]){"/usr/bin/python3", "tests/onnx_checker.py", NULL},
        "the ONNX checker (python3-onnx)");
    have_ort =
        oracle_start_or_skip(&ort, (char *[]){"node", "tests/js/ort_run.js", "--serve", NULL},
                             "ONNX Runtime (node, js/node_modules/onnxruntime-node)");
    atexit(stop_oracles);
}

/* BatchNormalization statistics and biases away from their initial values,
 * so that folding and the per-channel transforms are really tested. */
static void perturb(graft_model *m, uint64_t seed)
{
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            const char *w = graft_layer_weight_name(l, k);
            graft_shape s = graft_layer_weight_shape(l, k);
            float *d = graft_layer_weight_data(l, k);
            size_t n = graft_shape_size(&s);
            bool var =
                !strcmp(w, "moving_variance") || !strcmp(w, "gamma") || !strcmp(w, "variance");
            bool shift = !strcmp(w, "moving_mean") || !strcmp(w, "beta") || !strcmp(w, "bias") ||
                         !strcmp(w, "alpha") || !strcmp(w, "mean");
            for (size_t j = 0; j < n && (var || shift); j++)
                d[j] = var ? 0.5f + graft_rng_uniform(&r) : 0.4f * (graft_rng_uniform(&r) - 0.5f);
        }
    }
}

/* Whether the ONNX checker accepts the file (its message printed where not). */
static bool checker_accepts(const char *path)
{
    char reply[2048];
    bool ok = oracle_ask(&checker, reply, sizeof reply, "%s", path) && oracle_ok(reply);
    if (!ok) printf("# the ONNX checker on %s: %s\n", path, reply);
    return ok;
}

/* Exports m with o, checks it and compares ONNX Runtime with graft on n
 * random inputs (0..255 when the preprocessing is included). */
static void check_model(graft_model *m, const char *label, const graft_onnx_opts *o, int n)
{
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t xs = graft_shape_size(&is), ys = graft_shape_size(&os);
    float *x = malloc((size_t)n * xs * sizeof *x), *xin = malloc((size_t)n * xs * sizeof *x),
          *y = malloc((size_t)n * ys * sizeof *y);
    CHECK(x && xin && y);
    if (!x || !xin || !y) goto done;
    graft_rng r;
    graft_rng_seed(&r, 7);
    for (size_t i = 0; i < (size_t)n * xs; i++)
        x[i] = o->include_preprocessing ? floorf(256.0f * graft_rng_uniform(&r))
                                        : 2.0f * graft_rng_uniform(&r) - 1.0f;
    memcpy(xin, x, (size_t)n * xs * sizeof *x);
    if (o->include_preprocessing) {
        if (!strcmp(o->meta.preprocess, "rescale"))
            for (size_t i = 0; i < (size_t)n * xs; i++)
                x[i] /= 255.0f;
        else
            CHECK_OK(graft_preprocess_input(o->meta.preprocess, x, (size_t)n * xs / 3));
    }
    CHECK_OK(graft_model_predict(m, x, n, y));

    char path[256], in[256], out[256];
    snprintf(path, sizeof path, "%s/%s.onnx", tmp, label);
    snprintf(in, sizeof in, "%s/%s.in", tmp, label);
    snprintf(out, sizeof out, "%s/%s.out", tmp, label);
    graft_status s = graft_export_onnx(m, path, o);
    CHECK_MSG(s == GRAFT_OK, "%s: %s", label, graft_last_error());
    if (s != GRAFT_OK) goto done;
    if (have_checker) CHECK_MSG(checker_accepts(path), "%s: the ONNX checker refused it", label);
    if (!have_ort) goto done;

    /* The input as the export takes it. */
    int dims[5] = {n, is.dim[0], is.dim[1], is.dim[2], 0}, rank = is.rank + 1;
    if (o->nchw && is.rank == 3) {
        int H = is.dim[0], W = is.dim[1], C = is.dim[2];
        float *t = malloc((size_t)n * xs * sizeof *t);
        CHECK(t != NULL);
        if (!t) goto done;
        for (int b = 0; b < n; b++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    for (int c = 0; c < C; c++)
                        t[(((size_t)b * C + c) * H + h) * W + w] =
                            xin[(((size_t)b * H + h) * W + w) * C + c];
        memcpy(xin, t, (size_t)n * xs * sizeof *t);
        free(t);
        dims[1] = C;
        dims[2] = H;
        dims[3] = W;
    }
    CHECK(write_bytes(in, xin, (size_t)n * xs * sizeof *xin) == 0);
    char shape[64] = "";
    for (int d = 0; d < rank; d++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), d ? ",%d" : "%d", dims[d]);
    char reply[2048];
    bool ran = oracle_ask(&ort, reply, sizeof reply, "%s %s %s %s", path, in, out, shape) &&
               oracle_ok(reply);
    CHECK_MSG(ran, "%s: ONNX Runtime failed on the export: %s", label, reply);
    size_t got_bytes = 0;
    float *got = (float *)read_bytes(out, &got_bytes);
    CHECK_MSG(got && got_bytes == (size_t)n * ys * sizeof(float),
              "%s: %zu output bytes, wanted %zu", label, got_bytes, (size_t)n * ys * sizeof(float));
    if (got && got_bytes == (size_t)n * ys * sizeof(float)) {
        double range = 0, err = 0;
        for (size_t i = 0; i < (size_t)n * ys; i++)
            range = fmax(range, fabs(y[i]));
        for (size_t i = 0; i < (size_t)n * ys; i++)
            err = fmax(err, fabs(got[i] - y[i]));
        err /= range > 0 ? range : 1;
        printf("# %-28s max |ORT - graft| / max |graft| = %.2e\n", label, err);
        worst_err = fmax(worst_err, err);
        CHECK_MSG(err <= TOL, "%s: ONNX Runtime differs from graft by %.3g of the output range",
                  label, err);
    }
    free(got);
    remove(in);
    remove(out);
done:
    remove(path);
    free(x);
    free(xin);
    free(y);
}

#endif
