/* Shapes and aligned allocation. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

graft_shape graft_shape1(int a)
{
    graft_shape s = {1, {a, 0, 0, 0}};
    return s;
}

graft_shape graft_shape3(int h, int w, int c)
{
    graft_shape s = {3, {h, w, c, 0}};
    return s;
}

size_t graft_shape_size(const graft_shape *s)
{
    size_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= (size_t)(s->dim[i] > 0 ? s->dim[i] : 0);
    return n;
}

void graft_shape_format(const graft_shape *s, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "(None");
    for (int i = 0; i < s->rank && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, ", %d", s->dim[i]);
    if (len < cap) snprintf(buf + len, cap - len, ")");
}

void *graft_alloc(size_t bytes)
{
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    return aligned_alloc(64, rounded);
}

void *graft_calloc(size_t bytes)
{
    void *p = graft_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void graft_free(void *p) { free(p); }
