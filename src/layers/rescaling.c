/*
 * Rescaling: y = x * scale + offset, with scale and offset each one number
 * or one per channel (the last axis), as Keras Applications' EfficientNet
 * divides by the ImageNet deviations with a list.
 */
#include "kernels/kernels.h"
#include "layers/config_json.h"
#include "layers/layer.h"

#include <math.h>
#include <string.h>

typedef struct {
    graft_rescaling_cfg cfg;
    size_t channels;
} rescaling;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    rescaling *r = l->cfg;
    int C = in[0].dim[in[0].rank - 1];
    const int counts[2] = {r->cfg.n_scale, r->cfg.n_offset};
    for (int k = 0; k < 2; k++)
        if (counts[k] != 1 && counts[k] != C)
            return graft_fail(GRAFT_ESHAPE,
                              "layer '%s' (Rescaling): %s has %d values; one, or one per channel "
                              "(%d) of its input",
                              l->name, k ? "offset" : "scale", counts[k], C);
    for (int i = 0; i < r->cfg.n_scale; i++)
        if (!isfinite(r->cfg.scale[i]))
            return graft_fail(GRAFT_EINVAL, "layer '%s' (Rescaling): scale is not finite", l->name);
    for (int i = 0; i < r->cfg.n_offset; i++)
        if (!isfinite(r->cfg.offset[i]))
            return graft_fail(GRAFT_EINVAL, "layer '%s' (Rescaling): offset is not finite", l->name);
    r->channels = (size_t)C;
    l->out_shape = in[0];
    return GRAFT_OK;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const rescaling *r = l->cfg;
    const size_t C = r->channels, rows = (size_t)f->n * graft_shape_size(&l->out_shape) / C;
    const bool cs = r->cfg.n_scale > 1, co = r->cfg.n_offset > 1;
    if (C <= GRAFT_AFFINE_MAX_PERIOD) { /* one affine map over the tensor */
        float scale[GRAFT_AFFINE_MAX_PERIOD], offset[GRAFT_AFFINE_MAX_PERIOD];
        for (size_t c = 0; c < C; c++) {
            scale[c] = r->cfg.scale[cs ? c : 0];
            offset[c] = r->cfg.offset[co ? c : 0];
        }
        graft_affine_periodic(f->in[0], f->out, rows * C, scale, offset, C, false);
        return;
    }
#pragma omp parallel for schedule(static) if (rows * C > 32768)
    for (size_t i = 0; i < rows; i++) {
        const float *x = f->in[0] + i * C;
        float *y = f->out + i * C;
        for (size_t c = 0; c < C; c++)
            y[c] = x[c] * r->cfg.scale[cs ? c : 0] + r->cfg.offset[co ? c : 0];
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const rescaling *r = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const size_t C = r->channels, rows = (size_t)b->n * graft_shape_size(&l->out_shape) / C;
    const bool cs = r->cfg.n_scale > 1, acc = b->din_accumulate[0];
#pragma omp parallel for schedule(static) if (rows * C > 32768)
    for (size_t i = 0; i < rows; i++) {
        const float *dy = b->dout + i * C;
        float *d = dx + i * C;
        for (size_t c = 0; c < C; c++) {
            float g = dy[c] * r->cfg.scale[cs ? c : 0];
            d[c] = acc ? d[c] + g : g;
        }
    }
}

static bool add_values(cJSON *o, const char *key, const float *v, int n)
{
    if (n == 1) return graft_config_add_float(o, key, v[0]);
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    for (int i = 0; arr && i < n; i++) {
        cJSON *tmp = cJSON_CreateObject();
        bool ok = tmp && graft_config_add_float(tmp, "v", v[i]);
        cJSON *item = ok ? cJSON_DetachItemFromObject(tmp, "v") : NULL;
        cJSON_Delete(tmp);
        if (!item || !cJSON_AddItemToArray(arr, item)) {
            cJSON_Delete(item);
            return false;
        }
    }
    return arr != NULL;
}

/* Keras's Rescaling.get_config(). */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const rescaling *r = l->cfg;
    return graft_config_done(l, add_values(o, "scale", r->cfg.scale, r->cfg.n_scale) &&
                                    add_values(o, "offset", r->cfg.offset, r->cfg.n_offset));
}

/* A number, or a list of GRAFT_RESCALING_MAX numbers at most. */
static graft_status read_values(const graft_config_in *c, const cJSON *cfg, const char *key,
                                float dflt, float *v, int *n)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *n = 1;
    v[0] = dflt;
    if (!x || cJSON_IsNull(x)) return GRAFT_OK;
    if (cJSON_IsNumber(x)) return graft_config_float(c, cfg, key, dflt, &v[0]);
    int k = cJSON_IsArray(x) ? cJSON_GetArraySize(x) : 0;
    if (k < 1 || k > GRAFT_RESCALING_MAX)
        return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' is not a number or a list of 1 to %d",
                                   key, GRAFT_RESCALING_MAX);
    for (int i = 0; i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(x, i);
        if (!cJSON_IsNumber(e) || !isfinite((float)e->valuedouble))
            return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' entry %d is not a number", key, i);
        v[i] = (float)e->valuedouble;
    }
    *n = k;
    return GRAFT_OK;
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_rescaling_cfg k = {.name = c->name};
    graft_status s = read_values(c, cfg, "scale", 1.0f, k.scale, &k.n_scale);
    if (s == GRAFT_OK) s = read_values(c, cfg, "offset", 0.0f, k.offset, &k.n_offset);
    if (s == GRAFT_OK) *out = graft_rescaling(c->m, c->in[0], k);
    return s;
}

const graft_layer_ops graft_rescaling_ops = {
    .class_name = "Rescaling",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_rescaling(graft_model *m, graft_layer *in, graft_rescaling_cfg cfg)
{
    if (cfg.n_scale == 0) {
        cfg.n_scale = 1;
        cfg.scale[0] = 1.0f;
    }
    if (cfg.n_offset == 0) {
        cfg.n_offset = 1;
        cfg.offset[0] = 0.0f;
    }
    if (cfg.n_scale < 0 || cfg.n_scale > GRAFT_RESCALING_MAX) cfg.n_scale = GRAFT_RESCALING_MAX + 1;
    if (cfg.n_offset < 0 || cfg.n_offset > GRAFT_RESCALING_MAX) cfg.n_offset = GRAFT_RESCALING_MAX + 1;
    rescaling r = {.cfg = cfg};
    r.cfg.name = NULL;
    if (m && (r.cfg.n_scale > GRAFT_RESCALING_MAX || r.cfg.n_offset > GRAFT_RESCALING_MAX)) {
        graft_model_set_error(m, GRAFT_EINVAL,
                              "layer '%s' (Rescaling): scale and offset take 1 to %d values",
                              cfg.name ? cfg.name : "rescaling", GRAFT_RESCALING_MAX);
        return NULL;
    }
    return graft_model_add_unary(m, &graft_rescaling_ops, cfg.name, "rescaling", &r, sizeof r, in);
}
