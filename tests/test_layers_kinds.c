/* The table of layer kinds (src/layers/kinds.c): every kind reads its own
 * Keras config, and an unknown class is refused naming the layer, the class
 * and every supported kind. */
#include "check.h"
#include "io/io.h"

static const char *const KNOWN[] = {
    "Conv2D", "DepthwiseConv2D", "BatchNormalization", "Activation", "ReLU", "ZeroPadding2D",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten",
    "Reshape", "Dense", "Dropout", "Add",
};

static void test_every_kind_found(void)
{
    for (size_t i = 0; i < sizeof KNOWN / sizeof *KNOWN; i++) {
        const graft_layer_ops *ops = graft_layer_kind(KNOWN[i]);
        CHECK_MSG(ops && ops->from_config && ops->get_config, "%s", KNOWN[i]);
        CHECK(ops && strcmp(ops->class_name, KNOWN[i]) == 0);
    }
    CHECK(graft_layer_kind("conv2d") == NULL); /* class names are case-sensitive, as in Keras */
    CHECK(graft_layer_kind("") == NULL);
}

static void test_unknown_class_lists_the_table(void)
{
    const char *json =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, 4]}},"
        "{\"class_name\": \"Mystery\", \"config\": {\"name\": \"what\"}}]}}";
    cJSON *j = cJSON_Parse(json);
    graft_model *m = NULL;
    CHECK(io_model_from_config(j, "cfg.json", &m) == GRAFT_EUNSUPPORTED);
    CHECK(m == NULL);
    cJSON_Delete(j);
    const char *e = graft_last_error();
    CHECK_MSG(strstr(e, "cfg.json: layer 'what' (Mystery): layer class 'Mystery'") != NULL, "%s", e);
    for (size_t i = 0; i < sizeof KNOWN / sizeof *KNOWN; i++)
        CHECK_MSG(strstr(e, KNOWN[i]) != NULL, "'%s' lacks %s", e, KNOWN[i]);
    char names[2048];
    graft_layer_kind_names(names, sizeof names);
    CHECK_MSG(strstr(e, names) != NULL, "'%s' lacks the table's list '%s'", e, names);
    char tiny[8];
    graft_layer_kind_names(tiny, sizeof tiny); /* cut, terminated */
    CHECK(strlen(tiny) == 7);
}

int main(void)
{
    RUN(test_every_kind_found);
    RUN(test_unknown_class_lists_the_table);
    return CHECK_SUMMARY();
}
