/*
 * Where nothing needs a gradient, ZeroPadding2D -> DepthwiseConv2D (depth
 * multiplier 1) [-> inference BatchNormalization] [-> ReLU or any
 * element-wise Activation] runs as one pass: the depthwise kernel reads the
 * unpadded input and skips the taps that fall in the padding, so the padded
 * tensor is never written (Keras builds every strided depthwise convolution
 * of EfficientNet and MobileNetV3 this way, with correct_pad's
 * ZeroPadding2D and 'valid' padding). Each output row then goes through the
 * convolution's own activation and the step's epilogue while in cache, as
 * DepthwiseConv2D's own forward does: a padding tap adds 0 * w to its sum,
 * a skipped one nothing, so the bits are the unfused layers' (for finite
 * kernels). GRAFT_NO_FUSED_INFERENCE=1 runs the layers apart.
 */
#include "exec/plan.h"
#include "kernels/kernels.h"

bool graft_step_pad_dw_match(const graft_model *m, int i, bool training, graft_step *s)
{
    if (graft_env_on(GRAFT_ENV_NO_FUSED_INFERENCE)) return false;
    const graft_layer *pad = m->layers[i];
    int t, b, le, ri;
    if (pad->requires_grad || !graft_zero_padding2d_pads(pad, &t, &b, &le, &ri)) return false;
    const int j = graft_model_sole_reader(m, i);
    graft_conv_geom g;
    int filters;
    const float *k, *bias;
    graft_activation a;
    if (j <= 0 || m->layers[j]->requires_grad ||
        !graft_depthwise_conv2d_args(m->layers[j], &g, &filters, &k, &bias, &a) || filters != g.c ||
        g.kh > GRAFT_DW_MAX_KH || filters > GRAFT_EPILOGUE_MAX_C)
        return false;
    graft_step f = {.kind = GRAFT_STEP_PAD_DW, .n = 2, .layer = {i, j}, .bn = -1};
    graft_step_take_epilogue(m, &f, j, training);
    *s = f;
    return true;
}

void graft_step_pad_dw_forward(graft_model *m, graft_step *s, const graft_fwd *f)
{
    if (s->bn >= 0)
        s->epi.bn = graft_batch_norm_inference(m->layers[s->bn], (float *)s->epi.mean,
                                               (float *)s->epi.scale, (float *)s->epi.shift);
    int t, b, le, ri;
    graft_zero_padding2d_pads(m->layers[s->layer[0]], &t, &b, &le, &ri);
    graft_conv_geom g;
    int filters;
    const float *kernel, *bias;
    graft_activation act;
    graft_depthwise_conv2d_args(m->layers[s->layer[1]], &g, &filters, &kernel, &bias, &act);
    /* The convolution's geometry over the unpadded input: its own padding
     * ('same' adds some) after the layer's, rows and columns beyond the
     * input read as padding. */
    g.h -= t + b;
    g.w -= le + ri;
    g.pad_top += t;
    g.pad_left += le;
    graft_dw_forward_act(&g, f->n, f->in[0], kernel, bias, act, &s->epi,
                         m->layers[s->layer[1]]->out);
}
