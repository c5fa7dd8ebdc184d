/* Keras's callbacks: EarlyStopping, ReduceLROnPlateau, LearningRateScheduler,
 * ModelCheckpoint, with Keras's rules for "improved" and its messages. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void graft_callback_free(graft_callback *cb)
{
    if (cb && cb->free) cb->free(cb->ctx);
    if (cb) memset(cb, 0, sizeof *cb);
}

typedef enum { MON_LOSS, MON_ACC, MON_VAL_LOSS, MON_VAL_ACC } monitor;

static graft_status parse_monitor(const char *name, monitor *out, const char *who)
{
    if (!name || !strcmp(name, "val_loss")) *out = MON_VAL_LOSS;
    else if (!strcmp(name, "loss")) *out = MON_LOSS;
    else if (!strcmp(name, "accuracy") || !strcmp(name, "acc")) *out = MON_ACC;
    else if (!strcmp(name, "val_accuracy") || !strcmp(name, "val_acc")) *out = MON_VAL_ACC;
    else
        return graft_fail(GRAFT_EINVAL,
                          "%s: cannot monitor '%s' (available: loss, accuracy, val_loss, "
                          "val_accuracy)",
                          who, name);
    return GRAFT_OK;
}

static const char *monitor_name(monitor m)
{
    static const char *const names[] = {"loss", "accuracy", "val_loss", "val_accuracy"};
    return names[m];
}

static double monitor_value(monitor m, const graft_epoch_logs *logs)
{
    switch (m) {
    case MON_LOSS: return logs->loss;
    case MON_ACC: return logs->accuracy;
    case MON_VAL_LOSS: return logs->val_loss;
    case MON_VAL_ACC: return logs->val_accuracy;
    }
    return NAN;
}

/* Keras's mode "auto": accuracies grow, everything else shrinks. */
static bool maximize(graft_monitor_mode mode, monitor m)
{
    if (mode == GRAFT_MODE_AUTO) return m == MON_ACC || m == MON_VAL_ACC;
    return mode == GRAFT_MODE_MAX;
}

static void *alloc_ctx(size_t size, const char *who)
{
    void *p = calloc(1, size);
    if (!p) graft_fail(GRAFT_ENOMEM, "%s: out of memory", who);
    return p;
}

/* ------------------------------------------------------------ EarlyStopping */

typedef struct {
    graft_early_stopping_cfg cfg;
    monitor mon;
    bool max;
    int wait, stopped_epoch, best_epoch;
    double best;
    float *best_weights;
    size_t n_weights;
} early_stopping;

/* Keras: improved when (current - min_delta) beats the reference, with
 * min_delta's sign flipped when smaller is better. */
static bool es_improved(const early_stopping *e, double current, double reference)
{
    double d = fabs(e->cfg.min_delta);
    return e->max ? current - d > reference : current + d < reference;
}

static graft_status es_begin(void *ctx, graft_model *m)
{
    early_stopping *e = ctx;
    e->wait = e->stopped_epoch = e->best_epoch = 0;
    e->best = e->max ? -INFINITY : INFINITY;
    free(e->best_weights);
    e->best_weights = NULL;
    e->n_weights = m->n_weight_floats;
    return GRAFT_OK;
}

static graft_status es_snapshot(early_stopping *e, graft_model *m)
{
    if (!e->best_weights && !(e->best_weights = malloc((e->n_weights + 1) * sizeof(float))))
        return graft_fail(GRAFT_ENOMEM, "EarlyStopping: out of memory keeping the best weights");
    memcpy(e->best_weights, m->weights, e->n_weights * sizeof(float));
    return GRAFT_OK;
}

static graft_status es_epoch_end(void *ctx, graft_model *m, const graft_epoch_logs *logs, int *stop)
{
    early_stopping *e = ctx;
    double current = monitor_value(e->mon, logs);
    if (isnan(current)) {
        fprintf(stderr, "EarlyStopping: metric '%s' is not available this epoch\n",
                monitor_name(e->mon));
        return GRAFT_OK;
    }
    graft_status s = GRAFT_OK;
    if (e->cfg.restore_best_weights && !e->best_weights && (s = es_snapshot(e, m)) != GRAFT_OK)
        return s;
    e->wait++;
    if (es_improved(e, current, e->best)) {
        e->best = current;
        e->best_epoch = logs->epoch;
        if (e->cfg.restore_best_weights) s = es_snapshot(e, m);
        /* Only a value that also beats the baseline restarts the wait. */
        if (!e->cfg.has_baseline || es_improved(e, current, e->cfg.baseline)) e->wait = 0;
        return s;
    }
    if (e->wait >= e->cfg.patience && logs->epoch > 0) {
        e->stopped_epoch = logs->epoch;
        *stop = 1;
        if (e->cfg.restore_best_weights && e->best_weights) {
            if (e->cfg.verbose)
                printf("Restoring model weights from the end of the best epoch: %d.\n",
                       e->best_epoch + 1);
            memcpy(m->weights, e->best_weights, e->n_weights * sizeof(float));
        }
    }
    return GRAFT_OK;
}

static graft_status es_end(void *ctx, graft_model *m)
{
    (void)m;
    early_stopping *e = ctx;
    if (e->stopped_epoch > 0 && e->cfg.verbose) printf("Epoch %05d: early stopping\n", e->stopped_epoch + 1);
    return GRAFT_OK;
}

static void es_free(void *ctx)
{
    early_stopping *e = ctx;
    if (e) free(e->best_weights);
    free(e);
}

graft_status graft_early_stopping(graft_early_stopping_cfg cfg, graft_callback *out)
{
    memset(out, 0, sizeof *out);
    monitor mon;
    graft_status s = parse_monitor(cfg.monitor, &mon, "EarlyStopping");
    if (s != GRAFT_OK) return s;
    if (cfg.patience < 0) return graft_fail(GRAFT_EINVAL, "EarlyStopping: patience must be >= 0");
    early_stopping *e = alloc_ctx(sizeof *e, "EarlyStopping");
    if (!e) return GRAFT_ENOMEM;
    e->cfg = cfg;
    e->cfg.monitor = NULL; /* the caller's string need not outlive us */
    e->mon = mon;
    e->max = maximize(cfg.mode, mon);
    *out = (graft_callback){e, es_begin, NULL, es_epoch_end, es_end, es_free, 0};
    return GRAFT_OK;
}

/* ------------------------------------------------------------ ReduceLROnPlateau */

typedef struct {
    graft_reduce_lr_cfg cfg;
    monitor mon;
    bool max;
    int wait, cooldown_counter;
    double best;
} reduce_lr;

static graft_status rl_begin(void *ctx, graft_model *m)
{
    (void)m;
    reduce_lr *r = ctx;
    r->wait = r->cooldown_counter = 0;
    r->best = r->max ? -INFINITY : INFINITY;
    return GRAFT_OK;
}

static graft_status rl_epoch_end(void *ctx, graft_model *m, const graft_epoch_logs *logs, int *stop)
{
    (void)stop;
    reduce_lr *r = ctx;
    double current = monitor_value(r->mon, logs);
    if (isnan(current)) {
        fprintf(stderr, "ReduceLROnPlateau: metric '%s' is not available this epoch\n",
                monitor_name(r->mon));
        return GRAFT_OK;
    }
    bool cooling = r->cooldown_counter > 0;
    if (cooling) {
        r->cooldown_counter--;
        r->wait = 0;
    }
    bool better = r->max ? current > r->best + r->cfg.min_delta : current < r->best - r->cfg.min_delta;
    if (better) {
        r->best = current;
        r->wait = 0;
    } else if (!cooling && ++r->wait >= r->cfg.patience) {
        float lr = graft_model_learning_rate(m);
        if (lr > r->cfg.min_lr) {
            float next = lr * r->cfg.factor;
            if (next < r->cfg.min_lr) next = r->cfg.min_lr;
            graft_status s = graft_model_set_learning_rate(m, next);
            if (s != GRAFT_OK) return s;
            if (r->cfg.verbose)
                printf("\nEpoch %05d: ReduceLROnPlateau reducing learning rate to %g.\n",
                       logs->epoch + 1, (double)next);
            r->cooldown_counter = r->cfg.cooldown;
            r->wait = 0;
        }
    }
    return GRAFT_OK;
}

graft_status graft_reduce_lr_on_plateau(graft_reduce_lr_cfg cfg, graft_callback *out)
{
    memset(out, 0, sizeof *out);
    monitor mon;
    graft_status s = parse_monitor(cfg.monitor, &mon, "ReduceLROnPlateau");
    if (s != GRAFT_OK) return s;
    if (cfg.factor == 0) cfg.factor = 0.1f;
    if (cfg.patience == 0) cfg.patience = 10;
    if (cfg.min_delta == 0) cfg.min_delta = 1e-4f;
    if (!(cfg.factor > 0 && cfg.factor < 1))
        return graft_fail(GRAFT_EINVAL, "ReduceLROnPlateau: factor %g is not in (0, 1)", cfg.factor);
    if (cfg.patience < 0 || cfg.cooldown < 0 || cfg.min_lr < 0)
        return graft_fail(GRAFT_EINVAL, "ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0");
    reduce_lr *r = alloc_ctx(sizeof *r, "ReduceLROnPlateau");
    if (!r) return GRAFT_ENOMEM;
    r->cfg = cfg;
    r->cfg.monitor = NULL;
    r->mon = mon;
    r->max = maximize(cfg.mode, mon);
    *out = (graft_callback){r, rl_begin, NULL, rl_epoch_end, NULL, free, 0};
    return GRAFT_OK;
}

/* ------------------------------------------------------------ LearningRateScheduler */

typedef struct {
    float (*schedule)(int epoch, float lr, void *ctx);
    void *ctx;
    int verbose;
} scheduler;

static graft_status sched_epoch_begin(void *ctx, graft_model *m, int epoch)
{
    scheduler *sc = ctx;
    float lr = sc->schedule(epoch, graft_model_learning_rate(m), sc->ctx);
    graft_status s = graft_model_set_learning_rate(m, lr);
    if (s == GRAFT_OK && sc->verbose)
        printf("\nEpoch %d: LearningRateScheduler setting learning rate to %g.\n", epoch + 1,
               (double)lr);
    return s;
}

graft_status graft_lr_scheduler(float (*schedule)(int epoch, float lr, void *ctx), void *ctx,
                                int verbose, graft_callback *out)
{
    memset(out, 0, sizeof *out);
    if (!schedule) return graft_fail(GRAFT_EINVAL, "LearningRateScheduler: no schedule function");
    scheduler *sc = alloc_ctx(sizeof *sc, "LearningRateScheduler");
    if (!sc) return GRAFT_ENOMEM;
    *sc = (scheduler){schedule, ctx, verbose};
    *out = (graft_callback){sc, NULL, sched_epoch_begin, NULL, NULL, free, 0};
    return GRAFT_OK;
}

/* ------------------------------------------------------------ ModelCheckpoint */

typedef struct {
    graft_model_checkpoint_cfg cfg;
    char *path;
    monitor mon;
    bool max;
    double best;
} checkpoint;

/* Replaces "{epoch}" and "{epoch:0Nd}" (1-based, as Keras) in the path. */
static graft_status expand_path(const char *tmpl, int epoch, char *buf, size_t cap)
{
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        int width = 0;
        const char *end = NULL;
        if (!strncmp(p, "{epoch}", 7)) end = p + 7;
        else if (!strncmp(p, "{epoch:0", 8) && p[8] >= '1' && p[8] <= '9' && !strncmp(p + 9, "d}", 2)) {
            width = p[8] - '0';
            end = p + 11;
        }
        if (end) {
            int w = snprintf(buf + o, cap > o ? cap - o : 0, "%0*d", width, epoch + 1);
            if (w < 0 || (size_t)w >= cap - o) break;
            o += (size_t)w;
            p = end;
            continue;
        }
        if (o + 1 >= cap) break;
        buf[o++] = *p++;
    }
    if (o >= cap) return graft_fail(GRAFT_EINVAL, "ModelCheckpoint: path '%s' is too long", tmpl);
    buf[o] = '\0';
    return GRAFT_OK;
}

static graft_status ck_begin(void *ctx, graft_model *m)
{
    (void)m;
    checkpoint *c = ctx;
    c->best = c->max ? -INFINITY : INFINITY;
    return GRAFT_OK;
}

static graft_status ck_epoch_end(void *ctx, graft_model *m, const graft_epoch_logs *logs, int *stop)
{
    (void)stop;
    checkpoint *c = ctx;
    char path[4096];
    graft_status s = expand_path(c->path, logs->epoch, path, sizeof path);
    if (s != GRAFT_OK) return s;
    if (c->cfg.save_best_only) {
        double current = monitor_value(c->mon, logs);
        if (isnan(current)) {
            fprintf(stderr, "ModelCheckpoint: can save the best model only with '%s' available\n",
                    monitor_name(c->mon));
            return GRAFT_OK;
        }
        bool better = c->max ? current > c->best : current < c->best;
        if (!better) {
            if (c->cfg.verbose)
                printf("\nEpoch %05d: %s did not improve from %.5f\n", logs->epoch + 1,
                       monitor_name(c->mon), c->best);
            return GRAFT_OK;
        }
        if (c->cfg.verbose)
            printf("\nEpoch %05d: %s improved from %.5f to %.5f, saving model to %s\n",
                   logs->epoch + 1, monitor_name(c->mon), c->best, current, path);
        c->best = current;
    } else if (c->cfg.verbose) {
        printf("\nEpoch %05d: saving model to %s\n", logs->epoch + 1, path);
    }
    return c->cfg.save_weights_only ? graft_model_save_weights(m, path) : graft_model_save(m, path);
}

static void ck_free(void *ctx)
{
    checkpoint *c = ctx;
    if (c) free(c->path);
    free(c);
}

graft_status graft_model_checkpoint(graft_model_checkpoint_cfg cfg, graft_callback *out)
{
    memset(out, 0, sizeof *out);
    if (!cfg.path || !*cfg.path) return graft_fail(GRAFT_EINVAL, "ModelCheckpoint: no file path");
    monitor mon;
    graft_status s = parse_monitor(cfg.monitor, &mon, "ModelCheckpoint");
    if (s != GRAFT_OK) return s;
    checkpoint *c = alloc_ctx(sizeof *c, "ModelCheckpoint");
    if (!c) return GRAFT_ENOMEM;
    c->path = strdup(cfg.path);
    if (!c->path) {
        free(c);
        return graft_fail(GRAFT_ENOMEM, "ModelCheckpoint: out of memory");
    }
    c->cfg = cfg;
    c->cfg.path = c->cfg.monitor = NULL;
    c->mon = mon;
    c->max = maximize(cfg.mode, mon);
    *out = (graft_callback){c, ck_begin, NULL, ck_epoch_end, NULL, ck_free, 1};
    return GRAFT_OK;
}
