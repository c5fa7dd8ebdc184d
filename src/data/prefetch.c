/*
 * Worker threads that prepare batches ahead of the training loop.
 *
 * Work is handed out one sample at a time from a global sequence (pass,
 * position) so that every worker stays busy, and each sample is written to
 * its fixed place in a ring of `depth` batch slots. What a sample contains
 * depends only on (pass, position) - the fill function derives shuffling and
 * augmentation from those - so batches are the same whatever the timing.
 * A worker waits while its batch's slot still holds a batch the consumer has
 * not taken, which bounds memory to `depth` batches.
 */
#include "data/data.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int done;          /* samples finished */
    float *x, *y;
    int *idx;
    signed char *kept; /* per position: 1 kept, 0 dropped */
    graft_status st;   /* the failure of the first failing sample, in batch order */
    int err_k;         /* that sample's place in the batch (valid while st fails) */
    char err[1024];
} slot;

struct graft_prefetch {
    int n, batch_size, length;
    size_t xf, yf;
    graft_fill_fn fill;
    void *ctx;
    int n_workers, depth;
    pthread_t *threads;
    int started, running;
    pthread_mutex_t mu;
    pthread_cond_t can_work, ready;
    long next_job; /* the next (pass * n + position) to hand out */
    long consumed; /* batches handed to the consumer */
    int stop;
    slot *slots;
};

uint64_t graft_mix64(uint64_t a, uint64_t b)
{
    uint64_t z = a + 0x9e3779b97f4a7c15ULL * (b + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint32_t graft_permute_index(uint32_t i, uint32_t n, uint64_t key)
{
    if (n <= 1) return 0;
    int bits = 1;
    while ((1ull << bits) < n) bits++;
    int half = (bits + 1) / 2;
    uint32_t mask = (1u << half) - 1, x = i;
    /* A Feistel network permutes [0, 2^(2*half)); walking the cycle until
     * the value falls below n restricts it to a permutation of [0, n). */
    do {
        uint32_t l = x >> half, r = x & mask;
        for (int round = 0; round < 4; round++) {
            uint32_t f = (uint32_t)graft_mix64(key + (uint64_t)round, r) & mask;
            uint32_t t = r;
            r = l ^ f;
            l = t;
        }
        x = l << half | r;
    } while (x >= n);
    return x;
}

static int batch_count(const graft_prefetch *p, long batch)
{
    int b = (int)(batch % p->length);
    int left = p->n - b * p->batch_size;
    return left < p->batch_size ? left : p->batch_size;
}

static void *worker(void *arg)
{
    graft_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        long job = p->next_job++;
        long pass = job / p->n;
        int pos = (int)(job % p->n);
        long batch = pass * p->length + pos / p->batch_size;
        while (!p->stop && batch >= p->consumed + p->depth) pthread_cond_wait(&p->can_work, &p->mu);
        if (p->stop) break;
        slot *s = &p->slots[batch % p->depth];
        pthread_mutex_unlock(&p->mu);

        int k = pos % p->batch_size, index = -1;
        graft_clear_error();
        int r = p->fill(p->ctx, pass, pos, s->x + (size_t)k * p->xf,
                        p->yf ? s->y + (size_t)k * p->yf : NULL, &index);

        pthread_mutex_lock(&p->mu);
        s->kept[k] = r == GRAFT_OK;
        s->idx[k] = index;
        /* The lowest place, not the first to finish: which file a strict
         * pass names must not depend on how the workers were scheduled. */
        if (r > 0 && (s->st == GRAFT_OK || k < s->err_k)) {
            s->st = (graft_status)r;
            s->err_k = k;
            snprintf(s->err, sizeof s->err, "%s", graft_last_error());
        }
        if (++s->done == batch_count(p, batch)) pthread_cond_broadcast(&p->ready);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

graft_status graft_prefetch_new(int n, int batch_size, size_t xf, size_t yf, int workers,
                                int depth, graft_fill_fn fill, void *ctx, graft_prefetch **out)
{
    *out = NULL;
    if (n <= 0 || batch_size <= 0 || workers <= 0 || depth <= 0)
        return graft_fail(GRAFT_EINVAL, "prefetch: n=%d batch_size=%d workers=%d depth=%d", n,
                          batch_size, workers, depth);
    graft_prefetch *p = calloc(1, sizeof *p);
    if (!p) return graft_fail(GRAFT_ENOMEM, "prefetch: no memory");
    p->n = n;
    p->batch_size = batch_size;
    p->length = (n + batch_size - 1) / batch_size;
    p->xf = xf;
    p->yf = yf;
    p->fill = fill;
    p->ctx = ctx;
    p->n_workers = workers;
    p->depth = depth;
    p->slots = calloc((size_t)depth, sizeof *p->slots);
    p->threads = calloc((size_t)workers, sizeof *p->threads);
    if (!p->slots || !p->threads) goto nomem;
    for (int i = 0; i < depth; i++) {
        slot *s = &p->slots[i];
        size_t xn, yn;
        if (!graft_mul_ok(xf, (size_t)batch_size, &xn) || !graft_mul_ok(yf, (size_t)batch_size, &yn))
            goto nomem;
        s->x = graft_alloc(xn * sizeof(float));
        s->y = yn ? graft_alloc(yn * sizeof(float)) : NULL;
        s->idx = malloc(sizeof(int) * (size_t)batch_size);
        s->kept = malloc((size_t)batch_size);
        if (!s->x || (yn && !s->y) || !s->idx || !s->kept) goto nomem;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) goto nomem;
    pthread_cond_init(&p->can_work, NULL);
    pthread_cond_init(&p->ready, NULL);
    p->started = 1;
    *out = p;
    return GRAFT_OK;
nomem:
    graft_prefetch_free(p);
    return graft_fail(GRAFT_ENOMEM, "prefetch: no memory for %d batches of %d samples", depth,
                      batch_size);
}

static graft_status start(graft_prefetch *p)
{
    for (int i = 0; i < p->n_workers; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            pthread_mutex_lock(&p->mu);
            p->stop = 1;
            pthread_cond_broadcast(&p->can_work);
            pthread_mutex_unlock(&p->mu);
            for (int j = 0; j < i; j++) pthread_join(p->threads[j], NULL);
            p->stop = 0;
            return graft_fail(GRAFT_ENOMEM, "prefetch: cannot start worker thread %d", i);
        }
        p->running = i + 1;
    }
    return GRAFT_OK;
}

graft_status graft_prefetch_next(graft_prefetch *p, float *x, float *y, int *idx, int *n_out)
{
    *n_out = 0;
    if (!p->running) {
        graft_status st = start(p);
        if (st != GRAFT_OK) return st;
    }
    long batch = p->consumed;
    slot *s = &p->slots[batch % p->depth];
    int count = batch_count(p, batch);
    pthread_mutex_lock(&p->mu);
    while (s->done < count) pthread_cond_wait(&p->ready, &p->mu);
    pthread_mutex_unlock(&p->mu);

    /* The slot is ours until it is released below. */
    graft_status st = s->st;
    if (st != GRAFT_OK) {
        graft_fail(st, "%s", s->err);
    } else {
        int m = 0;
        for (int k = 0; k < count; k++) {
            if (!s->kept[k]) continue;
            memcpy(x + (size_t)m * p->xf, s->x + (size_t)k * p->xf, p->xf * sizeof(float));
            if (p->yf && y)
                memcpy(y + (size_t)m * p->yf, s->y + (size_t)k * p->yf, p->yf * sizeof(float));
            if (idx) idx[m] = s->idx[k];
            m++;
        }
        *n_out = m;
    }

    pthread_mutex_lock(&p->mu);
    s->done = 0;
    s->st = GRAFT_OK;
    s->err[0] = '\0';
    p->consumed++;
    pthread_cond_broadcast(&p->can_work);
    pthread_mutex_unlock(&p->mu);
    return st;
}

graft_status graft_prefetch_seek(graft_prefetch *p, long batch)
{
    if (batch < 0) return graft_fail(GRAFT_EINVAL, "prefetch: seek to batch %ld", batch);
    if (batch == p->consumed) return GRAFT_OK;
    /* Stop the workers (they may be filling batches we will not take), then
     * restart the sequence at `batch`; workers start again on the next call. */
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->can_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->running; i++) pthread_join(p->threads[i], NULL);
    p->running = 0;
    p->stop = 0;
    for (int i = 0; i < p->depth; i++) {
        p->slots[i].done = 0;
        p->slots[i].st = GRAFT_OK;
        p->slots[i].err[0] = '\0';
    }
    p->consumed = batch;
    p->next_job = batch / p->length * p->n + (long)(batch % p->length) * p->batch_size;
    return GRAFT_OK;
}

void graft_prefetch_free(graft_prefetch *p)
{
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->can_work);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->running; i++) pthread_join(p->threads[i], NULL);
        pthread_cond_destroy(&p->can_work);
        pthread_cond_destroy(&p->ready);
        pthread_mutex_destroy(&p->mu);
    }
    if (p->slots)
        for (int i = 0; i < p->depth; i++) {
            graft_free(p->slots[i].x);
            graft_free(p->slots[i].y);
            free(p->slots[i].idx);
            free(p->slots[i].kept);
        }
    free(p->slots);
    free(p->threads);
    free(p);
}
