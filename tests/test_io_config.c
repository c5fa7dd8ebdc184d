/* Keras model-config JSON: functional graphs in the old and new inbound
 * forms, nested models, refused options, and the writer's round trip. */
#include "check.h"
#include "io/io.h"

static graft_status build(const char *json, graft_model **m)
{
    cJSON *j = cJSON_Parse(json);
    *m = NULL;
    if (!j) return GRAFT_EFORMAT;
    graft_status s = io_model_from_config(j, "cfg.json", m);
    cJSON_Delete(j);
    return s;
}

#define INPUT(name, shape)                                                                       \
    "{\"class_name\": \"InputLayer\", \"name\": \"" name "\", \"config\": {\"name\": \"" name   \
    "\", \"batch_input_shape\": [null, " shape "]}, \"inbound_nodes\": []}"

/* A residual block, listed with the Add before its second input (deferred). */
static const char *RESIDUAL =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"res\", \"layers\": [" INPUT("x", "4, 4, 3") ","
    "{\"class_name\": \"Add\", \"name\": \"sum\", \"config\": {\"name\": \"sum\"},"
    " \"inbound_nodes\": [[[\"x\", 0, 0, {}], [\"conv\", 0, 0, {}]]]},"
    "{\"class_name\": \"Conv2D\", \"name\": \"conv\", \"config\": {\"name\": \"conv\", \"filters\": 3,"
    " \"kernel_size\": [3, 3], \"padding\": \"same\", \"trainable\": false},"
    " \"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"GlobalAveragePooling2D\", \"name\": \"gap\", \"config\": {\"name\": \"gap\"},"
    " \"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\":"
    " {\"shape\": [null, 4, 4, 3], \"keras_history\": [\"sum\", 0, 0]}}], \"kwargs\": {}}]}],"
    " \"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [\"gap\", 0, 0]}}";

static void test_functional_forms(void)
{
    graft_model *m;
    CHECK_OK(build(RESIDUAL, &m));
    if (!m) return;
    CHECK(graft_model_num_layers(m) == 4);
    graft_layer *sum = graft_model_find(m, "sum");
    CHECK(sum && graft_layer_index(sum) == 2); /* built after its input conv (1) */
    CHECK(!graft_layer_trainable(graft_model_find(m, "conv")));
    CHECK(strcmp(graft_layer_name(graft_model_output(m)), "gap") == 0);
    CHECK(strcmp(graft_model_name(m), "res") == 0);
    graft_model_free(m);
}

static void test_nested_model_in_functional(void)
{
    const char *json =
        "{\"class_name\": \"Model\", \"config\": {\"name\": \"outer\", \"layers\": [" INPUT("img", "8, 8, 3") ","
        "{\"class_name\": \"Model\", \"name\": \"base\", \"config\": {\"name\": \"base\", \"layers\": ["
        INPUT("inner_in", "8, 8, 3") ","
        "{\"class_name\": \"Conv2D\", \"name\": \"c\", \"config\": {\"name\": \"c\", \"filters\": 2,"
        " \"kernel_size\": 3, \"strides\": 2}, \"inbound_nodes\": [[[\"inner_in\", 0, 0, {}]]]}],"
        " \"input_layers\": [[\"inner_in\", 0, 0]], \"output_layers\": [[\"c\", 0, 0]]},"
        " \"inbound_nodes\": [[[\"img\", 1, 0, {}]]]},"
        "{\"class_name\": \"Flatten\", \"name\": \"f\", \"config\": {\"name\": \"f\"},"
        " \"inbound_nodes\": [[[\"base\", 1, 0, {}]]]},"
        "{\"class_name\": \"Dense\", \"name\": \"head\", \"config\": {\"name\": \"head\", \"units\": 1,"
        " \"activation\": \"sigmoid\"}, \"inbound_nodes\": [[[\"f\", 0, 0, {}]]]}],"
        " \"input_layers\": [[\"img\", 0, 0]], \"output_layers\": [[\"head\", 0, 0]]}}";
    graft_model *m;
    CHECK_OK(build(json, &m));
    if (!m) return;
    CHECK(graft_model_num_layers(m) == 4); /* img, c, f, head: the inner input is the outer one */
    CHECK(graft_model_find(m, "inner_in") == NULL && graft_model_find(m, "base") == NULL);
    graft_shape s = graft_layer_output_shape(graft_model_find(m, "f"));
    CHECK(s.rank == 1 && s.dim[0] == 3 * 3 * 2);
    graft_model_free(m);
}

/* ConvNeXt's shape in Keras 2's config: Sequential models called inside a
 * functional one, the first without an InputLayer (built on its call), the
 * second listing one; a Dense on (H, W, C) and an Add that takes a nested
 * model's output. Flattened under the inner names. */
static void test_nested_sequential_in_functional(void)
{
    const char *json =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"convnext\", \"layers\": ["
        INPUT("img", "8, 8, 3") ","
        "{\"class_name\": \"Sequential\", \"name\": \"stem\", \"config\": {\"name\": \"stem\","
        " \"layers\": [{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"stem_conv\","
        " \"filters\": 4, \"kernel_size\": [2, 2], \"strides\": [2, 2]}},"
        "{\"class_name\": \"LayerNormalization\", \"config\": {\"name\": \"stem_ln\","
        " \"axis\": -1, \"epsilon\": 1e-06}}]},"
        " \"inbound_nodes\": [[[\"img\", 0, 0, {}]]]},"
        "{\"class_name\": \"Dense\", \"name\": \"pw\", \"config\": {\"name\": \"pw\", \"units\": 4,"
        " \"activation\": \"gelu\"}, \"inbound_nodes\": [[[\"stem\", 1, 0, {}]]]},"
        "{\"class_name\": \"Add\", \"name\": \"sum\", \"config\": {\"name\": \"sum\"},"
        " \"inbound_nodes\": [[[\"stem\", 1, 0, {}], [\"pw\", 0, 0, {}]]]},"
        "{\"class_name\": \"Sequential\", \"name\": \"down\", \"config\": {\"name\": \"down\","
        " \"layers\": [" INPUT("down_input", "4, 4, 4") ","
        "{\"class_name\": \"LayerNormalization\", \"config\": {\"name\": \"down_ln\","
        " \"axis\": -1, \"epsilon\": 1e-06}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"down_conv\", \"filters\": 8,"
        " \"kernel_size\": [2, 2], \"strides\": [2, 2]}}]},"
        " \"inbound_nodes\": [[[\"sum\", 0, 0, {}]]]},"
        "{\"class_name\": \"GlobalAveragePooling2D\", \"name\": \"gap\", \"config\": {\"name\": \"gap\"},"
        " \"inbound_nodes\": [[[\"down\", 1, 0, {}]]]}],"
        " \"input_layers\": [[\"img\", 0, 0]], \"output_layers\": [[\"gap\", 0, 0]]}}";
    graft_model *m;
    CHECK_OK(build(json, &m));
    if (!m) return;
    static const char *names[] = {"img", "stem_conv", "stem_ln", "pw", "sum", "down_ln", "down_conv", "gap"};
    CHECK(graft_model_num_layers(m) == 8);
    for (int i = 0; i < 8 && i < graft_model_num_layers(m); i++)
        CHECK_MSG(strcmp(graft_layer_name(graft_model_layer(m, i)), names[i]) == 0, "layer %d is %s", i,
                  graft_layer_name(graft_model_layer(m, i)));
    graft_layer *sum = graft_model_find(m, "sum");
    CHECK(sum && sum->n_inputs == 2 && m->layers[sum->inputs[0]] == graft_model_find(m, "stem_ln"));
    CHECK(graft_model_find(m, "stem") == NULL && graft_model_find(m, "down_input") == NULL);
    graft_shape os = graft_layer_output_shape(graft_model_find(m, "down_conv"));
    CHECK(os.rank == 3 && os.dim[0] == 2 && os.dim[2] == 8);
    graft_model_free(m);
}

/* Keras 2's ConvNeXt block sum, `inputs + x`: a TFOpLambda whose node is
 * one entry and whose second operand is its keyword argument y. */
#define TF_OP(name, fn, kwargs)                                                                    \
    "{\"class_name\": \"TFOpLambda\", \"config\": {\"name\": \"" name "\", \"trainable\": true,"       \
    " \"dtype\": \"float32\", \"function\": \"" fn "\"}, \"name\": \"" name "\","                    \
    " \"inbound_nodes\": [[\"img\", 0, 0, " kwargs "]]}"

static graft_status tf_op_model(const char *op, graft_model **m)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
             INPUT("img", "4, 4, 3") ","
             "{\"class_name\": \"Activation\", \"name\": \"x\", \"config\": {\"name\": \"x\","
             " \"activation\": \"linear\"}, \"inbound_nodes\": [[[\"img\", 0, 0, {}]]]}, %s],"
             " \"input_layers\": [[\"img\", 0, 0]], \"output_layers\": [[\"tf.op\", 0, 0]]}}",
             op);
    return build(json, m);
}

static void test_tf_op_lambda(void)
{
    graft_model *m;
    CHECK_OK(tf_op_model(TF_OP("tf.op", "__operators__.add", "{\"y\": [\"x\", 0, 0], \"name\": null}"), &m));
    if (m) {
        graft_layer *l = graft_model_output(m);
        CHECK(strcmp(graft_layer_class(l), "Add") == 0 && strcmp(graft_layer_name(l), "tf.op") == 0);
        CHECK(l->n_inputs == 2 && m->layers[l->inputs[0]] == graft_model_find(m, "img") &&
              m->layers[l->inputs[1]] == graft_model_find(m, "x"));
        float x[48], y[48];
        for (int i = 0; i < 48; i++) x[i] = (float)i - 20.0f;
        CHECK_OK(graft_model_predict(m, x, 1, y));
        CHECK(y[5] == 2 * x[5] && y[47] == 2 * x[47]);
        graft_model_free(m);
    }
    CHECK_OK(tf_op_model(TF_OP("tf.op", "math.subtract", "{\"y\": [\"x\", 0, 0], \"name\": null}"), &m));
    CHECK(m && strcmp(graft_layer_class(graft_model_output(m)), "Subtract") == 0);
    graft_model_free(m);
    CHECK(tf_op_model(TF_OP("tf.op", "math.multiply", "{\"y\": 0.5, \"name\": null}"), &m) ==
          GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'tf.op' (TFOpLambda)") && strstr(graft_last_error(), "constant"));
    CHECK(tf_op_model(TF_OP("tf.op", "math.reduce_sum", "{}"), &m) == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'math.reduce_sum' is not supported"));
    CHECK(tf_op_model(TF_OP("tf.op", "__operators__.add", "7"), &m) == GRAFT_EFORMAT);
}

static void expect_refused(const char *layer_cfg, const char *needle)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, 8, 8, 3]}},"
             "%s]}}",
             layer_cfg);
    graft_model *m;
    graft_status s = build(json, &m);
    CHECK_MSG(s != GRAFT_OK && m == NULL, "accepted: %s", layer_cfg);
    CHECK_MSG(strstr(graft_last_error(), needle) != NULL, "'%s' lacks '%s'", graft_last_error(),
              needle);
    CHECK(strstr(graft_last_error(), "cfg.json") != NULL);
}

static void test_refused_options(void)
{
    expect_refused("{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"dil\", \"filters\": 2,"
                   " \"kernel_size\": 3, \"strides\": 2, \"dilation_rate\": [2, 2]}}",
                   "'dil' (Conv2D): dilation_rate (2, 2)");
    expect_refused("{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"cf\", \"filters\": 2,"
                   " \"kernel_size\": 3, \"data_format\": \"channels_first\"}}",
                   "channels_first");
    expect_refused("{\"class_name\": \"Dense\", \"config\": {\"name\": \"act\", \"units\": 2,"
                   " \"activation\": \"mish\"}}",
                   "'act' (Dense): activation 'mish'");
    expect_refused("{\"class_name\": \"Conv3D\", \"config\": {\"name\": \"c3\"}}", "'c3' (Conv3D)");
    expect_refused("{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"nof\", \"kernel_size\": 3}}",
                   "filters");
    expect_refused("{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"big\", \"filters\": 2,"
                   " \"kernel_size\": 30}}",
                   "big");
    expect_refused("{\"class_name\": \"Dropout\", \"config\": {\"name\": \"ns\", \"rate\": 0.5,"
                   " \"noise_shape\": [1, 1, 3]}}",
                   "noise_shape");
}

static void test_malformed_graphs(void)
{
    graft_model *m;
    CHECK(build("{\"class_name\": \"Model\", \"config\": {\"name\": \"x\", \"layers\": [" INPUT("a", "3") ","
                "{\"class_name\": \"Dense\", \"name\": \"d\", \"config\": {\"name\": \"d\", \"units\": 1},"
                " \"inbound_nodes\": [[[\"nowhere\", 0, 0, {}]]]}],"
                " \"input_layers\": [[\"a\", 0, 0]], \"output_layers\": [[\"d\", 0, 0]]}}",
                &m) == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "'nowhere'") != NULL);
    CHECK(build("{\"class_name\": \"Model\", \"config\": {\"name\": \"x\", \"layers\": 3}}", &m) ==
          GRAFT_EFORMAT);
    CHECK(build("{\"class_name\": \"Sequential\", \"config\": {\"layers\": ["
                "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 1}}]}}",
                &m) == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "batch_input_shape") != NULL);
    CHECK(build("{\"class_name\": \"Sequential\", \"config\": {\"layers\": ["
                "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, null, null, 3]}}]}}",
                &m) == GRAFT_EUNSUPPORTED);
    CHECK(build("{\"class_name\": \"Dense\", \"config\": {}}", &m) == GRAFT_EUNSUPPORTED);
    CHECK(m == NULL);
}

static void test_writer_round_trip(void)
{
    graft_model *m;
    CHECK_OK(build(RESIDUAL, &m));
    if (!m) return;
    cJSON *out = NULL;
    CHECK_OK(io_model_to_config(m, &out));
    graft_model *again = NULL;
    if (out) CHECK_OK(io_model_from_config(out, "written", &again));
    if (again) {
        CHECK(graft_model_num_layers(again) == graft_model_num_layers(m));
        for (int i = 0; i < graft_model_num_layers(m); i++) {
            graft_layer *a = graft_model_layer(m, i), *b = graft_model_layer(again, i);
            CHECK(strcmp(graft_layer_name(a), graft_layer_name(b)) == 0);
            CHECK(graft_layer_trainable(a) == graft_layer_trainable(b));
            graft_shape sa = graft_layer_output_shape(a), sb = graft_layer_output_shape(b);
            CHECK(memcmp(&sa, &sb, sizeof sa) == 0);
        }
        const cJSON *layers = cJSON_GetObjectItem(cJSON_GetObjectItem(out, "config"), "layers");
        const cJSON *add = cJSON_GetArrayItem(layers, 2);
        char *txt = cJSON_PrintUnformatted(cJSON_GetObjectItem(add, "inbound_nodes"));
        CHECK_MSG(txt && strcmp(txt, "[[[\"x\",0,0,{}],[\"conv\",0,0,{}]]]") == 0, "%s", txt);
        cJSON_free(txt);
    }
    graft_model_free(again);
    cJSON_Delete(out);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_functional_forms);
    RUN(test_nested_model_in_functional);
    RUN(test_nested_sequential_in_functional);
    RUN(test_tf_op_lambda);
    RUN(test_refused_options);
    RUN(test_malformed_graphs);
    RUN(test_writer_round_trip);
    return CHECK_SUMMARY();
}
