/*
 * The layer graph: building with shape inference, the weight array, the
 * activation arena, forward and backward over the graph, trainable flags
 * and the summary table.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

graft_model *graft_model_new(const char *name)
{
    graft_model *m = calloc(1, sizeof *m);
    if (!m) {
        graft_fail(GRAFT_ENOMEM, "out of memory creating a model");
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", name && *name ? name : "model");
    m->output = -1;
    m->init_seed = 42;
    graft_rng_seed(&m->rng, m->init_seed);
    const char *prof = getenv("GRAFT_PROFILE");
    m->profiling = prof && strcmp(prof, "1") == 0;
    return m;
}

double graft_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Adds seconds to slot k of the profile (sized when first needed: layers
 * are added after the model is made). */
void graft_profile_add(graft_model *m, int k, double seconds)
{
    if (!m->profile) {
        m->profile_slots = 2 * m->n_layers + 1;
        m->profile = calloc((size_t)m->profile_slots, sizeof(double));
        if (!m->profile) {
            m->profiling = false;
            return;
        }
    }
    if (k >= 0 && k < m->profile_slots) m->profile[k] += seconds;
}

static void profile_print(const graft_model *m)
{
    double total = 0;
    for (int k = 0; k < m->profile_slots; k++) total += m->profile[k];
    if (total <= 0) return;
    fprintf(stderr, "GRAFT_PROFILE %s: %.3f s in layers and the optimizer\n", m->name, total);
    fprintf(stderr, "  %-32s %-22s %10s %10s %6s\n", "layer", "class", "forward s", "backward s", "share");
    for (int i = 0; i < m->n_layers && 2 * i + 1 < m->profile_slots; i++) {
        double f = m->profile[2 * i], b = m->profile[2 * i + 1];
        if (f + b <= 0) continue;
        fprintf(stderr, "  %-32s %-22s %10.3f %10.3f %5.1f%%\n", m->layers[i]->name,
                m->layers[i]->ops->class_name, f, b, 100.0 * (f + b) / total);
    }
    double o = m->profile[m->profile_slots - 1];
    fprintf(stderr, "  %-32s %-22s %10s %10.3f %5.1f%%\n", "(optimizer step)", "", "", o, 100.0 * o / total);
}

void graft_model_free(graft_model *m)
{
    if (!m) return;
    if (m->profile) profile_print(m);
    free(m->profile);
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        if (l->ops->destroy) l->ops->destroy(l);
        free(l->inputs);
        free(l->cfg);
        free(l);
    }
    free(m->layers);
    graft_names_free(&m->names);
    graft_free(m->weights);
    graft_free(m->grads);
    graft_free(m->opt_m);
    graft_free(m->opt_v);
    graft_free(m->arena);
    graft_free(m->scratch);
    free(m->out_offset);
    free(m->grad_written);
    free(m);
}

const char *graft_model_name(const graft_model *m) { return m->name; }
graft_status graft_model_status(const graft_model *m) { return m ? m->status : GRAFT_EINVAL; }
const char *graft_model_error(const graft_model *m) { return m ? m->error : "no model"; }

void graft_model_set_error(graft_model *m, graft_status s, const char *fmt, ...)
{
    if (m->status != GRAFT_OK) return; /* the first error is the useful one */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof m->error, fmt, ap);
    va_end(ap);
    m->status = s;
    graft_fail(s, "%s", m->error);
}

/* ------------------------------------------------------------ building */

static const char *layer_name_at(const void *m, int i)
{
    return ((const graft_model *)m)->layers[i]->name;
}

static bool name_taken(const graft_model *m, const char *name)
{
    return graft_names_find(&m->names, name, layer_name_at, m) >= 0;
}

static void auto_name(const graft_model *m, const char *prefix, char *out, size_t cap)
{
    snprintf(out, cap, "%s", prefix);
    for (int k = 1; name_taken(m, out); k++) snprintf(out, cap, "%s_%d", prefix, k);
}

/* Points one layer's weight views at the current arrays. */
static void bind_layer(graft_model *m, graft_layer *l)
{
    for (int k = 0; k < l->n_weights; k++) {
        graft_weight *w = &l->weights[k];
        w->data = m->weights + w->offset;
        w->grad = m->grads ? m->grads + w->offset : NULL;
    }
    graft_ops_add(1);
}

/* Points every weight view at the current arrays. */
static void bind_weights(graft_model *m)
{
    for (int i = 0; i < m->n_layers; i++) bind_layer(m, m->layers[i]);
}

static void init_weight(graft_weight *w, graft_rng *rng)
{
    size_t n = graft_shape_size(&w->shape);
    switch (w->init) {
    case GRAFT_INIT_ZEROS: memset(w->data, 0, n * sizeof(float)); break;
    case GRAFT_INIT_ONES:
        for (size_t i = 0; i < n; i++) w->data[i] = 1.0f;
        break;
    case GRAFT_INIT_GLOROT_UNIFORM: {
        /* Keras's fans: the last two dims are (in, out), the rest the receptive field. */
        const graft_shape *s = &w->shape;
        double receptive = 1, fan_in, fan_out;
        if (s->rank >= 2) {
            for (int d = 0; d < s->rank - 2; d++) receptive *= s->dim[d];
            fan_in = s->dim[s->rank - 2] * receptive;
            fan_out = s->dim[s->rank - 1] * receptive;
        } else {
            fan_in = fan_out = s->rank == 1 ? s->dim[0] : 1;
        }
        float limit = (float)sqrt(6.0 / (fan_in + fan_out));
        for (size_t i = 0; i < n; i++) w->data[i] = (2.0f * graft_rng_uniform(rng) - 1.0f) * limit;
        break;
    }
    }
}

graft_status graft_layer_add_weight(graft_layer *l, const char *name, graft_shape shape,
                                    bool trainable, int init)
{
    if (l->n_weights >= GRAFT_MAX_WEIGHTS)
        return graft_fail(GRAFT_EINVAL, "layer '%s': too many weights", l->name);
    graft_weight *w = &l->weights[l->n_weights++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->shape = shape;
    w->trainable = trainable;
    w->init = init;
    return GRAFT_OK;
}

/* Grows the model's weight array for the weights of a newly built layer
 * (geometrically, so that building stays linear in the layers). */
static graft_status place_weights(graft_model *m, graft_layer *l)
{
    size_t need = m->n_weight_floats;
    for (int k = 0; k < l->n_weights; k++) {
        const graft_shape *ws = &l->weights[k].shape;
        double count = 1; /* in double: a hostile shape overflows size_t */
        for (int d = 0; d < ws->rank; d++) count *= ws->dim[d] > 0 ? ws->dim[d] : 0;
        size_t n = count <= (double)GRAFT_MAX_PARAMS ? graft_shape_size(ws) : GRAFT_MAX_PARAMS + 1;
        l->weights[k].offset = need;
        if (n > GRAFT_MAX_PARAMS || need + n > GRAFT_MAX_PARAMS)
            return graft_fail(GRAFT_EUNSUPPORTED,
                              "layer '%s' (%s): its weights would bring the model past %zu "
                              "parameters, graft's limit (real models have under 400M)",
                              l->name, l->ops->class_name, GRAFT_MAX_PARAMS);
        need += n;
    }
    if (need == m->n_weight_floats) return GRAFT_OK;
    if (need > m->cap_weight_floats) {
        size_t cap = m->cap_weight_floats + m->cap_weight_floats / 4;
        if (cap > GRAFT_MAX_PARAMS) cap = GRAFT_MAX_PARAMS;
        if (cap < need) cap = need;
        float *grown = graft_alloc(cap * sizeof(float));
        if (!grown) return graft_fail(GRAFT_ENOMEM, "out of memory for %zu weights", need);
        if (m->weights) memcpy(grown, m->weights, m->n_weight_floats * sizeof(float));
        graft_free(m->weights);
        m->weights = grown;
        m->cap_weight_floats = cap;
        graft_free(m->grads); /* re-made at the next training step */
        m->grads = NULL;
        m->n_weight_floats = need;
        bind_weights(m);
    } else {
        graft_free(m->grads);
        m->grads = NULL;
        m->n_weight_floats = need;
        bind_layer(m, l);
    }
    graft_rng rng;
    graft_rng_seed(&rng, m->init_seed ^ ((uint64_t)l->index * 0x9e3779b97f4a7c15ULL));
    for (int k = 0; k < l->n_weights; k++) init_weight(&l->weights[k], &rng);
    return GRAFT_OK;
}

graft_layer *graft_model_add_layer(graft_model *m, const graft_layer_ops *ops, const char *name,
                                   const char *auto_prefix, const void *cfg, size_t cfg_size,
                                   int n_inputs, graft_layer *const *inputs)
{
    if (!m) {
        graft_fail(GRAFT_EINVAL, "no model given");
        return NULL;
    }
    if (m->status != GRAFT_OK) return NULL;
    if (name && strlen(name) >= GRAFT_NAME_MAX) {
        graft_model_set_error(m, GRAFT_EINVAL, "layer name '%.40s...' is too long", name);
        return NULL;
    }
    if (m->n_layers >= GRAFT_MAX_LAYERS) {
        graft_model_set_error(m, GRAFT_EUNSUPPORTED,
                              "model '%s' would have more than %d layers, graft's limit", m->name,
                              GRAFT_MAX_LAYERS);
        return NULL;
    }
    if (name && name_taken(m, name)) {
        graft_model_set_error(m, GRAFT_EINVAL,
                              "layer name '%s' is used twice in model '%s'; names must be unique",
                              name, m->name);
        return NULL;
    }
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i] || inputs[i]->model != m) {
            graft_model_set_error(m, GRAFT_EINVAL,
                                  "layer %s: input %d is missing or belongs to another model",
                                  name ? name : auto_prefix, i);
            return NULL;
        }
    }
    if (graft_names_reserve(&m->names, (size_t)m->n_layers + 1) != GRAFT_OK) {
        graft_model_set_error(m, GRAFT_ENOMEM, "out of memory adding a layer");
        return NULL;
    }
    if (m->n_layers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 16;
        graft_layer **grown = realloc(m->layers, (size_t)cap * sizeof(graft_layer *));
        if (!grown) {
            graft_model_set_error(m, GRAFT_ENOMEM, "out of memory adding a layer");
            return NULL;
        }
        m->layers = grown;
        m->cap_layers = cap;
    }
    graft_layer *l = calloc(1, sizeof *l);
    int *in_idx = n_inputs ? calloc((size_t)n_inputs, sizeof(int)) : NULL;
    void *cfg_copy = cfg_size ? malloc(cfg_size) : NULL;
    graft_shape *in_shapes = n_inputs ? calloc((size_t)n_inputs, sizeof *in_shapes) : NULL;
    if (!l || (n_inputs && (!in_idx || !in_shapes)) || (cfg_size && !cfg_copy)) {
        free(l);
        free(in_idx);
        free(cfg_copy);
        free(in_shapes);
        graft_model_set_error(m, GRAFT_ENOMEM, "out of memory adding a layer");
        return NULL;
    }
    if (cfg_size) memcpy(cfg_copy, cfg, cfg_size);
    l->ops = ops;
    l->model = m;
    l->index = m->n_layers;
    l->trainable = l->trains = true;
    l->n_inputs = n_inputs;
    l->inputs = in_idx;
    l->cfg = cfg_copy;
    for (int i = 0; i < n_inputs; i++) {
        in_idx[i] = inputs[i]->index;
        in_shapes[i] = inputs[i]->out_shape;
    }
    if (name) snprintf(l->name, sizeof l->name, "%s", name);
    else auto_name(m, auto_prefix, l->name, sizeof l->name);

    graft_clear_error();
    graft_status s = ops->build(l, in_shapes);
    free(in_shapes);
    if (s == GRAFT_OK) {
        double size = 1;
        for (int d = 0; d < l->out_shape.rank; d++) size *= l->out_shape.dim[d];
        if (size > (double)GRAFT_MAX_LAYER_OUTPUT)
            s = graft_fail(GRAFT_EUNSUPPORTED,
                           "layer '%s' (%s): its output of %.0f values per sample is past "
                           "graft's limit of %zu",
                           l->name, ops->class_name, size, GRAFT_MAX_LAYER_OUTPUT);
        for (int d = 0; d < l->out_shape.rank && s == GRAFT_OK; d++) {
            if (l->out_shape.dim[d] <= 0) {
                char buf[96];
                graft_shape_format(&l->out_shape, buf, sizeof buf);
                s = graft_fail(GRAFT_ESHAPE,
                               "layer '%s' (%s): output shape %s has a dimension <= 0; the "
                               "input is too small for it",
                               l->name, ops->class_name, buf);
                break;
            }
        }
    }
    if (s == GRAFT_OK) {
        m->layers[m->n_layers++] = l;
        s = place_weights(m, l);
        if (s != GRAFT_OK) m->n_layers--;
        else (void)graft_names_add(&m->names, l->name, l->index); /* reserved above: cannot fail */
    }
    if (s != GRAFT_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", graft_last_error());
        if (ops->destroy) ops->destroy(l);
        free(l->inputs);
        free(l->cfg);
        free(l);
        graft_model_set_error(m, s, "%s", msg);
        return NULL;
    }
    m->capacity = 0;     /* the graph changed: re-plan buffers */
    m->compiled = false; /* and the optimizer state no longer fits */
    return l;
}

graft_layer *graft_model_add_unary(graft_model *m, const graft_layer_ops *ops, const char *name,
                                   const char *auto_prefix, const void *cfg, size_t cfg_size,
                                   graft_layer *in)
{
    if (!m) {
        graft_fail(GRAFT_EINVAL, "no model given");
        return NULL;
    }
    if (!in && m->status == GRAFT_OK) {
        if (m->n_layers == 0) {
            graft_model_set_error(m, GRAFT_EINVAL,
                                  "layer '%s' (%s) has no input: add an InputLayer first",
                                  name ? name : auto_prefix, ops->class_name);
            return NULL;
        }
        in = m->layers[m->n_layers - 1];
    }
    return graft_model_add_layer(m, ops, name, auto_prefix, cfg, cfg_size, 1, &in);
}

graft_status graft_model_set_output(graft_model *m, graft_layer *out)
{
    if (!out || out->model != m)
        return graft_fail(GRAFT_EINVAL, "model '%s': the output layer is not part of it", m->name);
    m->output = out->index;
    m->capacity = 0;
    return GRAFT_OK;
}

static int output_index(const graft_model *m)
{
    return m->output >= 0 ? m->output : m->n_layers - 1;
}

graft_layer *graft_model_output(const graft_model *m)
{
    return m->n_layers ? m->layers[output_index(m)] : NULL;
}

int graft_model_num_layers(const graft_model *m) { return m->n_layers; }

graft_layer *graft_model_layer(const graft_model *m, int index)
{
    if (index < 0) index += m->n_layers;
    if (index < 0 || index >= m->n_layers) return NULL;
    return m->layers[index];
}

graft_layer *graft_model_find(const graft_model *m, const char *name)
{
    int i = graft_names_find(&m->names, name, layer_name_at, m);
    return i >= 0 ? m->layers[i] : NULL;
}

const char *graft_layer_name(const graft_layer *l) { return l->name; }
const char *graft_layer_class(const graft_layer *l) { return l->ops->class_name; }
int graft_layer_index(const graft_layer *l) { return l->index; }
graft_shape graft_layer_output_shape(const graft_layer *l) { return l->out_shape; }
int graft_layer_trainable(const graft_layer *l) { return l->trainable; }
void graft_layer_set_trainable(graft_layer *l, int trainable) { l->trainable = trainable != 0; }

graft_status graft_model_set_trainable(graft_model *m, int first, int last, int trainable)
{
    if (first < 0) first += m->n_layers;
    if (last < 0) last += m->n_layers;
    if (first < 0) first = 0;
    if (last > m->n_layers) last = m->n_layers;
    for (int i = first; i < last; i++) m->layers[i]->trainable = trainable != 0;
    return GRAFT_OK;
}

int graft_layer_num_weights(const graft_layer *l) { return l->n_weights; }

const char *graft_layer_weight_name(const graft_layer *l, int i)
{
    return i >= 0 && i < l->n_weights ? l->weights[i].name : NULL;
}

graft_shape graft_layer_weight_shape(const graft_layer *l, int i)
{
    graft_shape none = {0, {0}};
    return i >= 0 && i < l->n_weights ? l->weights[i].shape : none;
}

float *graft_layer_weight_data(graft_layer *l, int i)
{
    return i >= 0 && i < l->n_weights ? l->weights[i].data : NULL;
}

size_t graft_layer_count_params(const graft_layer *l)
{
    size_t n = 0;
    for (int k = 0; k < l->n_weights; k++) n += graft_shape_size(&l->weights[k].shape);
    return n;
}

graft_param_counts graft_model_count_params(const graft_model *m)
{
    graft_param_counts c = {0, 0, 0};
    for (int i = 0; i < m->n_layers; i++) {
        const graft_layer *l = m->layers[i];
        for (int k = 0; k < l->n_weights; k++) {
            size_t n = graft_shape_size(&l->weights[k].shape);
            c.total += n;
            if (l->trainable && l->weights[k].trainable) c.trainable += n;
            else c.non_trainable += n;
        }
    }
    return c;
}

graft_status graft_model_init_weights(graft_model *m, uint64_t seed)
{
    m->init_seed = seed;
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        graft_rng rng;
        graft_rng_seed(&rng, seed ^ ((uint64_t)l->index * 0x9e3779b97f4a7c15ULL));
        for (int k = 0; k < l->n_weights; k++) init_weight(&l->weights[k], &rng);
    }
    return GRAFT_OK;
}

/* ------------------------------------------------------------ summary */

static void thousands(size_t v, char *buf, size_t cap)
{
    char raw[32];
    int len = snprintf(raw, sizeof raw, "%zu", v);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
}

static bool is_chain(const graft_model *m)
{
    for (int i = 1; i < m->n_layers; i++)
        if (m->layers[i]->n_inputs != 1 || m->layers[i]->inputs[0] != i - 1) return false;
    return true;
}

/* One table row as Keras's print_row lays it out: each field is cut to its
 * column (less a two-space gap), preferably after "),", "},", "]," or "',",
 * and what does not fit continues on the next lines. */
static void print_row(FILE *out, const char **fields, const int *stops, int n)
{
    const char *left[4];
    for (int i = 0; i < n; i++) left[i] = fields[i];
    for (;;) {
        bool any = false;
        for (int i = 0; i < n; i++) any |= *left[i] != '\0';
        if (!any) break;
        char line[256];
        int len = 0;
        for (int col = 0; col < n; col++) {
            int start = col ? stops[col - 1] : 0, space = col != n - 1 ? 2 : 0;
            int cut = stops[col] - start - space, avail = (int)strlen(left[col]);
            if (cut > avail) cut = avail;
            int best = cut;
            static const char *const breaks[] = {"),", "},", "],", "',"};
            for (int b = 0; b < 4; b++) {
                for (int k = 0; k + 1 < cut; k++) {
                    if (left[col][k] == breaks[b][0] && left[col][k + 1] == breaks[b][1]) {
                        if (k + 2 < best) best = k + 2;
                        break;
                    }
                }
            }
            if (col == 0) line[len++] = ' ';
            memcpy(line + len, left[col], (size_t)best);
            len += best;
            for (int k = 0; k < space; k++) line[len++] = ' ';
            left[col] += best;
            while (len < stops[col]) line[len++] = ' ';
        }
        line[len] = '\0';
        fprintf(out, "%s\n", line);
    }
}

static void rule(FILE *out, char c, int width)
{
    for (int i = 0; i < width; i++) fputc(c, out);
    fputc('\n', out);
}

void graft_model_summary(const graft_model *m, FILE *out)
{
    bool chain = is_chain(m);
    static const int seq_stops[] = {29, 55, 65};
    static const int fun_stops[] = {29, 58, 68, 98};
    const int *stops = chain ? seq_stops : fun_stops;
    int ncol = chain ? 3 : 4, width = stops[ncol - 1];
    fprintf(out, "Model: \"%s\"\n", m->name);
    rule(out, '_', width);
    const char *head[] = {"Layer (type)", "Output Shape", "Param #", "Connected to"};
    print_row(out, head, stops, ncol);
    rule(out, '=', width);
    for (int i = 0; i < m->n_layers; i++) {
        const graft_layer *l = m->layers[i];
        char name[GRAFT_NAME_MAX + 48], shape[112], params[32], conn[GRAFT_NAME_MAX + 16] = "";
        snprintf(name, sizeof name, "%s (%s)", l->name, l->ops->class_name);
        graft_shape_format(&l->out_shape, shape, sizeof shape - 2);
        if (l->n_inputs == 0) { /* Keras prints an InputLayer's shape as a list */
            memmove(shape + 1, shape, strlen(shape) + 1);
            shape[0] = '[';
            strcat(shape, "]");
        }
        snprintf(params, sizeof params, "%zu", graft_layer_count_params(l));
        /* "Connected to": one input per line, as a Python list over the lines. */
        for (int k = 0; k < (chain ? 0 : l->n_inputs > 0 ? l->n_inputs : 1); k++) {
            if (l->n_inputs > 0)
                snprintf(conn, sizeof conn, "%s'%s[0][0]'%s", k == 0 ? "[" : " ",
                         m->layers[l->inputs[k]]->name, k + 1 == l->n_inputs ? "]" : ",");
            else
                snprintf(conn, sizeof conn, "[]");
            const char *row[] = {k ? "" : name, k ? "" : shape, k ? "" : params, conn};
            print_row(out, row, stops, ncol);
        }
        if (chain) {
            const char *row[] = {name, shape, params};
            print_row(out, row, stops, ncol);
        } else if (i + 1 < m->n_layers) {
            fputc('\n', out);
        }
    }
    rule(out, '=', width);
    graft_param_counts c = graft_model_count_params(m);
    char a[32], b[32], d[32];
    thousands(c.total, a, sizeof a);
    thousands(c.trainable, b, sizeof b);
    thousands(c.non_trainable, d, sizeof d);
    fprintf(out, "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n", a, b, d);
    rule(out, '_', width);
}

/* ------------------------------------------------------------ buffers */

/* A first-fit allocator over offsets, for planning the activation arena. */
typedef struct {
    size_t off, len;
} block;

typedef struct {
    block *free_list;
    int n_free;
    size_t top, peak; /* top falls as buffers are released; peak is the arena's size */
} planner;

static size_t plan_alloc(planner *p, size_t len)
{
    len = (len + 15) & ~(size_t)15; /* 64-byte alignment for every buffer */
    for (int i = 0; i < p->n_free; i++) {
        if (p->free_list[i].len >= len) {
            size_t off = p->free_list[i].off;
            p->free_list[i].off += len;
            p->free_list[i].len -= len;
            return off;
        }
    }
    size_t off = p->top;
    p->top += len;
    if (p->top > p->peak) p->peak = p->top;
    return off;
}

static void plan_release(planner *p, size_t off, size_t len)
{
    len = (len + 15) & ~(size_t)15;
    /* Insert sorted and merge neighbours, so big buffers find room again. */
    int i = 0;
    while (i < p->n_free && p->free_list[i].off < off) i++;
    memmove(&p->free_list[i + 1], &p->free_list[i], (size_t)(p->n_free - i) * sizeof(block));
    p->free_list[i] = (block){off, len};
    p->n_free++;
    if (i + 1 < p->n_free && p->free_list[i].off + p->free_list[i].len == p->free_list[i + 1].off) {
        p->free_list[i].len += p->free_list[i + 1].len;
        memmove(&p->free_list[i + 1], &p->free_list[i + 2],
                (size_t)(p->n_free - i - 2) * sizeof(block));
        p->n_free--;
    }
    if (i > 0 && p->free_list[i - 1].off + p->free_list[i - 1].len == p->free_list[i].off) {
        p->free_list[i - 1].len += p->free_list[i].len;
        memmove(&p->free_list[i], &p->free_list[i + 1], (size_t)(p->n_free - i - 1) * sizeof(block));
        p->n_free--;
    }
    if (p->n_free > 0) {
        block *last = &p->free_list[p->n_free - 1];
        if (last->off + last->len == p->top) {
            p->top = last->off;
            p->n_free--;
        }
    }
}

bool graft_layer_trains_weights(const graft_layer *l)
{
    if (!l->trains) return false;
    for (int k = 0; k < l->n_weights; k++)
        if (l->weights[k].trainable) return true;
    return false;
}

/* The one layer that reads layer i's output, or -1 (none, several, or i is
 * the model's output). */
static int sole_reader(const graft_model *m, int i)
{
    int reader = -1, count = 0;
    for (int k = i + 1; k < m->n_layers; k++)
        for (int j = 0; j < m->layers[k]->n_inputs; j++)
            if (m->layers[k]->inputs[j] == i) {
                reader = k;
                count++;
            }
    return count == 1 && i != output_index(m) ? reader : -1;
}

/*
 * Where nothing needs a gradient, Conv2D/DepthwiseConv2D -> BatchNormalization
 * (inference mode) -> ReLU chains run as one pass: the convolution applies
 * the normalisation and the clamp to its output while it is in cache (the
 * MobileNets and ResNet50 are made of these chains). The later layers of a
 * chain share the convolution's buffer and are skipped in forward.
 */
static void plan_fusion(graft_model *m, bool training)
{
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i]->fused_into = -1;
        memset(&m->layers[i]->epi, 0, sizeof m->layers[i]->epi);
    }
    for (int i = 1; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        const char *cls = l->ops->class_name;
        if (l->requires_grad || (strcmp(cls, "Conv2D") != 0 && strcmp(cls, "DepthwiseConv2D") != 0))
            continue;
        if (l->out_shape.dim[l->out_shape.rank - 1] > GRAFT_EPILOGUE_MAX_C) continue;
        int j = sole_reader(m, i);
        graft_layer *r = j > 0 ? m->layers[j] : NULL;
        if (r && !r->requires_grad && strcmp(r->ops->class_name, "BatchNormalization") == 0 &&
            (!training || !r->trains)) {
            l->epi.bn = r;
            r->fused_into = i;
            j = sole_reader(m, j);
            r = j > 0 ? m->layers[j] : NULL;
        }
        float lo, hi;
        if (r && !r->requires_grad &&
            (graft_relu_clamp(r, &lo, &hi) || graft_activation_clamp(r, &lo, &hi))) {
            l->epi.clamp = true;
            l->epi.lo = lo;
            l->epi.hi = hi;
            r->fused_into = i;
        }
    }
}

/* A ReLU convolution of the image read only by the 2x2 max pool right after
 * it: the pool computes both, and the convolution's output never exists
 * (see computes_conv). Needs no gradient for the convolution's input.
 * GRAFT_NO_CONV_POOL=1 keeps the two layers apart (to compare numerics). */
static void plan_conv_pool(graft_model *m)
{
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i]->computed_by_pool = m->layers[i]->computes_conv = false;
    const char *off = getenv("GRAFT_NO_CONV_POOL");
    if (off && strcmp(off, "1") == 0) return;
    for (int i = 1; i + 1 < m->n_layers; i++) {
        graft_layer *l = m->layers[i], *r = m->layers[i + 1];
        if (l->epi.bn || l->epi.clamp || m->layers[l->inputs[0]]->requires_grad ||
            sole_reader(m, i) != i + 1 || !graft_max_pool_2x2(r) ||
            !graft_conv2d_pool_geom(l, NULL, NULL))
            continue;
        l->computed_by_pool = r->computes_conv = true;
    }
}

/* A ReLU convolution on the Winograd path read only by the 2x2 max pool
 * right after it (the lesson's second): its output transform pools each
 * tile, and its output never exists (see pools_in_winograd), in training
 * and in inference. Its backward needs the pool to apply the ReLU's
 * derivative: plan_backward_fusion always plans that for such a pair.
 * GRAFT_NO_WINOGRAD_POOL=1 keeps the two layers apart (to compare). */
static void plan_winograd_pool(graft_model *m)
{
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i]->pools_in_winograd = m->layers[i]->pooled_by_conv = false;
    const char *off = getenv("GRAFT_NO_WINOGRAD_POOL");
    if (off && strcmp(off, "1") == 0) return;
    for (int i = 1; i + 1 < m->n_layers; i++) {
        graft_layer *l = m->layers[i], *r = m->layers[i + 1];
        if (l->epi.bn || l->epi.clamp || l->computed_by_pool || sole_reader(m, i) != i + 1 ||
            !graft_max_pool_2x2(r) || !graft_conv2d_winograd_relu(l))
            continue;
        l->pools_in_winograd = r->pooled_by_conv = true;
    }
}

/* Training: ReLU convolutions read only by a max pool leave the ReLU's
 * derivative to the pool's backward pass (see masks_relu_below). */
static void plan_backward_fusion(graft_model *m, bool training)
{
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i]->masks_relu_below = m->layers[i]->dout_relu_applied = false;
    if (!training) return;
    for (int i = 1; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        int j = sole_reader(m, i);
        graft_layer *r = j > 0 ? m->layers[j] : NULL;
        if (!l->requires_grad || l->computed_by_pool || !r || !r->requires_grad ||
            !graft_conv2d_has_relu(l) || strcmp(r->ops->class_name, "MaxPooling2D") != 0)
            continue;
        r->masks_relu_below = true;
        l->dout_relu_applied = true;
    }
}

graft_status graft_model_prepare(graft_model *m, int n, bool training)
{
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    if (m->n_layers < 1 || strcmp(m->layers[0]->ops->class_name, "InputLayer") != 0)
        return graft_fail(GRAFT_ESTATE, "model '%s' has no InputLayer", m->name);
    if (n <= 0) return graft_fail(GRAFT_EINVAL, "batch size must be positive (got %d)", n);
    if (m->capacity >= n && m->prepared_training == training && m->planned_threads == graft_threads())
        return GRAFT_OK;
    int cap = n > m->capacity ? n : m->capacity;
    int L = m->n_layers, out = output_index(m);

    if (!m->compiled)
        for (int i = 0; i < L; i++) m->layers[i]->trains = m->layers[i]->trainable;

    /* Which outputs need a gradient, and where backward can stop. */
    m->lowest_grad_layer = L;
    for (int i = 0; i < L; i++) {
        graft_layer *l = m->layers[i];
        bool rg = false;
        if (training) {
            rg = i == 0 ? m->want_input_grad : graft_layer_trains_weights(l);
            for (int j = 0; j < l->n_inputs && !rg; j++) rg = m->layers[l->inputs[j]]->requires_grad;
        }
        l->requires_grad = rg;
        if (rg && i < m->lowest_grad_layer) m->lowest_grad_layer = i;
    }

    plan_fusion(m, training);
    plan_conv_pool(m);
    plan_winograd_pool(m);
    plan_backward_fusion(m, training);

    /* Liveness: an output dies after its last reader, unless backward reads it.
     * A fused layer has no buffer of its own: it lives in its root's. */
    int *last_use = malloc((size_t)L * sizeof(int));
    block *fl = malloc((size_t)(2 * L + 2) * sizeof(block));
    bool *written = realloc(m->grad_written, (size_t)L * sizeof(bool));
    if (written) m->grad_written = written;
    size_t *offs = realloc(m->out_offset, (size_t)L * sizeof(size_t));
    size_t *dout_off = malloc((size_t)L * sizeof(size_t));
    size_t *aux_off = malloc((size_t)L * sizeof(size_t));
    if (offs) m->out_offset = offs;
    if (!last_use || !fl || !offs || !written || !dout_off || !aux_off) {
        free(last_use);
        free(fl);
        free(dout_off);
        free(aux_off);
        return graft_fail(GRAFT_ENOMEM, "out of memory planning buffers");
    }
#define ROOT(i) (m->layers[i]->fused_into >= 0 ? m->layers[i]->fused_into : (i))
    for (int i = 0; i < L; i++) last_use[i] = i;
    for (int i = 0; i < L; i++) {
        const graft_layer *l = m->layers[i];
        for (int j = 0; j < l->n_inputs; j++) {
            int src = ROOT(l->inputs[j]);
            last_use[src] = l->requires_grad ? L : (i > last_use[src] ? i : last_use[src]);
        }
        if (l->requires_grad) last_use[i] = L;
        /* It reads the convolution's input, or the convolution's pass writes
         * its output: that input lives until the pool's buffers exist. */
        if (l->computes_conv || l->pooled_by_conv) {
            int src = ROOT(m->layers[l->inputs[0]]->inputs[0]);
            if (last_use[src] < i) last_use[src] = i;
        }
    }
    last_use[ROOT(out)] = L;

    planner p = {fl, 0, 0, 0};
    size_t scratch = 0;
    for (int i = 0; i < L; i++) {
        graft_layer *l = m->layers[i];
        size_t sz = (size_t)cap * graft_shape_size(&l->out_shape);
        aux_off[i] = SIZE_MAX;
        dout_off[i] = SIZE_MAX;
        if (l->fused_into >= 0) {
            offs[i] = offs[l->fused_into];
            continue;
        }
        if (l->computed_by_pool) { /* no output; its input lives until the pool */
            offs[i] = SIZE_MAX;
            continue;
        }
        /* The input is the caller's array; pools_in_winograd writes the pool's. */
        offs[i] = i == 0 || l->pools_in_winograd ? SIZE_MAX : plan_alloc(&p, sz);
        if (l->ops->aux_floats) {
            size_t a = l->ops->aux_floats(l, cap);
            if (a) aux_off[i] = plan_alloc(&p, a);
        }
        if (l->ops->scratch_floats) {
            size_t s = l->ops->scratch_floats(l, cap);
            if (s > scratch) scratch = s;
        }
        for (int j = 0; j < l->n_inputs; j++) {
            int src = ROOT(l->inputs[j]);
            if (m->layers[src]->computed_by_pool || m->layers[src]->pools_in_winograd)
                src = ROOT(m->layers[src]->inputs[0]);
            bool seen = false; /* Add(x, x) reads one buffer twice */
            for (int k = 0; k < j; k++) seen |= ROOT(l->inputs[k]) == src;
            if (!seen && src > 0 && last_use[src] == i)
                plan_release(&p, offs[src], (size_t)cap * graft_shape_size(&m->layers[src]->out_shape));
        }
        if (last_use[i] == i && i > 0) plan_release(&p, offs[i], sz); /* read by nobody */
    }
#undef ROOT
    /* Gradients, in backward's order: dL/d(out) of a layer lives from the
     * backward of its last consumer (which writes it first) to its own. */
#define DOUT_FLOATS(i) ((size_t)cap * graft_shape_size(&m->layers[i]->out_shape))
    if (m->layers[out]->requires_grad) dout_off[out] = plan_alloc(&p, DOUT_FLOATS(out));
    for (int i = L - 1; i > 0; i--) {
        graft_layer *l = m->layers[i];
        if (!l->requires_grad || l->computed_by_pool) continue;
        if (dout_off[i] == SIZE_MAX) dout_off[i] = plan_alloc(&p, DOUT_FLOATS(i)); /* dead branch */
        for (int j = 0; j < l->n_inputs; j++) {
            int src = l->inputs[j];
            if (m->layers[src]->requires_grad && !m->layers[src]->computed_by_pool && dout_off[src] == SIZE_MAX)
                dout_off[src] = plan_alloc(&p, DOUT_FLOATS(src));
        }
        plan_release(&p, dout_off[i], DOUT_FLOATS(i));
    }
    if (m->layers[0]->requires_grad && dout_off[0] == SIZE_MAX) dout_off[0] = plan_alloc(&p, DOUT_FLOATS(0));
#undef DOUT_FLOATS

    size_t total = p.peak;
    graft_status st = GRAFT_OK;
    if (total > m->arena_floats) {
        graft_free(m->arena);
        m->arena = graft_alloc(total * sizeof(float));
        m->arena_floats = m->arena ? total : 0;
        if (!m->arena)
            st = graft_fail(GRAFT_ENOMEM, "out of memory: activations for a batch of %d need %.1f MiB",
                            cap, (double)total * 4 / 1048576.0);
    }
    if (st == GRAFT_OK && scratch > m->scratch_floats) {
        graft_free(m->scratch);
        m->scratch = graft_alloc(scratch * sizeof(float));
        m->scratch_floats = m->scratch ? scratch : 0;
        if (!m->scratch) st = graft_fail(GRAFT_ENOMEM, "out of memory for %zu scratch floats", scratch);
    }
    if (st == GRAFT_OK && training && !m->grads) {
        m->grads = graft_calloc((m->n_weight_floats ? m->n_weight_floats : 1) * sizeof(float));
        if (!m->grads) st = graft_fail(GRAFT_ENOMEM, "out of memory for weight gradients");
        else bind_weights(m);
    }
    if (st == GRAFT_OK) {
        for (int i = 0; i < L; i++) {
            graft_layer *l = m->layers[i];
            l->out = offs[i] == SIZE_MAX ? NULL : m->arena + offs[i];
            l->dout = dout_off[i] == SIZE_MAX ? NULL : m->arena + dout_off[i];
            l->aux = aux_off[i] == SIZE_MAX ? NULL : m->arena + aux_off[i];
        }
        m->capacity = cap;
        m->prepared_training = training;
        m->planned_threads = graft_threads();
    } else {
        m->capacity = 0;
    }
    free(last_use);
    free(fl);
    free(dout_off);
    free(aux_off);
    return st;
}

/* ------------------------------------------------------------ passes */

#define MAX_FANIN 64

graft_status graft_model_forward_range(graft_model *m, const float *x, int n, bool training,
                                       int first, int last)
{
    graft_status s = graft_model_prepare(m, n, training);
    if (s != GRAFT_OK) return s;
    if (x) m->layers[0]->out = (float *)x; /* read only: no layer writes its input */
    if (first < 1) first = 1;
    if (last > m->n_layers) last = m->n_layers;
    const float *in[MAX_FANIN];
    for (int i = first; i < last; i++) {
        graft_layer *l = m->layers[i];
        if (l->n_inputs > MAX_FANIN)
            return graft_fail(GRAFT_EUNSUPPORTED, "layer '%s' has more than %d inputs", l->name,
                              MAX_FANIN);
        /* Done by an earlier layer's output pass (a convolution's for the
         * pool above it), or by the pool above. */
        if (l->fused_into >= 0 || l->computed_by_pool || l->pooled_by_conv) continue;
        for (int j = 0; j < l->n_inputs; j++) in[j] = m->layers[l->inputs[j]]->out;
        graft_fwd f = {n, training, in, l->out, l->aux, m->scratch, &m->rng};
        double t0 = m->profiling ? graft_now() : 0;
        l->ops->forward(l, &f);
        if (m->profiling) graft_profile_add(m, 2 * i, graft_now() - t0);
    }
    return GRAFT_OK;
}

graft_status graft_model_forward(graft_model *m, const float *x, int n, bool training)
{
    return graft_model_forward_range(m, x, n, training, 1, m->n_layers);
}

graft_status graft_model_backward(graft_model *m, const float *dout, int n)
{
    if (!m->prepared_training || m->capacity < n)
        return graft_fail(GRAFT_ESTATE, "backward without a training forward pass");
    int L = m->n_layers, out = output_index(m);
    graft_layer *ol = m->layers[out];
    if (!ol->requires_grad) return GRAFT_OK; /* nothing trains */
    bool *written = m->grad_written; /* sized by prepare: no allocation per step */
    memset(written, 0, (size_t)L * sizeof(bool));
    memcpy(ol->dout, dout, (size_t)n * graft_shape_size(&ol->out_shape) * sizeof(float));
    written[out] = true;
    const float *in[MAX_FANIN];
    float *din[MAX_FANIN];
    bool acc[MAX_FANIN];
    for (int i = L - 1; i >= m->lowest_grad_layer && i > 0; i--) {
        graft_layer *l = m->layers[i];
        if (!l->requires_grad || l->computed_by_pool) continue;
        if (!written[i]) /* a branch that does not reach the output */
            memset(l->dout, 0, (size_t)n * graft_shape_size(&l->out_shape) * sizeof(float));
        for (int j = 0; j < l->n_inputs; j++) {
            graft_layer *src = m->layers[l->inputs[j]];
            in[j] = src->out;
            din[j] = src->requires_grad ? src->dout : NULL;
            acc[j] = src->requires_grad && written[src->index];
            if (src->requires_grad) written[src->index] = true;
        }
        graft_bwd b = {n, true, in, l->out, l->dout, din, acc, graft_layer_trains_weights(l),
                       l->aux, m->scratch};
        double t0 = m->profiling ? graft_now() : 0;
        l->ops->backward(l, &b);
        if (m->profiling) graft_profile_add(m, 2 * i + 1, graft_now() - t0);
    }
    return GRAFT_OK;
}
