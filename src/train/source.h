/*
 * What graft keeps in a source's graft_internal bytes (include/graft/train.h):
 * its bookkeeping, which users' sources only zero. It lives inside the
 * source, not behind a pointer or in a table, so that a user's source needs
 * no call to set it up or free it, and a wrapper that copies a source (as the
 * tests' do) carries it along. For train/, data/ and the graft command.
 */
#ifndef GRAFT_TRAIN_SOURCE_H
#define GRAFT_TRAIN_SOURCE_H

#include "graft.h"

typedef struct __attribute__((may_alias)) {
    /* Batches given so far (graft_source_drawn). */
    long drawn;
    /* Set by graft's own sources (graft_source_mark_own): the identity under
     * which a feature store keeps this source's features between fits. 0 (a
     * source of your own): its features are kept for one fit only. */
    uint64_t uid;
    /* Data parallelism (set by fit and evaluate with a communicator): next()
     * and next_ids() give only this rank's share of each batch, which the
     * sources graft makes honour (can_shard); the stream of batches, and
     * `drawn`, stay those of one process. By position, a batch of n splits
     * as [n*r/N, n*(r+1)/N); by id (shard_by_id: a validation cache keeps
     * each rank's samples; fit's training draws, whose cache is kept by id
     * too, clear it once the cache is open), sample i goes to rank i mod N. shard_whole:
     * the whole batch for the next draw (a feature cache drawing a batch's
     * ids and labels to split it evenly, graft_cache_balance). */
    int can_shard;
    int shard_rank, shard_count, shard_by_id, shard_whole;
} graft_source_book;

_Static_assert(sizeof(graft_source_book) <= sizeof(((graft_source *)0)->graft_internal),
               "the bookkeeping fits the bytes graft_source keeps for it");
_Static_assert(_Alignof(graft_source_book) <= _Alignof(uint64_t),
               "the bookkeeping's alignment is the bytes'");

static inline graft_source_book *graft_source_book_of(graft_source *s)
{
    return (graft_source_book *)(void *)s->graft_internal.bytes;
}

static inline const graft_source_book *graft_source_book_get(const graft_source *s)
{
    return (const graft_source_book *)(const void *)s->graft_internal.bytes;
}

/* A source graft makes: a fresh uid, and next() honours the shard. */
void graft_source_mark_own(graft_source *s);
/* For a source's own next(): whether the k-th of the count samples of the
 * batch being drawn, sample `id`, is this rank's share (always, without a
 * shard). */
int graft_source_keeps(const graft_source *s, int k, int count, long id);

#endif
