/*
 * Keras's activation layers with options: LeakyReLU (alpha; Keras 3 names
 * it negative_slope; 0.3 by default in both), PReLU (a learned alpha per
 * position, shared along shared_axes), ELU (alpha) and Softmax (any axis).
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 32768

/* ------------------------------------------------------------ LeakyReLU, ELU */

typedef struct {
    float alpha;
} slope;

static graft_status build_same(graft_layer *l, const graft_shape *in)
{
    const slope *z = l->cfg;
    if (!isfinite(z->alpha))
        return graft_fail(GRAFT_EINVAL, "layer '%s' (%s): alpha is not finite", l->name,
                          l->ops->class_name);
    l->out_shape = in[0];
    return GRAFT_OK;
}

static void leaky_forward(graft_layer *l, const graft_fwd *f)
{
    const float a = ((const slope *)l->cfg)->alpha;
    const size_t n = (size_t)f->n * graft_shape_size(&l->out_shape);
    const float *x = f->in[0];
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) f->out[i] = x[i] > 0 ? x[i] : a * x[i];
}

static void leaky_backward(graft_layer *l, const graft_bwd *b)
{
    const float a = ((const slope *)l->cfg)->alpha;
    const size_t n = (size_t)b->n * graft_shape_size(&l->out_shape);
    const float *x = b->in[0];
    float *dx = b->din[0];
    if (!dx) return;
    if (b->din_accumulate[0]) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0 ? b->dout[i] : a * b->dout[i];
    } else {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? b->dout[i] : a * b->dout[i];
    }
}

static void elu_forward(graft_layer *l, const graft_fwd *f)
{
    const float a = ((const slope *)l->cfg)->alpha;
    const size_t n = (size_t)f->n * graft_shape_size(&l->out_shape);
    const float *x = f->in[0];
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) f->out[i] = x[i] > 0 ? x[i] : a * expm1f(x[i]);
}

static void elu_backward(graft_layer *l, const graft_bwd *b)
{
    const float a = ((const slope *)l->cfg)->alpha;
    const size_t n = (size_t)b->n * graft_shape_size(&l->out_shape);
    const float *x = b->in[0];
    float *dx = b->din[0];
    if (!dx) return;
    const bool acc = b->din_accumulate[0];
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = x[i] > 0 ? b->dout[i] : b->dout[i] * a * expf(x[i]);
        dx[i] = acc ? dx[i] + g : g;
    }
}

static graft_status alpha_config(const graft_layer *l, cJSON *o)
{
    return graft_config_done(l, graft_config_add_float(o, "alpha", ((const slope *)l->cfg)->alpha));
}

static graft_status leaky_from_config(const graft_config_in *c, const cJSON *cfg,
                                      graft_layer **out)
{
    float a;
    const char *key = graft_config_present(cfg, "negative_slope") ? "negative_slope" : "alpha";
    graft_status s = graft_config_float(c, cfg, key, 0.3f, &a);
    if (s == GRAFT_OK) *out = graft_leaky_relu(c->m, c->in[0], c->name, a);
    return s;
}

static graft_status elu_from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    float a;
    graft_status s = graft_config_float(c, cfg, "alpha", 1.0f, &a);
    if (s == GRAFT_OK) *out = graft_elu(c->m, c->in[0], c->name, a);
    return s;
}

const graft_layer_ops graft_leaky_relu_ops = {
    .class_name = "LeakyReLU",
    .build = build_same,
    .forward = leaky_forward,
    .backward = leaky_backward,
    .get_config = alpha_config,
    .from_config = leaky_from_config,
};

const graft_layer_ops graft_elu_ops = {
    .class_name = "ELU",
    .build = build_same,
    .forward = elu_forward,
    .backward = elu_backward,
    .get_config = alpha_config,
    .from_config = elu_from_config,
};

graft_layer *graft_leaky_relu(graft_model *m, graft_layer *in, const char *name, float alpha)
{
    slope z = {alpha};
    return graft_model_add_unary(m, &graft_leaky_relu_ops, name, "leaky_re_lu", &z, sizeof z, in);
}

graft_layer *graft_elu(graft_model *m, graft_layer *in, const char *name, float alpha)
{
    slope z = {alpha};
    return graft_model_add_unary(m, &graft_elu_ops, name, "elu", &z, sizeof z, in);
}

/* ------------------------------------------------------------ PReLU */

typedef struct {
    unsigned shared; /* bit k: per-sample axis k shares one alpha */
    size_t st[GRAFT_MAX_RANK]; /* alpha's stride per axis (0 where shared) */
    int dim[GRAFT_MAX_RANK];
} prelu;

static graft_status prelu_build(graft_layer *l, const graft_shape *in)
{
    prelu *z = l->cfg;
    const int r = in[0].rank;
    if (z->shared >> r)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (PReLU): shared_axes name an axis its rank-%d input lacks",
                          l->name, r);
    graft_shape as = in[0];
    for (int d = 0; d < r; d++)
        if (z->shared >> d & 1) as.dim[d] = 1;
    size_t stride = 1;
    for (int d = r - 1; d >= 0; d--) {
        z->st[d] = as.dim[d] == 1 ? 0 : stride;
        stride *= (size_t)as.dim[d];
        z->dim[d] = in[0].dim[d];
    }
    l->out_shape = in[0];
    return graft_layer_add_weight(l, "alpha", as, true, GRAFT_INIT_ZEROS);
}

/* alpha's index for element i of a sample. */
static size_t prelu_at(const prelu *z, int rank, size_t i)
{
    size_t a = 0;
    for (int d = rank - 1; d >= 0; d--) {
        a += (i % (size_t)z->dim[d]) * z->st[d];
        i /= (size_t)z->dim[d];
    }
    return a;
}

static void prelu_forward(graft_layer *l, const graft_fwd *f)
{
    const prelu *z = l->cfg;
    const size_t per = graft_shape_size(&l->out_shape);
    const float *al = l->weights[0].data;
    const int r = l->out_shape.rank;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < f->n; s++)
        for (size_t i = 0; i < per; i++) {
            float x = f->in[0][(size_t)s * per + i];
            f->out[(size_t)s * per + i] = x > 0 ? x : al[prelu_at(z, r, i)] * x;
        }
}

static void prelu_backward(graft_layer *l, const graft_bwd *b)
{
    const prelu *z = l->cfg;
    const size_t per = graft_shape_size(&l->out_shape);
    const float *al = l->weights[0].data;
    const int r = l->out_shape.rank;
    if (b->param_grads) {
        float *da = l->weights[0].grad;
        memset(da, 0, graft_shape_size(&l->weights[0].shape) * sizeof(float));
        for (int s = 0; s < b->n; s++)
            for (size_t i = 0; i < per; i++) {
                float x = b->in[0][(size_t)s * per + i];
                if (x < 0) da[prelu_at(z, r, i)] += b->dout[(size_t)s * per + i] * x;
            }
    }
    float *dx = b->din[0];
    if (!dx) return;
    const bool acc = b->din_accumulate[0];
#pragma omp parallel for schedule(static)
    for (int s = 0; s < b->n; s++)
        for (size_t i = 0; i < per; i++) {
            size_t k = (size_t)s * per + i;
            float g = b->in[0][k] > 0 ? b->dout[k] : al[prelu_at(z, r, i)] * b->dout[k];
            dx[k] = acc ? dx[k] + g : g;
        }
}

/* Keras's PReLU.get_config(). */
static graft_status prelu_config(const graft_layer *l, cJSON *o)
{
    const prelu *z = l->cfg;
    bool ok = graft_config_add_initializer(o, "alpha_initializer", "Zeros") &&
              GRAFT_CONFIG_NULLS(o, "alpha_regularizer", "alpha_constraint");
    if (ok && !z->shared) {
        ok = cJSON_AddNullToObject(o, "shared_axes") != NULL;
    } else if (ok) {
        cJSON *arr = cJSON_AddArrayToObject(o, "shared_axes");
        ok = arr != NULL;
        for (int d = 0; ok && d < GRAFT_MAX_RANK; d++)
            if (z->shared >> d & 1) ok = cJSON_AddItemToArray(arr, cJSON_CreateNumber(d + 1));
    }
    return graft_config_done(l, ok);
}

static graft_status prelu_from_config(const graft_config_in *c, const cJSON *cfg,
                                      graft_layer **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "shared_axes");
    const int rank = graft_layer_output_shape(c->in[0]).rank;
    int axes[GRAFT_MAX_RANK], n = 0;
    if (v && !cJSON_IsNull(v)) {
        const cJSON *e;
        bool list = cJSON_IsArray(v);
        if (!list && !cJSON_IsNumber(v))
            return graft_config_refuse(c, GRAFT_EFORMAT, "'shared_axes' is not a list of axes");
        const cJSON *arr = list ? v : NULL;
        cJSON_ArrayForEach(e, arr)
        {
            int a;
            if (n == GRAFT_MAX_RANK || !graft_config_small_int(e, 1, &a) || a > rank)
                return graft_config_refuse(c, GRAFT_EFORMAT,
                                           "'shared_axes' entries must be axes 1 to %d", rank);
            axes[n++] = a;
        }
        if (!list) {
            if (!graft_config_small_int(v, 1, &axes[0]) || axes[0] > rank)
                return graft_config_refuse(c, GRAFT_EFORMAT,
                                           "'shared_axes' entries must be axes 1 to %d", rank);
            n = 1;
        }
    }
    *out = graft_prelu(c->m, c->in[0], c->name, n, axes);
    return GRAFT_OK;
}

const graft_layer_ops graft_prelu_ops = {
    .class_name = "PReLU",
    .build = prelu_build,
    .forward = prelu_forward,
    .backward = prelu_backward,
    .get_config = prelu_config,
    .from_config = prelu_from_config,
};

graft_layer *graft_prelu(graft_model *m, graft_layer *in, const char *name, int n_shared,
                         const int *shared_axes)
{
    prelu z = {0};
    for (int i = 0; i < n_shared; i++) {
        int a = shared_axes[i];
        z.shared |= a >= 1 && a <= GRAFT_MAX_RANK ? 1u << (a - 1) : 1u << GRAFT_MAX_RANK;
    }
    return graft_model_add_unary(m, &graft_prelu_ops, name, "p_re_lu", &z, sizeof z, in);
}

/* ------------------------------------------------------------ Softmax */

typedef struct {
    int axis;            /* Keras's */
    size_t dim, inner;   /* the axis' size and the floats after it */
} softmax;

static graft_status softmax_build(graft_layer *l, const graft_shape *in)
{
    softmax *z = l->cfg;
    const int r = in[0].rank, ax = z->axis < 0 ? r + z->axis : z->axis - 1;
    if (ax < 0 || ax >= r)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Softmax): axis=%d is not an axis of its rank-%d input "
                          "(batch excluded)",
                          l->name, z->axis, r);
    z->dim = (size_t)in[0].dim[ax];
    z->inner = 1;
    for (int d = ax + 1; d < r; d++) z->inner *= (size_t)in[0].dim[d];
    l->out_shape = in[0];
    return GRAFT_OK;
}

static void softmax_forward(graft_layer *l, const graft_fwd *f)
{
    const softmax *z = l->cfg;
    const size_t D = z->dim, I = z->inner;
    const size_t lines = (size_t)f->n * graft_shape_size(&l->out_shape) / D;
#pragma omp parallel for schedule(static) if (lines * D > PAR_MIN)
    for (size_t q = 0; q < lines; q++) {
        const size_t base = (q / I) * D * I + q % I;
        const float *x = f->in[0] + base;
        float *y = f->out + base, mx = x[0];
        for (size_t j = 1; j < D; j++) mx = x[j * I] > mx ? x[j * I] : mx;
        double sum = 0;
        for (size_t j = 0; j < D; j++) {
            y[j * I] = expf(x[j * I] - mx);
            sum += y[j * I];
        }
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < D; j++) y[j * I] *= inv;
    }
}

static void softmax_backward(graft_layer *l, const graft_bwd *b)
{
    const softmax *z = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const size_t D = z->dim, I = z->inner;
    const size_t lines = (size_t)b->n * graft_shape_size(&l->out_shape) / D;
    const bool acc = b->din_accumulate[0];
#pragma omp parallel for schedule(static) if (lines * D > PAR_MIN)
    for (size_t q = 0; q < lines; q++) {
        const size_t base = (q / I) * D * I + q % I;
        const float *y = b->out + base, *dy = b->dout + base;
        float *d = dx + base;
        double dot = 0;
        for (size_t j = 0; j < D; j++) dot += (double)dy[j * I] * y[j * I];
        for (size_t j = 0; j < D; j++) {
            float g = y[j * I] * (dy[j * I] - (float)dot);
            d[j * I] = acc ? d[j * I] + g : g;
        }
    }
}

static graft_status softmax_config(const graft_layer *l, cJSON *o)
{
    return graft_config_done(l, cJSON_AddNumberToObject(o, "axis", ((const softmax *)l->cfg)->axis) != NULL);
}

static graft_status softmax_from_config(const graft_config_in *c, const cJSON *cfg,
                                        graft_layer **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "axis");
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = cJSON_GetArrayItem(v, 0);
    int axis = -1;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || fabs(v->valuedouble) > 64 || v->valuedouble != (int)v->valuedouble)
            return graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                       "'axis' must be one integer (graft's Softmax takes one axis)");
        axis = (int)v->valuedouble;
    }
    *out = graft_softmax(c->m, c->in[0], c->name, axis);
    return GRAFT_OK;
}

const graft_layer_ops graft_softmax_ops = {
    .class_name = "Softmax",
    .build = softmax_build,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .get_config = softmax_config,
    .from_config = softmax_from_config,
};

graft_layer *graft_softmax(graft_model *m, graft_layer *in, const char *name, int axis)
{
    softmax z = {.axis = axis ? axis : -1};
    return graft_model_add_unary(m, &graft_softmax_ops, name, "softmax", &z, sizeof z, in);
}
