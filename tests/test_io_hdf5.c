/* Keras HDF5 files: the genuine Keras Applications file, round trips read
 * back by graft and by h5py, and malformed files that must fail cleanly. */
#include "check.h"
#include "io/io.h"
#include "io_util.h"

#include <hdf5.h>

#define GENUINE "../shared/models/mobilenet_2_5_224_tf_no_top.h5"

/* Keras MobileNet(alpha=0.25, include_top=False) layer for layer. */
static graft_model *mobilenet_025(int size)
{
    static const int blocks[13][2] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1},
                                      {512, 2}, {512, 1}, {512, 1}, {512, 1}, {512, 1},
                                      {512, 1}, {1024, 2}, {1024, 1}};
    graft_model *m = graft_model_new("mobilenet_0.25");
    graft_input(m, "input_1", graft_shape3(size, size, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv1", .filters = 8, .kernel_size = {3, 3},
                                            .strides = {2, 2}, .padding = GRAFT_SAME, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "conv1_bn"});
    graft_activation_layer(m, NULL, "conv1_relu", GRAFT_RELU6);
    for (int i = 0; i < 13; i++) {
        char n[64];
        snprintf(n, sizeof n, "conv_dw_%d", i + 1);
        graft_depthwise_conv2d(m, NULL, (graft_depthwise_conv2d_cfg){
                                            .name = n, .kernel_size = {3, 3},
                                            .strides = {blocks[i][1], blocks[i][1]},
                                            .padding = GRAFT_SAME, .no_bias = 1});
        snprintf(n, sizeof n, "conv_dw_%d_bn", i + 1);
        graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = n});
        snprintf(n, sizeof n, "conv_dw_%d_relu", i + 1);
        graft_activation_layer(m, NULL, n, GRAFT_RELU6);
        snprintf(n, sizeof n, "conv_pw_%d", i + 1);
        graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = n, .filters = blocks[i][0] / 4,
                                                .kernel_size = {1, 1}, .no_bias = 1});
        snprintf(n, sizeof n, "conv_pw_%d_bn", i + 1);
        graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = n});
        snprintf(n, sizeof n, "conv_pw_%d_relu", i + 1);
        graft_activation_layer(m, NULL, n, GRAFT_RELU6);
    }
    graft_global_average_pooling2d(m, NULL, "global_average_pooling2d_1");
    return m;
}

static void test_genuine_listing(void)
{
    NEED_FILE(GENUINE);
    io_file f = {.path = GENUINE};
    CHECK_OK(io_h5_list(GENUINE, &f, NULL));
    int weighted = 0;
    size_t floats = 0;
    for (int i = 0; i < f.n_layers; i++) {
        weighted += f.layers[i].n > 0;
        for (int k = 0; k < f.layers[i].n; k++) floats += f.layers[i].w[k].count;
    }
    CHECK(weighted == 54);      /* conv1, conv1_bn, 13 x (dw, dw_bn, pw, pw_bn) */
    CHECK(floats == 218544);    /* the README's parameter count */
    CHECK(f.n_layers > 0 && strcmp(f.layers[0].name, "conv1") == 0);
    if (f.n_layers > 1) {
        const io_weight *k = &f.layers[0].w[0];
        CHECK(strcmp(k->name, "conv1/kernel:0") == 0 && strcmp(k->short_name, "kernel") == 0);
        CHECK(k->rank == 4 && k->dim[0] == 3 && k->dim[1] == 3 && k->dim[2] == 3 && k->dim[3] == 8);
        CHECK(strcmp(f.layers[1].name, "conv1_bn") == 0 && f.layers[1].n == 4);
        CHECK(strcmp(f.layers[1].w[3].short_name, "moving_variance") == 0);
        const io_weight *dw = &f.layers[2].w[0];
        CHECK(strcmp(dw->name, "conv_dw_1/depthwise_kernel:0") == 0 && dw->dim[2] == 8 &&
              dw->dim[3] == 1);
    }
    io_file_free(&f);
}

static double sum_weight(graft_model *m, const char *layer, int k)
{
    graft_layer *l = graft_model_find(m, layer);
    if (!l) return NAN;
    graft_shape s = graft_layer_weight_shape(l, k);
    const float *d = graft_layer_weight_data(l, k);
    double t = 0;
    for (size_t i = 0; i < graft_shape_size(&s); i++) t += d[i];
    return t;
}

static void test_genuine_loads_into_mobilenet(void)
{
    NEED_FILE(GENUINE);
    graft_model *m = mobilenet_025(128);
    CHECK_OK(graft_model_status(m));
    graft_param_counts pc = graft_model_count_params(m);
    CHECK(pc.total == 218544);
    graft_load_opts o = {.by_name = 1};
    CHECK_OK(graft_model_load_weights(m, GENUINE, &o));
    /* and in layer order, as Keras's load_weights without by_name */
    graft_model *m2 = mobilenet_025(96);
    CHECK_OK(graft_model_load_weights(m2, GENUINE, NULL));
    CHECK(sum_weight(m, "conv_pw_13", 0) == sum_weight(m2, "conv_pw_13", 0));
    if (have_oracle()) {
        char out[512];
        int rc = run_python("import h5py\nf=h5py.File('" GENUINE "','r')\n"
                            "print(repr(float(f['conv_pw_13']['conv_pw_13/kernel:0'][()].astype('float64').sum())))\n"
                            "print(repr(float(f['conv1_bn']['conv1_bn/moving_variance:0'][()].astype('float64').sum())))\n",
                            out, sizeof out);
        double a = NAN, b = NAN;
        CHECK(rc == 0 && sscanf(out, "%lf %lf", &a, &b) == 2);
        CHECK_NEAR(sum_weight(m, "conv_pw_13", 0), a, 1e-6 * (1 + fabs(a)));
        CHECK_NEAR(sum_weight(m, "conv1_bn", 3), b, 1e-6 * (1 + fabs(b)));
    }
    float x[128 * 128 * 3], y[256];
    for (int i = 0; i < 128 * 128 * 3; i++) x[i] = (float)((i * 37) % 255) / 127.5f - 1.0f;
    CHECK_OK(graft_model_predict(m, x, 1, y));
    int finite = 1;
    for (int i = 0; i < 256; i++) finite &= isfinite(y[i]);
    CHECK(finite);
    graft_model_free(m);
    graft_model_free(m2);
}

/* A small model that exercises every weight kind the writer must carry. */
static graft_model *small_model(uint64_t seed)
{
    graft_model *m = graft_model_new("small");
    graft_input(m, "in", graft_shape3(6, 6, 2));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "c1", .filters = 3, .kernel_size = {3, 3},
                                            .strides = {2, 2}, .padding = GRAFT_SAME,
                                            .activation = GRAFT_RELU});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "c2", .filters = 4, .kernel_size = {1, 1},
                                            .no_bias = 1});
    graft_flatten(m, NULL, "flat");
    graft_dense(m, NULL, (graft_dense_cfg){.name = "out", .units = 2, .activation = GRAFT_SOFTMAX});
    graft_model_init_weights(m, seed);
    /* biases start at zero; make them count in the comparison */
    float *b = graft_layer_weight_data(graft_model_find(m, "c1"), 1);
    for (int i = 0; i < 3; i++) b[i] = 0.1f * (float)(i + 1) * (seed % 2 ? 1.f : -1.f);
    return m;
}

static int same_weights(graft_model *a, graft_model *b)
{
    for (int i = 0; i < graft_model_num_layers(a); i++) {
        graft_layer *la = graft_model_layer(a, i), *lb = graft_model_layer(b, i);
        if (graft_layer_num_weights(la) != graft_layer_num_weights(lb)) return 0;
        for (int k = 0; k < graft_layer_num_weights(la); k++) {
            graft_shape s = graft_layer_weight_shape(la, k);
            if (memcmp(graft_layer_weight_data(la, k), graft_layer_weight_data(lb, k),
                       graft_shape_size(&s) * sizeof(float)))
                return 0;
        }
    }
    return 1;
}

static void predict2(graft_model *m, float *y)
{
    float x[2 * 72];
    for (int i = 0; i < 144; i++) x[i] = sinf((float)i);
    CHECK_OK(graft_model_predict(m, x, 2, y));
}

static void test_weights_round_trip(void)
{
    graft_model *a = small_model(1), *b = small_model(2);
    const char *p = io_tmp("w.h5");
    CHECK(!same_weights(a, b));
    CHECK_OK(graft_model_save_weights(a, p));
    CHECK_OK(graft_model_load_weights(b, p, NULL));
    CHECK(same_weights(a, b));
    float ya[4], yb[4];
    predict2(a, ya);
    predict2(b, yb);
    CHECK(memcmp(ya, yb, sizeof ya) == 0);
    CHECK(access(io_tmp("w.h5.tmp"), F_OK) != 0);
    if (have_oracle()) {
        char out[2048], script[1024];
        snprintf(script, sizeof script,
                 "import h5py\nf=h5py.File('%s','r')\n"
                 "print([n.decode() for n in f.attrs['layer_names']])\n"
                 "print([n.decode() for n in f['c1'].attrs['weight_names']])\n"
                 "print(f.attrs['backend'].decode(), len(f['in'].attrs['weight_names']))\n"
                 "print(f['c1']['c1/kernel:0'].shape, f['c1']['c1/kernel:0'].dtype)\n"
                 "print(repr(float(f['out']['out/kernel:0'][()].astype('float64').sum())))\n",
                 p);
        CHECK(run_python(script, out, sizeof out) == 0);
        CHECK_MSG(strstr(out, "['in', 'c1', 'c2', 'flat', 'out']") != NULL, "%s", out);
        CHECK_MSG(strstr(out, "['c1/kernel:0', 'c1/bias:0']") != NULL, "%s", out);
        CHECK_MSG(strstr(out, "tensorflow 0") != NULL, "%s", out);
        CHECK_MSG(strstr(out, "(3, 3, 2, 3) float32") != NULL, "%s", out);
        const char *last = strrchr(out, '\n');
        while (last > out && last[-1] != '\n') last--;
        double s = NAN;
        if (last) sscanf(last, "%lf", &s);
        CHECK_NEAR(s, sum_weight(a, "out", 0), 1e-5);
    }
    graft_model_free(a);
    graft_model_free(b);
}

static void test_model_round_trip(void)
{
    graft_model *a = small_model(3), *b = NULL;
    graft_layer_set_trainable(graft_model_find(a, "c1"), 0);
    const char *p = io_tmp("m.h5");
    CHECK_OK(graft_model_save(a, p));
    CHECK_OK(graft_model_load(p, &b));
    if (!b) {
        graft_model_free(a);
        return;
    }
    CHECK(graft_model_num_layers(b) == graft_model_num_layers(a));
    for (int i = 0; i < graft_model_num_layers(a) && i < graft_model_num_layers(b); i++) {
        graft_layer *la = graft_model_layer(a, i), *lb = graft_model_layer(b, i);
        CHECK(strcmp(graft_layer_name(la), graft_layer_name(lb)) == 0);
        CHECK(strcmp(graft_layer_class(la), graft_layer_class(lb)) == 0);
        CHECK(graft_layer_trainable(la) == graft_layer_trainable(lb));
    }
    CHECK(same_weights(a, b));
    float ya[4], yb[4];
    predict2(a, ya);
    predict2(b, yb);
    CHECK(memcmp(ya, yb, sizeof ya) == 0);
    if (have_oracle()) {
        char out[2048], script[1024];
        snprintf(script, sizeof script,
                 "import h5py, json\nf=h5py.File('%s','r')\n"
                 "c=json.loads(f.attrs['model_config'])\n"
                 "print(c['class_name'], [l['class_name'] for l in c['config']['layers']])\n"
                 "print(c['config']['layers'][1]['config']['strides'], c['config']['layers'][1]['inbound_nodes'])\n"
                 "print([n.decode() for n in f['model_weights'].attrs['layer_names']])\n",
                 p);
        CHECK(run_python(script, out, sizeof out) == 0);
        CHECK_MSG(strstr(out, "Model ['InputLayer', 'Conv2D', 'Conv2D', 'Flatten', 'Dense']"), "%s", out);
        CHECK_MSG(strstr(out, "[2, 2] [[['in', 0, 0, {}]]]"), "%s", out);
        CHECK_MSG(strstr(out, "['in', 'c1', 'c2', 'flat', 'out']"), "%s", out);
    }
    graft_model_free(a);
    graft_model_free(b);
}

/* ------------------------------------------------------------ hand-made files */

static void attr_strings(hid_t obj, const char *name, const char **s, int n, int vlen)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    hsize_t dims = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dims, NULL);
    if (vlen) {
        H5Tset_size(t, H5T_VARIABLE);
        hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, s);
        H5Aclose(a);
    } else {
        char buf[8][32] = {{0}};
        for (int i = 0; i < n; i++) snprintf(buf[i], 32, "%s", s[i]);
        H5Tset_size(t, 32);
        hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, buf);
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(t);
}

/* A weights file for model d: Dense(2) on 3 inputs, with a chosen layout. */
typedef struct {
    int vlen, no_layer_names, int_kernel, kernel_rows, f64;
} variant;

static const char *dense_file(const char *fname, variant v)
{
    const char *p = io_tmp(fname);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *layers[] = {"input", "d"};
    if (!v.no_layer_names) attr_strings(f, "layer_names", layers, 2, v.vlen);
    hid_t g0 = H5Gcreate2(f, "input", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    attr_strings(g0, "weight_names", NULL, 0, v.vlen);
    H5Gclose(g0);
    hid_t g = H5Gcreate2(f, "d", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char *wn[] = {"d/kernel:0", "d/bias:0"};
    attr_strings(g, "weight_names", wn, 2, v.vlen);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hsize_t kd[2] = {(hsize_t)(v.kernel_rows ? v.kernel_rows : 3), 2}, bd[1] = {2};
    double k[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[2] = {0.5, -0.5};
    hid_t ft = v.int_kernel ? H5T_STD_I32LE : v.f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE;
    hid_t ks = H5Screate_simple(2, kd, NULL), bs = H5Screate_simple(1, bd, NULL);
    hid_t dk = H5Dcreate2(g, "d/kernel:0", ft, ks, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    hid_t db = H5Dcreate2(g, "d/bias:0", v.f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE, bs, lcpl,
                          H5P_DEFAULT, H5P_DEFAULT);
    if (v.int_kernel) {
        int ki[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        H5Dwrite(dk, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ki);
    } else {
        H5Dwrite(dk, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, k);
    }
    H5Dwrite(db, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
    H5Dclose(dk);
    H5Dclose(db);
    H5Sclose(ks);
    H5Sclose(bs);
    H5Pclose(lcpl);
    H5Gclose(g);
    H5Fclose(f);
    return p;
}

static graft_model *dense_model(int in)
{
    graft_model *m = graft_model_new("dm");
    graft_input(m, "input", graft_shape1(in));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "d", .units = 2});
    return m;
}

static void test_string_kinds_and_float64(void)
{
    variant vs[] = {{.vlen = 1}, {.vlen = 0}, {.f64 = 1}};
    for (int i = 0; i < 3; i++) {
        graft_model *m = dense_model(3);
        CHECK_OK(graft_model_load_weights(m, dense_file("d.h5", vs[i]), NULL));
        float *k = graft_layer_weight_data(graft_model_find(m, "d"), 0);
        float *b = graft_layer_weight_data(graft_model_find(m, "d"), 1);
        CHECK_MSG(k[0] == 1 && k[5] == 6 && b[0] == 0.5f && b[1] == -0.5f, "variant %d", i);
        graft_model_free(m);
    }
}

static void expect_fail(graft_model *m, const char *path, const graft_load_opts *o,
                        graft_status want, const char *needle)
{
    graft_status s = graft_model_load_weights(m, path, o);
    CHECK_MSG(s == want, "%s: got %s: %s", path, graft_status_name(s), graft_last_error());
    CHECK_MSG(strstr(graft_last_error(), needle) != NULL, "message '%s' lacks '%s'",
              graft_last_error(), needle);
}

static void test_malformed_files(void)
{
    graft_model *m = dense_model(3);
    const char *txt = io_tmp("text.h5");
    io_write_file(txt, "this is not hdf5\n", 17);
    expect_fail(m, txt, NULL, GRAFT_EFORMAT, "not an HDF5 file");
    expect_fail(m, io_tmp("absent.h5"), NULL, GRAFT_ENOTFOUND, "absent.h5");
    expect_fail(m, dense_file("nl.h5", (variant){.no_layer_names = 1}), NULL, GRAFT_EFORMAT,
                "layer_names");
    expect_fail(m, dense_file("int.h5", (variant){.int_kernel = 1}), NULL, GRAFT_EFORMAT,
                "d/kernel:0");
    /* wrong shape: named file, layer, tensor and both shapes; the model stays untouched */
    float before = graft_layer_weight_data(graft_model_find(m, "d"), 0)[0];
    const char *bad = dense_file("shape.h5", (variant){.kernel_rows = 4});
    expect_fail(m, bad, NULL, GRAFT_ESHAPE, "(4, 2)");
    CHECK(strstr(graft_last_error(), "(3, 2)") && strstr(graft_last_error(), "shape.h5") &&
          strstr(graft_last_error(), "d/kernel:0"));
    CHECK(graft_layer_weight_data(graft_model_find(m, "d"), 0)[0] == before);
    /* skip_mismatch: the kernel is skipped with a warning, the bias loads */
    graft_load_opts skip = {.by_name = 1, .skip_mismatch = 1};
    CHECK_OK(graft_model_load_weights(m, bad, &skip));
    CHECK(graft_layer_weight_data(graft_model_find(m, "d"), 1)[0] == 0.5f);
    CHECK(graft_layer_weight_data(graft_model_find(m, "d"), 0)[0] == before);
    graft_model_free(m);

    /* truncated copies of the genuine file, at several lengths */
    NEED_FILE(GENUINE);
    graft_model *mb = mobilenet_025(32);
    size_t cuts[] = {100, 2048, 40000, 300000, 800000};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        const char *t = io_tmp("trunc.h5");
        CHECK(io_copy_prefix(GENUINE, t, cuts[i]) == 0);
        graft_status s = graft_model_load_weights(mb, t, NULL);
        CHECK_MSG(s == GRAFT_EFORMAT && strstr(graft_last_error(), "trunc.h5"),
                  "cut %zu: %s: %s", cuts[i], graft_status_name(s), graft_last_error());
    }
    /* a model with another layout: counts differ without by_name */
    graft_model *d = dense_model(3);
    expect_fail(d, GENUINE, NULL, GRAFT_ESHAPE, "54 layers");
    graft_load_opts byname = {.by_name = 1};
    CHECK_OK(graft_model_load_weights(d, GENUINE, &byname)); /* no common names: nothing to load */
    graft_model_free(d);
    graft_model_free(mb);
}

static void test_weights_only_refused_as_model(void)
{
    NEED_FILE(GENUINE);
    graft_model *m = NULL;
    graft_status s = graft_model_load(GENUINE, &m);
    CHECK(s == GRAFT_ENOTFOUND && m == NULL && strstr(graft_last_error(), "model_config"));
}

int main(void)
{
    if (io_tmp_init() != 0) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_genuine_listing);
    RUN(test_genuine_loads_into_mobilenet);
    RUN(test_weights_round_trip);
    RUN(test_model_round_trip);
    RUN(test_string_kinds_and_float64);
    RUN(test_malformed_files);
    RUN(test_weights_only_refused_as_model);
    return CHECK_SUMMARY();
}
