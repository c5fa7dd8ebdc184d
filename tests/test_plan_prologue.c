/* A pre-activation in front of a 1x1 convolution ([BN ->] [clamp ->] 1x1,
 * DenseNet's conv blocks and transitions) as the POINTWISE step's prologue
 * (exec/step_pointwise.c): which chains the planner takes, in inference and
 * for the frozen layers of a training pass, and their bits: those of the
 * BatchNormalization and ReLU layers run apart followed by the step without
 * a prologue, the same for an image alone or in a batch, on one thread or
 * two, with AVX-512 or AVX2. Squeeze-and-excitation's Multiply as the
 * prologue, the same way. */
#include "check.h"
#include "internal.h"
#include "plan_check.h"

#include <stdlib.h>

enum { H = 13, W = 11, C = 40, F = 24, N = 5 };

/* What stands before the 1x1 convolution. */
typedef enum { PRE_BN_RELU, PRE_BN, PRE_RELU6 } pre_kind;

static void pre_layers(graft_model *m, pre_kind k)
{
    if (k != PRE_RELU6) graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "pre_bn"});
    if (k == PRE_BN_RELU) graft_activation_layer(m, NULL, "pre_relu", GRAFT_RELU);
    if (k == PRE_RELU6) graft_relu(m, NULL, (graft_relu_cfg){.name = "pre_relu", .max_value = 6});
}

static void conv_layers(graft_model *m, int stride)
{
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv", .filters = F, .kernel_size = {1, 1},
                                             .strides = {stride, stride}, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "conv_bn", .epsilon = 1e-3f});
    graft_activation_layer(m, NULL, "conv_relu", GRAFT_RELU);
}

/* input -> pre -> 1x1 -> BN -> ReLU (pre and conv true), or either part. */
static graft_model *chain(pre_kind k, int stride, bool pre, bool conv)
{
    graft_model *m = graft_model_new("prologue");
    graft_input(m, NULL, graft_shape3(H, W, C));
    if (pre) pre_layers(m, k);
    if (conv) conv_layers(m, stride);
    CHECK_OK(graft_model_status(m));
    return m;
}

/* dst's weights from the layers of src with the same names. */
static void copy_weights(graft_model *dst, graft_model *src)
{
    for (int i = 0; i < graft_model_num_layers(dst); i++) {
        graft_layer *d = graft_model_layer(dst, i);
        graft_layer *s = graft_model_find(src, graft_layer_name(d));
        for (int k = 0; s && k < graft_layer_num_weights(d); k++) {
            graft_shape sh = graft_layer_weight_shape(d, k);
            memcpy(graft_layer_weight_data(d, k), graft_layer_weight_data(s, k),
                   graft_shape_size(&sh) * sizeof(float));
        }
    }
}

static float *random_input(int n, unsigned seed)
{
    float *x = malloc((size_t)n * H * W * C * sizeof(float));
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (size_t i = 0; x && i < (size_t)n * H * W * C; i++) x[i] = 2 * graft_rng_normal(&r);
    return x;
}

static size_t out_size(graft_model *m)
{
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    return graft_shape_size(&s);
}

/* The fused chain = its pre-activation's layers run apart, then the 1x1
 * step without a prologue, bit for bit; only the step's output exists. */
static void test_prologue_equals_layers(void)
{
    static const pre_kind kinds[] = {PRE_BN_RELU, PRE_BN, PRE_RELU6};
    float *x = random_input(N, 1);
    float *mid = malloc((size_t)N * H * W * C * sizeof(float));
    float *fused = malloc((size_t)N * H * W * F * sizeof(float));
    float *plain = malloc((size_t)N * H * W * F * sizeof(float));
    CHECK(x && mid && fused && plain);
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds && x && mid && fused && plain; k++)
        for (int stride = 1; stride <= 2; stride++) {
            graft_model *all = chain(kinds[k], stride, true, true);
            graft_model *pre = chain(kinds[k], stride, true, false);
            graft_model *conv = chain(kinds[k], stride, false, true);
            set_random(all, 3 + (unsigned)k);
            copy_weights(pre, all);
            copy_weights(conv, all);
            CHECK_OK(graft_model_predict(all, x, N, fused));
            CHECK_OK(graft_model_predict(pre, x, N, mid));
            CHECK_OK(graft_model_predict(conv, mid, N, plain));
            int root = -1;
            const graft_layer *first = graft_model_layer(all, 1);
            CHECK_MSG(!strcmp(graft_plan_step_kind(all, first->index, &root), "pointwise") &&
                          root == first->index,
                      "kind %d stride %d", (int)kinds[k], stride);
            CHECK(in_step(all, graft_model_find(all, "conv_relu"), "pointwise"));
            CHECK(first->out == NULL);
            CHECK(in_step(conv, graft_model_find(conv, "conv"), "pointwise"));
            CHECK_MSG(memcmp(fused, plain, N * out_size(all) * sizeof(float)) == 0,
                      "kind %d stride %d", (int)kinds[k], stride);
            graft_model_free(all);
            graft_model_free(pre);
            graft_model_free(conv);
        }
    free(x);
    free(mid);
    free(fused);
    free(plain);
}

/* Squeeze and excitation in front of a 1x1 (EfficientNet's projection):
 * x -> GAP (keepdims) -> 1x1 sigmoid = gate; Multiply(x, gate) (or the gate
 * first) -> 1x1 -> BN. The Multiply is the step's prologue, whose blocks of
 * rows span images (143 pixels an image, 96 a block); the outputs are those
 * of the layers run apart (GRAFT_NO_FUSED_INFERENCE), bit for bit, alone or
 * in a batch, on one thread or two, AVX2 or AVX-512. A strided 1x1 does not
 * take it. */
static graft_model *excite_chain(bool gate_first, int stride)
{
    graft_model *m = graft_model_new("excite");
    graft_layer *x = graft_input(m, NULL, graft_shape3(H, W, C));
    graft_layer *p = graft_global_average_pooling2d_keepdims(m, x, "squeeze");
    graft_layer *g = graft_conv2d(m, p, (graft_conv2d_cfg){.name = "gate", .filters = C,
                                                           .kernel_size = {1, 1},
                                                           .activation = GRAFT_SIGMOID});
    graft_layer *pair[2] = {gate_first ? g : x, gate_first ? x : g};
    graft_layer *e = graft_multiply(m, "excite", 2, pair);
    graft_layer *c = graft_conv2d(m, e, (graft_conv2d_cfg){.name = "conv", .filters = F,
                                                           .kernel_size = {1, 1},
                                                           .strides = {stride, stride},
                                                           .no_bias = 1});
    graft_batch_norm(m, c, (graft_batch_norm_cfg){.name = "conv_bn", .epsilon = 1e-3f});
    CHECK_OK(graft_model_status(m));
    return m;
}

static void test_excite_prologue(void)
{
    float *x = random_input(N, 21);
    float *fused = malloc((size_t)N * H * W * F * sizeof(float));
    float *plain = malloc((size_t)N * H * W * F * sizeof(float));
    CHECK(x && fused && plain);
    for (int first = 0; first < 2 && x && fused && plain; first++) {
        graft_model *m = excite_chain(first, 1);
        set_random(m, 22 + (unsigned)first);
        CHECK_OK(graft_model_predict(m, x, N, fused));
        const graft_layer *e = graft_model_find(m, "excite");
        int root = -1;
        CHECK_MSG(!strcmp(graft_plan_step_kind(m, e->index, &root), "pointwise") &&
                      root == e->index,
                  "gate first %d", first);
        CHECK(e->out == NULL);
        setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
        m->capacity = 0;
        CHECK_OK(graft_model_predict(m, x, N, plain));
        CHECK(in_step(m, e, "layer"));
        unsetenv("GRAFT_NO_FUSED_INFERENCE");
        CHECK_MSG(memcmp(fused, plain, N * out_size(m) * sizeof(float)) == 0, "gate first %d",
                  first);
        m->capacity = 0;
        check_same_bits(m, x, N, "excite", "pointwise");
        graft_model_free(m);
    }
    graft_model *m = excite_chain(false, 2);
    set_random(m, 24);
    CHECK_OK(graft_model_predict(m, x, N, fused));
    CHECK(in_step(m, graft_model_find(m, "excite"), "layer"));
    graft_model_free(m);
    free(x);
    free(fused);
    free(plain);
}

/* Bits: an image alone (its columns split between the threads) = the same
 * image in a batch; 1 thread = 2 threads; AVX2 = AVX-512. */
static void test_bits_reproducible(void)
{
    for (int stride = 1; stride <= 2; stride++) {
        graft_model *m = chain(PRE_BN_RELU, stride, true, true);
        set_random(m, 5);
        float *x = random_input(N, 6);
        CHECK(x != NULL);
        if (x) check_same_bits(m, x, N, "pre_bn", "pointwise");
        free(x);
        graft_model_free(m);
    }
}

/* Not taken: a BatchNormalization or ReLU output with another reader, a
 * trained BatchNormalization, or the switch; a frozen chain in a training
 * pass is. */
static void test_plan_takes_only_gradient_free_chains(void)
{
    graft_model *m = graft_model_new("shared");
    graft_layer *x = graft_input(m, NULL, graft_shape3(H, W, C));
    graft_layer *b = graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = "pre_bn"});
    graft_layer *r = graft_activation_layer(m, b, "pre_relu", GRAFT_RELU);
    graft_layer *c = graft_conv2d(m, r, (graft_conv2d_cfg){.name = "conv", .filters = C,
                                                           .kernel_size = {1, 1}});
    graft_layer *pair[2] = {b, c};
    graft_add(m, "add", 2, pair); /* a second reader of pre_bn */
    CHECK_OK(graft_model_status(m));
    set_random(m, 7);
    float *in = random_input(1, 8), *y = malloc((size_t)H * W * C * sizeof(float));
    CHECK(in && y);
    CHECK_OK(graft_model_predict(m, in, 1, y));
    CHECK(in_step(m, b, "layer"));
    int root = -1;
    CHECK(!strcmp(graft_plan_step_kind(m, c->index, &root), "pointwise") && root == r->index);
    graft_model_free(m);

    m = chain(PRE_BN_RELU, 1, true, true);
    set_random(m, 9);
    b = graft_model_find(m, "pre_bn");
    /* A training pass over frozen layers takes it... */
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
    CHECK_OK(graft_model_forward(m, in, 1, true));
    CHECK(in_step(m, b, "pointwise"));
    /* ...not when the BatchNormalization trains, */
    graft_model_set_trainable(m, b->index, b->index + 1, 1);
    m->capacity = 0;
    CHECK_OK(graft_model_forward(m, in, 1, true));
    CHECK(in_step(m, b, "layer"));
    CHECK(!in_step(m, graft_model_find(m, "conv"), "pointwise"));
    /* nor with the switch. */
    setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
    m->capacity = 0;
    CHECK_OK(graft_model_predict(m, in, 1, y));
    CHECK(in_step(m, b, "layer"));
    unsetenv("GRAFT_NO_FUSED_INFERENCE");
    graft_model_free(m);
    free(in);
    free(y);
}

/* A trainable BatchNormalization without gamma and beta has no gradient, yet
 * in a training pass it normalises with the batch's statistics: no
 * gradient-free step may fold it, in front of a 1x1 or behind one. */
static void test_weightless_trainable_bn_not_folded(void)
{
    for (int behind = 0; behind <= 1; behind++) {
        graft_model *m = graft_model_new("weightless");
        graft_layer *x = graft_input(m, NULL, graft_shape3(H, W, C));
        graft_batch_norm_cfg bc = {.name = "bn", .no_center = 1, .no_scale = 1};
        graft_conv2d_cfg cc = {.name = "conv", .filters = C, .kernel_size = {1, 1}};
        graft_layer *bn, *conv;
        if (behind) {
            conv = graft_conv2d(m, x, cc);
            bn = graft_batch_norm(m, conv, bc);
        } else {
            bn = graft_batch_norm(m, x, bc);
            conv = graft_conv2d(m, bn, cc);
        }
        CHECK_OK(graft_model_status(m));
        set_random(m, 11);
        graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
        graft_model_set_trainable(m, bn->index, bn->index + 1, 1);
        float *in = random_input(4, 12);
        CHECK(in != NULL);
        CHECK_OK(graft_model_forward(m, in, 4, true));
        CHECK_MSG(in_step(m, bn, "layer"), "BatchNormalization %s the 1x1 was folded",
                  behind ? "behind" : "in front of");
        /* The batch's statistics: each channel of the output has mean 0. */
        const graft_layer *o = graft_model_layer(m, graft_model_num_layers(m) - 1);
        const float *y = o->out;
        double worst = 0;
        for (int c = 0; behind && c < C; c++) {
            double sum = 0;
            for (int r = 0; r < 4 * H * W; r++) sum += y[(size_t)r * C + c];
            worst = fmax(worst, fabs(sum / (4.0 * H * W)));
        }
        CHECK_MSG(worst < 1e-4, "channel mean %g: not the batch's statistics", worst);
        (void)conv;
        free(in);
        graft_model_free(m);
    }
}

/* A transition (BN -> ReLU -> linear 1x1 -> 2x2/2 average pool, DenseNet's,
 * with and without the 1x1's bias; odd sides, whose last row and column the
 * pool drops): the pool goes first, inside the step, over the prologue's
 * rows; the 1x1's output never exists. Linear both, so the outputs are the
 * layers' apart within the rounding of the other order (2e-6 of the peak),
 * and the same bits alone or in a batch, on one thread or two, with AVX2.
 * Not taken: a 3x3 pool, a 1x1 with a ReLU. */
static graft_model *transition(bool bias, int pool, bool relu)
{
    graft_model *m = graft_model_new("transition");
    graft_input(m, NULL, graft_shape3(H, W, C));
    pre_layers(m, PRE_BN_RELU);
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv", .filters = F, .kernel_size = {1, 1},
                                             .no_bias = !bias,
                                             .activation = relu ? GRAFT_RELU : GRAFT_LINEAR});
    graft_average_pooling2d(m, NULL, (graft_pool2d_cfg){.name = "pool", .pool_size = {pool, pool},
                                                        .strides = {2, 2}});
    CHECK_OK(graft_model_status(m));
    return m;
}

static void test_transition_pools_first(void)
{
    float *x = random_input(N, 21);
    const size_t out_n = (size_t)N * (H / 2) * (W / 2) * F;
    float *fused = malloc(out_n * sizeof(float)), *apart = malloc(out_n * sizeof(float));
    CHECK(x && fused && apart);
    for (int bias = 0; bias <= 1 && x && fused && apart; bias++) {
        graft_model *m = transition(bias, 2, false);
        set_random(m, 22 + (unsigned)bias);
        CHECK_OK(graft_model_predict(m, x, N, fused));
        const graft_layer *conv = graft_model_find(m, "conv"), *pool = graft_model_find(m, "pool");
        int root = -1;
        CHECK_MSG(!strcmp(graft_plan_step_kind(m, pool->index, &root), "pointwise") &&
                      root == graft_model_find(m, "pre_bn")->index,
                  "bias %d: the pool is not in the step", bias);
        CHECK(conv->out == NULL);
        setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
        m->capacity = 0;
        CHECK_OK(graft_model_predict(m, x, N, apart));
        unsetenv("GRAFT_NO_FUSED_INFERENCE");
        CHECK(in_step(m, pool, "layer"));
        double peak = 0, worst = 0;
        for (size_t i = 0; i < out_n; i++) {
            peak = fmax(peak, fabs(apart[i]));
            worst = fmax(worst, fabs((double)fused[i] - apart[i]));
        }
        printf("  bias %d: %.3g of the peak\n", bias, worst / peak);
        CHECK_MSG(peak > 0.5 && worst <= 2e-6 * peak, "bias %d: %.3g of peak %.3g", bias, worst,
                  peak);
        m->capacity = 0;
        check_same_bits(m, x, N, "pool", "pointwise");
        graft_model_free(m);
    }
    for (int k = 0; k < 2; k++) {
        graft_model *m = transition(false, k ? 2 : 3, k == 1);
        set_random(m, 24);
        CHECK_OK(graft_model_predict(m, x, 1, fused));
        CHECK_MSG(in_step(m, graft_model_find(m, "pool"), "layer"), "%s: the pool was taken",
                  k ? "a ReLU 1x1" : "a 3x3 pool");
        graft_model_free(m);
    }
    free(x);
    free(fused);
    free(apart);
}

int main(void)
{
    RUN(test_prologue_equals_layers);
    RUN(test_weightless_trainable_bn_not_folded);
    RUN(test_bits_reproducible);
    RUN(test_excite_prologue);
    RUN(test_plan_takes_only_gradient_free_chains);
    RUN(test_transition_pools_first);
    return CHECK_SUMMARY();
}
