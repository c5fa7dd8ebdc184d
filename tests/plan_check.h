/* What the prepared plan made of a layer, for the fusion tests. */
#ifndef GRAFT_TEST_PLAN_CHECK_H
#define GRAFT_TEST_PLAN_CHECK_H

#include "check.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Whether layer l runs in a step of this kind ("conv_pool", ...). */
static inline bool in_step(const graft_model *m, const graft_layer *l, const char *kind)
{
    return strcmp(graft_plan_step_kind(m, l->index, NULL), kind) == 0;
}

/* The convolution whose output pass computes l (a folded BatchNormalization
 * or ReLU), or -1. */
static inline int fused_into(const graft_model *m, const graft_layer *l)
{
    int root;
    const char *kind = graft_plan_step_kind(m, l->index, &root);
    return strcmp(kind, "conv_epilogue") == 0 && root != l->index ? root : -1;
}

/* A max pool whose backward applies the ReLU convolution below it. */
static inline bool masks_relu_below(const graft_model *m, const graft_layer *pool)
{
    return in_step(m, pool, "relu_pool") || in_step(m, pool, "winograd_pool");
}

/* Random weights for the plan tests (BatchNormalization's variances kept
 * positive), drawn from r in layer order; r goes on from there (a test's
 * inputs may follow from the same stream). */
static inline void set_random_from(graft_model *m, graft_rng *r)
{
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            float *w = graft_layer_weight_data(l, k);
            bool var = strcmp(graft_layer_weight_name(l, k), "moving_variance") == 0;
            for (size_t e = 0; e < graft_shape_size(&s); e++)
                w[e] = var ? 0.2f + graft_rng_uniform(r) : 0.5f * graft_rng_normal(r);
        }
    }
}

/* The same from a stream of its own, seeded with seed. */
static inline void set_random(graft_model *m, unsigned seed)
{
    graft_rng r;
    graft_rng_seed(&r, seed);
    set_random_from(m, &r);
}

/* Whether the n floats at a and b are the same bits (a -0 is not a 0). */
static inline bool bits_equal(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* The same bits from m for the n images at x, the planned steps' promise:
 * the batch on two threads = each image alone (the threads then split one
 * image's work) = the batch on one thread = the batch with AVX2 where the
 * kernels would take AVX-512. Layer `layer` must be in a step of kind `kind`,
 * so that the fused path is the one compared. */
static inline void check_same_bits(graft_model *m, const float *x, int n, const char *layer,
                                   const char *kind)
{
    graft_shape is = graft_layer_output_shape(graft_model_layer(m, 0));
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    const size_t in_sz = graft_shape_size(&is), out_sz = graft_shape_size(&os);
    const size_t floats = (size_t)n * out_sz, bytes = floats * sizeof(float);
    float *batch = malloc(bytes), *one = malloc(bytes), *other = malloc(bytes);
    CHECK(batch && one && other);
    if (!batch || !one || !other) goto done;
    const int threads = graft_threads_get();
    graft_threads_set(2);
    CHECK_OK(graft_model_predict(m, x, n, batch));
    CHECK_MSG(in_step(m, graft_model_find(m, layer), kind), "%s not in a %s step", layer, kind);
    for (int i = 0; i < n; i++)
        CHECK_OK(graft_model_predict(m, x + (size_t)i * in_sz, 1, one + (size_t)i * out_sz));
    CHECK_MSG(bits_equal(batch, one, floats), "%dx%d images alone", is.dim[0], is.dim[1]);
    graft_threads_set(1);
    CHECK_OK(graft_model_predict(m, x, n, other));
    CHECK_MSG(bits_equal(batch, other, floats), "%dx%d images, one thread", is.dim[0], is.dim[1]);
    graft_threads_set(2);
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    m->capacity = 0; /* replan */
    CHECK_OK(graft_model_predict(m, x, n, other));
    CHECK_MSG(bits_equal(batch, other, floats), "%dx%d images, AVX2", is.dim[0], is.dim[1]);
    unsetenv("ONEDNN_MAX_CPU_ISA");
    graft_threads_set(threads);
done:
    free(batch);
    free(one);
    free(other);
}

#endif
