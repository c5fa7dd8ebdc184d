/*
 * What the files of the conv+pool pass share (conv_pool.c says what the pass
 * is): the band of input rows that one row of pooled outputs reads, the
 * layout of the scratch that the forward and backward passes both carve, and
 * the backward's table path (conv_pool_backward_sel.c), which
 * conv_pool_backward.c calls row by row. AVX2 only.
 */
#ifndef GRAFT_KERNELS_CONV_POOL_H
#define GRAFT_KERNELS_CONV_POOL_H

#include "core/core.h"
#include "kernels/kernels.h"

#ifdef __AVX2__
#include <immintrin.h>
#include <string.h>

/* The input rows one row of pooled outputs reads: kh + 1 rows of
 * bw = 2 * (ow / 2) + kw - 1 pixels, the padding as zeros. */
typedef struct {
    const float *p; /* the band's first pixel */
    size_t rs;      /* floats from one row to the next */
} band;

static inline size_t band_floats(const graft_conv_geom *g)
{
    return (size_t)(g->kh + 1) * (size_t)(2 * (g->ow / 2) + g->kw - 1) * (size_t)g->c;
}

/* Points into x where the band lies inside the image (no copy), else copies
 * it into `tmp` with zeros for the padding. */
static inline band get_band(const graft_conv_geom *g, const float *x, int s, int py, float *tmp)
{
    const int C = g->c, bh = g->kh + 1, bw = 2 * (g->ow / 2) + g->kw - 1;
    const int y0 = 2 * py - g->pad_top, x0 = -g->pad_left;
    const float *img = x + (size_t)s * g->h * g->w * C;
    if (y0 >= 0 && y0 + bh <= g->h && x0 >= 0 && x0 + bw <= g->w)
        return (band){img + ((size_t)y0 * g->w + x0) * C, (size_t)g->w * C};
    for (int r = 0; r < bh; r++) {
        float *d = tmp + (size_t)r * bw * C;
        int y = y0 + r;
        if (y < 0 || y >= g->h) {
            memset(d, 0, (size_t)bw * C * sizeof(float));
            continue;
        }
        for (int xx = 0; xx < bw; xx++) {
            int xi = x0 + xx;
            for (int c = 0; c < C; c++)
                d[(size_t)xx * C + c] =
                    xi >= 0 && xi < g->w ? img[((size_t)y * g->w + xi) * C + c] : 0.0f;
        }
    }
    return (band){tmp, (size_t)bw * C};
}

#define ROUND16(v) (((v) + 15) / 16 * 16)
#define ROUND32(v) (((v) + 31) / 32 * 32)

/* Per thread: the masked gradients of one row of windows (G), then the band
 * and BAND_SLACK floats after it that the backward's table loads may read
 * (never use). After the threads' parts, the double sums of the kernel and
 * bias gradients (2 floats each) of each block of rows (sum_blocks). Every
 * part starts 64-byte aligned (the model's scratch is). */
#define BAND_SLACK 8
static inline size_t g_floats(const graft_conv_geom *g, int filters)
{
    return (size_t)(g->ow / 2) * 4 * (size_t)ROUND32(filters);
}
static inline size_t per_thread_floats(const graft_conv_geom *g, int filters)
{
    return graft_thread_slot_floats(g_floats(g, filters) + band_floats(g) + BAND_SLACK);
}
static inline size_t sums_floats(const graft_conv_geom *g, int filters)
{
    return ROUND16(2 * ((size_t)g->kh * g->kw * g->c + 1) * (size_t)filters);
}

/* The backward's rows go in blocks that the threads take as they come, so
 * that a core the machine's other work slows takes fewer; each block has
 * its sums, added in block order at the end: the same result whichever
 * thread took which. Eight blocks per thread, fewer where their sums would
 * pass 4 MiB (large kernels and many filters), never fewer than threads. */
static inline int sum_blocks(const graft_conv_geom *g, int filters)
{
    const int th = graft_threads();
    const size_t fit = ((size_t)1 << 20) / sums_floats(g, filters);
    return fit >= (size_t)8 * th ? 8 * th : fit > (size_t)th ? (int)fit : th;
}

/* The AVX-512 loops' functions (conv_pool.c: graft_conv_pool_avx512). */
#define T512 __attribute__((target("avx512f")))

typedef void (*sel_fn)(const int32_t *idx, const float *gm, int OW, int FP, int f0, const float *b,
                       size_t rs, int C, const int *off, float *acc_out);
/* By channels (four or fewer) and number of kernel rows: with 2 * KC
 * accumulators, the two gradients and indices and a table, 4 rows fill the
 * registers (AVX2); 12 in AVX-512's 32 registers. */
#define SEL_MAX_KC 4
extern const sel_fn graft_conv_pool_sels256[2][SEL_MAX_KC + 1];
extern const sel_fn graft_conv_pool_sels512[2][13];
/* One row's table indices and gradients for them (conv_pool_backward_sel.c). */
void graft_conv_pool_build_sel256(const float *gr, const uint8_t *cr, int OW, int F, int FP,
                                  __m256i lut, int32_t *idx, float *gm, float *gsum);
T512 void graft_conv_pool_build_sel512(const float *gr, const uint8_t *cr, int OW, int F, int FP,
                                       __m256i lut8, int32_t *idx, float *gm, float *gsum);

#endif /* __AVX2__ */
#endif
