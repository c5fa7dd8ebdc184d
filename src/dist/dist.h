/*
 * Data parallelism over MPI (dist/dist.c), for fit and evaluate: the
 * collectives they need on a graft_comm, and the gradient reducer that sums
 * the trainable gradients over the ranks in buckets while the backward pass
 * runs. Built without MPI (make MPI=0), a graft_comm cannot be made and
 * these are never reached with more than one rank.
 */
#ifndef GRAFT_DIST_H
#define GRAFT_DIST_H

#include "internal.h"

/* More than one rank: the data-parallel path. */
bool dist_active(const graft_comm *c);
/* Sums n doubles over the ranks, in place (blocking). */
graft_status dist_sum(graft_comm *c, double *v, int n);
/* Sums n floats over the ranks, in place (blocking). */
graft_status dist_sum_floats(graft_comm *c, float *v, size_t n);
/* graft_allsum.sum for synchronized BatchNormalization (ctx: the graft_comm). */
void dist_bn_sum(void *ctx, double *v, int n);
/* Rank 0's bytes to every rank. */
graft_status dist_bcast(graft_comm *c, void *buf, size_t bytes);

/* Sums the model's trainable gradients over the ranks. Buckets of about
 * bucket_bytes of consecutive trainable weights, top layer first, each sent
 * (MPI_Iallreduce) as soon as the backward pass has passed below its lowest
 * layer; frozen weights are never sent. Its order of buckets and their
 * bounds depend only on the model, so the same ranks give the same bits. */
typedef struct dist_grads dist_grads;
graft_status dist_grads_new(graft_comm *c, graft_model *m, size_t bucket_bytes, dist_grads **out);
/* Installs the backward hook on the model (graft_model.grads_ready) for the
 * next backward pass. */
void dist_grads_arm(dist_grads *g);
/* This rank had no samples: its trainable gradients are zeros. */
void dist_grads_zero(dist_grads *g);
/* Sends what is left, waits for every bucket and removes the hook; the
 * gradients are then the sums. */
graft_status dist_grads_finish(dist_grads *g);
void dist_grads_free(dist_grads *g);
/* Bytes of trainable gradient one step sends (each rank's contribution). */
size_t dist_grads_bytes(const dist_grads *g);

#endif
