/*
 * The depthwise convolution (depth multiplier 1) of fused inference steps,
 * one output row at a time over rows the caller holds in cache, each output
 * finished by the step's epilogue in its register. Channels are the vector
 * lanes. The outputs whose taps all lie inside the row go in blocks of up
 * to eight, as even as they come, whose sums stay in registers while each
 * tap's kernel vector is loaded once for all of them (one FMA chain per
 * output in flight, not one waiting on the last's latency), each block
 * through all channel blocks before the next, so that the input is read in
 * memory order; an output near the row's edges goes alone, four channel
 * blocks at a time. A 3x3 kernel's blocks hold its nine vectors in
 * registers and, at stride 1, load each input vector once for the outputs
 * that share it.
 *
 * The whole-tensor passes below (graft_dw_forward, graft_dw_backward) are
 * what DepthwiseConv2D and a Conv2D with groups = channels = filters run.
 *
 * Every output is one FMA chain over the taps in (ky, kx) order starting
 * from zero, padding taps skipped, the same for AVX2, AVX-512 and the
 * scalar path: the bits do not depend on the ISA or on how rows are split.
 */
#include "core/core.h"
#include "kernels/kernels.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

static inline float epi_one(const graft_kernel_epi *e, int c, float v)
{
    if (e->bias) v = v + e->bias[c];
    if (e->mean) v = (v - e->mean[c]) * e->scale[c] + e->shift[c];
    if (e->clamp) v = v < e->lo ? e->lo : (v > e->hi ? e->hi : v);
    return v;
}

/* Channels [c0, C) of the row. */
static void row_scalar(const float *const *in, int w, int C, int c0, int kh, int kw, int sw,
                       int pad_left, int ow, const float *kernel, const graft_kernel_epi *e,
                       float *out)
{
    for (int ox = 0; ox < ow; ox++) {
        const int ix0 = ox * sw - pad_left;
        for (int c = c0; c < C; c++) {
            float acc = 0;
            for (int ky = 0; ky < kh; ky++) {
                if (!in[ky]) continue;
                for (int kx = 0; kx < kw; kx++) {
                    const int ix = ix0 + kx;
                    if (ix < 0 || ix >= w) continue;
                    acc = fmaf(in[ky][(size_t)ix * C + c], kernel[(size_t)(ky * kw + kx) * C + c], acc);
                }
            }
            out[(size_t)ox * C + c] = epi_one(e, c, acc);
        }
    }
}

#ifdef __AVX2__

#define T256 __attribute__((target("avx2,fma")))
#define T512 __attribute__((target("avx512f,avx2,fma")))

/* Outputs [*ox0, *ox1) of a row: those whose kw taps all lie inside [0, w). */
static void inside(int w, int kw, int sw, int pad_left, int ow, int *ox0, int *ox1)
{
    int a = (pad_left + sw - 1) / sw;
    int b = w - kw + pad_left >= 0 ? (w - kw + pad_left) / sw + 1 : 0;
    if (b > ow) b = ow;
    if (a > b) a = b;
    *ox0 = a, *ox1 = b;
}

/* Outputs finished together by the blocked loops (at most). */
#define OB 8

/* Output block b of the row's nblk: as even as they come (a row of 9 goes
 * as 5 and 4, not 8 and 1), so that short rows keep several chains. */
static inline void block_of(int ow, int nblk, int b, int *ox, int *nb)
{
    *ox = (int)((long)ow * b / nblk);
    *nb = (int)((long)ow * (b + 1) / nblk) - *ox;
}

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The epilogue of a block of channels, its vectors loaded once for all the
 * outputs that share them: a finish that read e's arrays itself would read
 * them again after every store (the stores may alias them). */
typedef struct {
    bool bias, bn, clamp;
    __m256 b, mean, scale, shift, lo, hi;
} epi256;

/* Channels [c, c + 8). */
static T256 ALWAYS_INLINE epi256 epi256_at(const graft_kernel_epi *e, int c)
{
    epi256 p = {.bias = e->bias != NULL, .bn = e->mean != NULL, .clamp = e->clamp};
    p.b = p.bias ? _mm256_loadu_ps(e->bias + c) : _mm256_setzero_ps();
    p.mean = p.bn ? _mm256_loadu_ps(e->mean + c) : _mm256_setzero_ps();
    p.scale = p.bn ? _mm256_loadu_ps(e->scale + c) : _mm256_setzero_ps();
    p.shift = p.bn ? _mm256_loadu_ps(e->shift + c) : _mm256_setzero_ps();
    p.lo = _mm256_set1_ps(e->lo);
    p.hi = _mm256_set1_ps(e->hi);
    return p;
}

/* The epilogue on v, stored at dst. */
static T256 ALWAYS_INLINE void finish256(const epi256 *p, __m256 v, float *dst)
{
    if (p->bias) v = _mm256_add_ps(v, p->b);
    if (p->bn) v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, p->mean), p->scale), p->shift);
    if (p->clamp) v = _mm256_min_ps(p->hi, _mm256_max_ps(p->lo, v));
    _mm256_storeu_ps(dst, v);
}

/* Output ox alone (near the row's edges) over channels [0, C8): its taps
 * inside the row, four channel blocks at a time where there are four. */
static T256 void one256(const float *const *in, int w, int C, int C8, int kh, int kw, int sw,
                        int pad_left, int ox, const float *kernel, const graft_kernel_epi *e,
                        float *out)
{
    const int ix0 = ox * sw - pad_left;
    const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = w - ix0 < kw ? w - ix0 : kw;
    float *o = out + (size_t)ox * C;
    int c = 0;
    for (; c + 32 <= C8; c += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int ky = 0; ky < kh; ky++) {
            if (!in[ky]) continue;
            for (int kx = kx0; kx < kx1; kx++) {
                const float *x = in[ky] + (size_t)(ix0 + kx) * C + c;
                const float *k = kernel + (size_t)(ky * kw + kx) * C + c;
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(k), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), _mm256_loadu_ps(k + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(k + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), _mm256_loadu_ps(k + 24), a3);
            }
        }
        const epi256 p0 = epi256_at(e, c), p1 = epi256_at(e, c + 8), p2 = epi256_at(e, c + 16),
                     p3 = epi256_at(e, c + 24);
        finish256(&p0, a0, o + c);
        finish256(&p1, a1, o + c + 8);
        finish256(&p2, a2, o + c + 16);
        finish256(&p3, a3, o + c + 24);
    }
    for (; c < C8; c += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int ky = 0; ky < kh; ky++) {
            if (!in[ky]) continue;
            for (int kx = kx0; kx < kx1; kx++)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(in[ky] + (size_t)(ix0 + kx) * C + c),
                                    _mm256_loadu_ps(kernel + (size_t)(ky * kw + kx) * C + c), a);
        }
        const epi256 p = epi256_at(e, c);
        finish256(&p, a, o + c);
    }
}

/* The nb outputs from ox, all of whose taps lie inside the row, over
 * channels [0, C8) eight at a time (nb FMA chains in flight), each tap's
 * kernel vector loaded once for all nb. */
static T256 ALWAYS_INLINE void block256(const float *const *in, int C, int C8, int kh, int kw,
                                        int sw, int pad_left, int ox, const int nb,
                                        const float *kernel, const graft_kernel_epi *e, float *out)
{
    const size_t step = (size_t)sw * C;
    for (int c = 0; c < C8; c += 8) {
        __m256 a[OB];
        for (int o = 0; o < nb; o++) a[o] = _mm256_setzero_ps();
        for (int ky = 0; ky < kh; ky++) {
            if (!in[ky]) continue;
            const float *x = in[ky] + (size_t)(ox * sw - pad_left) * C + c;
            const float *k = kernel + (size_t)ky * kw * C + c;
            for (int kx = 0; kx < kw; kx++) {
                const __m256 kv = _mm256_loadu_ps(k + (size_t)kx * C);
                const float *xk = x + (size_t)kx * C;
#pragma GCC unroll 8
                for (int o = 0; o < nb; o++)
                    a[o] = _mm256_fmadd_ps(_mm256_loadu_ps(xk + o * step), kv, a[o]);
            }
        }
        const epi256 p = epi256_at(e, c);
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) finish256(&p, a[o], out + (size_t)(ox + o) * C + c);
    }
}

/* block256 with nb a constant, so that the sums stay in registers. */
static T256 void blocks256(const float *const *in, int C, int C8, int kh, int kw, int sw,
                           int pad_left, int ox, int nb, const float *kernel,
                           const graft_kernel_epi *e, float *out)
{
#define B256(N)                                                                                    \
    case N: block256(in, C, C8, kh, kw, sw, pad_left, ox, N, kernel, e, out); break;
    switch (nb) { B256(1) B256(2) B256(3) B256(4) B256(5) B256(6) B256(7) B256(8) default: break; }
#undef B256
}

/* Channels [0, C8) (C8: the multiple of 8 below C, returned) as row512 does
 * them, eight channels a vector; the caller does the rest. */
static T256 int row256(const float *const *in, int w, int C, int kh, int kw, int sw, int pad_left,
                       int ow, const float *kernel, const graft_kernel_epi *e, float *out)
{
    const int C8 = C & ~7;
    if (C8 == 0) return 0;
    int bx0, bx1, ox, nb;
    inside(w, kw, sw, pad_left, ow, &bx0, &bx1);
    for (ox = 0; ox < bx0; ox++) one256(in, w, C, C8, kh, kw, sw, pad_left, ox, kernel, e, out);
    const int nblk = (bx1 - bx0 + OB - 1) / OB;
    for (int b = 0; b < nblk; b++) {
        block_of(bx1 - bx0, nblk, b, &ox, &nb);
        blocks256(in, C, C8, kh, kw, sw, pad_left, bx0 + ox, nb, kernel, e, out);
    }
    for (ox = bx1; ox < ow; ox++) one256(in, w, C, C8, kh, kw, sw, pad_left, ox, kernel, e, out);
    return C8;
}

/* epi256 at AVX-512's width: channel block c, its lanes past C masked (mk). */
typedef struct {
    bool bias, bn, clamp;
    __mmask16 mk;
    __m512 b, mean, scale, shift, lo, hi;
} epi512;

static T512 ALWAYS_INLINE epi512 epi512_at(const graft_kernel_epi *e, int c, __mmask16 mk)
{
    epi512 p = {.bias = e->bias != NULL, .bn = e->mean != NULL, .clamp = e->clamp, .mk = mk};
    p.b = p.bias ? _mm512_maskz_loadu_ps(mk, e->bias + c) : _mm512_setzero_ps();
    p.mean = p.bn ? _mm512_maskz_loadu_ps(mk, e->mean + c) : _mm512_setzero_ps();
    p.scale = p.bn ? _mm512_maskz_loadu_ps(mk, e->scale + c) : _mm512_setzero_ps();
    p.shift = p.bn ? _mm512_maskz_loadu_ps(mk, e->shift + c) : _mm512_setzero_ps();
    p.lo = _mm512_set1_ps(e->lo);
    p.hi = _mm512_set1_ps(e->hi);
    return p;
}

static T512 ALWAYS_INLINE void finish512(const epi512 *p, __m512 v, float *dst)
{
    if (p->bias) v = _mm512_add_ps(v, p->b);
    if (p->bn) v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, p->mean), p->scale), p->shift);
    if (p->clamp) v = _mm512_min_ps(p->hi, _mm512_max_ps(p->lo, v));
    _mm512_mask_storeu_ps(dst, p->mk, v);
}

static inline __mmask16 mask16(int C, int c)
{
    return C - c >= 16 ? 0xffff : C - c > 0 ? (__mmask16)((1u << (C - c)) - 1) : 0;
}

/* Output ox alone (near the row's edges): its taps inside the row, four
 * channel blocks at a time (four FMA chains in flight). */
static T512 void one512(const float *const *in, int w, int C, int kh, int kw, int sw, int pad_left,
                        int ox, const float *kernel, const graft_kernel_epi *e, float *out)
{
    const int ix0 = ox * sw - pad_left;
    const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = w - ix0 < kw ? w - ix0 : kw;
    for (int c = 0; c < C; c += 64) {
        const __mmask16 m0 = mask16(C, c), m1 = mask16(C, c + 16), m2 = mask16(C, c + 32),
                        m3 = mask16(C, c + 48);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int ky = 0; ky < kh; ky++) {
            if (!in[ky]) continue;
            for (int kx = kx0; kx < kx1; kx++) {
                const float *x = in[ky] + (size_t)(ix0 + kx) * C + c;
                const float *k = kernel + (size_t)(ky * kw + kx) * C + c;
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, x), _mm512_maskz_loadu_ps(m0, k),
                                     a0);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, x + 16),
                                     _mm512_maskz_loadu_ps(m1, k + 16), a1);
                a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m2, x + 32),
                                     _mm512_maskz_loadu_ps(m2, k + 32), a2);
                a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m3, x + 48),
                                     _mm512_maskz_loadu_ps(m3, k + 48), a3);
            }
        }
        float *o = out + (size_t)ox * C;
        const epi512 p0 = epi512_at(e, c, m0);
        finish512(&p0, a0, o + c);
        if (m1) {
            const epi512 p = epi512_at(e, c + 16, m1);
            finish512(&p, a1, o + c + 16);
        }
        if (m2) {
            const epi512 p = epi512_at(e, c + 32, m2);
            finish512(&p, a2, o + c + 32);
        }
        if (m3) {
            const epi512 p = epi512_at(e, c + 48, m3);
            finish512(&p, a3, o + c + 48);
        }
    }
}

/* block256 at AVX-512's width, the channel tail masked. */
static T512 ALWAYS_INLINE void block512(const float *const *in, int C, int kh, int kw, int sw,
                                        int pad_left, int ox, const int nb, const float *kernel,
                                        const graft_kernel_epi *e, float *out)
{
    const size_t step = (size_t)sw * C;
    for (int c = 0; c < C; c += 16) {
        const __mmask16 mk = mask16(C, c);
        __m512 a[OB];
        for (int o = 0; o < nb; o++) a[o] = _mm512_setzero_ps();
        for (int ky = 0; ky < kh; ky++) {
            if (!in[ky]) continue;
            const float *x = in[ky] + (size_t)(ox * sw - pad_left) * C + c;
            const float *k = kernel + (size_t)ky * kw * C + c;
            for (int kx = 0; kx < kw; kx++) {
                const __m512 kv = _mm512_maskz_loadu_ps(mk, k + (size_t)kx * C);
                const float *xk = x + (size_t)kx * C;
#pragma GCC unroll 8
                for (int o = 0; o < nb; o++)
                    a[o] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, xk + o * step), kv, a[o]);
            }
        }
        const epi512 p = epi512_at(e, c, mk);
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) finish512(&p, a[o], out + (size_t)(ox + o) * C + c);
    }
}

/* block512 for a 3x3 kernel: the channel block's nine kernel vectors held
 * in registers, and at stride 1 each input vector of a kernel row loaded
 * once for the (up to three) outputs that read it. The same chains in the
 * same order: the same bits. */
static T512 ALWAYS_INLINE void block512_3x3(const float *const *in, int C, int sw, int pad_left,
                                            int ox, const int nb, const float *kernel,
                                            const graft_kernel_epi *e, float *out)
{
    const size_t step = (size_t)sw * C;
    for (int c = 0; c < C; c += 16) {
        const __mmask16 mk = mask16(C, c);
        __m512 k[9], a[OB];
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) k[t] = _mm512_maskz_loadu_ps(mk, kernel + (size_t)t * C + c);
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) a[o] = _mm512_setzero_ps();
#pragma GCC unroll 3
        for (int ky = 0; ky < 3; ky++) {
            if (!in[ky]) continue;
            const float *x = in[ky] + (size_t)(ox * sw - pad_left) * C + c;
            if (sw == 1) {
                __m512 v[OB + 2];
#pragma GCC unroll 10
                for (int i = 0; i < nb + 2; i++) v[i] = _mm512_maskz_loadu_ps(mk, x + (size_t)i * C);
#pragma GCC unroll 3
                for (int kx = 0; kx < 3; kx++)
#pragma GCC unroll 8
                    for (int o = 0; o < nb; o++)
                        a[o] = _mm512_fmadd_ps(v[o + kx], k[ky * 3 + kx], a[o]);
            } else {
#pragma GCC unroll 3
                for (int kx = 0; kx < 3; kx++)
#pragma GCC unroll 8
                    for (int o = 0; o < nb; o++)
                        a[o] = _mm512_fmadd_ps(
                            _mm512_maskz_loadu_ps(mk, x + (size_t)kx * C + o * step),
                            k[ky * 3 + kx], a[o]);
            }
        }
        const epi512 p = epi512_at(e, c, mk);
#pragma GCC unroll 8
        for (int o = 0; o < nb; o++) finish512(&p, a[o], out + (size_t)(ox + o) * C + c);
    }
}

static T512 void blocks512(const float *const *in, int C, int kh, int kw, int sw, int pad_left,
                           int ox, int nb, const float *kernel, const graft_kernel_epi *e,
                           float *out)
{
#define B512(N)                                                                                    \
    case N: block512(in, C, kh, kw, sw, pad_left, ox, N, kernel, e, out); break;
#define B3(N)                                                                                    \
    case N: block512_3x3(in, C, sw, pad_left, ox, N, kernel, e, out); break;
    if (kh == 3 && kw == 3) {
        switch (nb) { B3(1) B3(2) B3(3) B3(4) B3(5) B3(6) B3(7) B3(8) default: break; }
        return;
    }
#undef B3
    switch (nb) { B512(1) B512(2) B512(3) B512(4) B512(5) B512(6) B512(7) B512(8) default: break; }
#undef B512
}

/* The row: the outputs near its edges alone, the others by blocks of at
 * most OB, each block through all channel blocks before the next (the
 * input is read in memory order). */
static T512 void row512(const float *const *in, int w, int C, int kh, int kw, int sw,
                        int pad_left, int ow, const float *kernel, const graft_kernel_epi *e,
                        float *out)
{
    int bx0, bx1, ox, nb;
    inside(w, kw, sw, pad_left, ow, &bx0, &bx1);
    for (ox = 0; ox < bx0; ox++) one512(in, w, C, kh, kw, sw, pad_left, ox, kernel, e, out);
    const int nblk = (bx1 - bx0 + OB - 1) / OB;
    for (int b = 0; b < nblk; b++) {
        block_of(bx1 - bx0, nblk, b, &ox, &nb);
        blocks512(in, C, kh, kw, sw, pad_left, bx0 + ox, nb, kernel, e, out);
    }
    for (ox = bx1; ox < ow; ox++) one512(in, w, C, kh, kw, sw, pad_left, ox, kernel, e, out);
}

#endif /* __AVX2__ */

void graft_dw_row(const float *const *in, int w, int C, int kh, int kw, int sw, int pad_left,
                  int ow, const float *kernel, const graft_kernel_epi *e, float *out, bool wide,
                  int fresh)
{
    static const graft_kernel_epi none = {0};
    if (!e) e = &none;
    /* The input rows no earlier output row read, in[fresh .. kh - 1], asked
     * for line by line before the row starts: they come from memory or the
     * last-level cache, and the blocks read them C floats apart, a stride
     * the prefetchers do not follow. (In a function of its own GCC dropped
     * this loop: scripts/check_prefetch.py.) */
    for (int ky = fresh; ky < kh; ky++) {
        const float *row = in[ky];
        if (!row) continue;
        for (size_t i = 0; i < (size_t)w * C; i += 16) __builtin_prefetch(row + i, 0, 3);
    }
#ifdef __AVX2__
    if (wide && __builtin_cpu_supports("avx512f")) {
        row512(in, w, C, kh, kw, sw, pad_left, ow, kernel, e, out);
        return;
    }
    int c0 = row256(in, w, C, kh, kw, sw, pad_left, ow, kernel, e, out);
    if (c0 < C) row_scalar(in, w, C, c0, kh, kw, sw, pad_left, ow, kernel, e, out);
#else
    (void)wide;
    row_scalar(in, w, C, 0, kh, kw, sw, pad_left, ow, kernel, e, out);
#endif
}

int graft_dw_fresh(int kh, int sh, bool first)
{
    return first || sh >= kh ? 0 : kh - sh;
}

/* ------------------------------------------------------------ whole tensors */

void graft_dw_forward_row(const graft_conv_geom *g, const float *img, const float *kernel,
                          const float *bias, int oy, float *out, bool wide, bool first)
{
    const graft_kernel_epi e = {.bias = bias};
    const float *in[GRAFT_DW_MAX_KH];
    for (int ky = 0; ky < g->kh; ky++) {
        const int iy = oy * g->sh - g->pad_top + ky;
        in[ky] = iy < 0 || iy >= g->h ? NULL : img + (size_t)iy * g->w * g->c;
    }
    graft_dw_row(in, g->w, g->c, g->kh, g->kw, g->sw, g->pad_left, g->ow, kernel, &e, out, wide,
                 graft_dw_fresh(g->kh, g->sh, first));
}

void graft_dw_forward(const graft_conv_geom *g, int n, const float *x, const float *kernel,
                      const float *bias, float *y)
{
    graft_dw_forward_act(g, n, x, kernel, bias, GRAFT_LINEAR, NULL, y);
}

void graft_dw_forward_act(const graft_conv_geom *g, int n, const float *x, const float *kernel,
                          const float *bias, graft_activation act, const graft_epilogue *epi,
                          float *y)
{
    const bool wide = graft_kernels_avx512(), finish = graft_epilogue_active(epi);
    const size_t in_sz = (size_t)g->h * g->w * g->c, row_sz = (size_t)g->ow * g->c;
    const long rows = (long)n * g->oh;
#pragma omp parallel
    {
        /* each thread a run of rows: the first of a run or of an image asks
         * for all its input rows, the others for those new to them */
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const long r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        for (long r = r0; r < r1; r++) {
            float *orow = y + (size_t)r * row_sz;
            const int oy = (int)(r % g->oh);
            graft_dw_forward_row(g, x + (size_t)(r / g->oh) * in_sz, kernel, bias, oy, orow, wide,
                                 r == r0 || oy == 0);
            graft_activation_rows(act, orow, (size_t)g->ow, (size_t)g->c, (size_t)g->c);
            if (finish) graft_epilogue_rows(epi, orow, (size_t)g->ow, g->c);
        }
    }
}

/* Backward splits the output rows into at most this many blocks, each with
 * its own partial kernel gradient, summed in block order: the result does
 * not depend on the number of threads. */
#define GRAD_BLOCKS 32

/* Eight floats, any alignment, aliasing the float arrays they view. */
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }
static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static int grad_blocks(const graft_conv_geom *g, int n)
{
    size_t rows = (size_t)n * g->oh;
    return rows < GRAD_BLOCKS ? (int)rows : GRAD_BLOCKS;
}

/* Floats of one block's partial gradients: the kernel, then the bias. */
static size_t partial_floats(const graft_conv_geom *g, int dm)
{
    size_t cd = (size_t)g->c * dm;
    return round16((size_t)g->kh * g->kw * cd + cd);
}

size_t graft_dw_backward_scratch_floats(const graft_conv_geom *g, int dm, int n)
{
    return (size_t)grad_blocks(g, n) * partial_floats(g, dm);
}

/* Adds output row oy's contribution to the kernel (and bias) gradient. */
static void kernel_grad_row(const graft_conv_geom *g, int dm, const float *img, const float *dzrow,
                            int oy, float *restrict dk, float *restrict db)
{
    const int C = g->c, cd = C * dm;
    const int iy0 = oy * g->sh - g->pad_top;
    const int ky0 = imax(0, -iy0), ky1 = imin(g->kh, g->h - iy0);
    for (int ox = 0; ox < g->ow; ox++) {
        const float *restrict dz = dzrow + (size_t)ox * cd;
        if (db) {
#pragma omp simd
            for (int j = 0; j < cd; j++) db[j] += dz[j];
        }
        const int ix0 = ox * g->sw - g->pad_left;
        const int kx0 = imax(0, -ix0), kx1 = imin(g->kw, g->w - ix0);
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xrow = img + (size_t)(iy0 + ky) * g->w * C;
            for (int kx = kx0; kx < kx1; kx++) {
                const float *restrict xp = xrow + (size_t)(ix0 + kx) * C;
                float *restrict k = dk + (size_t)(ky * g->kw + kx) * cd;
                if (dm == 1) {
#pragma omp simd
                    for (int c = 0; c < C; c++) k[c] += dz[c] * xp[c];
                } else {
                    for (int c = 0; c < C; c++)
                        for (int m = 0; m < dm; m++) k[c * dm + m] += dz[c * dm + m] * xp[c];
                }
            }
        }
    }
}

/* Input row iy of one sample gathers from the outputs whose windows cover
 * it: rows are computed in parallel without write conflicts, and each input
 * pixel sums its taps in registers before one update of dx. */
static void input_grad_row(const graft_conv_geom *g, int dm, const float *kernel,
                           const float *dzimg, int iy, float *dxrow)
{
    const int C = g->c, cd = C * dm;
    const int top = iy + g->pad_top; /* oy*sh + ky == top */
    const int ty = top - g->kh + 1;
    const int oy_lo = ty <= 0 ? 0 : (ty + g->sh - 1) / g->sh;
    const int oy_hi = imin(top / g->sh, g->oh - 1);
    for (int ix = 0; ix < g->w; ix++) {
        float *restrict dx = dxrow + (size_t)ix * C;
        const int left = ix + g->pad_left; /* ox*sw + kx == left */
        const int tx = left - g->kw + 1;
        const int ox_lo = tx <= 0 ? 0 : (tx + g->sw - 1) / g->sw;
        const int ox_hi = imin(left / g->sw, g->ow - 1);
        int c0 = 0;
        if (dm == 1) {
            for (; c0 + 32 <= C; c0 += 32) {
                v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (int oy = oy_lo; oy <= oy_hi; oy++) {
                    const float *dzrow = dzimg + (size_t)oy * g->ow * cd + c0;
                    const float *krow = kernel + (size_t)(top - oy * g->sh) * g->kw * cd + c0;
                    for (int ox = ox_lo; ox <= ox_hi; ox++) {
                        const v8 *z = (const v8 *)(dzrow + (size_t)ox * cd);
                        const v8 *k = (const v8 *)(krow + (size_t)(left - ox * g->sw) * cd);
                        a0 += z[0] * k[0];
                        a1 += z[1] * k[1];
                        a2 += z[2] * k[2];
                        a3 += z[3] * k[3];
                    }
                }
                v8 *dv = (v8 *)(dx + c0);
                dv[0] += a0, dv[1] += a1, dv[2] += a2, dv[3] += a3;
            }
            if (c0 == C) continue;
        }
        for (int oy = oy_lo; oy <= oy_hi; oy++) {
            const float *dzrow = dzimg + (size_t)oy * g->ow * cd;
            const float *krow = kernel + (size_t)(top - oy * g->sh) * g->kw * cd;
            for (int ox = ox_lo; ox <= ox_hi; ox++) {
                const float *restrict dz = dzrow + (size_t)ox * cd;
                const float *restrict k = krow + (size_t)(left - ox * g->sw) * cd;
                if (dm == 1) {
#pragma omp simd
                    for (int c = c0; c < C; c++) dx[c] += dz[c] * k[c];
                } else {
                    for (int c = 0; c < C; c++) {
                        float sum = 0;
                        for (int m = 0; m < dm; m++) sum += dz[c * dm + m] * k[c * dm + m];
                        dx[c] += sum;
                    }
                }
            }
        }
    }
}

void graft_dw_backward(const graft_conv_geom *g, int dm, int n, const float *x, const float *dz,
                       const float *kernel, float *dkernel, float *dbias, float *dx,
                       bool accumulate, float *scratch)
{
    const size_t cd = (size_t)g->c * dm;
    const size_t in_sz = (size_t)g->h * g->w * g->c, out_sz = (size_t)g->oh * g->ow * cd;
    const size_t row_sz = (size_t)g->ow * cd;
    const long rows = (long)n * g->oh;
    if (dkernel) {
        const int blocks = grad_blocks(g, n);
        const size_t pf = partial_floats(g, dm), ksz = (size_t)g->kh * g->kw * cd;
        float *partials = scratch;
#pragma omp parallel for schedule(static)
        for (int p = 0; p < blocks; p++) {
            float *dk = partials + (size_t)p * pf;
            memset(dk, 0, pf * sizeof(float));
            long r0 = rows * p / blocks, r1 = rows * (p + 1) / blocks;
            for (long r = r0; r < r1; r++) {
                int b = (int)(r / g->oh), oy = (int)(r % g->oh);
                kernel_grad_row(g, dm, x + (size_t)b * in_sz, dz + (size_t)r * row_sz, oy, dk,
                                dbias ? dk + ksz : NULL);
            }
        }
        const long total = (long)(ksz + (dbias ? cd : 0));
#pragma omp parallel for schedule(static)
        for (long i = 0; i < total; i++) {
            float s = 0;
            for (int p = 0; p < blocks; p++) s += partials[(size_t)p * pf + (size_t)i];
            if ((size_t)i < ksz) dkernel[i] = s;
            else dbias[(size_t)i - ksz] = s;
        }
    }
    if (dx) {
        const long in_rows = (long)n * g->h;
        const size_t in_row_sz = (size_t)g->w * g->c;
#pragma omp parallel for schedule(static)
        for (long r = 0; r < in_rows; r++) {
            int b = (int)(r / g->h), iy = (int)(r % g->h);
            float *dxrow = dx + (size_t)r * in_row_sz;
            if (!accumulate) memset(dxrow, 0, in_row_sz * sizeof(float));
            input_grad_row(g, dm, kernel, dz + (size_t)b * out_sz, iy, dxrow);
        }
    }
}
