/* Saving whole models as Keras HDF5 (graft_model_save): every layer kind's
 * config written and read back (names, classes, order, shapes, options,
 * trainable flags, predictions bit for bit), a MobileNet block, the Teachable
 * Machine export, and the written model_config checked key by key against
 * what Keras 2's get_config() writes for each class. */
#include "check.h"
#include "io/io.h"
#include "io_util.h"

#include <stdlib.h>

#define TEACHABLE "../shared/models/teachable_machine_mobilenet_v2_0.35/model.json"

/* ------------------------------------------------------------ helpers */

/* Fills every weight with values from a seeded stream; variances stay positive. */
static void fill_weights(graft_model *m, uint64_t seed)
{
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    CHECK_OK(graft_model_init_weights(m, seed));
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            float *w = graft_layer_weight_data(l, k);
            bool var = strcmp(graft_layer_weight_name(l, k), "moving_variance") == 0;
            for (size_t j = 0; w && j < graft_shape_size(&s); j++)
                w[j] = var ? 0.5f + graft_rng_uniform(&rng) : graft_rng_uniform(&rng) - 0.5f;
        }
    }
}

static char *summary_text(const graft_model *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    graft_model_summary(m, f);
    fclose(f);
    return buf;
}

static char *config_text(const graft_model *m)
{
    cJSON *c = NULL;
    CHECK_OK(io_model_to_config(m, &c));
    char *t = c ? cJSON_PrintUnformatted(c) : NULL;
    cJSON_Delete(c);
    return t;
}

/* Outputs of n samples drawn from `seed` (inference). */
static float *predict_random(graft_model *m, int n, uint64_t seed)
{
    graft_shape in = graft_layer_output_shape(graft_model_layer(m, 0));
    graft_shape out = graft_layer_output_shape(graft_model_output(m));
    size_t nin = (size_t)n * graft_shape_size(&in), nout = (size_t)n * graft_shape_size(&out);
    float *x = malloc(nin * sizeof *x), *y = calloc(nout, sizeof *y);
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    for (size_t i = 0; x && i < nin; i++)
        x[i] = 2.0f * graft_rng_uniform(&rng) - 1.0f;
    if (x && y) CHECK_OK(graft_model_predict(m, x, n, y));
    free(x);
    return y;
}

/*
 * Saves `a`, loads it back and compares everything a model is: layers
 * (name, class, order, output shape, trainable), the summary, the config
 * written again from the loaded model, the weights and the predictions.
 * Returns the loaded model (the caller frees it) or NULL.
 */
static graft_model *save_and_compare(graft_model *a, const char *file, int n_predict)
{
    const char *p = io_tmp(file);
    graft_model *b = NULL;
    CHECK_OK(graft_model_save(a, p));
    CHECK_OK(graft_model_load(p, &b));
    if (!b) return NULL;
    int n = graft_model_num_layers(a);
    CHECK(graft_model_num_layers(b) == n);
    for (int i = 0; i < n && i < graft_model_num_layers(b); i++) {
        graft_layer *la = graft_model_layer(a, i), *lb = graft_model_layer(b, i);
        CHECK_MSG(strcmp(graft_layer_name(la), graft_layer_name(lb)) == 0, "%s vs %s",
                  graft_layer_name(la), graft_layer_name(lb));
        CHECK(strcmp(graft_layer_class(la), graft_layer_class(lb)) == 0);
        CHECK_MSG(graft_layer_trainable(la) == graft_layer_trainable(lb), "layer %s",
                  graft_layer_name(la));
        graft_shape sa = graft_layer_output_shape(la), sb = graft_layer_output_shape(lb);
        CHECK(memcmp(&sa, &sb, sizeof sa) == 0);
        CHECK(graft_layer_num_weights(la) == graft_layer_num_weights(lb));
        for (int k = 0; k < graft_layer_num_weights(la) && k < graft_layer_num_weights(lb); k++) {
            graft_shape ws = graft_layer_weight_shape(la, k);
            CHECK_MSG(memcmp(graft_layer_weight_data(la, k), graft_layer_weight_data(lb, k),
                             graft_shape_size(&ws) * sizeof(float)) == 0,
                      "weight %d of %s", k, graft_layer_name(la));
        }
    }
    CHECK(strcmp(graft_layer_name(graft_model_output(a)),
                 graft_layer_name(graft_model_output(b))) == 0);
    char *ta = summary_text(a), *tb = summary_text(b);
    CHECK(ta && tb && strcmp(ta, tb) == 0);
    free(ta);
    free(tb);
    char *ca = config_text(a), *cb = config_text(b);
    CHECK_MSG(ca && cb && strcmp(ca, cb) == 0, "\n%s\n%s", ca ? ca : "", cb ? cb : "");
    cJSON_free(ca);
    cJSON_free(cb);
    graft_shape os = graft_layer_output_shape(graft_model_output(a));
    float *ya = predict_random(a, n_predict, 99), *yb = predict_random(b, n_predict, 99);
    CHECK(ya && yb &&
          memcmp(ya, yb, (size_t)n_predict * graft_shape_size(&os) * sizeof(float)) == 0);
    free(ya);
    free(yb);
    return b;
}

/* The config entry of layer `name` in a written model config. */
static const cJSON *layer_cfg(const cJSON *root, const char *name)
{
    const cJSON *layers = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "config"), "layers"), *e;
    cJSON_ArrayForEach(e, layers)
    {
        const cJSON *c = cJSON_GetObjectItem(e, "config");
        const cJSON *nm = cJSON_GetObjectItem(c, "name");
        if (cJSON_IsString(nm) && strcmp(nm->valuestring, name) == 0) return c;
    }
    return NULL;
}

/* The JSON text of one option of layer `name`. */
static void expect_option(const cJSON *root, const char *name, const char *key, const char *want)
{
    const cJSON *v = cJSON_GetObjectItem(layer_cfg(root, name), key);
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    CHECK_MSG(t && strcmp(t, want) == 0, "%s.%s is %s, expected %s", name, key, t ? t : "absent",
              want);
    cJSON_free(t);
}

/* ------------------------------------------------------------ every kind */

/* Every layer kind graft has, each with options off their defaults, in a DAG. */
static graft_model *every_kind(void)
{
    graft_model *m = graft_model_new("every_kind");
    graft_layer *in = graft_input(m, "in", graft_shape3(9, 8, 3));
    graft_zero_padding2d(m, in, "pad", 1, 2, 0, 3); /* (12, 11, 3) */
    graft_conv2d(m, NULL,
                 (graft_conv2d_cfg){.name = "c1",
                                    .filters = 4,
                                    .kernel_size = {3, 2},
                                    .strides = {2, 1},
                                    .padding = GRAFT_SAME,
                                    .activation = GRAFT_RELU});
    graft_depthwise_conv2d(m, NULL,
                           (graft_depthwise_conv2d_cfg){.name = "dw",
                                                        .kernel_size = {3, 3},
                                                        .strides = {2, 2},
                                                        .padding = GRAFT_SAME,
                                                        .depth_multiplier = 2});
    graft_batch_norm(
        m, NULL,
        (graft_batch_norm_cfg){.name = "bn", .momentum = 0.9f, .epsilon = 0.01f, .no_center = 1});
    graft_relu(m, NULL, (graft_relu_cfg){.name = "relu6", .max_value = 6.0f});
    graft_relu(m, NULL,
               (graft_relu_cfg){.name = "leaky", .negative_slope = 0.1f, .threshold = 0.25f});
    graft_max_pooling2d(m, NULL,
                        (graft_pool2d_cfg){.name = "mp", .pool_size = {2, 2}, .strides = {1, 1}});
    graft_layer *ap = graft_average_pooling2d(
        m, NULL,
        (graft_pool2d_cfg){
            .name = "ap", .pool_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME});
    graft_layer *c2 = graft_conv2d(m, ap,
                                   (graft_conv2d_cfg){.name = "c2",
                                                      .filters = 8,
                                                      .kernel_size = {1, 1},
                                                      .no_bias = 1,
                                                      .activation = GRAFT_SIGMOID});
    graft_layer *act = graft_activation_layer(m, ap, "tanh", GRAFT_TANH);
    graft_layer *three[3] = {c2, act, ap};
    graft_layer *sum = graft_add(m, "sum", 3, three);
    graft_layer *gap = graft_global_average_pooling2d(m, sum, "gap");
    graft_layer *gmp = graft_global_max_pooling2d(m, sum, "gmp");
    graft_layer *pools[2] = {gap, gmp};
    graft_add(m, "pools", 2, pools);
    graft_reshape(m, NULL, "reshape", (graft_shape){2, {2, -1}});
    graft_flatten(m, NULL, "flat");
    graft_dense(
        m, NULL,
        (graft_dense_cfg){.name = "fc", .units = 6, .activation = GRAFT_RELU, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "bn1d", .no_scale = 1});
    graft_dropout(m, NULL, "drop", 0.3f);
    graft_dense(m, NULL, (graft_dense_cfg){.name = "out", .units = 5, .activation = GRAFT_SOFTMAX});
    if (graft_model_status(m) != GRAFT_OK) {
        fprintf(stderr, "  building every_kind: %s\n", graft_model_error(m));
        graft_model_free(m);
        return NULL;
    }
    graft_layer_set_trainable(graft_model_find(m, "c1"), 0);
    graft_layer_set_trainable(graft_model_find(m, "bn"), 0);
    graft_layer_set_trainable(graft_model_find(m, "out"), 0);
    fill_weights(m, 7);
    return m;
}

static void test_every_kind_round_trip(void)
{
    graft_model *a = every_kind();
    CHECK(a != NULL);
    if (!a) return;
    graft_model *b = save_and_compare(a, "every.h5", 3);
    CHECK(b != NULL);
    CHECK(!graft_layer_trainable(graft_model_find(b, "c1")));
    CHECK(!graft_layer_trainable(graft_model_find(b, "bn")));
    CHECK(graft_layer_trainable(graft_model_find(b, "dw")));
    graft_shape rs = graft_layer_output_shape(graft_model_find(b, "reshape"));
    CHECK(rs.rank == 2 && rs.dim[0] == 2 && rs.dim[1] == 4);
    graft_model_free(b);
    graft_model_free(a);
}

/* The options in Keras's own spelling, values as Keras 2's get_config() gives them. */
static void test_every_kind_keras_values(void)
{
    graft_model *m = every_kind();
    if (!m) return;
    cJSON *root = NULL;
    CHECK_OK(io_model_to_config(m, &root));
    if (root) {
        expect_option(root, "in", "batch_input_shape", "[null,9,8,3]");
        expect_option(root, "in", "sparse", "false");
        CHECK(cJSON_GetObjectItem(layer_cfg(root, "in"), "trainable") == NULL);
        expect_option(root, "pad", "padding", "[[1,2],[0,3]]");
        expect_option(root, "c1", "kernel_size", "[3,2]");
        expect_option(root, "c1", "strides", "[2,1]");
        expect_option(root, "c1", "padding", "\"same\"");
        expect_option(root, "c1", "activation", "\"relu\"");
        expect_option(root, "c1", "trainable", "false");
        expect_option(root, "c1", "kernel_initializer",
                      "{\"class_name\":\"GlorotUniform\",\"config\":{\"seed\":null}}");
        expect_option(root, "c1", "bias_initializer", "{\"class_name\":\"Zeros\",\"config\":{}}");
        expect_option(root, "dw", "depth_multiplier", "2");
        expect_option(root, "dw", "strides", "[2,2]");
        expect_option(root, "dw", "trainable", "true");
        expect_option(root, "bn", "axis", "[3]");
        expect_option(root, "bn", "momentum", "0.9");
        expect_option(root, "bn", "epsilon", "0.01");
        expect_option(root, "bn", "center", "false");
        expect_option(root, "bn", "scale", "true");
        expect_option(root, "bn1d", "axis", "[1]");
        expect_option(root, "bn1d", "momentum", "0.99");
        expect_option(root, "bn1d", "epsilon", "0.001");
        expect_option(root, "relu6", "max_value", "6");
        expect_option(root, "leaky", "max_value", "null");
        expect_option(root, "leaky", "negative_slope", "0.1");
        expect_option(root, "leaky", "threshold", "0.25");
        expect_option(root, "mp", "strides", "[1,1]");
        expect_option(root, "ap", "pool_size", "[3,3]");
        expect_option(root, "ap", "padding", "\"same\"");
        expect_option(root, "tanh", "activation", "\"tanh\"");
        expect_option(root, "gap", "keepdims", "false");
        expect_option(root, "reshape", "target_shape", "[2,-1]");
        expect_option(root, "flat", "data_format", "\"channels_last\"");
        expect_option(root, "fc", "use_bias", "false");
        expect_option(root, "drop", "rate", "0.3");
        expect_option(root, "drop", "noise_shape", "null");
        expect_option(root, "out", "activation", "\"softmax\"");
        expect_option(root, "out", "units", "5");
        const cJSON *layers = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "config"), "layers");
        char *nodes = cJSON_PrintUnformatted(
            cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 11), "inbound_nodes"));
        CHECK_MSG(nodes &&
                      strcmp(nodes, "[[[\"c2\",0,0,{}],[\"tanh\",0,0,{}],[\"ap\",0,0,{}]]]") == 0,
                  "%s", nodes);
        cJSON_free(nodes);
    }
    cJSON_Delete(root);
    graft_model_free(m);
}

/* ------------------------------------------------------------ MobileNet-like */

static void test_mobilenet_block(void)
{
    graft_model *m = graft_model_new("mobilenet_block");
    graft_input(m, "input_1", graft_shape3(16, 16, 8));
    graft_zero_padding2d(m, NULL, "conv_pad_2", 0, 1, 0, 1);
    graft_depthwise_conv2d(
        m, NULL,
        (graft_depthwise_conv2d_cfg){
            .name = "conv_dw_2", .kernel_size = {3, 3}, .strides = {2, 2}, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "conv_dw_2_bn"});
    graft_relu(m, NULL, (graft_relu_cfg){.name = "conv_dw_2_relu", .max_value = 6.0f});
    graft_conv2d(m, NULL,
                 (graft_conv2d_cfg){
                     .name = "conv_pw_2", .filters = 16, .kernel_size = {1, 1}, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "conv_pw_2_bn"});
    graft_relu(m, NULL, (graft_relu_cfg){.name = "conv_pw_2_relu", .max_value = 6.0f});
    CHECK_OK(graft_model_status(m));
    if (graft_model_status(m) == GRAFT_OK) {
        graft_model_set_trainable(m, 1, 4, 0);
        fill_weights(m, 11);
        graft_shape os = graft_layer_output_shape(graft_model_output(m));
        CHECK(os.dim[0] == 8 && os.dim[1] == 8 && os.dim[2] == 16);
        graft_model_free(save_and_compare(m, "block.h5", 4));
    }
    graft_model_free(m);
}

/* ------------------------------------------------------------ Teachable Machine */

static void test_teachable_machine(void)
{
    if (access(TEACHABLE, R_OK) != 0) {
        printf("# skipped: %s not found\n", TEACHABLE);
        return;
    }
    graft_model *a = NULL;
    CHECK_OK(graft_model_load(TEACHABLE, &a));
    if (!a) return;
    graft_model *b = save_and_compare(a, "teachable.h5", 1);
    CHECK(b != NULL);
    /* The nested base arrives flattened; a second save and load is a fixed point. */
    if (b) {
        graft_model *c = save_and_compare(b, "teachable2.h5", 1);
        graft_model_free(c);
    }
    graft_model_free(b);
    graft_model_free(a);
}

/* ------------------------------------------------------------ refusal */

static graft_status no_build(graft_layer *l, const graft_shape *in)
{
    l->out_shape = in[0];
    return GRAFT_OK;
}

static void no_forward(graft_layer *l, const graft_fwd *f)
{
    (void)l;
    (void)f;
}

static void test_kind_without_config_refused(void)
{
    static const graft_layer_ops mystery = {
        .class_name = "Mystery", .build = no_build, .forward = no_forward};
    graft_model *m = graft_model_new("m");
    graft_input(m, "in", graft_shape1(3));
    graft_model_add_unary(m, &mystery, "odd", "mystery", NULL, 0, NULL);
    CHECK_OK(graft_model_status(m));
    const char *p = io_tmp("mystery.h5");
    CHECK(graft_model_save(m, p) == GRAFT_EUNSUPPORTED);
    CHECK_MSG(strstr(graft_last_error(), "'odd'") && strstr(graft_last_error(), "Mystery"), "%s",
              graft_last_error());
    CHECK(access(p, F_OK) != 0);
    graft_model_free(m);
}

/* ------------------------------------------------------------ Python oracle */

/*
 * For each class, the keys Keras 2.11's get_config() writes (beyond name,
 * trainable and dtype), read from keras/layers/... of that release. Keras's
 * constructors take exactly these (an unknown key is a TypeError), so the
 * written set must be this set.
 */
static const char *const KERAS_KEYS_PY =
    "CONV = ['kernel_size', 'strides', 'padding', 'data_format', 'dilation_rate', 'groups',\n"
    "        'activation', 'use_bias', 'bias_initializer', 'bias_regularizer',\n"
    "        'activity_regularizer', 'bias_constraint']\n"
    "KERNEL = ['kernel_initializer', 'kernel_regularizer', 'kernel_constraint']\n"
    "KEYS = {\n"
    "  'InputLayer': ['batch_input_shape', 'sparse', 'ragged'],\n"
    "  'Conv2D': CONV + KERNEL + ['filters'],\n"
    "  'DepthwiseConv2D': CONV + ['depth_multiplier', 'depthwise_initializer',\n"
    "                             'depthwise_regularizer', 'depthwise_constraint'],\n"
    "  'Dense': ['units', 'activation', 'use_bias', 'bias_initializer', 'bias_regularizer',\n"
    "            'activity_regularizer', 'bias_constraint'] + KERNEL,\n"
    "  'BatchNormalization': ['axis', 'momentum', 'epsilon', 'center', 'scale',\n"
    "      'beta_initializer', 'gamma_initializer', 'moving_mean_initializer',\n"
    "      'moving_variance_initializer', 'beta_regularizer', 'gamma_regularizer',\n"
    "      'beta_constraint', 'gamma_constraint'],\n"
    "  'Activation': ['activation'],\n"
    "  'ReLU': ['max_value', 'negative_slope', 'threshold'],\n"
    "  'ZeroPadding2D': ['padding', 'data_format'],\n"
    "  'MaxPooling2D': ['pool_size', 'padding', 'strides', 'data_format'],\n"
    "  'AveragePooling2D': ['pool_size', 'padding', 'strides', 'data_format'],\n"
    "  'GlobalAveragePooling2D': ['data_format', 'keepdims'],\n"
    "  'GlobalMaxPooling2D': ['data_format', 'keepdims'],\n"
    "  'Flatten': ['data_format'],\n"
    "  'Reshape': ['target_shape'],\n"
    "  'Dropout': ['rate', 'noise_shape', 'seed'],\n"
    "  'Add': [],\n"
    "}\n";

/* Checks the value forms too: tuples as lists of ints, initializers as
 * {class_name, config}, padding/activation names Keras knows, and a graph
 * whose every inbound name and endpoint is a layer defined earlier. */
static const char *const CHECK_PY =
    "import h5py, json, sys\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "raw = f.attrs['model_config']\n"
    "c = json.loads(raw.decode() if isinstance(raw, bytes) else raw)\n"
    "bad = []\n"
    "assert c['class_name'] in ('Model', 'Functional'), c['class_name']\n"
    "cfg = c['config']\n"
    "def pair(v): return isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)\n"
    "def init(v): return isinstance(v, dict) and set(v) == {'class_name', 'config'}\n"
    "seen = set()\n"
    "for l in cfg['layers']:\n"
    "    cls, lc = l['class_name'], l['config']\n"
    "    if cls not in KEYS: bad.append('unknown class ' + cls); continue\n"
    "    base = {'name', 'dtype'} | (set() if cls == 'InputLayer' else {'trainable'})\n"
    "    want = base | set(KEYS[cls])\n"
    "    if set(lc) != want:\n"
    "        bad.append('%s %s: missing %s extra %s' % (cls, lc.get('name'), sorted(want - "
    "set(lc)),\n"
    "                   sorted(set(lc) - want)))\n"
    "    if l['name'] != lc['name']: bad.append('name ' + l['name'])\n"
    "    for k in ('kernel_size', 'strides', 'dilation_rate', 'pool_size'):\n"
    "        if k in lc and not pair(lc[k]): bad.append('%s.%s' % (lc['name'], k))\n"
    "    for k, v in lc.items():\n"
    "        if k.endswith('_initializer') and not init(v): bad.append('%s.%s' % (lc['name'], k))\n"
    "        if (k.endswith('_regularizer') or k.endswith('_constraint')) and v is not None:\n"
    "            bad.append('%s.%s' % (lc['name'], k))\n"
    "    if lc.get('padding') not in (None, 'valid', 'same') and cls != 'ZeroPadding2D':\n"
    "        bad.append(lc['name'] + '.padding')\n"
    "    if cls == 'ZeroPadding2D' and not (len(lc['padding']) == 2 and all(pair(p) for p in "
    "lc['padding'])):\n"
    "        bad.append(lc['name'] + '.padding')\n"
    "    if 'activation' in lc and lc['activation'] not in ('linear', 'relu', 'sigmoid', 'tanh', "
    "'softmax'):\n"
    "        bad.append(lc['name'] + '.activation')\n"
    "    if cls == 'BatchNormalization' and not (isinstance(lc['axis'], list) and all(type(a) is "
    "int for a in lc['axis'])):\n"
    "        bad.append(lc['name'] + '.axis')\n"
    "    if cls == 'InputLayer' and lc['batch_input_shape'][0] is not None: bad.append('batch')\n"
    "    nodes = l['inbound_nodes']\n"
    "    if (cls == 'InputLayer') != (nodes == []): bad.append(lc['name'] + ' inbound')\n"
    "    for node in nodes:\n"
    "        for ref in node:\n"
    "            if not (len(ref) == 4 and ref[0] in seen and ref[1:3] == [0, 0] and ref[3] == "
    "{}):\n"
    "                bad.append('%s input %s' % (lc['name'], ref))\n"
    "    seen.add(lc['name'])\n"
    "for k in ('input_layers', 'output_layers'):\n"
    "    if not (len(cfg[k]) == 1 and cfg[k][0][0] in seen): bad.append(k)\n"
    "print('layers', len(cfg['layers']), 'classes', len({l['class_name'] for l in "
    "cfg['layers']}))\n"
    "print('BAD' if bad else 'GOOD', bad[:10])\n";

static void oracle_check(const char *file, int want_layers, int want_classes)
{
    char script[8192], out[4096];
    snprintf(script, sizeof script, "%s%s", KERAS_KEYS_PY, CHECK_PY);
    const char *sp = io_tmp("keys.py");
    CHECK(io_write_file(sp, script, strlen(script)) == 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, ORACLE " %s %s 2>&1", sp, file);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    CHECK(pclose(p) == 0);
    char want[64];
    snprintf(want, sizeof want, "layers %d classes %d\n", want_layers, want_classes);
    CHECK_MSG(strstr(out, want) != NULL, "%s", out);
    CHECK_MSG(strstr(out, "GOOD") != NULL, "%s", out);
}

static void test_keras_keys_python(void)
{
    if (!have_oracle()) return;
    graft_model *m = every_kind();
    if (!m) return;
    const char *p = io_tmp("every_keys.h5");
    CHECK_OK(graft_model_save(m, p));
    /* All 16 classes graft has, InputLayer included. */
    oracle_check(p, graft_model_num_layers(m), 16);
    graft_model_free(m);
    if (access(TEACHABLE, R_OK) != 0) return;
    graft_model *t = NULL;
    CHECK_OK(graft_model_load(TEACHABLE, &t));
    if (!t) return;
    p = io_tmp("teachable_keys.h5");
    CHECK_OK(graft_model_save(t, p));
    /* InputLayer, ZeroPadding2D, Conv2D, BatchNormalization, ReLU,
     * DepthwiseConv2D, Add, GlobalAveragePooling2D, Dense. */
    oracle_check(p, graft_model_num_layers(t), 9);
    graft_model_free(t);
}

/* The checker itself must catch a missing key and an unknown one. */
static void test_keras_keys_python_can_fail(void)
{
    if (!have_oracle()) return;
    static const char *const cfgs[] = {
        /* Dense without use_bias */
        "{\"class_name\": \"Model\", \"config\": {\"name\": \"m\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"i\", \"config\": {\"name\": \"i\", "
        "\"dtype\": "
        "\"float32\", \"batch_input_shape\": [null, 2], \"sparse\": false, \"ragged\": false}, "
        "\"inbound_nodes\": []},"
        "{\"class_name\": \"Dense\", \"name\": \"d\", \"config\": {\"name\": \"d\", \"trainable\": "
        "true, \"dtype\": \"float32\", \"units\": 1, \"activation\": \"linear\", "
        "\"kernel_initializer\": {\"class_name\": \"Zeros\", \"config\": {}}, "
        "\"bias_initializer\": {\"class_name\": \"Zeros\", \"config\": {}}, "
        "\"kernel_regularizer\": "
        "null, \"bias_regularizer\": null, \"activity_regularizer\": null, \"kernel_constraint\": "
        "null, \"bias_constraint\": null}, \"inbound_nodes\": [[[\"i\", 0, 0, {}]]]}],"
        "\"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"d\", 0, 0]]}}",
        /* InputLayer with trainable, which Keras's InputLayer refuses */
        "{\"class_name\": \"Model\", \"config\": {\"name\": \"m\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"i\", \"config\": {\"name\": \"i\", "
        "\"dtype\": "
        "\"float32\", \"trainable\": true, \"batch_input_shape\": [null, 2], \"sparse\": false, "
        "\"ragged\": false}, \"inbound_nodes\": []}],"
        "\"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"i\", 0, 0]]}}",
    };
    for (int i = 0; i < 2; i++) {
        char script[1024], out[1024];
        const char *p = io_tmp(i ? "bad1.h5" : "bad0.h5");
        const char *jp = io_tmp("bad.json");
        CHECK(io_write_file(jp, cfgs[i], strlen(cfgs[i])) == 0);
        snprintf(
            script, sizeof script,
            "import h5py\nf = h5py.File('%s', 'w')\nf.attrs['model_config'] = open('%s').read()\n"
            "print('written')\n",
            p, jp);
        CHECK(run_python(script, out, sizeof out) == 0);
        char full[8192], cmd[512];
        snprintf(full, sizeof full, "%s%s", KERAS_KEYS_PY, CHECK_PY);
        const char *sp = io_tmp("keys.py");
        CHECK(io_write_file(sp, full, strlen(full)) == 0);
        snprintf(cmd, sizeof cmd, ORACLE " %s %s 2>&1", sp, p);
        FILE *pp = popen(cmd, "r");
        if (!pp) continue;
        size_t n = fread(out, 1, sizeof out - 1, pp);
        out[n] = '\0';
        pclose(pp);
        CHECK_MSG(strstr(out, "BAD") != NULL, "%s", out);
    }
}

int main(void)
{
    if (io_tmp_init() != 0) {
        fprintf(stderr, "cannot make a scratch folder\n");
        return 1;
    }
    RUN(test_every_kind_round_trip);
    RUN(test_every_kind_keras_values);
    RUN(test_mobilenet_block);
    RUN(test_teachable_machine);
    RUN(test_kind_without_config_refused);
    RUN(test_keras_keys_python);
    RUN(test_keras_keys_python_can_fail);
    return CHECK_SUMMARY();
}
