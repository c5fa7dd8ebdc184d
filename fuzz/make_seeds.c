/* Writes the seed files graft itself produces into fuzz/corpus/<target>/:
 * a Keras HDF5 model and weights file, a TF.js model (json + NUL + shard),
 * the model's Keras config, a checkpoint and a history. Built and run by
 * scripts/make_fuzz_corpus.sh; deterministic. */
#include "fuzz_util.h"
#include "io/io.h"

#include <math.h>

static int fail(const char *what)
{
    fprintf(stderr, "make_seeds: %s: %s\n", what, graft_last_error());
    return 1;
}

static int write_all(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(a, 1, na, f) == na && (nb == 0 || fwrite(b, 1, nb, f) == nb);
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* model.json with the model's topology and one manifest group in "weights.bin". */
static int write_tfjs(graft_model *m, const char *path)
{
    cJSON *topo = NULL;
    if (io_model_to_config(m, &topo) != GRAFT_OK) return fail("config");
    cJSON *root = cJSON_CreateObject(), *man = cJSON_CreateArray(), *g = cJSON_CreateObject();
    cJSON *paths = cJSON_CreateArray(), *ws = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "format", cJSON_CreateString("layers-model"));
    cJSON_AddItemToObject(root, "modelTopology", topo);
    cJSON_AddItemToArray(paths, cJSON_CreateString("weights.bin"));
    cJSON_AddItemToObject(g, "paths", paths);
    cJSON_AddItemToObject(g, "weights", ws);
    cJSON_AddItemToArray(man, g);
    cJSON_AddItemToObject(root, "weightsManifest", man);
    size_t total = 0;
    for (int i = 0; i < graft_model_num_layers(m); i++)
        for (int k = 0; k < graft_layer_num_weights(graft_model_layer(m, i)); k++) {
            graft_shape s = graft_layer_weight_shape(graft_model_layer(m, i), k);
            total += graft_shape_size(&s);
        }
    float *shard = malloc(total * sizeof(float) + 1);
    size_t at = 0;
    for (int i = 0; shard && i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            char name[300];
            snprintf(name, sizeof name, "%s/%s", graft_layer_name(l), graft_layer_weight_name(l, k));
            cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray();
            cJSON_AddItemToObject(e, "name", cJSON_CreateString(name));
            for (int d = 0; d < s.rank; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber(s.dim[d]));
            cJSON_AddItemToObject(e, "shape", shape);
            cJSON_AddItemToObject(e, "dtype", cJSON_CreateString("float32"));
            cJSON_AddItemToArray(ws, e);
            memcpy(shard + at, graft_layer_weight_data(l, k), graft_shape_size(&s) * sizeof(float));
            at += graft_shape_size(&s);
        }
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    int rc = !shard || !text || write_all(path, text, strlen(text) + 1, shard, total * sizeof(float));
    free(text);
    free(shard);
    return rc ? fail("tfjs seed") : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    char p[512];
    const char *dir = argv[1];
    graft_model *m = fuzz_small_model();
    if (graft_model_init_weights(m, 7) != GRAFT_OK) return fail("init");
    snprintf(p, sizeof p, "%s/fuzz_keras_h5/model.h5", dir);
    if (graft_model_save(m, p) != GRAFT_OK) return fail(p);
    snprintf(p, sizeof p, "%s/fuzz_keras_h5/weights.h5", dir);
    if (graft_model_save_weights(m, p) != GRAFT_OK) return fail(p);
    snprintf(p, sizeof p, "%s/fuzz_tfjs/small", dir);
    if (write_tfjs(m, p)) return 1;

    cJSON *cfg = NULL;
    if (io_model_to_config(m, &cfg) != GRAFT_OK) return fail("config");
    char *text = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(p, sizeof p, "%s/fuzz_keras_config/small.json", dir);
    if (!text || write_all(p, text, strlen(text), NULL, 0)) return fail(p);
    free(text);

    graft_history h;
    graft_history_init(&h);
    graft_history_append(&h, 0, 0.69, 0.5, 0.68, 0.55, 1e-3, 1.5);
    graft_history_append(&h, 1, 0.5, 0.75, NAN, 0.6, 1e-3, 1.25);
    graft_history_append(&h, 2, 0.25, 0.875, 0.4, 0.7, 1e-5, 1.0);
    graft_history_stage st[2] = {{"frozen", 0}, {"fine-tune", 2}};
    snprintf(p, sizeof p, "%s/fuzz_history/history.json", dir);
    if (graft_history_save_json(p, &h, st, 2) != GRAFT_OK) return fail(p);

    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_CATEGORICAL_CROSSENTROPY};
    if (graft_model_compile(m, &cc) != GRAFT_OK) return fail("compile");
    graft_train_state ts = {3, 30, 6};
    snprintf(p, sizeof p, "%s/fuzz_checkpoint/checkpoint.graft", dir);
    if (graft_train_state_save(m, &h, &ts, p) != GRAFT_OK) return fail(p);
    graft_history_free(&h);
    graft_model_free(m);
    return 0;
}
