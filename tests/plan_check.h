/* What the prepared plan made of a layer, for the fusion tests. */
#ifndef GRAFT_TEST_PLAN_CHECK_H
#define GRAFT_TEST_PLAN_CHECK_H

#include "internal.h"

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
 * positive), from one seeded stream in layer order. */
static inline void set_random(graft_model *m, unsigned seed)
{
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int k = 0; k < graft_layer_num_weights(l); k++) {
            graft_shape s = graft_layer_weight_shape(l, k);
            float *w = graft_layer_weight_data(l, k);
            bool var = strcmp(graft_layer_weight_name(l, k), "moving_variance") == 0;
            for (size_t e = 0; e < graft_shape_size(&s); e++)
                w[e] = var ? 0.2f + graft_rng_uniform(&r) : 0.5f * graft_rng_normal(&r);
        }
    }
}

#endif
