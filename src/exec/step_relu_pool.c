/*
 * Training: a ReLU Conv2D read only by a max pool runs forward as two
 * layers, but the pool's backward applies the ReLU's derivative (the pooled
 * value is the convolution's output at the cell it routes to) and sums the
 * convolution's bias gradient over its own, 4x smaller, gradient: the
 * convolution's backward then makes no pass over its whole output.
 */
#include "exec/plan.h"

#include <string.h>

bool graft_step_relu_pool_match(const graft_model *m, int i, bool training, graft_step *s)
{
    if (!training) return false;
    const graft_layer *l = m->layers[i];
    int j = graft_model_sole_reader(m, i);
    const graft_layer *r = j > 0 ? m->layers[j] : NULL;
    if (!l->requires_grad || !r || !r->requires_grad || !graft_conv2d_has_relu(l) ||
        strcmp(r->ops->class_name, "MaxPooling2D") != 0)
        return false;
    *s = (graft_step){.kind = GRAFT_STEP_RELU_POOL, .n = 2, .layer = {i, j}, .bn = -1};
    return true;
}

static void pool_backward(graft_layer *pool, const graft_bwd *b, void *ctx)
{
    graft_max_pool_backward_relu(pool, b, ctx);
}

static void conv_backward(graft_layer *conv, const graft_bwd *b, void *ctx)
{
    (void)ctx;
    graft_conv2d_backward_dz(conv, b);
}

void graft_step_relu_pool_backward(graft_model *m, const graft_step *s, int n)
{
    graft_layer *conv = m->layers[s->layer[0]], *pool = m->layers[s->layer[1]];
    bool db = graft_layer_trains_weights(conv) && conv->n_weights >= 2;
    graft_plan_layer_backward(m, pool, n, pool_backward, db ? conv->weights[1].grad : NULL);
    graft_plan_layer_backward(m, conv, n, conv_backward, NULL);
}
