/*
 * ReLU with Keras's options. Keras documents
 *   f(x) = max_value                        x >= max_value
 *   f(x) = x                                threshold <= x < max_value
 *   f(x) = negative_slope * (x - threshold) otherwise
 * and computes min(x * (x > threshold), max_value) - negative_slope *
 * relu(threshold - x); the two differ at x == threshold and when max_value <
 * threshold, and graft follows the computation, so loaded models give
 * Keras's numbers. ReLU(6.) is the activation of every MobileNet block, so
 * the loops stay branch-free and vectorisable.
 */
#include "layers/layer.h"

#include <string.h>
#include "layers/config_json.h"

#include <math.h>

typedef struct {
    float max_value; /* +inf when Keras's max_value is None */
    float slope, threshold;
} relu;

/* Elementwise layers only split across threads when the work pays for the wake-up. */
#define PARALLEL_MIN 32768

bool graft_relu_clamp(const graft_layer *l, float *lo, float *hi)
{
    if (strcmp(l->ops->class_name, "ReLU") != 0) return false;
    const relu *r = l->cfg;
    if (r->slope != 0 || r->threshold != 0) return false;
    *lo = 0;
    *hi = r->max_value;
    return true;
}

static graft_status build(graft_layer *l, const graft_shape *in)
{
    const relu *r = l->cfg;
    /* Keras refuses these in ReLU's constructor. */
    if (!(r->slope >= 0) || !isfinite(r->slope))
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (ReLU): negative_slope must be a finite value >= 0 (got %g)",
                          l->name, (double)r->slope);
    if (!(r->threshold >= 0) || !isfinite(r->threshold))
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (ReLU): threshold must be a finite value >= 0 (got %g)",
                          l->name, (double)r->threshold);
    l->out_shape = in[0];
    return GRAFT_OK;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const relu *r = l->cfg;
    const float mx = r->max_value, th = r->threshold, ns = r->slope;
    const float *x = f->in[0];
    float *y = f->out;
    long n = (long)((size_t)f->n * graft_shape_size(&l->out_shape));
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float high = v < mx ? v : mx;
        /* A zero slope must give 0 even for -inf, where the product would be NaN. */
        float low = ns != 0.0f ? ns * (v - th) : 0.0f;
        y[i] = v > th ? high : low;
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const relu *r = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const float mx = r->max_value, th = r->threshold, ns = r->slope;
    const float *x = b->in[0], *dy = b->dout;
    long n = (long)((size_t)b->n * graft_shape_size(&l->out_shape));
    if (b->din_accumulate[0]) {
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
        for (long i = 0; i < n; i++) {
            float v = x[i];
            float slope = v > th ? (v < mx ? 1.0f : 0.0f) : ns;
            dx[i] += slope * dy[i];
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
        for (long i = 0; i < n; i++) {
            float v = x[i];
            float slope = v > th ? (v < mx ? 1.0f : 0.0f) : ns;
            dx[i] = slope * dy[i];
        }
    }
}

/* Keras 2's ReLU.get_config(); max_value None (no cap) is null. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const relu *r = l->cfg;
    bool ok = (isinf(r->max_value) ? cJSON_AddNullToObject(o, "max_value") != NULL
                                   : graft_config_add_float(o, "max_value", r->max_value)) &&
              graft_config_add_float(o, "negative_slope", r->slope) &&
              graft_config_add_float(o, "threshold", r->threshold);
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    double mv, ns, th;
    graft_status s = graft_config_num(c, cfg, "max_value", 0, &mv);
    if (s == GRAFT_OK) s = graft_config_num(c, cfg, "negative_slope", 0, &ns);
    if (s == GRAFT_OK) s = graft_config_num(c, cfg, "threshold", 0, &th);
    if (s == GRAFT_OK)
        *out = graft_relu(c->m, c->in[0],
                          (graft_relu_cfg){c->name, (float)mv, (float)ns, (float)th});
    return s;
}

const graft_layer_ops graft_relu_ops = {
    .class_name = "ReLU",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_relu(graft_model *m, graft_layer *in, graft_relu_cfg cfg)
{
    relu r = {
        .max_value = cfg.max_value > 0 ? cfg.max_value : INFINITY,
        .slope = cfg.negative_slope,
        .threshold = cfg.threshold,
    };
    return graft_model_add_unary(m, &graft_relu_ops, cfg.name, "re_lu", &r, sizeof r, in);
}
