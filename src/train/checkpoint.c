/* Training checkpoints in graft's own format: a fixed header, the history,
 * the weight and optimizer arrays, and a CRC-32 over all of it, so that a torn
 * or corrupted file is refused rather than half-loaded. */
#include "core/atomic_file.h"
#include "core/file_open.h"
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAGIC "GRAFTCKP"
#define VERSION 1u
#define MAX_CHECKPOINT_BYTES ((size_t)16 << 30)

/* ------------------------------------------------------------ a growable buffer */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    bool failed;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *g = realloc(b->p, cap);
        if (!g) {
            b->failed = true;
            return;
        }
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

#define PUT(b, v) put((b), &(v), sizeof(v))

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    bool failed;
} reader;

static void get(reader *r, void *out, size_t n)
{
    if (r->failed || r->len - r->pos < n) {
        r->failed = true;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
}

#define GET(r, v) get((r), &(v), sizeof(v))

/* zlib's crc32 takes uInt lengths: feed it in pieces. */
static uLong crc_add(uLong crc, const unsigned char *p, size_t len)
{
    for (size_t off = 0; off < len; off += 1u << 30) {
        size_t n = len - off < (1u << 30) ? len - off : (1u << 30);
        crc = crc32(crc, p + off, (uInt)n);
    }
    return crc;
}

static uint32_t crc_of(const unsigned char *p, size_t len)
{
    return (uint32_t)crc_add(crc32(0L, Z_NULL, 0), p, len);
}

/* FNV-1a over the layer names, classes and weight shapes: the model's identity. */
static uint64_t model_signature(const graft_model *m)
{
    uint64_t h = 1469598103934665603ULL;
#define MIX(data, n)                                                                              \
    for (size_t i_ = 0; i_ < (n); i_++) h = (h ^ ((const unsigned char *)(data))[i_]) * 1099511628211ULL
    for (int i = 0; i < m->n_layers; i++) {
        const graft_layer *l = m->layers[i];
        MIX(l->name, strlen(l->name) + 1);
        MIX(l->ops->class_name, strlen(l->ops->class_name) + 1);
        for (int k = 0; k < l->n_weights; k++) MIX(&l->weights[k].shape, sizeof(graft_shape));
    }
#undef MIX
    return h;
}

/* The file: the header and history from the buffer, then the weight and
 * optimizer arrays straight from the model (a model-sized copy would cost as
 * much as the write), then the CRC of all of it. */
typedef struct {
    const buf *head;
    const float *arrays[3]; /* weights, then the optimizer's moments where it has them */
    size_t array_bytes;
    const char *path;
} write_ctx;

static graft_status write_part(FILE *f, const write_ctx *c, const void *p, size_t n, uLong *crc)
{
    if (fwrite(p, 1, n, f) != n)
        return graft_fail(GRAFT_EIO, "cannot write checkpoint '%s': %s", c->path, strerror(errno));
    *crc = crc_add(*crc, p, n);
    return GRAFT_OK;
}

static graft_status write_checkpoint(FILE *f, void *vctx)
{
    const write_ctx *c = vctx;
    uLong crc = crc32(0L, Z_NULL, 0);
    graft_status s = write_part(f, c, c->head->p, c->head->len, &crc);
    for (int i = 0; i < 3 && s == GRAFT_OK; i++)
        if (c->arrays[i]) s = write_part(f, c, c->arrays[i], c->array_bytes, &crc);
    uint32_t sum = (uint32_t)crc;
    if (s == GRAFT_OK && fwrite(&sum, 1, sizeof sum, f) != sizeof sum)
        s = graft_fail(GRAFT_EIO, "cannot write checkpoint '%s': %s", c->path, strerror(errno));
    return s;
}

graft_status graft_train_state_save(const graft_model *m, const graft_history *h,
                                   const graft_train_state *st, const char *path)
{
    if (!m || !st || !path) return graft_fail(GRAFT_EINVAL, "checkpoint_save: missing argument");
    if (!m->compiled) return graft_fail(GRAFT_ESTATE, "checkpoint_save: the model is not compiled");
    buf b = {0};
    uint32_t version = VERSION, opt_kind = (uint32_t)m->compile.optimizer.kind;
    uint64_t sig = model_signature(m), nw = m->n_weight_floats;
    int64_t iters = m->opt_iterations, tb = st->train_batches, vb = st->val_batches;
    int32_t epoch = st->epoch, hn = h ? h->n : 0;
    float lr = m->compile.optimizer.learning_rate;
    uint8_t has_m = m->opt_m != NULL, has_v = m->opt_v != NULL;
    put(&b, MAGIC, 8);
    PUT(&b, version);
    PUT(&b, sig);
    PUT(&b, nw);
    PUT(&b, opt_kind);
    PUT(&b, lr);
    PUT(&b, iters);
    PUT(&b, m->rng);
    PUT(&b, epoch);
    PUT(&b, tb);
    PUT(&b, vb);
    PUT(&b, has_m);
    PUT(&b, has_v);
    PUT(&b, hn);
    for (int i = 0; i < hn; i++) {
        int32_t e = h->epoch[i];
        double row[7] = {h->loss[i], h->accuracy[i], h->val_loss[i], h->val_accuracy[i],
                         h->lr[i], h->seconds[i], 0};
        PUT(&b, e);
        put(&b, row, sizeof row);
    }
    write_ctx c = {&b, {m->weights, m->opt_m, m->opt_v}, nw * sizeof(float), path};
    /* The atomic file's messages name the path. */
    graft_status s = b.failed ? graft_fail(GRAFT_ENOMEM, "checkpoint %s: out of memory", path)
                              : graft_file_write_atomic(path, write_checkpoint, &c);
    free(b.p);
    return s;
}

/* A NaN or Inf in a checkpoint's arrays, named by the weight it falls in. */
static graft_status nonfinite_fail(const graft_model *m, const char *path, int array,
                                   const unsigned char *arr, size_t index)
{
    static const char *const what[3] = {"weight", "the optimizer's first moment of weight",
                                        "the optimizer's second moment of weight"};
    for (int i = 0; i < m->n_layers; i++) {
        const graft_layer *l = m->layers[i];
        for (int k = 0; k < l->n_weights; k++) {
            const graft_weight *w = &l->weights[k];
            size_t size = graft_shape_size(&w->shape);
            if (index >= w->offset && index - w->offset < size)
                return graft_fail(GRAFT_EFORMAT,
                                  "checkpoint %s: %s '%s/%s' of layer '%s' holds %s at index %zu",
                                  path, what[array], l->name, w->name, l->name,
                                  graft_nonfinite_name(arr, index), index - w->offset);
        }
    }
    return graft_fail(GRAFT_EFORMAT, "checkpoint %s: holds %s at index %zu of its %s array", path,
                      graft_nonfinite_name(arr, index), index, array ? "optimizer" : "weight");
}

graft_status graft_train_state_load(graft_model *m, const char *path, graft_history *h,
                                   graft_train_state *st)
{
    if (!m || !path || !st) return graft_fail(GRAFT_EINVAL, "checkpoint_load: missing argument");
    m->weights_constant = 0;
    if (!m->compiled)
        return graft_fail(GRAFT_ESTATE, "checkpoint_load: compile the model as it was when saved");
    FILE *f;
    struct stat sb;
    graft_status s = graft_fopen_regular(path, &f, &sb);
    if (s != GRAFT_OK) return graft_fail(s, "checkpoint: %s", graft_last_error());
    unsigned char *data = NULL;
    long size = (long)sb.st_size;
    if ((size_t)size > MAX_CHECKPOINT_BYTES || size < 12)
        s = graft_fail(GRAFT_EFORMAT, "checkpoint %s: size %ld is not that of a checkpoint", path, size);
    else if (!(data = malloc((size_t)size)))
        s = graft_fail(GRAFT_ENOMEM, "checkpoint %s: out of memory", path);
    else if (fread(data, 1, (size_t)size, f) != (size_t)size)
        s = graft_fail(GRAFT_EIO, "checkpoint %s: read failed", path);
    fclose(f);
    if (s != GRAFT_OK) {
        free(data);
        return s;
    }
    reader r = {data, (size_t)size - 4, 0, false};
    uint32_t stored_crc, crc = crc_of(data, r.len);
    memcpy(&stored_crc, data + size - 4, 4);
    char magic[8];
    uint32_t version, opt_kind;
    uint64_t sig, nw;
    float lr;
    int64_t iters, tb, vb;
    graft_rng rng;
    int32_t epoch, hn;
    uint8_t has_m, has_v;
    get(&r, magic, 8);
    GET(&r, version);
    if (r.failed || memcmp(magic, MAGIC, 8) != 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s is not a graft checkpoint", path);
        goto done;
    }
    if (version != VERSION) {
        s = graft_fail(GRAFT_EUNSUPPORTED, "checkpoint %s has version %u; this graft reads %u", path,
                       version, VERSION);
        goto done;
    }
    if (crc != stored_crc) {
        s = graft_fail(GRAFT_EFORMAT, "checkpoint %s is damaged (checksum mismatch)", path);
        goto done;
    }
    GET(&r, sig);
    GET(&r, nw);
    GET(&r, opt_kind);
    GET(&r, lr);
    GET(&r, iters);
    GET(&r, rng);
    GET(&r, epoch);
    GET(&r, tb);
    GET(&r, vb);
    GET(&r, has_m);
    GET(&r, has_v);
    GET(&r, hn);
    if (r.failed || sig != model_signature(m) || nw != m->n_weight_floats) {
        s = graft_fail(GRAFT_ESHAPE,
                       "checkpoint %s was saved from another model (layers or weight shapes differ)",
                       path);
        goto done;
    }
    if (opt_kind != (uint32_t)m->compile.optimizer.kind || has_m != (m->opt_m != NULL) ||
        has_v != (m->opt_v != NULL)) {
        s = graft_fail(GRAFT_ESTATE, "checkpoint %s: the model is compiled with another optimizer",
                       path);
        goto done;
    }
    if (hn < 0 || epoch < 0 || tb < 0 || vb < 0 || iters < 0) {
        s = graft_fail(GRAFT_EFORMAT, "checkpoint %s: negative counters", path);
        goto done;
    }
    graft_history loaded;
    graft_history_init(&loaded);
    for (int i = 0; i < hn && s == GRAFT_OK && !r.failed; i++) {
        int32_t e;
        double row[7];
        GET(&r, e);
        get(&r, row, sizeof row);
        s = graft_history_append(&loaded, e, row[0], row[1], row[2], row[3], row[4], row[5]);
    }
    size_t wbytes = (size_t)nw * sizeof(float);
    size_t need = wbytes * (1 + has_m + has_v);
    if (s == GRAFT_OK && (r.failed || r.len - r.pos != need))
        s = graft_fail(GRAFT_EFORMAT, "checkpoint %s is truncated or has extra bytes", path);
    for (int a = 0; s == GRAFT_OK && a < 1 + has_m + has_v; a++) {
        const unsigned char *arr = r.p + r.pos + (size_t)a * wbytes;
        size_t bad = graft_first_nonfinite(arr, (size_t)nw);
        if (bad < nw) s = nonfinite_fail(m, path, a, arr, bad);
    }
    if (s != GRAFT_OK) {
        graft_history_free(&loaded);
        goto done;
    }
    memcpy(m->weights, r.p + r.pos, wbytes);
    if (has_m) memcpy(m->opt_m, r.p + r.pos + wbytes, wbytes);
    if (has_v) memcpy(m->opt_v, r.p + r.pos + 2 * wbytes, wbytes);
    m->opt_iterations = iters;
    m->compile.optimizer.learning_rate = lr;
    m->rng = rng;
    st->epoch = epoch;
    st->train_batches = tb;
    st->val_batches = vb;
    if (h) {
        graft_history_free(h);
        *h = loaded;
    } else {
        graft_history_free(&loaded);
    }
done:
    free(data);
    return s;
}

/* ------------------------------------------------------------ the callback */

typedef struct {
    char *path;
    graft_source *train, *val;
    const graft_history *history;
} ckpt_cb;

static graft_status ckpt_epoch_end(void *ctx, graft_model *m, const graft_epoch_logs *logs, int *stop)
{
    (void)stop;
    ckpt_cb *c = ctx;
    graft_train_state st = {logs->epoch + 1, c->train ? graft_source_drawn(c->train) : 0,
                            c->val ? graft_source_drawn(c->val) : 0};
    return graft_train_state_save(m, c->history, &st, c->path);
}

static void ckpt_free(void *ctx)
{
    ckpt_cb *c = ctx;
    if (c) free(c->path);
    free(c);
}

graft_status graft_train_state_callback(const char *path, graft_source *train, graft_source *val,
                                       const graft_history *history, graft_callback *out)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path) return graft_fail(GRAFT_EINVAL, "checkpoint callback: no path");
    ckpt_cb *c = calloc(1, sizeof *c);
    if (c) c->path = strdup(path);
    if (!c || !c->path) {
        free(c);
        return graft_fail(GRAFT_ENOMEM, "checkpoint callback: out of memory");
    }
    c->train = train;
    c->val = val;
    c->history = history;
    /* cppcheck-suppress memleak ; ownership moves to *out (freed by its free op) */
    *out = (graft_callback){c, NULL, NULL, ckpt_epoch_end, NULL, ckpt_free, 1};
    return GRAFT_OK;
}
