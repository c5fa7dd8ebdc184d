/* ONNX export of an int8 run (graft_onnx_opts.int8, src/export/onnx_int8.c):
 * for MobileNet, MobileNetV2 and ResNet50 (64x64, random weights,
 * BatchNormalization statistics drawn away from their initial values)
 * quantized on a few random images, the QDQ file passes the ONNX checker
 * and ONNX Runtime (all optimisations: its fused int8 kernels) runs the same
 * quantized model as graft; the head after the run stays float; a model
 * without an int8 run is refused. Each oracle is skipped, with a note, where
 * absent.
 *
 * The one thing the QDQ form cannot carry is graft's bias: graft adds it in
 * float in the accumulator's units, QLinearConv as an int32, so the export
 * rounds it (by at most half a unit of s_in * s_w, a few thousandths of an
 * output step). A value that close to the middle between two steps rounds
 * the other way: one step, on a few values of a layer (MobileNetV2: one
 * step on 8% of its outputs here). The layers after read such a step and a
 * deep network spreads it: each input step moves many sums a little, and
 * ResNet50's residual Adds carry every block's steps on to the next (up to
 * 7 steps on 40% of its outputs here). Hence two checks:
 *  - exact: with graft's biases first put on that int32 grid, ONNX Runtime
 *    gives graft's int8 outputs to at most one step (of the run's output
 *    scale) on at most 1% of the values. 0 steps on MobileNet and
 *    MobileNetV2 here. ResNet50 is taken up to conv2_block3_out (the stem,
 *    the padded max pool, a block with a convolution shortcut, two identity
 *    blocks; 1 step on 0.05% here): ONNX Runtime fuses no convolution that
 *    ends in an Add into its int8 kernels and runs those 16 in float (FusedConv),
 *    whose float sums differ from int32 ones in their last bits, and from
 *    one such step a whole ResNet50 grows to 6 steps on 13% of its outputs.
 *  - as exported, the whole base: ONNX Runtime no further from graft's int8
 *    than twice graft's own int8 error (against graft's float), and at most
 *    a tenth as far as from another model's int8 outputs.
 * A Q scale 1% off, or a bias scale 2% off, fails the exact check on all
 * three bases (3 to 6 steps on 22% to 40% of the values).
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "onnx_check.h"
#include "quant/int8.h"

#define EXACT_STEPS 1.0
#define EXACT_OFF 0.01

static graft_model *base(const char *arch, float alpha, uint64_t seed)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = alpha;
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 64;
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build(arch, &c, &m));
    if (m) CHECK_OK(graft_model_init_weights(m, seed));
    if (m) perturb(m, seed);
    return m;
}

static float *random_images(int n, size_t each, uint64_t seed)
{
    graft_rng r;
    graft_rng_seed(&r, seed);
    float *x = malloc((size_t)n * each * sizeof *x);
    for (size_t i = 0; x && i < (size_t)n * each; i++)
        x[i] = 2.0f * graft_rng_uniform(&r) - 1.0f;
    return x;
}

/* ONNX Runtime's output of the model at `path` on n inputs x (NHWC), or
 * NULL (a failed check). */
static float *ort_outputs(const char *path, const float *x, int n, const graft_shape *is, size_t ys)
{
    char in[256], out[256], reply[2048], shape[64];
    snprintf(in, sizeof in, "%s.in", path);
    snprintf(out, sizeof out, "%s.out", path);
    snprintf(shape, sizeof shape, "%d,%d,%d,%d", n, is->dim[0], is->dim[1], is->dim[2]);
    CHECK(write_bytes(in, x, (size_t)n * graft_shape_size(is) * sizeof *x) == 0);
    bool ran = oracle_ask(&ort, reply, sizeof reply, "%s %s %s %s", path, in, out, shape) &&
               oracle_ok(reply);
    CHECK_MSG(ran, "%s: ONNX Runtime failed on the export: %s", path, reply);
    size_t got_bytes = 0;
    float *got = ran ? (float *)read_bytes(out, &got_bytes) : NULL;
    CHECK_MSG(!ran || (got && got_bytes == ys * sizeof(float)), "%s: %zu output bytes, wanted %zu",
              path, got_bytes, ys * sizeof(float));
    if (got && got_bytes != ys * sizeof(float)) {
        free(got);
        got = NULL;
    }
    remove(in);
    remove(out);
    return got;
}

static double rms_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

/* Puts every bias of m's int8 run on the int32 grid the export rounds it
 * to. graft_int8_step_at hands out the run's own arrays, which the 8-bit
 * primitives read when a first 8-bit forward builds them: call this right
 * after graft_model_quantize_int8. */
static void biases_on_grid(graft_model *m)
{
    graft_int8_step c;
    for (int k = 0; k < graft_int8_steps(m->int8); k++) {
        graft_int8_step_at(m->int8, k, &c);
        if (c.kind == GRAFT_INT8_MAX_POOL) continue;
        float s_in;
        bool u8;
        CHECK(graft_int8_tensor(m->int8, c.in, &s_in, &u8));
        float *bias = (float *)c.bias;
        for (int o = 0; o < c.filters; o++) {
            float unit = s_in * c.scale[o];
            bias[o] = (float)(nearbyint((double)bias[o] / unit) * unit);
        }
    }
}

/* m (quantized) exported, checked and run by ONNX Runtime on x: its
 * outputs, or NULL. */
static float *export_and_run(graft_model *m, const char *label, const float *x, int n, size_t ys)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s.onnx", tmp, label);
    graft_status s = graft_export_onnx(m, path, &(graft_onnx_opts){.int8 = 1});
    CHECK_MSG(s == GRAFT_OK, "%s: %s", label, graft_last_error());
    if (s != GRAFT_OK) return NULL;
    if (have_checker)
        CHECK_MSG(checker_accepts(path), "%s: the ONNX checker refused the QDQ export", label);
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    float *got = have_ort ? ort_outputs(path, x, n, &is, ys) : NULL;
    remove(path);
    return got;
}

/* With graft's biases on the int32 grid, ONNX Runtime gives graft's int8
 * outputs (the model up to layer `until`, NULL: whole). */
static void check_exact(const char *arch, float alpha, const char *until)
{
    graft_model *m = base(arch, alpha, 11);
    if (!m) return;
    for (int i = 0; until && i < m->n_layers; i++)
        if (!strcmp(m->layers[i]->name, until)) CHECK_OK(graft_model_set_output(m, m->layers[i]));
    CHECK(!until || !strcmp(graft_model_output(m)->name, until));
    const int n = 3, n_calib = 4;
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t xs = graft_shape_size(&is), ys = (size_t)n * graft_shape_size(&os);
    float *calib = random_images(n_calib, xs, 5), *x = random_images(n, xs, 6),
          *y = malloc(ys * sizeof *y);
    float *got = NULL;
    CHECK(calib && x && y);
    if (!calib || !x || !y) goto done;
    CHECK_OK(graft_model_quantize_int8(m, calib, n_calib));
    CHECK_MSG(graft_int8_output_layer(m->int8) == graft_model_output_index(m),
              "%s: the run does not end at the output", arch);
    biases_on_grid(m);
    CHECK_OK(graft_model_predict(m, x, n, y));
    float step;
    bool u8;
    CHECK(graft_int8_tensor(m->int8, graft_int8_output_layer(m->int8), &step, &u8));
    got = export_and_run(m, arch, x, n, ys);
    if (got) {
        double worst = 0;
        size_t off = 0;
        for (size_t i = 0; i < ys; i++) {
            double d = nearbyint(fabs((double)got[i] - y[i]) / step); /* whole steps */
            worst = fmax(worst, d);
            off += d > 0;
        }
        printf("# %-13s up to %s, biases on the grid: ORT - graft int8 at most %.0f steps, on "
               "%.3f%% of values\n",
               arch, graft_model_output(m)->name, worst, 100.0 * (double)off / (double)ys);
        worst_err = fmax(worst_err, worst);
        CHECK_MSG(worst <= EXACT_STEPS, "%s: ONNX Runtime differs from graft's int8 by %.0f steps",
                  arch, worst);
        CHECK_MSG((double)off <= EXACT_OFF * (double)ys, "%s: %zu of %zu values differ by a step",
                  arch, off, ys);
    }
done:
    free(got);
    free(calib);
    free(x);
    free(y);
    graft_model_free(m);
}

/* As exported (biases rounded to int32), the whole base. */
static void check_as_exported(const char *arch, float alpha)
{
    graft_model *m = base(arch, alpha, 11), *other = base(arch, alpha, 12);
    if (!m || !other) goto done0;
    const int n = 3, n_calib = 4;
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t xs = graft_shape_size(&is), ys = (size_t)n * graft_shape_size(&os);
    float *calib = random_images(n_calib, xs, 5), *x = random_images(n, xs, 6);
    float *yf = malloc(ys * sizeof *yf), *y = malloc(ys * sizeof *y),
          *y_other = malloc(ys * sizeof *y);
    float *got = NULL;
    CHECK(calib && x && yf && y && y_other);
    if (!calib || !x || !yf || !y || !y_other) goto done;
    CHECK_OK(graft_model_predict(m, x, n, yf));
    CHECK_OK(graft_model_quantize_int8(other, calib, n_calib));
    CHECK_OK(graft_model_predict(other, x, n, y_other));
    CHECK_OK(graft_model_quantize_int8(m, calib, n_calib));
    CHECK_MSG(graft_model_int8_layers(m, NULL) == m->n_layers - 1,
              "%s: the whole base is not in 8 bits", arch);
    CHECK_OK(graft_model_predict(m, x, n, y));
    got = export_and_run(m, arch, x, n, ys);
    if (got) {
        double near = rms_diff(got, y, ys), far = rms_diff(got, y_other, ys),
               int8_err = rms_diff(y, yf, ys);
        printf("# %-13s as exported: rms ORT - graft int8 %.3g, graft int8 - float %.3g, ORT - "
               "another "
               "model's int8 %.3g\n",
               arch, near, int8_err, far);
        CHECK_MSG(near <= 2 * int8_err,
                  "%s: ONNX Runtime is %.3g from graft's int8, graft's int8 %.3g from float", arch,
                  near, int8_err);
        CHECK_MSG(near < 0.1 * far,
                  "%s: ONNX Runtime is not much closer to this model (%.3g) than to another (%.3g)",
                  arch, near, far);
    }
done:
    free(got);
    free(calib);
    free(x);
    free(yf);
    free(y);
    free(y_other);
done0:
    graft_model_free(m);
    graft_model_free(other);
}

static void test_mobilenet(void)
{
    check_exact("mobilenet", 0.25f, NULL);
    check_as_exported("mobilenet", 0.25f);
}
static void test_mobilenet_v2(void)
{
    check_exact("mobilenet_v2", 0.35f, NULL);
    check_as_exported("mobilenet_v2", 0.35f);
}
static void test_resnet50(void)
{
    check_exact("resnet50", 0, "conv2_block3_out");
    check_as_exported("resnet50", 0);
}
/* The QDQ form: every convolution's kernel an int8 initializer behind a
 * per-channel DequantizeLinear, its bias int32, no BatchNormalization; the
 * head (GlobalAveragePooling2D, Dense) in float after the run, with the
 * preprocessing in the graph. */
static void test_graph_and_head(void)
{
    graft_model *m = base("mobilenet", 0.25f, 3);
    if (!m) return;
    /* The float export of the same model is untouched by the int8 one. */
    check_model(m, "mobilenet_float", &(graft_onnx_opts){0}, 2);
    graft_layer *h = graft_global_average_pooling2d(m, NULL, NULL);
    graft_dense(m, h, (graft_dense_cfg){.units = 2, .activation = GRAFT_SOFTMAX});
    CHECK_OK(graft_model_init_weights(m, 3));
    perturb(m, 3);
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    size_t xs = graft_shape_size(&is);
    const int n = 3;
    float *x = random_images(n, xs, 8), *pix = malloc((size_t)n * xs * sizeof *pix), y[6];
    CHECK(x && pix);
    if (!x || !pix) goto done;
    for (size_t i = 0; i < (size_t)n * xs; i++)
        pix[i] = floorf(127.5f * (x[i] + 1.0f));
    memcpy(x, pix, (size_t)n * xs * sizeof *x);
    CHECK_OK(graft_preprocess_input("mobilenet", x, (size_t)n * xs / 3));
    CHECK_OK(graft_model_quantize_int8(m, x, n));
    CHECK_OK(graft_model_predict(m, x, n, y));
    char path[256], cmd[1024];
    snprintf(path, sizeof path, "%s/head_int8.onnx", tmp);
    graft_onnx_opts o = {
        .int8 = 1, .include_preprocessing = 1, .meta = {.preprocess = "mobilenet"}};
    CHECK_OK(graft_export_onnx(m, path, &o));
    if (have_checker) {
        CHECK(checker_accepts(path));
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import onnx,sys; g=onnx.load(sys.argv[1]).graph; "
                 "ops=[n.op_type for n in g.node]; inits={i.name: i for i in g.initializer}; "
                 "convs=[n for n in g.node if n.op_type=='Conv']; "
                 "assert 'BatchNormalization' not in ops, ops; "
                 "assert len(convs)==27, len(convs); "
                 "dq={n.output[0]: n for n in g.node if n.op_type=='DequantizeLinear'}; "
                 "assert all(inits[dq[c.input[1]].input[0]].data_type==3 and "
                 "inits[dq[c.input[2]].input[0]].data_type==6 and "
                 "dq[c.input[1]].attribute[0].i==0 for c in convs); "
                 "assert ops.count('QuantizeLinear')==28, ops.count('QuantizeLinear'); "
                 "assert 'Gemm' in ops and ops[-2:]==['Softmax','Identity'], ops[-6:]; "
                 "p={e.key: e.value for e in onnx.load(sys.argv[1]).metadata_props}; "
                 "assert p['quantization'].startswith('int8 QDQ'), p\" %s",
                 path);
        CHECK_MSG(system(cmd) == 0, "the QDQ graph is not as described");
    }
    if (have_ort) {
        float *got = ort_outputs(path, pix, n, &is, (size_t)n * 2);
        double d = 0;
        for (int i = 0; got && i < n * 2; i++)
            d = fmax(d, fabs((double)got[i] - y[i]));
        if (got) printf("# %-13s ORT - graft int8 probabilities: %.2g\n", "mobilenet+head", d);
        /* Softmax over two logits of a float head reading the 8-bit run's
         * output: a step there moves a probability by a few thousandths. */
        CHECK_MSG(!got || d < 0.02, "with a head: ONNX Runtime differs from graft's int8 by %.3g",
                  d);
        free(got);
    }
    remove(path);
done:
    free(x);
    free(pix);
    graft_model_free(m);
}

/* No int8 run, or one the weights have moved away from: refused. */
static void test_refused(void)
{
    graft_model *m = base("mobilenet", 0.25f, 4);
    if (!m) return;
    char path[256];
    snprintf(path, sizeof path, "%s/none.onnx", tmp);
    graft_status s = graft_export_onnx(m, path, &(graft_onnx_opts){.int8 = 1});
    CHECK(s == GRAFT_ESTATE);
    CHECK_MSG(strstr(graft_last_error(), "holds no int8 run") &&
                  strstr(graft_last_error(), "mobilenet"),
              "%s", graft_last_error());
    CHECK(access(path, F_OK) != 0);
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    float *x = random_images(2, graft_shape_size(&is), 9);
    CHECK_OK(graft_model_quantize_int8(m, x, 2));
    s = graft_export_onnx(m, path, &(graft_onnx_opts){.int8 = 1, .opset = 12});
    CHECK(s == GRAFT_EINVAL && strstr(graft_last_error(), "opset 12"));
    CHECK_OK(graft_model_init_weights(m, 5)); /* drops the run */
    CHECK(graft_export_onnx(m, path, &(graft_onnx_opts){.int8 = 1}) == GRAFT_ESTATE);
    CHECK(access(path, F_OK) != 0);
    free(x);
    graft_model_free(m);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/graft_onnx8_XXXXXX");
    if (make_tmpdir(tmp) != 0) return 1;
    probe_oracles();
    graft_threads_set(2);
    RUN(test_refused);
    RUN(test_graph_and_head);
    RUN(test_mobilenet);
    RUN(test_mobilenet_v2);
    RUN(test_resnet50);
    printf("# worst ONNX Runtime difference from graft's int8 (biases on the grid): %.0f steps\n",
           worst_err);
    return CHECK_SUMMARY();
}
