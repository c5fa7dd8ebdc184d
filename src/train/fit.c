/* fit and evaluate with Keras's semantics and console output (verbose 0/1/2). */
#include "train.h"

#include "dist/dist.h"
#include "source.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *x, *y, *dpred;
    long *ids; /* each sample's id in the source, or position in the global batch: its noise */
    size_t xs, ys;
    int out_dim;
} batch_bufs;

static void free_bufs(batch_bufs *b)
{
    free(b->x);
    free(b->y);
    free(b->dpred);
    free(b->ids);
    b->x = b->y = b->dpred = NULL;
    b->ids = NULL;
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
    b->ids = malloc(bs * sizeof(long));
    if (!b->x || !b->y || !b->dpred || !b->ids) {
        free_bufs(b);
        return graft_fail(GRAFT_ENOMEM, "%s: out of memory for a batch of %d", what, src->batch_size);
    }
    return GRAFT_OK;
}

/* The next batch from the source and its samples' ids: the source's, or
 * their positions from `base` when it gives none. */
static graft_status draw(graft_model *m, graft_source *src, batch_bufs *b, long base, int *n)
{
    double t0 = m->profiling ? graft_now() : 0;
    graft_status s;
    if (src->next_ids) {
        s = src->next_ids(src, b->x, b->y, n, b->ids);
    } else {
        s = src->next(src, b->x, b->y, n);
        for (int i = 0; s == GRAFT_OK && i < *n && i < src->batch_size; i++) b->ids[i] = base + i;
    }
    if (m->profiling) graft_profile_add_extra(m, GRAFT_PROFILE_DATA, graft_now() - t0);
    return s;
}

/* The next batch and the forward pass over it, through the cache when there is one. */
static graft_status fetch_forward(graft_model *m, graft_source *src, graft_feature_cache *cache,
                                  graft_feature_cache *below, batch_bufs *b, int *n, bool training)
{
    graft_status s = GRAFT_OK;
    *n = 0;
    /* A batch whose every image was unreadable comes back empty: take the next. */
    for (int tries = 0; s == GRAFT_OK && *n == 0 && tries <= src->length; tries++) {
        s = cache ? graft_cache_fetch_forward(cache, below, m, src, b->x, b->y, b->ids, n, training)
                  : draw(m, src, b, 0, n);
        if (s == GRAFT_OK) graft_source_book_of(src)->drawn++;
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

/* ------------------------------------------------------------ data parallelism */

/* Gradients are sent in buckets of about this size as backward finishes them:
 * small enough that the first leaves while most of backward is still to run,
 * large enough that a step costs few messages. */
#define DIST_BUCKET_BYTES ((size_t)2 << 20)
/* graft_fit_cfg.split_kernels' default (docs/SCALING.md: from a Dense(1024)
 * head's 786k weights up, splitting was measured faster; below it, left
 * alone for want of a measured reason). */
#define DIST_SPLIT_MIN ((size_t)1 << 16)

/* This rank's share of the next global batch and the forward pass over it:
 * *n may be 0 (a share that is empty, or unreadable). A source that cannot
 * draw a share gives the whole batch, of which the share is kept. */
static graft_status fetch_share(graft_model *m, graft_source *src, graft_feature_cache *cache,
                                graft_feature_cache *below, batch_bufs *b, int *n, bool training)
{
    graft_status s;
    *n = 0;
    if (cache) {
        s = graft_cache_fetch_forward(cache, below, m, src, b->x, b->y, b->ids, n, training);
    } else {
        /* A source that shards itself without ids: its positions are not the
         * global batch's, and each rank numbers its own apart. */
        const graft_source_book *sb = graft_source_book_get(src);
        s = draw(m, src, b, sb->can_shard ? (long)sb->shard_rank * src->batch_size : 0, n);
        if (s == GRAFT_OK && !sb->can_shard && *n > 0 && *n <= src->batch_size) {
            int count = *n, lo = (int)((long)count * sb->shard_rank / sb->shard_count);
            int hi = (int)((long)count * (sb->shard_rank + 1) / sb->shard_count);
            memmove(b->x, b->x + (size_t)lo * b->xs, (size_t)(hi - lo) * b->xs * sizeof(float));
            memmove(b->y, b->y + (size_t)lo * b->ys, (size_t)(hi - lo) * b->ys * sizeof(float));
            memmove(b->ids, b->ids + lo, (size_t)(hi - lo) * sizeof(long));
            *n = hi - lo;
        }
    }
    if (s != GRAFT_OK) return s;
    graft_source_book_of(src)->drawn++;
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
    return cache || *n == 0 ? GRAFT_OK : graft_model_forward(m, b->x, *n, training);
}

/* Splits a source's batches over the ranks: by sample id where a feature
 * cache may keep each rank's samples from pass to pass, else by position
 * (even shares). */
static void shard_source(graft_source *src, const graft_comm *comm, bool by_id)
{
    graft_source_book *sb = graft_source_book_of(src);
    sb->shard_rank = graft_comm_rank(comm);
    sb->shard_count = graft_comm_size(comm);
    sb->shard_by_id = by_id && sb->can_shard && src->next_ids && src->deterministic;
}

static void unshard_source(graft_source *src)
{
    if (!src) return;
    graft_source_book *sb = graft_source_book_of(src);
    sb->shard_rank = 0;
    sb->shard_count = 0;
    sb->shard_by_id = 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

/* A fingerprint of a folder source's file list and labels (0 for others). */
static uint64_t file_list_fingerprint(const graft_source *src)
{
    uint64_t h = 1469598103934665603ULL;
    int n = src ? graft_flow_samples(src) : -1;
    for (int i = 0; i < n; i++) {
        const char *f = graft_flow_filename(src, i);
        int cls = graft_flow_class_of(src, i);
        h = fnv(h, f, strlen(f) + 1);
        h = fnv(h, &cls, sizeof cls);
    }
    return n < 0 ? 0 : h;
}

typedef struct {
    int epochs, initial_epoch, steps, validation_steps, has_val, loss, from_logits;
    int batch, length, vbatch, vlength, y_dim, no_feature_cache;
    long n_samples, drawn, vn_samples, vdrawn;
    long long weights;
    float lr;
} fit_settings;

/* The same fit on every rank, rank 0's weights and optimizer state on all. */
static graft_status dist_start(graft_model *m, graft_source *train, const graft_fit_cfg *cfg,
                               int steps)
{
    graft_comm *comm = cfg->comm;
    const graft_source *v = cfg->validation_data;
    fit_settings fs;
    memset(&fs, 0, sizeof fs);
    fs.epochs = cfg->epochs;
    fs.initial_epoch = cfg->initial_epoch;
    fs.steps = steps;
    fs.validation_steps = cfg->validation_steps;
    fs.has_val = v != NULL;
    fs.loss = (int)m->compile.loss;
    fs.from_logits = m->compile.from_logits;
    fs.batch = train->batch_size;
    fs.length = train->length;
    fs.y_dim = train->y_dim;
    fs.no_feature_cache = cfg->no_feature_cache;
    fs.n_samples = train->n_samples;
    fs.drawn = graft_source_drawn(train);
    fs.weights = (long long)m->n_weight_floats;
    fs.lr = m->compile.optimizer.learning_rate;
    if (v) {
        fs.vbatch = v->batch_size;
        fs.vlength = v->length;
        fs.vn_samples = v->n_samples;
        fs.vdrawn = graft_source_drawn(v);
    }
    uint64_t h = file_list_fingerprint(train);
    graft_status s = graft_comm_check_same(comm, &h, sizeof h, "fit: the training data's file list");
    h = file_list_fingerprint(v);
    if (s == GRAFT_OK) s = graft_comm_check_same(comm, &h, sizeof h, "fit: the validation data's file list");
    if (s == GRAFT_OK)
        s = graft_comm_check_same(comm, &fs, sizeof fs, "fit: the settings (epochs, batch, model, data position)");
    if (s != GRAFT_OK) return s;
    size_t bytes = m->n_weight_floats * sizeof(float);
    s = dist_bcast(comm, m->weights, bytes);
    if (s == GRAFT_OK && m->opt_m) s = dist_bcast(comm, m->opt_m, bytes);
    if (s == GRAFT_OK && m->opt_v) s = dist_bcast(comm, m->opt_v, bytes);
    if (s == GRAFT_OK) s = dist_bcast(comm, &m->opt_iterations, sizeof m->opt_iterations);
    /* The same noise keys on every rank: each sample's noise is then one
     * process's (layer.h's graft_noise). */
    if (s == GRAFT_OK) s = dist_bcast(comm, &m->rng, sizeof m->rng);
    return s;
}

/* Each rank's trainable BatchNormalization moved its statistics on its own
 * samples: all take their mean. */
static graft_status dist_average_moving_stats(graft_model *m, graft_comm *comm)
{
    const float inv = 1.0f / (float)graft_comm_size(comm);
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        if (!l->trains) continue;
        for (int k = 0; k < l->n_weights; k++) {
            graft_weight *w = &l->weights[k];
            if (w->trainable) continue;
            size_t n = graft_shape_size(&w->shape);
            graft_status s = dist_sum_floats(comm, w->data, n);
            if (s != GRAFT_OK) return s;
            for (size_t j = 0; j < n; j++) w->data[j] *= inv;
        }
    }
    return GRAFT_OK;
}

static graft_status evaluate_bufs(graft_model *m, graft_source *data, graft_feature_cache *cache,
                                  graft_feature_cache *below, int steps, graft_comm *comm,
                                  batch_bufs *b, double *loss, double *acc)
{
    double sums[3] = {0, 0, 0}; /* loss, accuracy, samples */
    if (steps <= 0) steps = data->length;
    for (int s = 0; s < steps; s++) {
        int n;
        graft_status st = comm ? fetch_share(m, data, cache, below, b, &n, false)
                               : fetch_forward(m, data, cache, below, b, &n, false);
        if (st != GRAFT_OK) return st;
        if (n == 0) continue;
        const float *pred = graft_model_output(m)->out;
        sums[0] += graft_loss_value(m->compile.loss, m->compile.from_logits, pred, b->y, n, b->out_dim) * n;
        sums[1] += graft_accuracy_value(m->compile.loss, pred, b->y, n, b->out_dim) * n;
        sums[2] += n;
    }
    if (comm) {
        graft_status st = dist_sum(comm, sums, 3);
        if (st != GRAFT_OK) return st;
    }
    *loss = sums[0] / sums[2];
    *acc = sums[1] / sums[2];
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
    s = evaluate_bufs(m, data, NULL, NULL, steps, NULL, &b, &l, &a);
    free_bufs(&b);
    if (loss) *loss = l;
    if (accuracy) *accuracy = a;
    return s;
}

graft_status graft_model_evaluate_comm(graft_model *m, graft_source *data, int steps,
                                       graft_comm *comm, double *loss, double *accuracy)
{
    if (!dist_active(comm)) return graft_model_evaluate(m, data, steps, loss, accuracy);
    if (!m || !m->compiled) return graft_fail(GRAFT_ESTATE, "evaluate: compile the model first");
    batch_bufs b = {0};
    graft_status s = check_source(m, data, "evaluate", &b);
    if (s != GRAFT_OK) return s;
    long where[3] = {data->length, data->batch_size, graft_source_drawn(data)};
    s = graft_comm_check_same(comm, where, sizeof where, "evaluate: the data (batches, batch size, position)");
    uint64_t h = file_list_fingerprint(data);
    if (s == GRAFT_OK) s = graft_comm_check_same(comm, &h, sizeof h, "evaluate: the data's file list");
    if (s == GRAFT_OK) s = dist_bcast(comm, m->weights, m->n_weight_floats * sizeof(float));
    double l = NAN, a = NAN;
    if (s == GRAFT_OK) {
        shard_source(data, comm, false);
        s = evaluate_bufs(m, data, NULL, NULL, steps, comm, &b, &l, &a);
        unshard_source(data);
    }
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
    /* k then stays a boundary of every later plan, inference's too. */
    if (!graft_cache_can_fill_below(m, k, first) || !graft_plan_keep_split(m, k)) {
        if (cfg->verbose > 0)
            printf("Feature cache: nothing kept below '%s' (%s)\n", name,
                   k >= first ? "this fit trains it, or a layer below it"
                              : "its input is computed together with it");
        return GRAFT_OK;
    }
    graft_status s = GRAFT_OK;
    if (cache && graft_source_book_get(train)->uid)
        s = graft_cache_open(m, train, k, cfg->cache_max_bytes, cfg->feature_store,
                             "training, for a later fit", cfg->verbose > 0, below);
    if (s == GRAFT_OK && val_cache && graft_source_book_get(cfg->validation_data)->uid)
        s = graft_cache_open(m, cfg->validation_data, k, cfg->cache_max_bytes, cfg->feature_store,
                             "validation, for a later fit", cfg->verbose > 0, val_below);
    return s;
}

/* Runs a callback hook unless it is rank 0's alone and this is another rank. */
#define CALL(cb, hook, ...) \
    ((cb).hook && (!(cb).root_only || rank == 0) ? (cb).hook((cb).ctx, __VA_ARGS__) : GRAFT_OK)

/* dist_step_part: the step graft_optimizer_begin_step sized, over a share. */
typedef struct {
    graft_model *m;
    float lr_t;
} share_step;

static void step_share(void *ctx, size_t off, size_t n, const float *g)
{
    const share_step *p = ctx;
    graft_optimizer_step_part(p->m, p->lr_t, off, n, g);
}

/* Every rank's shares of the optimizer state, and of the split kernels. */
static graft_status gather_all(graft_model *m, dist_grads *g)
{
    graft_status s = dist_grads_gather(g, m->opt_m);
    if (s == GRAFT_OK) s = dist_grads_gather(g, m->opt_v);
    if (s == GRAFT_OK) s = dist_grads_gather_split(g);
    return s;
}

/* One data-parallel step: this rank's share forward, the whole batch's
 * sample count, loss and accuracy summed over the ranks (with whether any
 * rank asked to stop or failed, and whose cache is full), the share's
 * gradient of the whole batch's mean loss, summed over the ranks (dist_grads:
 * in buckets while backward runs, or after it in shared memory, where each
 * rank also takes the optimizer step over its part). */
static graft_status dist_step(graft_model *m, graft_source *train, graft_feature_cache *cache,
                              graft_feature_cache *below, batch_bufs *b, graft_comm *comm,
                              dist_grads *g, graft_allsum *sync, graft_cache_balance *bal,
                              double sums[3], bool *stop)
{
    int n = 0;
    /* Summed over the ranks in one allreduce: samples, loss, hits; then
     * whether any rank asked to stop, failed, and how many caches are full. */
    double sum6[6] = {0, 0, 0, 0, 0, 0}, *part = sum6, *flags = sum6 + 3;
    graft_status s = GRAFT_OK;
    graft_row_split *split = m->split;
    /* A batch whose every image was unreadable, on every rank: take the next. */
    for (int tries = 0; tries <= train->length; tries++) {
        s = fetch_share(m, train, cache, below, b, &n, true);
        if (s != GRAFT_OK) n = 0;
        if ((sync || split) && n == 0) {
            /* The other ranks' synchronized BatchNormalization sums and
             * split kernels wait for this one's: a placeholder sample of
             * zeros runs through both passes, adding nothing to the
             * statistics, no rows to the split layers and no gradient. */
            memset(b->x, 0, b->xs * sizeof(float));
            if (sync) sync->empty = true;
            if (split) split->empty = true;
            graft_status ps = graft_model_forward(m, b->x, 1, true);
            if (s == GRAFT_OK) s = ps;
        }
        const float *pred = graft_model_output(m)->out;
        part[0] = n;
        part[1] = n ? graft_loss_grad_part(m->compile.loss, m->compile.from_logits, pred, b->y, n,
                                           n, b->out_dim, NULL)
                    : 0;
        part[2] = n ? graft_accuracy_value(m->compile.loss, pred, b->y, n, b->out_dim) * n : 0;
        flags[0] = m->stop_requested;
        flags[1] = s != GRAFT_OK;
        flags[2] = graft_cache_full(cache);
        double t_sum = m->profiling ? graft_now() : 0;
        graft_status rs = dist_sum(comm, sum6, 6);
        /* Caches only fill: from the next step on, shares stay even. */
        bal->on = rs == GRAFT_OK && flags[2] == graft_comm_size(comm);
        if (m->profiling) graft_profile_add_extra(m, GRAFT_PROFILE_RANK_SUMS, graft_now() - t_sum);
        if (sync && part[0] == 0) sync->empty = false;
        if (split && part[0] == 0) split->empty = false;
        if (rs != GRAFT_OK) return rs;
        if (s != GRAFT_OK) return s;
        if (flags[1] > 0) return graft_fail(GRAFT_EIO, "another rank failed to read its data");
        if (part[0] > 0) break;
    }
    if (part[0] == 0) return graft_fail(GRAFT_EFORMAT, "every image of a whole pass of the data was unreadable");
    sums[0] = part[0];
    sums[1] = part[1];
    sums[2] = part[2];
    *stop = flags[0] > 0;
    if (!isfinite(part[1])) return GRAFT_OK; /* the caller reports it, on every rank */
    if (n > 0) {
        const float *pred = graft_model_output(m)->out;
        graft_loss_grad_part(m->compile.loss, m->compile.from_logits, pred, b->y, n, (long)part[0],
                             b->out_dim, b->dpred);
        dist_grads_arm(g);
        s = graft_model_backward(m, b->dpred, n);
    } else if (sync || split) {
        memset(b->dpred, 0, (size_t)b->out_dim * sizeof(float));
        dist_grads_arm(g);
        s = graft_model_backward(m, b->dpred, 1);
        if (sync) sync->empty = false;
        if (split) split->empty = false;
    } else {
        dist_grads_arm(g);
        dist_grads_zero(g);
    }
    share_step ss = {m, dist_grads_steps(g) ? graft_optimizer_begin_step(m) : 0};
    const dist_step_part step = {step_share, &ss};
    double t_ar = m->profiling ? graft_now() : 0;
    graft_status fs = dist_grads_finish(g, &step);
    if (m->profiling) graft_profile_add_extra(m, GRAFT_PROFILE_ALLREDUCE, graft_now() - t_ar);
    return s != GRAFT_OK ? s : fs;
}

graft_status graft_model_fit(graft_model *m, graft_source *train, const graft_fit_cfg *cfg_in,
                             graft_history *history)
{
    if (!m || !cfg_in) return graft_fail(GRAFT_EINVAL, "fit: missing model or config");
    if (!m->compiled) return graft_fail(GRAFT_ESTATE, "fit: compile the model first (model.compile)");
    m->weights_constant = 0;
    if (cfg_in->epochs < cfg_in->initial_epoch || cfg_in->initial_epoch < 0)
        return graft_fail(GRAFT_EINVAL, "fit: epochs (%d) must be >= initial_epoch (%d) >= 0",
                          cfg_in->epochs, cfg_in->initial_epoch);
    graft_comm *comm = dist_active(cfg_in->comm) ? cfg_in->comm : NULL;
    const int rank = graft_comm_rank(comm);
    graft_fit_cfg fit_cfg = *cfg_in, *cfg = &fit_cfg;
    graft_allsum sync = {dist_bn_sum, comm, false};
    if (rank != 0) cfg->verbose = 0; /* rank 0 speaks for all */
    batch_bufs b = {0}, vb = {0};
    dist_grads *grads = NULL;
    graft_status s = check_source(m, train, "fit", &b);
    if (s != GRAFT_OK) return s;
    if (cfg->validation_data && (s = check_source(m, cfg->validation_data, "fit (validation)", &vb)) != GRAFT_OK) {
        free_bufs(&b);
        return s;
    }
    const int steps = cfg->steps_per_epoch > 0 ? cfg->steps_per_epoch : train->length;
    graft_flush_denormals();
    if (comm) {
        s = dist_start(m, train, cfg, steps);
        const size_t split_min = cfg->split_kernels ? cfg->split_kernels : DIST_SPLIT_MIN;
        if (s == GRAFT_OK)
            s = dist_grads_new(comm, m, cfg->allreduce, DIST_BUCKET_BYTES, split_min, train->batch_size, &grads);
        m->split = dist_grads_split(grads);
        if (m->split && cfg->verbose > 0) {
            printf("Kernels split by rows among %d ranks:", m->split->ranks);
            for (int i = 0; i < m->n_layers; i++) {
                const graft_layer *l = m->layers[i];
                if (m->split->rows(m->split, l))
                    printf(" '%s' (%s, %d x %d)", l->name, l->ops->class_name, l->weights[0].shape.dim[0],
                           l->weights[0].shape.dim[1]);
            }
            printf("\n");
        }
        if (s != GRAFT_OK) {
            free_bufs(&b);
            free_bufs(&vb);
            return s;
        }
        /* cppcheck-suppress autoVariables ; cleared before fit returns */
        if (cfg->sync_batch_norm) m->allsum = &sync;
        shard_source(train, comm, !cfg->no_feature_cache);
        if (cfg->validation_data) shard_source(cfg->validation_data, comm, !cfg->no_feature_cache);
    }
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
        /* A cache reads whole batches from a source: with ranks, only from
         * one that gives each rank its share. */
        if (s == GRAFT_OK && (!comm || graft_source_book_get(train)->can_shard))
            s = graft_cache_open(m, train, first, cfg->cache_max_bytes, store, "training",
                                 cfg->verbose > 0, &cache);
        if (s == GRAFT_OK && cfg->validation_data &&
            (!comm || graft_source_book_get(cfg->validation_data)->can_shard))
            s = graft_cache_open(m, cfg->validation_data, first, cfg->cache_max_bytes, store,
                                 "validation", cfg->verbose > 0, &val_cache);
        if (s == GRAFT_OK && store && cfg->keep_features_below)
            s = open_below(m, train, cfg, first, cache, val_cache, &below, &val_below);
    }
    /* Without a cache to keep each rank's samples, even shares. */
    if (comm && !cache) graft_source_book_of(train)->shard_by_id = 0;
    graft_cache_balance balance = {dist_exchange_rows, dist_alltoall_counts, comm, false};
    bool balance_said = false;
    if (comm && graft_source_book_get(train)->shard_by_id) {
        graft_cache_set_balance(cache, &balance);
        /* The caches keep samples by id from their opening on; the draws
         * are even shares by position, each row sent to the rank keeping it. */
        graft_source_book_of(train)->shard_by_id = 0;
    }
    if (comm && cfg->validation_data && !val_cache)
        graft_source_book_of(cfg->validation_data)->shard_by_id = 0;
    bool stop = false;
    m->noise_set = true;
    for (int c = 0; c < cfg->n_callbacks && s == GRAFT_OK; c++)
        s = CALL(cfg->callbacks[c], on_train_begin, m);
    for (int epoch = cfg->initial_epoch; epoch < cfg->epochs && !stop && s == GRAFT_OK; epoch++) {
        for (int c = 0; c < cfg->n_callbacks && s == GRAFT_OK; c++)
            s = CALL(cfg->callbacks[c], on_epoch_begin, m, epoch);
        if (s != GRAFT_OK) break;
        if (cfg->verbose) printf("Epoch %d/%d\n", epoch + 1, cfg->epochs);
        double t0 = graft_now(), lsum = 0, asum = 0;
        long seen = 0;
        for (int step = 0; step < steps; step++) {
            int n;
            double l, a;
            bool stop_now = false;
            /* One key per global batch, on every rank (noise_set). */
            m->noise = (graft_noise){graft_rng_next(&m->rng), b.ids, 0};
            if (comm) {
                double sums[3] = {0, 0, 0};
                s = dist_step(m, train, cache, below, &b, comm, grads, m->allsum ? &sync : NULL,
                              &balance, sums, &stop_now);
                if (s != GRAFT_OK) break;
                n = (int)sums[0];
                l = sums[1] / sums[0];
                a = sums[2] / sums[0];
            } else {
                s = fetch_forward(m, train, cache, below, &b, &n, true);
                if (s != GRAFT_OK) break;
                const float *pred = graft_model_output(m)->out;
                l = graft_loss_grad(m->compile.loss, m->compile.from_logits, pred, b.y, n,
                                    b.out_dim, b.dpred);
                a = isfinite(l) ? graft_accuracy_value(m->compile.loss, pred, b.y, n, b.out_dim) : 0;
            }
            if (!isfinite(l)) {
                /* Numbered from 1 like the progress bar and the interrupt message. */
                s = graft_fail(GRAFT_ENAN,
                               "epoch %d, batch %d of %d: invalid loss (%g), terminating training",
                               epoch + 1, step + 1, steps, l);
                break;
            }
            if (!comm) {
                s = graft_model_backward(m, b.dpred, n);
                if (s != GRAFT_OK) break;
                stop_now = m->stop_requested;
            }
            if (!dist_grads_steps(grads)) {
                double t_opt = m->profiling ? graft_now() : 0;
                graft_optimizer_step(m);
                if (m->profiling) graft_profile_add_extra(m, GRAFT_PROFILE_OPTIMIZER, graft_now() - t_opt);
            }
            lsum += l * n;
            asum += a * n;
            seen += n;
            if (cfg->verbose == 1 && step + 1 < steps)
                progress(step + 1, steps, graft_now() - t0, lsum / seen, asum / seen, false, NULL);
            if (stop_now) {
                m->stop_requested = 0;
                s = graft_fail(GRAFT_EINTERRUPTED, "training stopped at epoch %d, batch %d",
                               epoch + 1, step + 1);
                break;
            }
        }
        if (s != GRAFT_OK) break;
        if (comm && !m->allsum && (s = dist_average_moving_stats(m, comm)) != GRAFT_OK) break;
        /* The whole optimizer state and split kernels on every rank, for
         * validation and a checkpoint. */
        if ((s = gather_all(m, grads)) != GRAFT_OK) break;
        graft_epoch_logs logs = {epoch, lsum / seen, asum / seen, NAN, NAN,
                                 m->compile.optimizer.learning_rate};
        if (cfg->validation_data) {
            s = evaluate_bufs(m, cfg->validation_data, val_cache, val_below, cfg->validation_steps,
                              comm, &vb, &logs.val_loss, &logs.val_accuracy);
            if (s != GRAFT_OK) break;
        }
        double elapsed = graft_now() - t0;
        if (cfg->verbose == 1) progress(steps, steps, elapsed, logs.loss, logs.accuracy, true, &logs);
        if (cfg->verbose == 2) epoch_line(steps, elapsed, &logs);
        if (cfg->verbose && balance.on && !balance_said) {
            printf("Feature cache (training): every rank's shard is full; from here on nothing is "
                   "decoded, and each rank takes an even share of each batch, sent the cached "
                   "features it lacks\n");
            balance_said = true;
        }
        if (history)
            s = graft_history_append(history, epoch, logs.loss, logs.accuracy, logs.val_loss,
                                     logs.val_accuracy, logs.lr, elapsed);
        double agree[2] = {0, 0}; /* stop, failed */
        for (int c = 0; c < cfg->n_callbacks && s == GRAFT_OK; c++) {
            int want_stop = 0;
            s = CALL(cfg->callbacks[c], on_epoch_end, m, &logs, &want_stop);
            stop |= want_stop != 0;
        }
        if (comm) {
            /* A checkpoint that rank 0 failed to write ends every rank. */
            agree[0] = stop;
            agree[1] = s != GRAFT_OK;
            graft_status as = dist_sum(comm, agree, 2);
            if (s == GRAFT_OK && as != GRAFT_OK) s = as;
            if (s == GRAFT_OK && agree[1] > 0)
                s = graft_fail(GRAFT_EIO, "fit: a callback failed on another rank");
            stop = agree[0] > 0;
        }
    }
    for (int c = 0; c < cfg->n_callbacks; c++) {
        graft_status cs = CALL(cfg->callbacks[c], on_train_end, m);
        if (s == GRAFT_OK) s = cs;
    }
    /* Ended mid-epoch on every rank alike (a stop all agreed to, an invalid
     * loss): the whole optimizer state, as one process would leave it. A
     * failure of one rank alone does not wait on the others here. */
    if (s == GRAFT_EINTERRUPTED || s == GRAFT_ENAN) {
        graft_status gs = gather_all(m, grads);
        if (gs != GRAFT_OK) s = gs;
    }
    graft_cache_set_balance(cache, NULL);
    graft_cache_close(cache);
    graft_cache_close(val_cache);
    graft_cache_close(below);
    graft_cache_close(val_below);
    dist_grads_free(grads);
    m->allsum = NULL;
    m->split = NULL;
    m->noise_set = false;
    m->noise.ids = NULL;
    if (comm) {
        unshard_source(train);
        unshard_source(cfg->validation_data);
    }
    free_bufs(&b);
    free_bufs(&vb);
    return s;
}
