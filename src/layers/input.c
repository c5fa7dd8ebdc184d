/* InputLayer: holds the model's input shape; the caller's array is its output. */
#include "internal.h"

static graft_status build(graft_layer *l, const graft_shape *in)
{
    (void)in;
    const graft_shape *s = l->cfg;
    if (s->rank < 1 || s->rank > GRAFT_MAX_RANK)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (InputLayer): rank %d is not supported", l->name,
                          s->rank);
    for (int d = 0; d < s->rank; d++)
        if (s->dim[d] <= 0)
            return graft_fail(GRAFT_ESHAPE,
                              "layer '%s' (InputLayer): dimension %d is %d; every dimension must be "
                              "positive",
                              l->name, d, s->dim[d]);
    l->out_shape = *s;
    return GRAFT_OK;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    (void)l;
    (void)f;
}

static const graft_layer_ops ops = {
    .class_name = "InputLayer",
    .build = build,
    .forward = forward,
};

graft_layer *graft_input(graft_model *m, const char *name, graft_shape shape)
{
    if (m && m->n_layers > 0 && m->status == GRAFT_OK) {
        graft_model_set_error(m, GRAFT_EUNSUPPORTED,
                              "model '%s' already has an input; graft models take one input",
                              m->name);
        return NULL;
    }
    return graft_model_add_layer(m, &ops, name, "input_1", &shape, sizeof shape, 0, NULL);
}
