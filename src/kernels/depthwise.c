/*
 * The depthwise convolution (depth multiplier 1) of fused inference steps,
 * one output row at a time over rows the caller holds in cache, each output
 * finished by the step's epilogue in its register. Channels are the vector
 * lanes: one channel block's kernel taps stay in registers along the row.
 *
 * Every output is one FMA chain over the taps in (ky, kx) order starting
 * from zero, padding taps skipped, the same for AVX2, AVX-512 and the
 * scalar path: the bits do not depend on the ISA or on how rows are split.
 */
#include "core/core.h"
#include "kernels/kernels.h"

#include <math.h>

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

static T256 int row256(const float *const *in, int w, int C, int kh, int kw, int sw, int pad_left,
                       int ow, const float *kernel, const graft_kernel_epi *e, float *out)
{
    int c = 0;
    for (; c + 8 <= C; c += 8) {
        __m256 bias = e->bias ? _mm256_loadu_ps(e->bias + c) : _mm256_setzero_ps();
        __m256 mean = e->mean ? _mm256_loadu_ps(e->mean + c) : bias;
        __m256 scale = e->mean ? _mm256_loadu_ps(e->scale + c) : bias;
        __m256 shift = e->mean ? _mm256_loadu_ps(e->shift + c) : bias;
        const __m256 lo = _mm256_set1_ps(e->lo), hi = _mm256_set1_ps(e->hi);
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * sw - pad_left;
            __m256 acc = _mm256_setzero_ps();
            for (int ky = 0; ky < kh; ky++) {
                if (!in[ky]) continue;
                const float *x = in[ky] + c;
                const float *k = kernel + (size_t)ky * kw * C + c;
                for (int kx = 0; kx < kw; kx++) {
                    const int ix = ix0 + kx;
                    if (ix < 0 || ix >= w) continue;
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + (size_t)ix * C),
                                          _mm256_loadu_ps(k + (size_t)kx * C), acc);
                }
            }
            if (e->bias) acc = _mm256_add_ps(acc, bias);
            if (e->mean) acc = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(acc, mean), scale), shift);
            if (e->clamp) acc = _mm256_min_ps(hi, _mm256_max_ps(lo, acc));
            _mm256_storeu_ps(out + (size_t)ox * C + c, acc);
        }
    }
    return c;
}

/* 3x3 with all taps inside: the nine kernel vectors in registers. */
#define TAPS9(X0, X1, X2, OFF)                                                               \
    do {                                                                                     \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X0 + (OFF)), k0, acc);             \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X0 + (OFF) + C), k1, acc);         \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X0 + (OFF) + 2 * C), k2, acc);     \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X1 + (OFF)), k3, acc);             \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X1 + (OFF) + C), k4, acc);         \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X1 + (OFF) + 2 * C), k5, acc);     \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X2 + (OFF)), k6, acc);             \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X2 + (OFF) + C), k7, acc);         \
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, X2 + (OFF) + 2 * C), k8, acc);     \
    } while (0)

static T512 void row512(const float *const *in, int w, int C, int kh, int kw, int sw,
                        int pad_left, int ow, const float *kernel, const graft_kernel_epi *e,
                        float *out)
{
    const bool full3 = kh == 3 && kw == 3 && in[0] && in[1] && in[2];
    for (int c = 0; c < C; c += 16) {
        const __mmask16 mk = C - c >= 16 ? 0xffff : (__mmask16)((1u << (C - c)) - 1);
        __m512 bias = e->bias ? _mm512_maskz_loadu_ps(mk, e->bias + c) : _mm512_setzero_ps();
        __m512 mean = e->mean ? _mm512_maskz_loadu_ps(mk, e->mean + c) : bias;
        __m512 scale = e->mean ? _mm512_maskz_loadu_ps(mk, e->scale + c) : bias;
        __m512 shift = e->mean ? _mm512_maskz_loadu_ps(mk, e->shift + c) : bias;
        const __m512 lo = _mm512_set1_ps(e->lo), hi = _mm512_set1_ps(e->hi);
        /* Outputs whose window lies inside the row: [ox_in0, ox_in1). */
        int ox_in0 = 0, ox_in1 = 0;
        __m512 k0, k1, k2, k3, k4, k5, k6, k7, k8;
        k0 = k1 = k2 = k3 = k4 = k5 = k6 = k7 = k8 = _mm512_setzero_ps();
        if (full3) {
            ox_in0 = (pad_left + sw - 1) / sw;
            ox_in1 = w - 3 + pad_left >= 0 ? (w - 3 + pad_left) / sw + 1 : 0;
            if (ox_in1 > ow) ox_in1 = ow;
            if (ox_in0 > ox_in1) ox_in0 = ox_in1;
            const float *k = kernel + c;
            k0 = _mm512_maskz_loadu_ps(mk, k), k1 = _mm512_maskz_loadu_ps(mk, k + C);
            k2 = _mm512_maskz_loadu_ps(mk, k + 2 * (size_t)C);
            k3 = _mm512_maskz_loadu_ps(mk, k + 3 * (size_t)C);
            k4 = _mm512_maskz_loadu_ps(mk, k + 4 * (size_t)C);
            k5 = _mm512_maskz_loadu_ps(mk, k + 5 * (size_t)C);
            k6 = _mm512_maskz_loadu_ps(mk, k + 6 * (size_t)C);
            k7 = _mm512_maskz_loadu_ps(mk, k + 7 * (size_t)C);
            k8 = _mm512_maskz_loadu_ps(mk, k + 8 * (size_t)C);
        }
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * sw - pad_left;
            __m512 acc = _mm512_setzero_ps();
            if (ox >= ox_in0 && ox < ox_in1) {
                const size_t off = (size_t)ix0 * C + c;
                TAPS9(in[0], in[1], in[2], off);
            } else {
                for (int ky = 0; ky < kh; ky++) {
                    if (!in[ky]) continue;
                    const float *x = in[ky] + c;
                    const float *k = kernel + (size_t)ky * kw * C + c;
                    for (int kx = 0; kx < kw; kx++) {
                        const int ix = ix0 + kx;
                        if (ix < 0 || ix >= w) continue;
                        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + (size_t)ix * C),
                                              _mm512_maskz_loadu_ps(mk, k + (size_t)kx * C), acc);
                    }
                }
            }
            if (e->bias) acc = _mm512_add_ps(acc, bias);
            if (e->mean) acc = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(acc, mean), scale), shift);
            if (e->clamp) acc = _mm512_min_ps(hi, _mm512_max_ps(lo, acc));
            _mm512_mask_storeu_ps(out + (size_t)ox * C + c, mk, acc);
        }
    }
}

#endif /* __AVX2__ */

void graft_dw_row(const float *const *in, int w, int C, int kh, int kw, int sw, int pad_left,
                  int ow, const float *kernel, const graft_kernel_epi *e, float *out, bool wide)
{
    static const graft_kernel_epi none = {0};
    if (!e) e = &none;
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
