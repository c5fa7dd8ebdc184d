/* A ResNet block's projection shortcut inside the POINTWISE step of its
 * last 1x1 (exec/step_pointwise.c, shortcut_match): x -> 1x1/s -> BN ->
 * ReLU -> 1x1 -> BN -> ReLU -> 1x1 -> BN, added to x -> 1x1/s -> BN, then
 * a ReLU (ResNet), or without the BNs and the last ReLU (ResNetV2). Which
 * blocks the planner takes (not a shortcut with a ReLU, one read by another
 * layer, one planned before the block's last 1x1 has its input, nor a
 * strided last 1x1), and the bits: those of the layers run apart
 * (GRAFT_NO_FUSED_INFERENCE=1), alone or in a batch, on one thread or two,
 * with AVX-512 or AVX2, in a depth-first run, and the gradients of a
 * training pass whose head trains over the frozen block. */
#include "check.h"
#include "exec/plan.h"
#include "internal.h"
#include "plan_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { H = 13, W = 11, C0 = 24, MID = 16, F = 40, N = 5 };

typedef struct {
    int stride;        /* the shortcut's and the block's first 1x1's */
    bool bn;           /* BNs after the shortcut and the last 1x1 (ResNet; not ResNetV2) */
    bool relu_out;     /* a ReLU after the Add */
    bool late;         /* the shortcut built before the block's path (planned first) */
    bool sc_relu;      /* the shortcut 1x1 with a ReLU of its own */
    bool tap;          /* the shortcut's output read by a second Add as well */
    bool strided_last; /* the stride on the last 1x1 instead of the first */
    bool head;         /* global average -> Dense(3) after the block */
} block_cfg;

static graft_layer *conv1x1(graft_model *m, graft_layer *in, const char *name, int filters,
                            int stride, bool relu)
{
    return graft_conv2d(m, in,
                        (graft_conv2d_cfg){.name = name,
                                           .filters = filters,
                                           .kernel_size = {1, 1},
                                           .strides = {stride, stride},
                                           .activation = relu ? GRAFT_RELU : GRAFT_LINEAR});
}

static graft_layer *bn(graft_model *m, graft_layer *in, const char *name)
{
    return graft_batch_norm(m, in, (graft_batch_norm_cfg){.name = name, .epsilon = 1.001e-5f});
}

static graft_layer *shortcut(graft_model *m, graft_layer *x, const block_cfg *c)
{
    graft_layer *s = conv1x1(m, x, "sc_conv", F, c->strided_last ? 2 : c->stride, c->sc_relu);
    return c->bn ? bn(m, s, "sc_bn") : s;
}

/* 1x1 stem -> the block [-> global average -> Dense]. The path's middle
 * convolution is a 1x1 too: a 3x3 would take Winograd at 5 images and not
 * at one, whose bits differ (its algorithm is chosen per pass). */
static graft_model *block_model(const block_cfg *c)
{
    graft_model *m = graft_model_new("shortcut");
    graft_layer *x = graft_input(m, NULL, graft_shape3(H, W, C0));
    x = conv1x1(m, x, "stem", C0, 1, true);
    graft_layer *s = c->late ? shortcut(m, x, c) : NULL;
    graft_layer *y = conv1x1(m, x, "a_conv", MID, c->strided_last ? 1 : c->stride, false);
    y = graft_activation_layer(m, bn(m, y, "a_bn"), "a_relu", GRAFT_RELU);
    y = conv1x1(m, y, "b_conv", MID, 1, false);
    y = graft_activation_layer(m, bn(m, y, "b_bn"), "b_relu", GRAFT_RELU);
    if (!c->late) s = shortcut(m, x, c);
    y = conv1x1(m, y, "c_conv", F, c->strided_last ? 2 : 1, false);
    if (c->bn) y = bn(m, y, "c_bn");
    graft_layer *pair[2] = {s, y};
    y = graft_add(m, "add", 2, pair);
    if (c->relu_out) y = graft_activation_layer(m, y, "out", GRAFT_RELU);
    if (c->tap) {
        graft_layer *again[2] = {y, s};
        y = graft_add(m, "tap", 2, again);
    }
    if (c->head) {
        y = graft_global_average_pooling2d(m, y, "avg");
        graft_dense(m, y, (graft_dense_cfg){.name = "head", .units = 3});
    }
    CHECK_OK(graft_model_status(m));
    return m;
}

static float *random_input(int n, unsigned seed)
{
    float *x = malloc((size_t)n * H * W * C0 * sizeof(float));
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (size_t i = 0; x && i < (size_t)n * H * W * C0; i++) x[i] = 2 * graft_rng_normal(&r);
    return x;
}

static size_t out_size(graft_model *m)
{
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    return graft_shape_size(&s);
}

static const graft_layer *find(graft_model *m, const char *name)
{
    const graft_layer *l = graft_model_find(m, name);
    CHECK_MSG(l != NULL, "no layer '%s'", name);
    return l;
}

/* Whether the Add runs in the POINTWISE step that starts at the shortcut. */
static bool taken(graft_model *m)
{
    int root = -1;
    const char *kind = graft_plan_step_kind(m, find(m, "add")->index, &root);
    return strcmp(kind, "pointwise") == 0 && root == find(m, "sc_conv")->index;
}

/* Predicts with the plan's steps into fused and with the layers apart into
 * apart; returns whether the shortcut was taken. */
static bool predict_both(graft_model *m, const float *x, int n, float *fused, float *apart)
{
    CHECK_OK(graft_model_predict(m, x, n, fused));
    const bool t = taken(m);
    setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
    m->capacity = 0; /* replan */
    CHECK_OK(graft_model_predict(m, x, n, apart));
    unsetenv("GRAFT_NO_FUSED_INFERENCE");
    CHECK(in_step(m, find(m, "add"), "layer"));
    m->capacity = 0;
    return t;
}

/* ResNet's block and ResNetV2's, stride 1 and 2 (odd sides, whose last row
 * and column the stride drops): the shortcut's output never exists, and
 * the bits are the layers' apart. */
static void test_shortcut_equals_layers(void)
{
    float *x = random_input(N, 1);
    float *fused = malloc((size_t)N * H * W * F * sizeof(float));
    float *apart = malloc((size_t)N * H * W * F * sizeof(float));
    CHECK(x && fused && apart);
    for (int v = 0; v < 4 && x && fused && apart; v++) {
        const block_cfg c = {.stride = 1 + v % 2, .bn = v < 2, .relu_out = v < 2};
        graft_model *m = block_model(&c);
        set_random(m, 2 + (unsigned)v);
        CHECK_MSG(predict_both(m, x, N, fused, apart), "variant %d: not taken", v);
        graft_model_predict(m, x, N, fused); /* the plan again, for its buffers */
        CHECK_MSG(find(m, c.bn ? "sc_bn" : "sc_conv")->out == NULL,
                  "variant %d: the shortcut's output exists", v);
        const size_t n = (size_t)N * out_size(m);
        double peak = 0;
        for (size_t i = 0; i < n; i++) peak = fmax(peak, fabs(apart[i]));
        CHECK_MSG(peak > 0.5, "variant %d: peak %g proves nothing", v, peak);
        CHECK_MSG(bits_equal(fused, apart, n), "variant %d: not the layers' bits", v);
        check_same_bits(m, x, N, "add", "pointwise");
        graft_model_free(m);
    }
    free(x);
    free(fused);
    free(apart);
}

/* Not taken, and still the layers' bits: a shortcut with its own ReLU, one
 * a second Add reads, one planned before the block's last 1x1 has its
 * input, a strided last 1x1. */
static void test_shortcut_not_taken(void)
{
    static const block_cfg cases[] = {
        {.stride = 2, .bn = true, .relu_out = true, .sc_relu = true},
        {.stride = 2, .bn = true, .relu_out = true, .tap = true},
        {.stride = 2, .bn = true, .relu_out = true, .late = true},
        {.stride = 1, .bn = true, .relu_out = true, .strided_last = true},
    };
    static const char *const what[] = {"a ReLU shortcut", "a second reader", "planned early",
                                       "a strided last 1x1"};
    float *x = random_input(N, 3);
    float *fused = malloc((size_t)N * H * W * F * sizeof(float));
    float *apart = malloc((size_t)N * H * W * F * sizeof(float));
    CHECK(x && fused && apart);
    for (int k = 0; k < 4 && x && fused && apart; k++) {
        graft_model *m = block_model(&cases[k]);
        set_random(m, 4 + (unsigned)k);
        CHECK_MSG(!predict_both(m, x, N, fused, apart), "%s: taken", what[k]);
        CHECK_MSG(bits_equal(fused, apart, (size_t)N * out_size(m)), "%s: not the layers' bits",
                  what[k]);
        graft_model_free(m);
    }
    free(x);
    free(fused);
    free(apart);
}

/* Depth-first runs forced (GRAFT_DEPTH_FIRST=1) take the step into a run:
 * the same bits as over the whole batch. */
static void test_depth_first(void)
{
    const block_cfg c = {.stride = 2, .bn = true, .relu_out = true};
    graft_model *m = block_model(&c);
    set_random(m, 6);
    float *x = random_input(N, 7);
    const size_t n = (size_t)N * out_size(m);
    float *on = malloc(n * sizeof(float)), *off = malloc(n * sizeof(float));
    CHECK(x && on && off);
    if (!x || !on || !off) goto done;
    /* Two threads whatever the machine has: a run needs at least two
     * images a thread (plan_segments), and the step joins one only at two
     * images a chunk (its weights outweigh one image's output: chunkable). */
    const int threads = graft_threads_get();
    graft_threads_set(2);
    setenv("GRAFT_DEPTH_FIRST", "1", 1);
    CHECK_OK(graft_model_predict(m, x, N, on));
    const struct graft_plan *p = m->plan;
    const int k = p->step_of[find(m, "add")->index];
    bool in_run = false;
    for (int g = 0; g < p->n_segments; g++)
        in_run = in_run || (p->segments[g].first <= k && k < p->segments[g].end);
    CHECK_MSG(taken(m) && in_run, "the step is not in a depth-first run");
    setenv("GRAFT_DEPTH_FIRST", "0", 1);
    m->capacity = 0;
    CHECK_OK(graft_model_predict(m, x, N, off));
    unsetenv("GRAFT_DEPTH_FIRST");
    graft_threads_set(threads);
    CHECK(bits_equal(on, off, n));
done:
    free(x);
    free(on);
    free(off);
    graft_model_free(m);
}

/* A training pass whose head trains over the frozen block (its BNs then
 * normalise with their moving statistics): the block is one step there
 * too, and the gradients are those of the layers apart. */
static void test_training_pass(void)
{
    float *x = random_input(N, 8);
    float *g[2] = {NULL, NULL};
    size_t n = 0;
    for (int apart = 0; apart <= 1; apart++) {
        const block_cfg c = {.stride = 2, .bn = true, .relu_out = true, .head = true};
        graft_model *m = block_model(&c);
        set_random(m, 9);
        graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
        graft_model_set_trainable(m, find(m, "head")->index, graft_model_num_layers(m), 1);
        if (apart) setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
        CHECK_OK(graft_model_forward(m, x, N, true));
        unsetenv("GRAFT_NO_FUSED_INFERENCE");
        CHECK_MSG(apart || taken(m), "not taken in a training pass");
        float *dy = malloc((size_t)N * out_size(m) * sizeof(float));
        CHECK(dy != NULL);
        for (size_t i = 0; dy && i < (size_t)N * out_size(m); i++) dy[i] = (float)((i % 7) - 3) / 8;
        if (dy) CHECK_OK(graft_model_backward(m, dy, N));
        n = m->n_weight_floats;
        g[apart] = malloc(n * sizeof(float));
        if (g[apart]) memcpy(g[apart], m->grads, n * sizeof(float));
        free(dy);
        graft_model_free(m);
    }
    CHECK(g[0] && g[1]);
    double sum = 0;
    for (size_t i = 0; g[0] && i < n; i++) sum += fabs(g[0][i]);
    CHECK_MSG(sum > 0, "no gradient: the test proves nothing");
    CHECK_MSG(g[0] && g[1] && bits_equal(g[0], g[1], n), "the gradients differ");
    free(g[0]);
    free(g[1]);
    free(x);
}

int main(void)
{
    RUN(test_shortcut_equals_layers);
    RUN(test_shortcut_not_taken);
    RUN(test_depth_first);
    RUN(test_training_pass);
    return CHECK_SUMMARY();
}
