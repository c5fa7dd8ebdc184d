/*
 * The forward pass of Conv2D + ReLU + MaxPooling2D in one (conv_pool.c says
 * why): the four convolution outputs of each 2x2 window are computed in
 * registers and pooled there, with one byte per pooled output naming the
 * cell that won, for the backward pass. The AVX2 loops, then the same on
 * AVX-512, and the row-parallel driver that picks between them.
 */
#include "kernels/conv_pool.h"

#include <omp.h>

#ifdef __AVX2__

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

/* ---------------------------------------------------------------- AVX-512 */

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

#endif /* __AVX2__ */
