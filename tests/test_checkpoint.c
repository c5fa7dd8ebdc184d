/* A run stopped after an epoch and resumed from its checkpoint ends with the
 * very weights and history of an uninterrupted run; damaged files are refused. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>
#include <unistd.h>

enum { N = 60, D = 5, EPOCHS = 5, STEPS = 7 };
static float X[N * D], Y[N];

static void data(void)
{
    graft_rng r;
    graft_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        float s = 0;
        for (int k = 0; k < D; k++) s += (X[i * D + k] = graft_rng_normal(&r)) * (k - 2.0f);
        Y[i] = s > 0;
    }
}

static graft_model *model(void)
{
    graft_model *m = graft_model_new("resume");
    graft_input(m, NULL, graft_shape1(D));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 12});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){0});
    graft_activation_layer(m, NULL, NULL, GRAFT_RELU);
    graft_dropout(m, NULL, NULL, 0.25f);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_model_init_weights(m, 17);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.02f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 9};
    CHECK_OK(graft_model_compile(m, &cc));
    return m;
}

typedef struct {
    float w[256];
    graft_history h;
} result;

/* Trains epochs [from, to); with a path, saves a checkpoint each epoch; with
 * resume, starts from that checkpoint. */
static void train(int to, const char *save, const char *resume, result *out)
{
    graft_model *m = model();
    graft_source *tr = graft_source_arrays(X, Y, N, graft_shape1(D), 1, 8, 1, 21);
    graft_source *va = graft_source_arrays(X, Y, N, graft_shape1(D), 1, 16, 1, 22);
    graft_history_init(&out->h);
    graft_train_state st = {0, 0, 0};
    if (resume) {
        CHECK_OK(graft_train_state_load(m, resume, &out->h, &st));
        CHECK_OK(graft_source_skip(tr, st.train_batches));
        CHECK_OK(graft_source_skip(va, st.val_batches));
    }
    graft_callback cb = {0};
    if (save) CHECK_OK(graft_train_state_callback(save, tr, va, &out->h, &cb));
    graft_fit_cfg fc = {.epochs = to, .initial_epoch = st.epoch, .steps_per_epoch = STEPS,
                        .validation_data = va, .validation_steps = 3, .callbacks = &cb,
                        .n_callbacks = save ? 1 : 0};
    CHECK_OK(graft_model_fit(m, tr, &fc, &out->h));
    CHECK(m->n_weight_floats <= 256);
    memset(out->w, 0, sizeof out->w);
    memcpy(out->w, m->weights, m->n_weight_floats * sizeof(float));
    graft_callback_free(&cb);
    graft_source_free(tr);
    graft_source_free(va);
    graft_model_free(m);
}

static char path[64];

static void test_resume_is_exact(void)
{
    result full, first, resumed;
    train(EPOCHS, NULL, NULL, &full);
    train(2, path, NULL, &first); /* "stopped" after epoch 2 */
    train(EPOCHS, NULL, path, &resumed);
    CHECK(memcmp(full.w, resumed.w, sizeof full.w) == 0);
    CHECK(memcmp(full.w, first.w, sizeof full.w) != 0);
    CHECK(resumed.h.n == EPOCHS && full.h.n == EPOCHS);
    for (int i = 0; i < EPOCHS && resumed.h.n == EPOCHS; i++) {
        CHECK(resumed.h.epoch[i] == i);
        CHECK(resumed.h.loss[i] == full.h.loss[i] && resumed.h.val_loss[i] == full.h.val_loss[i]);
    }
    graft_history_free(&full.h);
    graft_history_free(&first.h);
    graft_history_free(&resumed.h);
}

static void test_damaged_files_refused(void)
{
    result r;
    train(1, path, NULL, &r);
    graft_history_free(&r.h);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, size / 2, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    graft_model *m = model();
    graft_train_state st;
    CHECK(graft_train_state_load(m, path, NULL, &st) == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "damaged") != NULL);
    CHECK(truncate(path, size / 3) == 0);
    CHECK(graft_train_state_load(m, path, NULL, &st) == GRAFT_EFORMAT);
    CHECK(graft_train_state_load(m, "/nonexistent/ckpt", NULL, &st) == GRAFT_ENOTFOUND);
    graft_model_free(m);
    /* A checkpoint of another model. */
    train(1, path, NULL, &r);
    graft_history_free(&r.h);
    graft_model *other = graft_model_new("other");
    graft_input(other, NULL, graft_shape1(D));
    graft_dense(other, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(0.02f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(other, &cc));
    CHECK(graft_train_state_load(other, path, NULL, &st) == GRAFT_ESHAPE);
    graft_model_free(other);
}

int main(void)
{
    data();
    snprintf(path, sizeof path, "/tmp/graft_ckpt_%d.ckpt", (int)getpid());
    RUN(test_resume_is_exact);
    RUN(test_damaged_files_refused);
    unlink(path);
    return CHECK_SUMMARY();
}
