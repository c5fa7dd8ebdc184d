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

#endif
