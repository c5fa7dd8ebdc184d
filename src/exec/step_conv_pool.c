/*
 * A ReLU Conv2D over few channels (the image) read only by the 2x2 max pool
 * right after it, where nothing needs its input's gradient:
 * kernels/conv_pool.c computes both in one pass, forward and backward, and
 * the convolution's output and its gradient have no buffers. The pool's aux
 * holds one code byte per output (the winning cell, or 4: not positive).
 */
#include "exec/plan.h"
#include "kernels/kernels.h"

#include <stdint.h>

bool graft_step_conv_pool_match(const graft_model *m, int i, graft_step *s)
{
    const graft_layer *l = m->layers[i];
    if (i + 1 >= m->n_layers || !graft_conv2d_pool_geom(l, NULL, NULL) ||
        m->layers[l->inputs[0]]->requires_grad || graft_model_sole_reader(m, i) != i + 1 ||
        !graft_max_pool_2x2(m->layers[i + 1]))
        return false;
    *s = (graft_step){.kind = GRAFT_STEP_CONV_POOL, .n = 2, .layer = {i, i + 1}, .bn = -1};
    return true;
}

size_t graft_step_conv_pool_scratch_floats(const graft_model *m, const graft_step *s)
{
    graft_conv_geom g;
    int filters;
    graft_conv2d_pool_geom(m->layers[s->layer[0]], &g, &filters);
    return graft_conv_pool_scratch_floats(&g, filters);
}

void graft_step_conv_pool_forward(graft_model *m, const graft_step *s, const graft_fwd *f)
{
    const graft_layer *conv = m->layers[s->layer[0]], *pool = m->layers[s->layer[1]];
    graft_conv_geom g;
    int filters;
    graft_conv2d_pool_geom(conv, &g, &filters);
    const float *bias = conv->n_weights > 1 ? conv->weights[1].data : NULL;
    graft_conv_pool_forward(&g, filters, f->n, f->in[0], conv->weights[0].data, bias, pool->out,
                            f->training ? (uint8_t *)(void *)pool->aux : NULL, f->scratch);
}

typedef struct {
    const graft_model *m;
    const graft_layer *conv;
} pair;

/* The convolution's gradients from the pool's view b: nothing below needs any. */
static void backward(graft_layer *pool, const graft_bwd *b, void *ctx)
{
    (void)pool;
    const graft_model *m = ((const pair *)ctx)->m;
    const graft_layer *conv = ((const pair *)ctx)->conv;
    if (!graft_layer_trains_weights(conv)) return;
    graft_conv_geom g;
    int filters;
    graft_conv2d_pool_geom(conv, &g, &filters);
    graft_conv_pool_backward_weights(&g, filters, b->n, m->layers[conv->inputs[0]]->out, b->dout,
                                     (const uint8_t *)(const void *)b->aux, conv->weights[0].grad,
                                     conv->n_weights > 1 ? conv->weights[1].grad : NULL, b->scratch);
}

void graft_step_conv_pool_backward(graft_model *m, const graft_step *s, int n)
{
    graft_layer *pool = m->layers[s->layer[1]];
    pair ctx = {m, m->layers[s->layer[0]]};
    if (pool->requires_grad) graft_plan_layer_backward(m, pool, n, backward, &ctx);
}
