/*
 * Matching a file's weights to a model, with Keras's load_weights rules:
 * by name (layers the model lacks are ignored) or in topological order of the
 * layers that have weights (the counts must agree); inside a layer, weights
 * go by position and must agree in shape. The entry points that pick the
 * reader from the file name live here too.
 */
#include "io/io.h"

#include <stdlib.h>
#include <string.h>

void io_file_free(io_file *f)
{
    if (!f) return;
    if (f->close) f->close(f);
    for (int i = 0; i < f->n_layers; i++) free(f->layers[i].w);
    free(f->layers);
    memset(f, 0, sizeof *f);
}

bool io_is_json_path(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".json") == 0;
}

graft_status io_weight_init(io_weight *w, const char *path, const char *full_name, int rank,
                            const long long *dims)
{
    memset(w, 0, sizeof *w);
    if (strlen(full_name) >= sizeof w->name)
        return graft_fail(GRAFT_EFORMAT, "%s: weight name '%.60s...' is too long", path, full_name);
    snprintf(w->name, sizeof w->name, "%s", full_name);
    const char *slash = strrchr(full_name, '/');
    const char *base = slash ? slash + 1 : full_name;
    size_t len = strcspn(base, ":"); /* TensorFlow's ":0" output suffix */
    if (len == 0 || len >= sizeof w->short_name)
        return graft_fail(GRAFT_EFORMAT, "%s: weight name '%s' has no usable last component", path,
                          full_name);
    memcpy(w->short_name, base, len);
    w->short_name[len] = '\0';
    if (rank < 0 || rank > IO_MAX_RANK)
        return graft_fail(GRAFT_EFORMAT, "%s: weight '%s' has rank %d (at most %d supported)", path,
                          full_name, rank, IO_MAX_RANK);
    w->rank = rank;
    size_t count = 1;
    for (int d = 0; d < rank; d++) {
        if (dims[d] < 0 || !graft_mul_ok(count, (size_t)dims[d], &count) ||
            count > IO_MAX_TENSOR_FLOATS)
            return graft_fail(GRAFT_EFORMAT,
                              "%s: weight '%s' has an impossible shape (dimension %d is %lld)",
                              path, full_name, d, dims[d]);
        w->dim[d] = dims[d];
    }
    w->count = count;
    return GRAFT_OK;
}

/* The layer a weight belongs to: the path component before its own name. */
static void owner_of(const char *full, char *out, size_t cap)
{
    out[0] = '\0';
    const char *last = strrchr(full, '/');
    if (!last) return;
    const char *start = last;
    while (start > full && start[-1] != '/') start--;
    size_t len = (size_t)(last - start);
    if (len >= cap) len = cap - 1;
    memcpy(out, start, len);
    out[len] = '\0';
}

static io_layer *append_layer(io_file *f, const char *name)
{
    if (f->n_layers == f->cap) {
        int cap = f->cap ? 2 * f->cap : 64;
        io_layer *grown = realloc(f->layers, (size_t)cap * sizeof *grown);
        if (!grown) return NULL;
        f->layers = grown;
        f->cap = cap;
    }
    if (!f->layers) return NULL;
    io_layer *l = &f->layers[f->n_layers++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    return l;
}

static graft_status append_weight(io_layer *l, const io_weight *w)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        io_weight *grown = realloc(l->w, (size_t)cap * sizeof *grown);
        if (!grown) return graft_fail(GRAFT_ENOMEM, "out of memory listing weights");
        l->w = grown;
        l->cap = cap;
    }
    l->w[l->n++] = *w;
    return GRAFT_OK;
}

static const char *file_layer_at(const void *f, int i) { return ((const io_file *)f)->layers[i].name; }

graft_status io_file_add_group(io_file *f, const char *group_name, const io_weight *w, int n)
{
    char first[GRAFT_NAME_MAX] = "", own[GRAFT_NAME_MAX];
    bool several = false;
    for (int i = 0; i < n; i++) {
        owner_of(w[i].name, own, sizeof own);
        if (i == 0) memcpy(first, own, sizeof own);
        else if (strcmp(own, first) != 0) several = true;
    }
    if (n == 0) return GRAFT_OK;
    if (f->n_layers + (several ? n : 1) > GRAFT_MAX_LAYERS)
        return graft_fail(GRAFT_EUNSUPPORTED, "%s holds weights for more than %d layers, graft's limit",
                          f->path, GRAFT_MAX_LAYERS);
    if (group_name[0] && !several) {
        io_layer *l = append_layer(f, group_name);
        if (!l) return graft_fail(GRAFT_ENOMEM, "out of memory listing weights");
        for (int i = 0; i < n; i++)
            if (append_weight(l, &w[i]) != GRAFT_OK) return GRAFT_ENOMEM;
        return GRAFT_OK;
    }
    graft_names owners = {0}; /* owners merge within this group only */
    graft_status s = GRAFT_OK;
    for (int i = 0; i < n && s == GRAFT_OK; i++) {
        owner_of(w[i].name, own, sizeof own);
        if (!own[0]) {
            if (!group_name[0]) {
                s = graft_fail(GRAFT_EFORMAT,
                               "%s: weight '%s' does not say which layer it belongs to "
                               "(expected 'layer/weight')",
                               f->path, w[i].name);
                break;
            }
            snprintf(own, sizeof own, "%s", group_name);
        }
        int k = graft_names_find(&owners, own, file_layer_at, f);
        io_layer *l = k >= 0 ? &f->layers[k] : NULL;
        if (!l && (graft_names_reserve(&owners, owners.n + 1) != GRAFT_OK || !(l = append_layer(f, own)))) {
            s = graft_fail(GRAFT_ENOMEM, "out of memory listing weights");
            break;
        }
        if (k < 0) (void)graft_names_add(&owners, l->name, f->n_layers - 1); /* reserved */
        if (append_weight(l, &w[i]) != GRAFT_OK) s = GRAFT_ENOMEM;
    }
    graft_names_free(&owners);
    return s;
}

/* ------------------------------------------------------------ matching */

static void format_dims(const long long *dim, int rank, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < rank && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, d ? ", %lld" : "%lld", dim[d]);
    if (len < cap) snprintf(buf + len, cap - len, rank == 1 ? ",)" : ")");
}

static bool same_shape(const io_weight *w, const graft_shape *s)
{
    if (w->rank != s->rank) return false;
    for (int d = 0; d < s->rank; d++)
        if (w->dim[d] != s->dim[d]) return false;
    return true;
}

static void warn(const char *msg) { fprintf(stderr, "graft: warning: %s\n", msg); }

static graft_status assign_layer(graft_layer *l, io_file *f, const io_layer *fl,
                                 const graft_load_opts *opts)
{
    char msg[1536];
    if (fl->n != l->n_weights) {
        snprintf(msg, sizeof msg,
                 "%s: layer '%s' in the file holds %d weight%s, but layer '%s' (%s) of the model "
                 "has %d",
                 f->path, fl->name, fl->n, fl->n == 1 ? "" : "s", l->name, l->ops->class_name,
                 l->n_weights);
        if (opts->skip_mismatch) {
            warn(msg);
            return GRAFT_OK;
        }
        return graft_fail(GRAFT_ESHAPE, "%s", msg);
    }
    for (int i = 0; i < fl->n; i++) {
        const io_weight *w = &fl->w[i];
        graft_weight *mw = &l->weights[i];
        if (!same_shape(w, &mw->shape)) {
            char a[128], b[128];
            long long md[GRAFT_MAX_RANK];
            for (int d = 0; d < mw->shape.rank; d++) md[d] = mw->shape.dim[d];
            format_dims(w->dim, w->rank, a, sizeof a);
            format_dims(md, mw->shape.rank, b, sizeof b);
            snprintf(msg, sizeof msg,
                     "%s: weight '%s' of layer '%s' has shape %s, but %s/%s of layer '%s' (%s) "
                     "has shape %s",
                     f->path, w->name, fl->name, a, l->name, mw->name, l->name,
                     l->ops->class_name, b);
            if (opts->skip_mismatch) {
                warn(msg);
                continue;
            }
            return graft_fail(GRAFT_ESHAPE, "%s", msg);
        }
        graft_status s = f->read(f, w, mw->data);
        if (s != GRAFT_OK) return s;
        /* Every reader's floats land here (dequantized ones too): a NaN or
         * Inf weight would only surface as "nan" predictions. */
        size_t bad = graft_first_nonfinite(mw->data, w->count);
        if (bad < w->count)
            return graft_fail(GRAFT_EFORMAT, "%s: weight '%s' of layer '%s' holds %s at index %zu",
                              f->path, w->name, fl->name, graft_nonfinite_name(mw->data, bad), bad);
    }
    return GRAFT_OK;
}

static graft_status assign_all(graft_model *m, io_file *f, const graft_load_opts *opts)
{
    if (opts->by_name || f->by_name_only) {
        /* Every layer of the model must be in the file too: the ones seen. */
        bool every = f->by_name_only && !opts->by_name;
        bool *seen = every ? calloc((size_t)m->n_layers + 1, sizeof *seen) : NULL;
        if (every && !seen) return graft_fail(GRAFT_ENOMEM, "out of memory loading %s", f->path);
        graft_status s = GRAFT_OK;
        for (int i = 0; i < f->n_layers && s == GRAFT_OK; i++) {
            graft_layer *l = graft_model_find(m, f->layers[i].name);
            if (!l && every && !opts->skip_mismatch)
                s = graft_fail(GRAFT_ENOTFOUND, "%s holds weights for layer '%s', which model "
                               "'%s' does not have",
                               f->path, f->layers[i].name, m->name);
            if (!l) continue; /* Keras's by_name ignores layers the model lacks */
            if (seen) seen[l->index] = true;
            s = assign_layer(l, f, &f->layers[i], opts);
            if (s == GRAFT_OK && opts->layers_loaded) ++*opts->layers_loaded;
        }
        for (int i = 0; i < m->n_layers && every && s == GRAFT_OK; i++) {
            const graft_layer *l = m->layers[i];
            if (l->n_weights > 0 && !seen[i])
                s = graft_fail(GRAFT_ENOTFOUND, "%s has no weights for layer '%s' (%s)", f->path,
                               l->name, l->ops->class_name);
        }
        free(seen);
        return s;
    }
    int n_model = 0, n_file = 0;
    for (int i = 0; i < m->n_layers; i++) n_model += m->layers[i]->n_weights > 0;
    for (int i = 0; i < f->n_layers; i++) n_file += f->layers[i].n > 0;
    if (n_model != n_file)
        return graft_fail(GRAFT_ESHAPE,
                          "%s holds weights for %d layers, but model '%s' has %d layers with "
                          "weights; load by name (by_name) to match layers by their names",
                          f->path, n_file, m->name, n_model);
    int k = 0;
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        if (l->n_weights == 0) continue;
        while (f->layers[k].n == 0) k++;
        graft_status s = assign_layer(l, f, &f->layers[k++], opts);
        if (s != GRAFT_OK) return s;
        if (opts->layers_loaded) ++*opts->layers_loaded;
    }
    return GRAFT_OK;
}

graft_status io_assign(graft_model *m, io_file *f, const graft_load_opts *opts)
{
    graft_load_opts none = {0, 0, NULL};
    if (!opts) opts = &none;
    if (opts->layers_loaded) *opts->layers_loaded = 0;
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    /* A failure halfway must not leave a half-loaded model behind. */
    size_t bytes = m->n_weight_floats * sizeof(float);
    float *backup = graft_alloc(bytes);
    if (!backup) return graft_fail(GRAFT_ENOMEM, "out of memory loading %s", f->path);
    if (bytes) memcpy(backup, m->weights, bytes);
    graft_status s = assign_all(m, f, opts);
    if (s != GRAFT_OK && bytes) memcpy(m->weights, backup, bytes);
    graft_free(backup);
    return s;
}

/* ------------------------------------------------------------ entry points */

static graft_status open_any(const char *path, io_file *f, cJSON **topology, char **config)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    if (io_is_json_path(path)) return io_tfjs_open(path, f, topology);
    return io_h5_list(path, f, config);
}

graft_status graft_model_load_weights(graft_model *m, const char *path, const graft_load_opts *opts)
{
    if (!m || !path) return graft_fail(GRAFT_EINVAL, "graft_model_load_weights: no model or path");
    m->weights_constant = 0;
    io_file f;
    graft_status s = open_any(path, &f, NULL, NULL);
    if (s == GRAFT_OK) s = io_assign(m, &f, opts);
    io_file_free(&f);
    return s;
}

graft_status graft_weights_file_list(const char *path, graft_weight_fn fn, void *ctx, int *n_listed)
{
    if (!path || !fn) return graft_fail(GRAFT_EINVAL, "graft_weights_file_list: no path or function");
    io_file f;
    graft_status s = open_any(path, &f, NULL, NULL);
    for (int i = 0; s == GRAFT_OK && i < f.n_layers; i++)
        for (int k = 0; k < f.layers[i].n; k++) {
            const io_weight *w = &f.layers[i].w[k];
            fn(f.layers[i].name, w->name, w->rank, w->dim, ctx);
        }
    if (s == GRAFT_OK && n_listed) *n_listed = f.n_listed > f.n_layers ? f.n_listed : f.n_layers;
    io_file_free(&f);
    return s;
}

graft_status graft_model_load(const char *path, graft_model **out)
{
    if (!path || !out) return graft_fail(GRAFT_EINVAL, "graft_model_load: no path or output");
    *out = NULL;
    io_file f;
    cJSON *topology = NULL, *parsed = NULL;
    char *config_text = NULL;
    graft_model *m = NULL;
    graft_status s = open_any(path, &f, &topology, &config_text);
    if (s != GRAFT_OK) goto done;
    if (!topology) {
        if (!config_text) {
            s = graft_fail(GRAFT_ENOTFOUND,
                           "%s holds weights only (no model_config attribute); build the model "
                           "and load them with graft_model_load_weights",
                           path);
            goto done;
        }
        parsed = cJSON_Parse(config_text);
        if (!parsed) {
            s = graft_fail(GRAFT_EFORMAT, "%s: the model_config attribute is not valid JSON", path);
            goto done;
        }
        topology = parsed;
    }
    s = io_model_from_config(topology, path, &m);
    if (s == GRAFT_OK) s = io_assign(m, &f, NULL);
done:
    if (s != GRAFT_OK) graft_model_free(m);
    else *out = m;
    io_file_free(&f);
    cJSON_Delete(parsed);
    free(config_text);
    return s;
}
