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

void graft_free(void *p) { free(p); }

/* The array's header sits in the 64 bytes before it, which keeps the array
 * 64-byte aligned; its first field says which allocator made it. */
#define PAGES_HEAD ((size_t)64)
enum { PAGES_MAPPED = 1, PAGES_HEAP };

/* Under AddressSanitizer the fixed-size arrays (gradients, the optimizer's
 * slots) come from malloc, so that a read or write past one is caught to
 * the byte; so do all arrays outside Linux. */
#if defined(GRAFT_ASAN) || !defined(__linux__)
#define PAGES_FROM_MALLOC 1
#endif

#ifdef PAGES_FROM_MALLOC

/* Before the array: its length and the block calloc gave (calloc, not
 * malloc and memset: the sanitizer's allocator knows fresh pages are zero). */
typedef struct {
    int kind; /* PAGES_HEAP */
    size_t bytes;
    void *block;
} pages_head;

static void *heap_alloc(size_t bytes)
{
    if (bytes > SIZE_MAX - 2 * PAGES_HEAD) return NULL;
    char *block = calloc(1, bytes + 2 * PAGES_HEAD);
    if (!block) return NULL;
    char *p = block + PAGES_HEAD + (PAGES_HEAD - (uintptr_t)block % PAGES_HEAD) % PAGES_HEAD;
    pages_head *h = (pages_head *)(void *)(p - PAGES_HEAD);
    *h = (pages_head){PAGES_HEAP, bytes, block};
    return p;
}

#ifndef __linux__
static void *heap_grow(void *p, size_t bytes)
{
    if (!p) return heap_alloc(bytes);
    const pages_head *h = (const pages_head *)(void *)((char *)p - PAGES_HEAD);
    if (bytes <= h->bytes) return p;
    char *q = heap_alloc(bytes);
    if (!q) return NULL;
    memcpy(q, p, h->bytes);
    free(h->block);
    return q;
}
#endif

static void heap_free(void *p)
{
    free(((pages_head *)(void *)((char *)p - PAGES_HEAD))->block);
}

#endif

#ifdef __linux__

static size_t whole_pages(size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (bytes > SIZE_MAX - PAGES_HEAD - page) return 0;
    return (bytes + PAGES_HEAD + page - 1) / page * page;
}

/* Before the array: the bytes mapped readable and writable, and the
 * address space the mapping holds (more, for a growing array). */
typedef struct {
    int kind; /* PAGES_MAPPED */
    size_t len, reserved;
} map_head;

#define HUGE_PAGE ((size_t)2 << 20)
/* Address space a growing array (the weights) reserves: it grows in place,
 * without moving, up to this much (every zoo model's weights fit). */
#define GROW_RESERVE ((size_t)1 << 30)

/* `reserve` bytes of address space from a 2 MiB boundary, the first len of
 * them usable, huge pages asked for (where transparent huge pages are on
 * request a fault fills 2 MiB, not 4 KiB; a refusal is harmless). A growing
 * array reserves more than it uses and grows where it lies (map_grow):
 * moving the pages (mremap) to an address off a 2 MiB boundary split the
 * huge ones, and a model's weights, each read once per pass far apart in
 * time, then cost a TLB miss every 4 KiB (docs/PERFORMANCE.md). NULL where
 * the space can not be had. */
static void *pages_map(size_t len, size_t reserve)
{
    if (reserve > SIZE_MAX - HUGE_PAGE) return NULL;
    char *r = mmap(NULL, reserve + HUGE_PAGE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return NULL;
    char *base = (char *)(((uintptr_t)r + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (base > r) munmap(r, (size_t)(base - r));
    const size_t tail = (size_t)(r + HUGE_PAGE - base);
    if (tail) munmap(base + reserve, tail);
    if (mprotect(base, len, PROT_READ | PROT_WRITE) != 0) {
        munmap(base, reserve);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(base, reserve, MADV_HUGEPAGE);
#endif
    *(map_head *)(void *)base = (map_head){PAGES_MAPPED, len, reserve};
    return base + PAGES_HEAD;
}

static void *map_alloc(size_t bytes)
{
    size_t len = whole_pages(bytes);
    return len ? pages_map(len, len) : NULL;
}

static void map_free(void *p)
{
    char *base = (char *)p - PAGES_HEAD;
    munmap(base, ((map_head *)(void *)base)->reserved);
}

static void *map_grow(void *p, size_t bytes)
{
    size_t len = whole_pages(bytes);
    if (len == 0) return NULL;
    if (!p) {
        /* where the address space is limited, just what it needs */
        void *q = len <= GROW_RESERVE ? pages_map(len, GROW_RESERVE) : NULL;
        return q ? q : pages_map(len, len);
    }
    char *base = (char *)p - PAGES_HEAD;
    map_head *h = (map_head *)(void *)base;
    if (len <= h->len) return p;
    if (len <= h->reserved) {
        if (mprotect(base + h->len, len - h->len, PROT_READ | PROT_WRITE) != 0) return NULL;
        h->len = len;
        return p;
    }
    /* Past the reservation: a new place, the array copied there. */
    char *q = map_alloc(bytes);
    if (!q) return NULL;
    memcpy(q, p, h->len - PAGES_HEAD);
    map_free(p);
    return q;
}

#endif

/* The growing array (a model's weights) is mapped even under the sanitizer,
 * where Linux has mappings: through the heap each doubling copied it, and
 * every zoo model built in a test paid for the copies and their page faults
 * (a summary of VGG19 with its top took 5-7 s). Past its mapped pages the
 * reservation faults, so a stray access beyond it is still caught; the slack
 * of the doubling (graph/weights.c) was never checked either way. */
void *graft_pages_alloc(size_t bytes)
{
#ifdef PAGES_FROM_MALLOC
    return heap_alloc(bytes);
#else
    return map_alloc(bytes);
#endif
}

void *graft_pages_grow(void *p, size_t bytes)
{
#ifdef __linux__
    return map_grow(p, bytes);
#else
    return heap_grow(p, bytes);
#endif
}

void graft_pages_free(void *p)
{
    if (!p) return;
#ifdef PAGES_FROM_MALLOC
    if (*(const int *)(const void *)((char *)p - PAGES_HEAD) == PAGES_HEAP) {
        heap_free(p);
        return;
    }
#endif
#ifdef __linux__
    map_free(p);
#endif
}
