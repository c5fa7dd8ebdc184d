/*
 * Conv2D + ReLU + MaxPooling2D(2x2, stride 2, 'valid') as one pass, for
 * convolutions over a few input channels: the first layer of most small CNNs,
 * reading the RGB image. Its output is the largest tensor of such a network
 * (the lesson's: 32 x 148 x 148 x 32 floats, 90 MB per batch) and only the
 * pool reads it, so it is never written: the four outputs of each 2x2 window
 * are computed in registers and pooled there. For the backward pass the pool
 * keeps one byte per output naming the cell of its window that won (4 when
 * the maximum was not positive: the ReLU then passes no gradient), and the
 * kernel gradient is summed from the pooled gradient directly, without the
 * 4x larger, mostly zero, gradient of the convolution's output.
 *
 * oneDNN's kernels are built for many input channels; with three, each
 * output vector costs kh*kw*3 broadcast-FMAs however it is arranged, and the
 * direct loop here keeps the FMA units busy without the output's memory
 * traffic. Needs AVX2 and FMA (graft_conv_pool_fits says no without).
 */
#include "core/core.h"
#include "kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

bool graft_conv_pool_fits(const graft_conv_geom *g, int filters)
{
#ifdef __AVX2__
    return g->c <= GRAFT_CONV_POOL_MAX_C && g->sh == 1 && g->sw == 1 && filters % 8 == 0 &&
           filters <= GRAFT_CONV_POOL_MAX_F && g->oh >= 2 && g->ow >= 2 && g->kh <= 11 &&
           g->kw <= 11;
#else
    (void)g;
    (void)filters;
    return false;
#endif
}

#ifdef __AVX2__

/* The input rows one row of pooled outputs reads: kh + 1 rows of
 * bw = 2 * (ow / 2) + kw - 1 pixels, the padding as zeros. */
typedef struct {
    const float *p; /* the band's first pixel */
    size_t rs;      /* floats from one row to the next */
} band;

static size_t band_floats(const graft_conv_geom *g)
{
    return (size_t)(g->kh + 1) * (size_t)(2 * (g->ow / 2) + g->kw - 1) * (size_t)g->c;
}

/* Points into x where the band lies inside the image (no copy), else copies
 * it into `tmp` with zeros for the padding. */
static band get_band(const graft_conv_geom *g, const float *x, int s, int py, float *tmp)
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

/* Packs eight int32 lanes (0..4) into eight bytes. */
static inline void store_codes8(uint8_t *dst, __m256i k)
{
    __m128i lo = _mm256_castsi256_si128(k), hi = _mm256_extracti128_si256(k, 1);
    __m128i w16 = _mm_packs_epi32(lo, hi);
    _mm_storel_epi64((__m128i *)(void *)dst, _mm_packus_epi16(w16, w16));
}

/* ReLU (NaN stays: MAXPS returns its second operand when one is NaN) and the
 * 2x2 maximum with the pool's comparisons: the first maximum in window order
 * wins, and a NaN never replaces. MAXPS(x, m) is exactly "x > m ? x : m",
 * that comparison's blend in one instruction; the winner is the last cell
 * whose comparison held, the largest of (held ? cell : 0). Only the first
 * cell needs the ReLU: the maximum so far is then >= 0 or NaN, which a later
 * cell exceeds exactly when it is positive, whether or not ReLU'd. */
static inline __m256 relu_max4(__m256 a, __m256 b, __m256 c, __m256 d, __m256i *code)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 m = _mm256_max_ps(z, a);
    __m256i k, gt;
    gt = _mm256_castps_si256(_mm256_cmp_ps(b, m, _CMP_GT_OQ));
    m = _mm256_max_ps(b, m);
    k = _mm256_and_si256(gt, _mm256_set1_epi32(1));
    gt = _mm256_castps_si256(_mm256_cmp_ps(c, m, _CMP_GT_OQ));
    m = _mm256_max_ps(c, m);
    k = _mm256_max_epi32(k, _mm256_and_si256(gt, _mm256_set1_epi32(2)));
    gt = _mm256_castps_si256(_mm256_cmp_ps(d, m, _CMP_GT_OQ));
    m = _mm256_max_ps(d, m);
    k = _mm256_max_epi32(k, _mm256_and_si256(gt, _mm256_set1_epi32(3)));
    /* Not positive (or NaN): the ReLU's derivative is 0 there, code 4. */
    __m256i pos = _mm256_castps_si256(_mm256_cmp_ps(m, z, _CMP_GT_OQ));
    *code = _mm256_max_epi32(k, _mm256_andnot_si256(pos, _mm256_set1_epi32(4)));
    return m;
}

/* Two vectors of codes (0..4) as 16 bytes, k0's then k1's. */
static inline void store_codes16(uint8_t *dst, __m256i k0, __m256i k1)
{
    __m256i w = _mm256_packs_epi32(k0, k1); /* k0 0-3, k1 0-3 | k0 4-7, k1 4-7 */
    w = _mm256_packus_epi16(w, w);
    w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
    _mm_storeu_si128((__m128i *)(void *)dst, _mm256_castsi256_si128(w));
}

/* One pooled output, 16 channels from f0: the window's four convolution
 * outputs as 8 accumulators (two vectors for each of the four cells). */
static inline void cell16(const float *b, size_t rs, int kh, int kwc, int C, const float *w, int F,
                          int f0, const float *bias, float *out, uint8_t *code)
{
    __m256 a0 = bias ? _mm256_loadu_ps(bias + f0) : _mm256_setzero_ps();
    __m256 a1 = bias ? _mm256_loadu_ps(bias + f0 + 8) : _mm256_setzero_ps();
    __m256 b0 = a0, b1 = a1, c0 = a0, c1 = a1, d0 = a0, d1 = a1;
    for (int ky = 0; ky < kh; ky++) {
        const float *r0 = b + (size_t)ky * rs, *r1 = r0 + rs;
        const float *wk = w + (size_t)ky * kwc * F + f0;
        for (int j = 0; j < kwc; j++, wk += F) {
            __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8), v;
            v = _mm256_broadcast_ss(r0 + j);
            a0 = _mm256_fmadd_ps(v, w0, a0);
            a1 = _mm256_fmadd_ps(v, w1, a1);
            v = _mm256_broadcast_ss(r0 + C + j);
            b0 = _mm256_fmadd_ps(v, w0, b0);
            b1 = _mm256_fmadd_ps(v, w1, b1);
            v = _mm256_broadcast_ss(r1 + j);
            c0 = _mm256_fmadd_ps(v, w0, c0);
            c1 = _mm256_fmadd_ps(v, w1, c1);
            v = _mm256_broadcast_ss(r1 + C + j);
            d0 = _mm256_fmadd_ps(v, w0, d0);
            d1 = _mm256_fmadd_ps(v, w1, d1);
        }
    }
    __m256i k0, k1;
    _mm256_storeu_ps(out + f0, relu_max4(a0, b0, c0, d0, &k0));
    _mm256_storeu_ps(out + f0 + 8, relu_max4(a1, b1, c1, d1, &k1));
    if (code) {
        store_codes8(code + f0, k0);
        store_codes8(code + f0 + 8, k1);
    }
}

/* The same for 8 channels (the last block when filters % 16 == 8). */
static inline void cell8(const float *b, size_t rs, int kh, int kwc, int C, const float *w, int F,
                         int f0, const float *bias, float *out, uint8_t *code)
{
    __m256 a0 = bias ? _mm256_loadu_ps(bias + f0) : _mm256_setzero_ps();
    __m256 b0 = a0, c0 = a0, d0 = a0;
    for (int ky = 0; ky < kh; ky++) {
        const float *r0 = b + (size_t)ky * rs, *r1 = r0 + rs;
        const float *wk = w + (size_t)ky * kwc * F + f0;
        for (int j = 0; j < kwc; j++, wk += F) {
            __m256 w0 = _mm256_loadu_ps(wk);
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(r0 + j), w0, a0);
            b0 = _mm256_fmadd_ps(_mm256_broadcast_ss(r0 + C + j), w0, b0);
            c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(r1 + j), w0, c0);
            d0 = _mm256_fmadd_ps(_mm256_broadcast_ss(r1 + C + j), w0, d0);
        }
    }
    __m256i k0;
    _mm256_storeu_ps(out + f0, relu_max4(a0, b0, c0, d0, &k0));
    if (code) store_codes8(code + f0, k0);
}

/* The convolution of P neighbouring pixels of one row (the band row r0 and
 * the kh - 1 below it), V vectors of 8 filters from f0: the bias, then the
 * kernel's K rows in order as in cell16, the input of row t at r0 + off[t]
 * (one loop over the whole kernel). P * V accumulators. */
static inline __attribute__((always_inline)) void conv_strip(const float *r0, const int *off, int K,
                                                             int C, const float *w, int F, int f0,
                                                             const float *bias, int P, int V,
                                                             __m256 acc[][2])
{
#pragma GCC unroll 12
    for (int p = 0; p < P; p++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++)
            acc[p][v] = bias ? _mm256_loadu_ps(bias + f0 + 8 * v) : _mm256_setzero_ps();
    const float *wk = w + f0;
    for (int t = 0; t < K; t++, wk += F) {
        const float *r = r0 + off[t];
        __m256 wv[2];
#pragma GCC unroll 2
        for (int v = 0; v < V; v++)
            wv[v] = _mm256_loadu_ps(wk + 8 * v);
#pragma GCC unroll 12
        for (int p = 0; p < P; p++) {
            __m256 x = _mm256_broadcast_ss(r + (size_t)p * C);
#pragma GCC unroll 2
            for (int v = 0; v < V; v++)
                acc[p][v] = _mm256_fmadd_ps(x, wv[v], acc[p][v]);
        }
    }
}

/* P / 2 windows side by side, V vectors of 8 filters from f0: the top cells
 * of all of them first, then the bottom cells, so that 12 accumulators (P =
 * 6 and V = 2, or P = 12 and V = 1) hide the FMA latency with the weights
 * and one broadcast in the other registers; cell16 holds only 8. */
#define FWD_STRIP(P, V)                                                                            \
    static void fwd_##P##_##V(const float *b, size_t rs, const int *off, int K, int C,             \
                              const float *w, int F, int f0, const float *bias, float *out,        \
                              uint8_t *code)                                                       \
    {                                                                                              \
        __m256 top[P][2], bot[P][2];                                                               \
        conv_strip(b, off, K, C, w, F, f0, bias, P, V, top);                                       \
        conv_strip(b + rs, off, K, C, w, F, f0, bias, P, V, bot);                                  \
        _Pragma("GCC unroll 6") for (int q = 0; q < (P) / 2; q++)                                  \
        {                                                                                          \
            __m256i k[2];                                                                          \
            _Pragma("GCC unroll 2") for (int v = 0; v < (V); v++)                                  \
            {                                                                                      \
                _mm256_storeu_ps(out + (size_t)q * F + f0 + 8 * v,                                 \
                                 relu_max4(top[2 * q][v], top[2 * q + 1][v], bot[2 * q][v],        \
                                           bot[2 * q + 1][v], &k[v]));                             \
            }                                                                                      \
            if (code && (V) == 2) store_codes16(code + (size_t)q * F + f0, k[0], k[1]);            \
            if (code && (V) == 1) store_codes8(code + (size_t)q * F + f0, k[0]);                   \
        }                                                                                          \
    }
FWD_STRIP(6, 2)
FWD_STRIP(4, 2)
FWD_STRIP(12, 1)
FWD_STRIP(6, 1)
FWD_STRIP(4, 1)
#undef FWD_STRIP

typedef void (*strip_fn)(const float *b, size_t rs, const int *off, int K, int C, const float *w,
                         int F, int f0, const float *bias, float *out, uint8_t *code);

/* One row of windows on the AVX2 loops: three windows at a time on 16
 * filters, six on the last 8 when F % 16 == 8; the windows left over two or
 * one at a time. off: the kernel rows' offsets in the band (K of them). */
static void row_forward256(const band *bd, const int *off, int OW, int kh, int kwc, int C,
                           const float *w, int F, const float *bias, float *o, uint8_t *k)
{
    const int K = kh * kwc;
    for (int f0 = 0; f0 < F; f0 += 16) {
        const bool two = f0 + 16 <= F; /* two vectors of 8 filters, else one */
        const strip_fn big = two ? fwd_6_2 : fwd_12_1;
        const int nb = two ? 3 : 6; /* windows per call */
        int px = 0;
        for (; px + nb <= OW; px += nb)
            big(bd->p + (size_t)2 * px * C, bd->rs, off, K, C, w, F, f0, bias, o + (size_t)px * F,
                k ? k + (size_t)px * F : NULL);
        if (!two && px + 3 <= OW) {
            fwd_6_1(bd->p + (size_t)2 * px * C, bd->rs, off, K, C, w, F, f0, bias,
                    o + (size_t)px * F, k ? k + (size_t)px * F : NULL);
            px += 3;
        }
        if (px + 2 <= OW) {
            (two ? fwd_4_2 : fwd_4_1)(bd->p + (size_t)2 * px * C, bd->rs, off, K, C, w, F, f0, bias,
                                      o + (size_t)px * F, k ? k + (size_t)px * F : NULL);
            px += 2;
        }
        if (px < OW)
            (two ? cell16 : cell8)(bd->p + (size_t)2 * px * C, bd->rs, kh, kwc, C, w, F, f0, bias,
                                   o + (size_t)px * F, k ? k + (size_t)px * F : NULL);
    }
}

#define ROUND16(v) (((v) + 15) / 16 * 16)
#define ROUND32(v) (((v) + 31) / 32 * 32)

/* Per thread: the masked gradients of one row of windows (G), then the band
 * and BAND_SLACK floats after it that the backward's table loads may read
 * (never use). After the threads' parts, the double sums of the kernel and
 * bias gradients (2 floats each) of each block of rows (sum_blocks). Every
 * part starts 64-byte aligned (the model's scratch is). */
#define BAND_SLACK 8
static size_t g_floats(const graft_conv_geom *g, int filters)
{
    return (size_t)(g->ow / 2) * 4 * (size_t)ROUND32(filters);
}
static size_t per_thread_floats(const graft_conv_geom *g, int filters)
{
    return g_floats(g, filters) + ROUND16(band_floats(g) + BAND_SLACK);
}
static size_t sums_floats(const graft_conv_geom *g, int filters)
{
    return ROUND16(2 * ((size_t)g->kh * g->kw * g->c + 1) * (size_t)filters);
}

/* The backward's rows go in blocks that the threads take as they come, so
 * that a core the machine's other work slows takes fewer; each block has
 * its sums, added in block order at the end: the same result whichever
 * thread took which. Eight blocks per thread, fewer where their sums would
 * pass 4 MiB (large kernels and many filters), never fewer than threads. */
static int sum_blocks(const graft_conv_geom *g, int filters)
{
    const int th = graft_threads();
    const size_t fit = ((size_t)1 << 20) / sums_floats(g, filters);
    return fit >= (size_t)8 * th ? 8 * th : fit > (size_t)th ? (int)fit : th;
}

/* ---------------------------------------------------------------- AVX-512
 * The same loops on 16-float vectors, for the CPUs that have them (oneDNN
 * uses them there too): twice the work per instruction, and 32 registers,
 * so two windows at a time in forward and up to 12 kernel rows in backward.
 * Chosen at run time; ONEDNN_MAX_CPU_ISA below AVX512 keeps AVX2 here too. */

#define T512 __attribute__((target("avx512f")))

bool graft_conv_pool_avx512(void)
{
    if (!__builtin_cpu_supports("avx512f")) return false;
    const char *cap = graft_env(GRAFT_ENV_ONEDNN_MAX_CPU_ISA);
    return !cap || !*cap || strncasecmp(cap, "AVX512", 6) == 0 || strcasecmp(cap, "ALL") == 0;
}

static inline T512 __m512 relu_max4_512(__m512 a, __m512 b, __m512 c, __m512 d, __m512i *code)
{
    const __m512 z = _mm512_setzero_ps();
    a = _mm512_max_ps(z, a); /* NaN stays, as with MAXPS */
    b = _mm512_max_ps(z, b);
    c = _mm512_max_ps(z, c);
    d = _mm512_max_ps(z, d);
    __m512 m = a;
    __m512i k = _mm512_setzero_si512();
    __mmask16 gt = _mm512_cmp_ps_mask(b, m, _CMP_GT_OQ);
    m = _mm512_mask_blend_ps(gt, m, b);
    k = _mm512_mask_blend_epi32(gt, k, _mm512_set1_epi32(1));
    gt = _mm512_cmp_ps_mask(c, m, _CMP_GT_OQ);
    m = _mm512_mask_blend_ps(gt, m, c);
    k = _mm512_mask_blend_epi32(gt, k, _mm512_set1_epi32(2));
    gt = _mm512_cmp_ps_mask(d, m, _CMP_GT_OQ);
    m = _mm512_mask_blend_ps(gt, m, d);
    k = _mm512_mask_blend_epi32(gt, k, _mm512_set1_epi32(3));
    *code = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(m, z, _CMP_GT_OQ), _mm512_set1_epi32(4), k);
    return m;
}

/* NC windows side by side (1 or 2), NV vectors of 16 filters from f0 (1 or
 * 2): 4 * NC * NV accumulators. */
#define FWD512(NC, NV)                                                                             \
    static T512 void fwd512_##NC##_##NV(const float *b, size_t rs, int kh, int kwc, int C,         \
                                        const float *w, int F, int f0, const float *bias,          \
                                        float *out, uint8_t *code)                                 \
    {                                                                                              \
        __m512 acc[NC * 4][NV];                                                                    \
        _Pragma("GCC unroll 8") for (int p = 0; p < NC * 4; p++)                                   \
        {                                                                                          \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                   \
            {                                                                                      \
                acc[p][v] = bias ? _mm512_loadu_ps(bias + f0 + 16 * v) : _mm512_setzero_ps();      \
            }                                                                                      \
        }                                                                                          \
        for (int ky = 0; ky < kh; ky++) {                                                          \
            const float *r0 = b + (size_t)ky * rs;                                                 \
            const float *wk = w + (size_t)ky * kwc * F + f0;                                       \
            for (int j = 0; j < kwc; j++, wk += F) {                                               \
                __m512 wv[NV];                                                                     \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                               \
                {                                                                                  \
                    wv[v] = _mm512_loadu_ps(wk + 16 * v);                                          \
                }                                                                                  \
                /* cell p of window q: row p >> 1, column 2q + (p & 1) */                          \
                _Pragma("GCC unroll 8") for (int p = 0; p < NC * 4; p++)                           \
                {                                                                                  \
                    const int q = p / 4, cell = p % 4;                                             \
                    __m512 x = _mm512_set1_ps(                                                     \
                        r0[(cell >> 1) * rs + (size_t)(2 * q + (cell & 1)) * C + j]);              \
                    _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                           \
                    {                                                                              \
                        acc[p][v] = _mm512_fmadd_ps(x, wv[v], acc[p][v]);                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 2") for (int q = 0; q < NC; q++)                                       \
        {                                                                                          \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                   \
            {                                                                                      \
                __m512i k;                                                                         \
                __m512 m = relu_max4_512(acc[4 * q][v], acc[4 * q + 1][v], acc[4 * q + 2][v],      \
                                         acc[4 * q + 3][v], &k);                                   \
                _mm512_storeu_ps(out + (size_t)q * F + f0 + 16 * v, m);                            \
                if (code)                                                                          \
                    _mm_storeu_si128((__m128i *)(void *)(code + (size_t)q * F + f0 + 16 * v),      \
                                     _mm512_cvtepi32_epi8(k));                                     \
            }                                                                                      \
        }                                                                                          \
    }
FWD512(2, 2)
FWD512(1, 2)
FWD512(2, 1)
FWD512(1, 1)
#undef FWD512

/* One row of windows, F % 16 == 0. */
static T512 void row_forward512(const band *bd, int OW, int kh, int kwc, int C, const float *w,
                                int F, const float *bias, float *o, uint8_t *k)
{
    for (int px = 0; px < OW; px += 2) {
        const float *b = bd->p + (size_t)2 * px * C;
        float *oc = o + (size_t)px * F;
        uint8_t *kc = k ? k + (size_t)px * F : NULL;
        int f0 = 0;
        if (px + 1 < OW) {
            for (; f0 + 32 <= F; f0 += 32)
                fwd512_2_2(b, bd->rs, kh, kwc, C, w, F, f0, bias, oc, kc);
            if (f0 < F) fwd512_2_1(b, bd->rs, kh, kwc, C, w, F, f0, bias, oc, kc);
        } else {
            for (; f0 + 32 <= F; f0 += 32)
                fwd512_1_2(b, bd->rs, kh, kwc, C, w, F, f0, bias, oc, kc);
            if (f0 < F) fwd512_1_1(b, bd->rs, kh, kwc, C, w, F, f0, bias, oc, kc);
        }
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

typedef void (*chunk_fn)(const float *G, int cells, int F, int f0, const float *b, size_t rs, int C,
                         const int *off, float *acc_out);
static const chunk_fn chunks512[13] = {NULL,        chunk512_1,  chunk512_2, chunk512_3, chunk512_4,
                                       chunk512_5,  chunk512_6,  chunk512_7, chunk512_8, chunk512_9,
                                       chunk512_10, chunk512_11, chunk512_12};

size_t graft_conv_pool_scratch_floats(const graft_conv_geom *g, int filters)
{
    return (size_t)graft_threads() * per_thread_floats(g, filters) +
           (size_t)sum_blocks(g, filters) * sums_floats(g, filters);
}

void graft_conv_pool_forward(const graft_conv_geom *g, int filters, int n, const float *x,
                             const float *kernel, const float *bias, float *y, uint8_t *code,
                             float *scratch)
{
    const int OH = g->oh / 2, OW = g->ow / 2, F = filters, C = g->c, kwc = g->kw * C;
    const int K = g->kh * kwc;
    const size_t per_thread = per_thread_floats(g, F);
    const long rows = (long)n * OH;
    const bool wide = F % 16 == 0 && graft_conv_pool_avx512();
#pragma omp parallel num_threads(graft_threads())
    {
        float *tmp = scratch + (size_t)omp_get_thread_num() * per_thread;
        int off[GRAFT_CONV_POOL_MAX_K];
        size_t off_rs = 0; /* the band stride off[] was made for (0: none yet) */
        /* Rows as the threads come: a core slowed by other work takes
         * fewer (rows are independent here). */
#pragma omp for schedule(dynamic, 4)
        for (long r = 0; r < rows; r++) {
            band bd = get_band(g, x, (int)(r / OH), (int)(r % OH), tmp);
            if (wide) {
                row_forward512(&bd, OW, g->kh, kwc, C, kernel, F, bias, y + (size_t)r * OW * F,
                               code ? code + (size_t)r * OW * F : NULL);
                continue;
            }
            if (bd.rs != off_rs) { /* offsets of the kernel rows within the band */
                for (int t = 0; t < K; t++)
                    off[t] = (int)((size_t)(t / kwc) * bd.rs) + t % kwc;
                off_rs = bd.rs;
            }
            row_forward256(&bd, off, OW, g->kh, kwc, C, kernel, F, bias, y + (size_t)r * OW * F,
                           code ? code + (size_t)r * OW * F : NULL);
        }
    }
}

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

/* The backward without the zeros. Each pooled output's gradient goes to one
 * cell of its window (the code's), so rather than four FMAs on the masked
 * gradients of the four cells (three of them zero), one VPERMPS picks each
 * filter's cell from a table of the four cells' inputs, and one FMA adds it
 * times the gradient: a quarter of the FMAs, one shuffle each. The sums are
 * the same, bit for bit: a masked cell added x * 0 exactly, unless x was not
 * finite (then NaN), which is why rows whose band holds an Inf or NaN take
 * the four FMAs (chunkKC, chunk512_KC) instead. */

/* Per window and filter of one row: the table index of the winning cell
 * (`lut` by code) and the gradient, 0 where no cell won; FP floats per
 * window, the padding zero. Adds the gradients to gsum, as build_g256 (in
 * the same order), 32 filters' sums in registers at a time. */
static void build_sel256(const float *gr, const uint8_t *cr, int OW, int F, int FP, __m256i lut,
                         int32_t *idx, float *gm, float *gsum)
{
    for (int f0 = 0; f0 < FP; f0 += 32) {
        __m256 s[4];
        for (int v = 0; v < 4; v++)
            s[v] = f0 + 8 * v < F ? _mm256_loadu_ps(gsum + f0 + 8 * v) : _mm256_setzero_ps();
        for (int w = 0; w < OW; w++) {
            const float *gv = gr + (size_t)w * F;
            const uint8_t *cv = cr + (size_t)w * F;
            /* The next row's, into L2 for its turn: a row's work is long
             * and its gradient spans pages that the hardware prefetcher
             * would find one at a time. */
            for (int f = f0; f < f0 + 32 && f < F; f += 16)
                _mm_prefetch((const char *)(gv + (size_t)OW * F + f), _MM_HINT_T1);
            _mm_prefetch((const char *)(cv + (size_t)OW * F + f0), _MM_HINT_T1);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                const int f = f0 + 8 * v;
                if (f >= FP) break;
                __m256 gg = _mm256_setzero_ps();
                __m256i k = _mm256_setzero_si256();
                if (f < F) {
                    k = _mm256_cvtepu8_epi32(
                        _mm_loadl_epi64((const __m128i *)(const void *)(cv + f)));
                    __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(4), k));
                    gg = _mm256_and_ps(_mm256_loadu_ps(gv + f), live);
                    s[v] = _mm256_add_ps(s[v], gg);
                }
                _mm256_store_ps(gm + (size_t)w * FP + f, gg);
                _mm256_store_si256((__m256i *)(void *)(idx + (size_t)w * FP + f),
                                   _mm256_permutevar8x32_epi32(lut, k));
            }
        }
        for (int v = 0; v < 4; v++)
            if (f0 + 8 * v < F) _mm256_storeu_ps(gsum + f0 + 8 * v, s[v]);
    }
}

/* The table of kernel row k for the window at x: its four cells' inputs
 * x[off], x[off + C], x[rs + off], x[rs + off + C] at the lanes `lut` names.
 * Three channels or fewer: lanes 0, C, 4, 4 + C of the two rows' four floats
 * each; four: lanes 0, 4 of one row and 1, 5 of the other. Reads up to 3
 * floats past the last cell. */
static inline __attribute__((always_inline)) __m256 cell_table(const float *a, size_t rs, int c4)
{
    if (c4) return _mm256_blend_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(a + rs - 1), 0x22);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a)), _mm_loadu_ps(a + rs), 1);
}

/* As chunkKC, from the tables: dW[k0 + j][f0 .. f0 + 16) for KC kernel rows,
 * the window's selected inputs times its gradients. */
#define SEL_FN(KC, C4)                                                                             \
    static void sel##KC##_##C4(const int32_t *idx, const float *gm, int OW, int FP, int f0,        \
                               const float *b, size_t rs, int C, const int *off, float *acc_out)   \
    {                                                                                              \
        __m256 s0[KC], s1[KC];                                                                     \
        _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++) s0[j] = s1[j] = _mm256_setzero_ps();  \
        for (int w = 0; w < OW; w++) {                                                             \
            const float *xw = b + (size_t)2 * w * C;                                               \
            const size_t o = (size_t)w * FP + f0;                                                  \
            const __m256i i0 = _mm256_load_si256((const __m256i *)(const void *)(idx + o));        \
            const __m256i i1 = _mm256_load_si256((const __m256i *)(const void *)(idx + o + 8));    \
            const __m256 g0 = _mm256_load_ps(gm + o), g1 = _mm256_load_ps(gm + o + 8);             \
            _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++)                                   \
            {                                                                                      \
                const __m256 t = cell_table(xw + off[j], rs, C4);                                  \
                s0[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t, i0), g0, s0[j]);               \
                s1[j] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(t, i1), g1, s1[j]);               \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int j = 0; j < KC; j++)                                       \
        {                                                                                          \
            _mm256_storeu_ps(acc_out + (size_t)j * 16, s0[j]);                                     \
            _mm256_storeu_ps(acc_out + (size_t)j * 16 + 8, s1[j]);                                 \
        }                                                                                          \
    }
SEL_FN(4, 0)
SEL_FN(3, 0)
SEL_FN(2, 0)
SEL_FN(1, 0)
SEL_FN(4, 1)
SEL_FN(3, 1)
SEL_FN(2, 1)
SEL_FN(1, 1)
#undef SEL_FN

typedef void (*sel_fn)(const int32_t *idx, const float *gm, int OW, int FP, int f0, const float *b,
                       size_t rs, int C, const int *off, float *acc_out);
/* By channels (four or fewer) and number of kernel rows: with 2 * KC
 * accumulators, the two gradients and indices and a table, 4 rows fill the
 * registers. */
#define SEL_MAX_KC 4
static const sel_fn sels256[2][SEL_MAX_KC + 1] = {{NULL, sel1_0, sel2_0, sel3_0, sel4_0},
                                                  {NULL, sel1_1, sel2_1, sel3_1, sel4_1}};

/* The same on AVX-512: 16 filters per shuffle and FMA, 32 per block, up to
 * 12 kernel rows in the 32 registers. The table is cell_table's (its upper
 * half never picked). */
static T512 void build_sel512(const float *gr, const uint8_t *cr, int OW, int F, int FP,
                              __m256i lut8, int32_t *idx, float *gm, float *gsum)
{
    const __m512i lut = _mm512_castsi256_si512(lut8);
    for (int f0 = 0; f0 < FP; f0 += 32) {
        __m512 s[2];
        for (int v = 0; v < 2; v++)
            s[v] = f0 + 16 * v < F ? _mm512_loadu_ps(gsum + f0 + 16 * v) : _mm512_setzero_ps();
        for (int w = 0; w < OW; w++) {
            const float *gv = gr + (size_t)w * F;
            const uint8_t *cv = cr + (size_t)w * F;
            for (int f = f0; f < f0 + 32 && f < F; f += 16)
                _mm_prefetch((const char *)(gv + (size_t)OW * F + f), _MM_HINT_T1);
            _mm_prefetch((const char *)(cv + (size_t)OW * F + f0), _MM_HINT_T1);
            for (int v = 0; v < 2; v++) {
                const int f = f0 + 16 * v;
                __m512 gg = _mm512_setzero_ps();
                __m512i k = _mm512_setzero_si512();
                if (f < F) {
                    k = _mm512_cvtepu8_epi32(
                        _mm_loadu_si128((const __m128i *)(const void *)(cv + f)));
                    gg = _mm512_maskz_mov_ps(_mm512_cmplt_epi32_mask(k, _mm512_set1_epi32(4)),
                                             _mm512_loadu_ps(gv + f));
                    s[v] = _mm512_add_ps(s[v], gg);
                }
                _mm512_store_ps(gm + (size_t)w * FP + f, gg);
                _mm512_store_si512((void *)(idx + (size_t)w * FP + f),
                                   _mm512_permutexvar_epi32(k, lut));
            }
        }
        for (int v = 0; v < 2; v++)
            if (f0 + 16 * v < F) _mm512_storeu_ps(gsum + f0 + 16 * v, s[v]);
    }
}

#define SEL512(KC, C4)                                                                             \
    static T512 void sel512_##KC##_##C4(const int32_t *idx, const float *gm, int OW, int FP,       \
                                        int f0, const float *b, size_t rs, int C, const int *off,  \
                                        float *acc_out)                                            \
    {                                                                                              \
        __m512 s0[KC], s1[KC];                                                                     \
        _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++) s0[j] = s1[j] = _mm512_setzero_ps(); \
        for (int w = 0; w < OW; w++) {                                                             \
            const float *xw = b + (size_t)2 * w * C;                                               \
            const size_t o = (size_t)w * FP + f0;                                                  \
            const __m512i i0 = _mm512_load_si512((const void *)(idx + o));                         \
            const __m512i i1 = _mm512_load_si512((const void *)(idx + o + 16));                    \
            const __m512 g0 = _mm512_load_ps(gm + o), g1 = _mm512_load_ps(gm + o + 16);            \
            _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++)                                  \
            {                                                                                      \
                const __m512 t = _mm512_castps256_ps512(cell_table(xw + off[j], rs, C4));          \
                s0[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i0, t), g0, s0[j]);                  \
                s1[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i1, t), g1, s1[j]);                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (int j = 0; j < KC; j++)                                      \
        {                                                                                          \
            _mm512_storeu_ps(acc_out + (size_t)j * 32, s0[j]);                                     \
            _mm512_storeu_ps(acc_out + (size_t)j * 32 + 16, s1[j]);                                \
        }                                                                                          \
    }
#define SEL512_BOTH(KC) SEL512(KC, 0) SEL512(KC, 1)
SEL512_BOTH(12)
SEL512_BOTH(11)
SEL512_BOTH(10)
SEL512_BOTH(9)
SEL512_BOTH(8)
SEL512_BOTH(7)
SEL512_BOTH(6)
SEL512_BOTH(5)
SEL512_BOTH(4)
SEL512_BOTH(3)
SEL512_BOTH(2)
SEL512_BOTH(1)
#undef SEL512_BOTH
#undef SEL512

static const sel_fn sels512[2][13] = {
    {NULL, sel512_1_0, sel512_2_0, sel512_3_0, sel512_4_0, sel512_5_0, sel512_6_0, sel512_7_0,
     sel512_8_0, sel512_9_0, sel512_10_0, sel512_11_0, sel512_12_0},
    {NULL, sel512_1_1, sel512_2_1, sel512_3_1, sel512_4_1, sel512_5_1, sel512_6_1, sel512_7_1,
     sel512_8_1, sel512_9_1, sel512_10_1, sel512_11_1, sel512_12_1}};

/* Into L2: the two image rows that the band of pooled row py has and the
 * one above it has not (x is read only here, each row twice). */
static void prefetch_next_band(const graft_conv_geom *g, const float *x, int s, int py)
{
    for (int y = 2 * py - g->pad_top + g->kh - 1; y <= 2 * py - g->pad_top + g->kh; y++) {
        if (y < 0 || y >= g->h) continue;
        const float *row = x + ((size_t)s * g->h + y) * g->w * g->c;
        for (int i = 0; i < g->w * g->c; i += 16)
            _mm_prefetch((const char *)(row + i), _MM_HINT_T1);
    }
}

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
    if (r + 1 < r1) prefetch_next_band(g, a->x, (int)((r + 1) / OH), (int)((r + 1) % OH));
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
        (a->wide ? build_sel512 : build_sel256)(gr, cr, OW, F, FP, a->lut, idx, gm, gsum);
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
                (a->wide ? sels512[C == 4][kc] : sels256[C == 4][kc])(idx, gm, OW, FP, f0, bd.p,
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

#else /* no AVX2: graft_conv_pool_fits is false and these are never called */

bool graft_conv_pool_avx512(void)
{
    return false;
}

size_t graft_conv_pool_scratch_floats(const graft_conv_geom *g, int filters)
{
    (void)g;
    (void)filters;
    return 0;
}
void graft_conv_pool_forward(const graft_conv_geom *g, int filters, int n, const float *x,
                             const float *kernel, const float *bias, float *y, uint8_t *code,
                             float *scratch)
{
}
void graft_conv_pool_backward_weights(const graft_conv_geom *g, int filters, int n, const float *x,
                                      const float *dy, const uint8_t *code, float *dkernel,
                                      float *dbias, float *scratch)
{
}

#endif
