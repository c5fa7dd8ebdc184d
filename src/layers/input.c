/* InputLayer: holds the model's input shape; the caller's array is its output. */
#include "layers/layer.h"
#include "layers/config_json.h"

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

/* Keras 2's InputLayer.get_config(): the shape with the batch as null. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_shape *s = l->cfg;
    cJSON *shape = cJSON_AddArrayToObject(o, "batch_input_shape");
    bool ok = shape && cJSON_AddItemToArray(shape, cJSON_CreateNull());
    for (int d = 0; d < s->rank && ok; d++)
        ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber(s->dim[d]));
    ok = ok && cJSON_AddBoolToObject(o, "sparse", false) &&
         cJSON_AddBoolToObject(o, "ragged", false);
    return graft_config_done(l, ok);
}

static const graft_layer_ops ops = {
    .class_name = "InputLayer",
    .build = build,
    .forward = forward,
    .get_config = get_config,
};

graft_layer *graft_input(graft_model *m, const char *name, graft_shape shape)
{
    if (m && graft_model_num_layers(m) > 0 && graft_model_status(m) == GRAFT_OK) {
        graft_model_set_error(m, GRAFT_EUNSUPPORTED,
                              "model '%s' already has an input; graft models take one input",
                              graft_model_name(m));
        return NULL;
    }
    return graft_model_add_layer(m, &ops, name, "input_1", &shape, sizeof shape, 0, NULL);
}
