/*
 * int8 inference (graft_model_quantize_int8, include/graft/model.h): the
 * longest run of layers from the input that 8-bit arithmetic can take
 * (convolutions with their folded BatchNormalization and clamp, zero
 * paddings, max pools, adds) runs as oneDNN int8 primitives over 8-bit
 * tensors; the float plan runs the rest from the run's one output tensor,
 * which the plan keeps as a boundary (graft_plan_keep_split).
 *
 * Every tensor inside the run has one scale (x = scale * q, no zero point):
 * u8 where calibration saw no negative value, else s8. Kernels are s8 with
 * one scale per output channel, BatchNormalization folded in first.
 * Calibration runs the same steps in float (oneDNN f32 primitives over the
 * same folded kernels) and takes each tensor's range over the images.
 */
#ifndef GRAFT_QUANT_INT8_H
#define GRAFT_QUANT_INT8_H

#include "graph/graph.h"

#include <stdio.h>

typedef struct graft_int8 graft_int8;

/* The run for model m calibrated on n images (n * input floats) into
 * *out; fails where no layer can be taken or oneDNN refuses. */
graft_status graft_int8_new(graft_model *m, const float *images, int n, graft_int8 **out);
void graft_int8_free(graft_int8 *q);
/* The first layer the float plan runs (the model's layer count: none). */
int graft_int8_boundary(const graft_int8 *q);
/* The run over n images of x, its output tensor in float into out (n
 * times the boundary tensor's size). */
graft_status graft_int8_forward(graft_int8 *q, const float *x, int n, float *out);
/* The same in float arithmetic over the same folded kernels (tests: the
 * translation of the layers, apart from the rounding to 8 bits). */
graft_status graft_int8_forward_float(graft_int8 *q, const float *x, int n, float *out);
/* GRAFT_PROFILE's lines on the run: its steps, their layers and tensors. */
void graft_int8_describe(const graft_int8 *q, FILE *f);
/* Layer index of the run's output tensor. */
int graft_int8_output_layer(const graft_int8 *q);

/* What the run made of the model, for exporters (a QDQ ONNX model of the
 * same quantization). */
/* Layer i's output where the run holds it in 8 bits (a step's output, the
 * input, or a layer that hands one of those on): x = scale * q, q u8 or s8
 * (no zero point). false: the run does not hold it. */
bool graft_int8_tensor(const graft_int8 *q, int layer, float *scale, bool *u8);
/* The run's steps, in the order they run. */
typedef enum { GRAFT_INT8_CONV, GRAFT_INT8_DEPTHWISE, GRAFT_INT8_MAX_POOL } graft_int8_kind;
typedef struct {
    graft_int8_kind kind;
    /* Its layers in graph order: [ZeroPadding2D,] the convolution
     * [, BatchNormalization] [, Add] [, ReLU or Activation], or
     * [ZeroPadding2D,] MaxPooling2D; the last one's output is the step's. */
    int layers[8], n_layers;
    int in;       /* the layer whose output it reads */
    int kh, kw, sh, sw;
    int pads[4];  /* top, left, bottom, right around the unpadded input (the
                   * ZeroPadding2D's and the layer's own; ONNX's order) */
    /* Convolutions: */
    const int8_t *kernel; /* s8, HWIO (DepthwiseConv2D: HWC), BatchNormalization folded in */
    const float *scale;   /* per output channel: the folded kernel ~ scale * kernel */
    const float *bias;    /* per output channel, float, BatchNormalization folded in */
    int c, filters;       /* input channels, output channels */
    int residual; /* the Add's other input, a layer (-1: no Add) */
    bool clamp;   /* max(lo, min(hi, .)) last (hi may be INFINITY) */
    float lo, hi;
} graft_int8_step;
int graft_int8_steps(const graft_int8 *q);
void graft_int8_step_at(const graft_int8 *q, int k, graft_int8_step *out);

#endif
