/* Internal to src/train: the feature cache used by fit. */
#ifndef GRAFT_TRAIN_H
#define GRAFT_TRAIN_H

#include "internal.h"

typedef struct graft_feature_cache graft_feature_cache;

/* A cache of the outputs that layers >= `first` read from layers < `first`,
 * per sample of `src`. *out is NULL (and GRAFT_OK returned) when caching does
 * not apply: a source without sample ids or with augmentation, a stochastic
 * layer below `first`, or nothing to skip. */
/* With a store (and a source with a uid), a matching cache kept there by an
 * earlier fit is returned instead, and a new one is kept there. A source
 * sharded by id (data parallelism) keeps only this rank's samples: the
 * cache holds room for those alone. */
graft_status graft_cache_open(graft_model *m, graft_source *src, int first, size_t max_bytes,
                              graft_feature_store *store, const char *what, bool verbose,
                              graft_feature_cache **out);
/* Whether the outputs below layer k are in their buffers after a forward
 * pass over [1, k) planned for a fit whose boundary is `first` (> k). */
bool graft_cache_can_fill_below(const graft_model *m, int k, int first);
/* The next batch of `src` (ids: its samples' ids) and the forward pass over
 * it, from the cache where every sample of the batch is cached, else in full
 * (filling the cache, and `below`, a cache at a lower boundary, when given). */
graft_status graft_cache_fetch_forward(graft_feature_cache *c, graft_feature_cache *below,
                                       graft_model *m, graft_source *src, float *x, float *y,
                                       long *ids, int *n, bool training);
/* Even shares for a cache kept by id (data parallelism). Each rank's cache
 * holds the samples i = rank (mod ranks); drawn by id, a shuffled batch of
 * 32 would give a rank 16 +- 3 (binomially, with 2 ranks), and every step
 * would wait for the rank with the most. So each rank takes the batch's
 * positions [n*r/N, n*(r+1)/N). While the caches fill, the source draws
 * them (shard_by_id is cleared once the cache is open): each rank runs the
 * layers below the boundary on its share and sends the rows of the samples
 * another rank keeps to it, with their ids, to store. Once every rank's
 * cache is full (`on`, set by the caller for the step), nothing is decoded
 * and the ranks send each other the cached rows of the samples they hold
 * for another rank's positions. */
typedef struct {
    /* Sends send_rows[q] rows of row_bytes to each rank q (in rank order
     * from send) and receives recv_rows[q] from each into recv (in rank
     * order); collective. */
    graft_status (*exchange)(void *ctx, size_t row_bytes, const void *send, const int *send_rows,
                             void *recv, const int *recv_rows);
    /* send[q] to each rank q, recv[q] from each; collective. */
    graft_status (*counts)(void *ctx, const int *send, int *recv);
    void *ctx;
    bool on;
} graft_cache_balance;
/* The cache balances its shares as `b` says (NULL: never); b outlives the
 * cache's use in the fit. */
void graft_cache_set_balance(graft_feature_cache *c, const graft_cache_balance *b);
/* Every sample of this rank's shard is cached. */
bool graft_cache_full(const graft_feature_cache *c);
/* Frees a cache unless a store owns it. */
void graft_cache_close(graft_feature_cache *c);
/* Bytes of memory held by all open caches (max_bytes bounds this sum), and
 * whether a cache is in memory rather than in a temporary file. */
size_t graft_cache_memory_in_use(void);
bool graft_cache_in_memory(const graft_feature_cache *c);
/* The samples a cache has room for (this rank's shard) and holds so far. */
long graft_cache_capacity(const graft_feature_cache *c);
long graft_cache_count(const graft_feature_cache *c);

#endif
