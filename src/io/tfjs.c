/*
 * TensorFlow.js layers format: model.json holds the Keras model config under
 * modelTopology and a weightsManifest of groups; each group's binary shards
 * (listed in `paths`, relative to model.json) concatenate into the group's
 * weights in manifest order, little-endian, each as its dtype or, when
 * quantized, as uint8/uint16 codes (value = code * scale + min) or float16.
 */
#include "core/file_open.h"
#include "io/io.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* model.json is text; a larger one is not a model description. */
#define MAX_JSON_BYTES ((size_t)64 << 20)

typedef enum { ST_F32, ST_I32, ST_U8, ST_U16, ST_F16 } storage;

typedef struct {
    storage st;
    float scale, min; /* quantized codes */
    size_t offset;    /* bytes into data */
} tensor;

typedef struct {
    cJSON *json;
    unsigned char *data;
    size_t n_data, cap_data;
    tensor *t;
    int n_t;
} tfjs_ctx;

static void tfjs_close(io_file *f)
{
    tfjs_ctx *c = f->ctx;
    if (!c) return;
    cJSON_Delete(c->json);
    free(c->data);
    free(c->t);
    free(c);
    f->ctx = NULL;
}

static size_t storage_bytes(storage st)
{
    return st == ST_U8 ? 1 : st == ST_U16 || st == ST_F16 ? 2 : 4;
}

static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 31, mant = h & 1023;
    float v = e == 0 ? ldexpf((float)mant, -24)
              : e == 31 ? (mant ? NAN : INFINITY)
                        : ldexpf((float)(mant | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

static graft_status tfjs_read(io_file *f, const io_weight *w, float *dst)
{
    const tfjs_ctx *c = f->ctx;
    const tensor *t = &c->t[w->handle];
    const unsigned char *p = c->data + t->offset;
    for (size_t i = 0; i < w->count; i++) {
        switch (t->st) {
        case ST_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case ST_I32: {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
            break;
        }
        case ST_U8: dst[i] = p[i] * t->scale + t->min; break;
        case ST_U16: {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = v * t->scale + t->min;
            break;
        }
        case ST_F16: {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = half_to_float(v);
            break;
        }
        }
    }
    return GRAFT_OK;
}

static graft_status read_text(const char *path, char **out, size_t *len)
{
    FILE *fp;
    graft_status s = graft_fopen_regular(path, &fp, NULL);
    if (s != GRAFT_OK) return s;
    char *buf = NULL;
    size_t n = 0, cap = 0, first = 1 << 20;
    /* A buffer the size of the file (it may still grow while read): most
     * model.json files are a few KiB. */
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && st.st_size >= 0 && (uint64_t)st.st_size <= MAX_JSON_BYTES)
        first = (size_t)st.st_size + 65536 + 1;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? 2 * cap : first;
            if (cap > MAX_JSON_BYTES + 65536 + 1) {
                s = graft_fail(GRAFT_EFORMAT, "%s is larger than %zu MiB; not a model.json", path,
                               MAX_JSON_BYTES >> 20);
                break;
            }
            char *grown = realloc(buf, cap);
            if (!grown) {
                s = graft_fail(GRAFT_ENOMEM, "out of memory reading %s", path);
                break;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, 65536, fp);
        n += got;
        if (got < 65536) {
            if (ferror(fp)) s = graft_fail(GRAFT_EIO, "error reading %s", path);
            break;
        }
    }
    fclose(fp);
    if (s != GRAFT_OK) {
        free(buf);
        return s;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return GRAFT_OK;
}

/* Shard paths are relative file names; anything reaching outside the
 * model's folder is refused. */
static bool safe_relative(const char *p)
{
    if (!*p || p[0] == '/') return false;
    for (const char *s = p; *s;) {
        size_t len = strcspn(s, "/");
        if (len == 2 && s[0] == '.' && s[1] == '.') return false;
        s += len + (s[len] == '/');
    }
    return true;
}

/* Appends the group's shards to c->data; their total must be `expected` bytes.
 * The buffer grows by what each shard holds, not by what the manifest
 * claims: a manifest naming gigabytes of weights over a small shard no
 * longer allocates them. */
static graft_status load_shards(io_file *f, tfjs_ctx *c, const cJSON *paths, const char *dir,
                                int group, size_t expected)
{
    size_t start = c->n_data, need;
    if (expected > SIZE_MAX - start) return graft_fail(GRAFT_EFORMAT, "%s: group %d is too large", f->path, group);
    need = start + expected;
    if (!c->data) { /* never NULL: tensors are read at c->data + offset */
        c->data = malloc(1);
        if (!c->data) return graft_fail(GRAFT_ENOMEM, "out of memory for the weights of %s", f->path);
        c->cap_data = 1;
    }
    const cJSON *p;
    const char *last = "?";
    cJSON_ArrayForEach(p, paths)
    {
        if (!cJSON_IsString(p) || !safe_relative(p->valuestring))
            return graft_fail(GRAFT_EFORMAT,
                              "%s: weightsManifest group %d has a shard path that is not a relative "
                              "file name",
                              f->path, group);
        char full[4096];
        if ((size_t)snprintf(full, sizeof full, "%s%s", dir, p->valuestring) >= sizeof full)
            return graft_fail(GRAFT_EFORMAT, "%s: shard path too long", f->path);
        last = p->valuestring;
        FILE *fp;
        graft_status s = graft_fopen_regular(full, &fp, NULL);
        if (s != GRAFT_OK) return graft_fail(s, "%s: weight shard: %s", f->path, graft_last_error());
        struct stat st;
        size_t room = need - c->n_data, size = 0;
        if (fstat(fileno(fp), &st) == 0 && st.st_size > 0)
            size = (uint64_t)st.st_size < room ? (size_t)st.st_size : room;
        if (c->n_data + size > c->cap_data) {
            /* doubling (within the manifest's total): many shards stay linear */
            size_t cap = c->cap_data < (need - c->cap_data) ? 2 * c->cap_data : need;
            if (cap < c->n_data + size) cap = c->n_data + size;
            unsigned char *grown = realloc(c->data, cap);
            if (!grown) {
                fclose(fp);
                return graft_fail(GRAFT_ENOMEM, "out of memory for the weights of %s", f->path);
            }
            c->data = grown;
            c->cap_data = cap;
        }
        size_t got = size ? fread(c->data + c->n_data, 1, size, fp) : 0;
        c->n_data += got;
        int extra = fgetc(fp);
        bool err = ferror(fp);
        fclose(fp);
        if (err) return graft_fail(GRAFT_EIO, "%s: error reading weight shard %s", f->path, full);
        if (extra != EOF)
            return graft_fail(GRAFT_EFORMAT,
                              "%s: weight shard %s is longer than the manifest says: group %d "
                              "expects %zu bytes in all, and the shards up to this one hold more",
                              f->path, full, group, expected);
    }
    if (c->n_data != need)
        return graft_fail(GRAFT_EFORMAT,
                          "%s: the shards of group %d (last: %s%s) hold %zu bytes, but the "
                          "manifest's weights need %zu bytes",
                          f->path, group, dir, last, c->n_data - start, expected);
    return GRAFT_OK;
}

static graft_status parse_weight(io_file *f, const cJSON *e, int group, io_weight *w, tensor *t)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(e, "quantization");
    if (!cJSON_IsString(name) || !cJSON_IsArray(shape) || !cJSON_IsString(dtype))
        return graft_fail(GRAFT_EFORMAT,
                          "%s: an entry of weightsManifest group %d lacks name, shape or dtype",
                          f->path, group);
    long long dims[IO_MAX_RANK];
    int rank = cJSON_GetArraySize(shape);
    if (rank > IO_MAX_RANK)
        return graft_fail(GRAFT_EFORMAT, "%s: weight '%s' has rank %d", f->path, name->valuestring, rank);
    for (int d = 0; d < rank; d++) {
        const cJSON *v = cJSON_GetArrayItem(shape, d);
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > (double)IO_MAX_TENSOR_FLOATS)
            return graft_fail(GRAFT_EFORMAT, "%s: weight '%s' has a malformed shape", f->path,
                              name->valuestring);
        dims[d] = (long long)v->valuedouble;
    }
    graft_status s = io_weight_init(w, f->path, name->valuestring, rank, dims);
    if (s != GRAFT_OK) return s;
    /* Quantized weights name their stored type in quantization.dtype. */
    const char *st = dtype->valuestring;
    t->scale = 1;
    t->min = 0;
    if (q) {
        const cJSON *qd = cJSON_GetObjectItemCaseSensitive(q, "dtype");
        if (!cJSON_IsString(qd))
            return graft_fail(GRAFT_EFORMAT, "%s: weight '%s': quantization has no dtype", f->path,
                              w->name);
        st = qd->valuestring;
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(q, "scale");
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(q, "min");
        bool codes = strcmp(st, "uint8") == 0 || strcmp(st, "uint16") == 0;
        if (codes && (!cJSON_IsNumber(sc) || !cJSON_IsNumber(mn)))
            return graft_fail(GRAFT_EFORMAT, "%s: weight '%s': %s quantization without scale/min",
                              f->path, w->name, st);
        if (codes) {
            /* Checked as doubles: a value past float's range does not convert. */
            double sv = sc->valuedouble, mv = mn->valuedouble;
            if (!(fabs(sv) <= FLT_MAX && fabs(mv) <= FLT_MAX))
                return graft_fail(GRAFT_EFORMAT,
                                  "%s: weight '%s': quantization scale %g or min %g is not a "
                                  "finite float32",
                                  f->path, w->name, sv, mv);
            t->scale = (float)sv;
            t->min = (float)mv;
        }
    }
    if (strcmp(st, "float32") == 0) t->st = ST_F32;
    else if (strcmp(st, "int32") == 0) t->st = ST_I32;
    else if (strcmp(st, "uint8") == 0) t->st = ST_U8;
    else if (strcmp(st, "uint16") == 0) t->st = ST_U16;
    else if (strcmp(st, "float16") == 0 && q) t->st = ST_F16;
    else
        return graft_fail(GRAFT_EUNSUPPORTED,
                          "%s: weight '%s' has dtype '%s' (float32, int32, or quantized uint8, "
                          "uint16, float16 supported)",
                          f->path, w->name, st);
    return GRAFT_OK;
}

graft_status io_tfjs_open(const char *path, io_file *f, cJSON **topology)
{
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    io_weight *ws = NULL;
    tfjs_ctx *c = calloc(1, sizeof *c);
    if (!c) return graft_fail(GRAFT_ENOMEM, "out of memory opening %s", path);
    f->ctx = c;
    f->by_name_only = true;
    f->close = tfjs_close;
    f->read = tfjs_read;
    graft_status s = read_text(path, &text, &len);
    if (s != GRAFT_OK) goto done;
    const char *end = NULL;
    c->json = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!c->json) {
        size_t at = end ? (size_t)(end - text) : 0;
        s = graft_fail(GRAFT_EFORMAT, "%s is not valid JSON (error near byte %zu)", path, at);
        goto done;
    }
    const cJSON *manifest = cJSON_GetObjectItemCaseSensitive(c->json, "weightsManifest");
    const cJSON *topo = cJSON_GetObjectItemCaseSensitive(c->json, "modelTopology");
    if (!cJSON_IsArray(manifest)) {
        s = graft_fail(GRAFT_EFORMAT, "%s has no weightsManifest list; not a TF.js layers model",
                       path);
        goto done;
    }
    if (cJSON_GetObjectItemCaseSensitive(topo, "node")) {
        s = graft_fail(GRAFT_EUNSUPPORTED,
                       "%s is a TF.js graph model (a TensorFlow graph), not a layers model", path);
        goto done;
    }
    if (topology) {
        const cJSON *mc = cJSON_GetObjectItemCaseSensitive(topo, "model_config");
        *topology = (cJSON *)(mc ? mc : topo);
        if (!cJSON_IsObject(*topology)) {
            s = graft_fail(GRAFT_EFORMAT, "%s has no modelTopology object", path);
            goto done;
        }
    }
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path + 1) : 0;
    dir = malloc(dlen + 1);
    if (!dir) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory opening %s", path);
        goto done;
    }
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    int total = 0, group = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, manifest) total += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g, "weights"));
    ws = calloc(total ? (size_t)total : 1, sizeof *ws);
    c->t = calloc(total ? (size_t)total : 1, sizeof *c->t);
    if (!ws || !c->t) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory opening %s", path);
        goto done;
    }
    cJSON_ArrayForEach(g, manifest)
    {
        group++;
        const cJSON *paths = cJSON_GetObjectItemCaseSensitive(g, "paths");
        const cJSON *weights = cJSON_GetObjectItemCaseSensitive(g, "weights");
        if (!cJSON_IsArray(paths) || !cJSON_IsArray(weights)) {
            s = graft_fail(GRAFT_EFORMAT, "%s: weightsManifest group %d lacks paths or weights", path,
                           group);
            goto done;
        }
        size_t bytes = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, weights)
        {
            io_weight *w = &ws[c->n_t];
            tensor *t = &c->t[c->n_t];
            s = parse_weight(f, e, group, w, t);
            if (s != GRAFT_OK) goto done;
            t->offset = c->n_data + bytes;
            w->handle = (size_t)c->n_t++;
            bytes += w->count * storage_bytes(t->st); /* each count < 2^31: no overflow */
        }
        s = load_shards(f, c, paths, dir, group, bytes);
        if (s != GRAFT_OK) goto done;
    }
    s = io_file_add_group(f, "", ws, c->n_t);
done:
    free(ws);
    free(dir);
    free(text);
    return s;
}
