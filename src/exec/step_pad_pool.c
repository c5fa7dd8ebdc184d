/*
 * Where nothing needs a gradient, ZeroPadding2D -> MaxPooling2D (the pool
 * the padding's only reader) runs as one pass: the pool reads the unpadded
 * input and takes a padding cell as 0.0f, in the same comparisons in the
 * same order as over the padded tensor (layers/pooling.c), so the bits are
 * the two layers' and the padded tensor is never written. ResNet's and
 * DenseNet's stems pad the first convolution's output (112x112x64 an image
 * at 224) by one before the 3x3/2 pool. GRAFT_NO_FUSED_INFERENCE=1 runs the
 * layers apart.
 */
#include "exec/plan.h"

bool graft_step_pad_pool_match(const graft_model *m, int i, graft_step *s)
{
    if (graft_env_on(GRAFT_ENV_NO_FUSED_INFERENCE)) return false;
    const graft_layer *pad = m->layers[i];
    int p[4];
    if (pad->requires_grad || !graft_zero_padding2d_pads(pad, &p[0], &p[1], &p[2], &p[3]))
        return false;
    const int j = graft_model_sole_reader(m, i);
    if (j <= 0 || m->layers[j]->requires_grad || !graft_max_pool_over_padding(m->layers[j], p))
        return false;
    *s = (graft_step){.kind = GRAFT_STEP_PAD_POOL, .n = 2, .layer = {i, j}, .bn = -1};
    return true;
}

void graft_step_pad_pool_forward(graft_model *m, const graft_step *s, const graft_fwd *f)
{
    int p[4];
    graft_zero_padding2d_pads(m->layers[s->layer[0]], &p[0], &p[1], &p[2], &p[3]);
    const graft_layer *pool = m->layers[s->layer[1]];
    graft_max_pool_forward_padded(pool, p, f->n, f->in[0], pool->out);
}
