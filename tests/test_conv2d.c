/* Conv2D: forward and gradients against PyTorch (scripts/gen_fixtures_conv2d.py)
 * through oneDNN and through im2col + GEMM, gradients by central differences,
 * a strided 1x1 at inference against sums in double,
 * shapes of TensorFlow's padding, bitwise repeatable training. */
#include "fixture.h"
#include "gradcheck.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURES "tests/fixtures/conv2d.bin"

static graft_model *conv_model(int h, int w, int c, graft_conv2d_cfg cfg)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", graft_shape3(h, w, c));
    graft_conv2d(m, NULL, cfg);
    return m;
}

static void test_same_padding_shapes(void)
{
    /* TF 'same': ceil(in/stride); an odd total pad goes after. */
    graft_model *m = conv_model(7, 6, 2, (graft_conv2d_cfg){.filters = 3, .kernel_size = {3, 3},
                                                            .strides = {2, 2}, .padding = GRAFT_SAME});
    CHECK_OK(graft_model_status(m));
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    CHECK(s.rank == 3 && s.dim[0] == 4 && s.dim[1] == 3 && s.dim[2] == 3);
    graft_model_free(m);
}

static void test_gradients(void)
{
    struct {
        int h, w, c;
        graft_conv2d_cfg cfg;
    } cases[] = {
        {5, 6, 3, {.filters = 4, .kernel_size = {3, 3}, .activation = GRAFT_RELU}},
        {6, 5, 2, {.filters = 3, .kernel_size = {3, 2}, .strides = {2, 1}, .padding = GRAFT_SAME,
                   .activation = GRAFT_SIGMOID}},
        {4, 4, 5, {.filters = 3, .kernel_size = {1, 1}, .no_bias = 1}}, /* gradients by GEMM */
        {11, 11, 3, {.filters = 2, .kernel_size = {1, 1}}}, /* by oneDNN */
        {7, 7, 2, {.filters = 2, .kernel_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = conv_model(cases[i].h, cases[i].w, cases[i].c, cases[i].cfg);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_model(m, 2, NULL, 7 + i, 40) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

/* A conv whose input feeds two convs: the second one's input gradient adds to the first's. */
static void test_shared_input_gradients(void)
{
    graft_conv2d_cfg cases[][2] = {
        {{.filters = 3, .kernel_size = {3, 3}, .padding = GRAFT_SAME, .activation = GRAFT_SIGMOID},
         {.filters = 3, .kernel_size = {3, 3}, .padding = GRAFT_SAME}},
        {{.filters = 4, .kernel_size = {1, 1}}, {.filters = 4, .kernel_size = {3, 3}, .padding = GRAFT_SAME}},
        {{.filters = 2, .kernel_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME},
         {.filters = 2, .kernel_size = {1, 1}, .strides = {2, 2}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = graft_model_new("t");
        graft_layer *in = graft_input(m, "in", graft_shape3(6, 5, 2));
        graft_layer *first = graft_conv2d(m, in, (graft_conv2d_cfg){.filters = 3, .kernel_size = {3, 3},
                                                                    .padding = GRAFT_SAME});
        graft_layer *branch[2] = {graft_conv2d(m, first, cases[i][0]), graft_conv2d(m, first, cases[i][1])};
        graft_add(m, NULL, 2, branch);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_model(m, 2, NULL, 21 + i, 40) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

/* One fixture case: forward (training and inference) and the gradients of sum(out * r). */
static void check_case(const fixture *fx, const char *name)
{
    char key[160];
#define GET(field) (snprintf(key, sizeof key, "%s/%s", name, field), fixture_get(fx, key))
    const fixture_array *cfg = GET("cfg"), *x = GET("x"), *k = GET("kernel"), *y = GET("out"),
                        *r = GET("r"), *dx = GET("dx"), *dk = GET("dkernel");
    CHECK_MSG(cfg && x && k && y && r && dx && dk, "%s: fixture arrays missing", name);
    if (!cfg || !x || !k || !y || !r || !dx || !dk) return;
    const float *v = cfg->data;
    const fixture_array *bias = v[10] != 0 ? GET("bias") : NULL, *db = v[10] != 0 ? GET("dbias") : NULL;
#undef GET
    CHECK_MSG(v[10] == 0 || (bias && db), "%s: bias arrays missing", name);
    if (v[10] != 0 && (!bias || !db)) return;
    int n = (int)v[0];
    graft_conv2d_cfg cc = {.filters = (int)v[4], .kernel_size = {(int)v[5], (int)v[6]},
                           .strides = {(int)v[7], (int)v[8]},
                           .padding = v[9] != 0 ? GRAFT_SAME : GRAFT_VALID, .no_bias = v[10] == 0,
                           .activation = (graft_activation)(int)v[11]};
    graft_model *m = conv_model((int)v[1], (int)v[2], (int)v[3], cc);
    CHECK_OK(graft_model_status(m));
    if (graft_model_status(m) != GRAFT_OK) {
        graft_model_free(m);
        return;
    }
    graft_layer *l = graft_model_output(m);
    memcpy(graft_layer_weight_data(l, 0), k->data, k->size * sizeof(float));
    if (bias) memcpy(graft_layer_weight_data(l, 1), bias->data, bias->size * sizeof(float));
    const double tol = 1e-4;
    size_t worst = 0;
    for (int training = 0; training < 2; training++) {
        CHECK_OK(graft_model_forward(m, x->data, n, training));
        double q = check_close_ratio(l->out, y->data, y->size, tol, tol, &worst);
        CHECK_MSG(q <= 1, "%s out (training=%d): [%zu] %.9g vs %.9g", name, training, worst,
                  (double)l->out[worst], (double)y->data[worst]);
    }
    m->want_input_grad = true;
    m->capacity = 0;
    CHECK_OK(graft_model_forward(m, x->data, n, true));
    CHECK_OK(graft_model_backward(m, r->data, n));
    const float *got[] = {graft_model_layer(m, 0)->dout, l->weights[0].grad,
                          bias ? l->weights[1].grad : NULL};
    const fixture_array *want[] = {dx, dk, db};
    for (int i = 0; i < (bias ? 3 : 2); i++) {
        double q = check_close_ratio(got[i], want[i]->data, want[i]->size, tol, tol, &worst);
        CHECK_MSG(q <= 1, "%s %s: [%zu] %.9g vs %.9g", name, want[i]->name, worst,
                  (double)got[i][worst], (double)want[i]->data[worst]);
    }
    graft_model_free(m);
}

static const char *const cases[] = {"valid_s1_relu",    "same_s1_odd",       "same_s2_even",
                                     "same_s2_odd_k",    "valid_s2_rect",     "pointwise",
                                     "pointwise_s2_same", "same_s1_c17_f33", "valid_s1_c32_f16"};

static void check_all_cases(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURES) == 0);
    if (fx.n == 0) return;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(&fx, cases[i]);
    fixture_free(&fx);
}

static void test_matches_pytorch(void) { check_all_cases(); }

/* The same cases through im2col + GEMM, the path taken when oneDNN can not run one. */
static void test_gemm_path_matches_pytorch(void)
{
    CHECK(setenv("GRAFT_NO_ONEDNN", "1", 1) == 0);
    check_all_cases();
    test_shared_input_gradients();
    unsetenv("GRAFT_NO_ONEDNN");
}

/* A small CNN trained twice from the same seed: the same bits, including a
 * last batch of another size. */
static void fit_cnn(float *before, float *after, size_t cap, size_t *n_out)
{
    enum { N = 20, H = 10, W = 9 };
    static float x[N * H * W * 3], y[N];
    graft_rng r;
    graft_rng_seed(&r, 4);
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = graft_rng_uniform(&r);
    for (int i = 0; i < N; i++) y[i] = (float)(i % 2);
    graft_source *src = graft_source_arrays(x, y, N, graft_shape3(H, W, 3), 1, 8, 1, 5);
    graft_model *m = graft_model_new("cnn");
    graft_input(m, NULL, graft_shape3(H, W, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 8, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3}, .strides = {2, 2},
                                             .padding = GRAFT_SAME, .activation = GRAFT_RELU});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 2};
    CHECK_OK(graft_model_compile(m, &cc));
    *n_out = m->n_weight_floats < cap ? m->n_weight_floats : cap;
    memcpy(before, m->weights, *n_out * sizeof(float));
    graft_fit_cfg fc = {.epochs = 3};
    CHECK_OK(graft_model_fit(m, src, &fc, NULL));
    memcpy(after, m->weights, *n_out * sizeof(float));
    graft_model_free(m);
    graft_source_free(src);
}

static void test_fit_is_repeatable(void)
{
    enum { CAP = 4096 };
    static float init[CAP], a[CAP], b[CAP];
    size_t na, nb;
    fit_cnn(init, a, CAP, &na);
    fit_cnn(init, b, CAP, &nb);
    CHECK(na == nb && na > 1000 && na < CAP);
    CHECK(memcmp(a, b, na * sizeof(float)) == 0);
    CHECK(memcmp(init, a, na * sizeof(float)) != 0); /* training did move them */
}

static void test_dense_gradients(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(6));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 5, .activation = GRAFT_TANH});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3, .activation = GRAFT_SOFTMAX});
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 3, NULL, 3, 40) == 0);
    graft_model_free(m);
}

/* A strided 1x1 at inference, as a layer apart (GRAFT_NO_FUSED_INFERENCE=1:
 * graft_pw_gemm over every sh-th row's every sw-th pixel) and in the plan's
 * POINTWISE step: against sums in double, the same bits as each other, each
 * image alone the same bits as in the batch, and training's forward with
 * the layer frozen the same bits as predict. */
static void test_strided_pointwise_inference(void)
{
    static const struct {
        int h, w, c, f, sh, sw;
        graft_padding pad;
        graft_activation act;
    } strided[] = {
        {9, 7, 13, 21, 2, 1, GRAFT_VALID, GRAFT_RELU},
        {8, 10, 40, 17, 1, 3, GRAFT_SAME, GRAFT_LINEAR},
        {11, 12, 24, 40, 3, 2, GRAFT_SAME, GRAFT_RELU},
    };
    enum { N = 3 };
    for (size_t k = 0; k < sizeof strided / sizeof *strided; k++) {
        const int h = strided[k].h, w = strided[k].w, c = strided[k].c, f = strided[k].f;
        const int sh = strided[k].sh, sw = strided[k].sw;
        graft_model *m = conv_model(h, w, c,
                                    (graft_conv2d_cfg){.filters = f,
                                                       .kernel_size = {1, 1},
                                                       .strides = {sh, sw},
                                                       .padding = strided[k].pad,
                                                       .activation = strided[k].act});
        CHECK_OK(graft_model_status(m));
        graft_layer *l = graft_model_output(m);
        CHECK(strcmp(graft_conv2d_algorithm(l, false, N), "1x1 GEMM, strided rows") == 0);
        /* A 1x1 window: 'same' and 'valid' both give ceil(side / stride). */
        const int oh = (h + sh - 1) / sh, ow = (w + sw - 1) / sw;
        const size_t xs = (size_t)N * h * w * c, ys = (size_t)N * oh * ow * f;
        CHECK(graft_shape_size(&l->out_shape) * N == ys);
        float *x = malloc(xs * sizeof(float)), *y[2] = {malloc(ys * sizeof(float)), malloc(ys * sizeof(float))};
        float *one = malloc(ys / N * sizeof(float));
        graft_rng r;
        graft_rng_seed(&r, 90 + (unsigned)k);
        for (size_t i = 0; i < xs; i++) x[i] = graft_rng_normal(&r);
        const float *W = graft_layer_weight_data(l, 0);
        float *b = graft_layer_weight_data(l, 1);
        for (int j = 0; j < f; j++) b[j] = 0.1f * graft_rng_normal(&r);
        for (int apart = 0; apart < 2; apart++) {
            if (apart) setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
            graft_model_set_trainable(m, 0, graft_model_num_layers(m), 1);
            m->capacity = 0; /* replan */
            CHECK_OK(graft_model_predict(m, x, N, y[apart]));
            CHECK_MSG(strcmp(graft_plan_step_kind(m, l->index, NULL), apart ? "layer" : "pointwise") == 0,
                      "case %zu: step %s", k, graft_plan_step_kind(m, l->index, NULL));
            double worst = 0, peak = 0;
            for (int s = 0; s < N; s++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                        for (int j = 0; j < f; j++) {
                            const float *px =
                                x + (((size_t)s * h + (size_t)oy * sh) * w + (size_t)ox * sw) * c;
                            double want = b[j];
                            for (int i = 0; i < c; i++) want += (double)px[i] * W[(size_t)i * f + j];
                            if (strided[k].act == GRAFT_RELU && want < 0) want = 0;
                            const double got = y[apart][(((size_t)s * oh + oy) * ow + ox) * f + j];
                            worst = fmax(worst, fabs(got - want));
                            peak = fmax(peak, fabs(want));
                        }
            CHECK_MSG(peak > 1 && worst <= 1e-5 * peak, "case %zu, apart %d: %.3g of peak %.3g", k,
                      apart, worst, peak);
            for (int s = 0; s < N; s++) {
                CHECK_OK(graft_model_predict(m, x + (size_t)s * (xs / N), 1, one));
                CHECK_MSG(memcmp(one, y[apart] + (size_t)s * (ys / N), ys / N * sizeof(float)) == 0,
                          "case %zu, apart %d: image %d alone", k, apart, s);
            }
            graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
            CHECK_OK(graft_model_forward(m, x, N, true));
            CHECK_MSG(l->out && memcmp(l->out, y[apart], ys * sizeof(float)) == 0,
                      "case %zu, apart %d: training's forward", k, apart);
            unsetenv("GRAFT_NO_FUSED_INFERENCE");
        }
        CHECK_MSG(memcmp(y[0], y[1], ys * sizeof(float)) == 0, "case %zu: fused against apart", k);
        free(x);
        free(y[0]);
        free(y[1]);
        free(one);
        graft_model_free(m);
    }
}

static void test_too_small_input_refused(void)
{
    graft_model *m = conv_model(2, 2, 1, (graft_conv2d_cfg){.filters = 1, .kernel_size = {3, 3}});
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "conv2d") != NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_same_padding_shapes);
    RUN(test_gradients);
    RUN(test_shared_input_gradients);
    RUN(test_matches_pytorch);
    RUN(test_gemm_path_matches_pytorch);
    RUN(test_fit_is_repeatable);
    RUN(test_dense_gradients);
    RUN(test_strided_pointwise_inference);
    RUN(test_too_small_input_refused);
    return CHECK_SUMMARY();
}
