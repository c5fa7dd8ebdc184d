/* A batch source over in-memory arrays, with Keras-style per-pass shuffling. */
#include "internal.h"
#include "source.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void graft_source_mark_own(graft_source *s)
{
    static atomic_uint_fast64_t last;
    graft_source_book *b = graft_source_book_of(s);
    b->uid = (uint64_t)atomic_fetch_add(&last, 1) + 1;
    b->can_shard = 1;
}

long graft_source_drawn(const graft_source *s)
{
    return graft_source_book_get(s)->drawn;
}

typedef struct {
    graft_source base; /* first: the source pointer is this struct's */
    float *x, *y;
    int n, pos, shuffle;
    int *order;
    graft_rng rng;
} array_source;

int graft_source_keeps(const graft_source *s, int k, int count, long id)
{
    const graft_source_book *b = graft_source_book_get(s);
    if (b->shard_count <= 1 || b->shard_whole) return 1;
    if (b->shard_by_id) return id % b->shard_count == b->shard_rank;
    long lo = (long)count * b->shard_rank / b->shard_count;
    long hi = (long)count * (b->shard_rank + 1) / b->shard_count;
    return k >= lo && k < hi;
}

static void reshuffle(array_source *a)
{
    for (int i = 0; i < a->n; i++) a->order[i] = i;
    if (!a->shuffle) return;
    for (int i = a->n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)graft_rng_below(&a->rng, (uint32_t)(i + 1));
        int t = a->order[i];
        a->order[i] = a->order[j];
        a->order[j] = t;
    }
}

static graft_status next_ids(graft_source *self, float *x, float *y, int *n, long *ids)
{
    array_source *a = (array_source *)self;
    if (a->pos >= a->n) {
        reshuffle(a);
        a->pos = 0;
    }
    size_t xs = graft_shape_size(&self->x_shape);
    int count = a->n - a->pos < self->batch_size ? a->n - a->pos : self->batch_size;
    int m = 0;
    for (int i = 0; i < count; i++) {
        int k = a->order[a->pos + i];
        if (!graft_source_keeps(self, i, count, k)) continue;
        if (x) memcpy(x + (size_t)m * xs, a->x + (size_t)k * xs, xs * sizeof(float));
        memcpy(y + (size_t)m * self->y_dim, a->y + (size_t)k * self->y_dim,
               (size_t)self->y_dim * sizeof(float));
        if (ids) ids[m] = k;
        m++;
    }
    a->pos += count;
    *n = m;
    return GRAFT_OK;
}

static graft_status next(graft_source *self, float *x, float *y, int *n)
{
    return next_ids(self, x, y, n, NULL);
}

static void destroy(graft_source *self)
{
    array_source *a = (array_source *)self;
    free(a->x);
    free(a->y);
    free(a->order);
    free(a);
}

graft_source *graft_source_arrays(const float *x, const float *y, int n, graft_shape x_shape,
                                  int y_dim, int batch_size, int shuffle, uint64_t seed)
{
    if (!x || !y || n <= 0 || y_dim <= 0 || batch_size <= 0) {
        graft_fail(GRAFT_EINVAL, "source_arrays: need data, n > 0, y_dim > 0 and batch_size > 0");
        return NULL;
    }
    size_t xs = graft_shape_size(&x_shape), xbytes, ybytes;
    if (xs == 0) {
        graft_fail(GRAFT_EINVAL, "source_arrays: x_shape has a dimension that is not positive");
        return NULL;
    }
    if (!graft_mul_ok(xs * sizeof(float), (size_t)n, &xbytes) ||
        !graft_mul_ok((size_t)y_dim * sizeof(float), (size_t)n, &ybytes)) {
        graft_fail(GRAFT_ENOMEM, "source_arrays: %d samples are too many", n);
        return NULL;
    }
    array_source *a = calloc(1, sizeof *a);
    if (a) {
        /* Neither size is 0: n, y_dim and every dimension of x_shape are positive. */
        a->x = malloc(xbytes); // NOLINT(clang-analyzer-optin.portability.UnixAPI)
        a->y = malloc(ybytes); // NOLINT(clang-analyzer-optin.portability.UnixAPI)
        a->order = malloc((size_t)n * sizeof(int));
    }
    if (!a || !a->x || !a->y || !a->order) {
        if (a) destroy(&a->base);
        graft_fail(GRAFT_ENOMEM, "source_arrays: out of memory copying %d samples", n);
        return NULL;
    }
    memcpy(a->x, x, xbytes);
    memcpy(a->y, y, ybytes);
    a->n = n;
    a->shuffle = shuffle;
    graft_rng_seed(&a->rng, seed);
    reshuffle(a);
    a->base.x_shape = x_shape;
    a->base.y_dim = y_dim;
    a->base.batch_size = batch_size;
    a->base.length = (n + batch_size - 1) / batch_size;
    a->base.next = next;
    a->base.free = destroy;
    a->base.n_samples = n;
    a->base.deterministic = 1;
    a->base.next_ids = next_ids;
    graft_source_mark_own(&a->base);
    return &a->base;
}

void graft_source_free(graft_source *s)
{
    if (s && s->free) s->free(s);
}

graft_status graft_source_skip(graft_source *s, long batches)
{
    if (!s || batches < 0) return graft_fail(GRAFT_EINVAL, "source_skip: bad arguments");
    float *y = malloc((size_t)s->batch_size * (size_t)s->y_dim * sizeof(float));
    float *x = NULL;
    if (!s->next_ids) x = malloc((size_t)s->batch_size * graft_shape_size(&s->x_shape) * sizeof(float));
    if (!y || (!s->next_ids && !x)) {
        free(y);
        free(x);
        return graft_fail(GRAFT_ENOMEM, "source_skip: out of memory");
    }
    graft_status st = GRAFT_OK;
    for (long b = 0; b < batches && st == GRAFT_OK; b++) {
        int n;
        st = s->next_ids ? s->next_ids(s, NULL, y, &n, NULL) : s->next(s, x, y, &n);
        if (st == GRAFT_OK) graft_source_book_of(s)->drawn++;
    }
    free(x);
    free(y);
    return st;
}
