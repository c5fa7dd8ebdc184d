/*
 * Building the graph: models, layers added with shape inference, the
 * output, and the model's sticky error.
 */
#include "graph/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    m->profiling = graft_env_on(GRAFT_ENV_PROFILE);
    return m;
}

/* Adds seconds to slot k of the profile (sized when first needed: layers
 * are added after the model is made). */
void graft_profile_add(graft_model *m, int k, double seconds)
{
    if (!m->profile) {
        m->profile_slots = 2 * m->n_layers + GRAFT_PROFILE_N_EXTRA;
        m->profile = calloc((size_t)m->profile_slots, sizeof(double));
        m->profile_first = calloc((size_t)m->profile_slots, sizeof(double));
        m->profile_seen = calloc((size_t)m->profile_slots, sizeof(bool));
        if (!m->profile || !m->profile_first || !m->profile_seen) {
            free(m->profile);
            free(m->profile_first);
            free(m->profile_seen);
            m->profile = m->profile_first = NULL;
            m->profile_seen = NULL;
            m->profiling = false;
            return;
        }
    }
    if (k < 0 || k >= m->profile_slots) return;
    if (m->profile_seen[k]) {
        m->profile[k] += seconds;
    } else {
        m->profile_seen[k] = true;
        m->profile_first[k] += seconds;
    }
}

void graft_profile_replanned(graft_model *m)
{
    if (m->profile_seen) memset(m->profile_seen, 0, (size_t)m->profile_slots * sizeof(bool));
}

void graft_profile_add_extra(graft_model *m, graft_profile_extra what, double seconds)
{
    graft_profile_add(m, 2 * m->n_layers + (int)what, seconds);
}

static void profile_print(const graft_model *m)
{
    double total = 0, first = 0;
    for (int k = 0; k < m->profile_slots; k++) total += m->profile[k], first += m->profile_first[k];
    if (total + first <= 0) return;
    /* Only first times (a single pass per plan): show those, said so. */
    const bool steady = total > 0;
    const double *t = steady ? m->profile : m->profile_first;
    if (steady)
        fprintf(stderr, "GRAFT_PROFILE %s: %.3f s in layers, the optimizer and waits (and %.3f s in "
                "each one's first time after a plan, left out: its buffers' first page faults, "
                "oneDNN's JIT)\n", m->name, total, first);
    else
        fprintf(stderr, "GRAFT_PROFILE %s: %.3f s in layers, the optimizer and waits, each the "
                "first time after a plan only (with its buffers' first page faults and oneDNN's "
                "JIT)\n", m->name, first);
    if (!steady) total = first;
    fprintf(stderr, "  %-32s %-22s %10s %10s %6s\n", "layer", "class", "forward s", "backward s", "share");
    for (int i = 0; i < m->n_layers && 2 * i + 1 < m->profile_slots; i++) {
        double f = t[2 * i], b = t[2 * i + 1];
        if (f + b <= 0) continue;
        fprintf(stderr, "  %-32s %-22s %10.3f %10.3f %5.1f%%\n", m->layers[i]->name,
                m->layers[i]->ops->class_name, f, b, 100.0 * (f + b) / total);
    }
    static const char *const extra[GRAFT_PROFILE_N_EXTRA] = {
        "(optimizer step)", "(waiting for data)", "(ranks' sums)", "(gradient allreduce)",
        "(int8 run)"};
    for (int k = 0; k < GRAFT_PROFILE_N_EXTRA; k++) {
        double o = t[2 * m->n_layers + k];
        if (k == GRAFT_PROFILE_INT8 && o > 0) /* a forward pass */
            fprintf(stderr, "  %-32s %-22s %10.3f %10s %5.1f%%\n", extra[k], "", o, "", 100.0 * o / total);
        else if (k == GRAFT_PROFILE_OPTIMIZER || o > 0)
            fprintf(stderr, "  %-32s %-22s %10s %10.3f %5.1f%%\n", extra[k], "", "", o, 100.0 * o / total);
    }
}

/* A large arena on huge pages, as the weights: its first pass faulted its
 * 4 KiB pages in one by one (Xception's first call at batch 32 took two
 * calls' time). A small one from the heap: a mapping costs a 2 MiB page for
 * a few KiB, and tests build thousands of models. */
#define ARENA_MAPPED_MIN ((size_t)8 << 20)

static bool arena_mapped(size_t floats) { return floats * sizeof(float) >= ARENA_MAPPED_MIN; }

bool graft_arena_alloc(graft_model *m, size_t floats)
{
    graft_arena_free(m);
    m->arena = arena_mapped(floats) ? graft_pages_alloc(floats * sizeof(float))
                                    : graft_alloc(floats * sizeof(float));
    m->arena_floats = m->arena ? floats : 0;
    return m->arena != NULL;
}

void graft_arena_free(graft_model *m)
{
    if (arena_mapped(m->arena_floats)) graft_pages_free(m->arena);
    else graft_free(m->arena);
    m->arena = NULL;
    m->arena_floats = 0;
}

void graft_model_free(graft_model *m)
{
    if (!m) return;
    if (m->profile) profile_print(m);
    free(m->profile);
    free(m->profile_first);
    free(m->profile_seen);
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        if (l->ops->destroy) l->ops->destroy(l);
        free(l->inputs);
        free(l->cfg);
        free(l);
    }
    free(m->layers);
    graft_names_free(&m->names);
    graft_pages_free(m->weights);
    if (!m->grads_lent) graft_pages_free(m->grads);
    graft_pages_free(m->opt_m);
    graft_pages_free(m->opt_v);
    if (m->plan_free) m->plan_free(m->plan);
    if (m->int8_free) m->int8_free(m->int8);
    graft_arena_free(m);
    graft_free(m->scratch);
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

const char *graft_model_layer_name_at(const void *m, int i)
{
    return ((const graft_model *)m)->layers[i]->name;
}

static bool name_taken(const graft_model *m, const char *name)
{
    return graft_names_find(&m->names, name, graft_model_layer_name_at, m) >= 0;
}

static void auto_name(const graft_model *m, const char *prefix, char *out, size_t cap)
{
    snprintf(out, cap, "%s", prefix);
    for (int k = 1; name_taken(m, out); k++) snprintf(out, cap, "%s_%d", prefix, k);
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
        s = graft_model_place_weights(m, l);
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

graft_layer *graft_model_output(const graft_model *m)
{
    return m->n_layers ? m->layers[graft_model_output_index(m)] : NULL;
}

int graft_model_output_index(const graft_model *m)
{
    return m->output >= 0 ? m->output : m->n_layers - 1;
}
