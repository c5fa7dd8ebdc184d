/*
 * Running a model: graft_model_prepare compiles the graph into a plan of
 * steps (a single layer, or a fused group of layers that run as one kernel
 * pass) and lays out their buffers for a batch size; the passes run the
 * steps forward and backward. See exec/plan.h for the steps.
 */
#ifndef GRAFT_EXEC_H
#define GRAFT_EXEC_H

#include "graph/graph.h"

/* Plans the steps and sizes the activation arena for batches of n. */
graft_status graft_model_prepare(graft_model *m, int n, bool training);
/* Forward over the whole graph; the output is in the output layer's `out`. */
graft_status graft_model_forward(graft_model *m, const float *x, int n, bool training);
/* Forward over layers [first, last) only; the outputs of earlier layers that
 * these read must already be in place (feature caching). x may be NULL then.
 * first and last must be places where the plan splits (graft_plan_splits_at). */
graft_status graft_model_forward_range(graft_model *m, const float *x, int n, bool training,
                                       int first, int last);
/* Backward from dL/d(output) (n * output size floats) into the weight grads. */
graft_status graft_model_backward(graft_model *m, const float *dout, int n);
/* Makes x (n * input size floats, read only) the input of the next passes. */
void graft_model_bind_input(graft_model *m, const float *x);
/* Whether the plans can run from layer k up on the stored outputs of the
 * layers below it: no step of the prepared plan computes both a layer below
 * k and one at or above it (a fused step's inner outputs never exist on
 * their own), leaving out the steps of layers without gradients (DW_BLOCK,
 * POINTWISE, CONCAT_APPEND chains), which stop short of a kept boundary
 * (graft_plan_keep_split). */
bool graft_plan_splits_at(const graft_model *m, int k);
/* Makes k a boundary every later plan keeps, training or inference (a
 * feature cache stores or reads the outputs below it): the steps of layers
 * without gradients (DW_BLOCK, POINTWISE, PAD_DW, PAD_POOL, CONCAT_APPEND
 * chains) then stop short of it. Plans again if the
 * prepared plan spans it. False when too many boundaries are kept already. */
bool graft_plan_keep_split(graft_model *m, int k);
/* What the prepared plan made of layer i, for tests and profiles: the kind
 * of its step ("layer" when it runs alone, "conv_epilogue", "conv_pool",
 * "winograd_pool", "relu_pool", "dw_block", "pointwise", "pad_dw", "pad_pool", "alias",
 * "concat_append";
 * "none" without a plan) and, in *root (may be NULL), the step's first layer. */
const char *graft_plan_step_kind(const graft_model *m, int i, int *root);

/* Floats from one pixel's row of layer i's output to the next where the
 * prepared plan put it: its channels, or more for a CONCAT_APPEND chain's
 * member short of the chain's last (a prefix of each row of the chain's
 * buffer, which only POINTWISE steps read). */
size_t graft_plan_row_floats(const graft_model *m, int i);

/* Images at a time of the depth-first run of steps (plan.h's graft_segment)
 * that computes layer i in the prepared plan; 0 where none does. */
int graft_plan_depth_first(const graft_model *m, int i);

#endif
