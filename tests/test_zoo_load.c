/*
 * Keras Applications' own weight files loaded as Keras loads them
 * (graft_zoo_load_weights). Keras 2.0 saved InceptionV3's
 * (inception_v3_weights_tf_dim_ordering_tf_kernels[_notop].h5) under its
 * 1-based automatic names, conv2d_1 for what graft and later Keras call
 * conv2d, and Keras's load_weights matches them by the order of the layers
 * with weights. scripts/keras20_names.py rewrites graft's own save of the base
 * in those names, each value saying which file layer it came from; the test
 * checks every weighted layer received its own (this part needs Debian's
 * python3 with h5py and numpy, and skips without them). And a TF.js weights
 * manifest without a topology, loaded by the weights' names.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "test_util.h"
#include "zoo_ref.h"

#include <string.h>

static const char *const auto_names[] = {"conv2d", "batch_normalization", "dense"};

/* The number in the layer's Keras 2.0 name (keras20_names.py): conv2d -> 1,
 * conv2d_5 -> 6; 0 for names Keras chose by hand. */
static int keras20_number(const char *name)
{
    for (size_t i = 0; i < sizeof auto_names / sizeof *auto_names; i++) {
        size_t n = strlen(auto_names[i]);
        if (strncmp(name, auto_names[i], n) != 0) continue;
        if (name[n] == '\0') return 1;
        if (name[n] == '_' && name[n + 1] >= '0' && name[n + 1] <= '9') return atoi(name + n + 1) + 1;
    }
    return 0;
}

/* Every weighted layer of m's first n_base layers holds 100 * number + w. */
static void check_values(graft_model *m, int n_base, const char *what)
{
    int bad = 0;
    for (int i = 0; i < n_base; i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int w = 0; w < graft_layer_num_weights(l); w++) {
            graft_shape s = graft_layer_weight_shape(l, w);
            size_t n = graft_shape_size(&s);
            const float *v = graft_layer_weight_data(l, w);
            float want = 100.0f * (float)keras20_number(graft_layer_name(l)) + (float)w;
            if ((v[0] != want || v[n - 1] != want) && bad++ < 3)
                CHECK_MSG(0, "%s: %s weight %d holds %g, not %g (its Keras 2.0 file layer's)",
                          what, graft_layer_name(l), w, v[0], want);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d weights in the wrong layer", what, bad);
}

static int n_weighted(graft_model *m, int n_base)
{
    int k = 0;
    for (int i = 0; i < n_base; i++) k += graft_layer_num_weights(graft_model_layer(m, i)) > 0;
    return k;
}

/* InceptionV3's file in Keras 2.0's names (with top or without) at `out`. */
static int keras20_file(const char *dir, int top, const char *out)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = top;
    c.input_shape[0] = c.input_shape[1] = 75;
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build("InceptionV3", &c, &m));
    char src[256], cmd[700];
    snprintf(src, sizeof src, "%s/graft_names.h5", dir);
    CHECK_OK(graft_model_save_weights(m, src));
    graft_model_free(m);
    snprintf(cmd, sizeof cmd, PYTHON " scripts/keras20_names.py %s %s", src, out);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s failed", cmd);
    unlink(src);
    return rc == 0 ? 0 : -1;
}

static void test_inception_v3_keras20(void)
{
    char dir[] = "/tmp/graft_zoo_load_XXXXXX", path[128];
    if (make_tmpdir(dir) != 0) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof path, "%s/inception_v3_keras20.h5", dir);
    /* With the top: the whole model, as Keras builds it for the file. */
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.input_shape[0] = c.input_shape[1] = 75;
    graft_model *m = NULL;
    if (keras20_file(dir, 1, path) == 0 && graft_zoo_build("InceptionV3", &c, &m) == GRAFT_OK) {
        int n = graft_model_num_layers(m), loaded = -1;
        /* By name the names collide (the file's conv2d_1 is graft's conv2d)
         * and the shapes refuse it; nothing is left half-loaded. */
        graft_load_opts by_name = {.by_name = 1};
        CHECK(graft_model_load_weights(m, path, &by_name) == GRAFT_ESHAPE);
        CHECK(graft_layer_weight_data(graft_model_find(m, "batch_normalization"), 0)[0] == 0.0f);
        CHECK_OK(graft_zoo_load_weights(m, "InceptionV3", &c, path, &loaded));
        CHECK_MSG(loaded == n_weighted(m, n) && loaded == 189, "%d layers loaded", loaded);
        check_values(m, n, "with top");
        CHECK(graft_layer_weight_data(graft_model_find(m, "predictions"), 1)[0] == 1.0f);
    }
    graft_model_free(m);
    m = NULL;
    unlink(path);
    /* Without the top, under a head of the caller's: the head is left alone. */
    c.include_top = 0;
    if (keras20_file(dir, 0, path) == 0 && graft_zoo_build("InceptionV3", &c, &m) == GRAFT_OK) {
        int n_base = graft_model_num_layers(m), loaded = -1;
        graft_layer *x = graft_global_average_pooling2d(m, NULL, "head_pool");
        graft_dense(m, x, (graft_dense_cfg){.name = "head", .units = 2});
        CHECK_OK(graft_model_status(m));
        float *head = graft_layer_weight_data(graft_model_find(m, "head"), 0), before = head[0];
        CHECK_OK(graft_zoo_load_weights(m, "InceptionV3", &c, path, &loaded));
        CHECK_MSG(loaded == n_weighted(m, n_base) && loaded == 188, "%d layers loaded", loaded);
        check_values(m, n_base, "under a head");
        CHECK(head[0] == before);
        /* A file of another architecture fits neither way, and says so. */
        graft_model *other = NULL;
        graft_zoo_cfg x71 = c;
        x71.input_shape[0] = x71.input_shape[1] = 71;
        CHECK_OK(graft_zoo_build("Xception", &x71, &other));
        if (other) {
            CHECK(graft_zoo_load_weights(other, "Xception", &x71, path, &loaded) != GRAFT_OK);
            CHECK(strstr(graft_last_error(), "layer order") != NULL);
        }
        graft_model_free(other);
    }
    graft_model_free(m);
    unlink(path);
}

/* A TF.js weights manifest without a topology ("modelTopology": null, as a
 * converter writes for weights alone) loads into a zoo-built base by the
 * weights' names, whatever order the manifest lists them in. */
static void test_tfjs_without_topology(void)
{
    char dir[] = "/tmp/graft_zoo_tfjs_XXXXXX", json[128], bin[128];
    if (make_tmpdir(dir) != 0) {
        CHECK(0);
        return;
    }
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.alpha = 0.25f;
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = 32;
    graft_model *m = NULL, *again = NULL;
    CHECK_OK(graft_zoo_build("mobilenet", &c, &m));
    if (!m) return;
    snprintf(json, sizeof json, "%s/model.json", dir);
    snprintf(bin, sizeof bin, "%s/group1-shard1of1.bin", dir);
    FILE *jf = fopen(json, "w"), *bf = fopen(bin, "wb");
    CHECK(jf && bf);
    if (!jf || !bf) {
        if (jf) fclose(jf);
        if (bf) fclose(bf);
        graft_model_free(m);
        return;
    }
    fprintf(jf, "{\"format\": \"layers-model\", \"modelTopology\": null, \"weightsManifest\": "
                "[{\"paths\": [\"group1-shard1of1.bin\"], \"weights\": [");
    /* The layers last to first: the names, not the order, place them. */
    int n_weighted = 0, first = 1;
    for (int i = graft_model_num_layers(m) - 1; i >= 0; i--) {
        graft_layer *l = graft_model_layer(m, i);
        n_weighted += graft_layer_num_weights(l) > 0;
        for (int w = 0; w < graft_layer_num_weights(l); w++) {
            graft_shape s = graft_layer_weight_shape(l, w);
            fprintf(jf, "%s{\"name\": \"%s/%s\", \"dtype\": \"float32\", \"shape\": [",
                    first ? "" : ", ", graft_layer_name(l), graft_layer_weight_name(l, w));
            first = 0;
            for (int d = 0; d < s.rank; d++) fprintf(jf, "%s%d", d ? ", " : "", s.dim[d]);
            fprintf(jf, "]}");
            size_t n = graft_shape_size(&s);
            for (size_t k = 0; k < n; k++) {
                float v = 0.5f + (float)i + (float)w / 8 + (float)(k % 7) / 64;
                fwrite(&v, sizeof v, 1, bf);
            }
        }
    }
    fprintf(jf, "]}]}\n");
    CHECK(fclose(jf) == 0 && fclose(bf) == 0);
    CHECK_OK(graft_zoo_build("mobilenet", &c, &again));
    int loaded = 0;
    graft_load_opts by_name = {.by_name = 1, .layers_loaded = &loaded};
    if (again) {
        CHECK_OK(graft_model_load_weights(again, json, &by_name));
        CHECK_MSG(loaded == n_weighted, "%d of %d layers loaded", loaded, n_weighted);
        int bad = 0;
        for (int i = 0; i < graft_model_num_layers(again); i++) {
            graft_layer *l = graft_model_layer(again, i);
            for (int w = 0; w < graft_layer_num_weights(l); w++) {
                graft_shape s = graft_layer_weight_shape(l, w);
                const float *v = graft_layer_weight_data(l, w);
                for (size_t k = 0; k < graft_shape_size(&s); k++)
                    bad += v[k] != 0.5f + (float)i + (float)w / 8 + (float)(k % 7) / 64;
            }
        }
        CHECK_MSG(bad == 0, "%d values landed in the wrong place", bad);
        /* The zoo's loader takes it too; a whole model needs the topology. */
        CHECK_OK(graft_zoo_load_weights(again, "mobilenet", &c, json, &loaded));
        CHECK(loaded == n_weighted);
    }
    graft_model *whole = NULL;
    CHECK(graft_model_load(json, &whole) == GRAFT_EFORMAT && !whole);
    CHECK(strstr(graft_last_error(), "modelTopology") != NULL);
    graft_model_free(again);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_tfjs_without_topology);
    if (!zoo_ref_python_ready("h5py, numpy")) return CHECK_SUMMARY();
    RUN(test_inception_v3_keras20);
    return CHECK_SUMMARY();
}
