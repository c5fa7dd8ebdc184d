/* The accessors of the public API: layers, their names, shapes, weights and flags. */
#include "graph/graph.h"

#include <string.h>

int graft_model_num_layers(const graft_model *m) { return m->n_layers; }

graft_layer *graft_model_layer(const graft_model *m, int index)
{
    if (index < 0) index += m->n_layers;
    if (index < 0 || index >= m->n_layers) return NULL;
    return m->layers[index];
}

graft_layer *graft_model_find(const graft_model *m, const char *name)
{
    int i = graft_names_find(&m->names, name, graft_model_layer_name_at, m);
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

graft_status graft_model_set_weights_constant(graft_model *m, int constant)
{
    if (!m) return graft_fail(GRAFT_EINVAL, "graft_model_set_weights_constant: no model");
    m->weights_constant = constant ? ++m->promises_made : 0;
    return GRAFT_OK;
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


int graft_model_sole_reader(const graft_model *m, int i)
{
    int reader = -1, count = 0;
    for (int k = i + 1; k < m->n_layers; k++)
        for (int j = 0; j < m->layers[k]->n_inputs; j++)
            if (m->layers[k]->inputs[j] == i) {
                reader = k;
                count++;
            }
    return count == 1 && i != graft_model_output_index(m) ? reader : -1;
}
