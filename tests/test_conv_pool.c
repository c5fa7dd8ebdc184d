/* Conv2D + ReLU + MaxPooling2D(2x2) over few channels computed by the pool in
 * one pass (src/kernels/conv_pool.c): the same outputs and weight gradients
 * as the two layers run separately (GRAFT_NO_CONV_POOL=1), central
 * differences, NaN and ties, no buffer for the convolution's output, and the
 * models where the planner must not use it. */
#include "check.h"
#include "plan_check.h"
#include "pool_pair.h"
#include "internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

typedef pool_case ccase;

static graft_model *build(const ccase *k, unsigned seed) { return pool_pair_model("convpool", k, seed); }

static void separate_layers(bool on) { pool_pair_apart("GRAFT_NO_CONV_POOL", on); }

/* Largest |a - b| over the largest |b|, printed and checked. */
static void compare(const char *what, const float *a, const float *b, size_t n, double tol)
{
    double peak = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > peak) peak = fabs(b[i]);
        if (fabs(a[i] - b[i]) > worst) worst = fabs(a[i] - b[i]);
    }
    CHECK(peak > 0.1);
    CHECK_MSG(worst <= tol * peak, "%s differs by %.3g of peak %.3g", what, worst, peak);
    printf("  %s: max difference / peak %.2g\n", what, worst / peak);
}

/* One training step's pooled output and conv gradients (kernel, then bias). */
static void step(const ccase *k, const float *x, const float *r, bool fused, float *y, float *dw)
{
    separate_layers(!fused);
    graft_model *m = build(k, 7);
    CHECK_OK(graft_model_status(m));
    CHECK_OK(graft_model_forward(m, x, k->n, true));
    graft_layer *conv = graft_model_find(m, "conv"), *pool = graft_model_find(m, "pool");
    CHECK(in_step(m, pool, "conv_pool") == fused && in_step(m, conv, "conv_pool") == fused);
    CHECK(!fused || conv->out == NULL); /* no buffer for the convolution's output */
    memcpy(y, pool->out, out_floats(m, k->n) * sizeof(float));
    CHECK_OK(graft_model_backward(m, r, k->n));
    size_t ws = (size_t)k->k * k->k * k->c * k->f;
    memcpy(dw, conv->weights[0].grad, ws * sizeof(float));
    if (k->bias) memcpy(dw + ws, conv->weights[1].grad, (size_t)k->f * sizeof(float));
    /* Inference runs the same kernel: the same bits as training's forward. */
    if (fused) {
        float *yi = malloc(out_floats(m, k->n) * sizeof(float));
        CHECK_OK(graft_model_predict(m, x, k->n, yi));
        CHECK(memcmp(yi, y, out_floats(m, k->n) * sizeof(float)) == 0);
        free(yi);
    }
    graft_model_free(m);
    separate_layers(false);
}

static void test_matches_separate_layers(void)
{
    const ccase cases[] = {
        {3, 20, 19, 3, 32, 3, GRAFT_VALID, true}, /* the lesson's, odd output width */
        {2, 13, 16, 1, 8, 5, GRAFT_SAME, true},   /* gray, 8 filters, padding on all sides */
        {2, 11, 12, 4, 24, 3, GRAFT_SAME, false}, /* a block of 16 then one of 8, no bias */
        {1, 9, 9, 2, 48, 1, GRAFT_VALID, true},   /* 1x1 */
        {2, 24, 18, 3, 64, 7, GRAFT_VALID, true}, /* 7x7, 64 filters */
        {2, 14, 12, 3, 48, 3, GRAFT_VALID, true}, /* an odd number of windows per row, 32 + 16 */
    };
    /* The AVX-512 loops where the CPU has them, then the AVX2 ones. */
    for (int isa = graft_conv_pool_avx512() ? 0 : 1; isa < 2; isa++)
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            if (isa == 1) CHECK(setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1) == 0);
            const ccase *k = &cases[c];
            graft_model *probe = build(k, 7);
            CHECK_OK(graft_model_status(probe));
            size_t xs = (size_t)k->n * k->h * k->w * k->c, ys = out_floats(probe, k->n);
            size_t ws = (size_t)k->k * k->k * k->c * k->f + (k->bias ? (size_t)k->f : 0);
            graft_model_free(probe);
            float *x = malloc(xs * sizeof(float)), *r = malloc(ys * sizeof(float));
            float *y[2] = {malloc(ys * sizeof(float)), malloc(ys * sizeof(float))};
            float *dw[2] = {malloc(ws * sizeof(float)), malloc(ws * sizeof(float))};
            graft_rng g;
            graft_rng_seed(&g, 40 + c);
            for (size_t i = 0; i < xs; i++)
                x[i] = graft_rng_normal(&g);
            for (size_t i = 0; i < ys; i++)
                r[i] = graft_rng_normal(&g);
            const char *path = graft_conv_pool_avx512() && k->f % 16 == 0 ? "AVX-512" : "AVX2";
            step(k, x, r, true, y[0], dw[0]);
            unsetenv("ONEDNN_MAX_CPU_ISA");
            step(k, x, r, false, y[1], dw[1]);
            printf("  %dx%dx%d, %dx%d -> %d, n %d, %s:\n", k->h, k->w, k->c, k->k, k->k, k->f, k->n,
                   path);
            compare("pooled output", y[0], y[1], ys, 2e-6);
            compare("kernel and bias gradients", dw[0], dw[1], ws, 1e-5);
            for (int i = 0; i < 2; i++) {
                free(y[i]);
                free(dw[i]);
            }
            free(x);
            free(r);
        }
}

/* L = sum(pooled * r) in double. */
static double loss(graft_model *m, const float *x, const float *r, int n)
{
    CHECK_OK(graft_model_forward(m, x, n, true));
    const float *y = graft_model_output(m)->out;
    double L = 0;
    for (size_t i = 0; i < out_floats(m, n); i++)
        L += (double)y[i] * r[i];
    return L;
}

/* The fused backward against central differences of the fused forward. A
 * bias of 3 keeps the ReLUs open and a small step rarely changes which cell
 * of a window wins: the kinks that would spoil the differences. */
static void test_central_differences(void)
{
    const ccase k = {1, 8, 9, 3, 16, 3, GRAFT_SAME, true};
    graft_model *m = build(&k, 3);
    CHECK_OK(graft_model_status(m));
    float *bias = graft_model_find(m, "conv")->weights[1].data;
    for (int f = 0; f < k.f; f++)
        bias[f] = 3;
    size_t xs = (size_t)k.n * k.h * k.w * k.c, ys = out_floats(m, k.n);
    float *x = malloc(xs * sizeof(float)), *r = malloc(ys * sizeof(float));
    graft_rng g;
    graft_rng_seed(&g, 5);
    for (size_t i = 0; i < xs; i++)
        x[i] = graft_rng_normal(&g);
    for (size_t i = 0; i < ys; i++)
        r[i] = graft_rng_normal(&g);
    CHECK_OK(graft_model_forward(m, x, k.n, true));
    CHECK_OK(graft_model_backward(m, r, k.n));
    graft_layer *conv = graft_model_find(m, "conv");
    CHECK(in_step(m, graft_model_find(m, "pool"), "conv_pool"));
    int bad = 0, checked = 0;
    for (int wi = 0; wi < 2; wi++) {
        graft_shape s = graft_layer_weight_shape(conv, wi);
        size_t nw = graft_shape_size(&s);
        float *grad = malloc(nw * sizeof(float));
        memcpy(grad, conv->weights[wi].grad, nw * sizeof(float));
        for (int t = 0; t < 40; t++) {
            size_t i = graft_rng_below(&g, (uint32_t)nw);
            float *w = conv->weights[wi].data, keep = w[i];
            const double eps = 1e-3;
            w[i] = keep + (float)eps;
            double lp = loss(m, x, r, k.n);
            w[i] = keep - (float)eps;
            double lm = loss(m, x, r, k.n);
            w[i] = keep;
            double num = (lp - lm) / (2 * eps);
            checked++;
            if (!(fabs(num - grad[i]) <= 2e-3 + 2e-2 * fabs(num))) {
                bad++;
                printf("  weight %d[%zu]: numeric %.6g, analytic %.6g\n", wi, i, num,
                       (double)grad[i]);
            }
        }
        free(grad);
    }
    CHECK_MSG(bad == 0, "%d of %d gradients off", bad, checked);
    free(x);
    free(r);
    graft_model_free(m);
}

/* A NaN pixel: the convolution outputs that read it are NaN (ReLU keeps NaN,
 * as in TF) and a window's maximum is NaN exactly when its first cell is
 * (a NaN never replaces a maximum): here the window at (2, 2) only. oneDNN's
 * ReLU turns some NaNs into 0, so the separate layers are no reference here.
 * All-zero input and weights: every maximum is 0, a tie of four, and no
 * gradient passes the ReLU. */
static void test_nan_and_ties(void)
{
    const ccase k = {1, 12, 12, 3, 16, 3, GRAFT_VALID, true};
    size_t xs = 12 * 12 * 3, ys = 5 * 5 * 16, ws = 27 * 16 + 16;
    float *x = calloc(xs, sizeof(float)), *r = malloc(ys * sizeof(float));
    float *y = malloc(ys * sizeof(float)), *dw = malloc(ws * sizeof(float));
    for (size_t i = 0; i < ys; i++)
        r[i] = 1;
    for (size_t i = 0; i < xs; i++)
        x[i] = (float)((i * 7) % 11) / 11 - 0.4f;
    x[(5 * 12 + 5) * 3 + 1] = NAN;
    step(&k, x, r, true, y, dw);
    for (size_t i = 0; i < ys; i++)
        CHECK_MSG(!isnan(y[i]) == (i / 16 != 2 * 5 + 2), "output %zu: %g", i, (double)y[i]);

    memset(x, 0, xs * sizeof(float));
    graft_model *m = build(&k, 1);
    graft_layer *conv = graft_model_find(m, "conv");
    for (int j = 0; j < 2; j++) {
        graft_shape s = graft_layer_weight_shape(conv, j);
        memset(graft_layer_weight_data(conv, j), 0, graft_shape_size(&s) * sizeof(float));
    }
    CHECK_OK(graft_model_forward(m, x, 1, true));
    CHECK_OK(graft_model_backward(m, r, 1));
    for (size_t i = 0; i < ys; i++)
        CHECK(graft_model_output(m)->out[i] == 0);
    for (size_t i = 0; i < 27 * 16; i++)
        CHECK(conv->weights[0].grad[i] == 0);
    for (size_t i = 0; i < 16; i++)
        CHECK(conv->weights[1].grad[i] == 0);
    graft_model_free(m);
    free(y);
    free(dw);
    free(x);
    free(r);
}

/* The kernels against a scalar reference of the same arithmetic: each cell
 * the bias, then one fmaf per kernel row in HWIO order (the padding as
 * zeros), the ReLU of the first cell, then a later cell wins when it is
 * larger (so the first of equal ones wins and a NaN never replaces), code 4
 * when the maximum is not positive. The pooled outputs and codes must be the
 * same bits. The gradients: in double, each window's four cells times their
 * masked gradients, x * 0 for the cells that lost (NaN for an input that is
 * not finite, as the kernels' four-cell sums give). */
typedef struct {
    int n, h, w, c, f, k;
    graft_padding pad;
} kcase;

static float in_at(const graft_conv_geom *g, const float *x, int s, int y, int xx, int c)
{
    if (y < 0 || y >= g->h || xx < 0 || xx >= g->w) return 0.0f;
    return x[(((size_t)s * g->h + y) * g->w + xx) * g->c + c];
}

static void ref_forward(const graft_conv_geom *g, int F, int n, const float *x, const float *w,
                        const float *bias, float *y, uint8_t *code)
{
    const int OH = g->oh / 2, OW = g->ow / 2;
    for (int s = 0; s < n; s++)
        for (int py = 0; py < OH; py++)
            for (int px = 0; px < OW; px++)
                for (int f = 0; f < F; f++) {
                    float v[4];
                    for (int p = 0; p < 4; p++) {
                        const int oy = 2 * py + p / 2, ox = 2 * px + p % 2;
                        float acc = bias[f];
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++)
                                for (int c = 0; c < g->c; c++)
                                    acc = fmaf(in_at(g, x, s, oy + ky - g->pad_top,
                                                     ox + kx - g->pad_left, c),
                                               w[((size_t)(ky * g->kw + kx) * g->c + c) * F + f],
                                               acc);
                        v[p] = acc;
                    }
                    float m = 0.0f > v[0] ? 0.0f : v[0];
                    int k = 0;
                    for (int p = 1; p < 4; p++)
                        if (v[p] > m) {
                            m = v[p];
                            k = p;
                        }
                    const size_t o = (((size_t)s * OH + py) * OW + px) * F + f;
                    y[o] = m;
                    code[o] = (uint8_t)(m > 0 ? k : 4);
                }
}

static void ref_backward(const graft_conv_geom *g, int F, int n, const float *x, const float *dy,
                         const uint8_t *code, double *dw, double *db)
{
    const int OH = g->oh / 2, OW = g->ow / 2, K = g->kh * g->kw * g->c;
    memset(dw, 0, (size_t)K * F * sizeof(double));
    memset(db, 0, (size_t)F * sizeof(double));
    for (int s = 0; s < n; s++)
        for (int py = 0; py < OH; py++)
            for (int px = 0; px < OW; px++)
                for (int f = 0; f < F; f++) {
                    const size_t o = (((size_t)s * OH + py) * OW + px) * F + f;
                    if (code[o] < 4) db[f] += dy[o];
                    for (int p = 0; p < 4; p++) {
                        const double gp = code[o] == p ? dy[o] : 0.0;
                        const int oy = 2 * py + p / 2, ox = 2 * px + p % 2;
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++)
                                for (int c = 0; c < g->c; c++)
                                    dw[((size_t)(ky * g->kw + kx) * g->c + c) * F + f] +=
                                        (double)in_at(g, x, s, oy + ky - g->pad_top,
                                                      ox + kx - g->pad_left, c) *
                                        gp;
                    }
                }
}

/* Same bits, or both NaN. */
static bool same_float(float a, float b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* NaN where the reference is NaN, the same infinity, else within tol of
 * the largest finite |reference|. */
static void compare_grad(const char *what, const float *got, const double *ref, size_t n,
                         double tol)
{
    double peak = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > peak) peak = fabs(ref[i]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok = isnan(ref[i])   ? isnan(got[i])
                  : isinf(ref[i]) ? got[i] == ref[i]
                                  : fabs(got[i] - ref[i]) <= tol * peak;
        if (!ok && bad++ < 3)
            printf("  %s[%zu]: %.9g, reference %.9g\n", what, i, (double)got[i], ref[i]);
    }
    CHECK_MSG(bad == 0, "%s: %d of %zu off", what, bad, n);
}

static void test_kernels_against_reference(void)
{
    /* Windows per row (OW) and filters chosen for every blocking and
     * remainder of both instruction sets: AVX2 three windows on 16 filters
     * (OW % 3 = 0, 1, 2 left), six on a last 8 (OW % 6 = 0 .. 5 left);
     * one to four channels (the backward's tables differ for four). */
    const kcase cases[] = {
        {2, 9, 16, 3, 32, 3, GRAFT_VALID}, /* OW 7: 3 3 1 */
        {2, 9, 12, 3, 24, 3, GRAFT_VALID}, /* OW 5: 3 2; last 8: 3 2 */
        {1, 8, 18, 1, 24, 3, GRAFT_SAME},  /* OW 9; last 8: 6 3 */
        {2, 7, 17, 2, 40, 5, GRAFT_SAME},  /* OW 8: 3 3 2; last 8: 6 2 */
        {1, 10, 14, 4, 8, 3, GRAFT_SAME},  /* OW 7, only 8 filters: 6 1 */
        {2, 8, 8, 2, 8, 1, GRAFT_VALID},   /* OW 4: 3 1 */
        {2, 6, 8, 3, 16, 3, GRAFT_VALID},  /* OW 3 */
        {1, 5, 5, 3, 24, 1, GRAFT_VALID},  /* OW 2 */
        {2, 4, 4, 3, 16, 3, GRAFT_VALID},  /* OW 1 */
        {1, 11, 13, 3, 48, 7, GRAFT_SAME}, /* 7x7: 147 kernel rows */
        {3, 8, 11, 4, 64, 3, GRAFT_VALID}, /* four channels, 64 filters */
    };
    for (int isa = graft_conv_pool_avx512() ? 0 : 1; isa < 2; isa++) {
        if (isa == 1) CHECK(setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1) == 0);
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
            const kcase *kc = &cases[ci];
            graft_conv_geom g;
            graft_shape in = graft_shape3(kc->h, kc->w, kc->c);
            graft_conv_geom_init(&g, &in, (const int[2]){kc->k, kc->k}, (const int[2]){1, 1},
                                 kc->pad);
            const int F = kc->f, K = kc->k * kc->k * kc->c;
            const char *path = graft_conv_pool_avx512() && F % 16 == 0 ? "AVX-512" : "AVX2";
            CHECK(graft_conv_pool_fits(&g, F));
            const size_t xs = (size_t)kc->n * kc->h * kc->w * kc->c;
            const size_t ys = (size_t)kc->n * (g.oh / 2) * (g.ow / 2) * F;
            float *x = malloc(xs * sizeof(float)), *w = malloc((size_t)K * F * sizeof(float));
            float *bias = malloc((size_t)F * sizeof(float)), *dy = malloc(ys * sizeof(float));
            float *y = malloc(ys * sizeof(float)), *yr = malloc(ys * sizeof(float));
            float *dw = malloc((size_t)K * F * sizeof(float)), *db = malloc(F * sizeof(float));
            double *dwr = malloc((size_t)K * F * sizeof(double)), *dbr = malloc(F * sizeof(double));
            uint8_t *code = malloc(ys), *coder = malloc(ys);
            size_t sf = graft_conv_pool_scratch_floats(&g, F);
            float *scratch = aligned_alloc(64, (sf * sizeof(float) + 63) / 64 * 64);
            graft_rng r;
            graft_rng_seed(&r, 100 + ci);
            /* 0: normal values; 1: multiples of 1/4 and 1/8, exact sums
             * with many ties and zeros; 2: as 0 with a NaN in the first
             * sample and an Inf in the last. */
            for (int data = 0; data < 3; data++) {
                for (size_t i = 0; i < xs; i++)
                    x[i] = data == 1 ? (float)((int)graft_rng_below(&r, 5) - 2) / 4
                                     : graft_rng_normal(&r);
                for (int i = 0; i < K * F; i++)
                    w[i] = data == 1 ? (float)((int)graft_rng_below(&r, 3) - 1) / 8
                                     : 0.4f * graft_rng_normal(&r);
                for (int i = 0; i < F; i++)
                    bias[i] = data == 1 ? (float)((int)graft_rng_below(&r, 3) - 1) / 8
                                        : 0.2f * graft_rng_normal(&r);
                for (size_t i = 0; i < ys; i++)
                    dy[i] = graft_rng_normal(&r);
                if (data == 2) {
                    x[graft_rng_below(&r, (uint32_t)(xs / kc->n))] = NAN;
                    x[xs - 1 - graft_rng_below(&r, (uint32_t)(xs / kc->n))] = INFINITY;
                }
                graft_conv_pool_forward(&g, F, kc->n, x, w, bias, y, code, scratch);
                ref_forward(&g, F, kc->n, x, w, bias, yr, coder);
                int diff = 0;
                for (size_t i = 0; i < ys; i++)
                    diff += !same_float(y[i], yr[i]) || code[i] != coder[i];
                CHECK_MSG(diff == 0, "%s, case %zu, data %d: %d of %zu outputs or codes differ",
                          path, ci, data, diff, ys);
                graft_conv_pool_backward_weights(&g, F, kc->n, x, dy, code, dw, db, scratch);
                ref_backward(&g, F, kc->n, x, dy, code, dwr, dbr);
                compare_grad("kernel gradient", dw, dwr, (size_t)K * F, 1e-5);
                compare_grad("bias gradient", db, dbr, (size_t)F, 1e-5);
            }
            printf("  %dx%dx%d, %dx%d -> %d, n %d, %s: same outputs and codes\n", kc->h, kc->w,
                   kc->c, kc->k, kc->k, F, kc->n, path);
            free(x), free(w), free(bias), free(dy), free(y), free(yr), free(dw), free(db);
            free(dwr), free(dbr), free(code), free(coder), free(scratch);
        }
    }
    unsetenv("ONEDNN_MAX_CPU_ISA");
}

/* Whether the pool of `m` computes its convolution, after a training pass. */
static bool fused_in(graft_model *m, const char *pool, int h, int w, int c)
{
    CHECK_OK(graft_model_status(m));
    float *x = calloc((size_t)2 * h * w * c, sizeof(float));
    CHECK_OK(graft_model_forward(m, x, 2, true));
    free(x);
    return in_step(m, graft_model_find(m, pool), "conv_pool");
}

static void test_where_it_applies(void)
{
    graft_conv2d_cfg relu16 = {.filters = 16, .kernel_size = {3, 3}, .activation = GRAFT_RELU};
    /* The lesson's first layer: yes. */
    graft_model *m = graft_model_new("a");
    graft_input(m, NULL, graft_shape3(16, 16, 3));
    graft_conv2d(m, NULL, relu16);
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.name = "p"});
    CHECK(fused_in(m, "p", 16, 16, 3));
    graft_model_free(m);
    /* The input needs a gradient (a second convolution of 3 channels over a
     * trainable first): no. Frozen first convolution: yes. */
    for (int frozen = 0; frozen < 2; frozen++) {
        m = graft_model_new("b");
        graft_input(m, NULL, graft_shape3(16, 16, 3));
        graft_layer *c1 =
            graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 3, .kernel_size = {3, 3}});
        graft_conv2d(m, NULL, relu16);
        graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.name = "p"});
        graft_layer_set_trainable(c1, !frozen);
        CHECK(fused_in(m, "p", 16, 16, 3) == (frozen == 1));
        graft_model_free(m);
    }
    /* Not a 2x2 stride-2 'valid' pool, not ReLU, too many channels, or a
     * second reader of the convolution: no. */
    for (int v = 0; v < 5; v++) {
        m = graft_model_new("c");
        graft_input(m, NULL, graft_shape3(16, 16, v == 3 ? 8 : 3));
        graft_conv2d_cfg cc = relu16;
        if (v == 2) cc.activation = GRAFT_LINEAR;
        graft_layer *conv = graft_conv2d(m, NULL, cc);
        graft_pool2d_cfg pc = {.name = "p"};
        if (v == 0) pc.strides[0] = pc.strides[1] = 1;
        if (v == 1) pc.padding = GRAFT_SAME;
        graft_layer *p = graft_max_pooling2d(m, NULL, pc);
        if (v == 4) {
            graft_layer *g = graft_global_average_pooling2d(m, conv, NULL);
            graft_layer *q = graft_global_average_pooling2d(m, p, NULL);
            graft_layer *both[2] = {g, q};
            graft_add(m, NULL, 2, both);
        }
        CHECK_MSG(!fused_in(m, "p", 16, 16, v == 3 ? 8 : 3), "variant %d", v);
        graft_model_free(m);
    }
}

/* Per-thread scratch is sized when the model plans its buffers: a later,
 * larger thread count plans again (under ASan an overflow would show). */
static void test_thread_count_change(void)
{
    const ccase k = {2, 20, 20, 3, 32, 3, GRAFT_VALID, true};
    int before = graft_threads_get();
    graft_model *m = build(&k, 9);
    CHECK_OK(graft_model_status(m));
    size_t xs = (size_t)k.n * k.h * k.w * k.c, ys = out_floats(m, k.n), ws = 27 * 32;
    float *x = malloc(xs * sizeof(float)), *r = malloc(ys * sizeof(float));
    float *dw[2] = {malloc(ws * sizeof(float)), malloc(ws * sizeof(float))};
    graft_rng g;
    graft_rng_seed(&g, 11);
    for (size_t i = 0; i < xs; i++) x[i] = graft_rng_normal(&g);
    for (size_t i = 0; i < ys; i++) r[i] = graft_rng_normal(&g);
    for (int t = 0; t < 2; t++) {
        graft_threads_set(t == 0 ? 1 : 6);
        CHECK_OK(graft_model_forward(m, x, k.n, true));
        CHECK(m->planned_threads == (t == 0 ? 1 : 6));
        CHECK_OK(graft_model_backward(m, r, k.n));
        memcpy(dw[t], graft_model_find(m, "conv")->weights[0].grad, ws * sizeof(float));
    }
    graft_threads_set(before);
    compare("kernel gradient, 6 threads against 1", dw[1], dw[0], ws, 1e-6);
    for (int i = 0; i < 2; i++) free(dw[i]);
    free(x);
    free(r);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_matches_separate_layers);
    RUN(test_central_differences);
    RUN(test_nan_and_ties);
    RUN(test_kernels_against_reference);
    RUN(test_where_it_applies);
    RUN(test_thread_count_change);
    return CHECK_SUMMARY();
}
