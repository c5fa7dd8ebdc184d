/* Reads the reference fixtures written by scripts/gen_fixtures.py: a file of
 * records (u32 name length, name, u32 rank, i32 dims[rank], f32 data). */
#ifndef GRAFT_FIXTURE_H
#define GRAFT_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[128];
    int rank, dim[8];
    size_t size;
    float *data;
} fixture_array;

typedef struct {
    int n;
    fixture_array *a;
} fixture;

static inline void fixture_free(fixture *f)
{
    for (int i = 0; i < f->n; i++) free(f->a[i].data);
    free(f->a);
    f->a = NULL;
    f->n = 0;
}

/* 0 on success. */
static inline int fixture_load(fixture *f, const char *path)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "  cannot open fixture %s (run scripts/gen_fixtures.py)\n", path);
        return -1;
    }
    for (;;) {
        uint32_t len, rank;
        if (fread(&len, 4, 1, fp) != 1) break;
        fixture_array a = {0};
        if (len >= sizeof a.name || fread(a.name, 1, len, fp) != len || fread(&rank, 4, 1, fp) != 1 ||
            rank > 8)
            goto bad;
        a.rank = (int)rank;
        a.size = 1;
        for (uint32_t d = 0; d < rank; d++) {
            int32_t v;
            if (fread(&v, 4, 1, fp) != 1 || v < 0) goto bad;
            a.dim[d] = v;
            a.size *= (size_t)v;
        }
        a.data = malloc(a.size * sizeof(float) + 1);
        if (!a.data || fread(a.data, sizeof(float), a.size, fp) != a.size) {
            free(a.data);
            goto bad;
        }
        fixture_array *grown = realloc(f->a, (size_t)(f->n + 1) * sizeof *grown);
        if (!grown) {
            free(a.data);
            goto bad;
        }
        f->a = grown;
        f->a[f->n++] = a;
    }
    fclose(fp);
    return 0;
bad:
    fprintf(stderr, "  fixture %s is malformed\n", path);
    fclose(fp);
    fixture_free(f);
    return -1;
}

static inline const fixture_array *fixture_get(const fixture *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->a[i].name, name) == 0) return &f->a[i];
    fprintf(stderr, "  fixture array '%s' is missing\n", name);
    return NULL;
}

/* A fixture array of bytes (stored as floats) back to bytes, NUL-terminated;
 * free() it. NULL when absent or out of memory. */
static inline unsigned char *fixture_bytes(fixture *fx, const char *name, size_t *n)
{
    const fixture_array *a = fixture_get(fx, name);
    if (!a) return NULL;
    unsigned char *b = malloc(a->size + 1);
    for (size_t i = 0; b && i < a->size; i++) b[i] = (unsigned char)a->data[i];
    if (b) b[a->size] = 0;
    *n = a->size;
    return b;
}

#endif
