/* Keras callbacks: the rules for improvement, patience, cooldown, restoring
 * weights, and their effect inside fit. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>

static graft_model *tiny(void)
{
    graft_model *m = graft_model_new("cb");
    graft_input(m, NULL, graft_shape1(2));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(0.1f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    return m;
}

/* Feeds a sequence of val_loss values; returns the epoch at which stop was asked (-1: never). */
static int feed(graft_callback *cb, graft_model *m, const double *val_loss, int n)
{
    if (cb->on_train_begin) CHECK_OK(cb->on_train_begin(cb->ctx, m));
    for (int e = 0; e < n; e++) {
        m->weights[0] = (float)e; /* marks which epoch's weights are in place */
        graft_epoch_logs logs = {e, 1.0, 0.5, val_loss[e], 0.5, 1e-3};
        int stop = 0;
        CHECK_OK(cb->on_epoch_end(cb->ctx, m, &logs, &stop));
        if (stop) return e;
    }
    return -1;
}

static void test_early_stopping_patience(void)
{
    graft_model *m = tiny();
    graft_callback cb;
    const double seq[] = {1.0, 0.9, 0.95, 0.96, 0.97, 0.5};
    CHECK_OK(graft_early_stopping((graft_early_stopping_cfg){.patience = 2}, &cb));
    CHECK(feed(&cb, m, seq, 6) == 3);
    graft_callback_free(&cb);
    /* min_delta: 0.9 does not beat 1.0 by 0.2, so nothing improves after epoch 0. */
    CHECK_OK(graft_early_stopping((graft_early_stopping_cfg){.patience = 1, .min_delta = 0.2f}, &cb));
    CHECK(feed(&cb, m, seq, 6) == 1);
    graft_callback_free(&cb);
    /* patience 0 still lets the first epoch through (Keras checks after epoch 0). */
    CHECK_OK(graft_early_stopping((graft_early_stopping_cfg){.patience = 0}, &cb));
    CHECK(feed(&cb, m, seq, 6) == 2);
    graft_callback_free(&cb);
    graft_model_free(m);
}

static void test_early_stopping_restores_best(void)
{
    graft_model *m = tiny();
    graft_callback cb;
    const double seq[] = {1.0, 0.7, 0.8, 0.9};
    CHECK_OK(graft_early_stopping((graft_early_stopping_cfg){.patience = 2, .restore_best_weights = 1}, &cb));
    CHECK(feed(&cb, m, seq, 4) == 3);
    CHECK(m->weights[0] == 1.0f); /* epoch 1 had the best val_loss */
    graft_callback_free(&cb);
    /* mode max on accuracy through the name. */
    CHECK_OK(graft_early_stopping((graft_early_stopping_cfg){.monitor = "val_accuracy", .patience = 1}, &cb));
    CHECK(feed(&cb, m, seq, 4) == 1); /* accuracy is constant 0.5: never improves after epoch 0 */
    graft_callback_free(&cb);
    CHECK(graft_early_stopping((graft_early_stopping_cfg){.monitor = "val_f1"}, &cb) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "val_f1") != NULL);
    graft_model_free(m);
}

static void test_reduce_lr(void)
{
    graft_model *m = tiny();
    graft_callback cb;
    CHECK_OK(graft_reduce_lr_on_plateau(
        (graft_reduce_lr_cfg){.factor = 0.5f, .patience = 1, .cooldown = 1, .min_lr = 0.02f}, &cb));
    CHECK_OK(cb.on_train_begin(cb.ctx, m));
    const double seq[] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0};
    const float expect[] = {0.1f, 0.05f, 0.05f, 0.025f, 0.025f, 0.02f};
    for (int e = 0; e < 6; e++) {
        graft_epoch_logs logs = {e, 1, 0.5, seq[e], 0.5, graft_model_learning_rate(m)};
        int stop = 0;
        CHECK_OK(cb.on_epoch_end(cb.ctx, m, &logs, &stop));
        CHECK_MSG(fabsf(graft_model_learning_rate(m) - expect[e]) < 1e-7f, "epoch %d: lr %g, want %g",
                  e, (double)graft_model_learning_rate(m), (double)expect[e]);
    }
    graft_callback_free(&cb);
    graft_model_free(m);
}

static float halve(int epoch, float lr, void *ctx)
{
    (void)ctx;
    return epoch == 0 ? lr : lr * 0.5f;
}

static void test_callbacks_in_fit(void)
{
    enum { N = 40 };
    float x[2 * N], y[N];
    for (int i = 0; i < N; i++) {
        x[2 * i] = (float)(i % 2) * 2 - 1;
        x[2 * i + 1] = 0.1f * (float)(i % 7);
        y[i] = (float)(i % 2);
    }
    graft_source *tr = graft_source_arrays(x, y, N, graft_shape1(2), 1, 8, 1, 1);
    graft_model *m = tiny();
    graft_callback cbs[2];
    CHECK_OK(graft_lr_scheduler(halve, NULL, 0, &cbs[0]));
    /* Training loss keeps falling on separable data, so stop on "accuracy" at 1.0. */
    CHECK_OK(graft_early_stopping((graft_early_stopping_cfg){.monitor = "accuracy", .patience = 1}, &cbs[1]));
    graft_history h;
    graft_history_init(&h);
    graft_fit_cfg fc = {.epochs = 30, .callbacks = cbs, .n_callbacks = 2};
    CHECK_OK(graft_model_fit(m, tr, &fc, &h));
    CHECK_MSG(h.n >= 2 && h.n < 30, "ran %d epochs", h.n);
    CHECK(h.n >= 2 && fabs(h.lr[1] - 0.05) < 1e-7 && fabs(h.lr[0] - 0.1) < 1e-7);
    graft_history_free(&h);
    graft_callback_free(&cbs[0]);
    graft_callback_free(&cbs[1]);
    graft_model_free(m);
    graft_source_free(tr);
}

int main(void)
{
    RUN(test_early_stopping_patience);
    RUN(test_early_stopping_restores_best);
    RUN(test_reduce_lr);
    RUN(test_callbacks_in_fit);
    return CHECK_SUMMARY();
}
