/*
 * Data parallelism over MPI: the communicator handle, the few collectives
 * fit needs, and the bucketed gradient allreduce (as Horovod's tensor fusion
 * and PyTorch DDP's buckets). Without MPI only the single-process answers.
 */
#include "dist/dist.h"

#include <stdlib.h>
#include <string.h>

#ifdef GRAFT_MPI
#include "graft/mpi.h"

#include <limits.h>

struct graft_comm {
    MPI_Comm comm;
    MPI_Comm bn; /* synchronized BatchNormalization's sums, ordered apart from the gradients' */
    int rank, size;
    bool one_machine; /* every rank shares this one's memory (MPI_COMM_TYPE_SHARED) */
    /* GRAFT_ALLREDUCE_SHARED's window, made by the first fit that needs it
     * and grown by a larger model's: each rank's gradient array of
     * win_floats, as this rank maps it. */
    MPI_Win win;
    float **slot;
    size_t win_floats;
};

int graft_mpi_built(void) { return 1; }

graft_status graft_comm_from_mpi(MPI_Comm comm, graft_comm **out)
{
    *out = NULL;
    int init = 0;
    MPI_Initialized(&init);
    if (!init) return graft_fail(GRAFT_ESTATE, "graft_comm_from_mpi: MPI is not initialised (MPI_Init)");
    graft_comm *c = calloc(1, sizeof *c);
    if (!c) return graft_fail(GRAFT_ENOMEM, "graft_comm_from_mpi: out of memory");
    if (MPI_Comm_dup(comm, &c->comm) != MPI_SUCCESS) {
        free(c);
        return graft_fail(GRAFT_EIO, "graft_comm_from_mpi: MPI_Comm_dup failed");
    }
    if (MPI_Comm_dup(comm, &c->bn) != MPI_SUCCESS) {
        MPI_Comm_free(&c->comm);
        free(c);
        return graft_fail(GRAFT_EIO, "graft_comm_from_mpi: MPI_Comm_dup failed");
    }
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    c->win = MPI_WIN_NULL;
    MPI_Comm node;
    if (MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        int n = 0;
        MPI_Comm_size(node, &n);
        c->one_machine = n == c->size;
        MPI_Comm_free(&node);
    }
    *out = c;
    return GRAFT_OK;
}

static void window_free(graft_comm *c)
{
    if (c->win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(c->win);
        MPI_Win_free(&c->win);
    }
    free(c->slot);
    c->slot = NULL;
    c->win_floats = 0;
}

void graft_comm_free(graft_comm *c)
{
    if (!c) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        window_free(c);
        MPI_Comm_free(&c->comm);
        MPI_Comm_free(&c->bn);
    }
    free(c->slot);
    free(c);
}

int graft_comm_rank(const graft_comm *c) { return c ? c->rank : 0; }
int graft_comm_size(const graft_comm *c) { return c ? c->size : 1; }
bool dist_active(const graft_comm *c) { return c && c->size > 1; }

static graft_status mpi_failed(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return graft_fail(GRAFT_EIO, "%s: %s", what, msg);
}

/* A shared window of at least `floats` per rank (collective). Each rank's
 * part starts on its own pages (alloc_shared_noncontig), near the core that
 * writes it; the window stays locked for passive access until it is freed,
 * and each exchange orders its reads and writes with MPI_Win_sync and a
 * barrier (the unified memory model's way). */
static graft_status comm_window(graft_comm *c, size_t floats)
{
    if (c->win_floats >= floats) return GRAFT_OK;
    window_free(c);
    c->slot = calloc((size_t)c->size, sizeof *c->slot);
    if (!c->slot) return graft_fail(GRAFT_ENOMEM, "gradient allreduce: out of memory");
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    float *mine = NULL;
    /* No room for the window (Open MPI keeps it in /dev/shm) is the
     * caller's to report, not a reason to end the job. */
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    int rc = MPI_Win_allocate_shared((MPI_Aint)(floats * sizeof(float)), sizeof(float), info, c->comm,
                                     &mine, &c->win);
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_ARE_FATAL);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
        c->win = MPI_WIN_NULL;
        window_free(c);
        graft_status st = mpi_failed(rc, "MPI_Win_allocate_shared");
        return graft_fail(st, "gradients in shared memory: %.0f MiB a rank: %s (GRAFT_ALLREDUCE=buckets "
                              "sums them without it)",
                          (double)floats * sizeof(float) / 1048576.0, graft_last_error());
    }
    for (int r = 0; r < c->size && rc == MPI_SUCCESS; r++) {
        MPI_Aint bytes;
        int unit;
        rc = MPI_Win_shared_query(c->win, r, &bytes, &unit, &c->slot[r]);
    }
    if (rc == MPI_SUCCESS) rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, c->win);
    if (rc != MPI_SUCCESS) {
        MPI_Win_free(&c->win);
        window_free(c);
        return mpi_failed(rc, "the gradients' shared window");
    }
    c->win_floats = floats;
    return GRAFT_OK;
}

/* Every rank's writes to the window before it, visible to every rank's
 * reads after it. */
static int window_fence(graft_comm *c)
{
    int rc = MPI_Win_sync(c->win);
    if (rc == MPI_SUCCESS) rc = MPI_Barrier(c->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Win_sync(c->win);
    return rc;
}

graft_status graft_comm_barrier(graft_comm *c)
{
    if (!dist_active(c)) return GRAFT_OK;
    int rc = MPI_Barrier(c->comm);
    return rc == MPI_SUCCESS ? GRAFT_OK : mpi_failed(rc, "MPI_Barrier");
}

/* FNV-1a: a fingerprint to compare, not a defence against anyone. */
static uint64_t fingerprint(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h ^ (uint64_t)n;
}

graft_status graft_comm_check_same(graft_comm *c, const void *data, size_t n, const char *what)
{
    if (!dist_active(c)) return GRAFT_OK;
    unsigned long long mine = fingerprint(data, n);
    unsigned long long *all = malloc(sizeof *all * (size_t)c->size);
    if (!all) return graft_fail(GRAFT_ENOMEM, "%s: out of memory comparing ranks", what);
    int rc = MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, c->comm);
    graft_status s = GRAFT_OK;
    if (rc != MPI_SUCCESS) s = mpi_failed(rc, "MPI_Allgather");
    for (int r = 1; s == GRAFT_OK && r < c->size; r++)
        if (all[r] != all[0])
            s = graft_fail(GRAFT_EINVAL, "%s differs between ranks: rank %d's is not rank 0's", what, r);
    free(all);
    return s;
}

graft_status graft_comm_sum(graft_comm *c, double *v, int n)
{
    return dist_active(c) ? dist_sum(c, v, n) : GRAFT_OK;
}

graft_status dist_sum(graft_comm *c, double *v, int n)
{
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, c->comm);
    return rc == MPI_SUCCESS ? GRAFT_OK : mpi_failed(rc, "MPI_Allreduce");
}

void dist_bn_sum(void *ctx, double *v, int n)
{
    graft_comm *c = ctx;
    /* A failure here is fatal to the job (MPI_ERRORS_ARE_FATAL). */
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, c->bn);
}

graft_status dist_sum_floats(graft_comm *c, float *v, size_t n)
{
    while (n > 0) {
        int k = n > INT_MAX ? INT_MAX : (int)n;
        int rc = MPI_Allreduce(MPI_IN_PLACE, v, k, MPI_FLOAT, MPI_SUM, c->comm);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Allreduce");
        v += k;
        n -= (size_t)k;
    }
    return GRAFT_OK;
}

graft_status dist_exchange_rows(void *ctx, size_t row_bytes, const void *send, const int *send_rows,
                                void *recv, const int *recv_rows)
{
    graft_comm *c = ctx;
    const int R = c->size;
    int *v = malloc(sizeof(int) * 3 * (size_t)R);
    int bad = !v || row_bytes > INT_MAX, rc = MPI_SUCCESS;
    if (v) {
        /* v: the counts the others send here, then displacements. */
        rc = MPI_Alltoall(send_rows, 1, MPI_INT, v, 1, MPI_INT, c->comm);
        for (int q = 0; q < R && rc == MPI_SUCCESS; q++) bad |= v[q] != recv_rows[q];
    }
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, c->comm);
    if (rc == MPI_SUCCESS && !bad) {
        int *sd = v + R, *rd = v + 2 * R;
        for (int q = 0, a = 0, b = 0; q < R; q++) {
            sd[q] = a, a += send_rows[q];
            rd[q] = b, b += recv_rows[q];
        }
        MPI_Datatype row;
        rc = MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
        if (rc == MPI_SUCCESS) rc = MPI_Type_commit(&row);
        if (rc == MPI_SUCCESS) {
            rc = MPI_Alltoallv(send, send_rows, sd, row, recv, recv_rows, rd, row, c->comm);
            MPI_Type_free(&row);
        }
    }
    free(v);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Alltoallv of cached features");
    if (bad) return graft_fail(GRAFT_EIO, "the ranks disagree on the cached features to exchange (another rank failed)");
    return GRAFT_OK;
}

graft_status dist_alltoall_counts(void *ctx, const int *send, int *recv)
{
    graft_comm *c = ctx;
    int rc = MPI_Alltoall(send, 1, MPI_INT, recv, 1, MPI_INT, c->comm);
    return rc == MPI_SUCCESS ? GRAFT_OK
                             : mpi_failed(rc, "MPI_Alltoall of the cached features' counts");
}

graft_status dist_bcast(graft_comm *c, void *buf, size_t bytes)
{
    char *p = buf;
    while (bytes > 0) {
        int k = bytes > INT_MAX ? INT_MAX : (int)bytes;
        int rc = MPI_Bcast(p, k, MPI_BYTE, 0, c->comm);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Bcast");
        p += k;
        bytes -= (size_t)k;
    }
    return GRAFT_OK;
}

/* A run of consecutive trainable weights (in the model's weight array). */
typedef struct {
    size_t offset, n;
    int layer; /* the lowest layer it holds weights of */
    bool own;  /* rows of a split kernel: this rank's gradient is their sum */
} segment;

/* A layer whose kernel the ranks split by rows (graft_row_split), and where
 * its buffers start in each rank's split area (floats). */
typedef struct {
    const graft_layer *l;
    size_t at[GRAFT_SPLIT_BUFFERS];
} split_layer;

typedef struct {
    int first_seg, n_segs; /* segments, top first */
    int low_layer;         /* ready once the backward pass ran this layer */
    size_t floats;
    float *pack; /* NULL: one segment, reduced in place */
    MPI_Request req;
    bool sent;
} bucket;

struct dist_grads {
    graft_comm *comm;
    graft_model *m;
    /* GRAFT_ALLREDUCE_SHARED: m->grads is this rank's slot of comm's
     * window, followed there by the weights it publishes (model_floats
     * each); rank r sums and steps pieces [share[r], share[r + 1]). */
    bool shared;
    size_t model_floats;
    segment *pieces;
    int *share;
    segment *segs;
    int n_segs;
    bucket *buckets;
    int n_buckets, next; /* buckets sent so far, in order */
    size_t floats;
    int rc; /* the first MPI failure in the hook */
    /* Kernels split by rows: the hook the layers see, their layers, and
     * where the split area starts in each rank's slot (after the published
     * weights; its first floats hold the rank's sample count). */
    graft_row_split split;
    split_layer *splits;
    int n_splits;
    size_t split_base;
    int *count, *first;
};

static void send_bucket(dist_grads *g, bucket *b)
{
    float *buf = g->m->grads + g->segs[b->first_seg].offset;
    if (b->pack) {
        buf = b->pack;
        size_t at = 0;
        for (int i = 0; i < b->n_segs; i++) {
            const segment *s = &g->segs[b->first_seg + i];
            memcpy(b->pack + at, g->m->grads + s->offset, s->n * sizeof(float));
            at += s->n;
        }
    }
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)b->floats, MPI_FLOAT, MPI_SUM, g->comm->comm,
                            &b->req);
    if (rc != MPI_SUCCESS && g->rc == MPI_SUCCESS) g->rc = rc;
    b->sent = true;
}

/* graft_model.grads_ready: layers >= `layer` have their gradients. */
static void on_grads_ready(void *ctx, int layer)
{
    dist_grads *g = ctx;
    while (g->next < g->n_buckets && g->buckets[g->next].low_layer >= layer)
        send_bucket(g, &g->buckets[g->next++]);
    /* Open MPI moves non-blocking collectives on only inside MPI calls. */
    for (int i = 0; i < g->next; i++) {
        int done = 0;
        if (g->buckets[i].req != MPI_REQUEST_NULL) MPI_Test(&g->buckets[i].req, &done, MPI_STATUS_IGNORE);
    }
}

/* graft_row_split's calls; ctx: the dist_grads. */
static const split_layer *split_of(const dist_grads *g, const graft_layer *l)
{
    for (int i = 0; i < g->n_splits; i++)
        if (g->splits[i].l == l) return &g->splits[i];
    return NULL;
}

static bool split_rows(const graft_row_split *s, const graft_layer *l) { return split_of(s->ctx, l); }

static float *split_buffer(const graft_row_split *s, const graft_layer *l, int what, int q)
{
    const dist_grads *g = s->ctx;
    return g->comm->slot[q] + g->split_base + split_of(g, l)->at[what];
}

static void split_sync(graft_row_split *s, int n)
{
    dist_grads *g = s->ctx;
    graft_comm *c = g->comm;
    c->slot[c->rank][g->split_base] = (float)n; /* exact: n is at most the batch size */
    /* A failure here is fatal to the job (MPI_ERRORS_ARE_FATAL). */
    window_fence(c);
    int at = 0;
    for (int q = 0; q < c->size; q++) {
        g->count[q] = (int)c->slot[q][g->split_base];
        g->first[q] = at;
        at += g->count[q];
    }
    s->total = at;
}

/* The kernels the ranks split (graft_fit_cfg.split_kernels): a trainable
 * layer whose kind can run that way, with at least min_weights in its (I, U)
 * kernel and a row for every rank. Their buffers follow the published
 * weights in each rank's slot; *floats: the slot's size. */
static graft_status plan_splits(dist_grads *g, size_t min_weights, int batch, size_t *floats)
{
    const graft_model *m = g->m;
    const int R = g->comm->size;
    g->splits = calloc((size_t)(m->n_layers ? m->n_layers : 1), sizeof *g->splits);
    g->count = calloc((size_t)R, sizeof *g->count);
    g->first = calloc((size_t)R, sizeof *g->first);
    if (!g->splits || !g->count || !g->first) return graft_fail(GRAFT_ENOMEM, "gradient allreduce: out of memory");
    /* 16 floats: each buffer on a cache line of its own. */
#define LINE(x) (((x) + 15) / 16 * 16)
    g->split_base = LINE(2 * m->n_weight_floats);
    size_t at = 16; /* the sample count */
    for (int i = 0; i < m->n_layers && min_weights != SIZE_MAX; i++) {
        const graft_layer *l = m->layers[i];
        if (!l->trains || !l->ops->splits_rows || l->n_weights < 1 || !l->ops->splits_rows(l)) continue;
        const graft_weight *w = &l->weights[0];
        if (!w->trainable || w->shape.rank != 2 || graft_shape_size(&w->shape) < min_weights ||
            w->shape.dim[0] < R)
            continue;
        const size_t I = (size_t)w->shape.dim[0], U = (size_t)w->shape.dim[1], B = (size_t)batch;
        const size_t rows = (I + (size_t)R - 1) / (size_t)R; /* the most any rank gets */
        const size_t size[GRAFT_SPLIT_BUFFERS] = {
            [GRAFT_SPLIT_INPUT] = B * I,   [GRAFT_SPLIT_COLUMNS] = B * rows, [GRAFT_SPLIT_PARTIAL] = B * U,
            [GRAFT_SPLIT_DOUT] = B * U,    [GRAFT_SPLIT_DOUTS] = B * U,      [GRAFT_SPLIT_DIN] = B * rows,
        };
        split_layer *sl = &g->splits[g->n_splits++];
        sl->l = l;
        for (int b = 0; b < GRAFT_SPLIT_BUFFERS; b++) {
            sl->at[b] = at;
            at += LINE(size[b]);
        }
    }
#undef LINE
    *floats = g->n_splits ? g->split_base + at : 2 * m->n_weight_floats;
    g->split = (graft_row_split){.ranks = R, .rank = g->comm->rank, .count = g->count, .first = g->first,
                                 .rows = split_rows, .buffer = split_buffer, .sync = split_sync, .ctx = g};
    return GRAFT_OK;
}

graft_row_split *dist_grads_split(dist_grads *g) { return g && g->n_splits ? &g->split : NULL; }

/* Each rank's share for GRAFT_ALLREDUCE_SHARED: the r-th of N equal parts
 * of the trainable gradients (the segments end to end), as pieces of
 * segments. */
static graft_status shared_pieces(dist_grads *g)
{
    const int R = g->comm->size;
    g->pieces = calloc((size_t)(g->n_segs + R + R * g->n_splits), sizeof *g->pieces);
    g->share = calloc((size_t)R + 1, sizeof *g->share);
    if (!g->pieces || !g->share) return graft_fail(GRAFT_ENOMEM, "gradient allreduce: out of memory");
    int k = 0;
    for (int r = 0; r < R; r++) {
        const size_t lo = g->floats * (size_t)r / (size_t)R, hi = g->floats * (size_t)(r + 1) / (size_t)R;
        g->share[r] = k;
        size_t at = 0;
        for (int i = 0; i < g->n_segs && at < hi; i++) {
            const segment *sg = &g->segs[i];
            size_t a = lo > at ? lo : at, b = hi < at + sg->n ? hi : at + sg->n;
            if (a < b) g->pieces[k++] = (segment){sg->offset + (a - at), b - a, sg->layer, false};
            at += sg->n;
        }
        for (int i = 0; i < g->n_splits; i++) {
            const graft_weight *w = &g->splits[i].l->weights[0];
            const int I = w->shape.dim[0], U = w->shape.dim[1];
            const size_t r0 = (size_t)graft_split_row(I, R, r), r1 = (size_t)graft_split_row(I, R, r + 1);
            if (r1 > r0)
                g->pieces[k++] = (segment){w->offset + r0 * U, (r1 - r0) * U, g->splits[i].l->index, true};
        }
    }
    g->share[R] = k;
    return GRAFT_OK;
}

graft_status dist_grads_new(graft_comm *c, graft_model *m, graft_allreduce how, size_t bucket_bytes,
                            size_t split_min, int batch, dist_grads **out)
{
    *out = NULL;
    if (how == GRAFT_ALLREDUCE_SHARED && !c->one_machine)
        return graft_fail(GRAFT_EINVAL, "fit: allreduce 'shared' needs every rank on one machine; these "
                                        "%d ranks are not (use 'buckets' or 'auto')", c->size);
    dist_grads *g = calloc(1, sizeof *g);
    if (!g) return graft_fail(GRAFT_ENOMEM, "gradient allreduce: out of memory");
    g->comm = c;
    g->m = m;
    const bool shared = how != GRAFT_ALLREDUCE_BUCKETS && c->one_machine && m->n_weight_floats > 0;
    size_t window = 0;
    if (shared) {
        graft_status st = plan_splits(g, split_min, batch, &window);
        if (st != GRAFT_OK) {
            dist_grads_free(g);
            return st;
        }
    }
    int cap = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i]->trains) cap += m->layers[i]->n_weights;
    g->segs = calloc((size_t)(cap ? cap : 1), sizeof *g->segs);
    g->buckets = calloc((size_t)(cap ? cap : 1), sizeof *g->buckets);
    if (!g->segs || !g->buckets) goto nomem;
    /* Top layer first: the order in which backward finishes them. */
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const graft_layer *l = m->layers[i];
        if (!l->trains) continue;
        for (int k = l->n_weights - 1; k >= 0; k--) {
            const graft_weight *w = &l->weights[k];
            size_t n = graft_shape_size(&w->shape);
            if (!w->trainable || n == 0 || (k == 0 && split_of(g, l))) continue;
            segment *last = g->n_segs ? &g->segs[g->n_segs - 1] : NULL;
            if (last && w->offset + n == last->offset && last->n + n <= INT_MAX) {
                last->offset = w->offset;
                last->n += n;
                last->layer = i;
            } else {
                g->segs[g->n_segs++] = (segment){w->offset, n, i, false};
            }
            g->floats += n;
        }
    }
    if (shared) {
        graft_status st = shared_pieces(g);
        if (st == GRAFT_OK) st = comm_window(c, window);
        if (st != GRAFT_OK) {
            dist_grads_free(g);
            return st;
        }
        g->shared = true;
        g->model_floats = m->n_weight_floats;
        graft_model_lend_grads(m, c->slot[c->rank]);
        *out = g;
        return GRAFT_OK;
    }
    for (int s = 0; s < g->n_segs;) {
        bucket *b = &g->buckets[g->n_buckets++];
        b->first_seg = s;
        b->req = MPI_REQUEST_NULL;
        while (s < g->n_segs && (b->floats == 0 || (b->floats + g->segs[s].n) * sizeof(float) <= bucket_bytes) &&
               b->floats + g->segs[s].n <= INT_MAX) {
            b->floats += g->segs[s].n;
            b->low_layer = g->segs[s].layer;
            b->n_segs++;
            s++;
        }
        /* b->floats > 0: segments are never empty. */
        if (b->n_segs > 1 && !(b->pack = malloc(b->floats * sizeof(float)))) // NOLINT(clang-analyzer-optin.portability.UnixAPI)
            goto nomem;
    }
    *out = g;
    return GRAFT_OK;
nomem:
    dist_grads_free(g);
    return graft_fail(GRAFT_ENOMEM, "gradient allreduce: out of memory for the buckets");
}

void dist_grads_arm(dist_grads *g)
{
    if (g->shared) return;
    g->next = 0;
    g->rc = MPI_SUCCESS;
    for (int i = 0; i < g->n_buckets; i++) g->buckets[i].sent = false;
    g->m->grads_ready = on_grads_ready;
    g->m->grads_ready_ctx = g;
}

/* Rank `me`'s share of one piece: the ranks' gradients summed in rank
 * order, block by block, the optimizer step over each block (on this
 * rank's weights) while its sums are still in L1, and the stepped weights
 * published for the others (after the gradients, in this rank's slot); the
 * sums are not kept. */
static void step_piece(const dist_grads *g, const segment *p, const dist_step_part *step)
{
    enum { BLOCK = 2048 };
    float *const *slot = g->comm->slot;
    const int ranks = g->comm->size;
    float *publish = slot[g->comm->rank] + g->model_floats;
    const float *weights = g->m->weights;
    const size_t off = p->offset, n = p->n;
    const long blocks = (long)((n + BLOCK - 1) / BLOCK);
#pragma omp parallel for schedule(static) num_threads(graft_threads()) if (blocks > 16)
    for (long b = 0; b < blocks; b++) {
        float sum[BLOCK];
        size_t at = off + (size_t)b * BLOCK, k = n - (size_t)b * BLOCK < BLOCK ? n - (size_t)b * BLOCK : BLOCK;
        if (p->own) { /* rows only this rank reads: nothing to sum or publish */
            step->step(step->ctx, at, k, slot[g->comm->rank] + at);
            continue;
        }
        memcpy(sum, slot[0] + at, k * sizeof(float));
        for (int r = 1; r < ranks; r++) {
            const float *restrict src = slot[r] + at;
            for (size_t i = 0; i < k; i++) sum[i] += src[i];
        }
        step->step(step->ctx, at, k, sum);
        memcpy(publish + at, weights + at, k * sizeof(float));
    }
}

/* Which pieces of a share copy_share moves: those summed every step, the
 * rows of split kernels (which no other rank reads during an epoch), or
 * both. */
typedef enum { PIECES_SUMMED, PIECES_OWN, PIECES_ALL } piece_set;

/* Copies rank q's share of `dst` from q's published slot (q != this rank),
 * or publishes this rank's share of `src`: the pieces of set `which`. */
static void copy_share(const dist_grads *g, int q, float *dst, const float *src, piece_set which)
{
    for (int i = g->share[q]; i < g->share[q + 1]; i++) {
        const segment *p = &g->pieces[i];
        if (which != PIECES_ALL && p->own != (which == PIECES_OWN)) continue;
        if (dst) memcpy(dst + p->offset, g->comm->slot[q] + g->model_floats + p->offset, p->n * sizeof(float));
        else memcpy(g->comm->slot[q] + g->model_floats + p->offset, src + p->offset, p->n * sizeof(float));
    }
}

/* GRAFT_ALLREDUCE_SHARED (see dist_grads_finish). */
static graft_status shared_step(dist_grads *g, const dist_step_part *step)
{
    graft_comm *c = g->comm;
    int rc = window_fence(c);
    for (int i = g->share[c->rank]; i < g->share[c->rank + 1] && rc == MPI_SUCCESS; i++)
        step_piece(g, &g->pieces[i], step);
    if (rc == MPI_SUCCESS) rc = window_fence(c);
    for (int q = 0; q < c->size && rc == MPI_SUCCESS; q++)
        if (q != c->rank) copy_share(g, q, g->m->weights, NULL, PIECES_SUMMED);
    return rc == MPI_SUCCESS ? GRAFT_OK : mpi_failed(rc, "summing the gradients in the shared window");
}

bool dist_grads_steps(const dist_grads *g) { return g && g->shared; }

static graft_status gather(dist_grads *g, float *state, piece_set which)
{
    graft_comm *c = g->comm;
    /* The fence first: the others may still be reading this slot's weights. */
    int rc = window_fence(c);
    if (rc == MPI_SUCCESS) copy_share(g, c->rank, NULL, state, which);
    if (rc == MPI_SUCCESS) rc = window_fence(c);
    for (int q = 0; q < c->size && rc == MPI_SUCCESS; q++)
        if (q != c->rank) copy_share(g, q, state, NULL, which);
    return rc == MPI_SUCCESS ? GRAFT_OK : mpi_failed(rc, "gathering the other ranks' shares");
}

graft_status dist_grads_gather(dist_grads *g, float *state)
{
    return dist_grads_steps(g) && state ? gather(g, state, PIECES_ALL) : GRAFT_OK;
}

graft_status dist_grads_gather_split(dist_grads *g)
{
    return dist_grads_split(g) ? gather(g, g->m->weights, PIECES_OWN) : GRAFT_OK;
}

void dist_grads_zero(dist_grads *g)
{
    for (int i = 0; i < g->n_segs; i++)
        memset(g->m->grads + g->segs[i].offset, 0, g->segs[i].n * sizeof(float));
}

/* Every bucket's request is started by send_bucket, here or in the hook,
 * and waited for once; the analyzer's MPI checker does not follow the
 * requests through the bucket array. */
// NOLINTBEGIN(clang-analyzer-optin.mpi.MPI-Checker)
graft_status dist_grads_finish(dist_grads *g, const dist_step_part *step)
{
    if (g->shared) return shared_step(g, step);
    g->m->grads_ready = NULL;
    g->m->grads_ready_ctx = NULL;
    while (g->next < g->n_buckets) send_bucket(g, &g->buckets[g->next++]);
    for (int i = 0; i < g->n_buckets; i++) {
        bucket *b = &g->buckets[i];
        int rc = MPI_Wait(&b->req, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS && g->rc == MPI_SUCCESS) g->rc = rc;
        if (!b->pack) continue;
        size_t at = 0;
        for (int k = 0; k < b->n_segs; k++) {
            const segment *s = &g->segs[b->first_seg + k];
            memcpy(g->m->grads + s->offset, b->pack + at, s->n * sizeof(float));
            at += s->n;
        }
    }
    return g->rc == MPI_SUCCESS ? GRAFT_OK : mpi_failed(g->rc, "MPI_Iallreduce of the gradients");
}
// NOLINTEND(clang-analyzer-optin.mpi.MPI-Checker)

void dist_grads_free(dist_grads *g)
{
    if (!g) return;
    if (g->m && g->m->grads_ready_ctx == g) {
        g->m->grads_ready = NULL;
        g->m->grads_ready_ctx = NULL;
    }
    if (g->shared) graft_model_lend_grads(g->m, NULL);
    for (int i = 0; i < g->n_buckets; i++) free(g->buckets[i].pack);
    free(g->splits);
    free(g->count);
    free(g->first);
    free(g->pieces);
    free(g->share);
    free(g->buckets);
    free(g->segs);
    free(g);
}

size_t dist_grads_bytes(const dist_grads *g) { return g->floats * sizeof(float); }

#else /* without MPI: one process */

int graft_mpi_built(void) { return 0; }
int graft_comm_rank(const graft_comm *c) { return 0; }
int graft_comm_size(const graft_comm *c) { return 1; }
bool dist_active(const graft_comm *c) { return false; }
graft_status graft_comm_barrier(graft_comm *c) { return GRAFT_OK; }
graft_status graft_comm_sum(graft_comm *c, double *v, int n) { return GRAFT_OK; }
graft_status graft_comm_check_same(graft_comm *c, const void *data, size_t n, const char *what)
{
    return GRAFT_OK;
}

static graft_status no_mpi(void)
{
    return graft_fail(GRAFT_EUNSUPPORTED, "this graft was built without MPI (make MPI=1)");
}

graft_status dist_sum(graft_comm *c, double *v, int n) { return no_mpi(); }
void dist_bn_sum(void *ctx, double *v, int n) {}
graft_status dist_sum_floats(graft_comm *c, float *v, size_t n) { return no_mpi(); }
graft_status dist_bcast(graft_comm *c, void *buf, size_t bytes) { return no_mpi(); }
graft_status dist_exchange_rows(void *ctx, size_t row_bytes, const void *send, const int *send_rows,
                                void *recv, const int *recv_rows)
{
    return no_mpi();
}
graft_status dist_alltoall_counts(void *ctx, const int *send, int *recv)
{
    return no_mpi();
}
graft_status dist_grads_new(graft_comm *c, graft_model *m, graft_allreduce how, size_t bucket_bytes,
                            size_t split_min, int batch, dist_grads **out)
{
    *out = NULL;
    return no_mpi();
}
graft_row_split *dist_grads_split(dist_grads *g) { return NULL; }
void dist_grads_arm(dist_grads *g) {}
void dist_grads_zero(dist_grads *g) {}
graft_status dist_grads_finish(dist_grads *g, const dist_step_part *step) { return no_mpi(); }
bool dist_grads_steps(const dist_grads *g) { return false; }
graft_status dist_grads_gather(dist_grads *g, float *state) { return GRAFT_OK; }
graft_status dist_grads_gather_split(dist_grads *g) { return GRAFT_OK; }
void dist_grads_free(dist_grads *g) {}
size_t dist_grads_bytes(const dist_grads *g) { return 0; }

#endif
