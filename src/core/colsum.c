/* Per-column sums in float blocks of rows, then double (see colsum.h). */
#include "core/colsum.h"
#include "core/core.h"

#include <string.h>

#define BLOCK_ROWS 32
/* Columns per float accumulator on the stack (wider rows go in tiles). */
#define TILE 512

static int sums_of(graft_colsum_kind kind)
{
    return kind == GRAFT_COLSUM_MOMENTS || kind == GRAFT_COLSUM_PRODUCT ? 2 : 1;
}

size_t graft_colsum_doubles(graft_colsum_kind kind, int parts, int C)
{
    return (size_t)parts * (size_t)sums_of(kind) * (size_t)C;
}

/* Float sums over rows [r0, r1) of the columns [c0, c0 + n) into b0, b1. */
static void block_sums(graft_colsum_kind kind, const float *x, const float *y, const float *m,
                       float *out, size_t r0, size_t r1, int C, int c0, int n, float *restrict b0,
                       float *restrict b1)
{
    memset(b0, 0, (size_t)n * sizeof(float));
    memset(b1, 0, (size_t)n * sizeof(float));
    const float *restrict mc = m ? m + c0 : NULL;
    for (size_t r = r0; r < r1; r++) {
        const size_t o = r * (size_t)C + (size_t)c0;
        const float *xr = x + o;
        switch (kind) {
        case GRAFT_COLSUM_PLAIN:
#pragma omp simd
            for (int j = 0; j < n; j++)
                b0[j] += xr[j];
            break;
        case GRAFT_COLSUM_RELU: {
            /* Not restrict: out may be x (read, then written, lane by lane). */
            const float *yr = y + o;
            float *d = out + o;
#pragma omp simd
            for (int j = 0; j < n; j++) {
                float v = yr[j] > 0 ? xr[j] : 0.0f;
                d[j] = v;
                b0[j] += v;
            }
            break;
        }
        case GRAFT_COLSUM_MOMENTS:
#pragma omp simd
            for (int j = 0; j < n; j++) {
                float a = xr[j] - mc[j];
                b0[j] += a;
                b1[j] += a * a;
            }
            break;
        case GRAFT_COLSUM_PRODUCT: {
            const float *restrict yr = y + o;
#pragma omp simd
            for (int j = 0; j < n; j++) {
                b0[j] += yr[j];
                b1[j] += (xr[j] - mc[j]) * yr[j];
            }
            break;
        }
        }
    }
}

/* No more threads than parts: idle ones would only wait at the barrier. */
static int threads_for(int parts)
{
    const int nt = graft_threads();
    return nt < parts ? nt : parts > 1 ? parts : 1;
}

void graft_colsums(graft_colsum_kind kind, const float *x, const float *y, const float *m,
                   float *out, size_t rows, int C, int parts, double *partials)
{
    const int w = sums_of(kind);
    const size_t stride = (size_t)w * (size_t)C;
#pragma omp parallel for schedule(static) num_threads(threads_for(parts))
    for (int p = 0; p < parts; p++) {
        double *restrict s0 = partials + (size_t)p * stride, *restrict s1 = s0 + C;
        memset(s0, 0, stride * sizeof(double));
        float b0[TILE], b1[TILE];
        const size_t r1 = rows * (size_t)(p + 1) / (size_t)parts;
        for (size_t r0 = rows * (size_t)p / (size_t)parts; r0 < r1; r0 += BLOCK_ROWS) {
            const size_t r_end = r1 - r0 < BLOCK_ROWS ? r1 : r0 + BLOCK_ROWS;
            for (int c0 = 0; c0 < C; c0 += TILE) {
                const int n = C - c0 < TILE ? C - c0 : TILE;
                block_sums(kind, x, y, m, out, r0, r_end, C, c0, n, b0, b1);
#pragma omp simd
                for (int j = 0; j < n; j++)
                    s0[c0 + j] += b0[j];
                if (w == 2) {
#pragma omp simd
                    for (int j = 0; j < n; j++)
                        s1[c0 + j] += b1[j];
                }
            }
        }
    }
    /* Part by part over contiguous memory, each column in part order. */
    for (int p = 1; p < parts; p++) {
        const double *restrict q = partials + (size_t)p * stride;
#pragma omp simd
        for (size_t i = 0; i < stride; i++)
            partials[i] += q[i];
    }
}
