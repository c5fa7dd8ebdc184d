/* Activation functions shared by Activation, Dense and the convolutions, and
 * the epilogue a convolution's output pass applies. */
#include "core/core.h"

#include <math.h>
#include <string.h>

static const char *const names[] = {"linear", "relu", "relu6", "sigmoid", "tanh", "softmax"};

graft_status graft_activation_parse(const char *name, graft_activation *out)
{
    if (!name) return graft_fail(GRAFT_EINVAL, "activation name is missing");
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (graft_activation)i;
            return GRAFT_OK;
        }
    }
    return graft_fail(GRAFT_EUNSUPPORTED,
                      "unknown activation '%s' (known: linear, relu, relu6, sigmoid, tanh, "
                      "softmax)",
                      name);
}

const char *graft_activation_name(graft_activation a)
{
    if ((unsigned)a < sizeof names / sizeof *names) return names[a];
    return "unknown";
}

static float sigmoidf(float x)
{
    /* Split on the sign so that exp never overflows. */
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
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
