/* Activation functions shared by Activation, Dense and the convolutions, and
 * the epilogue a convolution's output pass applies. */
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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

static float sigmoidf(float x)
{
    /* Split on the sign so that exp never overflows. */
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

#define SELU_ALPHA 1.67326324235437728481704299167f
#define SELU_SCALE 1.05070098735548049341933498529f
#define LEAKY_SLOPE 0.2f
#define GELU_C 0.797884560802865355879892119869f /* sqrt(2 / pi) */
#define GELU_K 0.044715f

static float hard_sigmoidf(float x)
{
    float v = x / 6.0f + 0.5f;
    return v < 0 ? 0 : (v > 1 ? 1 : v);
}

static float softplusf(float x)
{
    /* log(1 + e^x) without overflow: x + log1p(e^-x) for positive x. */
    return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

static float gelu_approxf(float x)
{
    return 0.5f * x * (1.0f + tanhf(GELU_C * (x + GELU_K * x * x * x)));
}

static float swish_grad(float x)
{
    float s = sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

static float hard_swish_grad(float x)
{
    return x < -3 ? 0.0f : (x > 3 ? 1.0f : (2.0f * x + 3.0f) / 6.0f);
}

static float gelu_grad(float x)
{
    const float inv_sqrt2 = 0.707106781186547524400844362105f;
    const float inv_sqrt2pi = 0.398942280401432677939946059934f;
    return 0.5f * (1.0f + erff(x * inv_sqrt2)) + x * inv_sqrt2pi * expf(-0.5f * x * x);
}

static float gelu_approx_grad(float x)
{
    float t = tanhf(GELU_C * (x + GELU_K * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_K * x * x);
}

/* Below this many elements a loop is not worth waking the OpenMP team. */
#define PAR_MIN 32768

/* Element-wise loops over i < n (a local `n`) on all threads with a static
 * split: each element is computed the same way whatever the split, so results
 * do not depend on the thread count. `omp simd` vectorises the selects (a
 * branch on the sign of a ReLU input is mispredicted half the time). */
#define ELEMENTWISE(stmt)                                                                       \
    do {                                                                                        \
        _Pragma("omp parallel for simd schedule(static) if (n >= PAR_MIN)")                     \
        for (size_t i = 0; i < n; i++) stmt;                                                    \
    } while (0)

void graft_activation_forward(graft_activation a, float *x, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    switch (a) {
    case GRAFT_LINEAR: break;
    case GRAFT_RELU: ELEMENTWISE(x[i] = x[i] < 0 ? 0 : x[i]); break; /* NaN stays NaN, as in TF */
    case GRAFT_RELU6: ELEMENTWISE(x[i] = x[i] < 0 ? 0 : (x[i] > 6 ? 6 : x[i])); break;
    case GRAFT_SIGMOID: ELEMENTWISE(x[i] = sigmoidf(x[i])); break;
    case GRAFT_TANH: ELEMENTWISE(x[i] = tanhf(x[i])); break;
    case GRAFT_SWISH:
    case GRAFT_SILU: ELEMENTWISE(x[i] = x[i] * sigmoidf(x[i])); break;
    case GRAFT_HARD_SIGMOID: ELEMENTWISE(x[i] = hard_sigmoidf(x[i])); break;
    case GRAFT_HARD_SWISH:
    case GRAFT_HARD_SILU: ELEMENTWISE(x[i] = x[i] * hard_sigmoidf(x[i])); break;
    case GRAFT_GELU:
        ELEMENTWISE(x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.707106781186547524400844362105f)));
        break;
    case GRAFT_GELU_APPROXIMATE: ELEMENTWISE(x[i] = gelu_approxf(x[i])); break;
    case GRAFT_SOFTPLUS: ELEMENTWISE(x[i] = softplusf(x[i])); break;
    case GRAFT_SOFTSIGN: ELEMENTWISE(x[i] = x[i] / (1.0f + fabsf(x[i]))); break;
    case GRAFT_SELU:
        ELEMENTWISE(x[i] = x[i] > 0 ? SELU_SCALE * x[i] : SELU_SCALE * SELU_ALPHA * expm1f(x[i]));
        break;
    case GRAFT_ELU: ELEMENTWISE(x[i] = x[i] > 0 ? x[i] : expm1f(x[i])); break;
    case GRAFT_EXPONENTIAL: ELEMENTWISE(x[i] = expf(x[i])); break;
    case GRAFT_LEAKY_RELU: ELEMENTWISE(x[i] = x[i] >= 0 ? x[i] : LEAKY_SLOPE * x[i]); break;
    case GRAFT_SOFTMAX:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            float *row = x + r * cols;
            float mx = row[0];
            for (size_t j = 1; j < cols; j++) mx = row[j] > mx ? row[j] : mx;
            double sum = 0;
            for (size_t j = 0; j < cols; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            float inv = (float)(1.0 / sum);
            for (size_t j = 0; j < cols; j++) row[j] *= inv;
        }
        break;
    }
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
    case GRAFT_SOFTPLUS: EMIT(dy[i] * -expm1f(-y[i])); break;
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
