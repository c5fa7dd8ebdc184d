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
#include "internal.h"
#include "kernels/kernels.h"

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
 * wins, and a NaN never replaces. */
static inline __m256 relu_max4(__m256 a, __m256 b, __m256 c, __m256 d, __m256i *code)
{
    const __m256 z = _mm256_setzero_ps();
    a = _mm256_max_ps(z, a);
    b = _mm256_max_ps(z, b);
    c = _mm256_max_ps(z, c);
    d = _mm256_max_ps(z, d);
    __m256 m = a, k = z, gt;
    gt = _mm256_cmp_ps(b, m, _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, b, gt);
    k = _mm256_blendv_ps(k, _mm256_set1_ps(1), gt);
    gt = _mm256_cmp_ps(c, m, _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, c, gt);
    k = _mm256_blendv_ps(k, _mm256_set1_ps(2), gt);
    gt = _mm256_cmp_ps(d, m, _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, d, gt);
    k = _mm256_blendv_ps(k, _mm256_set1_ps(3), gt);
    /* Not positive (or NaN): the ReLU's derivative is 0 there. */
    k = _mm256_blendv_ps(_mm256_set1_ps(4), k, _mm256_cmp_ps(m, z, _CMP_GT_OQ));
    *code = _mm256_cvttps_epi32(k);
    return m;
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

#define ROUND16(v) (((v) + 15) / 16 * 16)
#define ROUND32(v) (((v) + 31) / 32 * 32)

/* Per thread: the double sums of the kernel and bias gradients (2 floats
 * each), the masked gradients of one row of windows (G), then the band. Every
 * part starts 64-byte aligned (the model's scratch is). */
static size_t sums_floats(const graft_conv_geom *g, int filters)
{
    return ROUND16(2 * ((size_t)g->kh * g->kw * g->c + 1) * (size_t)filters);
}
static size_t g_floats(const graft_conv_geom *g, int filters)
{
    return (size_t)(g->ow / 2) * 4 * (size_t)ROUND32(filters);
}
static size_t per_thread_floats(const graft_conv_geom *g, int filters)
{
    return sums_floats(g, filters) + g_floats(g, filters) + ROUND16(band_floats(g));
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
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
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
    return (size_t)graft_threads() * per_thread_floats(g, filters);
}

void graft_conv_pool_forward(const graft_conv_geom *g, int filters, int n, const float *x,
                             const float *kernel, const float *bias, float *y, uint8_t *code,
                             float *scratch)
{
    const int OH = g->oh / 2, OW = g->ow / 2, F = filters, C = g->c, kwc = g->kw * C;
    const size_t per_thread = per_thread_floats(g, F);
    const long rows = (long)n * OH;
    const bool wide = F % 16 == 0 && graft_conv_pool_avx512();
#pragma omp parallel num_threads(graft_threads())
    {
        float *tmp = scratch + (size_t)omp_get_thread_num() * per_thread;
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++) {
            band bd = get_band(g, x, (int)(r / OH), (int)(r % OH), tmp);
            if (wide) {
                row_forward512(&bd, OW, g->kh, kwc, C, kernel, F, bias, y + (size_t)r * OW * F,
                               code ? code + (size_t)r * OW * F : NULL);
                continue;
            }
            for (int px = 0; px < OW; px++) {
                const float *b = bd.p + (size_t)2 * px * C;
                float *o = y + ((size_t)r * OW + px) * F;
                uint8_t *k = code ? code + ((size_t)r * OW + px) * F : NULL;
                int f0 = 0;
                for (; f0 + 16 <= F; f0 += 16)
                    cell16(b, bd.rs, g->kh, kwc, C, kernel, F, f0, bias, o, k);
                if (f0 < F) cell8(b, bd.rs, g->kh, kwc, C, kernel, F, f0, bias, o, k);
            }
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

void graft_conv_pool_backward_weights(const graft_conv_geom *g, int filters, int n, const float *x,
                                      const float *dy, const uint8_t *code, float *dkernel,
                                      float *dbias, float *scratch)
{
    const int OH = g->oh / 2, OW = g->ow / 2, F = filters, C = g->c, kwc = g->kw * C;
    const int K = g->kh * kwc;
    /* Filters in blocks of two vectors (16 floats with AVX2, 32 with
     * AVX-512): G pads the last block with zeros. */
    const bool wide = F % 16 == 0 && graft_conv_pool_avx512();
    const int BW = wide ? 32 : 16, FP = (F + BW - 1) / BW * BW, max_kc = wide ? 12 : 6;
    const size_t per_thread = per_thread_floats(g, F);
    const long rows = (long)n * OH;
    int used = 1;
#pragma omp parallel num_threads(graft_threads())
    {
        const int t = omp_get_thread_num(), nth = omp_get_num_threads();
        if (t == 0) used = nth;
        float *tmp = scratch + (size_t)t * per_thread;
        double *sum = (double *)(void *)tmp; /* (K + 1) x F: the kernel's rows, then the bias */
        float *G = tmp + sums_floats(g, F);  /* OW x 4 x FP */
        float *bandbuf = G + g_floats(g, F);
        float acc[12 * 32], gsum[GRAFT_CONV_POOL_MAX_F];
        memset(sum, 0, (size_t)(K + 1) * F * sizeof(double));
        int off[GRAFT_CONV_POOL_MAX_K] = {0};
        long r0 = rows * t / nth, r1 = rows * (t + 1) / nth;
        size_t off_rs = 0; /* the band stride off[] was made for (0: none yet) */
        for (long r = r0; r < r1; r++) {
            band bd = get_band(g, x, (int)(r / OH), (int)(r % OH), bandbuf);
            if (off_rs == 0 || bd.rs != off_rs) { /* offsets of the kernel rows within the band */
                for (int k = 0; k < K; k++)
                    off[k] = (int)((size_t)(k / kwc) * bd.rs) + k % kwc;
                off_rs = bd.rs;
            }
            /* G: the pooled gradient routed to the cell that won, per cell. */
            const float *gr = dy + (size_t)r * OW * F;
            const uint8_t *cr = code + (size_t)r * OW * F;
            memset(gsum, 0, sizeof(float) * (size_t)F);
            if (wide)
                build_g512(gr, cr, OW, F, FP, G, gsum);
            else
                build_g256(gr, cr, OW, F, FP, G, gsum);
            for (int f = 0; f < F; f++)
                sum[(size_t)K * F + f] += gsum[f];
            for (int f0 = 0; f0 < FP; f0 += BW) {
                const int fw = F - f0 < BW ? F - f0 : BW;
                /* K rows in chunks of at most max_kc, as even as possible
                 * (27 with AVX2: 6 6 5 5 5; with AVX-512: 9 9 9). */
                const int n_chunks = (K + max_kc - 1) / max_kc;
                for (int q = 0, k0 = 0; q < n_chunks; q++) {
                    const int kc = (K - k0) / (n_chunks - q) + ((K - k0) % (n_chunks - q) != 0);
                    (wide ? chunks512 : chunks256)[kc](G, OW, FP, f0, bd.p, bd.rs, C, off + k0,
                                                       acc);
                    for (int j = 0; j < kc; j++)
                        for (int f = 0; f < fw; f++)
                            sum[(size_t)(k0 + j) * F + f0 + f] += acc[j * BW + f];
                    k0 += kc;
                }
            }
        }
    }
    /* The threads' sums, added in thread order. */
    for (int k = 0; k <= K; k++) {
        float *d = k < K ? dkernel + (size_t)k * F : dbias;
        if (!d) continue;
        for (int f = 0; f < F; f++) {
            double s = 0;
            for (int t = 0; t < used; t++)
                s += ((const double *)(const void *)(scratch +
                                                     (size_t)t * per_thread))[(size_t)k * F + f];
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
