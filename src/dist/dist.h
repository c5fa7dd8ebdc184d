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
/* graft_cache_balance.exchange (ctx: the graft_comm). The ranks first
 * compare their counts: a rank whose step failed sends none, and then every
 * rank fails the step instead of waiting. */
graft_status dist_exchange_rows(void *ctx, size_t row_bytes, const void *send, const int *send_rows,
                                void *recv, const int *recv_rows);
/* graft_cache_balance.counts (ctx: the graft_comm): send[q] from this rank
 * to rank q; recv[q] what rank q sends here. */
graft_status dist_alltoall_counts(void *ctx, const int *send, int *recv);
/* Rank 0's bytes to every rank. */
graft_status dist_bcast(graft_comm *c, void *buf, size_t bytes);

/* Sums the model's trainable gradients over the ranks, `how`
 * (graft_allreduce); frozen weights are never summed. BUCKETS: buckets of
 * about bucket_bytes of consecutive trainable weights, top layer first, each
 * sent (MPI_Iallreduce) as soon as the backward pass has passed below its
 * lowest layer. SHARED: the model's gradient array is this rank's slot of
 * the communicator's shared window until dist_grads_free, and each rank
 * sums and steps a share of the weights (dist_grads_finish). Either way the
 * order of the sums depends only on the model and the number of ranks, so
 * the same ranks give the same bits. */
typedef struct dist_grads dist_grads;
/* SHARED also splits by rows among the ranks every trainable kernel of at
 * least split_min weights whose layer can run that way (SIZE_MAX: none),
 * with buffers for batches of up to `batch` samples (graft_row_split): each
 * rank computes, sums and steps its rows alone, and its weights of the
 * others' rows are current only after dist_grads_gather(g, weights). */
graft_status dist_grads_new(graft_comm *c, graft_model *m, graft_allreduce how, size_t bucket_bytes,
                            size_t split_min, int batch, dist_grads **out);
/* The hook for the layers' passes (graft_model.split); NULL: nothing split. */
graft_row_split *dist_grads_split(dist_grads *g);
/* Installs the backward hook on the model (graft_model.grads_ready) for the
 * next backward pass. */
void dist_grads_arm(dist_grads *g);
/* This rank had no samples: its trainable gradients are zeros. */
void dist_grads_zero(dist_grads *g);
/* The optimizer step over weights [off, off + n) of the model's arrays,
 * with the summed gradients g[0, n). */
typedef struct {
    void (*step)(void *ctx, size_t off, size_t n, const float *g);
    void *ctx;
} dist_step_part;
/* BUCKETS: sends what is left, waits for every bucket and removes the hook;
 * the gradients are then the sums, and the caller takes the optimizer step.
 * SHARED (dist_grads_steps): once every rank's backward pass is done, each
 * sums its 1/N of the gradients over the ranks and takes `step` over it,
 * then copies the others' stepped weights: every rank ends with the same
 * weights, but the optimizer state (Adam's moments) of the others' shares
 * only after dist_grads_gather. One pass over each gradient and weight per
 * rank, instead of N optimizer steps over all of them. */
graft_status dist_grads_finish(dist_grads *g, const dist_step_part *step);
bool dist_grads_steps(const dist_grads *g);
/* SHARED: the other ranks' shares of `state` (optimizer state parallel to
 * the weights; NULL: none) copied here. Collective: at the end of an epoch
 * (before validation and a checkpoint) and of the fit. */
graft_status dist_grads_gather(dist_grads *g, float *state);
/* The same for the model's weights of the other ranks' rows of split
 * kernels (the rest of the weights is current after every step). */
graft_status dist_grads_gather_split(dist_grads *g);
void dist_grads_free(dist_grads *g);
/* Bytes of trainable gradient one step sends (each rank's contribution). */
size_t dist_grads_bytes(const dist_grads *g);

#endif
