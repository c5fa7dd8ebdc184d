/*
 * A direct convolution for the options the fast kernels do not take:
 * dilation, groups and depth multipliers (Conv2D with dilation_rate or
 * groups, DepthwiseConv2D with dilation, SeparableConv2D's depthwise stage).
 * NHWC input, kernel (kh, kw, C / groups, F) as Keras holds a grouped
 * Conv2D's (a DepthwiseConv2D's (kh, kw, C, dm) is the same array with
 * groups = C and F = C * dm), TensorFlow's padding. The planner never fuses
 * it; the layers apply their activation and epilogue after it.
 */
#ifndef GRAFT_LAYERS_CONV_PLAIN_H
#define GRAFT_LAYERS_CONV_PLAIN_H

#include "core/core.h"

typedef struct {
    int h, w, c;      /* input */
    int kh, kw, sh, sw, dh, dw;
    int groups, f;    /* output channels */
    int pt, pl, oh, ow;
} graft_plain_conv;

/* Fills the geometry; fails naming the layer when the options do not fit
 * (channels not divisible by groups, an output of no size). */
graft_status graft_plain_conv_init(graft_plain_conv *p, const char *layer, const char *cls,
                                   const graft_shape *in, const int kernel[2], const int strides[2],
                                   const int dilation[2], graft_padding padding, int groups,
                                   int filters);

/* y = conv(x, W) + bias (bias may be NULL), n samples. */
void graft_plain_conv_forward(const graft_plain_conv *p, int n, const float *x, const float *W,
                              const float *bias, float *y);
/* dW (and db when not NULL) from dz, written (not accumulated). */
void graft_plain_conv_backward_weights(const graft_plain_conv *p, int n, const float *x,
                                       const float *dz, float *dW, float *db);
/* dx from dz, written or (accumulate) added. */
void graft_plain_conv_backward_data(const graft_plain_conv *p, int n, const float *dz,
                                    const float *W, float *dx, bool accumulate);

#endif
