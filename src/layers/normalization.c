/*
 * Normalization: y = (x - mean) / max(sqrt(variance), 1e-7) along one axis
 * (invert=True: y = x * max(sqrt(variance), 1e-7) + mean), as Keras's
 * preprocessing layer computes it. The mean and variance come from the
 * config when it lists them, or else are the weights "mean", "variance" and
 * "count" (Keras's adapt state; count is kept only to match Keras's files),
 * as in EfficientNet's stem.
 */
#include "kernels/kernels.h"
#include "layers/config_json.h"
#include "layers/layer.h"

#include <math.h>
#include <string.h>

#define EPSILON 1e-7f

typedef struct {
    int axis;         /* Keras's */
    bool invert;
    int n_values;     /* constants from the config; 0: weights */
    float mean[GRAFT_NORMALIZATION_MAX], variance[GRAFT_NORMALIZATION_MAX];
    size_t dim, inner; /* the axis' size, and the floats after it */
} normalization;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    normalization *z = l->cfg;
    const int r = in[0].rank, ax = z->axis < 0 ? r + z->axis : z->axis - 1;
    if (ax < 0 || ax >= r)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Normalization): axis=%d is not an axis of its rank-%d input "
                          "(batch excluded)",
                          l->name, z->axis, r);
    z->dim = (size_t)in[0].dim[ax];
    z->inner = 1;
    for (int d = ax + 1; d < r; d++) z->inner *= (size_t)in[0].dim[d];
    if (z->n_values && z->n_values != 1 && (size_t)z->n_values != z->dim)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (Normalization): %d mean/variance values for an axis of %zu",
                          l->name, z->n_values, z->dim);
    for (int i = 0; i < z->n_values; i++)
        if (!isfinite(z->mean[i]) || !(z->variance[i] >= 0) || !isfinite(z->variance[i]))
            return graft_fail(GRAFT_EINVAL,
                              "layer '%s' (Normalization): mean and variance must be finite, the "
                              "variance not negative",
                              l->name);
    l->out_shape = in[0];
    if (z->n_values) return GRAFT_OK;
    graft_shape s = graft_shape1(in[0].dim[ax]), scalar = {0, {0}};
    graft_status st = graft_layer_add_weight(l, "mean", s, false, GRAFT_INIT_ZEROS);
    if (st == GRAFT_OK) st = graft_layer_add_weight(l, "variance", s, false, GRAFT_INIT_ONES);
    if (st == GRAFT_OK) st = graft_layer_add_weight(l, "count", scalar, false, GRAFT_INIT_ZEROS);
    return st;
}

static void stats(const graft_layer *l, size_t c, float *mean, float *sd)
{
    const normalization *z = l->cfg;
    const float *m = z->n_values ? z->mean : l->weights[0].data;
    const float *v = z->n_values ? z->variance : l->weights[1].data;
    size_t k = z->n_values == 1 ? 0 : c;
    *mean = m[k];
    float s = sqrtf(v[k]);
    *sd = s > EPSILON ? s : EPSILON;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const normalization *z = l->cfg;
    const size_t blocks = (size_t)f->n * graft_shape_size(&l->out_shape) / (z->dim * z->inner);
    /* Channels last (EfficientNet's stem): one affine map over the tensor. */
    if (z->inner == 1 && z->dim <= GRAFT_AFFINE_MAX_PERIOD) {
        float mean[GRAFT_AFFINE_MAX_PERIOD], sd[GRAFT_AFFINE_MAX_PERIOD];
        for (size_t c = 0; c < z->dim; c++) stats(l, c, &mean[c], &sd[c]);
        if (z->invert)
            graft_affine_periodic(f->in[0], f->out, blocks * z->dim, sd, mean, z->dim, false);
        else
            graft_affine_periodic(f->in[0], f->out, blocks * z->dim, mean, sd, z->dim, true);
        return;
    }
#pragma omp parallel for schedule(static) if (blocks * z->dim * z->inner > 32768)
    for (size_t b = 0; b < blocks; b++)
        for (size_t c = 0; c < z->dim; c++) {
            float mean, sd;
            stats(l, c, &mean, &sd);
            const size_t o = (b * z->dim + c) * z->inner;
            for (size_t i = 0; i < z->inner; i++)
                f->out[o + i] = z->invert ? f->in[0][o + i] * sd + mean : (f->in[0][o + i] - mean) / sd;
        }
}

static void backward(graft_layer *l, const graft_bwd *bw)
{
    const normalization *z = l->cfg;
    float *dx = bw->din[0];
    if (!dx) return;
    const size_t blocks = (size_t)bw->n * graft_shape_size(&l->out_shape) / (z->dim * z->inner);
    const bool acc = bw->din_accumulate[0];
#pragma omp parallel for schedule(static) if (blocks * z->dim * z->inner > 32768)
    for (size_t b = 0; b < blocks; b++)
        for (size_t c = 0; c < z->dim; c++) {
            float mean, sd;
            stats(l, c, &mean, &sd);
            const float k = z->invert ? sd : 1.0f / sd;
            const size_t o = (b * z->dim + c) * z->inner;
            for (size_t i = 0; i < z->inner; i++) {
                float g = bw->dout[o + i] * k;
                dx[o + i] = acc ? dx[o + i] + g : g;
            }
        }
}

static bool add_list(cJSON *o, const char *key, const float *v, int n)
{
    if (n == 0) return cJSON_AddNullToObject(o, key) != NULL;
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    for (int i = 0; arr && i < n; i++)
        if (!cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]))) return false;
    return arr != NULL;
}

/* Keras's Normalization.get_config(). */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const normalization *z = l->cfg;
    bool ok = cJSON_AddNumberToObject(o, "axis", z->axis) &&
              add_list(o, "mean", z->mean, z->n_values) &&
              add_list(o, "variance", z->variance, z->n_values) &&
              cJSON_AddBoolToObject(o, "invert", z->invert);
    return graft_config_done(l, ok);
}

static graft_status read_list(const graft_config_in *c, const cJSON *cfg, const char *key,
                              float *v, int *n)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *n = 0;
    if (!x || cJSON_IsNull(x)) return GRAFT_OK;
    if (cJSON_IsNumber(x)) {
        *n = 1;
        return graft_config_float(c, cfg, key, 0, &v[0]);
    }
    int k = cJSON_IsArray(x) ? cJSON_GetArraySize(x) : 0;
    if (k < 1 || k > GRAFT_NORMALIZATION_MAX)
        return graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                   "'%s' is not a number or a list of 1 to %d numbers", key,
                                   GRAFT_NORMALIZATION_MAX);
    for (int i = 0; i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(x, i);
        if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 1) e = cJSON_GetArrayItem(e, 0);
        if (!cJSON_IsNumber(e) || !isfinite((float)e->valuedouble))
            return graft_config_refuse(c, GRAFT_EFORMAT, "'%s' entry %d is not a number", key, i);
        v[i] = (float)e->valuedouble;
    }
    *n = k;
    return GRAFT_OK;
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_normalization_cfg k = {.name = c->name};
    int nm = 0, nv = 0;
    bool invert = false;
    const cJSON *ax = cJSON_GetObjectItemCaseSensitive(cfg, "axis");
    if (cJSON_IsArray(ax) && cJSON_GetArraySize(ax) == 1) ax = cJSON_GetArrayItem(ax, 0);
    if (!ax || cJSON_IsNull(ax) || cJSON_IsArray(ax))
        return graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                   "graft normalizes along one axis; axis None or a list of "
                                   "several is not supported");
    int rank = graft_layer_output_shape(c->in[0]).rank, i;
    graft_status s = graft_config_axis(c, cfg, "axis", -1, rank, &i);
    if (s == GRAFT_OK) k.axis = (int)ax->valuedouble;
    if (s == GRAFT_OK) s = read_list(c, cfg, "mean", k.mean, &nm);
    if (s == GRAFT_OK) s = read_list(c, cfg, "variance", k.variance, &nv);
    if (s == GRAFT_OK && nm != nv)
        s = graft_config_refuse(c, GRAFT_EFORMAT, "'mean' and 'variance' must both be given or both null");
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "invert", false, &invert);
    k.n_values = nm;
    k.invert = invert;
    if (s == GRAFT_OK) *out = graft_normalization(c->m, c->in[0], k);
    return s;
}

const graft_layer_ops graft_normalization_ops = {
    .class_name = "Normalization",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_normalization(graft_model *m, graft_layer *in, graft_normalization_cfg cfg)
{
    normalization z = {.axis = cfg.axis ? cfg.axis : -1, .invert = cfg.invert != 0};
    if (cfg.n_values < 0 || cfg.n_values > GRAFT_NORMALIZATION_MAX) {
        if (m)
            graft_model_set_error(m, GRAFT_EINVAL,
                                  "layer '%s' (Normalization): 0 to %d mean/variance values",
                                  cfg.name ? cfg.name : "normalization", GRAFT_NORMALIZATION_MAX);
        return NULL;
    }
    z.n_values = cfg.n_values;
    memcpy(z.mean, cfg.mean, sizeof z.mean);
    memcpy(z.variance, cfg.variance, sizeof z.variance);
    return graft_model_add_unary(m, &graft_normalization_ops, cfg.name, "normalization", &z,
                                 sizeof z, in);
}
