/* Max/Average pooling (TF 'same' and 'valid') and the global poolings: PyTorch
 * references, gradients, argmax ties, invalid windows. */
#include "layer_check.h"
#include "plan_check.h"

typedef graft_layer *(*pool_ctor)(graft_model *, graft_layer *, graft_pool2d_cfg);

static graft_model *pool_model(graft_shape in, pool_ctor ctor, graft_pool2d_cfg cfg)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", in);
    ctor(m, NULL, cfg);
    return m;
}

static graft_pool2d_cfg cfg_from(const fixture_array *a)
{
    return (graft_pool2d_cfg){.pool_size = {(int)a->data[0], (int)a->data[1]},
                              .strides = {(int)a->data[2], (int)a->data[3]},
                              .padding = a->data[4] != 0 ? GRAFT_SAME : GRAFT_VALID};
}

static void test_forward_matches_torch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_B) == 0);
    if (!fx.n) return;
    int cases = 0;
    for (int i = 0;; i++, cases++) {
        char name[64];
        snprintf(name, sizeof name, "pool/%d/cfg", i);
        const fixture_array *c = NULL;
        for (int k = 0; k < fx.n; k++)
            if (strcmp(fx.a[k].name, name) == 0) c = &fx.a[k];
        if (!c) break;
        snprintf(name, sizeof name, "pool/%d/x", i);
        const fixture_array *x = fixture_get(&fx, name);
        if (!x) break;
        graft_shape in = graft_shape3(x->dim[1], x->dim[2], x->dim[3]);

        snprintf(name, sizeof name, "pool/%d/max", i);
        graft_model *m = pool_model(in, graft_max_pooling2d, cfg_from(c));
        check_forward(m, x, fixture_get(&fx, name), false, 1e-7, 0);
        check_forward(m, x, fixture_get(&fx, name), true, 1e-7, 0); /* the argmax path */
        graft_model_free(m);

        snprintf(name, sizeof name, "pool/%d/avg", i);
        m = pool_model(in, graft_average_pooling2d, cfg_from(c));
        check_forward(m, x, fixture_get(&fx, name), false, 1e-6, 1e-5);
        graft_model_free(m);
    }
    CHECK_MSG(cases >= 8, "only %d pooling cases in the fixture", cases);

    const fixture_array *x = fixture_get(&fx, "global_pool/x");
    if (x) {
        graft_shape in = graft_shape3(x->dim[1], x->dim[2], x->dim[3]);
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, in);
        graft_global_average_pooling2d(m, NULL, NULL);
        check_forward(m, x, fixture_get(&fx, "global_pool/avg"), false, 1e-6, 1e-5);
        graft_model_free(m);
        m = graft_model_new("t");
        graft_input(m, NULL, in);
        graft_global_max_pooling2d(m, NULL, NULL);
        check_forward(m, x, fixture_get(&fx, "global_pool/max"), false, 1e-7, 0);
        check_forward(m, x, fixture_get(&fx, "global_pool/max"), true, 1e-7, 0);
        graft_model_free(m);
    }
    fixture_free(&fx);
}

static void test_shapes_and_defaults(void)
{
    graft_model *m = pool_model(graft_shape3(7, 7, 3), graft_max_pooling2d, (graft_pool2d_cfg){0});
    CHECK_OK(graft_model_status(m));
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    CHECK(s.rank == 3 && s.dim[0] == 3 && s.dim[1] == 3 && s.dim[2] == 3);
    graft_model_free(m);

    /* 'same' with stride 2 over 7: ceil(7/2) = 4. */
    m = pool_model(
        graft_shape3(7, 5, 2), graft_average_pooling2d,
        (graft_pool2d_cfg){.pool_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME});
    s = graft_layer_output_shape(graft_model_output(m));
    CHECK(s.rank == 3 && s.dim[0] == 4 && s.dim[1] == 3 && s.dim[2] == 2);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(4, 6, 5));
    graft_layer *a = graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.padding = GRAFT_SAME});
    graft_layer *b = graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.padding = GRAFT_SAME});
    graft_layer *c = graft_average_pooling2d(m, NULL, (graft_pool2d_cfg){.padding = GRAFT_SAME});
    graft_layer *d = graft_global_average_pooling2d(m, NULL, NULL);
    CHECK_OK(graft_model_status(m));
    CHECK(a && strcmp(graft_layer_name(a), "max_pooling2d") == 0);
    CHECK(b && strcmp(graft_layer_name(b), "max_pooling2d_1") == 0);
    CHECK(c && strcmp(graft_layer_name(c), "average_pooling2d") == 0);
    CHECK(c && strcmp(graft_layer_class(c), "AveragePooling2D") == 0);
    CHECK(d && strcmp(graft_layer_name(d), "global_average_pooling2d") == 0);
    CHECK(d && strcmp(graft_layer_class(d), "GlobalAveragePooling2D") == 0);
    s = d ? graft_layer_output_shape(d) : (graft_shape){0, {0}};
    CHECK(s.rank == 1 && s.dim[0] == 5);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(4, 6, 5));
    graft_layer *e = graft_global_max_pooling2d(m, NULL, NULL);
    CHECK(e && strcmp(graft_layer_name(e), "global_max_pooling2d") == 0);
    CHECK(e && strcmp(graft_layer_class(e), "GlobalMaxPooling2D") == 0);
    graft_model_free(m);
}

static const struct {
    int h, w, c;
    graft_pool2d_cfg cfg;
} grad_cases[] = {
    {6, 6, 3, {.pool_size = {2, 2}}},
    {7, 7, 2, {.pool_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME}},
    {5, 6, 3, {.pool_size = {2, 3}, .strides = {1, 2}, .padding = GRAFT_SAME}},
    {7, 5, 2, {.pool_size = {3, 2}, .strides = {2, 1}}},
    {5, 5, 2, {.pool_size = {2, 2}, .strides = {3, 3}}},
    {4, 3, 3, {.pool_size = {3, 3}, .strides = {1, 1}, .padding = GRAFT_SAME}},
};

static void test_gradients(void)
{
    for (size_t i = 0; i < sizeof grad_cases / sizeof *grad_cases; i++) {
        graft_shape in = graft_shape3(grad_cases[i].h, grad_cases[i].w, grad_cases[i].c);
        graft_model *m = pool_model(in, graft_max_pooling2d, grad_cases[i].cfg);
        CHECK_OK(graft_model_status(m));
        /* Distinct values 0.1 apart: a 1e-2 step never changes a window's winner. */
        CHECK_MSG(gradcheck_spaced(m, 2, 0.1f, 61 + i, 60) == 0, "max case %zu", i);
        graft_model_free(m);
        m = pool_model(in, graft_average_pooling2d, grad_cases[i].cfg);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_model(m, 2, NULL, 71 + i, 60) == 0, "avg case %zu", i);
        graft_model_free(m);
    }
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 5, 4));
    graft_global_max_pooling2d(m, NULL, NULL);
    CHECK(gradcheck_spaced(m, 2, 0.1f, 81, 60) == 0);
    graft_model_free(m);
    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 5, 4));
    graft_global_average_pooling2d(m, NULL, NULL);
    CHECK(gradcheck_model(m, 2, NULL, 82, 60) == 0);
    graft_model_free(m);
}

/* Each layer kind twice on one input, summed: the second backward accumulates. */
static void test_gradients_accumulate(void)
{
    graft_pool2d_cfg same3 = {.pool_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME};
    graft_pool2d_cfg valid = {.pool_size = {2, 2}, .strides = {2, 2}};
    for (int kind = 0; kind < 4; kind++) {
        graft_model *m = graft_model_new("t");
        graft_layer *in = graft_input(m, "in", graft_shape3(5, 4, 3));
        graft_layer *pair[2];
        switch (kind) {
        case 0:
            pair[0] = graft_max_pooling2d(m, in, same3);
            pair[1] = graft_max_pooling2d(
                m, in,
                (graft_pool2d_cfg){.pool_size = {2, 3}, .strides = {2, 3}, .padding = GRAFT_SAME});
            break;
        case 1:
            pair[0] = graft_average_pooling2d(m, in, same3);
            pair[1] = graft_average_pooling2d(m, in, valid);
            pair[1] = graft_zero_padding2d(m, pair[1], NULL, 1, 0, 0, 0);
            break;
        case 2:
            pair[0] = graft_global_max_pooling2d(m, in, NULL);
            pair[1] = graft_global_average_pooling2d(m, in, NULL);
            break;
        default:
            pair[0] = graft_global_average_pooling2d(m, in, NULL);
            pair[1] = graft_global_max_pooling2d(m, in, NULL);
            break;
        }
        graft_add(m, NULL, 2, pair);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_spaced(m, 2, 0.1f, 91 + kind, 60) == 0, "kind %d", kind);
        graft_model_free(m);
    }
}

/* On ties the gradient goes to the first cell of the window in row-major order,
 * the cell the forward pass took its value from. */
static void test_max_ties_route_to_first(void)
{
    const int H = 5, W = 5, C = 2;
    graft_model *m = pool_model(
        graft_shape3(H, W, C), graft_max_pooling2d,
        (graft_pool2d_cfg){.pool_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME});
    CHECK_OK(graft_model_status(m));
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    const int OH = os.dim[0], OW = os.dim[1];
    float x[5 * 5 * 2] = {0}, dy[3 * 3 * 2], expect[5 * 5 * 2] = {0};
    CHECK(OH == 3 && OW == 3);
    for (int i = 0; i < OH * OW * C; i++)
        dy[i] = (float)(i + 1);
    /* 'same' over 5 with stride 2 and a 3-wide window: one pad cell each side. */
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
            int y = oy * 2 - 1 < 0 ? 0 : oy * 2 - 1, xx = ox * 2 - 1 < 0 ? 0 : ox * 2 - 1;
            for (int c = 0; c < C; c++)
                expect[(y * W + xx) * C + c] += dy[(oy * OW + ox) * C + c];
        }
    m->want_input_grad = true;
    m->capacity = 0;
    CHECK_OK(graft_model_forward(m, x, 1, true));
    CHECK_OK(graft_model_backward(m, dy, 1));
    const float *dx = graft_model_layer(m, 0)->dout;
    for (int i = 0; dx && i < H * W * C; i++)
        CHECK_MSG(dx[i] == expect[i], "[%d] %g vs %g", i, (double)dx[i], (double)expect[i]);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(2, 2, 1));
    graft_global_max_pooling2d(m, NULL, NULL);
    m->want_input_grad = true;
    float gx[4] = {1, 3, 3, 3}, gdy[1] = {5};
    CHECK_OK(graft_model_forward(m, gx, 1, true));
    CHECK_OK(graft_model_backward(m, gdy, 1));
    dx = graft_model_layer(m, 0)->dout;
    CHECK(dx && dx[0] == 0 && dx[1] == 5 && dx[2] == 0 && dx[3] == 0);
    graft_model_free(m);
}

/* Naive TF max pooling: the first maximum of each window in row-major order
 * gets the window's gradient; dx is added to (acc) or written. */
static void naive_max(const float *x, const float *dy, int n, int H, int W, int C, graft_pool2d_cfg c,
                      float *y, float *dx, bool acc)
{
    int pt, pl, kh = c.pool_size[0], kw = c.pool_size[1];
    int sh = c.strides[0] ? c.strides[0] : kh, sw = c.strides[1] ? c.strides[1] : kw;
    int OH = graft_conv_out_size(H, kh, sh, c.padding, &pt), OW = graft_conv_out_size(W, kw, sw, c.padding, &pl);
    if (!acc) memset(dx, 0, sizeof(float) * n * H * W * C);
    for (int s = 0; s < n; s++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int ch = 0; ch < C; ch++) {
                    int best = -1;
                    for (int i = 0; i < kh; i++)
                        for (int j = 0; j < kw; j++) {
                            int yy = oy * sh - pt + i, xx = ox * sw - pl + j;
                            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                            int q = ((s * H + yy) * W + xx) * C + ch;
                            if (best < 0 || x[q] > x[best]) best = q;
                        }
                    int o = ((s * OH + oy) * OW + ox) * C + ch;
                    y[o] = x[best];
                    dx[best] += dy[o];
                }
}

/* Windows that tile the input (the fast path) and ones that overlap, on
 * values with many ties (ReLU's zeros among them), against naive loops:
 * the same bits forward and backward, written and accumulated. */
static void test_max_matches_naive(void)
{
    static const struct {
        int h, w, c;
        graft_pool2d_cfg cfg;
    } cases[] = {
        {9, 7, 32, {.pool_size = {2, 2}}},
        {8, 8, 5, {.pool_size = {2, 2}}},
        {7, 9, 8, {.pool_size = {2, 2}, .padding = GRAFT_SAME}},
        {10, 11, 3, {.pool_size = {3, 3}, .padding = GRAFT_SAME}},
        {11, 10, 4, {.pool_size = {2, 3}, .strides = {3, 4}}},
        {7, 7, 6, {.pool_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME}},
    };
    const int n = 3;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int H = cases[k].h, W = cases[k].w, C = cases[k].c;
        graft_model *m = pool_model(graft_shape3(H, W, C), graft_max_pooling2d, cases[k].cfg);
        CHECK_OK(graft_model_status(m));
        m->want_input_grad = true;
        graft_shape os = graft_layer_output_shape(graft_model_output(m));
        size_t nin = (size_t)n * H * W * C, nout = (size_t)n * graft_shape_size(&os);
        float *x = malloc(sizeof(float) * (3 * nin + 2 * nout));
        float *dx = x + nin, *want_dx = dx + nin, *dy = want_dx + nin, *want_y = dy + nout;
        graft_rng r;
        graft_rng_seed(&r, 100 + k);
        for (size_t i = 0; i < nin; i++) x[i] = (float)((int)(graft_rng_uniform(&r) * 5) - 2) * (i % 3 ? 1.0f : 0.0f);
        for (size_t i = 0; i < nout; i++) dy[i] = graft_rng_normal(&r);
        for (int acc = 0; acc < 2; acc++) {
            CHECK_OK(graft_model_forward(m, x, n, true));
            graft_layer *l = graft_model_layer(m, 1);
            for (size_t i = 0; i < nin; i++) dx[i] = want_dx[i] = acc ? (float)(i % 5) : NAN;
            naive_max(x, dy, n, H, W, C, cases[k].cfg, want_y, want_dx, acc);
            const float *in[1] = {x};
            float *din[1] = {dx};
            bool accumulate = acc;
            graft_bwd b = {n, true, in, l->out, dy, din, &accumulate, false, l->aux, m->scratch, NULL, NULL};
            l->ops->backward(l, &b);
            CHECK_MSG(memcmp(l->out, want_y, nout * sizeof(float)) == 0, "case %zu: forward", k);
            CHECK_MSG(memcmp(dx, want_dx, nin * sizeof(float)) == 0, "case %zu (acc %d): backward", k, acc);
        }
        free(x);
        graft_model_free(m);
    }
}

static void test_invalid_refused(void)
{
    graft_model *m = pool_model(graft_shape3(2, 4, 3), graft_max_pooling2d,
                                (graft_pool2d_cfg){.pool_size = {3, 3}});
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "max_pooling2d") != NULL);
    CHECK(strstr(graft_model_error(m), "valid") != NULL);
    graft_model_free(m);

    /* The same window is fine with 'same' padding, as in TensorFlow. */
    m = pool_model(graft_shape3(2, 4, 3), graft_average_pooling2d,
                   (graft_pool2d_cfg){.pool_size = {3, 3}, .padding = GRAFT_SAME});
    CHECK_OK(graft_model_status(m));
    graft_model_free(m);

    m = pool_model(graft_shape3(4, 4, 3), graft_average_pooling2d,
                   (graft_pool2d_cfg){.name = "pool", .pool_size = {-1, 2}});
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "'pool'") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(8));
    CHECK(graft_global_average_pooling2d(m, NULL, NULL) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "global_average_pooling2d") != NULL);
    graft_model_free(m);
}

/* conv(relu) -> max pool: the pool applies the ReLU's derivative and sums
 * the convolution's bias gradient (planned by the model). The same network
 * with the ReLU as a layer of its own (each layer checked by central
 * differences elsewhere) must give the same gradients. (Central differences over the whole chain are no
 * test: a step of 1e-2 moves maxima and ReLU kinks, with or without fusion.) */
static graft_model *conv_pool(bool relu_layer, graft_padding pool_pad, int pool, int stride)
{
    graft_model *m = graft_model_new("cp");
    graft_input(m, NULL, graft_shape3(9, 8, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 4, .kernel_size = {3, 3},
                                             .activation = relu_layer ? GRAFT_LINEAR : GRAFT_RELU});
    if (relu_layer) graft_activation_layer(m, NULL, "relu", GRAFT_RELU);
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.name = "pool", .pool_size = {pool, pool},
                                                    .strides = {stride, stride}, .padding = pool_pad});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 2});
    return m;
}

static void test_relu_fused_into_pool_backward(void)
{
    const struct {
        graft_padding pad;
        int pool, stride;
    } cases[] = {{GRAFT_VALID, 2, 2}, {GRAFT_SAME, 3, 2}}; /* tiled; overlapping */
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        graft_model *a = conv_pool(false, cases[k].pad, cases[k].pool, cases[k].stride);
        graft_model *b = conv_pool(true, cases[k].pad, cases[k].pool, cases[k].stride);
        CHECK_OK(graft_model_status(a));
        CHECK_OK(graft_model_status(b));
        CHECK(a->n_weight_floats == b->n_weight_floats);
        memcpy(b->weights, a->weights, a->n_weight_floats * sizeof(float));
        enum { N = 3 };
        float x[N * 9 * 8 * 3], r[N * 2];
        graft_rng g;
        graft_rng_seed(&g, 5 + k);
        for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = graft_rng_normal(&g);
        for (size_t i = 0; i < sizeof r / sizeof *r; i++) r[i] = graft_rng_normal(&g);
        graft_model *ms[2] = {a, b};
        for (int i = 0; i < 2; i++) {
            ms[i]->want_input_grad = true;
            CHECK_OK(graft_model_forward(ms[i], x, N, true));
            CHECK_OK(graft_model_backward(ms[i], r, N));
        }
        CHECK(masks_relu_below(a, graft_model_find(a, "pool")));
        CHECK(!masks_relu_below(b, graft_model_find(b, "pool")));
        /* All the same bits but the convolution's bias gradient, which the
         * pool sums over its own outputs: the same terms in another order. */
        const graft_layer *ca = graft_model_find(a, "conv2d");
        size_t bias_at = ca->weights[1].offset, nb = 4;
        for (size_t i = 0; i < a->n_weight_floats; i++) {
            if (i >= bias_at && i < bias_at + nb)
                CHECK_MSG(fabsf(a->grads[i] - b->grads[i]) <= 1e-5f * (1 + fabsf(b->grads[i])),
                          "bias gradient %zu: %g vs %g", i - bias_at, a->grads[i], b->grads[i]);
            else
                CHECK_MSG(a->grads[i] == b->grads[i], "gradient %zu: %g vs %g", i, a->grads[i],
                          b->grads[i]);
        }
        size_t xs = sizeof x / sizeof *x;
        CHECK(memcmp(graft_model_layer(a, 0)->dout, graft_model_layer(b, 0)->dout, xs * sizeof(float)) == 0);
        graft_model_free(a);
        graft_model_free(b);
    }
}

int main(void)
{
    RUN(test_forward_matches_torch);
    RUN(test_shapes_and_defaults);
    RUN(test_gradients);
    RUN(test_gradients_accumulate);
    RUN(test_max_ties_route_to_first);
    RUN(test_max_matches_naive);
    RUN(test_invalid_refused);
    RUN(test_relu_fused_into_pool_backward);
    return CHECK_SUMMARY();
}
