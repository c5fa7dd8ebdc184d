/*
 * Per-column sums over a rows x C float matrix (NHWC activations seen as
 * rows of channels): bias gradients, BatchNormalization's statistics and
 * gradients. Each part of the rows sums blocks of 32 rows in float and adds
 * each block into double sums: a float-to-double add per element ran at a
 * third of the speed, and a float sum of 32 terms stays within about 1e-6
 * of the exact one (relative to the sum of their magnitudes). The parts add
 * up in part order, so the bits depend on `parts` only, not on the threads.
 */
#ifndef GRAFT_COLSUM_H
#define GRAFT_COLSUM_H

#include <stddef.h>

typedef enum {
    GRAFT_COLSUM_PLAIN,   /* s0 = sum(x) */
    GRAFT_COLSUM_RELU,    /* out = y > 0 ? x : 0 (out may be x), s0 = sum(out) */
    GRAFT_COLSUM_MOMENTS, /* s0 = sum(x - m), s1 = sum((x - m)^2) */
    GRAFT_COLSUM_PRODUCT, /* s0 = sum(y), s1 = sum((x - m) * y) */
} graft_colsum_kind;

/* Doubles of `partials` that graft_colsums needs. */
size_t graft_colsum_doubles(graft_colsum_kind kind, int parts, int C);

/*
 * Sums the columns of x (rows x C; y and out alike, m one value per column,
 * each used by the kinds above) in `parts` contiguous parts of the rows, run
 * in parallel. On return partials[0, C) holds s0 and, for MOMENTS and
 * PRODUCT, partials[C, 2C) holds s1. parts must be at least 1.
 */
void graft_colsums(graft_colsum_kind kind, const float *x, const float *y, const float *m,
                   float *out, size_t rows, int C, int parts, double *partials);

#endif
