/* Shapes and aligned allocation. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

static size_t whole_pages(size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (bytes == 0) bytes = 1;
    if (bytes > SIZE_MAX - page) return 0;
    return (bytes + page - 1) / page * page;
}

void *graft_pages_grow(void *p, size_t old_bytes, size_t new_bytes)
{
    size_t new_len = whole_pages(new_bytes), old_len = p ? whole_pages(old_bytes) : 0;
    if (new_len == 0) return NULL;
    if (p && new_len <= old_len) return p;
    void *q;
#ifdef MREMAP_MAYMOVE
    if (p) {
        q = mremap(p, old_len, new_len, MREMAP_MAYMOVE);
        return q == MAP_FAILED ? NULL : q;
    }
#endif
    q = mmap(NULL, new_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    /* Where transparent huge pages are on request, a fault fills 2 MiB, not
     * 4 KiB (the mapping keeps this through mremap); a failure is harmless. */
    (void)madvise(q, new_len, MADV_HUGEPAGE);
#endif
    if (p) {
        memcpy(q, p, old_bytes);
        munmap(p, old_len);
    }
    return q;
}

void graft_pages_free(void *p, size_t bytes)
{
    if (p) munmap(p, whole_pages(bytes));
}
