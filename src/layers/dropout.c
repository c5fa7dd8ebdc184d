/*
 * Dropout, inverted as in Keras: in training each value is kept with
 * probability 1 - rate and scaled by 1 / (1 - rate), so inference is the
 * identity. The per-value factor (0 or the scale) stays in aux for backward.
 */
#include "layers/layer.h"
#include "layers/config_json.h"

#include <string.h>

typedef struct {
    float rate;
} dropout;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    const dropout *d = l->cfg;
    if (!(d->rate >= 0.0f && d->rate < 1.0f))
        return graft_fail(GRAFT_EINVAL, "layer '%s' (Dropout): rate must be in [0, 1) (got %g)",
                          l->name, (double)d->rate);
    l->out_shape = in[0];
    return GRAFT_OK;
}

static size_t aux_floats(const graft_layer *l, int n)
{
    return (size_t)n * graft_shape_size(&l->out_shape);
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
    const dropout *d = l->cfg;
    const size_t n = (size_t)f->n * graft_shape_size(&l->out_shape);
    const float *x = f->in[0];
    if (!f->training) {
        memcpy(f->out, x, n * sizeof(float));
        return;
    }
    /* Each sample's mask from its own stream: the same whatever the number
     * of threads or ranks. */
    const float scale = 1.0f / (1.0f - d->rate);
    const size_t per = graft_shape_size(&l->out_shape);
#pragma omp parallel for schedule(static)
    for (int s = 0; s < f->n; s++) {
        const uint64_t key = graft_noise_key(f->noise, l->index, s);
        float *a = f->aux + (size_t)s * per, *o = f->out + (size_t)s * per;
        const float *xs = x + (size_t)s * per;
        for (size_t j = 0; j < per; j++) {
            a[j] = graft_rng_uniform_at(key, j) >= d->rate ? scale : 0.0f;
            o[j] = xs[j] * a[j];
        }
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    float *dx = b->din[0];
    if (!dx) return;
    const size_t n = (size_t)b->n * graft_shape_size(&l->out_shape);
    const float *mask = b->aux, *dy = b->dout;
    if (b->din_accumulate[0]) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
    } else {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
    }
}

/* Keras 2's Dropout.get_config(); graft's masks come from the model's
 * noise (layer.h's graft_noise), not from a per-layer seed. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const dropout *d = l->cfg;
    bool ok =
        graft_config_add_float(o, "rate", d->rate) && GRAFT_CONFIG_NULLS(o, "noise_shape", "seed");
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    double rate;
    graft_status s = graft_config_absent(c, cfg, "noise_shape");
    if (s == GRAFT_OK) s = graft_config_num(c, cfg, "rate", 0, &rate);
    if (s == GRAFT_OK) *out = graft_dropout(c->m, c->in[0], c->name, (float)rate);
    return s;
}

const graft_layer_ops graft_dropout_ops = {
    .class_name = "Dropout",
    .build = build,
    .forward = forward,
    .backward = backward,
    .aux_floats = aux_floats,
    .stochastic = stochastic,
    .passes_through = passes_through,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_dropout(graft_model *m, graft_layer *in, const char *name, float rate)
{
    dropout d = {rate};
    return graft_model_add_unary(m, &graft_dropout_ops, name, "dropout", &d, sizeof d, in);
}
