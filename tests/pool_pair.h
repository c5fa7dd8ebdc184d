/* What the fused conv + pool tests share (test_conv_pool.c for the image's
 * conv + pool step, test_winograd_pool.c for the Winograd one): the model
 * Input -> Conv2D "conv" (ReLU) -> MaxPooling2D(2x2) "pool" with seeded
 * weights, the switch that keeps the pair apart, and the output's size. */
#ifndef GRAFT_TEST_POOL_PAIR_H
#define GRAFT_TEST_POOL_PAIR_H

#include "check.h"
#include "internal.h"

#include <stdlib.h>

typedef struct {
    int n, h, w, c, f; /* batch, input H x W x C, filters */
    int k;             /* kernel size */
    graft_padding pad;
    bool bias;
} pool_case;

static inline void fill_normal(float *p, size_t n, float scale, graft_rng *r)
{
    for (size_t i = 0; i < n; i++)
        p[i] = scale * graft_rng_normal(r);
}

/* Input -> Conv2D(f, k x k, relu) "conv" -> MaxPooling2D(2x2) "pool", the
 * convolution's weights drawn from N(0, 0.3^2) with `seed`. */
static inline graft_model *pool_pair_model(const char *name, const pool_case *k, unsigned seed)
{
    graft_model *m = graft_model_new(name);
    graft_input(m, NULL, graft_shape3(k->h, k->w, k->c));
    graft_conv2d(m, NULL,
                 (graft_conv2d_cfg){.name = "conv",
                                    .filters = k->f,
                                    .kernel_size = {k->k, k->k},
                                    .padding = k->pad,
                                    .no_bias = !k->bias,
                                    .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.name = "pool"});
    if (graft_model_status(m) != GRAFT_OK) return m;
    graft_rng r;
    graft_rng_seed(&r, seed);
    graft_layer *conv = graft_model_find(m, "conv");
    for (int j = 0; j < graft_layer_num_weights(conv); j++) {
        graft_shape s = graft_layer_weight_shape(conv, j);
        fill_normal(graft_layer_weight_data(conv, j), graft_shape_size(&s), 0.3f, &r);
    }
    return m;
}

/* The planner reads `var` (GRAFT_NO_CONV_POOL, GRAFT_NO_WINOGRAD_POOL) at
 * every plan: it stays set for the whole step. */
static inline void pool_pair_apart(const char *var, bool on)
{
    if (on)
        CHECK(setenv(var, "1", 1) == 0);
    else
        unsetenv(var);
}

static inline size_t out_floats(const graft_model *m, int n)
{
    return (size_t)n * graft_shape_size(&graft_model_output(m)->out_shape);
}

#endif
