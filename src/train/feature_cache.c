/* Feature caching: layers below the lowest trainable one are frozen and
 * deterministic during a fit, so their output at that boundary is a pure
 * function of the sample. It is computed once per sample and kept (in memory,
 * or in a temporary file past a size bound); later epochs decode nothing and
 * run only the layers above the boundary. Keras recomputes the frozen base
 * every epoch.
 *
 * A feature store keeps caches after their fit, for a later fit on the same
 * source (the same object: its uid) whose layers below the boundary are the
 * same with the same weights (a hash of their names, shapes and weights,
 * checked at every open). A fit may also fill a second cache below a lower
 * layer in the same forward passes: the boundary of a later fine-tuning, whose
 * first epoch then decodes and recomputes nothing. */
#include "core/file_open.h"
#include "source.h"
#include "train.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct graft_feature_cache {
    int first;           /* the first layer run on every step */
    /* In a store: the source, and the hash of what lies below `first`. */
    uint64_t source_uid, key;
    bool stored;         /* owned by a store: freed with it */
    graft_feature_cache *next_stored;
    int n_front;         /* layers below `first` whose outputs are read above it */
    int *front;
    size_t *front_floats; /* per sample, for each */
    size_t sample_floats;
    long n_samples, count;
    /* Sharded by id (data parallelism), this rank draws only the ids
     * i = rank (mod ranks), kept in slot i / ranks; else ranks = 1. */
    int rank, ranks;
    long n_mine;         /* the samples this rank draws: the slots */
    unsigned char *have; /* per slot */
    float *mem;          /* n_mine * sample_floats (mapped pages), or NULL when spilled */
    size_t mem_bytes;    /* counted in mem_in_use */
    FILE *spill;
    float *row;          /* one sample's features, for the spill file */
    const graft_cache_balance *balance; /* NULL: shares by id only */
    int *counts;         /* balancing: rows sent to, received from and read of each rank */
    unsigned char *xfer; /* balancing: the rows sent and received */
    size_t xfer_bytes;
};

struct graft_feature_store {
    graft_feature_cache *head;
};

/* The memory bound is one budget for the process: a fit's training and
 * validation caches, the ones kept below a later boundary and those of
 * other fits (other threads) all count against it. */
static atomic_size_t mem_in_use;

static bool reserve_mem(size_t bytes, size_t budget)
{
    size_t used = atomic_load(&mem_in_use);
    do {
        if (bytes > budget || used > budget - bytes) return false;
    } while (!atomic_compare_exchange_weak(&mem_in_use, &used, used + bytes));
    return true;
}

size_t graft_cache_memory_in_use(void) { return atomic_load(&mem_in_use); }

bool graft_cache_in_memory(const graft_feature_cache *c) { return c && c->mem; }

long graft_cache_capacity(const graft_feature_cache *c) { return c ? c->n_mine : 0; }

long graft_cache_count(const graft_feature_cache *c) { return c ? c->count : 0; }

bool graft_cache_full(const graft_feature_cache *c) { return c && c->count == c->n_mine; }

void graft_cache_set_balance(graft_feature_cache *c, const graft_cache_balance *b)
{
    if (c) c->balance = b;
}

graft_feature_store *graft_feature_store_new(void)
{
    graft_feature_store *st = calloc(1, sizeof *st);
    if (!st) graft_fail(GRAFT_ENOMEM, "out of memory for a feature store");
    return st;
}

static void cache_free(graft_feature_cache *c);

void graft_feature_store_free(graft_feature_store *st)
{
    if (!st) return;
    for (graft_feature_cache *c = st->head, *next; c; c = next) {
        next = c->next_stored;
        cache_free(c);
    }
    free(st);
}

void graft_cache_close(graft_feature_cache *c)
{
    if (c && !c->stored) cache_free(c);
}

static void cache_free(graft_feature_cache *c)
{
    free(c->front);
    free(c->front_floats);
    free(c->have);
    graft_pages_free(c->mem);
    atomic_fetch_sub(&mem_in_use, c->mem_bytes);
    if (c->spill) fclose(c->spill);
    free(c->row);
    free(c->counts);
    free(c->xfer);
    free(c);
}

/* FNV-1a over bytes: the identity of what lies below a boundary. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* The same, 8 bytes at a time (weights: MobileNet's base is 13 MB). */
static uint64_t hash_words(uint64_t h, const float *p, size_t n)
{
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64_t w;
        memcpy(&w, p + i, sizeof w);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    return hash_bytes(h, p + i, (n - i) * sizeof(float));
}

/* Layers below `first` and the boundary's outputs: names, kinds, shapes and
 * every weight (moving statistics included). */
static uint64_t below_key(const graft_model *m, const graft_feature_cache *c)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < c->first; i++) {
        const graft_layer *l = m->layers[i];
        h = hash_bytes(h, l->name, strlen(l->name) + 1);
        h = hash_bytes(h, l->ops->class_name, strlen(l->ops->class_name) + 1);
        h = hash_bytes(h, &l->out_shape, sizeof l->out_shape);
        for (int k = 0; k < l->n_weights; k++)
            h = hash_words(h, l->weights[k].data, graft_shape_size(&l->weights[k].shape));
    }
    h = hash_bytes(h, c->front, (size_t)c->n_front * sizeof *c->front);
    return hash_bytes(h, c->front_floats, (size_t)c->n_front * sizeof *c->front_floats);
}

graft_status graft_cache_open(graft_model *m, graft_source *src, int first, size_t max_bytes,
                              graft_feature_store *store, const char *what, bool verbose,
                              graft_feature_cache **out)
{
    *out = NULL;
    int L = m->n_layers;
    if (!src->next_ids || !src->deterministic || src->n_samples <= 0 || first < 1 || first > L)
        return GRAFT_OK;
    /* With everything trainable only the input itself could be kept: worth it
     * when the source decodes images, not when it copies arrays. */
    if (first == 1 && !src->decodes) return GRAFT_OK;
    for (int i = 1; i < first; i++) {
        const graft_layer *l = m->layers[i];
        if (l->ops->stochastic && l->ops->stochastic(l)) return GRAFT_OK;
    }
    graft_feature_cache *c = calloc(1, sizeof *c);
    if (!c) return graft_fail(GRAFT_ENOMEM, "out of memory for the feature cache");
    c->first = first;
    c->n_samples = src->n_samples;
    c->ranks = 1;
    if (graft_source_book_get(src)->shard_by_id && graft_source_book_get(src)->shard_count > 1) {
        c->rank = graft_source_book_get(src)->shard_rank;
        c->ranks = graft_source_book_get(src)->shard_count;
    }
    c->n_mine = c->n_samples > c->rank ? (c->n_samples - c->rank + c->ranks - 1) / c->ranks : 0;
    c->front = malloc((size_t)first * sizeof(int));
    c->front_floats = malloc((size_t)first * sizeof(size_t));
    if (!c->front || !c->front_floats) goto nomem;
    if (c->ranks > 1 && !(c->counts = malloc(3 * (size_t)c->ranks * sizeof(int)))) goto nomem;
    int out_idx = graft_model_output(m)->index;
    for (int j = 0; j < first; j++) {
        bool read_above = j == out_idx;
        for (int i = first; i < L && !read_above; i++)
            for (int k = 0; k < m->layers[i]->n_inputs; k++) read_above |= m->layers[i]->inputs[k] == j;
        if (!read_above) continue;
        /* An output that never exists on its own (computed inside a fused
         * step of the plan): no boundary here. */
        if (!graft_plan_splits_at(m, first) || !graft_plan_keep_split(m, first)) {
            cache_free(c);
            return GRAFT_OK;
        }
        if (j == 0 && !src->decodes) { /* only the raw input would be kept */
            cache_free(c);
            return GRAFT_OK;
        }
        c->front[c->n_front] = j;
        c->front_floats[c->n_front] = graft_shape_size(&m->layers[j]->out_shape);
        c->sample_floats += c->front_floats[c->n_front++];
    }
    size_t bytes; /* at least one row: a rank may have no sample at all */
    if (!graft_mul_ok(c->sample_floats * sizeof(float), (size_t)(c->n_mine ? c->n_mine : 1), &bytes))
        goto nomem;
    if (store && graft_source_book_get(src)->uid) {
        c->source_uid = graft_source_book_get(src)->uid;
        c->key = below_key(m, c);
        for (graft_feature_cache *k = store->head; k; k = k->next_stored) {
            if (k->source_uid != c->source_uid || k->first != first || k->key != c->key ||
                k->n_samples != c->n_samples || k->sample_floats != c->sample_floats ||
                k->rank != c->rank || k->ranks != c->ranks)
                continue;
            if (verbose)
                printf("Feature cache (%s): %ld of %ld samples%s below '%s' kept from an earlier fit\n",
                       what, k->count, k->n_mine, k->ranks > 1 ? " (this rank's shard)" : "",
                       m->layers[first]->name);
            cache_free(c);
            *out = k;
            return GRAFT_OK;
        }
    }
    c->have = calloc((size_t)(c->n_mine ? c->n_mine : 1), 1);
    if (!c->have) goto nomem;
    if (max_bytes == 0) max_bytes = (size_t)4 << 30;
    if (reserve_mem(bytes, max_bytes)) {
        c->mem = graft_pages_alloc(bytes);
        if (c->mem) c->mem_bytes = bytes;
        else atomic_fetch_sub(&mem_in_use, bytes);
    }
    if (!c->mem) { /* too big, or no memory for it: spill to a temporary file */
        graft_status s = graft_temp_file(&c->spill);
        /* sample_floats > 0: layer `first` reads at least one frontier output. */
        // NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI)
        if (s == GRAFT_OK && !(c->row = malloc(c->sample_floats * sizeof(float))))
            s = graft_fail(GRAFT_ENOMEM, "out of memory for the feature cache");
        if (s != GRAFT_OK) {
            cache_free(c);
            if (s == GRAFT_ENOMEM) return s;
            return graft_fail(s, "feature cache: %s, for %.0f MiB (set TMPDIR to a folder with room)",
                              graft_last_error(), (double)bytes / 1048576.0);
        }
    }
    if (verbose && c->ranks > 1)
        printf("Feature cache (%s): %ld of %ld samples (rank %d's shard of %d) x %zu floats below "
               "'%s' (%.0f MiB, %s)\n",
               what, c->n_mine, c->n_samples, c->rank, c->ranks, c->sample_floats,
               m->layers[first]->name, (double)bytes / 1048576.0,
               c->mem ? "in memory" : "in a temporary file");
    else if (verbose)
        printf("Feature cache (%s): %ld samples x %zu floats below '%s' (%.0f MiB, %s)\n", what,
               c->n_samples, c->sample_floats, m->layers[first]->name, (double)bytes / 1048576.0,
               c->mem ? "in memory" : "in a temporary file");
    if (store && graft_source_book_get(src)->uid) {
        c->stored = true;
        c->next_stored = store->head;
        store->head = c;
    }
    *out = c;
    return GRAFT_OK;
nomem:
    cache_free(c);
    return graft_fail(GRAFT_ENOMEM, "out of memory for the feature cache");
}

/* Copies one sample's row to (store: from) sample `s` of the frontier
 * buffers. */
static void row_buffers(const graft_feature_cache *c, graft_model *m, int s, float *row, bool store)
{
    for (int k = 0; k < c->n_front; k++) {
        float *buf = m->layers[c->front[k]]->out + (size_t)s * c->front_floats[k];
        if (store) memcpy(row, buf, c->front_floats[k] * sizeof(float));
        else memcpy(buf, row, c->front_floats[k] * sizeof(float));
        row += c->front_floats[k];
    }
}

/* The cached row of this rank's slot, copied to dst. */
static graft_status read_row(const graft_feature_cache *c, long slot, float *dst)
{
    size_t row_bytes = c->sample_floats * sizeof(float);
    if (c->mem) {
        memcpy(dst, c->mem + (size_t)slot * c->sample_floats, row_bytes);
        return GRAFT_OK;
    }
    if (pread(fileno(c->spill), dst, row_bytes, (off_t)slot * (off_t)row_bytes) != (ssize_t)row_bytes)
        return graft_fail(GRAFT_EIO, "feature cache: reading the temporary file failed");
    return GRAFT_OK;
}

/* Stores a row in this rank's slot. */
static graft_status put_row(const graft_feature_cache *c, long slot, const float *row)
{
    size_t row_bytes = c->sample_floats * sizeof(float);
    if (c->mem) {
        memcpy(c->mem + (size_t)slot * c->sample_floats, row, row_bytes);
        return GRAFT_OK;
    }
    if (pwrite(fileno(c->spill), row, row_bytes, (off_t)slot * (off_t)row_bytes) !=
        (ssize_t)row_bytes)
        return graft_fail(GRAFT_EIO,
                          "feature cache: writing the temporary file failed (disk full?)");
    return GRAFT_OK;
}

/* The rank whose even share of a batch of `count` holds position p:
 * shares are [count r / R, count (r + 1) / R). */
static int taker_of(int count, int R, int p)
{
    int r = 0;
    while ((long)count * (r + 1) / R <= p) r++;
    return r;
}

/* Copies sample `s` of the batch between the frontier buffers and the cache's
 * slot for it. */
static graft_status transfer(graft_feature_cache *c, graft_model *m, int s, long slot, bool store)
{
    float *row = c->mem ? c->mem + (size_t)slot * c->sample_floats : c->row;
    graft_status st = c->mem || store ? GRAFT_OK : read_row(c, slot, row);
    if (st != GRAFT_OK) return st;
    row_buffers(c, m, s, row, store);
    return !c->mem && store ? put_row(c, slot, row) : GRAFT_OK;
}

/* Stores the batch's samples that `c` keeps (this rank's, id mod ranks) and
 * lacks, from the boundary's buffers. */
static graft_status store_new(graft_feature_cache *c, graft_model *m, const long *ids, int n)
{
    graft_status s = GRAFT_OK;
    for (int i = 0; i < n && s == GRAFT_OK; i++) {
        long slot = ids[i] / c->ranks;
        if (ids[i] % c->ranks != c->rank || c->have[slot]) continue;
        s = transfer(c, m, i, slot, true);
        c->have[slot] = 1;
        c->count++;
    }
    return s;
}

bool graft_cache_can_fill_below(const graft_model *m, int k, int first)
{
    /* No step of the plan may compute both a layer below k and one at or
     * above it (a fused pool, BatchNormalization or ReLU): the buffer below
     * would hold its output, or none would exist. */
    return k >= 1 && k < first && graft_plan_splits_at(m, k);
}

static graft_status bad_id(const graft_feature_cache *c, long id)
{
    return graft_fail(GRAFT_EINVAL, "the data source reported sample id %ld of %ld", id, c->n_samples);
}

/* Room in c->xfer for `rows` rows of `row_bytes`. */
static graft_status xfer_room(graft_feature_cache *c, size_t rows, size_t row_bytes)
{
    size_t need;
    if (!graft_mul_ok(rows, row_bytes, &need))
        return graft_fail(GRAFT_ENOMEM, "feature cache: %zu rows to exchange do not fit in memory",
                          rows);
    if (need <= c->xfer_bytes) return GRAFT_OK;
    unsigned char *grown = realloc(c->xfer, need);
    if (!grown)
        return graft_fail(GRAFT_ENOMEM, "feature cache: out of memory for %zu rows to exchange",
                          rows);
    c->xfer = grown;
    c->xfer_bytes = need;
    return GRAFT_OK;
}

/* graft_cache_balance: the whole batch's ids and labels; this rank's even
 * share of its positions, with the rows of that share that other ranks hold
 * received from them (and theirs sent); then the layers above. The ranks'
 * row counts follow from the ids alone, which every rank draws alike. */
static graft_status fetch_balanced(graft_feature_cache *c, graft_model *m, graft_source *src,
                                   float *x, float *y, long *ids, int *n, bool training)
{
    const int R = c->ranks, me = c->rank;
    const size_t sf = c->sample_floats;
    graft_source_book *sb = graft_source_book_of(src);
    int count = 0;
    sb->shard_whole = 1;
    graft_status s = src->next_ids(src, NULL, y, &count, ids);
    sb->shard_whole = 0;
    *n = 0;
    if (s == GRAFT_OK && (count < 0 || count > src->batch_size))
        s = graft_fail(GRAFT_EINVAL, "the data source returned a batch of %d samples", count);
    for (int i = 0; s == GRAFT_OK && i < count; i++)
        if (ids[i] < 0 || ids[i] >= c->n_samples) s = bad_id(c, ids[i]);
    if (s != GRAFT_OK) count = 0; /* sends nothing: the others fail this step too */
    int *send_rows = c->counts, *recv_rows = c->counts + R, *at = c->counts + 2 * R;
    memset(c->counts, 0, 2 * (size_t)R * sizeof(int));
    const int lo = (int)((long)count * me / R), hi = (int)((long)count * (me + 1) / R);
    size_t sent = 0;
    for (int p = 0; p < count; p++) {
        int owner = (int)(ids[p] % R), taker = taker_of(count, R, p);
        if (owner == me && taker != me) send_rows[taker]++, sent++;
        if (taker == me && owner != me) recv_rows[owner]++;
    }
    size_t got = 0;
    for (int q = 0; q < R; q++) got += (size_t)recv_rows[q];
    if (s == GRAFT_OK) s = xfer_room(c, sent + got, sf * sizeof(float));
    if (s != GRAFT_OK) memset(send_rows, 0, sizeof(int) * (size_t)R);
    /* Rows to send in the batch's order: by taking rank, as takers' shares
     * follow each other. */
    float *send = (float *)(void *)c->xfer, *recv = c->xfer ? send + sent * sf : NULL;
    for (int p = 0, k = 0; p < count && s == GRAFT_OK && send; p++)
        if (ids[p] % R == me && taker_of(count, R, p) != me) s = read_row(c, ids[p] / R, send + (size_t)k++ * sf);
    graft_status xs =
        c->balance->exchange(c->balance->ctx, sf * sizeof(float), send, send_rows, recv, recv_rows);
    if (s == GRAFT_OK) s = xs;
    if (s == GRAFT_OK && hi > lo) {
        memmove(y, y + (size_t)lo * (size_t)src->y_dim, (size_t)(hi - lo) * (size_t)src->y_dim * sizeof(float));
        memmove(ids, ids + lo, (size_t)(hi - lo) * sizeof(long));
        *n = hi - lo;
        s = graft_model_prepare(m, *n, training);
        if (s == GRAFT_OK) graft_model_bind_input(m, x);
        for (int q = 0, k = 0; q < R; q++) at[q] = k, k += recv_rows[q];
        for (int i = 0; i < *n && s == GRAFT_OK; i++) {
            int owner = (int)(ids[i] % R);
            if (owner == me) s = transfer(c, m, i, ids[i] / R, false);
            else row_buffers(c, m, i, recv + (size_t)at[owner]++ * sf, false);
        }
        if (s == GRAFT_OK) s = graft_model_forward_range(m, x, *n, training, c->first, m->n_layers);
    }
    return s;
}

/* This rank's part of the next batch, ids checked and the time waited
 * counted: by_id, its shard (not decoded once the cache is full); else its
 * share by position (decoded). */
static graft_status draw_shard(const graft_feature_cache *c, graft_model *m, graft_source *src,
                               float *x, float *y, long *ids, int *n, bool by_id)
{
    double t0 = m->profiling ? graft_now() : 0;
    graft_status s = src->next_ids(src, by_id && c->count == c->n_mine ? NULL : x, y, n, ids);
    if (m->profiling) graft_profile_add_extra(m, GRAFT_PROFILE_DATA, graft_now() - t0);
    for (int i = 0; s == GRAFT_OK && i < *n; i++) {
        if (ids[i] < 0 || ids[i] >= c->n_samples) return bad_id(c, ids[i]);
        if (by_id && ids[i] % c->ranks != c->rank)
            return graft_fail(GRAFT_EINVAL,
                              "the data source gave sample id %ld to rank %d of %d (not its shard)",
                              ids[i], c->rank, c->ranks);
    }
    return s;
}

/* Runs the n decoded samples up to the cache's boundary and stores what it
 * lacks, before the layers above run: once read, the boundary's buffers may
 * be reused. The same for a lower boundary kept for a later fit. */
static graft_status fill_to_boundary(graft_feature_cache *c, graft_feature_cache *below,
                                     graft_model *m, const float *x, const long *ids, int n,
                                     bool training)
{
    graft_status s = GRAFT_OK;
    int lo = 1;
    if (below && below->count < below->n_mine) {
        s = graft_model_forward_range(m, x, n, training, 1, below->first);
        if (s == GRAFT_OK) s = store_new(below, m, ids, n);
        lo = below->first;
    }
    if (s == GRAFT_OK) s = graft_model_forward_range(m, x, n, training, lo, c->first);
    if (s == GRAFT_OK) s = store_new(c, m, ids, n);
    return s;
}

/* Sends the rows at cache `k`'s boundary of this rank's n samples that
 * other ranks keep (id mod ranks) to them, and stores the rows it is sent
 * and its own; collective. `ok` false: this rank failed its draw, and every
 * rank fails the step (it sends counts of -1). */
static graft_status send_to_owners(graft_feature_cache *k, const graft_cache_balance *bal,
                                   graft_model *m, const long *ids, int n, bool ok)
{
    const int R = k->ranks, me = k->rank;
    const size_t fb = k->sample_floats * sizeof(float), rb = fb + sizeof(long);
    int *send_rows = k->counts, *recv_rows = k->counts + R;
    size_t sent = 0, got = 0;
    for (int q = 0; q < R; q++)
        send_rows[q] = ok ? 0 : -1;
    for (int i = 0; ok && i < n; i++)
        if (ids[i] % R != me) send_rows[ids[i] % R]++, sent++;
    graft_status s = bal->counts(bal->ctx, send_rows, recv_rows);
    for (int q = 0; s == GRAFT_OK && q < R; q++) {
        if (recv_rows[q] < 0)
            s = graft_fail(GRAFT_EIO, "another rank failed to read its data");
        else
            got += (size_t)recv_rows[q];
    }
    if (!ok || s != GRAFT_OK) return s; /* every rank returns here alike */
    graft_status ss = xfer_room(k, sent + got, rb);
    if (ss != GRAFT_OK)
        memset(send_rows, 0, sizeof(int) * (size_t)R); /* the exchange fails every rank */
    unsigned char *send = k->xfer, *recv = k->xfer ? k->xfer + sent * rb : NULL;
    for (int q = 0, r = 0; ss == GRAFT_OK && send && q < R; q++)
        for (int i = 0; i < n && q != me; i++) {
            if (ids[i] % R != q) continue;
            unsigned char *row = send + (size_t)r++ * rb;
            row_buffers(k, m, i, (float *)(void *)row, true);
            memcpy(row + fb, &ids[i], sizeof(long));
        }
    s = bal->exchange(bal->ctx, rb, send, send_rows, recv, recv_rows);
    if (ss != GRAFT_OK) return ss;
    if (s != GRAFT_OK) return s;
    s = store_new(k, m, ids, n);
    for (size_t r = 0; recv && r < got && s == GRAFT_OK; r++) {
        const unsigned char *row = recv + r * rb;
        long id;
        memcpy(&id, row + fb, sizeof(long));
        if (id < 0 || id >= k->n_samples || id % R != me) return bad_id(k, id);
        if (k->have[id / R]) continue;
        s = put_row(k, id / R, (const float *)(const void *)row);
        k->have[id / R] = 1;
        k->count++;
    }
    return s;
}

/* graft_cache_balance while the caches fill: each rank draws even shares
 * by position, decodes them and runs the layers below the boundary (and a
 * lower cache's) on them; the rows of samples another rank keeps (id mod
 * ranks) go to it to store; then the share runs the layers above. Every
 * rank decodes until all caches are full, its own full or not. */
static graft_status fill_balanced(graft_feature_cache *c, graft_feature_cache *below,
                                  graft_model *m, graft_source *src, float *x, float *y, long *ids,
                                  int *n, bool training)
{
    const graft_cache_balance *bal = c->balance;
    *n = 0;
    int got = 0;
    graft_status s = draw_shard(c, m, src, x, y, ids, &got, false);
    int lo = 1;
    if (below) {
        if (s == GRAFT_OK && got > 0)
            s = graft_model_forward_range(m, x, got, training, 1, below->first);
        graft_status bs = send_to_owners(below, bal, m, ids, got, s == GRAFT_OK);
        if (s == GRAFT_OK) s = bs;
        lo = below->first;
    }
    if (s == GRAFT_OK && got > 0) s = graft_model_forward_range(m, x, got, training, lo, c->first);
    graft_status cs = send_to_owners(c, bal, m, ids, got, s == GRAFT_OK);
    if (s == GRAFT_OK) s = cs;
    if (s != GRAFT_OK || got == 0) return s;
    *n = got;
    return graft_model_forward_range(m, x, got, training, c->first, m->n_layers);
}

graft_status graft_cache_fetch_forward(graft_feature_cache *c, graft_feature_cache *below,
                                       graft_model *m, graft_source *src, float *x, float *y,
                                       long *ids, int *n, bool training)
{
    /* `on` is the same on every rank: all take the same collective path. */
    if (c->balance && c->ranks > 1)
        return c->balance->on ? fetch_balanced(c, m, src, x, y, ids, n, training)
                              : fill_balanced(c, below, m, src, x, y, ids, n, training);
    /* Until every sample is cached, decode and run the whole model (a batch
     * can mix cached and new samples when a fit starts in the middle of a
     * pass); after that, decode nothing and run only the layers above. */
    bool full = c->count == c->n_mine;
    graft_status s = draw_shard(c, m, src, x, y, ids, n, true);
    if (s != GRAFT_OK || *n == 0) return s; /* an empty batch: the caller takes the next */
    if (!full) {
        s = fill_to_boundary(c, below, m, x, ids, *n, training);
        if (s == GRAFT_OK) s = graft_model_forward_range(m, x, *n, training, c->first, m->n_layers);
        return s;
    }
    if ((s = graft_model_prepare(m, *n, training)) != GRAFT_OK) return s;
    graft_model_bind_input(m, x); /* the batch buffer, in case the input itself is cached */
    for (int i = 0; i < *n && s == GRAFT_OK; i++) s = transfer(c, m, i, ids[i] / c->ranks, false);
    if (s == GRAFT_OK) s = graft_model_forward_range(m, x, *n, training, c->first, m->n_layers);
    return s;
}
