/*
 * SpatialDropout2D, GaussianNoise, GaussianDropout: the identity at
 * inference; in training, Keras's noise, each sample's from its own stream
 * (layer.h's graft_noise: the same seed gives the same noise whatever the
 * number of threads or ranks):
 *   SpatialDropout2D(rate): whole channels of each sample dropped, the
 *     others scaled by 1 / (1 - rate);
 *   GaussianNoise(stddev): x + N(0, stddev);
 *   GaussianDropout(rate): x * N(1, sqrt(rate / (1 - rate))).
 * The multiplicative factors stay in aux for backward.
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <math.h>
#include <string.h>

typedef enum { SPATIAL, GNOISE, GDROPOUT } noise_kind;

typedef struct {
    noise_kind kind;
    float value; /* rate or stddev */
    size_t channels;
} noise;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    noise *z = l->cfg;
    bool ok = z->kind == GNOISE ? z->value >= 0 && isfinite(z->value)
                                : z->value >= 0 && z->value < 1;
    if (!ok)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (%s): %s must be %s (got %g)", l->name,
                          l->ops->class_name, z->kind == GNOISE ? "stddev" : "rate",
                          z->kind == GNOISE ? "finite and not negative" : "in [0, 1)",
                          (double)z->value);
    if (z->kind == SPATIAL && in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (SpatialDropout2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    z->channels = (size_t)in[0].dim[in[0].rank - 1];
    l->out_shape = in[0];
    return GRAFT_OK;
}

static size_t aux_floats(const graft_layer *l, int n)
{
    const noise *z = l->cfg;
    if (z->kind == GNOISE) return 0;
    return z->kind == SPATIAL ? (size_t)n * z->channels : (size_t)n * graft_shape_size(&l->out_shape);
}

static bool stochastic(const graft_layer *l)
{
    (void)l;
    return true;
}

static bool passes_through(const graft_layer *l, bool training)
{
    (void)l;
    return !training;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const noise *z = l->cfg;
    const size_t per = graft_shape_size(&l->out_shape), n = (size_t)f->n * per;
    const float *x = f->in[0];
    if (!f->training || z->value == 0) {
        memcpy(f->out, x, n * sizeof(float));
        if (f->training && f->aux) /* factors of 1 for backward */
            for (size_t i = 0; i < aux_floats(l, f->n); i++) f->aux[i] = 1.0f;
        return;
    }
    const float keep = z->kind == GNOISE ? 1.0f : 1.0f - z->value; /* rate < 1 */
    const float scale = 1.0f / keep, sd = sqrtf(z->value / keep);
    const size_t C = z->channels;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < f->n; s++) {
        const uint64_t key = graft_noise_key(f->noise, l->index, s);
        const float *xs = x + (size_t)s * per;
        float *o = f->out + (size_t)s * per;
        switch (z->kind) {
        case SPATIAL: {
            if (C == 0) break; /* no channels, no elements */
            float *a = f->aux + (size_t)s * C;
            for (size_t c = 0; c < C; c++) a[c] = graft_rng_uniform_at(key, c) >= z->value ? scale : 0.0f;
            for (size_t j = 0; j < per; j++) o[j] = xs[j] * a[j % C];
            break;
        }
        case GNOISE:
            for (size_t j = 0; j < per; j++) o[j] = xs[j] + z->value * graft_rng_normal_at(key, j);
            break;
        case GDROPOUT: {
            float *a = f->aux + (size_t)s * per;
            for (size_t j = 0; j < per; j++) {
                a[j] = 1.0f + sd * graft_rng_normal_at(key, j);
                o[j] = xs[j] * a[j];
            }
            break;
        }
        }
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const noise *z = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const size_t per = graft_shape_size(&l->out_shape), n = (size_t)b->n * per, C = z->channels;
    const bool acc = b->din_accumulate[0];
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float k = z->kind == GNOISE ? 1.0f : z->kind == SPATIAL ? b->aux[(i / per) * C + i % C] : b->aux[i];
        float g = b->dout[i] * k;
        dx[i] = acc ? dx[i] + g : g;
    }
}

/* Keras 2's get_config() of each. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const noise *z = l->cfg;
    bool ok = graft_config_add_float(o, z->kind == GNOISE ? "stddev" : "rate", z->value);
    if (ok && z->kind == SPATIAL) ok = GRAFT_CONFIG_NULLS(o, "noise_shape", "seed");
    if (ok && z->kind == SPATIAL) ok = cJSON_AddStringToObject(o, "data_format", "channels_last") != NULL;
    return graft_config_done(l, ok);
}

static graft_status read_value(const graft_config_in *c, const cJSON *cfg, const char *key,
                               float *v)
{
    graft_status s = graft_config_absent(c, cfg, "noise_shape");
    if (s == GRAFT_OK && !graft_config_present(cfg, key))
        s = graft_config_refuse(c, GRAFT_EFORMAT, "no '%s'", key);
    if (s == GRAFT_OK) s = graft_config_float(c, cfg, key, 0, v);
    return s;
}

static graft_status spatial_from_config(const graft_config_in *c, const cJSON *cfg,
                                        graft_layer **out)
{
    float v;
    graft_status s = read_value(c, cfg, "rate", &v);
    if (s == GRAFT_OK) *out = graft_spatial_dropout2d(c->m, c->in[0], c->name, v);
    return s;
}

static graft_status gnoise_from_config(const graft_config_in *c, const cJSON *cfg,
                                       graft_layer **out)
{
    float v;
    graft_status s = read_value(c, cfg, "stddev", &v);
    if (s == GRAFT_OK) *out = graft_gaussian_noise(c->m, c->in[0], c->name, v);
    return s;
}

static graft_status gdropout_from_config(const graft_config_in *c, const cJSON *cfg,
                                         graft_layer **out)
{
    float v;
    graft_status s = read_value(c, cfg, "rate", &v);
    if (s == GRAFT_OK) *out = graft_gaussian_dropout(c->m, c->in[0], c->name, v);
    return s;
}

#define NOISE_OPS(var, cls, fc)                                                                    \
    const graft_layer_ops var = {                                                                  \
        .class_name = cls,                                                                         \
        .build = build,                                                                            \
        .forward = forward,                                                                        \
        .backward = backward,                                                                      \
        .aux_floats = aux_floats,                                                                  \
        .stochastic = stochastic,                                                                  \
        .passes_through = passes_through,                                                          \
        .get_config = get_config,                                                                  \
        .from_config = fc,                                                                         \
    };
NOISE_OPS(graft_spatial_dropout2d_ops, "SpatialDropout2D", spatial_from_config)
NOISE_OPS(graft_gaussian_noise_ops, "GaussianNoise", gnoise_from_config)
NOISE_OPS(graft_gaussian_dropout_ops, "GaussianDropout", gdropout_from_config)

graft_layer *graft_spatial_dropout2d(graft_model *m, graft_layer *in, const char *name, float rate)
{
    noise z = {SPATIAL, rate, 0};
    return graft_model_add_unary(m, &graft_spatial_dropout2d_ops, name, "spatial_dropout2d", &z,
                                 sizeof z, in);
}

graft_layer *graft_gaussian_noise(graft_model *m, graft_layer *in, const char *name, float stddev)
{
    noise z = {GNOISE, stddev, 0};
    return graft_model_add_unary(m, &graft_gaussian_noise_ops, name, "gaussian_noise", &z,
                                 sizeof z, in);
}

graft_layer *graft_gaussian_dropout(graft_model *m, graft_layer *in, const char *name, float rate)
{
    noise z = {GDROPOUT, rate, 0};
    return graft_model_add_unary(m, &graft_gaussian_dropout_ops, name, "gaussian_dropout", &z,
                                 sizeof z, in);
}
