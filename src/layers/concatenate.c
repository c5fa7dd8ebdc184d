/*
 * Concatenate: two or more inputs joined along one axis (Keras's `axis`,
 * counting the batch as 0; -1, the default, is the channels). The other
 * axes must agree. Each sample is `outer` blocks, and each input gives
 * every block its own run of floats.
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <string.h>

#define CONCAT_MAX 64

typedef struct {
    int axis;                   /* as Keras's config gives it */
    size_t outer;               /* blocks per sample: the product of the axes before */
    size_t run[CONCAT_MAX];     /* input k's floats per block */
    size_t out_run;             /* the output's floats per block */
} concat;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    concat *c = l->cfg;
    const int r = in[0].rank;
    if (l->n_inputs < 1 || l->n_inputs > CONCAT_MAX)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (Concatenate): takes 1 to %d inputs, got %d",
                          l->name, CONCAT_MAX, l->n_inputs);
    int ax = c->axis < 0 ? r + c->axis : c->axis - 1;
    if (ax < 0 || ax >= r)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Concatenate): axis=%d is not an axis of its rank-%d inputs "
                          "(the batch axis 0 can not be joined)",
                          l->name, c->axis, r);
    graft_shape out = in[0];
    out.dim[ax] = 0;
    for (int k = 0; k < l->n_inputs; k++) {
        bool ok = in[k].rank == r;
        for (int d = 0; ok && d < r; d++) ok = d == ax || in[k].dim[d] == in[0].dim[d];
        if (!ok) {
            char a[96], b[96];
            graft_shape_format(&in[0], a, sizeof a);
            graft_shape_format(&in[k], b, sizeof b);
            return graft_fail(GRAFT_ESHAPE,
                              "layer '%s' (Concatenate): input 0 is %s and input %d is %s; they "
                              "must agree except on axis %d",
                              l->name, a, k, b, c->axis);
        }
        if ((long long)out.dim[ax] + in[k].dim[ax] > (1 << 30))
            return graft_fail(GRAFT_EUNSUPPORTED, "layer '%s' (Concatenate): the joined axis is too long",
                              l->name);
        out.dim[ax] += in[k].dim[ax];
    }
    c->outer = 1;
    for (int d = 0; d < ax; d++) c->outer *= (size_t)out.dim[d];
    size_t inner = 1;
    for (int d = ax + 1; d < r; d++) inner *= (size_t)out.dim[d];
    for (int k = 0; k < l->n_inputs; k++) c->run[k] = (size_t)in[k].dim[ax] * inner;
    c->out_run = (size_t)out.dim[ax] * inner;
    l->out_shape = out;
    return GRAFT_OK;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const concat *c = l->cfg;
    const long blocks = (long)((size_t)f->n * c->outer);
#pragma omp parallel for schedule(static) if (blocks > 64)
    for (long b = 0; b < blocks; b++) {
        float *y = f->out + (size_t)b * c->out_run;
        for (int k = 0; k < l->n_inputs; k++) {
            memcpy(y, f->in[k] + (size_t)b * c->run[k], c->run[k] * sizeof(float));
            y += c->run[k];
        }
    }
}

static void backward(graft_layer *l, const graft_bwd *bw)
{
    const concat *c = l->cfg;
    const long blocks = (long)((size_t)bw->n * c->outer);
    /* Concatenate(x, x) hands one buffer twice (the second accumulating): the
     * inputs go in order within each block, so one thread owns a block. */
#pragma omp parallel for schedule(static) if (blocks > 64)
    for (long b = 0; b < blocks; b++) {
        const float *g = bw->dout + (size_t)b * c->out_run;
        for (int k = 0; k < l->n_inputs; k++) {
            float *d = bw->din[k] ? bw->din[k] + (size_t)b * c->run[k] : NULL;
            if (d && bw->din_accumulate[k])
                for (size_t i = 0; i < c->run[k]; i++) d[i] += g[i];
            else if (d)
                memcpy(d, g, c->run[k] * sizeof(float));
            g += c->run[k];
        }
    }
}

/* Keras's Concatenate.get_config(): the axis as given. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const concat *c = l->cfg;
    return graft_config_done(l, cJSON_AddNumberToObject(o, "axis", c->axis) != NULL);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    int axis = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "axis");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < -GRAFT_MAX_RANK - 1 ||
            v->valuedouble > GRAFT_MAX_RANK || v->valuedouble != (int)v->valuedouble)
            return graft_config_refuse(c, GRAFT_EFORMAT, "'axis' is not an axis");
        axis = (int)v->valuedouble;
    }
    *out = graft_concatenate(c->m, c->name, axis, c->n_in, c->in);
    return GRAFT_OK;
}

bool graft_concatenate_channels(const graft_layer *l)
{
    if (strcmp(l->ops->class_name, "Concatenate") != 0) return false;
    const concat *c = l->cfg;
    return l->out_shape.rank == 3 && (c->axis == -1 || c->axis == 3);
}

const graft_layer_ops graft_concatenate_ops = {
    .class_name = "Concatenate",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
    .merge = true,
};

graft_layer *graft_concatenate(graft_model *m, const char *name, int axis, int n,
                               graft_layer *const *inputs)
{
    concat c = {.axis = axis};
    return graft_model_add_layer(m, &graft_concatenate_ops, name, "concatenate", &c, sizeof c, n,
                                 inputs);
}
