/* Transfer learning on real images: a CNN overfits 16 photos, a frozen
 * pretrained base keeps its weights and BatchNormalization statistics, a saved
 * model predicts the same after loading, and a short run beats chance. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>
#include <unistd.h>

#define DATA "../shared/data/cats_and_dogs_filtered"
#define H5_025 "../shared/models/mobilenet_2_5_224_tf_no_top.h5"

static bool have_shared(void)
{
    if (access(DATA "/train/cats/cat.0.jpg", R_OK) == 0 && access(H5_025, R_OK) == 0) return true;
    printf("  skipped: %s or %s is missing\n", DATA, H5_025);
    return false;
}

/* n cats then n dogs from a split, resized to size x size, x/255. */
static float *load_pets(const char *split, int first, int n, int size, float *y)
{
    size_t xs = (size_t)size * size * 3;
    float *x = malloc(xs * 2 * (size_t)n * sizeof(float));
    for (int k = 0; x && k < 2 * n; k++) {
        char path[256];
        const char *cls = k < n ? "cats" : "dogs";
        snprintf(path, sizeof path, DATA "/%s/%s/%.3s.%d.jpg", split, cls, cls, first + k % n);
        graft_status s = graft_image_load(path, size, size, GRAFT_INTERP_BILINEAR, 0, x + (size_t)k * xs);
        CHECK_MSG(s == GRAFT_OK, "%s: %s", path, graft_last_error());
        for (size_t i = 0; i < xs; i++) x[(size_t)k * xs + i] /= 255.0f;
        y[k] = k < n ? 0.0f : 1.0f;
    }
    return x;
}

/* Issue 2: the lesson's kind of CNN reaches 100% training accuracy on 16 photos. */
static void test_cnn_overfits_16_photos(void)
{
    if (!have_shared()) return;
    float y[16];
    float *x = load_pets("train", 0, 8, 48, y);
    graft_model *m = graft_model_new("overfit");
    graft_input(m, NULL, graft_shape3(48, 48, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 32, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 1};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_source *src = graft_source_arrays(x, y, 16, graft_shape3(48, 48, 3), 1, 8, 1, 2);
    graft_history h;
    graft_history_init(&h);
    graft_fit_cfg fc = {.epochs = 40};
    CHECK_OK(graft_model_fit(m, src, &fc, &h));
    double loss, acc;
    CHECK_OK(graft_model_evaluate(m, src, 0, &loss, &acc));
    CHECK_MSG(acc == 1.0, "training accuracy %.3f after %d epochs (loss %.4f)", acc, h.n, loss);
    graft_history_free(&h);
    graft_source_free(src);
    graft_model_free(m);
    free(x);
}

/* MobileNet alpha 0.25 (Keras's own .h5) without top + the homework's head. */
static graft_model *pets_model(int size)
{
    graft_zoo_cfg z = graft_zoo_default_cfg();
    z.alpha = 0.25f;
    z.include_top = 0;
    z.input_shape[0] = z.input_shape[1] = size;
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build("mobilenet", &z, &m));
    if (!m) return NULL;
    CHECK_OK(graft_model_load_weights(m, H5_025, &(graft_load_opts){.by_name = 1}));
    int n_base = graft_model_num_layers(m);
    graft_layer *x = graft_global_average_pooling2d(m, NULL, NULL);
    x = graft_dropout(m, x, NULL, 0.5f);
    graft_dense(m, x, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    CHECK_OK(graft_model_status(m));
    graft_model_set_trainable(m, 0, n_base, 0);
    return m;
}

static void test_frozen_base_and_short_run(void)
{
    if (!have_shared()) return;
    enum { N = 40, SIZE = 96 };
    float ytr[2 * N], yva[2 * N];
    float *xtr = load_pets("train", 0, N, SIZE, ytr), *xva = load_pets("validation", 2000, N, SIZE, yva);
    /* MobileNet expects [-1, 1]: x*2-1 is preprocess_input of x/255. */
    for (size_t i = 0; i < (size_t)2 * N * SIZE * SIZE * 3; i++) {
        xtr[i] = xtr[i] * 2 - 1;
        xva[i] = xva[i] * 2 - 1;
    }
    graft_model *m = pets_model(SIZE);
    if (!m) return;
    /* Keras's counts: 218,544 in the base (2,656 BN moving statistics among them)
     * + 257 in the head; frozen, only the head trains. */
    graft_param_counts pc = graft_model_count_params(m);
    CHECK(pc.total == 218544 + 257 && pc.trainable == 257 && pc.non_trainable == 218544);
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-2f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 4};
    CHECK_OK(graft_model_compile(m, &cc));
    size_t base_floats = 0;
    int n_base = graft_model_num_layers(m) - 3;
    for (int i = 0; i < n_base; i++) base_floats += graft_layer_count_params(graft_model_layer(m, i));
    float *before = malloc(base_floats * sizeof(float));
    memcpy(before, m->weights, base_floats * sizeof(float)); /* the base's weights come first */
    graft_source *tr = graft_source_arrays(xtr, ytr, 2 * N, graft_shape3(SIZE, SIZE, 3), 1, 16, 1, 3);
    graft_source *va = graft_source_arrays(xva, yva, 2 * N, graft_shape3(SIZE, SIZE, 3), 1, 40, 0, 0);
    graft_history h;
    graft_history_init(&h);
    graft_fit_cfg fc = {.epochs = 12, .validation_data = va};
    CHECK_OK(graft_model_fit(m, tr, &fc, &h));
    /* No weight of the frozen base moved, BatchNormalization statistics included. */
    CHECK(memcmp(before, m->weights, base_floats * sizeof(float)) == 0);
    CHECK_MSG(h.n == 12 && h.val_accuracy[11] >= 0.75, "val_accuracy %.3f on 80 unseen photos",
              h.n ? h.val_accuracy[h.n - 1] : -1.0);

    /* Unfreezing the top moves those weights (and their BN statistics) only. */
    graft_model_set_trainable(m, n_base - 6, n_base, 1);
    cc.optimizer = graft_adam(1e-5f);
    CHECK_OK(graft_model_compile(m, &cc));
    fc.initial_epoch = 12;
    fc.epochs = 13;
    CHECK_OK(graft_model_fit(m, tr, &fc, &h));
    graft_layer *first_open = graft_model_layer(m, n_base - 6);
    size_t open_at = first_open->weights[0].offset;
    CHECK(memcmp(before, m->weights, open_at * sizeof(float)) == 0);
    CHECK(memcmp(before + open_at, m->weights + open_at, (base_floats - open_at) * sizeof(float)) != 0);

    /* Save as a Keras file, load it back: the same predictions, bit for bit. */
    char path[64];
    snprintf(path, sizeof path, "/tmp/graft_transfer_%d.h5", (int)getpid());
    CHECK_OK(graft_model_save(m, path));
    graft_model *back = NULL;
    CHECK_OK(graft_model_load(path, &back));
    if (back) {
        float *p1 = malloc(2 * N * sizeof(float)), *p2 = malloc(2 * N * sizeof(float));
        CHECK_OK(graft_model_predict(m, xva, 2 * N, p1));
        CHECK_OK(graft_model_predict(back, xva, 2 * N, p2));
        CHECK(memcmp(p1, p2, 2 * N * sizeof(float)) == 0);
        CHECK(graft_model_num_layers(back) == graft_model_num_layers(m));
        free(p1);
        free(p2);
        graft_model_free(back);
    }
    unlink(path);
    graft_history_free(&h);
    graft_source_free(tr);
    graft_source_free(va);
    graft_model_free(m);
    free(before);
    free(xtr);
    free(xva);
}

int main(void)
{
    RUN(test_cnn_overfits_16_photos);
    RUN(test_frozen_base_and_short_run);
    return CHECK_SUMMARY();
}
