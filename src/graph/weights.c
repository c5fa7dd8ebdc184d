/*
 * The weights: one array for the whole model (kann), each layer's weights
 * views into it, drawn from the layers' initializers with a seed per layer.
 */
#include "graph/graph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
void graft_model_bind_weights(graft_model *m)
{
    for (int i = 0; i < m->n_layers; i++) bind_layer(m, m->layers[i]);
}

/* Forgets the gradient array, freeing it if it is the model's own. */
static void drop_grads(graft_model *m)
{
    if (!m->grads_lent) graft_pages_free(m->grads);
    m->grads = NULL;
    m->grads_lent = false;
}

void graft_model_lend_grads(graft_model *m, float *grads)
{
    drop_grads(m);
    m->grads = grads;
    m->grads_lent = grads != NULL;
    graft_model_bind_weights(m);
}

static void init_weight(graft_weight *w, graft_rng *rng)
{
    size_t n = graft_shape_size(&w->shape);
    switch (w->init) {
    case GRAFT_INIT_ZEROS: memset(w->data, 0, n * sizeof(float)); break;
    case GRAFT_INIT_ONES:
        for (size_t i = 0; i < n; i++) w->data[i] = 1.0f;
        break;
    case GRAFT_INIT_CONSTANT:
        for (size_t i = 0; i < n; i++) w->data[i] = w->init_value;
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
        graft_rng_fill_symmetric(rng, w->data, n, limit);
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
graft_status graft_model_place_weights(graft_model *m, graft_layer *l)
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
        /* Doubling: the pages past the weights are never written, so they
         * cost address space only. */
        size_t cap = 2 * m->cap_weight_floats;
        if (cap > GRAFT_MAX_PARAMS) cap = GRAFT_MAX_PARAMS;
        if (cap < need) cap = need;
        float *grown = graft_pages_grow(m->weights, cap * sizeof(float));
        if (!grown) return graft_fail(GRAFT_ENOMEM, "out of memory for %zu weights", need);
        m->weights = grown;
        m->cap_weight_floats = cap;
        drop_grads(m); /* re-made at the next training step */
        m->n_weight_floats = need;
        graft_model_bind_weights(m);
    } else {
        drop_grads(m);
        m->n_weight_floats = need;
        bind_layer(m, l);
    }
    if (m->skip_init) return GRAFT_OK; /* fresh pages: zero until drawn */
    graft_rng rng;
    graft_rng_seed(&rng, m->init_seed ^ ((uint64_t)l->index * 0x9e3779b97f4a7c15ULL));
    for (int k = 0; k < l->n_weights; k++) init_weight(&l->weights[k], &rng);
    return GRAFT_OK;
}

graft_status graft_model_init_weights(graft_model *m, uint64_t seed)
{
    m->init_seed = seed;
    m->weights_constant = 0;
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        graft_rng rng;
        graft_rng_seed(&rng, seed ^ ((uint64_t)l->index * 0x9e3779b97f4a7c15ULL));
        for (int k = 0; k < l->n_weights; k++) init_weight(&l->weights[k], &rng);
    }
    return GRAFT_OK;
}

