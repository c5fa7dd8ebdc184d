/* Chains of channel Concatenates in one buffer (exec/step_concat_append.c):
 * DenseNet-like blocks, x = Concatenate([x, conv(BN(ReLU(...)))]), whose
 * members share the buffer of the chain's first, each a prefix of its rows
 * read by the POINTWISE step of the next block. Which chains form (not
 * across another reader, a gradient or a kept split), and the bits: those
 * of the layers run apart (GRAFT_NO_FUSED_INFERENCE=1), alone or in a
 * batch, on one thread or two, with AVX-512 or AVX2, with depth-first runs
 * forced, and the gradients of a training pass whose last block trains. */
#include "check.h"
#include "exec/plan.h"
#include "internal.h"
#include "plan_check.h"

#include <stdio.h>
#include <stdlib.h>

enum { H = 16, W = 14, C0 = 24, G = 8, N = 5 };

/* BN -> ReLU -> 1x1 (4G) -> BN -> ReLU -> 3x3 (G), joined to x. */
static graft_layer *conv_block(graft_model *m, graft_layer *x, const char *name)
{
    char n[6][64];
    static const char *const part[] = {"0_bn", "0_relu", "1_conv", "1_bn", "1_relu", "2_conv"};
    for (int k = 0; k < 6; k++)
        snprintf(n[k], sizeof n[k], "%s_%s", name, part[k]);
    graft_layer *y =
        graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = n[0], .epsilon = 1.001e-5f});
    y = graft_activation_layer(m, y, n[1], GRAFT_RELU);
    y = graft_conv2d(
        m, y,
        (graft_conv2d_cfg){.name = n[2], .filters = 4 * G, .kernel_size = {1, 1}, .no_bias = 1});
    y = graft_batch_norm(m, y, (graft_batch_norm_cfg){.name = n[3], .epsilon = 1.001e-5f});
    y = graft_activation_layer(m, y, n[4], GRAFT_RELU);
    y = graft_conv2d(m, y,
                     (graft_conv2d_cfg){.name = n[5],
                                        .filters = G,
                                        .kernel_size = {3, 3},
                                        .padding = GRAFT_SAME,
                                        .no_bias = 1});
    char cat[64];
    snprintf(cat, sizeof cat, "%s_concat", name);
    graft_layer *pair[2] = {x, y};
    return graft_concatenate(m, cat, -1, 2, pair);
}

/* Three conv blocks, a transition (BN -> ReLU -> 1x1 -> 2x2 average pool),
 * two more blocks, [Dropout ->] BN -> ReLU -> global average. With `tap`,
 * block b2's output is also joined to the last block's by a third reader. */
static graft_model *dense_net_with(bool tap, bool drop)
{
    graft_model *m = graft_model_new("dense");
    graft_layer *x = graft_input(m, NULL, graft_shape3(H, W, C0));
    /* 1x1: a 3x3 would take Winograd at 5 images and not at one, whose
     * bits differ (the layer's algorithm is chosen per pass). */
    x = graft_conv2d(
        m, x,
        (graft_conv2d_cfg){
            .name = "stem", .filters = C0, .kernel_size = {1, 1}, .activation = GRAFT_RELU});
    x = conv_block(m, x, "b1");
    graft_layer *b2 = x = conv_block(m, x, "b2");
    x = conv_block(m, x, "b3");
    x = graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = "t_bn"});
    x = graft_activation_layer(m, x, "t_relu", GRAFT_RELU);
    x = graft_conv2d(
        m, x,
        (graft_conv2d_cfg){.name = "t_conv", .filters = 32, .kernel_size = {1, 1}, .no_bias = 1});
    x = graft_average_pooling2d(m, x, (graft_pool2d_cfg){.name = "t_pool", .padding = GRAFT_SAME});
    x = conv_block(m, x, "c1");
    x = conv_block(m, x, "c2");
    if (drop) x = graft_dropout(m, x, "drop", 0.5f);
    if (tap) {
        graft_layer *p = graft_average_pooling2d(
            m, b2, (graft_pool2d_cfg){.name = "tap", .padding = GRAFT_SAME});
        graft_layer *pair[2] = {x, p};
        x = graft_concatenate(m, "joined", -1, 2, pair);
    }
    x = graft_batch_norm(m, x, (graft_batch_norm_cfg){.name = "bn"});
    x = graft_activation_layer(m, x, "relu", GRAFT_RELU);
    graft_global_average_pooling2d(m, x, "avg");
    CHECK_OK(graft_model_status(m));
    return m;
}

static graft_model *dense_net(bool tap)
{
    return dense_net_with(tap, false);
}

static float *random_input(int n, unsigned seed)
{
    float *x = malloc((size_t)n * H * W * C0 * sizeof(float));
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (size_t i = 0; x && i < (size_t)n * H * W * C0; i++)
        x[i] = 2 * graft_rng_normal(&r);
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

/* The prediction of a model with these weights, its layers apart. */
static void predict_apart(bool tap, unsigned seed, const float *x, int n, float *y)
{
    graft_model *m = dense_net(tap);
    set_random(m, seed);
    setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
    CHECK_OK(graft_model_predict(m, x, n, y));
    unsetenv("GRAFT_NO_FUSED_INFERENCE");
    CHECK(in_step(m, find(m, "b2_concat"), "layer"));
    graft_model_free(m);
}

/* Each block's Concatenates are one chain in one buffer; the outputs are
 * the layers' apart, bit for bit. */
static void test_chain_equals_layers(void)
{
    graft_model *m = dense_net(false);
    set_random(m, 1);
    float *x = random_input(N, 2);
    float *fused = malloc((size_t)N * out_size(m) * sizeof(float));
    float *apart = malloc((size_t)N * out_size(m) * sizeof(float));
    CHECK(x && fused && apart);
    if (!x || !fused || !apart) goto done;
    CHECK_OK(graft_model_predict(m, x, N, fused));
    static const char *const cats[] = {"b1_concat", "b2_concat", "b3_concat", "c1_concat",
                                       "c2_concat"};
    for (int k = 0; k < 5; k++)
        CHECK_MSG(in_step(m, find(m, cats[k]), "concat_append"), "%s", cats[k]);
    /* b1..b3 share b1's buffer, c1..c2 c1's; the chains' last members are
     * whole tensors, the others prefixes of their rows. */
    CHECK(find(m, "b2_concat")->out == find(m, "b1_concat")->out);
    CHECK(find(m, "b3_concat")->out == find(m, "b1_concat")->out);
    CHECK(find(m, "c2_concat")->out == find(m, "c1_concat")->out);
    CHECK(find(m, "c1_concat")->out != find(m, "b1_concat")->out);
    CHECK(graft_plan_row_floats(m, find(m, "b1_concat")->index) == C0 + 3 * G);
    CHECK(graft_plan_row_floats(m, find(m, "b3_concat")->index) == C0 + 3 * G);
    CHECK(graft_plan_row_floats(m, find(m, "c1_concat")->index) == 32 + 2 * G);
    CHECK(in_step(m, find(m, "b2_0_bn"), "pointwise"));
    predict_apart(false, 1, x, N, apart);
    CHECK_MSG(bits_equal(fused, apart, (size_t)N * out_size(m)), "the chain's bits differ");
    check_same_bits(m, x, N, "b2_concat", "concat_append");
    /* A Dropout after a chain's last member (an ALIAS at inference) lives
     * in the chain's buffer, and keeps it alive. */
    graft_model_free(m);
    m = dense_net_with(false, true);
    set_random(m, 1);
    CHECK_OK(graft_model_predict(m, x, N, fused));
    const int drop = find(m, "drop")->index, last = find(m, "c2_concat")->index;
    CHECK(in_step(m, find(m, "drop"), "alias"));
    CHECK(m->plan->buf_of[drop] == m->plan->buf_of[last] && m->plan->buf_of[last] != last);
    CHECK_MSG(bits_equal(fused, apart, (size_t)N * out_size(m)), "the bits differ after a Dropout");
done:
    free(x);
    free(fused);
    free(apart);
    graft_model_free(m);
}

/* A third reader of b2's output ends the chain there: b2 is a whole
 * tensor, b3 starts a chain of its own with nothing after it (so it stays
 * a layer), and the last block's chain goes on into `joined`. */
static void test_other_reader_ends_chain(void)
{
    graft_model *m = dense_net(true);
    set_random(m, 3);
    float *x = random_input(N, 4);
    float *fused = malloc((size_t)N * out_size(m) * sizeof(float));
    float *apart = malloc((size_t)N * out_size(m) * sizeof(float));
    CHECK(x && fused && apart);
    if (!x || !fused || !apart) goto done;
    CHECK_OK(graft_model_predict(m, x, N, fused));
    CHECK(in_step(m, find(m, "b1_concat"), "concat_append"));
    CHECK(in_step(m, find(m, "b2_concat"), "concat_append"));
    CHECK(graft_plan_row_floats(m, find(m, "b2_concat")->index) == C0 + 2 * G);
    CHECK(in_step(m, find(m, "b3_concat"), "layer"));
    CHECK(in_step(m, find(m, "joined"), "concat_append"));
    CHECK(find(m, "joined")->out == find(m, "c1_concat")->out);
    predict_apart(true, 3, x, N, apart);
    CHECK_MSG(bits_equal(fused, apart, (size_t)N * out_size(m)), "the chain's bits differ");
done:
    free(x);
    free(fused);
    free(apart);
    graft_model_free(m);
}

/* A kept split (a feature cache's boundary) between two members ends the
 * chain below it: the stored output is a whole tensor. */
static void test_kept_split_ends_chain(void)
{
    graft_model *m = dense_net(false);
    set_random(m, 5);
    float *x = random_input(N, 6);
    float *fused = malloc((size_t)N * out_size(m) * sizeof(float));
    float *apart = malloc((size_t)N * out_size(m) * sizeof(float));
    CHECK(x && fused && apart);
    if (!x || !fused || !apart) goto done;
    CHECK_OK(graft_model_predict(m, x, N, fused));
    const int k = find(m, "b3_0_bn")->index;
    CHECK(graft_plan_keep_split(m, k));
    CHECK_OK(graft_model_predict(m, x, N, fused));
    CHECK(graft_plan_row_floats(m, find(m, "b2_concat")->index) == C0 + 2 * G);
    CHECK(find(m, "b3_concat")->out != find(m, "b2_concat")->out);
    CHECK(graft_plan_splits_at(m, k));
    predict_apart(false, 5, x, N, apart);
    CHECK_MSG(bits_equal(fused, apart, (size_t)N * out_size(m)), "the bits differ after the split");
done:
    free(x);
    free(fused);
    free(apart);
    graft_model_free(m);
}

/* Depth-first runs forced on: no run takes a chain's member or a step that
 * reads a prefix; the bits stay. */
static void test_depth_first_forced(void)
{
    graft_model *m = dense_net(false);
    set_random(m, 7);
    float *x = random_input(N, 8);
    float *on = malloc((size_t)N * out_size(m) * sizeof(float));
    float *off = malloc((size_t)N * out_size(m) * sizeof(float));
    CHECK(x && on && off);
    if (!x || !on || !off) goto done;
    /* Two threads whatever the machine has: a run needs at least two
     * images a thread (plan_segments). */
    const int threads = graft_threads_get();
    graft_threads_set(2);
    setenv("GRAFT_DEPTH_FIRST", "1", 1);
    CHECK_OK(graft_model_predict(m, x, N, on));
    bool ran = false;
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        const graft_layer *l = graft_model_layer(m, i);
        const graft_layer *src = l->n_inputs == 1 ? graft_model_layer(m, l->inputs[0]) : NULL;
        const bool reads_prefix =
            src && src->out_shape.rank == 3 &&
            graft_plan_row_floats(m, src->index) != (size_t)src->out_shape.dim[2];
        ran = ran || graft_plan_depth_first(m, i) > 0;
        CHECK_MSG(!(in_step(m, l, "concat_append") || reads_prefix) ||
                      graft_plan_depth_first(m, i) == 0,
                  "layer '%s' in a depth-first run", l->name);
    }
    CHECK_MSG(ran, "no depth-first run formed: the test proves nothing");
    setenv("GRAFT_DEPTH_FIRST", "0", 1);
    m->capacity = 0;
    CHECK_OK(graft_model_predict(m, x, N, off));
    unsetenv("GRAFT_DEPTH_FIRST");
    graft_threads_set(threads);
    CHECK(bits_equal(on, off, (size_t)N * out_size(m)));
done:
    free(x);
    free(on);
    free(off);
    graft_model_free(m);
}

/* A training pass whose last block (c2) trains: the frozen blocks chain,
 * c2's Concatenate needs a gradient and runs alone reading c1's output as
 * a whole tensor; the gradients are those of the layers apart. */
static void test_training_pass(void)
{
    float *x = random_input(N, 10);
    float *g[2] = {NULL, NULL};
    size_t n = 0;
    for (int apart = 0; apart <= 1; apart++) {
        graft_model *m = dense_net(false);
        set_random(m, 9);
        const int first = find(m, "c2_0_bn")->index;
        graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
        graft_model_set_trainable(m, first, graft_model_num_layers(m), 1);
        if (apart) setenv("GRAFT_NO_FUSED_INFERENCE", "1", 1);
        CHECK_OK(graft_model_forward(m, x, N, true));
        unsetenv("GRAFT_NO_FUSED_INFERENCE");
        CHECK(in_step(m, find(m, "b2_concat"), apart ? "layer" : "concat_append"));
        CHECK(in_step(m, find(m, "c2_concat"), "layer"));
        CHECK(in_step(m, find(m, "c1_concat"), "layer")); /* a chain of one */
        float *dy = malloc((size_t)N * out_size(m) * sizeof(float));
        CHECK(dy != NULL);
        for (size_t i = 0; dy && i < (size_t)N * out_size(m); i++)
            dy[i] = (float)((i % 7) - 3) / 8;
        if (dy) CHECK_OK(graft_model_backward(m, dy, N));
        n = m->n_weight_floats;
        g[apart] = malloc(n * sizeof(float));
        if (g[apart]) memcpy(g[apart], m->grads, n * sizeof(float));
        free(dy);
        graft_model_free(m);
    }
    CHECK(g[0] && g[1]);
    double sum = 0;
    for (size_t i = 0; g[0] && i < n; i++)
        sum += fabs(g[0][i]);
    CHECK_MSG(sum > 0, "no gradient: the test proves nothing");
    CHECK_MSG(g[0] && g[1] && bits_equal(g[0], g[1], n), "the gradients differ");
    free(g[0]);
    free(g[1]);
    free(x);
}

int main(void)
{
    RUN(test_chain_equals_layers);
    RUN(test_other_reader_ends_chain);
    RUN(test_kept_split_ends_chain);
    RUN(test_depth_first_forced);
    RUN(test_training_pass);
    return CHECK_SUMMARY();
}
