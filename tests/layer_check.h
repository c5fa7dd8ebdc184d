/* Helpers for layer tests: a forward pass compared with a reference fixture,
 * and inputs whose values stay clear of the kinks of max and ReLU. */
#ifndef GRAFT_LAYER_CHECK_H
#define GRAFT_LAYER_CHECK_H

#include "fixture.h"
#include "gradcheck.h"

/* Forward on fixture input x (batch first) and compare the output with y. */
static inline void check_forward(graft_model *m, const fixture_array *x, const fixture_array *y,
                                 bool training, double atol, double rtol)
{
    CHECK_MSG(x && y, "fixture arrays missing");
    if (!x || !y) return;
    CHECK_OK(graft_model_status(m));
    if (graft_model_status(m) != GRAFT_OK) return;
    int n = x->dim[0];
    const graft_layer *in = graft_model_layer(m, 0), *out = graft_model_output(m);
    size_t out_size = (size_t)n * graft_shape_size(&out->out_shape);
    CHECK_MSG(x->size == (size_t)n * graft_shape_size(&in->out_shape), "input %s: %zu floats",
              x->name, x->size);
    CHECK_MSG(y->size == out_size, "reference %s has %zu floats, the model gives %zu", y->name,
              y->size, out_size);
    if (y->size != out_size || x->size != (size_t)n * graft_shape_size(&in->out_shape)) return;
    graft_status s = graft_model_forward(m, x->data, n, training);
    CHECK_OK(s);
    if (s != GRAFT_OK) return;
    size_t worst = 0;
    double r = check_close_ratio(out->out, y->data, out_size, atol, rtol, &worst);
    CHECK_MSG(r <= 1.0, "%s (training=%d): [%zu] %.9g vs reference %.9g", y->name, (int)training,
              worst, (double)out->out[worst], (double)y->data[worst]);
}

/* n distinct values `step` apart, offset by step/2 from the grid of multiples of step,
 * in a seeded random order: finite differences of eps < step/2 never cross a tie or a
 * kink placed on the grid (0, 6, a threshold of 0.5, ...). */
static inline float *spaced_input(size_t n, float step, uint64_t seed)
{
    float *x = malloc(n * sizeof(float));
    if (!x) return NULL;
    for (size_t i = 0; i < n; i++)
        x[i] = ((float)i - (float)(n / 2)) * step + 0.5f * step;
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    for (size_t i = n; i > 1; i--) {
        size_t j = graft_rng_below(&rng, (uint32_t)i);
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
    return x;
}

/* A gradient check on spaced inputs (see spaced_input). */
static inline int gradcheck_spaced(graft_model *m, int n, float step, uint64_t seed, int samples)
{
    size_t sz = (size_t)n * graft_shape_size(&graft_model_layer(m, 0)->out_shape);
    float *x = spaced_input(sz, step, seed);
    if (!x) {
        CHECK_MSG(0, "out of memory");
        return 1;
    }
    int bad = gradcheck_model(m, n, x, seed, samples);
    free(x);
    return bad;
}

#define FIXTURE_LAYERS_B "tests/fixtures/layers_b.bin"

#endif
