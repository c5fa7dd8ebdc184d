/* ONNX export (src/export/onnx*.c), checked by the real consumers: the ONNX
 * checker (Debian's python3-onnx, full_check with shape inference) accepts
 * every file, and ONNX Runtime (onnxruntime-node, tests/js/ort_run.js) gives
 * graft's outputs to 1e-4 of the output's range on fixed random inputs. Each
 * oracle is skipped, with a note, where it is not installed.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "onnx_check.h"


static graft_model *zoo(const char *arch, float alpha, int size, int top, uint64_t seed)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = alpha;
    c.include_top = top;
    c.classes = 10;
    c.input_shape[0] = c.input_shape[1] = size;
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build(arch, &c, &m));
    if (m) perturb(m, seed);
    return m;
}

static void zoo_case(const char *arch, float alpha, int size)
{
    for (int top = 0; top <= 1; top++) {
        graft_model *m = zoo(arch, alpha, size, top, 11);
        char label[64];
        snprintf(label, sizeof label, "%s_%s", arch, top ? "top" : "notop");
        if (m) check_model(m, label, &(graft_onnx_opts){0}, 2);
        graft_model_free(m);
    }
}

/* Every BatchNormalization of MobileNet follows a linear convolution: all
 * fold; the only transposes are the input's and the (4-D) output's. */
static void test_mobilenet(void)
{
    zoo_case("mobilenet", 0.25f, 64);
    graft_model *m = zoo("mobilenet", 0.25f, 64, 0, 2);
    char path[256], cmd[1024];
    snprintf(path, sizeof path, "%s/folded.onnx", tmp);
    CHECK_OK(graft_export_onnx(m, path, NULL));
    if (have_checker) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import onnx,sys; g=onnx.load(sys.argv[1]).graph; "
                 "ops=[n.op_type for n in g.node]; "
                 "assert 'Mul' not in ops and 'BatchNormalization' not in ops, ops; "
                 "assert ops.count('Transpose')==2, ops\" %s",
                 path);
        CHECK_MSG(system(cmd) == 0, "BatchNormalization left unfolded, or extra transposes");
    }
    remove(path);
    graft_model_free(m);
}
static void test_mobilenet_v2(void) { zoo_case("mobilenet_v2", 0.35f, 64); }
static void test_resnet50(void) { zoo_case("resnet50", 0, 32); }
static void test_vgg16(void) { zoo_case("vgg16", 0, 32); }

/* The lesson's model: MobileNet without top, GlobalAveragePooling2D,
 * Dense(1024, relu), Dense(1, sigmoid); preprocessing in the graph, a fixed
 * batch, class names in the metadata. */
static void test_lesson_head(void)
{
    graft_model *m = zoo("mobilenet", 0.25f, 64, 0, 3);
    if (!m) return;
    graft_layer *x = graft_global_average_pooling2d(m, NULL, NULL);
    x = graft_dense(m, x, (graft_dense_cfg){.units = 1024, .activation = GRAFT_RELU});
    graft_layer *top = graft_dense(m, x, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    CHECK_OK(graft_model_init_weights(m, 5));
    perturb(m, 4);
    /* A sigmoid away from saturation, where a difference would show. */
    float *k = graft_layer_weight_data(top, 0);
    for (int i = 0; i < 1024; i++) k[i] *= 0.02f;
    const char *classes[] = {"cats", "dogs"};
    graft_onnx_opts o = {.batch = 3, .include_preprocessing = 1,
                         .meta = {.classes = classes, .n_classes = 2, .preprocess = "mobilenet"}};
    check_model(m, "lesson_head", &o, 3);

    /* The metadata as ONNX tools read it. */
    if (have_checker) {
        char path[256], cmd[1024];
        snprintf(path, sizeof path, "%s/meta.onnx", tmp);
        CHECK_OK(graft_export_onnx(m, path, &o));
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import onnx,sys,json; m=onnx.load(sys.argv[1]); "
                 "p={e.key: e.value for e in m.metadata_props}; "
                 "assert json.loads(p['classes'])==['cats','dogs'], p; "
                 "assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_value==3; "
                 "assert m.producer_name=='graft'\" %s",
                 path);
        CHECK_MSG(system(cmd) == 0, "metadata_props, batch or producer wrong");
        remove(path);
    }
    graft_model_free(m);
}

/* The lesson's CNN from scratch (tools/run.c's scratch_cnn), inputs NCHW. */
static void test_scratch_cnn(void)
{
    graft_model *m = graft_model_new("scratch_cnn");
    graft_input(m, "input_1", graft_shape3(40, 40, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 64, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 128, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3, .activation = GRAFT_SOFTMAX});
    CHECK_OK(graft_model_status(m));
    perturb(m, 9);
    check_model(m, "scratch_cnn", &(graft_onnx_opts){0}, 2);
    check_model(m, "scratch_cnn_nchw", &(graft_onnx_opts){.nchw = 1, .opset = 11}, 2);
    check_model(m, "scratch_cnn_rescale",
                &(graft_onnx_opts){.nchw = 1, .opset = 17, .include_preprocessing = 1,
                                   .meta = {.preprocess = "rescale"}},
                2);
    graft_model_free(m);
}

/* Every remaining option: odd sizes with 'same' padding and strides (the
 * odd cell after), BatchNormalization that cannot fold (after an activation,
 * after Dense, read twice), ReLU with slope, threshold and cap, softmax over
 * channels of an image, Add of three, Reshape, GlobalMaxPooling2D,
 * AveragePooling2D 'same' (padded cells not counted), caffe preprocessing
 * (a channel swap) in the graph. */
static void test_all_kinds(void)
{
    graft_model *m = graft_model_new("kinds");
    graft_layer *in = graft_input(m, "img", graft_shape3(13, 11, 3));
    graft_layer *a = graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 8, .kernel_size = {3, 3}, .strides = {2, 2},
                                                            .padding = GRAFT_SAME});
    graft_layer *b = graft_batch_norm(m, a, (graft_batch_norm_cfg){0}); /* folds */
    graft_layer *c = graft_relu(m, b, (graft_relu_cfg){.max_value = 1.5f, .negative_slope = 0.1f, .threshold = 0.2f});
    graft_layer *d = graft_depthwise_conv2d(m, c, (graft_depthwise_conv2d_cfg){.kernel_size = {3, 3},
                                                                               .padding = GRAFT_SAME,
                                                                               .depth_multiplier = 2,
                                                                               .activation = GRAFT_RELU6});
    graft_layer *e = graft_batch_norm(m, d, (graft_batch_norm_cfg){0}); /* after an activation: not folded */
    graft_layer *f = graft_conv2d(m, e, (graft_conv2d_cfg){.filters = 16, .kernel_size = {1, 1}, .no_bias = 1});
    graft_layer *g = graft_conv2d(m, e, (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3},
                                                           .padding = GRAFT_SAME, .activation = GRAFT_TANH});
    graft_layer *h = graft_zero_padding2d(m, e, NULL, 1, 0, 2, 1);
    h = graft_conv2d(m, h, (graft_conv2d_cfg){.filters = 16, .kernel_size = {2, 4}});
    graft_layer *sum = graft_add(m, NULL, 3, (graft_layer *[]){f, g, h});
    graft_layer *sm = graft_activation_layer(m, sum, NULL, GRAFT_SOFTMAX);
    graft_layer *p = graft_average_pooling2d(m, sm, (graft_pool2d_cfg){.pool_size = {3, 3}, .strides = {2, 2},
                                                                        .padding = GRAFT_SAME});
    graft_layer *q = graft_max_pooling2d(m, p, (graft_pool2d_cfg){.pool_size = {2, 2}, .strides = {1, 1},
                                                                   .padding = GRAFT_SAME});
    graft_layer *lk = graft_relu(m, q, (graft_relu_cfg){.negative_slope = 0.3f});
    graft_layer *gm = graft_global_max_pooling2d(m, lk, NULL);
    graft_layer *rs = graft_reshape(m, gm, NULL, graft_shape3(2, 2, 4));
    rs = graft_conv2d(m, rs, (graft_conv2d_cfg){.filters = 5, .kernel_size = {2, 2}, .padding = GRAFT_SAME,
                                                .activation = GRAFT_SIGMOID});
    graft_layer *fl = graft_flatten(m, rs, NULL);
    graft_layer *dn = graft_dense(m, fl, (graft_dense_cfg){.units = 6, .activation = GRAFT_RELU});
    dn = graft_batch_norm(m, dn, (graft_batch_norm_cfg){.epsilon = 0.01f});
    dn = graft_dropout(m, dn, NULL, 0.5f);
    graft_activation_layer(m, dn, NULL, GRAFT_SOFTMAX);
    CHECK_OK(graft_model_status(m));
    perturb(m, 21);
    check_model(m, "kinds", &(graft_onnx_opts){0}, 3);
    check_model(m, "kinds_nchw_caffe",
                &(graft_onnx_opts){.nchw = 1, .include_preprocessing = 1, .meta = {.preprocess = "vgg16"}}, 2);
    graft_model_free(m);

    /* Output a rank-3 tensor, with a ReLU and a BatchNormalization read twice. */
    m = graft_model_new("image_out");
    in = graft_input(m, "img", graft_shape3(9, 7, 2));
    a = graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 4, .kernel_size = {3, 3}, .padding = GRAFT_SAME});
    b = graft_relu(m, a, (graft_relu_cfg){.max_value = 6});
    c = graft_batch_norm(m, b, (graft_batch_norm_cfg){0});
    d = graft_add(m, NULL, 2, (graft_layer *[]){c, c});
    CHECK_OK(graft_model_status(m));
    perturb(m, 5);
    check_model(m, "image_out", &(graft_onnx_opts){.opset = 15}, 2);
    graft_model_free(m);
}

/* MobileNet v1 and Teachable Machine's MobileNetV2 as read from TF.js files. */
static void test_from_tfjs(void)
{
    const char *files[][2] = {
        {"../shared/models/teachable_machine_mobilenet_v2_0.35/model.json", "tm_mobilenet_v2"},
        {"../shared/models/mobilenet_v1_0.75_224/model.json", "tfjs_mobilenet_v1"}};
    for (int i = 0; i < 2; i++) {
        if (access(files[i][0], R_OK) != 0) {
            printf("# skip: %s is absent\n", files[i][0]);
            continue;
        }
        graft_model *m = NULL;
        CHECK_OK(graft_model_load(files[i][0], &m));
        if (m) check_model(m, files[i][1], &(graft_onnx_opts){0}, 2);
        graft_model_free(m);
    }
}

/* A layer kind without a converter: refused, naming the layer and its class. */
static graft_status mystery_build(graft_layer *l, const graft_shape *in)
{
    l->out_shape = in[0];
    return GRAFT_OK;
}
static void mystery_forward(graft_layer *l, const graft_fwd *f) { (void)l, (void)f; }
static void mystery_backward(graft_layer *l, const graft_bwd *b) { (void)l, (void)b; }
static const graft_layer_ops mystery_ops = {
    .class_name = "Mystery", .build = mystery_build, .forward = mystery_forward, .backward = mystery_backward};

static void test_errors(void)
{
    graft_model *m = graft_model_new("odd");
    graft_layer *in = graft_input(m, "x", graft_shape3(4, 4, 3));
    graft_model_add_unary(m, &mystery_ops, "riddle", "mystery", NULL, 0, in);
    CHECK_OK(graft_model_status(m));
    char path[256];
    snprintf(path, sizeof path, "%s/odd.onnx", tmp);
    graft_status s = graft_export_onnx(m, path, NULL);
    CHECK(s == GRAFT_EUNSUPPORTED);
    CHECK_MSG(strstr(graft_last_error(), "'riddle'") && strstr(graft_last_error(), "Mystery"), "%s",
              graft_last_error());
    CHECK(access(path, F_OK) != 0); /* nothing half-written */
    CHECK(graft_export_onnx(m, path, &(graft_onnx_opts){.opset = 9}) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "opset 9") != NULL);
    graft_model_free(m);

    m = graft_model_new("no_rgb");
    graft_input(m, "x", graft_shape1(4));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 2});
    s = graft_export_onnx(m, path, &(graft_onnx_opts){.include_preprocessing = 1, .meta = {.preprocess = "tf"}});
    CHECK(s == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "layer 'x'") != NULL);
    CHECK(graft_export_onnx(m, "/nonexistent-dir/x.onnx", NULL) == GRAFT_EIO);
    graft_model_free(m);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/graft_onnx_XXXXXX");
    if (make_tmpdir(tmp) != 0) return 1;
    probe_oracles();
    graft_threads_set(2);
    RUN(test_errors);
    RUN(test_all_kinds);
    RUN(test_scratch_cnn);
    RUN(test_lesson_head);
    RUN(test_mobilenet);
    RUN(test_mobilenet_v2);
    RUN(test_resnet50);
    RUN(test_vgg16);
    RUN(test_from_tfjs);
    printf("# worst ONNX Runtime difference: %.2e of the output range\n", worst_err);
    return CHECK_SUMMARY();
}
