/* The exp family the activations compute with (src/core/activation.c): error
 * against double precision over dense sweeps and at the special values, and
 * the same bits from the vector loops, the scalar remainder and any thread
 * count. */
#include "check.h"
#include "core/core.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Error of y against the exact value ref in units of the float spacing at
 * ref (denormal results count in units of the smallest denormal). */
static double ulps(float y, double ref)
{
    double a = fabs(ref);
    if (a >= (double)FLT_MAX * (1 + 0x1p-25)) return y == (float)ref ? 0 : INFINITY; /* rounds to inf */
    int e;
    frexp(a < FLT_MIN ? FLT_MIN : a, &e);
    double ulp = ldexp(1.0, e - 24);
    return fabs((double)y - ref) / ulp;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void test_exp_sweep(void)
{
    double worst = 0;
    float at = 0;
    for (double d = -100; d <= 100; d += 1.0 / 8192) {
        float x = (float)d;
        double u = ulps(graft_expf(x), exp((double)x));
        if (u > worst) worst = u, at = x;
    }
    printf("  exp: max %.2f ulp at %g over [-100, 100]\n", worst, (double)at);
    CHECK_MSG(worst <= 2.0, "%.2f ulp at %g", worst, (double)at);
}

static void test_expm1_sweep(void)
{
    double worst = 0;
    float at = 0;
    for (double d = -87; d <= 88; d += 1.0 / 8192) {
        float x = (float)d;
        double u = ulps(graft_expm1f(x), expm1((double)x));
        if (u > worst) worst = u, at = x;
    }
    /* Near zero, where e^x - 1 would cancel. */
    for (double d = 1e-12; d < 1; d *= 1.01) {
        for (int s = -1; s <= 1; s += 2) {
            float x = (float)(s * d);
            double u = ulps(graft_expm1f(x), expm1((double)x));
            if (u > worst) worst = u, at = x;
        }
    }
    printf("  expm1: max %.2f ulp at %g\n", worst, (double)at);
    CHECK_MSG(worst <= 3.0, "%.2f ulp at %g", worst, (double)at);
}

static void test_exp_special_values(void)
{
    CHECK(graft_expf(0.0f) == 1.0f);
    CHECK(graft_expf(-0.0f) == 1.0f);
    CHECK(graft_expf(FLT_TRUE_MIN) == 1.0f);
    CHECK(graft_expf(-FLT_TRUE_MIN) == 1.0f);
    CHECK(graft_expf(INFINITY) == INFINITY);
    CHECK(graft_expf(-INFINITY) == 0.0f);
    CHECK(isnan(graft_expf(NAN)));
    CHECK(isnan(graft_expf(-NAN)));
    CHECK(isfinite(graft_expf(88.72f)) && ulps(graft_expf(88.72f), exp((double)88.72f)) <= 2);
    CHECK(graft_expf(88.73f) == INFINITY);
    CHECK(graft_expf(1000.0f) == INFINITY);
    CHECK(graft_expf(-104.0f) == 0.0f);
    CHECK(graft_expf(-1000.0f) == 0.0f);
    CHECK(ulps(graft_expf(-87.3f), exp((double)-87.3f)) <= 2); /* the last normal results */
    CHECK(graft_expm1f(0.0f) == 0.0f);
    CHECK(graft_expm1f(FLT_TRUE_MIN) == FLT_TRUE_MIN);
    CHECK(graft_expm1f(-INFINITY) == -1.0f);
    CHECK(graft_expm1f(-100.0f) == -1.0f);
    CHECK(isnan(graft_expm1f(NAN)));
}

/* Double-precision references of the activations that use the exp family. */
static double ref(graft_activation a, double x)
{
    const double gc = 0.797884560802865355879892119869, gk = 0.044715;
    const double sa = 1.67326324235437728481704299167, ss = 1.05070098735548049341933498529;
    switch (a) {
    case GRAFT_SIGMOID: return 1 / (1 + exp(-x));
    case GRAFT_SWISH: return x / (1 + exp(-x));
    /* 0.5 x (1 + tanh u) as x / (1 + e^-2u): the sum would cancel for large -x. */
    case GRAFT_GELU_APPROXIMATE: return x / (1 + exp(-2 * gc * (x + gk * x * x * x)));
    /* 0.5 x erfc(-x / sqrt 2): 1 + erf(x / sqrt 2) would cancel for large -x. */
    case GRAFT_GELU: return 0.5 * x * erfc(-x * 0.70710678118654752440);
    case GRAFT_SOFTPLUS: return log1p(exp(x));
    case GRAFT_ELU: return x > 0 ? x : expm1(x);
    case GRAFT_SELU: return x > 0 ? ss * x : ss * sa * expm1(x);
    case GRAFT_EXPONENTIAL: return exp(x);
    default: return NAN;
    }
}

/* Every element over a sweep, through the vectorised layer path, within 1e-6
 * relative (where the value is not tiny), and bit for bit the same whatever
 * the thread count. */
static void test_activations_against_double(void)
{
    static const graft_activation acts[] = {GRAFT_SIGMOID,  GRAFT_SWISH, GRAFT_GELU_APPROXIMATE,
                                            GRAFT_GELU,     GRAFT_SOFTPLUS, GRAFT_ELU,
                                            GRAFT_SELU,     GRAFT_EXPONENTIAL};
    /* Not a multiple of any vector width: the scalar remainder runs too. */
    const size_t n = 3 * 4096 * 16 + 13;
    float *x = malloc(n * sizeof *x), *y1 = malloc(n * sizeof *y1), *y2 = malloc(n * sizeof *y2);
    CHECK(x && y1 && y2);
    if (!x || !y1 || !y2) goto done;
    for (size_t i = 0; i < n; i++) x[i] = -80.0f + 160.0f * (float)i / (float)n;
    int threads = graft_threads_get();
    for (size_t k = 0; k < sizeof acts / sizeof *acts; k++) {
        graft_activation a = acts[k];
        memcpy(y1, x, n * sizeof *x);
        memcpy(y2, x, n * sizeof *x);
        graft_threads_set(1);
        graft_activation_forward(a, y1, 1, n);
        graft_threads_set(2);
        graft_activation_forward(a, y2, 1, n);
        size_t differ = 0;
        double worst = 0;
        float at = 0;
        for (size_t i = 0; i < n; i++) {
            differ += bits(y1[i]) != bits(y2[i]);
            double r = ref(a, x[i]);
            if (fabs(r) < 1e-30) continue;
            double e = fabs(y1[i] - r) / fabs(r);
            /* gelu's e^-2u takes a cubic in x, rounded to float first: its
             * error grows with |2u| whatever exp does. */
            if (a == GRAFT_GELU_APPROXIMATE) e /= 1 + fabs(1.6 * (x[i] + 0.044715 * x[i] * x[i] * x[i]));
            /* gelu's erfc(|z|) ~ e^-z^2 takes z = x / sqrt 2 and z^2 rounded
             * to float: its error grows with x^2 whatever erfc does. */
            if (a == GRAFT_GELU) e /= 1 + (double)x[i] * x[i];
            if (e > worst) worst = e, at = x[i];
        }
        printf("  %s: max relative error %.3g at %g\n", graft_activation_name(a), worst, (double)at);
        CHECK_MSG(worst <= 1e-6, "%s: %.3g at %g", graft_activation_name(a), worst, (double)at);
        CHECK_MSG(differ == 0, "%s: %zu elements differ between 1 and 2 threads",
                  graft_activation_name(a), differ);
    }
    graft_threads_set(threads);
done:
    free(x);
    free(y1);
    free(y2);
}

/* The vector body and the scalar remainder (and the scalar graft_expf) give
 * each element the same bits, specials included: each value alone (the
 * scalar loop) and filling a whole span (the vector loop). */
static void test_vector_equals_scalar(void)
{
    static const graft_activation acts[] = {GRAFT_EXPONENTIAL, GRAFT_SWISH, GRAFT_SIGMOID,
                                            GRAFT_GELU_APPROXIMATE, GRAFT_GELU, GRAFT_ELU};
    const float special[] = {0.0f,     -0.0f,   FLT_TRUE_MIN, -FLT_TRUE_MIN, INFINITY,
                             -INFINITY, NAN,    88.72f,       88.73f,        -87.3f,
                             -104.0f,  -103.0f, 1e-20f,       0.5f,          -0.5f,
                             0.3465736f, -0.3465736f, 20.0f,  -20.0f,        3.0f};
    const size_t n = 4096;
    float *y = malloc(n * sizeof *y);
    CHECK(y != NULL);
    if (!y) return;
    for (size_t k = 0; k < sizeof acts / sizeof *acts; k++) {
        for (size_t s = 0; s < sizeof special / sizeof *special; s++) {
            float one = special[s];
            graft_activation_forward(acts[k], &one, 1, 1);
            for (size_t i = 0; i < n; i++) y[i] = special[s];
            graft_activation_forward(acts[k], y, 1, n);
            size_t differ = 0;
            for (size_t i = 0; i < n; i++) differ += bits(y[i]) != bits(one);
            CHECK_MSG(differ == 0, "%s(%g): %a alone, %a in a vector",
                      graft_activation_name(acts[k]), (double)special[s], (double)one, (double)y[0]);
            if (acts[k] == GRAFT_EXPONENTIAL)
                CHECK(bits(one) == bits(graft_expf(special[s])));
        }
    }
    free(y);
}

int main(void)
{
    RUN(test_exp_sweep);
    RUN(test_expm1_sweep);
    RUN(test_exp_special_values);
    RUN(test_activations_against_double);
    RUN(test_vector_equals_scalar);
    return CHECK_SUMMARY();
}
