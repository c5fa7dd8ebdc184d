/* Central-difference gradient check of a whole model: L = sum(out * r) for a
 * fixed random r, against the analytic dL/d(input) and dL/d(weights). */
#ifndef GRAFT_GRADCHECK_H
#define GRAFT_GRADCHECK_H

#include "check.h"
#include "internal.h"

#include <stdlib.h>

static inline double gc_loss(graft_model *m, const float *x, const float *r, int n, graft_rng saved)
{
    m->rng = saved; /* the same dropout mask every time */
    if (graft_model_forward(m, x, n, true) != GRAFT_OK) return NAN;
    const graft_layer *o = graft_model_output(m);
    size_t sz = (size_t)n * graft_shape_size(&o->out_shape);
    double L = 0;
    for (size_t i = 0; i < sz; i++) L += (double)o->out[i] * r[i];
    return L;
}

/* Checks up to `samples` coordinates of the input and of each trainable weight.
 * Returns the number of mismatches (also reported through CHECK). x may be NULL. */
static inline int gradcheck_model(graft_model *m, int n, const float *x_in, uint64_t seed, int samples)
{
    const double eps = 1e-2, atol = 2e-3, rtol = 2e-2;
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    const graft_layer *in = graft_model_layer(m, 0), *o = graft_model_output(m);
    size_t xs = (size_t)n * graft_shape_size(&in->out_shape);
    size_t ys = (size_t)n * graft_shape_size(&o->out_shape);
    float *x = malloc(xs * sizeof(float)), *r = malloc(ys * sizeof(float));
    for (size_t i = 0; i < xs; i++) x[i] = x_in ? x_in[i] : graft_rng_normal(&rng);
    for (size_t i = 0; i < ys; i++) r[i] = graft_rng_normal(&rng);
    m->want_input_grad = true;
    m->capacity = 0;
    graft_rng saved = m->rng;
    int bad = 0;
    if (graft_model_forward(m, x, n, true) != GRAFT_OK ||
        graft_model_backward(m, r, n) != GRAFT_OK) {
        CHECK_MSG(0, "forward/backward failed: %s", graft_last_error());
        free(x);
        free(r);
        return 1;
    }
    float *dx = malloc(xs * sizeof(float));
    memcpy(dx, graft_model_layer(m, 0)->dout, xs * sizeof(float));
    float *dw = malloc((m->n_weight_floats + 1) * sizeof(float));
    memcpy(dw, m->grads, m->n_weight_floats * sizeof(float));

    for (int s = 0; s < samples && xs; s++) {
        size_t i = s < (int)xs && (size_t)samples >= xs ? (size_t)s : graft_rng_below(&rng, (uint32_t)xs);
        float keep = x[i];
        x[i] = keep + (float)eps;
        double lp = gc_loss(m, x, r, n, saved);
        x[i] = keep - (float)eps;
        double lm = gc_loss(m, x, r, n, saved);
        x[i] = keep;
        double num = (lp - lm) / (2 * eps), ana = dx[i];
        if (!(fabs(num - ana) <= atol + rtol * fabs(num))) {
            if (bad++ < 5)
                CHECK_MSG(0, "d(input)[%zu]: analytic %.6g, numeric %.6g", i, ana, num);
        }
    }
    for (int li = 0; li < m->n_layers; li++) {
        graft_layer *l = m->layers[li];
        if (!l->trains) continue;
        for (int k = 0; k < l->n_weights; k++) {
            graft_weight *w = &l->weights[k];
            if (!w->trainable) continue;
            size_t ws = graft_shape_size(&w->shape);
            for (int s = 0; s < samples; s++) {
                size_t i = (size_t)samples >= ws ? (size_t)s : graft_rng_below(&rng, (uint32_t)ws);
                if (i >= ws) break;
                float keep = w->data[i];
                w->data[i] = keep + (float)eps;
                double lp = gc_loss(m, x, r, n, saved);
                w->data[i] = keep - (float)eps;
                double lm = gc_loss(m, x, r, n, saved);
                w->data[i] = keep;
                double num = (lp - lm) / (2 * eps), ana = dw[w->offset + i];
                if (!(fabs(num - ana) <= atol + rtol * fabs(num))) {
                    if (bad++ < 5)
                        CHECK_MSG(0, "d(%s/%s)[%zu]: analytic %.6g, numeric %.6g", l->name,
                                  w->name, i, ana, num);
                }
            }
        }
    }
    m->rng = saved;
    free(x);
    free(r);
    free(dx);
    free(dw);
    return bad;
}

#endif
