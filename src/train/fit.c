/* fit and evaluate with Keras's semantics and console output (verbose 0/1/2). */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *x, *y, *dpred;
    size_t xs, ys;
    int out_dim;
} batch_bufs;

static void free_bufs(batch_bufs *b)
{
    free(b->x);
    free(b->y);
    free(b->dpred);
    b->x = b->y = b->dpred = NULL;
}

/* Checks that a source fits the model and the loss, and sizes the batch buffers. */
static graft_status check_source(graft_model *m, graft_source *src, const char *what, batch_bufs *b)
{
    const graft_layer *in = m->layers[0], *o = graft_model_output(m);
    char want[96], got[96];
    if (!src || !src->next || src->batch_size <= 0 || src->length <= 0)
        return graft_fail(GRAFT_EINVAL, "%s: the data source is missing or empty", what);
    if (src->x_shape.rank != in->out_shape.rank ||
        memcmp(src->x_shape.dim, in->out_shape.dim, sizeof(int) * (size_t)in->out_shape.rank) != 0) {
        graft_shape_format(&in->out_shape, want, sizeof want);
        graft_shape_format(&src->x_shape, got, sizeof got);
        return graft_fail(GRAFT_ESHAPE, "%s: the data has shape %s but '%s' expects %s", what, got,
                          in->name, want);
    }
    int out_dim = (int)graft_shape_size(&o->out_shape);
    int y_want = m->compile.loss == GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY ? 1 : out_dim;
    if (src->y_dim != y_want)
        return graft_fail(GRAFT_ESHAPE,
                          "%s: labels have %d values per sample but the loss needs %d for the "
                          "output '%s' of %d units",
                          what, src->y_dim, y_want, o->name, out_dim);
    b->xs = graft_shape_size(&src->x_shape);
    b->ys = (size_t)src->y_dim;
    b->out_dim = out_dim;
    size_t bs = (size_t)src->batch_size;
    b->x = malloc(bs * b->xs * sizeof(float));
    b->y = malloc(bs * b->ys * sizeof(float));
    b->dpred = malloc(bs * (size_t)out_dim * sizeof(float));
    if (!b->x || !b->y || !b->dpred) {
        free_bufs(b);
        return graft_fail(GRAFT_ENOMEM, "%s: out of memory for a batch of %d", what, src->batch_size);
    }
    return GRAFT_OK;
}

/* The next batch and the forward pass over it, through the cache when there is one. */
static graft_status fetch_forward(graft_model *m, graft_source *src, graft_feature_cache *cache,
                                  graft_feature_cache *below, batch_bufs *b, int *n, bool training)
{
    graft_status s = GRAFT_OK;
    *n = 0;
    /* A batch whose every image was unreadable comes back empty: take the next. */
    for (int tries = 0; s == GRAFT_OK && *n == 0 && tries <= src->length; tries++) {
        s = cache ? graft_cache_fetch_forward(cache, below, m, src, b->x, b->y, n, training)
                  : src->next(src, b->x, b->y, n);
        if (s == GRAFT_OK) src->drawn++;
    }
    if (s != GRAFT_OK) return s;
    if (*n == 0) return graft_fail(GRAFT_EFORMAT, "every image of a whole pass of the data was unreadable");
    if (*n < 0 || *n > src->batch_size)
        return graft_fail(GRAFT_EINVAL, "the data source returned a batch of %d samples", *n);
    if (m->compile.loss == GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY) {
        for (int i = 0; i < *n; i++) {
            float v = b->y[i];
            if (!(v >= 0 && v < b->out_dim && v == floorf(v)))
                return graft_fail(GRAFT_EINVAL,
                                  "label %g is not a class index in [0, %d) for "
                                  "sparse_categorical_crossentropy",
                                  v, b->out_dim);
        }
    }
    return cache ? GRAFT_OK : graft_model_forward(m, b->x, *n, training);
}

static void format_duration(double s, char *buf, size_t cap)
{
    if (s >= 1) snprintf(buf, cap, "%.0fs", s);
    else if (s >= 1e-3) snprintf(buf, cap, "%.0fms", s * 1e3);
    else snprintf(buf, cap, "%.0fus", s * 1e6);
}

static void format_metric(char *buf, size_t cap, const char *name, double v)
{
    if (fabs(v) > 1e-3) snprintf(buf, cap, " - %s: %.4f", name, v);
    else snprintf(buf, cap, " - %s: %.4e", name, v);
}

static void progress(int step, int steps, double elapsed, double loss, double acc, bool done,
                     const graft_epoch_logs *logs)
{
    int digits = snprintf(NULL, 0, "%d", steps);
    char bar[40];
    int width = 30, filled = (int)((double)width * step / steps);
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : '.';
    if (!done && filled > 0) bar[filled - 1] = '>';
    bar[width] = '\0';
    printf("\r%*d/%d [%s]", digits, step, steps, bar);
    char t[32], metric[64];
    if (done) {
        format_duration(elapsed, t, sizeof t);
        char per[32];
        format_duration(elapsed / steps, per, sizeof per);
        printf(" - %s %s/step", t, per);
    } else {
        format_duration(elapsed / step * (steps - step), t, sizeof t);
        printf(" - ETA: %s", t);
    }
    format_metric(metric, sizeof metric, "loss", loss);
    printf("%s", metric);
    format_metric(metric, sizeof metric, "accuracy", acc);
    printf("%s", metric);
    if (done && logs && !isnan(logs->val_loss)) {
        format_metric(metric, sizeof metric, "val_loss", logs->val_loss);
        printf("%s", metric);
        format_metric(metric, sizeof metric, "val_accuracy", logs->val_accuracy);
        printf("%s", metric);
    }
    if (done) printf("\n");
    fflush(stdout);
}

static void epoch_line(int steps, double elapsed, const graft_epoch_logs *logs)
{
    char t[32], per[32], metric[64];
    format_duration(elapsed, t, sizeof t);
    format_duration(elapsed / steps, per, sizeof per);
    printf("%d/%d - %s", steps, steps, t);
    format_metric(metric, sizeof metric, "loss", logs->loss);
    printf("%s", metric);
    format_metric(metric, sizeof metric, "accuracy", logs->accuracy);
    printf("%s", metric);
    if (!isnan(logs->val_loss)) {
        format_metric(metric, sizeof metric, "val_loss", logs->val_loss);
        printf("%s", metric);
        format_metric(metric, sizeof metric, "val_accuracy", logs->val_accuracy);
        printf("%s", metric);
    }
    printf(" - %s/epoch - %s/step\n", t, per);
    fflush(stdout);
}

static graft_status evaluate_bufs(graft_model *m, graft_source *data, graft_feature_cache *cache,
                                  graft_feature_cache *below, int steps, batch_bufs *b,
                                  double *loss, double *acc)
{
    double lsum = 0, asum = 0;
    long seen = 0;
    if (steps <= 0) steps = data->length;
    for (int s = 0; s < steps; s++) {
        int n;
        graft_status st = fetch_forward(m, data, cache, below, b, &n, false);
        if (st != GRAFT_OK) return st;
        const float *pred = graft_model_output(m)->out;
        lsum += graft_loss_value(m->compile.loss, m->compile.from_logits, pred, b->y, n, b->out_dim) * n;
        asum += graft_accuracy_value(m->compile.loss, pred, b->y, n, b->out_dim) * n;
        seen += n;
    }
    *loss = lsum / (double)seen;
    *acc = asum / (double)seen;
    return GRAFT_OK;
}

graft_status graft_model_evaluate(graft_model *m, graft_source *data, int steps, double *loss,
                                  double *accuracy)
{
    if (!m || !m->compiled) return graft_fail(GRAFT_ESTATE, "evaluate: compile the model first");
    batch_bufs b = {0};
    graft_status s = check_source(m, data, "evaluate", &b);
    if (s != GRAFT_OK) return s;
    double l = NAN, a = NAN;
    s = evaluate_bufs(m, data, NULL, NULL, steps, &b, &l, &a);
    free_bufs(&b);
    if (loss) *loss = l;
    if (accuracy) *accuracy = a;
    return s;
}

void graft_model_request_stop(graft_model *m)
{
    if (m) m->stop_requested = 1;
}

/* keep_features_below: caches at that lower boundary, kept in the store and
 * filled in the passes that fill this fit's own (so only where those exist). */
static graft_status open_below(graft_model *m, graft_source *train, const graft_fit_cfg *cfg,
                               int first, const graft_feature_cache *cache,
                               const graft_feature_cache *val_cache, graft_feature_cache **below,
                               graft_feature_cache **val_below)
{
    const char *name = cfg->keep_features_below;
    int k = -1;
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i]->name, name) == 0) k = i;
    if (k < 0) return graft_fail(GRAFT_ENOTFOUND, "fit: keep_features_below: no layer '%s'", name);
    /* The later fit's boundary: the first layer from there up that has weights
     * to train (a ReLU or a padding there needs no backward pass). */
    while (k < first && k < m->n_layers) {
        const graft_layer *l = m->layers[k];
        bool has = false;
        for (int w = 0; w < l->n_weights; w++) has |= l->weights[w].trainable;
        if (has) break;
        k++;
    }
    if (!graft_cache_can_fill_below(m, k, first)) {
        if (cfg->verbose > 0)
            printf("Feature cache: nothing kept below '%s' (%s)\n", name,
                   k >= first ? "this fit trains it, or a layer below it"
                              : "its input is computed together with it");
        return GRAFT_OK;
    }
    graft_status s = GRAFT_OK;
    if (cache && train->uid)
        s = graft_cache_open(m, train, k, cfg->cache_max_bytes, cfg->feature_store,
                             "training, for a later fit", cfg->verbose > 0, below);
    if (s == GRAFT_OK && val_cache && cfg->validation_data->uid)
        s = graft_cache_open(m, cfg->validation_data, k, cfg->cache_max_bytes, cfg->feature_store,
                             "validation, for a later fit", cfg->verbose > 0, val_below);
    return s;
}

graft_status graft_model_fit(graft_model *m, graft_source *train, const graft_fit_cfg *cfg,
                             graft_history *history)
{
    if (!m || !cfg) return graft_fail(GRAFT_EINVAL, "fit: missing model or config");
    if (!m->compiled) return graft_fail(GRAFT_ESTATE, "fit: compile the model first (model.compile)");
    if (cfg->epochs < cfg->initial_epoch || cfg->initial_epoch < 0)
        return graft_fail(GRAFT_EINVAL, "fit: epochs (%d) must be >= initial_epoch (%d) >= 0",
                          cfg->epochs, cfg->initial_epoch);
    batch_bufs b = {0}, vb = {0};
    graft_status s = check_source(m, train, "fit", &b);
    if (s != GRAFT_OK) return s;
    if (cfg->validation_data && (s = check_source(m, cfg->validation_data, "fit (validation)", &vb)) != GRAFT_OK) {
        free_bufs(&b);
        return s;
    }
    const int steps = cfg->steps_per_epoch > 0 ? cfg->steps_per_epoch : train->length;
    graft_flush_denormals();
    graft_feature_cache *cache = NULL, *val_cache = NULL, *below = NULL, *val_below = NULL;
    if (!cfg->no_feature_cache) {
        /* The boundary: the lowest layer whose backward runs, or a lower one
         * that is random in training (a Dropout right under the new head). */
        s = graft_model_prepare(m, train->batch_size, true);
        int first = m->lowest_grad_layer;
        for (int i = 1; i < first; i++) {
            const graft_layer *l = m->layers[i];
            if (l->ops->stochastic && l->ops->stochastic(l)) {
                first = i;
                break;
            }
        }
        graft_feature_store *store = cfg->feature_store;
        if (s == GRAFT_OK)
            s = graft_cache_open(m, train, first, cfg->cache_max_bytes, store, "training",
                                 cfg->verbose > 0, &cache);
        if (s == GRAFT_OK && cfg->validation_data)
            s = graft_cache_open(m, cfg->validation_data, first, cfg->cache_max_bytes, store,
                                 "validation", cfg->verbose > 0, &val_cache);
        if (s == GRAFT_OK && store && cfg->keep_features_below)
            s = open_below(m, train, cfg, first, cache, val_cache, &below, &val_below);
    }
    bool stop = false;
    for (int c = 0; c < cfg->n_callbacks && s == GRAFT_OK; c++)
        if (cfg->callbacks[c].on_train_begin)
            s = cfg->callbacks[c].on_train_begin(cfg->callbacks[c].ctx, m);
    for (int epoch = cfg->initial_epoch; epoch < cfg->epochs && !stop && s == GRAFT_OK; epoch++) {
        for (int c = 0; c < cfg->n_callbacks && s == GRAFT_OK; c++)
            if (cfg->callbacks[c].on_epoch_begin)
                s = cfg->callbacks[c].on_epoch_begin(cfg->callbacks[c].ctx, m, epoch);
        if (s != GRAFT_OK) break;
        if (cfg->verbose) printf("Epoch %d/%d\n", epoch + 1, cfg->epochs);
        double t0 = graft_now(), lsum = 0, asum = 0;
        long seen = 0;
        for (int step = 0; step < steps; step++) {
            int n;
            s = fetch_forward(m, train, cache, below, &b, &n, true);
            if (s != GRAFT_OK) break;
            const float *pred = graft_model_output(m)->out;
            double l = graft_loss_grad(m->compile.loss, m->compile.from_logits, pred, b.y, n,
                                       b.out_dim, b.dpred);
            if (!isfinite(l)) {
                /* Numbered from 1 like the progress bar and the interrupt message. */
                s = graft_fail(GRAFT_ENAN,
                               "epoch %d, batch %d of %d: invalid loss (%g), terminating training",
                               epoch + 1, step + 1, steps, l);
                break;
            }
            double a = graft_accuracy_value(m->compile.loss, pred, b.y, n, b.out_dim);
            s = graft_model_backward(m, b.dpred, n);
            if (s != GRAFT_OK) break;
            double t_opt = m->profiling ? graft_now() : 0;
            graft_optimizer_step(m);
            if (m->profiling) graft_profile_add(m, 2 * m->n_layers, graft_now() - t_opt);
            lsum += l * n;
            asum += a * n;
            seen += n;
            if (cfg->verbose == 1 && step + 1 < steps)
                progress(step + 1, steps, graft_now() - t0, lsum / seen, asum / seen, false, NULL);
            if (m->stop_requested) {
                m->stop_requested = 0;
                s = graft_fail(GRAFT_EINTERRUPTED, "training stopped at epoch %d, batch %d",
                               epoch + 1, step + 1);
                break;
            }
        }
        if (s != GRAFT_OK) break;
        graft_epoch_logs logs = {epoch, lsum / seen, asum / seen, NAN, NAN,
                                 m->compile.optimizer.learning_rate};
        if (cfg->validation_data) {
            s = evaluate_bufs(m, cfg->validation_data, val_cache, val_below,
                              cfg->validation_steps, &vb, &logs.val_loss, &logs.val_accuracy);
            if (s != GRAFT_OK) break;
        }
        double elapsed = graft_now() - t0;
        if (cfg->verbose == 1) progress(steps, steps, elapsed, logs.loss, logs.accuracy, true, &logs);
        if (cfg->verbose == 2) epoch_line(steps, elapsed, &logs);
        if (history)
            s = graft_history_append(history, epoch, logs.loss, logs.accuracy, logs.val_loss,
                                     logs.val_accuracy, logs.lr, elapsed);
        for (int c = 0; c < cfg->n_callbacks && s == GRAFT_OK; c++) {
            int want_stop = 0;
            if (cfg->callbacks[c].on_epoch_end)
                s = cfg->callbacks[c].on_epoch_end(cfg->callbacks[c].ctx, m, &logs, &want_stop);
            stop |= want_stop != 0;
        }
    }
    for (int c = 0; c < cfg->n_callbacks; c++) {
        if (!cfg->callbacks[c].on_train_end) continue;
        graft_status cs = cfg->callbacks[c].on_train_end(cfg->callbacks[c].ctx, m);
        if (s == GRAFT_OK) s = cs;
    }
    graft_cache_close(cache);
    graft_cache_close(val_cache);
    graft_cache_close(below);
    graft_cache_close(val_below);
    free_bufs(&b);
    free_bufs(&vb);
    return s;
}
