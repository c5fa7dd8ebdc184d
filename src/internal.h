/*
 * What the library's upper modules (train/, io/, zoo/, data/, report/)
 * share and users do not see: everything below them, in layers.
 *   core/core.h     errors, memory, threads, activations, the epilogue
 *   layers/layer.h  the layer struct and its ops table
 *   graph/graph.h   the model as a graph of layers with its weights
 *   exec/exec.h     the plan of steps and the passes that run it
 * Files in core/, kernels/, layers/, graph/ and exec/ include the one they
 * need instead (scripts/import_graph.py keeps the arrows pointing down).
 */
#ifndef GRAFT_INTERNAL_H
#define GRAFT_INTERNAL_H

#include "core/core.h"
#include "exec/exec.h"
#include "graph/graph.h"
#include "layers/layer.h"

/* One optimizer step on the trainable weights (train/optimizer.c). */
void graft_optimizer_step(graft_model *m);
/* The same in parts (ranks that each step a share of the weights): counts
 * the step and returns its step size, then steps weights [off, off + n) of
 * the model's arrays with gradients g[0, n). */
float graft_optimizer_begin_step(graft_model *m);
void graft_optimizer_step_part(graft_model *m, float lr_t, size_t off, size_t n, const float *g);
/* dL/d(pred) for the mean loss over n samples; returns the mean loss (train/loss.c). */
double graft_loss_grad(graft_loss_kind kind, int from_logits, const float *pred, const float *y,
                       int n, int dim, float *dpred);
/* The same for n samples of a batch of n_total split over ranks: dL/d(pred)
 * of the whole batch's mean loss (the bits one process would write for these
 * samples); returns the loss summed over the n samples (0 when n is 0). */
double graft_loss_grad_part(graft_loss_kind kind, int from_logits, const float *pred,
                            const float *y, int n, long n_total, int dim, float *dpred);

#endif
