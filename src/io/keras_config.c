/*
 * The Keras model config ({"class_name", "config"}) that full .h5 files and
 * TF.js model.json carry: built into a graft model (Sequential and
 * functional, with nested models flattened into the parent graph under
 * their inner layer names), and written back in the functional form.
 */
#include "io/io.h"
#include "layers/config_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INBOUND 64

typedef struct {
    char name[GRAFT_NAME_MAX];
    graft_layer *l;
} alias;

typedef struct {
    graft_model *m;
    const char *path;
    alias *aliases; /* nested models and mapped inputs: a name standing for a layer */
    int n_alias, cap_alias;
    graft_names alias_names; /* their names to indices into aliases */
    long listed;             /* layers listed so far, nested models included */
} ctx;

/* A refusal naming the file, the layer and its class. */
#define REFUSE(c, s, name, cls, ...)                                                               \
    graft_config_refuse(&(graft_config_in){(c)->m, (c)->path, (name), (cls), 0, NULL}, (s),      \
                        __VA_ARGS__)

static const char *alias_name_at(const void *c, int i) { return ((const ctx *)c)->aliases[i].name; }

/* A name given again stands for the newer layer. */
static graft_status add_alias(ctx *c, const char *name, graft_layer *l)
{
    int old = graft_names_find(&c->alias_names, name, alias_name_at, c);
    if (old >= 0) {
        c->aliases[old].l = l;
        return GRAFT_OK;
    }
    if (graft_names_reserve(&c->alias_names, (size_t)c->n_alias + 1) != GRAFT_OK)
        return graft_fail(GRAFT_ENOMEM, "out of memory reading %s", c->path);
    if (c->n_alias == c->cap_alias) {
        int cap = c->cap_alias ? 2 * c->cap_alias : 8;
        alias *grown = realloc(c->aliases, (size_t)cap * sizeof *grown);
        if (!grown) return graft_fail(GRAFT_ENOMEM, "out of memory reading %s", c->path);
        c->aliases = grown;
        c->cap_alias = cap;
    }
    snprintf(c->aliases[c->n_alias].name, GRAFT_NAME_MAX, "%s", name);
    c->aliases[c->n_alias].l = l;
    (void)graft_names_add(&c->alias_names, c->aliases[c->n_alias].name, c->n_alias); /* reserved */
    c->n_alias++;
    return GRAFT_OK;
}

static graft_layer *resolve(const ctx *c, const char *name)
{
    int i = graft_names_find(&c->alias_names, name, alias_name_at, c);
    return i >= 0 ? c->aliases[i].l : graft_model_find(c->m, name);
}

/* Counts a model's listed layers against graft's limit before any is built. */
static graft_status count_listed(ctx *c, const cJSON *layers, const char *model)
{
    int n = cJSON_GetArraySize(layers);
    c->listed += n;
    if (c->listed > GRAFT_MAX_LAYERS)
        return graft_fail(GRAFT_EUNSUPPORTED,
                          "%s: model '%s' lists %d layers, %ld in all with the models around it; "
                          "graft reads at most %d",
                          c->path, model, n, c->listed, GRAFT_MAX_LAYERS);
    return GRAFT_OK;
}

/* The model's sticky error, with the file named. */
static graft_status built(ctx *c, graft_layer *l)
{
    if (l) return GRAFT_OK;
    graft_status s = graft_model_status(c->m);
    return graft_fail(s ? s : GRAFT_EINVAL, "%s: %s", c->path, graft_model_error(c->m));
}

/* ------------------------------------------------------------ layers */

static graft_status make_input(ctx *c, const cJSON *cfg, const char *name, graft_layer **out)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(cfg, "batch_input_shape");
    if (!b) b = cJSON_GetObjectItemCaseSensitive(cfg, "batch_shape");
    int n = cJSON_IsArray(b) ? cJSON_GetArraySize(b) : 0;
    if (n < 2 || n > GRAFT_MAX_RANK + 1)
        return REFUSE(c, GRAFT_EFORMAT, name, "InputLayer",
                      "batch_input_shape is missing or not a list of 2 to %d entries",
                      GRAFT_MAX_RANK + 1);
    graft_shape shape = {n - 1, {0}};
    int d = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, b)
    {
        if (d > 0 && !graft_config_small_int(e, 1, &shape.dim[d - 1]))
            return REFUSE(c, GRAFT_EUNSUPPORTED, name, "InputLayer",
                          "input dimension %d is not a fixed positive size; graft needs a fixed "
                          "input shape",
                          d);
        d++;
    }
    *out = graft_input(c->m, name, shape);
    return built(c, *out);
}

static graft_status make_layer(ctx *c, const char *cls, const cJSON *cfg, const char *name,
                               int n_in, graft_layer **in, graft_layer **out)
{
    const graft_config_in k = {c->m, c->path, name, cls, n_in, in};
    const graft_layer_ops *ops = graft_layer_kind(cls);
    if (!ops || !ops->from_config) {
        char kinds[1280];
        graft_layer_kind_names(kinds, sizeof kinds);
        return graft_config_refuse(&k, GRAFT_EUNSUPPORTED,
                                   "layer class '%s' is not supported by graft (supported: "
                                   "InputLayer, %s, Sequential, Model/Functional)",
                                   cls, kinds);
    }
    if (!ops->merge && n_in != 1)
        return graft_config_refuse(&k, GRAFT_EUNSUPPORTED, "takes one input, got %d", n_in);
    const char *df = graft_config_str(cfg, "data_format");
    if (df && strcmp(df, "channels_last") != 0)
        return graft_config_refuse(&k, GRAFT_EUNSUPPORTED,
                                   "data_format '%s' is not supported (graft is channels_last)", df);
    /* `out` may be `in` (a Sequential model's running layer): written last. */
    graft_layer *made = NULL;
    graft_status s = ops->from_config(&k, cfg, &made);
    if (s != GRAFT_OK) return s;
    s = built(c, made);
    if (s != GRAFT_OK) return s;
    bool trainable;
    s = graft_config_bool(&k, cfg, "trainable", true, &trainable);
    if (s != GRAFT_OK) return s;
    graft_layer_set_trainable(made, trainable);
    *out = made;
    return GRAFT_OK;
}

/* ------------------------------------------------------------ graphs */

static bool is_model_class(const char *cls)
{
    return strcmp(cls, "Sequential") == 0 || strcmp(cls, "Model") == 0 ||
           strcmp(cls, "Functional") == 0;
}

static graft_status build_any(ctx *c, const cJSON *layer, graft_layer *in, int n_in,
                              graft_layer **ins, graft_layer **out);

static const char *layer_name(const cJSON *layer, const cJSON *cfg)
{
    const char *n = graft_config_str(layer, "name");
    return n ? n : graft_config_str(cfg, "name");
}

static graft_status build_sequential(ctx *c, const cJSON *cfg, const char *name, graft_layer *in,
                                     graft_layer **out)
{
    const cJSON *layers = cJSON_IsArray(cfg) ? cfg : cJSON_GetObjectItemCaseSensitive(cfg, "layers");
    if (!cJSON_IsArray(layers))
        return graft_fail(GRAFT_EFORMAT, "%s: Sequential model '%s' has no 'layers' list", c->path,
                          name);
    graft_status ls = count_listed(c, layers, name);
    if (ls != GRAFT_OK) return ls;
    graft_layer *cur = in;
    const cJSON *layer;
    cJSON_ArrayForEach(layer, layers)
    {
        const char *cls = graft_config_str(layer, "class_name");
        const cJSON *lc = cJSON_GetObjectItemCaseSensitive(layer, "config");
        const char *lname = layer_name(layer, lc);
        if (!cls || !cJSON_IsObject(lc) || !lname)
            return graft_fail(GRAFT_EFORMAT,
                              "%s: a layer of Sequential model '%s' lacks class_name, config or name",
                              c->path, name);
        graft_status s;
        if (strcmp(cls, "InputLayer") == 0) {
            s = cur ? add_alias(c, lname, cur) : make_input(c, lc, lname, &cur);
        } else if (!cur && !is_model_class(cls)) {
            /* Keras 2 names the implicit input after the first layer. */
            char iname[GRAFT_NAME_MAX + 8];
            snprintf(iname, sizeof iname, "%s_input", lname);
            if (!graft_config_present(lc, "batch_input_shape") && !graft_config_present(lc, "batch_shape"))
                return REFUSE(c, GRAFT_EFORMAT, lname, cls,
                              "the first layer of Sequential model '%s' has no batch_input_shape",
                              name);
            s = make_input(c, lc, iname, &cur);
            if (s == GRAFT_OK) s = build_any(c, layer, cur, 1, &cur, &cur);
        } else {
            s = build_any(c, layer, cur, cur ? 1 : 0, &cur, &cur);
        }
        graft_ops_add(1);
        if (s != GRAFT_OK) return s;
    }
    if (!cur)
        return graft_fail(GRAFT_EFORMAT, "%s: Sequential model '%s' has no layers", c->path, name);
    *out = cur;
    return GRAFT_OK;
}

/* Collects the names in a Keras 3 call-arguments tree ("__keras_tensor__" entries). */
static void history_names(const cJSON *v, const char **names, int *n)
{
    if (cJSON_IsObject(v)) {
        const char *cls = graft_config_str(v, "class_name");
        if (cls && strcmp(cls, "__keras_tensor__") == 0) {
            const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(v, "config");
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(cfg, "keras_history");
            const cJSON *first = cJSON_GetArrayItem(h, 0);
            if (cJSON_IsString(first) && *n < MAX_INBOUND) names[(*n)++] = first->valuestring;
            else if (*n < MAX_INBOUND) names[(*n)++] = "";
            return;
        }
    }
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) history_names(e, names, n);
    }
}

/* The names of a layer's inputs, from the old list form [[["name", 0, 0, {}], ...]]
 * or the newer {"args": [...], "kwargs": {...}} form. */
static graft_status inbound(ctx *c, const cJSON *layer, const char *name, const char *cls,
                            const char **names, int *n)
{
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(layer, "inbound_nodes");
    *n = 0;
    if (!nodes || (cJSON_IsArray(nodes) && cJSON_GetArraySize(nodes) == 0)) return GRAFT_OK;
    if (!cJSON_IsArray(nodes))
        return REFUSE(c, GRAFT_EFORMAT, name, cls, "'inbound_nodes' is not a list");
    if (cJSON_GetArraySize(nodes) > 1)
        return REFUSE(c, GRAFT_EUNSUPPORTED, name, cls,
                      "the layer is called %d times; shared layers are not supported",
                      cJSON_GetArraySize(nodes));
    const cJSON *node = cJSON_GetArrayItem(nodes, 0);
    if (cJSON_IsObject(node)) {
        history_names(cJSON_GetObjectItemCaseSensitive(node, "args"), names, n);
    } else if (cJSON_IsString(cJSON_GetArrayItem(node, 0))) {
        /* Keras 2's TFOpLambda: the node is one entry ["x", 0, 0, {kwargs}],
         * and tensors among the kwargs (["y", 0, 0]) are inputs too. */
        names[(*n)++] = cJSON_GetArrayItem(node, 0)->valuestring;
        const cJSON *kw = cJSON_GetArrayItem(node, 3), *e;
        if (kw && !cJSON_IsObject(kw))
            return REFUSE(c, GRAFT_EFORMAT, name, cls, "an inbound node's arguments are malformed");
        cJSON_ArrayForEach(e, kw)
        {
            const cJSON *ref = cJSON_GetArrayItem(e, 0);
            if (!cJSON_IsArray(e) || !cJSON_IsString(ref)) continue; /* a constant */
            if (*n >= MAX_INBOUND)
                return REFUSE(c, GRAFT_EUNSUPPORTED, name, cls, "more than %d inputs", MAX_INBOUND);
            names[(*n)++] = ref->valuestring;
        }
    } else if (cJSON_IsArray(node)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, node)
        {
            const cJSON *first = cJSON_GetArrayItem(e, 0);
            int tensor = 0;
            if (!cJSON_IsString(first) || *n >= MAX_INBOUND)
                return REFUSE(c, GRAFT_EFORMAT, name, cls, "an inbound node entry is malformed");
            const cJSON *ti = cJSON_GetArrayItem(e, 2);
            if (ti && !graft_config_small_int(ti, 0, &tensor))
                return REFUSE(c, GRAFT_EFORMAT, name, cls, "an inbound tensor index is malformed");
            if (tensor != 0)
                return REFUSE(c, GRAFT_EUNSUPPORTED, name, cls,
                              "input '%s' uses output %d of a multi-output layer", first->valuestring,
                              tensor);
            names[(*n)++] = first->valuestring;
        }
    } else {
        return REFUSE(c, GRAFT_EFORMAT, name, cls, "'inbound_nodes' is malformed");
    }
    for (int i = 0; i < *n; i++)
        if (!names[i][0]) return REFUSE(c, GRAFT_EFORMAT, name, cls, "an input has no name");
    return GRAFT_OK;
}

/* input_layers/output_layers: [["name", 0, 0], ...] or a single ["name", 0, 0]. */
static graft_status endpoint(ctx *c, const cJSON *cfg, const char *key, const char *model,
                             const char **name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const cJSON *first = cJSON_GetArrayItem(v, 0);
    if (cJSON_IsString(first)) {
        *name = first->valuestring;
        return GRAFT_OK;
    }
    int n = cJSON_GetArraySize(v);
    if (n != 1 || !cJSON_IsString(cJSON_GetArrayItem(first, 0)))
        return graft_fail(n > 1 ? GRAFT_EUNSUPPORTED : GRAFT_EFORMAT,
                          "%s: model '%s': '%s' must name exactly one layer (got %d)", c->path,
                          model, key, n);
    *name = cJSON_GetArrayItem(first, 0)->valuestring;
    return GRAFT_OK;
}

/* A functional model's layer list, with each layer's inputs as indices into it. */
typedef struct {
    int n;
    const cJSON **item;
    const char **name, **cls;
    int *first_in;        /* layer i's inputs: in_name/in_dep[first_in[i] .. first_in[i + 1]) */
    const char **in_name; /* as inbound_nodes spells them */
    int *in_dep;          /* the listed layer of that name; -1: one built before this model */
    int n_in, cap_in;
    graft_names index; /* name -> first listed layer of that name */
} listing;

static void listing_free(listing *g)
{
    free(g->item);
    free(g->name);
    free(g->cls);
    free(g->first_in);
    free(g->in_name);
    free(g->in_dep);
    graft_names_free(&g->index);
}

static const char *listing_name_at(const void *g, int i) { return ((const listing *)g)->name[i]; }

static graft_status list_layers(ctx *c, const cJSON *layers, const char *model, listing *g)
{
    int n = g->n = cJSON_GetArraySize(layers);
    size_t k = n ? (size_t)n : 1;
    g->item = calloc(k, sizeof(const cJSON *));
    g->name = calloc(k, sizeof *g->name);
    g->cls = calloc(k, sizeof *g->cls);
    g->first_in = calloc(k + 1, sizeof *g->first_in);
    if (!g->item || !g->name || !g->cls || !g->first_in ||
        graft_names_reserve(&g->index, (size_t)n) != GRAFT_OK)
        return graft_fail(GRAFT_ENOMEM, "out of memory reading %s", c->path);
    int i = 0;
    const cJSON *layer;
    cJSON_ArrayForEach(layer, layers)
    {
        const cJSON *lc = cJSON_GetObjectItemCaseSensitive(layer, "config");
        g->item[i] = layer;
        g->cls[i] = graft_config_str(layer, "class_name");
        g->name[i] = layer_name(layer, lc);
        if (!g->cls[i] || !cJSON_IsObject(lc) || !g->name[i])
            return graft_fail(GRAFT_EFORMAT, "%s: layer %d of model '%s' lacks class_name, config or name",
                              c->path, i, model);
        if (graft_names_find(&g->index, g->name[i], listing_name_at, g) < 0)
            (void)graft_names_add(&g->index, g->name[i], i); /* reserved */
        i++;
    }
    for (i = 0; i < n; i++) {
        g->first_in[i] = g->n_in;
        if (strcmp(g->cls[i], "InputLayer") == 0) continue;
        const char *names[MAX_INBOUND];
        int m;
        graft_status s = inbound(c, g->item[i], g->name[i], g->cls[i], names, &m);
        if (s != GRAFT_OK) return s;
        if (m < 1) return REFUSE(c, GRAFT_EFORMAT, g->name[i], g->cls[i], "has no inbound nodes");
        if (g->n_in + m > g->cap_in) {
            int cap = 2 * g->cap_in + m;
            const char **nm = realloc(g->in_name, (size_t)cap * sizeof *nm);
            if (nm) g->in_name = nm;
            int *dep = nm ? realloc(g->in_dep, (size_t)cap * sizeof *dep) : NULL;
            if (!dep) return graft_fail(GRAFT_ENOMEM, "out of memory reading %s", c->path);
            g->in_dep = dep;
            g->cap_in = cap;
        }
        for (int j = 0; j < m; j++) {
            g->in_name[g->n_in] = names[j];
            g->in_dep[g->n_in++] = graft_names_find(&g->index, names[j], listing_name_at, g);
        }
    }
    g->first_in[n] = g->n_in;
    return GRAFT_OK;
}

/*
 * The order to build a listed graph in: Keras's (the listed order), a layer
 * listed before one of its inputs waiting for the next pass over the list.
 * Layer i is built in pass p(i) = the largest of 1, p(d) for inputs d listed
 * before it and p(d) + 1 for inputs listed after it, computed in a
 * topological order, and the passes are then read out in list order: the
 * same order as passing over the list until nothing is left, in linear time.
 * Fails naming a layer whose input is never built (a cycle).
 */
static graft_status build_order(ctx *c, const listing *g, const char *model, int *order)
{
    int n = g->n;
    size_t k = n ? (size_t)n : 1;
    int *waiting = calloc(k, sizeof *waiting); /* inputs not yet placed */
    int *pass = calloc(k, sizeof *pass);
    int *first_user = calloc(k + 1, sizeof *first_user), *user = calloc(g->n_in ? (size_t)g->n_in : 1, sizeof *user);
    int *queue = calloc(k, sizeof *queue), *count = calloc(k + 2, sizeof *count);
    graft_status s = GRAFT_OK;
    if (!waiting || !pass || !first_user || !user || !queue || !count) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory reading %s", c->path);
        goto done;
    }
    /* Who uses each layer, as lists side by side (counting sort by input). */
    for (int e = 0; e < g->n_in; e++)
        if (g->in_dep[e] >= 0) first_user[g->in_dep[e] + 1]++;
    for (int i = 0; i < n; i++) first_user[i + 1] += first_user[i];
    for (int i = 0; i < n; i++)
        for (int e = g->first_in[i]; e < g->first_in[i + 1]; e++) {
            int d = g->in_dep[e];
            if (d < 0) continue;
            user[first_user[d] + waiting[d]++] = i; /* waiting: a fill count here */
        }
    memset(waiting, 0, k * sizeof *waiting);
    for (int i = 0; i < n; i++)
        for (int e = g->first_in[i]; e < g->first_in[i + 1]; e++) waiting[i] += g->in_dep[e] >= 0;
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++)
        if (!waiting[i]) queue[tail++] = i;
    while (head < tail) {
        int i = queue[head++], p = 1;
        for (int e = g->first_in[i]; e < g->first_in[i + 1]; e++) {
            int d = g->in_dep[e];
            if (d >= 0 && pass[d] + (d > i) > p) p = pass[d] + (d > i);
        }
        pass[i] = p;
        for (int u = first_user[i]; u < first_user[i + 1]; u++)
            if (--waiting[user[u]] == 0) queue[tail++] = user[u];
    }
    graft_ops_add((uint64_t)n + (uint64_t)g->n_in);
    if (tail < n) {
        for (int i = 0; i < n; i++) {
            if (pass[i]) continue;
            for (int e = g->first_in[i]; e < g->first_in[i + 1]; e++) {
                int d = g->in_dep[e];
                if (d >= 0 && !pass[d]) {
                    s = graft_fail(GRAFT_EFORMAT,
                                   "%s: model '%s': layer '%s' takes input from '%s', which is not "
                                   "defined before it (a cycle)",
                                   c->path, model, g->name[i], g->name[d]);
                    goto done;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) count[pass[i] + 1]++;
    for (int p = 1; p <= n; p++) count[p + 1] += count[p];
    for (int i = 0; i < n; i++) order[count[pass[i]]++] = i;
done:
    free(waiting);
    free(pass);
    free(first_user);
    free(user);
    free(queue);
    free(count);
    return s;
}

static graft_status build_functional(ctx *c, const cJSON *cfg, const char *name, graft_layer *in,
                                     graft_layer **out)
{
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(cfg, "layers");
    if (!cJSON_IsArray(layers))
        return graft_fail(GRAFT_EFORMAT, "%s: model '%s' has no 'layers' list", c->path, name);
    const char *in_name, *out_name;
    graft_status s = endpoint(c, cfg, "input_layers", name, &in_name);
    if (s == GRAFT_OK) s = endpoint(c, cfg, "output_layers", name, &out_name);
    if (s == GRAFT_OK) s = count_listed(c, layers, name);
    if (s != GRAFT_OK) return s;
    listing g = {0};
    int *order = NULL;
    s = list_layers(c, layers, name, &g);
    if (s == GRAFT_OK && !(order = calloc(g.n ? (size_t)g.n : 1, sizeof *order)))
        s = graft_fail(GRAFT_ENOMEM, "out of memory reading %s", c->path);
    if (s == GRAFT_OK) s = build_order(c, &g, name, order);
    for (int k = 0; k < g.n && s == GRAFT_OK; k++) {
        int i = order[k];
        graft_layer *l = NULL;
        if (strcmp(g.cls[i], "InputLayer") == 0) {
            /* A nested model's input is whatever feeds it in the parent. */
            s = in ? add_alias(c, g.name[i], in) : make_input(c, cJSON_GetObjectItemCaseSensitive(g.item[i], "config"), g.name[i], &l);
            continue;
        }
        graft_layer *ins[MAX_INBOUND] = {0};
        int m = g.first_in[i + 1] - g.first_in[i];
        for (int j = 0; j < m && s == GRAFT_OK; j++) {
            const char *from = g.in_name[g.first_in[i] + j];
            if (!(ins[j] = resolve(c, from)))
                s = graft_fail(GRAFT_EFORMAT,
                               "%s: model '%s': layer '%s' takes input from '%s', which is not defined",
                               c->path, name, g.name[i], from);
        }
        graft_ops_add((uint64_t)m + 1);
        if (s == GRAFT_OK) s = build_any(c, g.item[i], ins[0], m, ins, &l);
    }
    free(order);
    listing_free(&g);
    if (s != GRAFT_OK) return s;
    *out = resolve(c, out_name);
    if (!*out)
        return graft_fail(GRAFT_EFORMAT, "%s: model '%s': output layer '%s' is not defined", c->path,
                          name, out_name);
    return GRAFT_OK;
}

static graft_status build_any(ctx *c, const cJSON *layer, graft_layer *in, int n_in,
                              graft_layer **ins, graft_layer **out)
{
    const char *cls = graft_config_str(layer, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(layer, "config");
    const char *name = layer_name(layer, cfg);
    if (!cls || !cfg) return graft_fail(GRAFT_EFORMAT, "%s: a layer lacks class_name or config", c->path);
    if (!name) name = cls;
    if (!is_model_class(cls)) return make_layer(c, cls, cfg, name, n_in, ins, out);
    if (n_in > 1)
        return REFUSE(c, GRAFT_EUNSUPPORTED, name, cls, "nested models take one input, got %d", n_in);
    int first = graft_model_num_layers(c->m);
    graft_status s = strcmp(cls, "Sequential") == 0 ? build_sequential(c, cfg, name, in, out)
                                                     : build_functional(c, cfg, name, in, out);
    if (s == GRAFT_OK && in) s = add_alias(c, name, *out);
    bool trainable = true;
    if (s == GRAFT_OK && cJSON_IsObject(cfg))
        s = graft_config_bool(&(graft_config_in){c->m, c->path, name, cls, 0, NULL}, cfg,
                              "trainable", true, &trainable);
    /* A frozen nested model freezes every layer in it, as in Keras. */
    if (s == GRAFT_OK && !trainable)
        graft_model_set_trainable(c->m, first, graft_model_num_layers(c->m), 0);
    return s;
}

graft_status io_model_from_config(const cJSON *config, const char *path, graft_model **out)
{
    *out = NULL;
    const char *cls = graft_config_str(config, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(config, "config");
    if (!cls || !cfg)
        return graft_fail(GRAFT_EFORMAT, "%s: the model config has no class_name/config", path);
    if (!is_model_class(cls))
        return graft_fail(GRAFT_EUNSUPPORTED,
                          "%s: the model config is a '%s'; Sequential, Model or Functional expected",
                          path, cls);
    const char *name = cJSON_IsObject(cfg) ? graft_config_str(cfg, "name") : NULL;
    ctx c = {.m = graft_model_new(name ? name : "model"), .path = path};
    if (!c.m) return graft_fail(GRAFT_ENOMEM, "out of memory reading %s", path);
    graft_layer *o = NULL;
    graft_status s = strcmp(cls, "Sequential") == 0 ? build_sequential(&c, cfg, c.m->name, NULL, &o)
                                                     : build_functional(&c, cfg, c.m->name, NULL, &o);
    if (s == GRAFT_OK) s = graft_model_set_output(c.m, o);
    free(c.aliases);
    graft_names_free(&c.alias_names);
    if (s != GRAFT_OK) {
        graft_model_free(c.m);
        return s;
    }
    *out = c.m;
    return GRAFT_OK;
}

/* ------------------------------------------------------------ writing */

static cJSON *node_ref(const char *name)
{
    cJSON *e = cJSON_CreateArray();
    if (!e) return NULL;
    if (!cJSON_AddItemToArray(e, cJSON_CreateString(name)) ||
        !cJSON_AddItemToArray(e, cJSON_CreateNumber(0)) ||
        !cJSON_AddItemToArray(e, cJSON_CreateNumber(0))) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

static graft_status layer_entry(const graft_model *m, const graft_layer *l, cJSON *layers)
{
    cJSON *e = cJSON_CreateObject(), *cfg = NULL, *nodes = NULL;
    if (!e || !cJSON_AddItemToArray(layers, e)) {
        cJSON_Delete(e);
        return graft_fail(GRAFT_ENOMEM, "out of memory writing a model config");
    }
    if (!l->ops->get_config)
        return graft_fail(GRAFT_EUNSUPPORTED,
                          "layer '%s' (%s): this layer kind cannot write its Keras config (it "
                          "has no get_config op), so the model cannot be saved as a Keras file",
                          l->name, l->ops->class_name);
    /* Keras's InputLayer takes no `trainable` and refuses keywords it does not know. */
    bool input = strcmp(l->ops->class_name, "InputLayer") == 0;
    bool ok = cJSON_AddStringToObject(e, "class_name", l->ops->class_name) &&
              (cfg = cJSON_AddObjectToObject(e, "config")) &&
              cJSON_AddStringToObject(cfg, "name", l->name) &&
              (input || cJSON_AddBoolToObject(cfg, "trainable", l->trainable)) &&
              cJSON_AddStringToObject(cfg, "dtype", "float32");
    if (!ok) return graft_fail(GRAFT_ENOMEM, "out of memory writing a model config");
    graft_status s = l->ops->get_config(l, cfg);
    if (s != GRAFT_OK) return s;
    ok = cJSON_AddStringToObject(e, "name", l->name) &&
         (nodes = cJSON_AddArrayToObject(e, "inbound_nodes"));
    if (ok && l->n_inputs > 0) {
        cJSON *node = cJSON_CreateArray();
        ok = node && cJSON_AddItemToArray(nodes, node);
        for (int j = 0; j < l->n_inputs && ok; j++) {
            cJSON *ref = node_ref(m->layers[l->inputs[j]]->name);
            ok = ref && cJSON_AddItemToArray(node, ref) &&
                 cJSON_AddItemToArray(ref, cJSON_CreateObject());
        }
    }
    return ok ? GRAFT_OK : graft_fail(GRAFT_ENOMEM, "out of memory writing a model config");
}

graft_status io_model_to_config(const graft_model *m, cJSON **out)
{
    *out = NULL;
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    if (m->n_layers == 0) return graft_fail(GRAFT_ESTATE, "model '%s' has no layers", m->name);
    cJSON *root = cJSON_CreateObject(), *cfg = NULL, *layers = NULL, *ins = NULL, *outs = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "class_name", "Model") &&
              (cfg = cJSON_AddObjectToObject(root, "config")) &&
              cJSON_AddStringToObject(cfg, "name", m->name) &&
              (layers = cJSON_AddArrayToObject(cfg, "layers")) &&
              (ins = cJSON_AddArrayToObject(cfg, "input_layers")) &&
              (outs = cJSON_AddArrayToObject(cfg, "output_layers")) &&
              cJSON_AddItemToArray(ins, node_ref(m->layers[0]->name)) &&
              cJSON_AddItemToArray(outs, node_ref(graft_model_output(m)->name));
    graft_status s = ok ? GRAFT_OK : graft_fail(GRAFT_ENOMEM, "out of memory writing a model config");
    for (int i = 0; i < m->n_layers && s == GRAFT_OK; i++) s = layer_entry(m, m->layers[i], layers);
    if (s != GRAFT_OK) {
        cJSON_Delete(root);
        return s;
    }
    *out = root;
    return GRAFT_OK;
}
