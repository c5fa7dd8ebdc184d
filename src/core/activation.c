/* Activation functions shared by Activation, Dense and the convolutions, and
 * the epilogue a convolution's output pass applies. */
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* The exp family below must inline into each `omp simd` loop to vectorise. */
#define ALWAYS_INLINE __attribute__((always_inline))

/* Indexed by graft_activation. */
static const char *const names[] = {
    "linear",   "relu",     "relu6", "sigmoid",    "tanh",       "softmax",
    "swish",    "silu",     "hard_sigmoid",        "hard_swish", "hard_silu",
    "gelu",     "gelu_approximate",  "softplus",   "softsign",   "selu",
    "elu",      "exponential",       "leaky_relu",
};
#define N_NAMES (sizeof names / sizeof *names)
_Static_assert(N_NAMES == GRAFT_LEAKY_RELU + 1, "one name per activation");

graft_status graft_activation_parse(const char *name, graft_activation *out)
{
    if (!name) return graft_fail(GRAFT_EINVAL, "activation name is missing");
    for (size_t i = 0; i < N_NAMES; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (graft_activation)i;
            return GRAFT_OK;
        }
    }
    /* TF.js's name for the tanh form of gelu. */
    if (strcmp(name, "gelu_new") == 0) {
        *out = GRAFT_GELU_APPROXIMATE;
        return GRAFT_OK;
    }
    char known[512];
    size_t len = 0;
    for (size_t i = 0; i < N_NAMES && len < sizeof known; i++) {
        int k = snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", names[i]);
        if (k < 0) break;
        len += (size_t)k;
    }
    return graft_fail(GRAFT_EUNSUPPORTED, "unknown activation '%s' (known: %s)", name, known);
}

const char *graft_activation_name(graft_activation a)
{
    if ((unsigned)a < N_NAMES) return names[a];
    return "unknown";
}

bool graft_activation_needs_input(graft_activation a)
{
    return a == GRAFT_SWISH || a == GRAFT_SILU || a == GRAFT_HARD_SWISH || a == GRAFT_HARD_SILU ||
           a == GRAFT_GELU || a == GRAFT_GELU_APPROXIMATE;
}

/* exp and expm1 of our own, in plain C so that GCC vectorises them inside
 * `omp simd` loops (glibc's vector expf is only used under -ffast-math):
 * no calls and no branches, and no selects that depend on each other (GCC
 * would thread them into branches), so the vector body and the scalar
 * remainder compute each element with the same operations (-std=c11 keeps
 * FMA contraction off). x = k ln2 + r with |r| <= ln2/2, ln2 split in two
 * constants so that k ln2 is exact; 2^k is built in the exponent bits. */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f     /* 8 significant bits: k * LN2_HI is exact */
#define LN2_LO -2.12194440e-4f  /* ln2 - LN2_HI */
#define ROUND_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */

static inline ALWAYS_INLINE uint32_t bits_of(float f)
{
    union { float f; uint32_t u; } v = {.f = f};
    return v.u;
}

/* 2^k for k in [-126, 127]. */
static inline ALWAYS_INLINE float pow2i(int32_t k)
{
    union { uint32_t u; float f; } v = {.u = (uint32_t)(k + 127) << 23};
    return v.f;
}

/* k = round(x log2e) and r = x - k ln2, for |x| < 2^21; the integer k comes
 * from the rounded sum's bits, as a float-to-int conversion of a NaN would be
 * undefined (a NaN x gives a NaN r, whatever k). */
static inline ALWAYS_INLINE float reduce(float x, int32_t *k)
{
    float t = x * LOG2E + ROUND_MAGIC;
    float kf = t - ROUND_MAGIC;
    *k = (int32_t)(bits_of(t) - bits_of(ROUND_MAGIC));
    return (x - kf * LN2_HI) - kf * LN2_LO;
}

/* e^x within 2 ulp; inf above 88.72, 0 below -103.9, NaN for NaN. */
static inline ALWAYS_INLINE float exp_f(float x)
{
    x = x > 89.0f ? 89.0f : x; /* NaN passes both clamps */
    x = x < -104.0f ? -104.0f : x;
    int32_t k;
    float r = reduce(x, &k);
    /* Minimax polynomial for (e^r - 1 - r) / r^2 on [-ln2/2, ln2/2] (Cephes). */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    /* k in [-150, 129]: two halves keep each power of two a normal float. */
    int32_t k1 = k >> 1;
    return y * pow2i(k1) * pow2i(k - k1);
}

/* e^x - 1 without cancellation near 0, for x <= 88 (larger x gives e^88 - 1). */
static inline ALWAYS_INLINE float expm1_f(float x)
{
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x; /* e^-87 - 1 is -1 in float */
    int32_t k;
    float r = reduce(x, &k);
    /* Taylor series of e^r - 1 to r^9: its tail is below 1e-9 relative. */
    float p = 1.0f / 362880.0f;
    p = p * r + 1.0f / 40320.0f;
    p = p * r + 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    float m = p * (r * r) + r; /* e^r - 1 */
    float s = pow2i(k);        /* e^x - 1 = 2^k (e^r - 1) + (2^k - 1) */
    return s * m + (s - 1.0f);
}

static inline ALWAYS_INLINE float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

#define SELU_ALPHA 1.67326324235437728481704299167f
#define SELU_SCALE 1.05070098735548049341933498529f
#define LEAKY_SLOPE 0.2f
#define GELU_C 0.797884560802865355879892119869f /* sqrt(2 / pi) */
#define GELU_K 0.044715f

static inline ALWAYS_INLINE float hard_sigmoidf(float x)
{
    float v = x / 6.0f + 0.5f;
    return v < 0 ? 0 : (v > 1 ? 1 : v);
}

static inline ALWAYS_INLINE float softplusf(float x)
{
    /* log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|). */
    return (x > 0 ? x : 0.0f) + log1pf(exp_f(-fabsf(x)));
}

/* 2u for gelu's tanh form: 0.5 x (1 + tanh(u)) = x sigmoid(2u). */
static inline ALWAYS_INLINE float gelu_2u(float x) { return 2.0f * GELU_C * (x + GELU_K * x * x * x); }

static inline ALWAYS_INLINE float swish_grad(float x)
{
    float s = sigmoid_f(x);
    return s * (1.0f + x * (1.0f - s));
}

static inline ALWAYS_INLINE float hard_swish_grad(float x)
{
    return x < -3 ? 0.0f : (x > 3 ? 1.0f : (2.0f * x + 3.0f) / 6.0f);
}

/* 1 + erf(x / sqrt 2) = erfc(-x / sqrt 2), gelu's exact form without erff
 * (a libm call per element): erfc(a) = t e^(P(t) - a^2) for a = |z| >= 0,
 * t = 1 / (1 + a/2), P a degree-9 fit of log(erfc(a) / t) + a^2 on
 * t in [1/6, 1] (error 5e-8; scripts/fit_gelu_erfc.py), in t - 0.6 to keep
 * the coefficients small. For z < 0 this is erfc itself, so the small
 * values of gelu at large -x keep their relative accuracy (1 + erff cancels
 * there); within 1e-6 relative of double once the rounding of x / sqrt 2
 * and of a^2 is allowed for. */
static inline ALWAYS_INLINE float gelu_cdf2(float x)
{
    const float z = x * 0.707106781186547524400844362105f, a = fabsf(z);
    const float t = 1.0f / (1.0f + 0.5f * a), u = t - 0.6f;
    float p = 0.14219459891319275f;
    p = p * u + 0.10178589075803757f;
    p = p * u - 0.23186449706554413f;
    p = p * u - 0.07110783457756042f;
    p = p * u + 0.28934550285339355f;
    p = p * u - 0.010896138846874237f;
    p = p * u - 0.4089277982711792f;
    p = p * u + 0.07028921693563461f;
    p = p * u + 1.3714203834533691f;
    p = p * u - 0.5357598066329956f;
    const float e = t * exp_f(p - a * a); /* erfc(a) */
    return z >= 0 ? 2.0f - e : e;         /* NaN stays NaN */
}

static inline ALWAYS_INLINE float gelu_grad(float x)
{
    const float inv_sqrt2pi = 0.398942280401432677939946059934f;
    return 0.5f * gelu_cdf2(x) + x * inv_sqrt2pi * exp_f(-0.5f * x * x);
}

static inline ALWAYS_INLINE float gelu_approx_grad(float x)
{
    /* With s = sigmoid(2u): (1 + tanh u) / 2 = s and 1 - tanh^2 u = 4 s (1 - s). */
    float s = sigmoid_f(gelu_2u(x));
    return s + 2.0f * x * s * (1.0f - s) * GELU_C * (1.0f + 3.0f * GELU_K * x * x);
}

float graft_expf(float x) { return exp_f(x); }
float graft_expm1f(float x) { return expm1_f(x); }

/* sigmoid(x), or x sigmoid(x) (swish) with `times_x`, over x[0..n) in place:
 * the exp family's hottest members (EfficientNet's every block runs swish
 * over its largest tensors), where the compiler's vectorisation of exp_f
 * (separate multiplies and adds, its clamps as mask arithmetic) left half
 * the speed behind (docs/PERFORMANCE.md). So this is exp_f's method
 * written once in fused multiply-adds, 16 or 8 lanes at a time with the
 * tail through a mask (no scalar remainder to differ from the body), and
 * in fmaf where there are no vectors: the same operations, so the same
 * bits, on every ISA (only a NaN's sign may differ). Within 2 ulp of e^x
 * as exp_f; NaN gives NaN. */
#define SIG_OPS(V, set1, fmadd, fnmadd, add, sub, mul, div, mn, mx, I, iset1, iadd, isub, sra,  \
                sll, as_int, as_float)                                                          \
    do {                                                                                        \
        V e_ = sub(set1(0.0f), v_);                                                             \
        e_ = mn(set1(89.0f), e_); /* NaN passes both clamps (the second operand) */             \
        e_ = mx(set1(-104.0f), e_);                                                             \
        const V t_ = fmadd(e_, set1(LOG2E), set1(ROUND_MAGIC));                                 \
        const V kf_ = sub(t_, set1(ROUND_MAGIC));                                               \
        const I k_ = isub(as_int(t_), as_int(set1(ROUND_MAGIC)));                               \
        V r_ = fnmadd(kf_, set1(LN2_HI), e_);                                                   \
        r_ = fnmadd(kf_, set1(LN2_LO), r_);                                                     \
        V p_ = set1(1.9875691500e-4f);                                                          \
        p_ = fmadd(p_, r_, set1(1.3981999507e-3f));                                             \
        p_ = fmadd(p_, r_, set1(8.3334519073e-3f));                                             \
        p_ = fmadd(p_, r_, set1(4.1665795894e-2f));                                             \
        p_ = fmadd(p_, r_, set1(1.6666665459e-1f));                                             \
        p_ = fmadd(p_, r_, set1(5.0000001201e-1f));                                             \
        const V y_ = add(fmadd(p_, mul(r_, r_), r_), set1(1.0f));                               \
        const I k1_ = sra(k_, 1), k2_ = isub(k_, k1_);                                          \
        const V s1_ = as_float(sll(iadd(k1_, iset1(127)), 23));                                 \
        const V s2_ = as_float(sll(iadd(k2_, iset1(127)), 23));                                 \
        const V d_ = fmadd(mul(y_, s1_), s2_, set1(1.0f)); /* 1 + e^-x */                        \
        v_ = div(times_x ? v_ : set1(1.0f), d_);                                                \
    } while (0)

#ifdef __AVX512F__
static inline ALWAYS_INLINE __m512 sig16(__m512 v_, bool times_x)
{
    SIG_OPS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_add_ps,
            _mm512_sub_ps, _mm512_mul_ps, _mm512_div_ps, _mm512_min_ps, _mm512_max_ps, __m512i,
            _mm512_set1_epi32, _mm512_add_epi32, _mm512_sub_epi32, _mm512_srai_epi32,
            _mm512_slli_epi32, _mm512_castps_si512, _mm512_castsi512_ps);
    return v_;
}

static inline ALWAYS_INLINE void sigmoid_span(float *x, size_t n, bool times_x)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, sig16(_mm512_loadu_ps(x + i), times_x));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, sig16(_mm512_maskz_loadu_ps(m, x + i), times_x));
    }
}
#elif defined(__AVX2__) && defined(__FMA__)
static inline ALWAYS_INLINE __m256 sig8(__m256 v_, bool times_x)
{
    SIG_OPS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_fnmadd_ps, _mm256_add_ps,
            _mm256_sub_ps, _mm256_mul_ps, _mm256_div_ps, _mm256_min_ps, _mm256_max_ps, __m256i,
            _mm256_set1_epi32, _mm256_add_epi32, _mm256_sub_epi32, _mm256_srai_epi32,
            _mm256_slli_epi32, _mm256_castps_si256, _mm256_castsi256_ps);
    return v_;
}

static inline ALWAYS_INLINE void sigmoid_span(float *x, size_t n, bool times_x)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, sig8(_mm256_loadu_ps(x + i), times_x));
    if (i < n) {
        static const int32_t ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)(n - i)),
                                             _mm256_loadu_si256((const __m256i *)ramp));
        _mm256_maskstore_ps(x + i, m, sig8(_mm256_maskload_ps(x + i, m), times_x));
    }
}
#else
/* The same operations on one float (vminps/vmaxps's NaN rule written out). */
#define S_SET1(c) (c)
#define S_FMADD(a, b, c) fmaf(a, b, c)
#define S_FNMADD(a, b, c) fmaf(-(a), b, c)
#define S_ADD(a, b) ((a) + (b))
#define S_SUB(a, b) ((a) - (b))
#define S_MUL(a, b) ((a) * (b))
#define S_DIV(a, b) ((a) / (b))
#define S_MIN(a, b) ((a) < (b) ? (a) : (b))
#define S_MAX(a, b) ((a) > (b) ? (a) : (b))
#define S_SRA(a, c) ((a) >> (c))
#define S_SLL(a, c) ((int32_t)((uint32_t)(a) << (c)))
static inline float s_as_float(int32_t k)
{
    union { uint32_t u; float f; } v = {.u = (uint32_t)k};
    return v.f;
}
static inline ALWAYS_INLINE void sigmoid_span(float *x, size_t n, bool times_x)
{
    for (size_t i = 0; i < n; i++) {
        float v_ = x[i];
        SIG_OPS(float, S_SET1, S_FMADD, S_FNMADD, S_ADD, S_SUB, S_MUL, S_DIV, S_MIN, S_MAX, int32_t,
                S_SET1, S_ADD, S_SUB, S_SRA, S_SLL, (int32_t)bits_of, s_as_float);
        x[i] = v_;
    }
}
#endif

/* Below this many elements a loop is not worth waking the OpenMP team. */
#define PAR_MIN 32768
/* Elements per task of the parallel loops. */
#define SPAN 4096

/* An element-wise activation over x[0..n) in place: the one place each
 * formula is written, for the Activation layers and for the epilogue, so
 * fused and unfused plans compute the same bits. `omp simd` vectorises the
 * selects (a branch on the sign of a ReLU input is mispredicted half the time). */
#define EACH(stmt)                                                                              \
    do {                                                                                        \
        _Pragma("omp simd")                                                                     \
        for (size_t i = 0; i < n; i++) stmt;                                                    \
    } while (0)

static void act_span(graft_activation a, float *x, size_t n)
{
    switch (a) {
    case GRAFT_LINEAR:
    case GRAFT_SOFTMAX: break;
    case GRAFT_RELU: EACH(x[i] = x[i] < 0 ? 0 : x[i]); break; /* NaN stays NaN, as in TF */
    case GRAFT_RELU6: EACH(x[i] = x[i] < 0 ? 0 : (x[i] > 6 ? 6 : x[i])); break;
    case GRAFT_SIGMOID: sigmoid_span(x, n, false); break;
    case GRAFT_TANH: EACH(x[i] = tanhf(x[i])); break;
    case GRAFT_SWISH:
    case GRAFT_SILU: sigmoid_span(x, n, true); break;
    case GRAFT_HARD_SIGMOID: EACH(x[i] = hard_sigmoidf(x[i])); break;
    case GRAFT_HARD_SWISH:
    case GRAFT_HARD_SILU: EACH(x[i] = x[i] * hard_sigmoidf(x[i])); break;
    case GRAFT_GELU:
        EACH(x[i] = 0.5f * x[i] * gelu_cdf2(x[i]));
        break;
    case GRAFT_GELU_APPROXIMATE: EACH(x[i] = x[i] / (1.0f + exp_f(-gelu_2u(x[i])))); break;
    case GRAFT_SOFTPLUS: EACH(x[i] = softplusf(x[i])); break;
    case GRAFT_SOFTSIGN: EACH(x[i] = x[i] / (1.0f + fabsf(x[i]))); break;
    case GRAFT_SELU:
        EACH(x[i] = x[i] > 0 ? SELU_SCALE * x[i] : SELU_SCALE * SELU_ALPHA * expm1_f(x[i]));
        break;
    case GRAFT_ELU: EACH(x[i] = x[i] > 0 ? x[i] : expm1_f(x[i])); break;
    case GRAFT_EXPONENTIAL: EACH(x[i] = exp_f(x[i])); break;
    case GRAFT_LEAKY_RELU: EACH(x[i] = x[i] >= 0 ? x[i] : LEAKY_SLOPE * x[i]); break;
    }
}

/* Element-wise loops over i < n (a local `n`) on all threads with a static
 * split: each element is computed the same way whatever the split, so results
 * do not depend on the thread count. */
#define ELEMENTWISE(stmt)                                                                       \
    do {                                                                                        \
        _Pragma("omp parallel for simd schedule(static) if (n >= PAR_MIN)")                     \
        for (size_t i = 0; i < n; i++) stmt;                                                    \
    } while (0)

/* Softmax over one row of cols floats, in place. */
static void softmax_row(float *row, size_t cols)
{
    float mx = row[0];
    for (size_t j = 1; j < cols; j++) mx = row[j] > mx ? row[j] : mx;
#pragma omp simd
    for (size_t j = 0; j < cols; j++) row[j] = exp_f(row[j] - mx);
    double sum = 0;
    for (size_t j = 0; j < cols; j++) sum += row[j];
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < cols; j++) row[j] *= inv;
}

void graft_activation_rows(graft_activation a, float *x, size_t rows, size_t cols, size_t ld)
{
    if (a == GRAFT_LINEAR) return;
    /* One span over contiguous rows: a call per row of a few channels cost
     * more than the row's work (element-wise, so the same bits). */
    if (a != GRAFT_SOFTMAX && ld == cols) {
        act_span(a, x, rows * cols);
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        if (a == GRAFT_SOFTMAX) softmax_row(x + r * ld, cols);
        else act_span(a, x + r * ld, cols);
    }
}

void graft_activation_forward(graft_activation a, float *x, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    if (a != GRAFT_SOFTMAX) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t b = 0; b < n; b += SPAN) act_span(a, x + b, n - b < SPAN ? n - b : SPAN);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t r = 0; r < rows; r++) softmax_row(x + r * cols, cols);
}

void graft_activation_backward(graft_activation a, const float *y, const float *dy, float *dx,
                               size_t rows, size_t cols, bool accumulate)
{
    graft_activation_backward_x(a, NULL, y, dy, dx, rows, cols, accumulate);
}

void graft_activation_backward_x(graft_activation a, const float *x, const float *y,
                                 const float *dy, float *dx, size_t rows, size_t cols,
                                 bool accumulate)
{
    size_t n = rows * cols;
    if (a == GRAFT_LINEAR && dx == dy && !accumulate) return;
    /* Never multiply a buffer that may be uninitialised: 0 * NaN is NaN. */
#define EMIT(expr)                                                                              \
    if (accumulate)                                                                             \
        ELEMENTWISE(dx[i] += (expr));                                                        \
    else                                                                                        \
        ELEMENTWISE(dx[i] = (expr));
    switch (a) {
    case GRAFT_LINEAR: EMIT(dy[i]); break;
    case GRAFT_RELU: EMIT(y[i] > 0 ? dy[i] : 0.0f); break;
    case GRAFT_RELU6: EMIT(y[i] > 0 && y[i] < 6 ? dy[i] : 0.0f); break;
    case GRAFT_SIGMOID: EMIT(dy[i] * y[i] * (1.0f - y[i])); break;
    case GRAFT_TANH: EMIT(dy[i] * (1.0f - y[i] * y[i])); break;
    case GRAFT_SWISH:
    case GRAFT_SILU: EMIT(dy[i] * swish_grad(x[i])); break;
    case GRAFT_HARD_SIGMOID: EMIT(y[i] > 0 && y[i] < 1 ? dy[i] * (1.0f / 6.0f) : 0.0f); break;
    case GRAFT_HARD_SWISH:
    case GRAFT_HARD_SILU: EMIT(dy[i] * hard_swish_grad(x[i])); break;
    case GRAFT_GELU: EMIT(dy[i] * gelu_grad(x[i])); break;
    case GRAFT_GELU_APPROXIMATE: EMIT(dy[i] * gelu_approx_grad(x[i])); break;
    /* softplus' = sigmoid(x) = 1 - e^-y */
    case GRAFT_SOFTPLUS: EMIT(dy[i] * -expm1_f(-y[i])); break;
    /* softsign' = 1 / (1 + |x|)^2 = (1 - |y|)^2 */
    case GRAFT_SOFTSIGN: EMIT(dy[i] * (1.0f - fabsf(y[i])) * (1.0f - fabsf(y[i]))); break;
    case GRAFT_SELU: EMIT(dy[i] * (y[i] > 0 ? SELU_SCALE : y[i] + SELU_SCALE * SELU_ALPHA)); break;
    case GRAFT_ELU: EMIT(dy[i] * (y[i] > 0 ? 1.0f : y[i] + 1.0f)); break;
    case GRAFT_EXPONENTIAL: EMIT(dy[i] * y[i]); break;
    case GRAFT_LEAKY_RELU: EMIT(y[i] > 0 ? dy[i] : LEAKY_SLOPE * dy[i]); break;
    case GRAFT_SOFTMAX:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            const float *yr = y + r * cols, *dyr = dy + r * cols;
            float *dxr = dx + r * cols;
            double dot = 0;
            for (size_t j = 0; j < cols; j++) dot += (double)dyr[j] * yr[j];
            for (size_t j = 0; j < cols; j++) {
                float g = yr[j] * (dyr[j] - (float)dot);
                dxr[j] = accumulate ? dxr[j] + g : g;
            }
        }
        break;
    }
#undef EMIT
}

int graft_conv_out_size(int in, int k, int stride, graft_padding p, int *pad_before)
{
    if (p == GRAFT_VALID) {
        *pad_before = 0;
        return in >= k ? (in - k) / stride + 1 : 0;
    }
    /* TensorFlow 'same': ceil(in/stride) outputs; the odd pad goes after. */
    int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *pad_before = total / 2;
    return out;
}

void graft_epilogue_rows(const graft_epilogue *e, float *out, size_t rows, int C)
{
    const float lo = e->lo, hi = e->hi;
    const float *mean = e->mean, *scale = e->scale, *shift = e->shift;
    for (size_t r = 0; r < rows; r++) {
        float *o = out + r * (size_t)C;
        if (e->bn) {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = (o[c] - mean[c]) * scale[c] + shift[c];
        }
        if (e->clamp) {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = o[c] < lo ? lo : (o[c] > hi ? hi : o[c]); /* NaN passes */
        }
    }
    if (e->act != GRAFT_LINEAR) act_span(e->act, out, rows * (size_t)C);
}

bool graft_epilogue_apply(const graft_epilogue *e, float *out, size_t rows, int C)
{
    if (!graft_epilogue_active(e)) return false;
    const size_t block = 64;
#pragma omp parallel for schedule(static) if (rows * (size_t)C > 32768)
    for (size_t r = 0; r < rows; r += block)
        graft_epilogue_rows(e, out + r * (size_t)C, rows - r < block ? rows - r : block, C);
    return true;
}
