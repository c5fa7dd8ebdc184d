/* BatchNormalization: forward and moving statistics against PyTorch
 * (scripts/gen_fixtures_layers_a.py), gradients by central differences in
 * training and inference mode, the frozen-layer rule, invalid configs. */
#include "fixture.h"
#include "gradcheck.h"

#define FIXTURES "tests/fixtures/layers_a.bin"

static graft_model *bn_model(graft_shape in, graft_batch_norm_cfg cfg)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", in);
    graft_batch_norm(m, NULL, cfg);
    return m;
}

static void test_weights(void)
{
    graft_model *m = bn_model(graft_shape3(4, 4, 6), (graft_batch_norm_cfg){0});
    CHECK_OK(graft_model_status(m));
    graft_layer *l = graft_model_output(m);
    CHECK(strcmp(graft_layer_name(l), "batch_normalization") == 0);
    CHECK(strcmp(graft_layer_class(l), "BatchNormalization") == 0);
    static const char *names[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    static const float init[] = {1, 0, 0, 1};
    CHECK(graft_layer_num_weights(l) == 4);
    for (int k = 0; k < 4 && k < graft_layer_num_weights(l); k++) {
        CHECK(strcmp(graft_layer_weight_name(l, k), names[k]) == 0);
        graft_shape s = graft_layer_weight_shape(l, k);
        CHECK(s.rank == 1 && s.dim[0] == 6);
        CHECK(l->weights[k].trainable == (k < 2));
        for (int c = 0; c < 6; c++) CHECK(graft_layer_weight_data(l, k)[c] == init[k]);
    }
    graft_param_counts pc = graft_model_count_params(m);
    CHECK(pc.total == 24 && pc.trainable == 12 && pc.non_trainable == 12);
    CHECK(l->ops->stochastic && l->ops->stochastic(l));

    graft_layer *l2 = graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.no_scale = 1});
    CHECK(l2 && strcmp(graft_layer_name(l2), "batch_normalization_1") == 0);
    CHECK(l2 && graft_layer_num_weights(l2) == 3 &&
          strcmp(graft_layer_weight_name(l2, 0), "beta") == 0);
    graft_layer *l3 = graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.no_center = 1});
    CHECK(l3 && graft_layer_num_weights(l3) == 3 &&
          strcmp(graft_layer_weight_name(l3, 0), "gamma") == 0 &&
          strcmp(graft_layer_weight_name(l3, 1), "moving_mean") == 0);
    graft_model_free(m);
}

typedef struct {
    const fixture_array *cfg, *x, *w[4], *out, *new_mean, *new_var;
} bn_case;

static const fixture_array *get(const fixture *fx, const char *name, const char *field)
{
    char key[160];
    snprintf(key, sizeof key, "%s/%s", name, field);
    return fixture_get(fx, key);
}

static void check_close(const char *what, const float *a, const fixture_array *ref, size_t n)
{
    CHECK_MSG(ref && ref->size == n, "%s: reference size", what);
    if (!ref || ref->size != n) return;
    size_t worst = 0;
    double r = check_close_ratio(a, ref->data, n, 1e-5, 1e-5, &worst);
    CHECK_MSG(r <= 1, "%s: [%zu] %.7g vs %.7g", what, worst, a[worst], ref->data[worst]);
}

/* Builds the case's model with its weights; *n gets the batch size. */
static graft_model *case_model(const fixture *fx, const char *name, bn_case *c, int *n)
{
    static const char *wn[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    c->cfg = get(fx, name, "cfg");
    c->x = get(fx, name, "x");
    c->out = get(fx, name, "out");
    for (int k = 0; k < 4; k++) c->w[k] = get(fx, name, wn[k]);
    if (!c->cfg || !c->x || !c->out || !c->w[0] || !c->w[1] || !c->w[2] || !c->w[3]) {
        CHECK_MSG(0, "%s: arrays missing", name);
        return NULL;
    }
    int rank = (int)c->cfg->data[0];
    graft_shape s = {rank, {0}};
    for (int d = 0; d < rank; d++) s.dim[d] = c->x->dim[d + 1];
    *n = c->x->dim[0];
    graft_model *m = bn_model(s, (graft_batch_norm_cfg){.momentum = c->cfg->data[1],
                                                        .epsilon = c->cfg->data[2]});
    CHECK_OK(graft_model_status(m));
    graft_layer *l = graft_model_output(m);
    for (int k = 0; k < 4; k++) {
        CHECK(c->w[k]->size == graft_shape_size(&l->weights[k].shape));
        memcpy(graft_layer_weight_data(l, k), c->w[k]->data, c->w[k]->size * sizeof(float));
    }
    return m;
}

static void test_inference_matches_pytorch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURES) == 0);
    static const char *cases[] = {"bn_inference_rank3", "bn_inference_rank1"};
    for (int i = 0; i < 2; i++) {
        bn_case c;
        int n;
        graft_model *m = case_model(&fx, cases[i], &c, &n);
        if (!m) continue;
        float *y = malloc(c.x->size * sizeof(float));
        CHECK_OK(graft_model_predict(m, c.x->data, n, y));
        check_close(cases[i], y, c.out, c.x->size);
        /* Inference leaves the moving statistics alone. */
        graft_layer *l = graft_model_output(m);
        CHECK(memcmp(graft_layer_weight_data(l, 2), c.w[2]->data, c.w[2]->size * 4) == 0);
        CHECK(memcmp(graft_layer_weight_data(l, 3), c.w[3]->data, c.w[3]->size * 4) == 0);
        free(y);
        graft_model_free(m);
    }
    fixture_free(&fx);
}

static void test_training_matches_pytorch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURES) == 0);
    static const char *cases[] = {"bn_training_rank3", "bn_training_rank3_m09",
                                  "bn_training_rank1"};
    for (int i = 0; i < 3; i++) {
        bn_case c;
        int n;
        graft_model *m = case_model(&fx, cases[i], &c, &n);
        if (!m) continue;
        CHECK_OK(graft_model_forward(m, c.x->data, n, true));
        graft_layer *l = graft_model_output(m);
        char what[160];
        snprintf(what, sizeof what, "%s output", cases[i]);
        check_close(what, l->out, c.out, c.x->size);
        snprintf(what, sizeof what, "%s moving_mean", cases[i]);
        check_close(what, graft_layer_weight_data(l, 2), get(&fx, cases[i], "new_moving_mean"),
                    c.w[2]->size);
        snprintf(what, sizeof what, "%s moving_variance", cases[i]);
        check_close(what, graft_layer_weight_data(l, 3),
                    get(&fx, cases[i], "new_moving_variance"), c.w[3]->size);
        graft_model_free(m);
    }
    fixture_free(&fx);
}

/* Keras 2: a BatchNormalization that does not train runs in inference mode
 * even inside fit, and its moving statistics stay put. */
static void test_frozen_layer_uses_moving_statistics(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURES) == 0);
    bn_case c;
    int n;
    graft_model *m = case_model(&fx, "bn_inference_rank3", &c, &n);
    if (m) {
        graft_layer *l = graft_model_output(m);
        graft_layer_set_trainable(l, 0);
        CHECK_OK(graft_model_forward(m, c.x->data, n, true));
        check_close("frozen output", l->out, c.out, c.x->size);
        CHECK(memcmp(graft_layer_weight_data(l, 2), c.w[2]->data, c.w[2]->size * 4) == 0);
        CHECK(memcmp(graft_layer_weight_data(l, 3), c.w[3]->data, c.w[3]->size * 4) == 0);
        CHECK(!l->ops->stochastic(l));
        graft_model_free(m);
    }
    fixture_free(&fx);
}

/* Moving statistics away from their initial values, so inference-mode
 * gradients are not the trivial identity. */
static void perturb_stats(graft_layer *l, uint64_t seed)
{
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    int nw = graft_layer_num_weights(l);
    float *mm = graft_layer_weight_data(l, nw - 2), *mv = graft_layer_weight_data(l, nw - 1);
    size_t c = graft_shape_size(&l->weights[nw - 1].shape);
    for (size_t i = 0; i < c; i++) {
        mm[i] = 0.5f * graft_rng_normal(&rng);
        mv[i] = 0.5f + graft_rng_uniform(&rng);
    }
    for (int k = 0; k < nw - 2; k++) {
        float *w = graft_layer_weight_data(l, k);
        for (size_t i = 0; i < c; i++) w[i] += 0.3f * graft_rng_normal(&rng);
    }
}

static void test_gradients_training_mode(void)
{
    struct {
        graft_shape in;
        int n;
        graft_batch_norm_cfg cfg;
    } cases[] = {
        {{3, {3, 4, 5}}, 3, {0}},
        {{3, {2, 3, 4}}, 2, {.no_scale = 1}},
        {{3, {3, 2, 3}}, 2, {.no_center = 1, .epsilon = 0.1f}},
        {{1, {5}}, 6, {0}},
        {{1, {4}}, 3, {.momentum = 0.5f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = bn_model(cases[i].in, cases[i].cfg);
        CHECK_OK(graft_model_status(m));
        perturb_stats(graft_model_output(m), 100 + i);
        CHECK_MSG(gradcheck_model(m, cases[i].n, NULL, 21 + i, 40) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

static void test_gradients_inference_mode(void)
{
    graft_shape shapes[] = {{3, {3, 4, 5}}, {1, {6}}};
    for (int i = 0; i < 2; i++) {
        graft_model *m = bn_model(shapes[i], (graft_batch_norm_cfg){0});
        CHECK_OK(graft_model_status(m));
        graft_layer *l = graft_model_output(m);
        perturb_stats(l, 7 + i);
        graft_layer_set_trainable(l, 0);
        CHECK_MSG(gradcheck_model(m, 3, NULL, 31 + i, 40) == 0, "shape %d", i);
        graft_model_free(m);
    }
}

/* Behind a depthwise convolution, and feeding two consumers, so the input
 * gradient of BN is accumulated into by the second backward. */
static void test_gradients_in_a_graph(void)
{
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, "in", graft_shape3(4, 4, 3));
    graft_layer *bn = graft_batch_norm(m, in, (graft_batch_norm_cfg){0});
    graft_layer *a = graft_depthwise_conv2d(m, bn, (graft_depthwise_conv2d_cfg){
        .kernel_size = {3, 3}, .padding = GRAFT_SAME});
    graft_layer *b = graft_batch_norm(m, bn, (graft_batch_norm_cfg){0});
    graft_layer *both[] = {a, b};
    graft_add(m, NULL, 2, both);
    CHECK_OK(graft_model_status(m));
    perturb_stats(bn, 3);
    CHECK(gradcheck_model(m, 3, NULL, 41, 40) == 0);
    graft_model_free(m);
}

/* Fixed reduction order: bit-identical results for any number of threads. */
static void test_deterministic_across_threads(void)
{
    const int n = 8;
    const graft_shape s = graft_shape3(9, 9, 24);
    size_t xs = (size_t)n * graft_shape_size(&s);
    float *x = malloc(xs * sizeof(float)), *dy = malloc(xs * sizeof(float));
    graft_rng rng;
    graft_rng_seed(&rng, 9);
    for (size_t i = 0; i < xs; i++) x[i] = 5 + 3 * graft_rng_normal(&rng);
    for (size_t i = 0; i < xs; i++) dy[i] = graft_rng_normal(&rng);
    float *res[2][3];
    int saved = graft_threads_get();
    for (int t = 0; t < 2; t++) {
        graft_threads_set(t == 0 ? 1 : 3);
        graft_model *m = bn_model(s, (graft_batch_norm_cfg){0});
        m->want_input_grad = true;
        CHECK_OK(graft_model_forward(m, x, n, true));
        CHECK_OK(graft_model_backward(m, dy, n));
        graft_layer *l = graft_model_output(m);
        res[t][0] = malloc(xs * sizeof(float));
        res[t][1] = malloc(xs * sizeof(float));
        res[t][2] = malloc(m->n_weight_floats * 2 * sizeof(float));
        memcpy(res[t][0], l->out, xs * sizeof(float));
        memcpy(res[t][1], graft_model_layer(m, 0)->dout, xs * sizeof(float));
        memcpy(res[t][2], m->weights, m->n_weight_floats * sizeof(float));
        memcpy(res[t][2] + m->n_weight_floats, m->grads, m->n_weight_floats * sizeof(float));
        graft_model_free(m);
    }
    graft_threads_set(saved);
    CHECK(memcmp(res[0][0], res[1][0], xs * sizeof(float)) == 0);
    CHECK(memcmp(res[0][1], res[1][1], xs * sizeof(float)) == 0);
    CHECK(memcmp(res[0][2], res[1][2], 4 * 24 * 2 * sizeof(float)) == 0);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) free(res[t][k]);
    free(x);
    free(dy);
}

static void test_invalid_configs_refused(void)
{
    graft_model *m = bn_model(graft_shape3(2, 2, 3),
                              (graft_batch_norm_cfg){.name = "bn_bad", .momentum = 1.5f});
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "bn_bad") != NULL);
    graft_model_free(m);

    m = bn_model(graft_shape1(4), (graft_batch_norm_cfg){.epsilon = -1e-3f});
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "batch_normalization") != NULL);
    graft_model_free(m);

    /* The weights follow the last axis of the input it was built on. */
    m = bn_model(graft_shape3(2, 3, 5), (graft_batch_norm_cfg){0});
    graft_layer *l = graft_model_output(m);
    CHECK(graft_layer_weight_shape(l, 0).dim[0] == 5);
    CHECK(graft_layer_scale(m, NULL, "ls", 1e-6f, 4) == NULL); /* 5 channels, not 4 */
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_weights);
    RUN(test_inference_matches_pytorch);
    RUN(test_training_matches_pytorch);
    RUN(test_frozen_layer_uses_moving_statistics);
    RUN(test_gradients_training_mode);
    RUN(test_gradients_inference_mode);
    RUN(test_gradients_in_a_graph);
    RUN(test_deterministic_across_threads);
    RUN(test_invalid_configs_refused);
    return CHECK_SUMMARY();
}
