/*
 * The backward pass of the conv+pool pass (conv_pool.c): the kernel and bias
 * gradients summed from the pooled gradient and the forward's codes, without
 * the 4x larger, mostly zero, gradient of the convolution's output. Each row
 * of windows routes its gradient to the cells that won (G) and adds x * G
 * over kernel rows in register-sized chunks; rows whose inputs are all
 * finite take the table path of conv_pool_backward_sel.c instead. Rows go in
 * blocks with their own double sums, added in block order: the same bits
 * whichever thread took which block.
 */
#include "kernels/conv_pool.h"

#include <math.h>
#include <omp.h>

#ifdef __AVX2__

typedef void (*chunk_fn)(const float *G, int cells, int F, int f0, const float *b, size_t rs, int C,
                         const int *off, float *acc_out);

/* dW[k0 + j][f0 .. f0 + 16) += sum over the row's windows and their four
 * cells of x(cell)[k0 + j] * G(cell), for KC consecutive kernel rows: 2 * KC
 * accumulators stay in registers over the whole row. */
#define CHUNK_FN(KC)                                                                               \
    static void chunk##KC(const float *G, int cells, int F, int f0, const float *b, size_t rs,     \
                          int C, const int *off, float *acc_out)                                   \
    {                                                                                              \
        __m256 s0[KC], s1[KC];                                                                     \
        const size_t pofs[4] = {0, (size_t)C, rs, rs + C}; /* the window's cells */                \
        _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++) s0[j] = s1[j] = _mm256_setzero_ps();  \
        for (int cell = 0; cell < cells; cell++) {                                                 \
            const float *xc = b + (size_t)2 * cell * C;                                            \
            const float *gc = G + (size_t)cell * 4 * F + f0;                                       \
            for (int p = 0; p < 4; p++) {                                                          \
                const float *xp = xc + pofs[p];                                                    \
                __m256 g0 = _mm256_load_ps(gc + (size_t)p * F),                                    \
                       g1 = _mm256_load_ps(gc + (size_t)p * F + 8);                                \
                _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++)                               \
                {                                                                                  \
                    __m256 v = _mm256_broadcast_ss(xp + off[j]);                                   \
                    s0[j] = _mm256_fmadd_ps(v, g0, s0[j]);                                         \
                    s1[j] = _mm256_fmadd_ps(v, g1, s1[j]);                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++)                                       \
        {                                                                                          \
            _mm256_storeu_ps(acc_out + (size_t)j * 16, s0[j]);                                     \
            _mm256_storeu_ps(acc_out + (size_t)j * 16 + 8, s1[j]);                                 \
        }                                                                                          \
    }
CHUNK_FN(6)
CHUNK_FN(5)
CHUNK_FN(4)
CHUNK_FN(3)
CHUNK_FN(2)
CHUNK_FN(1)
#undef CHUNK_FN

/* By number of kernel rows: chunks of as many rows as fit the registers, as
 * each pair of accumulators is a chain of dependent FMAs. */
static const chunk_fn chunks256[7] = {NULL, chunk1, chunk2, chunk3, chunk4, chunk5, chunk6};

/* The masked gradients G of one row of windows (FP floats per cell, the
 * padding zero) and their sum per filter, added to gsum. */
static void build_g256(const float *gr, const uint8_t *cr, int OW, int F, int FP, float *G,
                       float *gsum)
{
    for (int cell = 0; cell < OW; cell++) {
        const float *gv = gr + (size_t)cell * F;
        const uint8_t *cv = cr + (size_t)cell * F;
        float *Gc = G + (size_t)cell * 4 * FP;
        for (int f = 0; f < F; f += 8) {
            __m256 gg = _mm256_loadu_ps(gv + f);
            __m256i k =
                _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(cv + f)));
            for (int p = 0; p < 4; p++) {
                __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(p)));
                _mm256_store_ps(Gc + (size_t)p * FP + f, _mm256_and_ps(gg, m));
            }
            __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(4), k));
            _mm256_storeu_ps(gsum + f,
                             _mm256_add_ps(_mm256_loadu_ps(gsum + f), _mm256_and_ps(gg, live)));
        }
        for (int f = F; f < FP; f++)
            for (int p = 0; p < 4; p++)
                Gc[(size_t)p * FP + f] = 0;
    }
}

/* The masked gradients G of one row of windows (FP floats per cell, the
 * padding zero) and their sum per filter, added to gsum. */
static T512 void build_g512(const float *gr, const uint8_t *cr, int OW, int F, int FP, float *G,
                            float *gsum)
{
    for (int cell = 0; cell < OW; cell++) {
        const float *gv = gr + (size_t)cell * F;
        const uint8_t *cv = cr + (size_t)cell * F;
        float *Gc = G + (size_t)cell * 4 * FP;
        for (int f = 0; f < F; f += 16) {
            __m512 gg = _mm512_loadu_ps(gv + f);
            __m512i k =
                _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(cv + f)));
            for (int p = 0; p < 4; p++)
                _mm512_store_ps(
                    Gc + (size_t)p * FP + f,
                    _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(p)), gg));
            __mmask16 live = _mm512_cmplt_epi32_mask(k, _mm512_set1_epi32(4));
            _mm512_storeu_ps(
                gsum + f, _mm512_add_ps(_mm512_loadu_ps(gsum + f), _mm512_maskz_mov_ps(live, gg)));
        }
        for (int f = F; f < FP; f++)
            for (int p = 0; p < 4; p++)
                Gc[(size_t)p * FP + f] = 0;
    }
}

/* As chunkKC, on 32 filters (two vectors) and up to 12 kernel rows. */
#define CHUNK512(KC)                                                                               \
    static T512 void chunk512_##KC(const float *G, int cells, int F, int f0, const float *b,       \
                                   size_t rs, int C, const int *off, float *acc_out)               \
    {                                                                                              \
        __m512 s0[KC], s1[KC];                                                                     \
        const size_t pofs[4] = {0, (size_t)C, rs, rs + C};                                         \
        _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++) s0[j] = s1[j] = _mm512_setzero_ps(); \
        for (int cell = 0; cell < cells; cell++) {                                                 \
            const float *xc = b + (size_t)2 * cell * C;                                            \
            const float *gc = G + (size_t)cell * 4 * F + f0;                                       \
            for (int p = 0; p < 4; p++) {                                                          \
                const float *xp = xc + pofs[p];                                                    \
                __m512 g0 = _mm512_load_ps(gc + (size_t)p * F),                                    \
                       g1 = _mm512_load_ps(gc + (size_t)p * F + 16);                               \
                _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++)                              \
                {                                                                                  \
                    __m512 v = _mm512_set1_ps(xp[off[j]]);                                         \
                    s0[j] = _mm512_fmadd_ps(v, g0, s0[j]);                                         \
                    s1[j] = _mm512_fmadd_ps(v, g1, s1[j]);                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++)                                      \
        {                                                                                          \
            _mm512_storeu_ps(acc_out + (size_t)j * 32, s0[j]);                                     \
            _mm512_storeu_ps(acc_out + (size_t)j * 32 + 16, s1[j]);                                \
        }                                                                                          \
    }
CHUNK512(12)
CHUNK512(11)
CHUNK512(10)
CHUNK512(9)
CHUNK512(8)
CHUNK512(7)
CHUNK512(6)
CHUNK512(5)
CHUNK512(4)
CHUNK512(3)
CHUNK512(2)
CHUNK512(1)
#undef CHUNK512

static const chunk_fn chunks512[13] = {NULL,        chunk512_1,  chunk512_2, chunk512_3, chunk512_4,
                                       chunk512_5,  chunk512_6,  chunk512_7, chunk512_8, chunk512_9,
                                       chunk512_10, chunk512_11, chunk512_12};

/* Whether every float of the band is finite; copies it to `buf` (with room
 * for BAND_SLACK floats after it) where the table loads would read past the
 * end of x. */
static bool band_for_tables(band *bd, const graft_conv_geom *g, const float *x_end, float *buf)
{
    const int bh = g->kh + 1, len = (2 * (g->ow / 2) + g->kw - 1) * g->c;
    if (bd->p != buf && bd->p + (size_t)(bh - 1) * bd->rs + len + BAND_SLACK > x_end) {
        for (int r = 0; r < bh; r++)
            memcpy(buf + (size_t)r * len, bd->p + (size_t)r * bd->rs, (size_t)len * sizeof(float));
        *bd = (band){buf, (size_t)len};
    }
    /* Inf and NaN: all exponent bits set. */
    const __m256i e = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    int bad1 = 0;
    for (int r = 0; r < bh; r++) {
        const float *row = bd->p + (size_t)r * bd->rs;
        int i = 0;
        for (; i + 8 <= len; i += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(row + i));
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(v, e), e));
        }
        for (; i < len; i++)
            bad1 |= !isfinite(row[i]);
    }
    return _mm256_testz_si256(bad, bad) && !bad1;
}

/* sum[0 .. fw) += acc[0 .. fw) in double, fw a multiple of 8. */
static inline void add_sums(double *sum, const float *acc, int fw)
{
    for (int f = 0; f < fw; f += 4)
        _mm256_storeu_pd(sum + f, _mm256_add_pd(_mm256_loadu_pd(sum + f),
                                                _mm256_cvtps_pd(_mm_loadu_ps(acc + f))));
}

/* What every row of the backward pass shares. */
typedef struct {
    const graft_conv_geom *g;
    int F, FP, BW, K; /* filters, padded to blocks of BW, kernel rows */
    bool wide;        /* the AVX-512 loops */
    __m256i lut;      /* the table lane of each code's cell (cell_table) */
    const float *x, *x_end, *dy;
    const uint8_t *code;
} bwd_args;

/* One thread's work area and the kernel rows' offsets in the last band. */
typedef struct {
    float *G, *band;
    int off[GRAFT_CONV_POOL_MAX_K];
    size_t off_rs; /* the band stride off[] was made for (0: none yet) */
} bwd_work;

/* Row r of windows (r1: the block's end) into sum, (K + 1) x F: the
 * kernel's rows, then the bias. */
static void row_backward(const bwd_args *a, bwd_work *wk, long r, long r1, double *sum)
{
    const graft_conv_geom *g = a->g;
    const int OH = g->oh / 2, OW = g->ow / 2, C = g->c, kwc = g->kw * C;
    const int F = a->F, FP = a->FP, BW = a->BW, K = a->K;
    band bd = get_band(g, a->x, (int)(r / OH), (int)(r % OH), wk->band);
    /* Into L2: the two image rows that the next band has and this one has
     * not (x is read only here, each row twice). In a function of its own
     * GCC dropped this loop (scripts/check_prefetch.py). */
    if (r + 1 < r1) {
        const int s = (int)((r + 1) / OH), y0 = 2 * (int)((r + 1) % OH) - g->pad_top + g->kh - 1;
        for (int y = y0 < 0 ? 0 : y0; y <= y0 + 1 && y < g->h; y++) {
            const float *row = a->x + ((size_t)s * g->h + y) * g->w * C;
            for (int i = 0; i < g->w * C; i += 16)
                _mm_prefetch((const char *)(row + i), _MM_HINT_T1);
        }
    }
    const bool sel = band_for_tables(&bd, g, a->x_end, wk->band);
    if (wk->off_rs != bd.rs) {
        for (int k = 0; k < K; k++)
            wk->off[k] = (int)((size_t)(k / kwc) * bd.rs) + k % kwc;
        wk->off_rs = bd.rs;
    }
    /* G: the pooled gradient routed to the cell that won, per cell (or per
     * window, with the cell's table index). */
    const float *gr = a->dy + (size_t)r * OW * F;
    const uint8_t *cr = a->code + (size_t)r * OW * F;
    float *G = wk->G, *gm = G + (size_t)OW * FP;
    int32_t *idx = (int32_t *)(void *)G;
    float acc[12 * 32], gsum[GRAFT_CONV_POOL_MAX_F];
    memset(gsum, 0, sizeof(float) * (size_t)F);
    if (sel)
        (a->wide ? graft_conv_pool_build_sel512 : graft_conv_pool_build_sel256)(gr, cr, OW, F, FP, a->lut, idx, gm, gsum);
    else
        (a->wide ? build_g512 : build_g256)(gr, cr, OW, F, FP, G, gsum);
    for (int f = 0; f < F; f++)
        sum[(size_t)K * F + f] += gsum[f];
    /* K rows in chunks of at most max_kc, as even as possible (27: AVX2
     * 4 4 4 4 4 4 3, its four FMAs 6 6 5 5 5; AVX-512 9 9 9). */
    const int max_kc = a->wide ? 12 : sel ? SEL_MAX_KC : 6;
    const int n_chunks = (K + max_kc - 1) / max_kc;
    for (int f0 = 0; f0 < FP; f0 += BW) {
        const int fw = F - f0 < BW ? F - f0 : BW;
        for (int q = 0, k0 = 0; q < n_chunks; q++) {
            const int kc = (K - k0) / (n_chunks - q) + ((K - k0) % (n_chunks - q) != 0);
            const int *off = wk->off + k0;
            if (sel)
                (a->wide ? graft_conv_pool_sels512[C == 4][kc]
                         : graft_conv_pool_sels256[C == 4][kc])(idx, gm, OW, FP, f0, bd.p,
                                                                      bd.rs, C, off, acc);
            else
                (a->wide ? chunks512 : chunks256)[kc](G, OW, FP, f0, bd.p, bd.rs, C, off, acc);
            for (int j = 0; j < kc; j++)
                add_sums(sum + (size_t)(k0 + j) * F + f0, acc + j * BW, fw);
            k0 += kc;
        }
    }
}

void graft_conv_pool_backward_weights(const graft_conv_geom *g, int filters, int n, const float *x,
                                      const float *dy, const uint8_t *code, float *dkernel,
                                      float *dbias, float *scratch)
{
    const int F = filters, C = g->c, K = g->kh * g->kw * C;
    /* Filters in blocks of two vectors (16 floats with AVX2, 32 with
     * AVX-512): G pads the last block with zeros. */
    const bool wide = F % 16 == 0 && graft_conv_pool_avx512();
    const int BW = wide ? 32 : 16;
    const bwd_args a = {
        .g = g,
        .F = F,
        .FP = (F + BW - 1) / BW * BW,
        .BW = BW,
        .K = K,
        .wide = wide,
        /* Code 4 has no gradient: any lane does. */
        .lut = C == 4 ? _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0)
                      : _mm256_setr_epi32(0, C, 4, 4 + C, 0, 0, 0, 0),
        .x = x,
        .x_end = x + (size_t)n * g->h * g->w * C,
        .dy = dy,
        .code = code,
    };
    const size_t per_thread = per_thread_floats(g, F), bs = sums_floats(g, F) / 2;
    const long rows = (long)n * (g->oh / 2);
    const int nb = rows < sum_blocks(g, F) ? (int)rows : sum_blocks(g, F);
    double *sums = (double *)(void *)(scratch + (size_t)graft_threads() * per_thread);
#pragma omp parallel num_threads(graft_threads())
    {
        float *tmp = scratch + (size_t)omp_get_thread_num() * per_thread;
        bwd_work wk = {.G = tmp, .band = tmp + g_floats(g, F), .off_rs = 0};
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < nb; b++) {
            double *sum = sums + (size_t)b * bs;
            memset(sum, 0, (size_t)(K + 1) * F * sizeof(double));
            const long r1 = rows * (b + 1) / nb;
            for (long r = rows * b / nb; r < r1; r++)
                row_backward(&a, &wk, r, r1, sum);
        }
    }
    /* The blocks' sums, added in block order. */
    for (int k = 0; k <= K; k++) {
        float *d = k < K ? dkernel + (size_t)k * F : dbias;
        if (!d) continue;
        for (int f = 0; f < F; f++) {
            double s = 0;
            for (int b = 0; b < nb; b++)
                s += sums[(size_t)b * bs + (size_t)k * F + f];
            d[f] = (float)s;
        }
    }
}

#endif /* __AVX2__ */
