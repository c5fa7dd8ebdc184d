/* Open addressing with linear probing over (hash, id) pairs. */
#include "core/names.h"

#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t ops;

void graft_ops_add(uint64_t n) { atomic_fetch_add_explicit(&ops, n, memory_order_relaxed); }
uint64_t graft_ops_count(void) { return atomic_load_explicit(&ops, memory_order_relaxed); }

static uint32_t hash_of(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

void graft_names_free(graft_names *x)
{
    free(x->slot);
    memset(x, 0, sizeof *x);
}

static void put(uint64_t *slot, size_t cap, uint64_t v)
{
    size_t i = (size_t)(v >> 32) & (cap - 1);
    while (slot[i]) i = (i + 1) & (cap - 1);
    slot[i] = v;
}

graft_status graft_names_reserve(graft_names *x, size_t n)
{
    if (2 * n <= x->cap) return GRAFT_OK; /* at most half full */
    size_t cap = x->cap ? x->cap : 16;
    while (cap < 2 * n) {
        if (cap > SIZE_MAX / 4 / sizeof *x->slot) return graft_fail(GRAFT_ENOMEM, "too many names");
        cap *= 2;
    }
    uint64_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return graft_fail(GRAFT_ENOMEM, "out of memory indexing %zu names", n);
    for (size_t i = 0; i < x->cap; i++)
        if (x->slot[i]) put(slot, cap, x->slot[i]);
    graft_ops_add(x->cap);
    free(x->slot);
    x->slot = slot;
    x->cap = cap;
    return GRAFT_OK;
}

graft_status graft_names_add(graft_names *x, const char *name, int id)
{
    if (id < 0 || id == INT32_MAX) return graft_fail(GRAFT_EINVAL, "name id %d out of range", id);
    graft_status s = graft_names_reserve(x, x->n + 1);
    if (s != GRAFT_OK) return s;
    put(x->slot, x->cap, (uint64_t)hash_of(name) << 32 | (uint32_t)(id + 1));
    x->n++;
    return GRAFT_OK;
}

int graft_names_find(const graft_names *x, const char *name, graft_name_at at, const void *owner)
{
    if (!x->cap) return -1;
    uint32_t h = hash_of(name);
    uint64_t probes = 1;
    int found = -1;
    for (size_t i = h & (x->cap - 1); x->slot[i]; i = (i + 1) & (x->cap - 1), probes++) {
        if ((uint32_t)(x->slot[i] >> 32) != h) continue;
        int id = (int)(uint32_t)x->slot[i] - 1;
        if (strcmp(at(owner, id), name) == 0 && (found < 0 || id < found)) found = id;
    }
    graft_ops_add(probes);
    return found;
}
