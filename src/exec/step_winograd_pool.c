/*
 * A ReLU Conv2D on the Winograd path whose sole reader is the 2x2 max pool
 * right after it (the lesson's second convolution): its output transform
 * pools each 4x4 tile while it is in cache, writing the pool's output and
 * one code byte per output into the pool's aux; the convolution's output has
 * no buffer. In backward the pool scatters its gradient by the codes (the
 * ReLU's derivative included, and the convolution's bias gradient summed on
 * the way) into the convolution's dout, whose own Winograd backward then
 * runs as usual. In training and in inference.
 */
#include "exec/plan.h"

#include <stdint.h>

bool graft_step_winograd_pool_match(const graft_model *m, int i, bool training, int cap,
                                    graft_step *s)
{
    if (i + 1 >= m->n_layers || graft_model_sole_reader(m, i) != i + 1 ||
        !graft_max_pool_2x2(m->layers[i + 1]) ||
        !graft_conv2d_winograd_relu(m->layers[i], training, cap))
        return false;
    *s = (graft_step){.kind = GRAFT_STEP_WINOGRAD_POOL, .n = 2, .layer = {i, i + 1}, .bn = -1};
    return true;
}

void graft_step_winograd_pool_forward(graft_model *m, const graft_step *s, const graft_fwd *f)
{
    graft_layer *conv = m->layers[s->layer[0]];
    const graft_layer *pool = m->layers[s->layer[1]];
    graft_conv2d_forward_pool(conv, f, pool->out, f->training ? (uint8_t *)(void *)pool->aux : NULL);
}

static void pool_backward(graft_layer *pool, const graft_bwd *b, void *ctx)
{
    graft_max_pool_backward_codes(pool, b, ctx);
}

static void conv_backward(graft_layer *conv, const graft_bwd *b, void *ctx)
{
    (void)ctx;
    graft_conv2d_backward_dz(conv, b);
}

void graft_step_winograd_pool_backward(graft_model *m, const graft_step *s, int n)
{
    graft_layer *conv = m->layers[s->layer[0]], *pool = m->layers[s->layer[1]];
    /* The pool needs a gradient exactly when the convolution does. */
    if (pool->requires_grad) {
        bool db = conv->requires_grad && graft_layer_trains_weights(conv) && conv->n_weights > 1;
        graft_plan_layer_backward(m, pool, n, pool_backward, db ? conv->weights[1].grad : NULL);
    }
    if (conv->requires_grad) graft_plan_layer_backward(m, conv, n, conv_backward, NULL);
}
