/*
 * LayerNormalization over the trailing axes of each sample (Keras's `axis`:
 * -1, the channels, as ConvNeXt uses it, or a list of trailing axes):
 * y = (x - mean) / sqrt(var + epsilon) * gamma + beta, with the biased
 * variance, gamma and beta shaped as the normalized axes. Backward
 * recomputes each row's statistics from the input.
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <math.h>
#include <string.h>

typedef struct {
    graft_layer_norm_cfg cfg;
    int first;       /* the first normalized per-sample axis */
    size_t d;        /* floats per normalized row */
} layer_norm;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    layer_norm *z = l->cfg;
    const int r = in[0].rank;
    int first = z->cfg.first_axis < 0 ? r + z->cfg.first_axis : z->cfg.first_axis - 1;
    if (first < 0 || first >= r)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (LayerNormalization): axis %d is not an axis of its rank-%d "
                          "input (batch excluded)",
                          l->name, z->cfg.first_axis, r);
    if (!(z->cfg.epsilon > 0) || !isfinite(z->cfg.epsilon))
        return graft_fail(GRAFT_EINVAL, "layer '%s' (LayerNormalization): epsilon must be positive",
                          l->name);
    z->first = first;
    graft_shape ps = {r - first, {0}};
    z->d = 1;
    for (int k = first; k < r; k++) {
        ps.dim[k - first] = in[0].dim[k];
        z->d *= (size_t)in[0].dim[k];
    }
    l->out_shape = in[0];
    graft_status s = GRAFT_OK;
    if (!z->cfg.no_scale) s = graft_layer_add_weight(l, "gamma", ps, true, GRAFT_INIT_ONES);
    if (s == GRAFT_OK && !z->cfg.no_center)
        s = graft_layer_add_weight(l, "beta", ps, true, GRAFT_INIT_ZEROS);
    return s;
}

static const float *gamma_of(const graft_layer *l)
{
    const layer_norm *z = l->cfg;
    return z->cfg.no_scale ? NULL : l->weights[0].data;
}

static const float *beta_of(const graft_layer *l)
{
    const layer_norm *z = l->cfg;
    return z->cfg.no_center ? NULL : l->weights[z->cfg.no_scale ? 0 : 1].data;
}

/* Sums in double, in LANES partial sums (element i in lane i % LANES) added
 * in lane order at the end: vectorised, and the same bits whatever the
 * thread that runs the row. */
#define LANES 8

static double sum_lanes(const double *a)
{
    double s = 0;
    for (int j = 0; j < LANES; j++) s += a[j];
    return s;
}

static void row_stats(const float *x, size_t d, float eps, float *mean, float *rstd)
{
    double s[LANES] = {0}, q[LANES] = {0};
    const size_t body = d - d % LANES;
    for (size_t i = 0; i < body; i += LANES) {
#pragma omp simd
        for (int j = 0; j < LANES; j++) s[j] += x[i + j];
    }
    for (size_t i = body; i < d; i++) s[i - body] += x[i];
    const double mu = sum_lanes(s) / (double)d;
    for (size_t i = 0; i < body; i += LANES) {
#pragma omp simd
        for (int j = 0; j < LANES; j++) q[j] += (x[i + j] - mu) * (x[i + j] - mu);
    }
    for (size_t i = body; i < d; i++) q[i - body] += (x[i] - mu) * (x[i] - mu);
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(sum_lanes(q) / (double)d + eps));
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const layer_norm *z = l->cfg;
    const size_t d = z->d, rows = (size_t)f->n * graft_shape_size(&l->out_shape) / d;
    const float *g = gamma_of(l), *be = beta_of(l);
#pragma omp parallel for schedule(static) if (rows * d > 32768)
    for (size_t r = 0; r < rows; r++) {
        const float *x = f->in[0] + r * d;
        float *y = f->out + r * d, mean, rstd;
        row_stats(x, d, z->cfg.epsilon, &mean, &rstd);
        if (g && be) { /* as below, without the selects per element */
#pragma omp simd
            for (size_t i = 0; i < d; i++) y[i] = (x[i] - mean) * rstd * g[i] + be[i];
            continue;
        }
        for (size_t i = 0; i < d; i++) {
            float v = (x[i] - mean) * rstd;
            y[i] = v * (g ? g[i] : 1.0f) + (be ? be[i] : 0.0f);
        }
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const layer_norm *z = l->cfg;
    const size_t d = z->d, rows = (size_t)b->n * graft_shape_size(&l->out_shape) / d;
    const float *g = gamma_of(l);
    float *dx = b->din[0];
    const bool acc = b->din_accumulate[0];
    if (b->param_grads) {
        float *dg = z->cfg.no_scale ? NULL : l->weights[0].grad;
        float *db = z->cfg.no_center ? NULL : l->weights[z->cfg.no_scale ? 0 : 1].grad;
        if (dg) memset(dg, 0, d * sizeof(float));
        if (db) memset(db, 0, d * sizeof(float));
        /* In row order, so the sums do not depend on the thread count. */
        for (size_t r = 0; r < rows; r++) {
            const float *x = b->in[0] + r * d, *dy = b->dout + r * d;
            float mean, rstd;
            row_stats(x, d, z->cfg.epsilon, &mean, &rstd);
            for (size_t i = 0; i < d; i++) {
                if (dg) dg[i] += dy[i] * (x[i] - mean) * rstd;
                if (db) db[i] += dy[i];
            }
        }
    }
    if (!dx) return;
#pragma omp parallel for schedule(static) if (rows * d > 32768)
    for (size_t r = 0; r < rows; r++) {
        const float *x = b->in[0] + r * d, *dy = b->dout + r * d;
        float *o = dx + r * d, mean, rstd;
        row_stats(x, d, z->cfg.epsilon, &mean, &rstd);
        double s1 = 0, s2 = 0; /* mean of dxhat and of dxhat * xhat */
        for (size_t i = 0; i < d; i++) {
            double gh = (double)dy[i] * (g ? g[i] : 1.0f);
            s1 += gh;
            s2 += gh * (x[i] - mean) * rstd;
        }
        s1 /= (double)d;
        s2 /= (double)d;
        for (size_t i = 0; i < d; i++) {
            double xh = (x[i] - mean) * rstd, gh = (double)dy[i] * (g ? g[i] : 1.0f);
            float v = (float)(rstd * (gh - s1 - xh * s2));
            o[i] = acc ? o[i] + v : v;
        }
    }
}

/* Keras's LayerNormalization.get_config(): the axis as a list, as a built layer holds it. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const layer_norm *z = l->cfg;
    cJSON *axes = cJSON_AddArrayToObject(o, "axis");
    bool ok = axes != NULL;
    for (int k = z->first; ok && k < l->out_shape.rank; k++)
        ok = cJSON_AddItemToArray(axes, cJSON_CreateNumber(k + 1));
    ok = ok && graft_config_add_float(o, "epsilon", z->cfg.epsilon) &&
         cJSON_AddBoolToObject(o, "center", !z->cfg.no_center) &&
         cJSON_AddBoolToObject(o, "scale", !z->cfg.no_scale) &&
         graft_config_add_initializer(o, "beta_initializer", "Zeros") &&
         graft_config_add_initializer(o, "gamma_initializer", "Ones") &&
         GRAFT_CONFIG_NULLS(o, "beta_regularizer", "gamma_regularizer", "beta_constraint",
                            "gamma_constraint");
    return graft_config_done(l, ok);
}

/* axis: an int, or a list of axes that must be the trailing ones, in order. */
static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_layer_norm_cfg k = {.name = c->name};
    const int rank = graft_layer_output_shape(c->in[0]).rank;
    const cJSON *ax = cJSON_GetObjectItemCaseSensitive(cfg, "axis");
    int first = rank - 1;
    graft_status s = GRAFT_OK;
    if (cJSON_IsArray(ax) && cJSON_GetArraySize(ax) > 1) {
        int n = cJSON_GetArraySize(ax), prev = -1;
        for (int i = 0; i < n && s == GRAFT_OK; i++) {
            const cJSON *e = cJSON_GetArrayItem(ax, i);
            int a;
            if (!cJSON_IsNumber(e) || fabs(e->valuedouble) > 64 ||
                e->valuedouble != (int)e->valuedouble) {
                s = graft_config_refuse(c, GRAFT_EFORMAT, "'axis' entry %d is not an integer", i);
                break;
            }
            a = (int)e->valuedouble;
            a = a < 0 ? rank + a : a - 1;
            if (i == 0) first = a;
            if (a < 0 || a >= rank || (i > 0 && a != prev + 1) || (i == n - 1 && a != rank - 1))
                s = graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                        "graft normalizes over trailing axes only (as -1 or "
                                        "[1, ..., %d])",
                                        rank);
            prev = a;
        }
    } else {
        s = graft_config_axis(c, cfg, "axis", -1, rank, &first);
        if (s == GRAFT_OK && first != rank - 1)
            s = graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                    "graft normalizes over trailing axes only (as -1 or [1, ..., "
                                    "%d])",
                                    rank);
    }
    bool center, scale, rms = false;
    double eps;
    if (s == GRAFT_OK) s = graft_config_num(c, cfg, "epsilon", 1e-3, &eps);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "center", true, &center);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "scale", true, &scale);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "rms_scaling", false, &rms);
    if (s == GRAFT_OK && rms)
        s = graft_config_refuse(c, GRAFT_EUNSUPPORTED, "rms_scaling=True is not supported");
    if (s != GRAFT_OK) return s;
    k.first_axis = first + 1;
    k.epsilon = (float)eps;
    k.no_center = !center;
    k.no_scale = !scale;
    *out = graft_layer_norm(c->m, c->in[0], k);
    return GRAFT_OK;
}

const graft_layer_ops graft_layer_norm_ops = {
    .class_name = "LayerNormalization",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_layer_norm(graft_model *m, graft_layer *in, graft_layer_norm_cfg cfg)
{
    if (cfg.first_axis == 0) cfg.first_axis = -1;
    if (cfg.epsilon == 0) cfg.epsilon = 1e-3f;
    layer_norm z = {.cfg = cfg};
    z.cfg.name = NULL;
    return graft_model_add_unary(m, &graft_layer_norm_ops, cfg.name, "layer_normalization", &z,
                                 sizeof z, in);
}
