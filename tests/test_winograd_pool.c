/* A ReLU Conv2D on the Winograd path and the 2x2 max pool reading it, pooled
 * in the convolution's output transform (the plan's winograd_pool step,
 * src/kernels/winograd.c and src/layers/pooling.c): the same bits as the two
 * layers run apart (GRAFT_NO_WINOGRAD_POOL=1) for the pooled output, the
 * kernel, bias and input gradients, over odd output sizes, partial tiles,
 * channel counts off the vector width and batches of 1 and 5; training's
 * forward against predict's; central differences; NaN and ties; the lesson's
 * stack across a change of thread count; and the models the planner must
 * leave alone. */
#include "check.h"
#include "plan_check.h"
#include "gradcheck.h"
#include "pool_pair.h"
#include "internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef pool_case pcase; /* k = 3 */

static graft_model *build(const pcase *k, unsigned seed) { return pool_pair_model("wpool", k, seed); }

static void separate_layers(bool on) { pool_pair_apart("GRAFT_NO_WINOGRAD_POOL", on); }

/* Bit for bit, NaNs included; otherwise the largest difference is printed. */
static void same_bits(const char *what, const float *a, const float *b, size_t n)
{
    if (memcmp(a, b, n * sizeof(float)) == 0) return;
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > worst || (isnan(a[i]) != isnan(b[i]))) {
            worst = isnan(a[i]) != isnan(b[i]) ? INFINITY : fabs((double)a[i] - b[i]);
            at = i;
        }
    CHECK_MSG(0, "%s: not the same bits; worst at %zu: %.9g vs %.9g", what, at, (double)a[at],
              (double)b[at]);
}

/* Within `rel` of the largest |a|: for sums the two sides order apart. */
static void near(const char *what, const float *a, const float *b, size_t n, double rel)
{
    double peak = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)a[i]) > peak) peak = fabs((double)a[i]);
        if (!(fabs((double)a[i] - b[i]) <= worst)) {
            worst = fabs((double)a[i] - b[i]);
            at = i;
        }
    }
    CHECK_MSG(worst <= rel * peak, "%s: %.3g of peak %.6g at %zu (%.9g vs %.9g)", what,
              worst / peak, peak, at, (double)a[at], (double)b[at]);
}

/* One training step (and a predict) of the model of `k`: what the tests compare. */
typedef struct {
    float *y, *yp, *dw, *db, *dx, *dz; /* pooled out, predict's, dkernel, dbias, dL/dx, conv dout */
    float *yf;                         /* training's forward with the convolution frozen */
    size_t arena;
} result;

static result step(const pcase *k, const float *x, const float *r, bool fused)
{
    separate_layers(!fused);
    graft_model *m = build(k, 7);
    CHECK_OK(graft_model_status(m));
    m->want_input_grad = true;
    size_t xs = (size_t)k->n * k->h * k->w * k->c, ys = out_floats(m, k->n);
    graft_layer *conv = graft_model_find(m, "conv"), *pool = graft_model_find(m, "pool");
    size_t zs = (size_t)k->n * graft_shape_size(&conv->out_shape), ws = (size_t)9 * k->c * k->f;
    result o = {malloc(ys * sizeof(float)),
                malloc(ys * sizeof(float)),
                malloc(ws * sizeof(float)),
                calloc((size_t)k->f, sizeof(float)),
                malloc(xs * sizeof(float)),
                malloc(zs * sizeof(float)),
                malloc(ys * sizeof(float)),
                0};
    CHECK_OK(graft_model_forward(m, x, k->n, true));
    CHECK(in_step(m, conv, "winograd_pool") == fused && in_step(m, pool, "winograd_pool") == fused);
    CHECK(!fused || conv->out == NULL); /* no buffer for the convolution's output */
    CHECK(conv->dout != NULL);          /* but one for its gradient */
    memcpy(o.y, pool->out, ys * sizeof(float));
    CHECK_OK(graft_model_backward(m, r, k->n));
    memcpy(o.dw, conv->weights[0].grad, ws * sizeof(float));
    if (k->bias) memcpy(o.db, conv->weights[1].grad, (size_t)k->f * sizeof(float));
    memcpy(o.dx, graft_model_layer(m, 0)->dout, xs * sizeof(float));
    memcpy(o.dz, conv->dout, zs * sizeof(float));
    o.arena = m->arena_floats;
    /* Inference: the pooled pass too, the same bits as training's forward. */
    m->want_input_grad = false;
    CHECK_OK(graft_model_predict(m, x, k->n, o.yp));
    CHECK(in_step(m, conv, "winograd_pool") == fused && (!fused || conv->out == NULL));
    /* Frozen, training's forward takes predict's path (graft_pw_gemm's chains). */
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
    CHECK_OK(graft_model_forward(m, x, k->n, true));
    memcpy(o.yf, pool->out, ys * sizeof(float));
    graft_model_free(m);
    separate_layers(false);
    return o;
}

static void result_free(result *o)
{
    free(o->y);
    free(o->yp);
    free(o->dw);
    free(o->db);
    free(o->dx);
    free(o->dz);
    free(o->yf);
}

static void test_matches_separate_layers(void)
{
    const pcase cases[] = {
        {5, 18, 17, 16, 24, 3, GRAFT_VALID, true}, /* 16x15: odd width, 16 + 8 filters */
        {2, 13, 14, 20, 17, 3, GRAFT_SAME, true},  /* 13x14: odd height, 17 filters */
        {4, 11, 11, 16, 16, 3, GRAFT_SAME, false}, /* 11x11: partial tiles of 3, no bias */
        {5, 7, 13, 19, 33, 3, GRAFT_SAME, true},   /* 7x13: a last tile one column wide */
        {4, 4, 34, 16, 16, 3, GRAFT_VALID, true},  /* 2x32: one row of partial tiles */
        {2, 26, 26, 32, 64, 3, GRAFT_VALID, true}, /* the lesson's channels, 24x24 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const pcase *k = &cases[c];
        graft_model *probe = build(k, 7);
        CHECK_OK(graft_model_status(probe));
        size_t xs = (size_t)k->n * k->h * k->w * k->c, ys = out_floats(probe, k->n);
        size_t zs = (size_t)k->n * graft_shape_size(&graft_model_find(probe, "conv")->out_shape);
        graft_model_free(probe);
        float *x = malloc(xs * sizeof(float)), *r = malloc(ys * sizeof(float));
        graft_rng g;
        graft_rng_seed(&g, 50 + c);
        fill_normal(x, xs, 1, &g);
        fill_normal(r, ys, 1, &g);
        result a = step(k, x, r, true), b = step(k, x, r, false);
        printf("  %dx%dx%d -> %d, n %d\n", k->h, k->w, k->c, k->f, k->n);
        /* The Winograd arithmetic and the pool's comparisons are the same:
         * every value must be the same float. */
        same_bits("pooled output", a.y, b.y, ys);
        same_bits("predict's pooled output", a.yp, b.yp, ys);
        /* A trainable convolution's training forward multiplies with
         * dnnl_sgemm, predict with graft_pw_gemm's one chain per output: the
         * same products summed in an order that differs with oneDNN's ISA
         * (AVX2 splits what AVX-512 chains). Frozen, the same path and bits. */
        near("predict against training's forward", a.y, a.yp, ys, 1e-5);
        same_bits("predict against training's forward, frozen", a.yp, a.yf, ys);
        same_bits("training's forward, frozen, fused against apart", a.yf, b.yf, ys);
        same_bits("convolution's dout", a.dz, b.dz, zs);
        same_bits("kernel gradient", a.dw, b.dw, (size_t)9 * k->c * k->f);
        same_bits("bias gradient", a.db, b.db, (size_t)k->f);
        same_bits("input gradient", a.dx, b.dx, xs);
        /* Not trivially equal: some windows pass nothing, some pass gradient. */
        size_t zero = 0, nonzero = 0;
        for (size_t i = 0; i < zs; i++)
            a.dz[i] == 0 ? zero++ : nonzero++;
        CHECK(nonzero > zs / 16 && zero > zs / 2);
        CHECK_MSG(a.arena < b.arena, "arena %zu floats fused, %zu apart", a.arena, b.arena);
        result_free(&a);
        result_free(&b);
        free(x);
        free(r);
    }
}

/* tests/gradcheck.h through the pooled pair (input, kernel and bias). The
 * kinks of max and ReLU would spoil central differences, so every window
 * gets a clear winner: channel 0 of the input holds one of 0, 10, 20, 30 per
 * cell of each 2x2 window, in a random order, and reaches every filter
 * through the kernel's centre tap alone (weight 1); with a bias of 3 the
 * winner is positive. Odd width: a dropped column and a one-column tile. */
static void test_central_differences(void)
{
    const pcase k = {2, 10, 9, 16, 20, 3, GRAFT_SAME, true};
    graft_model *m = build(&k, 3);
    CHECK_OK(graft_model_status(m));
    graft_layer *conv = graft_model_find(m, "conv");
    float *W = conv->weights[0].data, *bias = conv->weights[1].data;
    for (int f = 0; f < k.f; f++) {
        bias[f] = 3;
        for (int t = 0; t < 9; t++)
            W[((size_t)t * k.c + 0) * k.f + f] = t == 4 ? 1.0f : 0.0f;
    }
    size_t xs = (size_t)k.n * k.h * k.w * k.c;
    float *x = malloc(xs * sizeof(float));
    graft_rng g;
    graft_rng_seed(&g, 17);
    fill_normal(x, xs, 1, &g);
    for (int s = 0; s < k.n; s++)
        for (int wy = 0; wy < k.h / 2; wy++)
            for (int wx = 0; wx < (k.w + 1) / 2; wx++) {
                int perm[4] = {0, 1, 2, 3};
                for (int i = 3; i > 0; i--) {
                    int j = (int)graft_rng_below(&g, (uint32_t)i + 1), t = perm[i];
                    perm[i] = perm[j];
                    perm[j] = t;
                }
                for (int cell = 0; cell < 4; cell++) {
                    int yy = 2 * wy + cell / 2, xx = 2 * wx + cell % 2;
                    if (xx < k.w) x[(((size_t)s * k.h + yy) * k.w + xx) * k.c] = 10.0f * perm[cell];
                }
            }
    CHECK_MSG(gradcheck_model(m, k.n, x, 23, 60) == 0, "fused pair");
    CHECK(in_step(m, conv, "winograd_pool") && in_step(m, graft_model_find(m, "pool"), "winograd_pool"));
    free(x);
    graft_model_free(m);
}

/* NaN: a pooled output is NaN exactly when its window's first cell is (a
 * NaN never replaces a maximum) and passes no gradient (code 4). (The
 * Winograd transforms spread a NaN input over whole 4x4 output tiles, which
 * hold whole windows, so here a window is NaN in all its cells or none: the
 * count printed of windows NaN past their first cell only.) Ties at
 * zero (all-zero weights and bias): every maximum is 0 and nothing passes
 * the ReLU. Ties above zero (zero weights, bias 1): the first cell wins. */
static void test_nan_and_ties(void)
{
    /* Two images (the NaN in the first): inference takes Winograd from 32
     * tiles a call (graft_winograd_pays), and a 14x14 image has 16. */
    const pcase k = {1, 14, 14, 16, 16, 3, GRAFT_SAME, true};
    const pcase k2 = {2, 14, 14, 16, 16, 3, GRAFT_SAME, true};
    const size_t xs = 14 * 14 * 16, ys = 7 * 7 * 16, zs = 14 * 14 * 16;
    float *x = malloc(2 * xs * sizeof(float)), *r = malloc(2 * ys * sizeof(float));
    graft_rng g;
    graft_rng_seed(&g, 3);
    fill_normal(x, 2 * xs, 1, &g);
    fill_normal(r, 2 * ys, 1, &g);
    x[(5 * 14 + 6) * 16 + 2] = NAN;
    /* The convolution's output, from the layers run apart. */
    separate_layers(true);
    graft_model *m = build(&k2, 7);
    CHECK_OK(graft_model_forward(m, x, 2, false));
    float *z = malloc(2 * zs * sizeof(float));
    memcpy(z, graft_model_find(m, "conv")->out, 2 * zs * sizeof(float));
    graft_model_free(m);
    separate_layers(false);
    result a = step(&k2, x, r, true), b = step(&k2, x, r, false);
    same_bits("pooled output with a NaN", a.y, b.y, 2 * ys);
    same_bits("convolution's dout with a NaN", a.dz, b.dz, 2 * zs);
    same_bits("input gradient with a NaN", a.dx, b.dx, 2 * xs);
    size_t nans = 0, first_nan_only = 0;
    for (int py = 0; py < 7; py++)
        for (int px = 0; px < 7; px++)
            for (int f = 0; f < 16; f++) {
                size_t o = ((size_t)py * 7 + px) * 16 + f;
                const float *c0 = z + ((size_t)(2 * py) * 14 + 2 * px) * 16 + f;
                bool later = isnan(c0[16]) || isnan(c0[14 * 16]) || isnan(c0[15 * 16]);
                CHECK(isnan(a.y[o]) == isnan(*c0));
                nans += isnan(a.y[o]);
                first_nan_only += !isnan(*c0) && later;
                /* No gradient reaches any cell of a NaN window. */
                if (isnan(*c0))
                    for (int cell = 0; cell < 4; cell++)
                        CHECK(
                            a.dz[((size_t)(2 * py + cell / 2) * 14 + 2 * px + cell % 2) * 16 + f] ==
                            0);
            }
    CHECK(nans > 0 && nans < ys);
    printf("  %zu NaN outputs; %zu windows with a NaN past their first cell\n", nans,
           first_nan_only);
    result_free(&a);
    result_free(&b);
    free(z);

    x[(5 * 14 + 6) * 16 + 2] = 0;
    for (int tie = 0; tie < 2; tie++) {
        m = build(&k, 1);
        graft_layer *conv = graft_model_find(m, "conv");
        memset(conv->weights[0].data, 0, (size_t)9 * 16 * 16 * sizeof(float));
        for (int f = 0; f < 16; f++)
            conv->weights[1].data[f] = tie ? 1.0f : 0.0f;
        m->want_input_grad = true;
        CHECK_OK(graft_model_forward(m, x, 1, true));
        CHECK(in_step(m, conv, "winograd_pool"));
        CHECK_OK(graft_model_backward(m, r, 1));
        const float *y = graft_model_output(m)->out;
        size_t bad = 0;
        for (size_t i = 0; i < ys; i++)
            bad += y[i] != (tie ? 1.0f : 0.0f);
        /* The gradient reaches the first cell of each window, or nothing. */
        for (size_t i = 0; i < zs; i++) {
            size_t cell = i / 16, yy = cell / 14, xx = cell % 14;
            float want =
                tie && yy % 2 == 0 && xx % 2 == 0 ? r[((yy / 2) * 7 + xx / 2) * 16 + i % 16] : 0.0f;
            bad += conv->dout[i] != want;
        }
        if (!tie) {
            for (size_t i = 0; i < (size_t)9 * 16 * 16; i++)
                bad += conv->weights[0].grad[i] != 0;
            for (int f = 0; f < 16; f++)
                bad += conv->weights[1].grad[f] != 0;
        }
        CHECK_MSG(bad == 0, "ties at %d: %zu values off", tie, bad);
        graft_model_free(m);
    }
    free(x);
    free(r);
}

/* The lesson's stack, small: conv+pool of the image (kernels/conv_pool.c),
 * then the Winograd conv with its pool, Flatten, Dense, Dense. */
static graft_model *lesson(bool freeze_conv2)
{
    graft_model *m = graft_model_new("lesson");
    graft_input(m, NULL, graft_shape3(32, 31, 3)); /* conv2's output: 13x12 */
    graft_conv2d(
        m, NULL,
        (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
    graft_layer *c2 = graft_conv2d(
        m, NULL,
        (graft_conv2d_cfg){
            .name = "conv2", .filters = 24, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.name = "pool2"});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 8, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1});
    graft_layer_set_trainable(c2, !freeze_conv2);
    return m;
}

/* Gradients of every weight after two steps (the same weights), the first
 * at `threads` threads, the second at `then`: the model plans again. */
static float *lesson_grads(bool freeze, bool fused, int threads, int then, const float *x,
                           const float *r, int n)
{
    separate_layers(!fused);
    graft_model *m = lesson(freeze);
    CHECK_OK(graft_model_status(m));
    size_t nw = m->n_weight_floats;
    float *dw = malloc(2 * nw * sizeof(float));
    for (int t = 0; t < 2; t++) {
        graft_threads_set(t == 0 ? threads : then);
        CHECK_OK(graft_model_forward(m, x, n, true));
        CHECK(in_step(m, graft_model_find(m, "conv2"), "winograd_pool") == fused);
        CHECK(m->planned_threads == graft_threads());
        CHECK_OK(graft_model_backward(m, r, n));
        memcpy(dw + t * nw, m->grads, nw * sizeof(float));
    }
    graft_model_free(m);
    separate_layers(false);
    return dw;
}

static void test_lesson_stack_and_threads(void)
{
    int before = graft_threads_get();
    const int n = 5;
    const size_t xs = (size_t)n * 32 * 31 * 3;
    float *x = malloc(xs * sizeof(float)), r[5];
    graft_rng g;
    graft_rng_seed(&g, 8);
    fill_normal(x, xs, 1, &g);
    fill_normal(r, 5, 1, &g);
    graft_model *probe = lesson(false);
    size_t nw = probe->n_weight_floats;
    graft_model_free(probe);
    /* conv2 trained, then frozen (its input gradient only). */
    for (int freeze = 0; freeze < 2; freeze++)
        for (int order = 0; order < 2; order++) {
            int t0 = order ? 3 : 1, t1 = order ? 1 : 3;
            float *a = lesson_grads(freeze, true, t0, t1, x, r, n);
            float *b = lesson_grads(freeze, false, t0, t1, x, r, n);
            same_bits("all gradients, both steps", a, b, 2 * nw);
            /* The thread count changes only the order of some sums. */
            double peak = 0, worst = 0;
            for (size_t i = 0; i < nw; i++) {
                peak = fmax(peak, fabs(a[i]));
                worst = fmax(worst, fabs(a[i] - a[nw + i]));
            }
            CHECK_MSG(peak > 0 && worst <= 1e-5 * peak, "%d threads against %d: %.3g of %.3g", t1,
                      t0, worst, peak);
            printf("  conv2 %s, %d then %d threads: the same bits apart; %.2g of peak between "
                   "the steps\n",
                   freeze ? "frozen" : "trained", t0, t1, worst / peak);
            free(a);
            free(b);
        }
    graft_threads_set(before);
    free(x);
}

/* Whether the planner pooled `conv` into its Winograd pass, after a pass. */
static bool pooled(graft_model *m, const char *conv, bool training)
{
    CHECK_OK(graft_model_status(m));
    const graft_layer *in = graft_model_layer(m, 0);
    /* Four 12x12 images: 36 tiles, enough for Winograd in inference. */
    float *x = calloc((size_t)4 * graft_shape_size(&in->out_shape), sizeof(float));
    CHECK_OK(graft_model_forward(m, x, 4, training));
    free(x);
    const graft_layer *c = graft_model_find(m, conv);
    bool on = in_step(m, c, "winograd_pool");
    CHECK(on == in_step(m, m->layers[c->index + 1], "winograd_pool"));
    CHECK(on == (c->out == NULL) || in_step(m, c, "conv_pool"));
    return on;
}

static void test_where_it_applies(void)
{
    graft_conv2d_cfg relu32 = {
        .name = "c", .filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU};
    for (int training = 0; training < 2; training++) {
        /* Yes: in training and in inference. */
        graft_model *m = graft_model_new("yes");
        graft_input(m, NULL, graft_shape3(12, 12, 16));
        graft_conv2d(m, NULL, relu32);
        graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
        CHECK(pooled(m, "c", training));
        /* GRAFT_NO_WINOGRAD_POOL=1 keeps them apart. */
        separate_layers(true);
        m->capacity = 0;
        CHECK(!pooled(m, "c", training));
        separate_layers(false);
        graft_model_free(m);
    }
    /* A plan for one 12x12 image (9 tiles): with AVX-512, inference takes
     * direct convolution and the pool apart; training keeps the pair. */
    for (int training = 0; training < 2; training++) {
        graft_model *m = graft_model_new("one");
        graft_input(m, NULL, graft_shape3(12, 12, 16));
        graft_layer *c = graft_conv2d(m, NULL, relu32);
        graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
        float *x = calloc((size_t)12 * 12 * 16, sizeof(float));
        CHECK_OK(graft_model_forward(m, x, 1, training));
        free(x);
        const bool wino = training || !graft_kernels_avx512();
        CHECK(in_step(m, c, "winograd_pool") == wino);
        CHECK(strstr(graft_conv2d_algorithm(c, training, 1), wino ? "Winograd" : "direct"));
        graft_model_free(m);
    }
    /* No: not ReLU; a pool that is not 2x2 stride 2 'valid' (stride 1, 'same'
     * padding, 3x3); a folded BatchNorm (inference); not on the Winograd
     * path (5x5, stride 2, 8 input channels, GRAFT_NO_WINOGRAD=1); the
     * image's convolution (computed by its pool); a second reader. */
    for (int v = 0; v < 11; v++) {
        graft_model *m = graft_model_new("no");
        graft_input(m, NULL, graft_shape3(12, 12, v == 7 ? 8 : v == 9 ? 3 : 16));
        graft_conv2d_cfg cc = relu32;
        if (v == 0) cc.activation = GRAFT_LINEAR;
        if (v == 5) cc.kernel_size[0] = cc.kernel_size[1] = 5;
        if (v == 6) cc.strides[0] = cc.strides[1] = 2;
        if (v == 8) CHECK(setenv("GRAFT_NO_WINOGRAD", "1", 1) == 0);
        graft_layer *conv = graft_conv2d(m, NULL, cc);
        unsetenv("GRAFT_NO_WINOGRAD");
        if (v == 4) graft_batch_norm(m, NULL, (graft_batch_norm_cfg){0});
        graft_pool2d_cfg pc = {0};
        if (v == 1) pc.strides[0] = pc.strides[1] = 1;
        if (v == 2) pc.padding = GRAFT_SAME;
        if (v == 3) pc.pool_size[0] = pc.pool_size[1] = 3;
        graft_layer *p = graft_max_pooling2d(m, NULL, pc);
        if (v == 10) { /* a second reader */
            graft_layer *a = graft_global_average_pooling2d(m, conv, NULL);
            graft_layer *b = graft_global_average_pooling2d(m, p, NULL);
            graft_layer *both[2] = {a, b};
            graft_add(m, NULL, 2, both);
        }
        bool training = v != 4; /* a BatchNormalization folds in inference */
        CHECK_MSG(!pooled(m, "c", training), "variant %d", v);
        if (v == 4) CHECK(fused_into(m, m->layers[conv->index + 1]) == conv->index);
        if (v == 9) CHECK(in_step(m, conv, "conv_pool"));
        graft_model_free(m);
    }
}

/* The switch is read at every plan: a model planned apart and planned
 * again without it pools in the convolution's pass, with the same bits. */
static void test_switch_between_plans(void)
{
    const pcase k = {4, 12, 12, 16, 16, 3, GRAFT_VALID, true};
    graft_model *m = build(&k, 5);
    size_t xs = (size_t)k.n * k.h * k.w * k.c, ys = out_floats(m, k.n);
    float *x = malloc(xs * sizeof(float)),
          *y[2] = {malloc(ys * sizeof(float)), malloc(ys * sizeof(float))};
    graft_rng g;
    graft_rng_seed(&g, 2);
    fill_normal(x, xs, 1, &g);
    for (int t = 0; t < 2; t++) {
        separate_layers(t == 0);
        m->capacity = 0; /* plan again */
        CHECK_OK(graft_model_predict(m, x, k.n, y[t]));
        CHECK(in_step(m, graft_model_find(m, "conv"), "winograd_pool") == (t == 1));
    }
    separate_layers(false);
    same_bits("pooled output, apart then fused", y[1], y[0], ys);
    free(x);
    free(y[0]);
    free(y[1]);
    graft_model_free(m);
}

/* A frozen pair whose transformed kernel is several MiB (192 -> 200
 * channels) takes a batch of 120 (1080 tiles) in rounds the threads share
 * (winograd.c), the pool taken in each round's output transform: the same
 * bits as the layers apart, and as batches of 4 (chunks of tiles, one
 * thread each), on one thread or two. */
static void test_frozen_rounds(void)
{
    const pcase k = {120, 10, 10, 192, 200, 3, GRAFT_SAME, true};
    graft_conv_geom geom;
    graft_shape in = graft_shape3(10, 10, 192);
    graft_conv_geom_init(&geom, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    const size_t round = graft_winograd_round_tiles(&geom, 200, k.n);
    CHECK_MSG(round > 0 && round < (size_t)k.n * 9, "%zu tiles a round of %d", round, k.n * 9);
    const int before = graft_threads_get();
    const size_t xs = (size_t)k.n * k.h * k.w * k.c, x1 = xs / k.n;
    float *x = malloc(xs * sizeof(float)), *y[2] = {NULL, NULL};
    graft_rng g;
    graft_rng_seed(&g, 61);
    fill_normal(x, xs, 1, &g);
    size_t ys = 0;
    for (int apart = 0; apart < 2; apart++) {
        separate_layers(apart);
        graft_model *m = build(&k, 9);
        CHECK_OK(graft_model_status(m));
        graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
        ys = out_floats(m, k.n);
        y[apart] = malloc(ys * sizeof(float));
        CHECK_OK(graft_model_forward(m, x, k.n, false)); /* one pass of 120 */
        CHECK_MSG(in_step(m, graft_model_find(m, "pool"), "winograd_pool") == !apart,
                  "fused: %d", !apart);
        separate_layers(false);
        memcpy(y[apart], graft_model_output(m)->out, ys * sizeof(float));
        if (!apart) {
            const size_t y1 = ys / k.n;
            float *four = malloc(4 * y1 * sizeof(float));
            for (int t = 1; t <= 2; t++) {
                graft_threads_set(t);
                for (int s = 0; s + 4 <= k.n; s += 58) {
                    CHECK_OK(graft_model_predict(m, x + s * x1, 4, four));
                    same_bits("images in a batch of 4", four, y[0] + s * y1, 4 * y1);
                }
            }
            graft_threads_set(before);
            free(four);
        }
        graft_model_free(m);
    }
    same_bits("pooled output in rounds", y[0], y[1], ys);
    free(x);
    free(y[0]);
    free(y[1]);
}

int main(void)
{
    RUN(test_matches_separate_layers);
    RUN(test_central_differences);
    RUN(test_nan_and_ties);
    RUN(test_lesson_stack_and_threads);
    RUN(test_where_it_applies);
    RUN(test_switch_between_plans);
    RUN(test_frozen_rounds);
    return CHECK_SUMMARY();
}
