/* Names to ids in expected constant time: a model's layers, the layer list of
 * a Keras config, a file's weight groups. Loading a model must take time
 * linear in its layers, so no lookup by name may scan a list. */
#ifndef GRAFT_CORE_NAMES_H
#define GRAFT_CORE_NAMES_H

#include "graft.h"

#include <stddef.h>
#include <stdint.h>

/* The index keeps ids only; its owner lends the names, so that they may live
 * anywhere (and move) without the index knowing. */
typedef const char *(*graft_name_at)(const void *owner, int id);

typedef struct {
    uint64_t *slot; /* 0: empty; else hash << 32 | (id + 1) */
    size_t cap, n;
} graft_names;

void graft_names_free(graft_names *x);
/* Room for `n` names in all, so that as many adds cannot fail. */
graft_status graft_names_reserve(graft_names *x, size_t n);
/* Adds `id` (0 <= id < INT32_MAX) under `name`; a name already there keeps
 * its first id for graft_names_find. */
graft_status graft_names_add(graft_names *x, const char *name, int id);
/* The first id added under `name`, or -1. */
int graft_names_find(const graft_names *x, const char *name, graft_name_at at, const void *owner);

/* Operations counted in loading's loops (name comparisons, layers visited,
 * weight views bound), so that tests can check that loading scales linearly
 * without timing it. */
void graft_ops_add(uint64_t n);
uint64_t graft_ops_count(void);

#endif
