/* The table of layer kinds (src/layers/kinds.c): every kind reads its own
 * Keras config, and an unknown class is refused naming the layer, the class
 * and every supported kind. */
#include "check.h"
#include "io/io.h"
#include "test_util.h"

#include <dirent.h>

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

/* In a Sequential model the running layer is both the input and the output
 * of the call that reads a layer: a kind reading its input (BatchNormalization
 * reads its rank) must still see it. */
static void test_sequential_input_seen(void)
{
    const char *json =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"i\", \"batch_input_shape\": [null, 4, 4, 2]}},"
        "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\", \"axis\": 3}},"
        "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn2\", \"axis\": [-1]}}]}}";
    cJSON *j = cJSON_Parse(json);
    graft_model *m = NULL;
    CHECK_OK(io_model_from_config(j, "cfg.json", &m));
    cJSON_Delete(j);
    CHECK(m && graft_model_num_layers(m) == 3);
    graft_model_free(m);
}

/* Every kind in the table appears in a seed of fuzz_keras_config's corpus
 * that builds (so the fuzzer starts from each kind's valid config). */
static void test_fuzz_seeds_cover_every_kind(void)
{
    const char *dir = "fuzz/corpus/fuzz_keras_config";
    char names[4096];
    graft_layer_kind_names(names, sizeof names);
    char seen[4096] = ",";
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *e;
    int built = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "layers_", 7) != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n = 0;
        char *text = read_text(path, &n);
        cJSON *j = text ? cJSON_ParseWithLength(text, n) : NULL;
        /* A kind that only reads a config into other layers (TFOpLambda) is
         * never a built layer's class: the seed must name it. */
        char kinds[4096];
        graft_layer_kind_names(kinds, sizeof kinds);
        for (char *k = strtok(kinds, ", "); text && k; k = strtok(NULL, ", ")) {
            char quoted[96], item[96];
            snprintf(quoted, sizeof quoted, "\"%s\"", k);
            snprintf(item, sizeof item, "%s,", k);
            if (!graft_layer_kind(k)->build && strstr(text, quoted) && !strstr(seen, item) &&
                strlen(seen) + strlen(item) < sizeof seen)
                strcat(seen, item);
        }
        free(text);
        graft_model *m = NULL;
        CHECK_MSG(j && io_model_from_config(j, path, &m) == GRAFT_OK, "%s: %s", path,
                  graft_last_error());
        cJSON_Delete(j);
        for (int i = 0; m && i < graft_model_num_layers(m); i++) {
            char item[96];
            snprintf(item, sizeof item, "%s,", graft_layer_class(graft_model_layer(m, i)));
            if (!strstr(seen, item) && strlen(seen) + strlen(item) < sizeof seen) strcat(seen, item);
        }
        built += m != NULL;
        graft_model_free(m);
    }
    closedir(d);
    CHECK(built >= 4);
    /* The classes of the seeds of the older kinds (small.json and the rest). */
    static const char *const OLDER[] = {"Conv2D", "DepthwiseConv2D", "BatchNormalization",
                                        "Activation", "ReLU", "ZeroPadding2D", "MaxPooling2D",
                                        "AveragePooling2D", "GlobalAveragePooling2D",
                                        "GlobalMaxPooling2D", "Flatten", "Reshape", "Dense",
                                        "Dropout", "Add"};
    for (char *tok = strtok(names, ", "); tok; tok = strtok(NULL, ", ")) {
        bool older = false;
        for (size_t i = 0; i < sizeof OLDER / sizeof *OLDER; i++) older |= strcmp(tok, OLDER[i]) == 0;
        char item[96];
        snprintf(item, sizeof item, ",%s,", tok);
        CHECK_MSG(older || strstr(seen, item) != NULL, "no layers_*.json seed builds a %s", tok);
    }
}

int main(void)
{
    RUN(test_fuzz_seeds_cover_every_kind);
    RUN(test_sequential_input_seen);
    RUN(test_every_kind_found);
    RUN(test_unknown_class_lists_the_table);
    return CHECK_SUMMARY();
}
