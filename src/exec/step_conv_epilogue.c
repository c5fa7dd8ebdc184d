/*
 * Where nothing needs a gradient, Conv2D/DepthwiseConv2D -> BatchNormalization
 * (inference mode) -> ReLU (or any element-wise Activation: swish,
 * hard_swish, ...) chains run as one pass: the convolution applies the
 * normalisation and the activation to its output while it is in cache (the
 * MobileNets, EfficientNets and ResNet50 are made of these chains). The later
 * layers of the chain share the convolution's buffer.
 */
#include "exec/plan.h"

#include <string.h>

void graft_step_take_epilogue(const graft_model *m, graft_step *f, int j, bool training)
{
    j = graft_model_sole_reader(m, j);
    const graft_layer *r = j > 0 ? m->layers[j] : NULL;
    if (r && !r->requires_grad && strcmp(r->ops->class_name, "BatchNormalization") == 0 &&
        (!training || !r->trains)) {
        f->bn = j;
        f->epi.bn = true;
        f->layer[f->n++] = j;
        j = graft_model_sole_reader(m, j);
        r = j > 0 ? m->layers[j] : NULL;
    }
    float lo, hi;
    if (r && !r->requires_grad &&
        (graft_relu_clamp(r, &lo, &hi) || graft_activation_clamp(r, &lo, &hi))) {
        f->epi.clamp = true;
        f->epi.lo = lo;
        f->epi.hi = hi;
        f->layer[f->n++] = j;
    } else if (r && !r->requires_grad && graft_activation_elementwise(r, &f->epi.act)) {
        f->layer[f->n++] = j;
    }
}

bool graft_step_conv_epilogue_match(const graft_model *m, int i, bool training, graft_step *s)
{
    const graft_layer *l = m->layers[i];
    const char *cls = l->ops->class_name;
    if (l->requires_grad || (strcmp(cls, "Conv2D") != 0 && strcmp(cls, "DepthwiseConv2D") != 0))
        return false;
    if (l->out_shape.dim[l->out_shape.rank - 1] > GRAFT_EPILOGUE_MAX_C) return false;
    graft_step f = {.kind = GRAFT_STEP_CONV_EPILOGUE, .n = 1, .layer = {i}, .bn = -1};
    graft_step_take_epilogue(m, &f, i, training);
    if (f.n == 1) return false;
    *s = f;
    return true;
}

void graft_step_conv_epilogue_forward(graft_model *m, graft_step *s, const graft_fwd *f)
{
    /* The folded normalisation from the current weights (they change between
     * calls: loading, training). */
    if (s->bn >= 0)
        s->epi.bn = graft_batch_norm_inference(m->layers[s->bn], (float *)s->epi.mean,
                                               (float *)s->epi.scale, (float *)s->epi.shift);
    graft_layer *conv = m->layers[s->layer[0]];
    graft_fwd g = *f;
    g.epi = &s->epi;
    conv->ops->forward(conv, &g);
}
