/* Winograd F(4x4, 3x3) (src/kernels/winograd.c), the inference path of 3x3
 * stride-1 convolutions: against a plain double-precision loop and against
 * the direct convolution (GRAFT_NO_WINOGRAD=1), over partial tiles, both
 * paddings, channel counts off the vector width, several chunks of tiles, a
 * fused BatchNormalization + ReLU, NaN inputs; and where it must not run. */
#include "check.h"
#include "gradcheck.h"
#include "internal.h"
#include "kernels/kernels.h"
#include "layers/layer.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    int n, h, w, c, f;
    graft_padding pad;
    bool bias, relu, bn; /* bn: BatchNormalization + ReLU(max 6) after, fused */
} wcase;

/* The rows and columns of padding before the input, and an output side over
 * input side s, of the 3x3 stride-1 convolution of k. */
static int pad_of(const wcase *k) { return k->pad == GRAFT_SAME ? 1 : 0; }
static int out_side(const wcase *k, int s) { return s - 2 + 2 * pad_of(k); }

static graft_model *build(const wcase *k, unsigned seed)
{
    graft_model *m = graft_model_new("wino");
    graft_input(m, NULL, graft_shape3(k->h, k->w, k->c));
    graft_conv2d(m, NULL,
                 (graft_conv2d_cfg){.name = "conv",
                                    .filters = k->f,
                                    .kernel_size = {3, 3},
                                    .padding = k->pad,
                                    .no_bias = !k->bias,
                                    .activation = k->relu ? GRAFT_RELU : GRAFT_LINEAR});
    if (k->bn) {
        graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "bn"});
        graft_relu(m, NULL, (graft_relu_cfg){.name = "relu", .max_value = 6});
    }
    if (graft_model_status(m) != GRAFT_OK) return m;
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        for (int j = 0; j < graft_layer_num_weights(l); j++) {
            graft_shape s = graft_layer_weight_shape(l, j);
            float *w = graft_layer_weight_data(l, j);
            bool var = strcmp(graft_layer_weight_name(l, j), "moving_variance") == 0;
            for (size_t e = 0; e < graft_shape_size(&s); e++)
                w[e] = var ? 0.3f + graft_rng_uniform(&r) : 0.3f * graft_rng_normal(&r);
        }
    }
    return m;
}

/* The layer stack of `k` in double precision, straight from the definitions. */
static void reference(const wcase *k, graft_model *m, const float *x, double *y, int oh, int ow,
                      int pt, int pl)
{
    graft_layer *conv = graft_model_find(m, "conv");
    const float *W = graft_layer_weight_data(conv, 0);
    const float *b = k->bias ? graft_layer_weight_data(conv, 1) : NULL;
    const float *g = NULL, *beta = NULL, *mean = NULL, *var = NULL;
    if (k->bn) {
        graft_layer *bn = graft_model_find(m, "bn");
        g = graft_layer_weight_data(bn, 0);
        beta = graft_layer_weight_data(bn, 1);
        mean = graft_layer_weight_data(bn, 2);
        var = graft_layer_weight_data(bn, 3);
    }
    for (int s = 0; s < k->n; s++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int f = 0; f < k->f; f++) {
                    double acc = b ? b[f] : 0;
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = oy + ky - pt, ix = ox + kx - pl;
                            if (iy < 0 || iy >= k->h || ix < 0 || ix >= k->w) continue;
                            const float *xp = x + (((size_t)s * k->h + iy) * k->w + ix) * k->c;
                            for (int c = 0; c < k->c; c++)
                                acc += (double)xp[c] *
                                       W[((size_t)(ky * 3 + kx) * k->c + c) * k->f + f];
                        }
                    if (k->relu && acc < 0) acc = 0;
                    if (k->bn) {
                        acc = (acc - mean[f]) / sqrt((double)var[f] + 1e-3) * g[f] + beta[f];
                        acc = acc < 0 ? 0 : (acc > 6 ? 6 : acc);
                    }
                    y[(((size_t)s * oh + oy) * ow + ox) * k->f + f] = acc;
                }
}

static float *predict(const wcase *k, const float *x, size_t out_n, bool winograd, unsigned seed)
{
    if (!winograd) CHECK(setenv("GRAFT_NO_WINOGRAD", "1", 1) == 0);
    graft_model *m = build(k, seed);
    unsetenv("GRAFT_NO_WINOGRAD");
    float *y = malloc(out_n * sizeof(float));
    CHECK_OK(graft_model_status(m));
    if (y) CHECK_OK(graft_model_predict(m, x, k->n, y));
    graft_model_free(m);
    return y;
}

static void check_case(const wcase *k, unsigned seed)
{
    graft_model *m = build(k, seed);
    CHECK_OK(graft_model_status(m));
    graft_layer *conv = graft_model_find(m, "conv");
    graft_shape os = graft_layer_output_shape(conv);
    const int oh = os.dim[0], ow = os.dim[1];
    const int pt = pad_of(k);
    size_t in_n = (size_t)k->n * k->h * k->w * k->c, out_n = (size_t)k->n * oh * ow * k->f;
    float *x = malloc(in_n * sizeof(float));
    double *ref = malloc(out_n * sizeof(double));
    graft_rng r;
    graft_rng_seed(&r, seed + 100);
    for (size_t i = 0; i < in_n; i++)
        x[i] = graft_rng_normal(&r);
    reference(k, m, x, ref, oh, ow, pt, pt);
    float *wino = predict(k, x, out_n, true, seed), *direct = predict(k, x, out_n, false, seed);
    /* Errors are measured against the largest output: the transforms' rounding
     * is relative to the block's magnitudes, not to each (maybe tiny) output. */
    double peak = 0, worst_w = 0, worst_d = 0;
    for (size_t i = 0; i < out_n; i++)
        if (fabs(ref[i]) > peak) peak = fabs(ref[i]);
    for (size_t i = 0; wino && direct && i < out_n; i++) {
        double ew = fabs(wino[i] - ref[i]), ed = fabs(direct[i] - ref[i]);
        if (ew > worst_w) worst_w = ew;
        if (ed > worst_d) worst_d = ed;
    }
    CHECK(peak > 0.5);
    /* Different rounding shows the two runs took different paths. */
    CHECK(wino && direct && memcmp(wino, direct, out_n * sizeof(float)) != 0);
    /* Direct float convolution is within a few 1e-7 of the peak; Winograd's
     * transforms multiply by up to 8 and sum 36 terms: allow 2e-5. */
    CHECK_MSG(worst_w <= 2e-5 * peak, "%dx%dx%d f%d: winograd error %.3g of peak %.3g", k->h, k->w,
              k->c, k->f, worst_w, peak);
    CHECK_MSG(worst_d <= 2e-5 * peak, "direct error %.3g", worst_d);
    printf("  %dx%dx%d -> %d, n %d%s%s%s: max error / peak: winograd %.2g, direct %.2g\n", k->h,
           k->w, k->c, k->f, k->n, k->pad == GRAFT_SAME ? " same" : " valid",
           k->relu ? " relu" : "", k->bn ? " +bn+relu6" : "", worst_w / peak, worst_d / peak);
    free(x);
    free(ref);
    free(wino);
    free(direct);
    graft_model_free(m);
}

/* Each case has at least 32 tiles a call, where inference takes Winograd
 * (graft_winograd_pays). */
static void test_matches_reference(void)
{
    const wcase cases[] = {
        {4, 13, 7, 16, 16, GRAFT_SAME, true, false, false},  /* partial tiles both ways */
        {3, 23, 23, 17, 33, GRAFT_VALID, true, true, false}, /* off the vector width */
        {4, 9, 9, 64, 40, GRAFT_SAME, false, false, true},   /* fused BN + ReLU6 */
        {4, 30, 26, 24, 20, GRAFT_SAME, true, true, false},  /* many chunks of tiles */
        {4, 5, 32, 16, 16, GRAFT_VALID, true, false, false}, /* one row of partial tiles */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_case(&cases[i], 11 + (unsigned)i);
}

/* Training: central differences through the Winograd forward pass agree with
 * the Winograd input and kernel gradients. Linear: with 16
 * channels a ReLU has kinks within the step of the differences (the direct
 * path fails such a check as well); the next test covers ReLU. */
static void test_gradients(void)
{
    const wcase cases[] = {
        {2, 6, 7, 16, 16, GRAFT_SAME, true, false, false},
        {2, 9, 6, 17, 18, GRAFT_VALID, true, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = build(&cases[i], 5 + (unsigned)i);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_model(m, cases[i].n, NULL, 9 + i, 60) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

/* dL/dx and dL/dkernel of one fit step's backward pass, by Winograd or directly. */
static void gradients(const wcase *k, const float *x, const float *r, bool winograd, float *dx,
                      float *dw)
{
    if (!winograd) CHECK(setenv("GRAFT_NO_WINOGRAD", "1", 1) == 0);
    graft_model *m = build(k, 21);
    unsetenv("GRAFT_NO_WINOGRAD");
    size_t xs = (size_t)k->n * k->h * k->w * k->c, ws = (size_t)9 * k->c * k->f;
    m->want_input_grad = true;
    CHECK_OK(graft_model_forward(m, x, k->n, true));
    CHECK_OK(graft_model_backward(m, r, k->n));
    memcpy(dx, graft_model_layer(m, 0)->dout, xs * sizeof(float));
    memcpy(dw, graft_model_find(m, "conv")->weights[0].grad, ws * sizeof(float));
    graft_model_free(m);
}

/* Largest |a - b| over the largest |b|, printed and checked. */
static void compare(const char *what, const float *a, const float *b, size_t n)
{
    double peak = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > peak) peak = fabs(b[i]);
        if (fabs(a[i] - b[i]) > worst) worst = fabs(a[i] - b[i]);
    }
    CHECK(peak > 0.5 && memcmp(a, b, n * sizeof(float)) != 0); /* two different paths ran */
    CHECK_MSG(worst <= 2e-5 * peak, "%s differs by %.3g of peak %.3g", what, worst, peak);
    printf("  %s: max difference / peak %.2g\n", what, worst / peak);
}

static void test_gradients_match_direct(void)
{
    const wcase cases[] = {
        {3, 21, 18, 32, 24, GRAFT_VALID, true, true, false},
        {2, 19, 22, 24, 40, GRAFT_SAME, true, false, false},
        /* Many chunks per thread. Linear: among 1.6M outputs some lie so near
         * zero that the two roundings put them on either side of a ReLU. */
        {20, 38, 38, 32, 64, GRAFT_VALID, true, false, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const wcase *k = &cases[c];
        const int oh = out_side(k, k->h), ow = out_side(k, k->w);
        size_t xs = (size_t)k->n * k->h * k->w * k->c, ys = (size_t)k->n * oh * ow * k->f;
        size_t ws = (size_t)9 * k->c * k->f;
        float *x = malloc(xs * sizeof(float)), *r = malloc(ys * sizeof(float));
        float *dx[2] = {malloc(xs * sizeof(float)), malloc(xs * sizeof(float))};
        float *dw[2] = {malloc(ws * sizeof(float)), malloc(ws * sizeof(float))};
        graft_rng g;
        graft_rng_seed(&g, 30 + c);
        for (size_t i = 0; i < xs; i++)
            x[i] = graft_rng_normal(&g);
        for (size_t i = 0; i < ys; i++)
            r[i] = graft_rng_normal(&g);
        gradients(k, x, r, true, dx[0], dw[0]);
        gradients(k, x, r, false, dx[1], dw[1]);
        printf("  %dx%dx%d -> %d, n %d:\n", k->h, k->w, k->c, k->f, k->n);
        compare("dx", dx[0], dx[1], xs);
        compare("dkernel", dw[0], dw[1], ws);
        for (int i = 0; i < 2; i++) {
            free(dx[i]);
            free(dw[i]);
        }
        free(x);
        free(r);
    }
}

static void test_nan_propagates(void)
{
    /* Two images, 32 tiles: Winograd in inference too. The NaN is in the first. */
    const wcase k = {2, 16, 16, 16, 16, GRAFT_SAME, true, true, false};
    size_t in_n = 2 * 16 * 16 * 16, out_n = 2 * 16 * 16 * 16;
    float *x = calloc(in_n, sizeof(float));
    x[(3 * 16 + 3) * 16 + 5] = NAN;
    float *y = predict(&k, x, out_n, true, 3);
    /* Outputs whose window holds the NaN are NaN (ReLU keeps it, as in TF);
     * the transforms spread it over the 4x4 output tiles whose 6x6 input
     * tiles hold it (rows and columns 0-7 here), never beyond. */
    CHECK(y && isnan(y[(3 * 16 + 3) * 16]) && isnan(y[(2 * 16 + 4) * 16 + 7]));
    CHECK(y && !isnan(y[(15 * 16 + 15) * 16]) && !isnan(y[(8 * 16 + 3) * 16]));
    free(x);
    free(y);
}

static void test_where_it_applies(void)
{
    graft_shape in = graft_shape3(10, 10, 32);
    graft_conv_geom g;
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(graft_winograd_fits(&g, 32));
    CHECK(!graft_winograd_fits(&g, 8)); /* too few filters */
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){2, 2}, GRAFT_SAME);
    CHECK(!graft_winograd_fits(&g, 32)); /* strided */
    graft_conv_geom_init(&g, &in, (int[]){1, 1}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(!graft_winograd_fits(&g, 32)); /* not 3x3 */
    in = graft_shape3(10, 10, 3);
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(!graft_winograd_fits(&g, 32)); /* an RGB input */
    /* Images whose 4x4 tiles would be more than half padding (5x5: 39%
     * output; 1x32: 25%) go direct; so, with AVX-512, do images of fewer
     * than 8 tiles (7x7, 8x8: 4; 3x3: 1); 9x9 (9 tiles, 56%) and 5x13 (8
     * tiles, 51%) keep Winograd. */
    const bool wide = graft_kernels_avx512();
    static const struct {
        int h, w;
        bool fits, fits_avx2;
    } S[] = {{5, 5, false, false}, {1, 32, false, false}, {7, 7, false, true},
             {8, 8, false, true},  {3, 3, false, true},   {9, 9, true, true},
             {5, 13, true, true},  {5, 30, true, true}};
    for (size_t i = 0; i < sizeof S / sizeof *S; i++) {
        in = graft_shape3(S[i].h, S[i].w, 32);
        graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
        CHECK_MSG(graft_winograd_fits(&g, 32) == (wide ? S[i].fits : S[i].fits_avx2), "%dx%d",
                  S[i].h, S[i].w);
    }
    in = graft_shape3(10, 10, 32);
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(graft_winograd_fits(&g, 32));
    /* A bottleneck's narrow 3x3 (at most 64 filters from twice as many
     * channels or more: DenseNet's 128 -> 32) needs 25 tiles an image with
     * AVX-512 (17x17), 16 with AVX2 (13x13); the same maps from fewer
     * channels keep the rule above. */
    static const struct {
        int side, c, f;
        bool fits, fits_avx2;
    } B[] = {{9, 128, 32, false, false}, {12, 128, 32, false, false}, {13, 128, 32, false, true},
             {14, 128, 32, false, true}, {16, 256, 64, false, true},  {17, 128, 32, true, true},
             {19, 128, 32, true, true},  {9, 128, 65, true, true},    {9, 127, 64, true, true},
             {14, 64, 64, true, true}};
    for (size_t i = 0; i < sizeof B / sizeof *B; i++) {
        in = graft_shape3(B[i].side, B[i].side, B[i].c);
        graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
        CHECK_MSG(graft_winograd_fits(&g, B[i].f) == (wide ? B[i].fits : B[i].fits_avx2),
                  "%dx%d, %d -> %d", B[i].side, B[i].side, B[i].c, B[i].f);
    }
    /* Inference: with AVX-512, 16 tiles a call or more (VGG16's 14x14 layers
     * at batch 1; ResNet50's 7x7 have 4 an image, from 4 images on); always
     * at AVX2's width. Below 32 tiles a call a kernel whose transform would
     * take 16 MiB or more (512 x 512: 38 MB) is transformed block by block
     * (filters a multiple of 32, 32 a thread); others keep theirs (256 x
     * 256: 9.4 MB), as every kernel does from 32 tiles on. */
    const int threads = graft_threads_get();
    graft_threads_set(2);
    in = graft_shape3(14, 14, 512);
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(graft_winograd_fits(&g, 512));
    CHECK(graft_winograd_pays(&g, 1) && graft_winograd_pays(&g, 2));
    CHECK(graft_winograd_fused(&g, 512, 1) && !graft_winograd_fused(&g, 512, 2));
    CHECK(!graft_winograd_fused(&g, 500, 1)); /* filters off 32 */
    CHECK(graft_winograd_fused(&g, 256, 1)); /* 512 -> 256: 18.9 MB, */
    in = graft_shape3(14, 14, 256);
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(!graft_winograd_fused(&g, 256, 1)); /* 9.4 MB kept */
    in = graft_shape3(14, 14, 4096);
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(graft_winograd_fused(&g, 64, 1) && !graft_winograd_fused(&g, 32, 1)); /* a block a thread */
    in = graft_shape3(7, 7, 512);
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(graft_winograd_pays(&g, 1) == !wide && graft_winograd_pays(&g, 4));
    CHECK(graft_winograd_fused(&g, 512, 7) && !graft_winograd_fused(&g, 512, 8));
    in = graft_shape3(28, 28, 512); /* 49 tiles */
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    CHECK(graft_winograd_pays(&g, 1) && !graft_winograd_fused(&g, 512, 1));
    graft_threads_set(threads);
}

/* Images of fewer than 8 tiles (ResNet's 7x7 3x3s) or of 6-8 outputs a
 * tile (5x5), which training passes and AVX2 take as graft_winograd_fits
 * says, run by Winograd in inference calls of 8 tiles or more with AVX-512
 * where channels and filters are 256 or more (graft_winograd_fits_batched);
 * maps of fewer outputs a tile (2x2) and narrower layers stay direct. The
 * layer picks it per call (2 images of 7x7, not 1; 3 of 5x5, where 2 are
 * patch rows; not in training) and matches the definition. */
static void test_few_tiles_batched(void)
{
    const bool wide = graft_kernels_avx512();
    static const struct {
        int side, c, f;
        bool batched;
    } S[] = {{7, 512, 512, true},  {8, 448, 384, true},  {6, 256, 256, true},
             {3, 256, 256, true},  {5, 256, 256, true},  {4, 256, 256, true},
             {2, 256, 256, false}, {9, 256, 256, false}, {7, 256, 128, false},
             {7, 128, 256, false}, {8, 64, 64, false}};
    for (size_t i = 0; i < sizeof S / sizeof *S; i++) {
        graft_shape in = graft_shape3(S[i].side, S[i].side, S[i].c);
        graft_conv_geom g;
        graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
        CHECK_MSG(graft_winograd_fits_batched(&g, S[i].f) == (wide && S[i].batched),
                  "%dx%d, %d -> %d", S[i].side, S[i].side, S[i].c, S[i].f);
        if (S[i].side == 7 && S[i].c == 512)
            CHECK(!graft_winograd_batch_pays(&g, 1) && graft_winograd_batch_pays(&g, 2));
    }
    const wcase k = {2, 7, 7, 256, 256, GRAFT_SAME, true, false, false};
    graft_model *m = build(&k, 51);
    CHECK_OK(graft_model_status(m));
    graft_layer *conv = graft_model_find(m, "conv");
    CHECK((strstr(graft_conv2d_algorithm(conv, false, 2), "Winograd") != NULL) == wide);
    CHECK(strstr(graft_conv2d_algorithm(conv, false, 1), "Winograd") == NULL);
    CHECK(strstr(graft_conv2d_algorithm(conv, true, 2), "Winograd") == NULL);
    graft_model_free(m);
    check_case(&k, 51);
    const wcase five = {3, 5, 5, 256, 256, GRAFT_SAME, true, false, false};
    m = build(&five, 52);
    CHECK_OK(graft_model_status(m));
    conv = graft_model_find(m, "conv");
    CHECK((strncmp(graft_conv2d_algorithm(conv, false, 2), "patch rows", 10) == 0) == wide);
    CHECK((strstr(graft_conv2d_algorithm(conv, false, 3), "Winograd") != NULL) == wide);
    graft_model_free(m);
    check_case(&five, 52);
}

/* k's model with seed's weights, frozen, and k->n images of normal noise
 * (xseed) into *x. */
static graft_model *frozen_with_input(const wcase *k, unsigned seed, unsigned xseed, float **x)
{
    const size_t n = (size_t)k->n * k->h * k->w * k->c;
    *x = malloc(n * sizeof(float));
    graft_rng r;
    graft_rng_seed(&r, xseed);
    for (size_t i = 0; i < n; i++)
        (*x)[i] = graft_rng_normal(&r);
    graft_model *m = build(k, seed);
    CHECK_OK(graft_model_status(m));
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
    return m;
}

/* A frozen layer's products go through graft_pw_gemm: an image's outputs
 * have the same bits in a batch of 4 (one chunk, shared by the threads in
 * phases) as in a batch of 40 (several chunks, one thread each), on one
 * thread or two; so do they alone in a training pass, as fit computes the
 * features it caches. Alone in inference, 9 tiles are too few for Winograd
 * with AVX-512 (graft_winograd_pays): direct convolution, other bits within
 * the same error. Its transformed kernel is kept between calls and remade
 * when the kernel changes: then it gives a new model's bits. */
static void test_frozen_batch_independent(void)
{
    const wcase k = {40, 9, 9, 64, 48, GRAFT_SAME, true, true, false};
    const size_t in1 = 9 * 9 * 64, out1 = 9 * 9 * 48;
    float *x, *big[2], *one = malloc(out1 * sizeof(float));
    const int before = graft_threads_get();
    graft_model *m = frozen_with_input(&k, 9, 5, &x);
    for (int t = 0; t < 2; t++) {
        graft_threads_set(t + 1);
        big[t] = malloc(k.n * out1 * sizeof(float));
        CHECK_OK(graft_model_predict(m, x, k.n, big[t]));
    }
    CHECK(memcmp(big[0], big[1], k.n * out1 * sizeof(float)) == 0);
    float *four = malloc(4 * out1 * sizeof(float));
    double peak = 0, worst = 0;
    for (int t = 1; t <= 2; t++)
        for (int s = 0; s < 3; s++) {
            graft_threads_set(t);
            CHECK_OK(graft_model_predict(m, x + s * in1, 4, four));
            CHECK_MSG(memcmp(four, big[0] + s * out1, 4 * out1 * sizeof(float)) == 0,
                      "images %d-%d in a batch of 4 on %d threads", s, s + 3, t);
            CHECK_OK(graft_model_forward(m, x + s * in1, 1, true));
            CHECK_MSG(memcmp(graft_model_output(m)->out, big[0] + s * out1,
                             out1 * sizeof(float)) == 0,
                      "image %d alone in a training pass on %d threads", s, t);
            CHECK_OK(graft_model_predict(m, x + s * in1, 1, one));
            for (size_t i = 0; i < out1; i++) {
                double b = big[0][s * out1 + i], d = fabs((double)one[i] - b);
                if (fabs(b) > peak) peak = fabs(b);
                if (d > worst) worst = d;
            }
            CHECK_MSG((memcmp(one, big[0] + s * out1, out1 * sizeof(float)) == 0) ==
                          !graft_kernels_avx512(),
                      "image %d alone in inference on %d threads", s, t);
        }
    CHECK_MSG(peak > 0.5 && worst <= 2e-5 * peak, "alone: %.3g of peak %.3g", worst, peak);
    /* A new kernel: the kept transform must follow it. */
    float *W = graft_layer_weight_data(graft_model_find(m, "conv"), 0);
    W[7] += 0.5f;
    CHECK_OK(graft_model_predict(m, x, 4, four));
    CHECK(memcmp(four, big[0], 4 * out1 * sizeof(float)) != 0);
    graft_model *m2 = build(&k, 9);
    CHECK_OK(graft_model_status(m2));
    graft_layer_weight_data(graft_model_find(m2, "conv"), 0)[7] += 0.5f;
    graft_model_set_trainable(m2, 0, graft_model_num_layers(m2), 0);
    CHECK_OK(graft_model_predict(m2, x, 4, big[1]));
    CHECK(memcmp(four, big[1], 4 * out1 * sizeof(float)) == 0);
    free(four);
    graft_threads_set(before);
    graft_model_free(m);
    graft_model_free(m2);
    free(x);
    free(one);
    free(big[0]);
    free(big[1]);
}

/* Few output rows and a kernel from memory (a batch of one at 7x7, 1 MiB
 * and more), with AVX-512: patch rows, the kernel streamed in place
 * (layers/conv2d.c), on two threads each streaming its share of the
 * columns; with constant weights (graft_model_set_weights_constant), a
 * kept packed copy instead. Against the definition, with and without the
 * fused BatchNormalization and clamp, 'same' and 'valid', filters off the
 * panel width; the two-thread run and the runs under the promise give the
 * one-thread run's bits (with AVX2, where oneDNN runs, within the same
 * error); a changed kernel takes effect, with the promise made again. */
static void test_patch_rows(void)
{
    const wcase cases[] = {{1, 7, 7, 128, 256, GRAFT_SAME, true, true, true},
                           {1, 6, 6, 160, 300, GRAFT_VALID, false, false, true},
                           {1, 7, 7, 144, 208, GRAFT_SAME, true, false, false}};
    const int before = graft_threads_get();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const wcase *k = &cases[i];
        const int pt = pad_of(k), oh = out_side(k, k->h), ow = out_side(k, k->w);
        const size_t in_n = (size_t)k->h * k->w * k->c, out_n = (size_t)oh * ow * k->f;
        float *x = malloc(in_n * sizeof(float)), *y1 = malloc(out_n * sizeof(float));
        float *y2 = malloc(out_n * sizeof(float)), *y3 = malloc(out_n * sizeof(float));
        double *want = malloc(out_n * sizeof(double));
        graft_rng r;
        graft_rng_seed(&r, 40 + (unsigned)i);
        for (size_t j = 0; j < in_n; j++) x[j] = graft_rng_normal(&r);
        graft_model *m = build(k, 41 + (unsigned)i);
        CHECK_OK(graft_model_status(m));
        graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
        graft_layer *conv = graft_model_find(m, "conv");
        for (int round = 0; round < 2; round++) {
            graft_threads_set(1);
            CHECK_OK(graft_model_predict(m, x, 1, y1));
            const char *how = graft_conv2d_algorithm(conv, false, 1);
            CHECK_MSG((strncmp(how, "patch rows", 10) == 0) == graft_kernels_avx512(),
                      "case %zu: %s", i, how);
            graft_threads_set(2);
            CHECK((strncmp(graft_conv2d_algorithm(conv, false, 1), "patch rows", 10) == 0) ==
                  graft_kernels_avx512());
            CHECK_OK(graft_model_predict(m, x, 1, y2));
            if (graft_kernels_avx512())
                CHECK_MSG(memcmp(y1, y2, out_n * sizeof(float)) == 0,
                          "case %zu round %d: two threads changed the bits", i, round);
            CHECK_OK(graft_model_set_weights_constant(m, 1));
            for (int t = 1; t <= 2; t++)
                for (int call = 0; call < 2; call++) { /* the copy made, then read */
                    graft_threads_set(t);
                    CHECK_OK(graft_model_predict(m, x, 1, y3));
                    CHECK_MSG(memcmp(y1, y3, out_n * sizeof(float)) == 0,
                              "case %zu round %d, %d thread(s), call %d: constant weights "
                              "changed the bits", i, round, t, call);
                }
            CHECK_OK(graft_model_set_weights_constant(m, 0));
            reference(k, m, x, want, oh, ow, pt, pt);
            double peak = 0, worst = 0, apart = 0;
            for (size_t j = 0; j < out_n; j++) {
                if (fabs(want[j]) > peak) peak = fabs(want[j]);
                if (fabs(y1[j] - want[j]) > worst) worst = fabs(y1[j] - want[j]);
                if (fabs(y1[j] - y2[j]) > apart) apart = fabs(y1[j] - y2[j]);
            }
            CHECK_MSG(peak > 0.5 && worst <= 2e-5 * peak && apart <= 2e-5 * peak,
                      "case %zu round %d: %.3g and %.3g (1 and 2 threads) of peak %.3g", i, round,
                      worst, apart, peak);
            /* a changed kernel: the next call follows it */
            graft_layer_weight_data(conv, 0)[7 * k->f + 3] += 0.5f;
        }
        graft_model_free(m);
        free(x);
        free(y1);
        free(y2);
        free(y3);
        free(want);
    }
    graft_threads_set(before);
}

/* A frozen layer whose transformed kernel is several MiB (192 -> 200
 * channels: 6.2 MB, the last panel of columns padded) takes a large batch in
 * rounds the threads share (winograd.c): 120 images of 9 tiles, in two
 * rounds or more. Each image has the bits it has in a batch of 4 (chunks of
 * tiles, one thread each), on one thread or two, and the first and last
 * images (in the first and last rounds) are within Winograd's error of the
 * double reference. */
static void test_frozen_rounds(void)
{
    const wcase k = {120, 9, 9, 192, 200, GRAFT_SAME, true, true, false};
    graft_conv_geom g;
    graft_shape in = graft_shape3(9, 9, 192);
    graft_conv_geom_init(&g, &in, (int[]){3, 3}, (int[]){1, 1}, GRAFT_SAME);
    const size_t round = graft_winograd_round_tiles(&g, 200, k.n);
    CHECK_MSG(round > 0 && round < (size_t)k.n * 9, "%zu tiles a round of %d", round, k.n * 9);
    const size_t in1 = 9 * 9 * 192, out1 = 9 * 9 * 200;
    float *x, *big[2], *four = malloc(4 * out1 * sizeof(float));
    double *ref = malloc(2 * out1 * sizeof(double));
    const int before = graft_threads_get();
    graft_model *m = frozen_with_input(&k, 11, 8, &x);
    for (int t = 0; t < 2; t++) {
        graft_threads_set(t + 1);
        big[t] = malloc(k.n * out1 * sizeof(float));
        /* one pass of 120 (predict would take them 32 at a time) */
        CHECK_OK(graft_model_forward(m, x, k.n, false));
        memcpy(big[t], graft_model_output(m)->out, k.n * out1 * sizeof(float));
    }
    CHECK(memcmp(big[0], big[1], k.n * out1 * sizeof(float)) == 0);
    for (int t = 1; t <= 2; t++) {
        graft_threads_set(t);
        for (int s = 0; s + 4 <= k.n; s += 58) {
            CHECK_OK(graft_model_predict(m, x + s * in1, 4, four));
            CHECK_MSG(memcmp(four, big[0] + s * out1, 4 * out1 * sizeof(float)) == 0,
                      "images %d-%d in a batch of 4 on %d threads", s, s + 3, t);
        }
    }
    const wcase one = {1, 9, 9, 192, 200, GRAFT_SAME, true, true, false};
    double peak = 0, worst = 0;
    for (int q = 0; q < 2; q++) {
        const int s = q ? k.n - 1 : 0;
        reference(&one, m, x + s * in1, ref, 9, 9, 1, 1);
        for (size_t i = 0; i < out1; i++) {
            double d = fabs(big[0][s * out1 + i] - ref[i]);
            if (fabs(ref[i]) > peak) peak = fabs(ref[i]);
            if (d > worst) worst = d;
        }
    }
    CHECK_MSG(peak > 0.5 && worst <= 2e-5 * peak, "rounds: %.3g of peak %.3g", worst, peak);
    graft_threads_set(before);
    graft_model_free(m);
    free(x);
    free(four);
    free(ref);
    free(big[0]);
    free(big[1]);
}

/* A frozen layer's call of fewer than 32 tiles (a 14x14 image alone: 16)
 * with a kernel whose transform would take 16 MiB or more transforms the
 * kernel block by block as its products need it, keeping nothing
 * (graft_winograd_fused); the channels in blocks of 32 (360: 11 x 32 + 8),
 * the partial sums going on from block to block. Each image alone has the
 * bits it has in a batch of two (32 tiles: the kept transform), on one
 * thread and two, with and without the fused BatchNormalization, and
 * (without its clamp) is within Winograd's error of the double reference;
 * filters off a multiple of 32 keep the transform even alone, with the same
 * bits; a changed kernel takes effect at the next call. */
static void test_fused_few_tiles(void)
{
    const wcase cases[] = {{2, 14, 14, 360, 352, GRAFT_SAME, true, true, true},
                           {2, 16, 16, 352, 384, GRAFT_VALID, false, false, false},
                           {2, 14, 14, 384, 340, GRAFT_SAME, true, true, false}};
    const int before = graft_threads_get();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const wcase *k = &cases[i];
        const int pt = pad_of(k), oh = out_side(k, k->h), ow = out_side(k, k->w);
        const size_t in1 = (size_t)k->h * k->w * k->c, out1 = (size_t)oh * ow * k->f;
        const bool fused = k->f % 32 == 0;
        float *x, *two = malloc(2 * out1 * sizeof(float)), *one = malloc(out1 * sizeof(float));
        double *want = malloc(out1 * sizeof(double));
        graft_model *m = frozen_with_input(k, 60 + (unsigned)i, 61 + (unsigned)i, &x);
        graft_layer *conv = graft_model_find(m, "conv");
        const wcase alone = {1, k->h, k->w, k->c, k->f, k->pad, k->bias, k->relu, k->bn};
        for (int change = 0; change < 2; change++) {
            graft_threads_set(1);
            CHECK_OK(graft_model_predict(m, x, 2, two));
            CHECK(strstr(graft_conv2d_algorithm(conv, false, 2), "kept") != NULL);
            for (int t = 1; t <= 2; t++) {
                graft_threads_set(t);
                const char *how = graft_conv2d_algorithm(conv, false, 1);
                CHECK_MSG(strstr(how, fused ? "block by block" : "kept") != NULL, "case %zu: %s", i,
                          how);
                for (int s = 0; s < 2; s++) {
                    CHECK_OK(graft_model_predict(m, x + s * in1, 1, one));
                    CHECK_MSG(memcmp(one, two + s * out1, out1 * sizeof(float)) == 0,
                              "case %zu, image %d alone on %d threads, kernel changed %d", i, s, t,
                              change);
                }
            }
            /* (after a clamp at 6 the peak says nothing of the sums' size) */
            if (!k->bn) {
                reference(&alone, m, x, want, oh, ow, pt, pt);
                double peak = 0, worst = 0;
                for (size_t j = 0; j < out1; j++) {
                    if (fabs(want[j]) > peak) peak = fabs(want[j]);
                    if (fabs(two[j] - want[j]) > worst) worst = fabs(two[j] - want[j]);
                }
                CHECK_MSG(peak > 0.5 && worst <= 2e-5 * peak, "case %zu: %.3g of peak %.3g", i,
                          worst, peak);
            }
            graft_layer_weight_data(conv, 0)[5 * k->f + 7] += 0.5f;
        }
        graft_model_free(m);
        free(x);
        free(two);
        free(one);
        free(want);
    }
    graft_threads_set(before);
}

int main(void)
{
    RUN(test_matches_reference);
    RUN(test_gradients);
    RUN(test_gradients_match_direct);
    RUN(test_nan_propagates);
    RUN(test_where_it_applies);
    RUN(test_frozen_batch_independent);
    RUN(test_frozen_rounds);
    RUN(test_patch_rows);
    RUN(test_fused_few_tiles);
    RUN(test_few_tiles_batched);
    return CHECK_SUMMARY();
}
