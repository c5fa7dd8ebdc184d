/* Losses, accuracy and optimizers against independent references; fit,
 * evaluate, determinism, freezing, and Keras's console lines. */
#include "check.h"
#include "fixture.h"
#include "internal.h"

#include <stdlib.h>
#include <unistd.h>

static fixture fx;

static const float *F(const char *name) { const fixture_array *a = fixture_get(&fx, name); return a ? a->data : NULL; }

static void test_losses_match_reference(void)
{
    CHECK_NEAR(graft_loss_value(GRAFT_BINARY_CROSSENTROPY, 0, F("bin_pred"), F("bin_y"), 6, 3),
               F("bin_loss")[0], 1e-6);
    CHECK_NEAR(graft_loss_value(GRAFT_BINARY_CROSSENTROPY, 1, F("binlogit_pred"), F("bin_y"), 6, 3),
               F("binlogit_loss")[0], 1e-6);
    CHECK_NEAR(graft_loss_value(GRAFT_CATEGORICAL_CROSSENTROPY, 0, F("cat_pred"), F("cat_y"), 5, 4),
               F("cat_loss")[0], 1e-6);
    CHECK_NEAR(graft_loss_value(GRAFT_CATEGORICAL_CROSSENTROPY, 1, F("catlogit_pred"), F("cat_y"), 5, 4),
               F("catlogit_loss")[0], 1e-6);
    CHECK_NEAR(graft_loss_value(GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY, 0, F("cat_pred"),
                                F("cat_labels"), 5, 4),
               F("sparse_loss")[0], 1e-6);
    CHECK_NEAR(graft_loss_value(GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY, 1, F("catlogit_pred"),
                                F("cat_labels"), 5, 4),
               F("catlogit_loss")[0], 1e-6);
    CHECK_NEAR(graft_accuracy_value(GRAFT_BINARY_CROSSENTROPY, F("bin_pred"), F("bin_y"), 6, 3),
               F("bin_acc")[0], 1e-6);
    CHECK_NEAR(graft_accuracy_value(GRAFT_CATEGORICAL_CROSSENTROPY, F("cat_pred"), F("cat_y"), 5, 4),
               F("cat_acc")[0], 1e-6);
    CHECK_NEAR(graft_accuracy_value(GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY, F("cat_pred"),
                                    F("cat_labels"), 5, 4),
               F("cat_acc")[0], 1e-6);
}

/* dL/dpred by central differences of the loss itself, for every loss kind. */
static void test_loss_gradients(void)
{
    struct {
        graft_loss_kind k;
        int logits, n, dim;
        const char *pred, *y;
    } cases[] = {
        {GRAFT_BINARY_CROSSENTROPY, 0, 6, 3, "bin_pred", "bin_y"},
        {GRAFT_BINARY_CROSSENTROPY, 1, 6, 3, "binlogit_pred", "bin_y"},
        {GRAFT_CATEGORICAL_CROSSENTROPY, 0, 5, 4, "cat_pred", "cat_y"},
        {GRAFT_CATEGORICAL_CROSSENTROPY, 1, 5, 4, "catlogit_pred", "cat_y"},
        {GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY, 0, 5, 4, "cat_pred", "cat_labels"},
        {GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY, 1, 5, 4, "catlogit_pred", "cat_labels"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int sz = cases[c].n * cases[c].dim;
        float *p = malloc(sizeof(float) * (size_t)sz), *d = malloc(sizeof(float) * (size_t)sz);
        memcpy(p, F(cases[c].pred), sizeof(float) * (size_t)sz);
        const float *y = F(cases[c].y);
        graft_loss_grad(cases[c].k, cases[c].logits, p, y, cases[c].n, cases[c].dim, d);
        for (int i = 0; i < sz; i++) {
            float keep = p[i], h = 1e-3f;
            if (!cases[c].logits && (keep < 2e-3f || keep > 1 - 2e-3f)) continue; /* at the clip */
            p[i] = keep + h;
            double lp = graft_loss_value(cases[c].k, cases[c].logits, p, y, cases[c].n, cases[c].dim);
            p[i] = keep - h;
            double lm = graft_loss_value(cases[c].k, cases[c].logits, p, y, cases[c].n, cases[c].dim);
            p[i] = keep;
            double num = (lp - lm) / (2.0 * h);
            CHECK_MSG(fabs(num - d[i]) <= 1e-3 + 1e-2 * fabs(num), "case %zu [%d]: %g vs %g", c, i,
                      d[i], num);
        }
        /* Saturated probabilities sit outside the clip: no gradient, as in Keras. */
        if (c == 0) CHECK(d[0] == 0.0f && d[5] == 0.0f);
        free(p);
        free(d);
    }
}

/* A model whose only weights are 20 floats, to drive the optimizer directly. */
static graft_model *twenty_weights(graft_optimizer opt)
{
    graft_model *m = graft_model_new("opt");
    graft_input(m, NULL, graft_shape1(1));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 20, .no_bias = 1});
    graft_compile_cfg cc = {.optimizer = opt, .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    CHECK_OK(graft_model_prepare(m, 1, true));
    memcpy(graft_layer_weight_data(graft_model_layer(m, 1), 0), F("opt_w"), 20 * sizeof(float));
    return m;
}

static void check_steps(graft_optimizer opt, const char *expect, double tol)
{
    graft_model *m = twenty_weights(opt);
    graft_layer *d = graft_model_layer(m, 1);
    memcpy(d->weights[0].grad, F("opt_g1"), 20 * sizeof(float));
    graft_optimizer_step(m);
    memcpy(d->weights[0].grad, F("opt_g2"), 20 * sizeof(float));
    graft_optimizer_step(m);
    size_t worst = 0;
    double r = check_close_ratio(d->weights[0].data, F(expect), 20, tol, tol, &worst);
    CHECK_MSG(r <= 1, "%s: weight %zu is %.8g, expected %.8g", expect, worst,
              d->weights[0].data[worst], F(expect)[worst]);
    graft_model_free(m);
}

static void test_optimizer_steps(void)
{
    check_steps(graft_sgd(0.1f, 0, 0), "sgd_plain", 1e-6);
    check_steps(graft_sgd(0.1f, 0.9f, 0), "sgd_momentum", 1e-6);
    check_steps(graft_sgd(0.1f, 0.9f, 1), "sgd_nesterov", 1e-6);
    check_steps(graft_adam(1e-3f), "adam", 1e-6);
    check_steps(graft_adam(1e-5f), "adam_small_lr", 1e-7);
    check_steps(graft_rmsprop(1e-3f), "rmsprop", 1e-6);
}

/* Adam over enough weights for the vectorised, multi-threaded update (and a
 * scalar tail): the same bits as TF2's formula evaluated one weight at a time. */
static void test_adam_same_bits_as_scalar(void)
{
    enum { N = 50003, STEPS = 3 };
    graft_model *m = graft_model_new("adam_bits");
    graft_input(m, NULL, graft_shape1(1));
    graft_dense(m, NULL, (graft_dense_cfg){.units = N, .no_bias = 1});
    graft_optimizer o = graft_adam(1e-3f);
    graft_compile_cfg cc = {.optimizer = o, .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    CHECK_OK(graft_model_prepare(m, 1, true));
    graft_layer *d = graft_model_layer(m, 1);
    float *w = malloc(3 * N * sizeof(float)), *m1 = w + N, *v = m1 + N;
    graft_rng r;
    graft_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) w[i] = d->weights[0].data[i] = graft_rng_normal(&r);
    memset(m1, 0, 2 * N * sizeof(float));
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++) d->weights[0].grad[i] = graft_rng_normal(&r) * (i % 7 ? 1e-3f : 0.0f);
        graft_optimizer_step(m);
        float lr_t = (float)(o.learning_rate * sqrt(1 - pow(o.beta_2, t)) / (1 - pow(o.beta_1, t)));
        for (int i = 0; i < N; i++) {
            float g = d->weights[0].grad[i];
            m1[i] += (g - m1[i]) * (1 - o.beta_1);
            v[i] += (g * g - v[i]) * (1 - o.beta_2);
            w[i] -= lr_t * m1[i] / (sqrtf(v[i]) + o.epsilon);
        }
    }
    int differ = 0;
    for (int i = 0; i < N; i++) differ += memcmp(&w[i], &d->weights[0].data[i], sizeof(float)) != 0;
    CHECK_MSG(differ == 0, "%d of %d weights differ from the scalar formula", differ, N);
    free(w);
    graft_model_free(m);
}

/* Two blobs in 2-D; a small MLP must separate them. */
static void make_blobs(float *x, float *y, int n, uint64_t seed)
{
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int cls = i % 2;
        x[2 * i] = graft_rng_normal(&r) * 0.5f + (cls ? 1.5f : -1.5f);
        x[2 * i + 1] = graft_rng_normal(&r) * 0.5f + (cls ? -1.0f : 1.0f);
        y[i] = (float)cls;
    }
}

static graft_model *mlp(void)
{
    graft_model *m = graft_model_new("mlp");
    graft_input(m, NULL, graft_shape1(2));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "hidden", .units = 8, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.name = "out", .units = 1, .activation = GRAFT_SIGMOID});
    return m;
}

static void test_fit_learns_and_history(void)
{
    enum { N = 200 };
    float x[2 * N], y[N];
    make_blobs(x, y, N, 5);
    graft_source *tr = graft_source_arrays(x, y, N, graft_shape1(2), 1, 16, 1, 1);
    graft_source *va = graft_source_arrays(x, y, N, graft_shape1(2), 1, 50, 0, 0);
    graft_model *m = mlp();
    graft_compile_cfg cc = {.optimizer = graft_adam(0.05f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 3};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_history h;
    graft_history_init(&h);
    graft_fit_cfg fc = {.epochs = 5, .validation_data = va};
    CHECK_OK(graft_model_fit(m, tr, &fc, &h));
    CHECK(h.n == 5);
    CHECK(h.n == 5 && h.val_accuracy[4] > 0.95);
    CHECK(h.n == 5 && h.loss[4] < h.loss[0]);
    /* Continuing the run appends to the same history with later epoch numbers. */
    fc.initial_epoch = 5;
    fc.epochs = 7;
    CHECK_OK(graft_model_fit(m, tr, &fc, &h));
    CHECK(h.n == 7 && h.epoch[6] == 6);
    double loss, acc;
    CHECK_OK(graft_model_evaluate(m, va, 0, &loss, &acc));
    CHECK(acc > 0.95);
    CHECK(h.n == 7 && fabs(loss - h.val_loss[6]) < 1e-9);
    graft_history_free(&h);
    graft_model_free(m);
    graft_source_free(tr);
    graft_source_free(va);
}

/* A source of the user's own: its fields set by an initializer, on the
 * stack, never given to graft_source_free. graft counts its batches without
 * asking anything more of it (ASan's leak check runs this too). */
typedef struct {
    graft_source base;
    const float *x, *y;
    int n, pos;
} blob_source;

static graft_status blob_next(graft_source *self, float *x, float *y, int *n)
{
    blob_source *b = (blob_source *)self;
    int k = 0;
    for (; k < self->batch_size && b->pos < b->n; k++, b->pos++) {
        memcpy(x + 2 * k, b->x + 2 * b->pos, 2 * sizeof(float));
        y[k] = b->y[b->pos];
    }
    if (b->pos == b->n) b->pos = 0;
    *n = k;
    return GRAFT_OK;
}

static void test_user_source(void)
{
    enum { N = 100, BATCH = 16 };
    float x[2 * N], y[N];
    make_blobs(x, y, N, 5);
    const int length = (N + BATCH - 1) / BATCH;
    blob_source tr = {.base = {.x_shape = graft_shape1(2), .y_dim = 1, .batch_size = BATCH,
                               .length = length, .next = blob_next},
                      .x = x, .y = y, .n = N};
    blob_source va = tr;
    CHECK(graft_source_drawn(&tr.base) == 0);
    graft_model *m = mlp();
    graft_compile_cfg cc = {.optimizer = graft_adam(0.05f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 3};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_history h;
    graft_history_init(&h);
    graft_fit_cfg fc = {.epochs = 3, .validation_data = &va.base};
    CHECK_OK(graft_model_fit(m, &tr.base, &fc, &h));
    CHECK(h.n == 3 && h.loss[2] < h.loss[0] && h.val_accuracy[2] > 0.9);
    CHECK_MSG(graft_source_drawn(&tr.base) == 3L * length && graft_source_drawn(&va.base) == 3L * length,
              "drawn %ld and %ld, not %d", graft_source_drawn(&tr.base),
              graft_source_drawn(&va.base), 3 * length);
    double loss, acc;
    CHECK_OK(graft_model_evaluate(m, &va.base, 2, &loss, &acc));
    CHECK(graft_source_drawn(&va.base) == 3L * length + 2);
    CHECK_OK(graft_source_skip(&tr.base, 5));
    CHECK(graft_source_drawn(&tr.base) == 3L * length + 5);
    blob_source copy = tr; /* a copy carries the count */
    CHECK(graft_source_drawn(&copy.base) == 3L * length + 5);
    graft_history_free(&h);
    graft_model_free(m);
}

static void fit_weights(uint64_t seed, float *out, size_t cap)
{
    enum { N = 64 };
    float x[2 * N], y[N];
    make_blobs(x, y, N, 9);
    graft_source *tr = graft_source_arrays(x, y, N, graft_shape1(2), 1, 8, 1, seed);
    graft_model *m = mlp();
    graft_model_init_weights(m, seed);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = seed};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_fit_cfg fc = {.epochs = 3};
    CHECK_OK(graft_model_fit(m, tr, &fc, NULL));
    CHECK(m->n_weight_floats <= cap);
    memcpy(out, m->weights, m->n_weight_floats * sizeof(float));
    graft_model_free(m);
    graft_source_free(tr);
}

static void test_same_seed_same_run(void)
{
    float a[64] = {0}, b[64] = {0}, c[64] = {0};
    fit_weights(11, a, 64);
    fit_weights(11, b, 64);
    fit_weights(12, c, 64);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
}

static void test_frozen_layer_does_not_change(void)
{
    enum { N = 64 };
    float x[2 * N], y[N];
    make_blobs(x, y, N, 2);
    graft_source *tr = graft_source_arrays(x, y, N, graft_shape1(2), 1, 16, 1, 1);
    graft_model *m = mlp();
    graft_layer *hidden = graft_model_find(m, "hidden"), *outl = graft_model_find(m, "out");
    graft_layer_set_trainable(hidden, 0);
    graft_param_counts pc = graft_model_count_params(m);
    CHECK(pc.total == 33 && pc.trainable == 9 && pc.non_trainable == 24);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.05f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    float before_h[16], before_o[8];
    memcpy(before_h, graft_layer_weight_data(hidden, 0), sizeof before_h);
    memcpy(before_o, graft_layer_weight_data(outl, 0), sizeof before_o);
    graft_fit_cfg fc = {.epochs = 2};
    CHECK_OK(graft_model_fit(m, tr, &fc, NULL));
    CHECK(memcmp(before_h, graft_layer_weight_data(hidden, 0), sizeof before_h) == 0);
    CHECK(memcmp(before_o, graft_layer_weight_data(outl, 0), sizeof before_o) != 0);
    /* Keras: a trainability change takes effect only at the next compile. */
    graft_layer_set_trainable(hidden, 1);
    CHECK_OK(graft_model_fit(m, tr, &fc, NULL));
    CHECK(memcmp(before_h, graft_layer_weight_data(hidden, 0), sizeof before_h) == 0);
    CHECK_OK(graft_model_compile(m, &cc));
    CHECK_OK(graft_model_fit(m, tr, &fc, NULL));
    CHECK(memcmp(before_h, graft_layer_weight_data(hidden, 0), sizeof before_h) != 0);
    graft_model_free(m);
    graft_source_free(tr);
}

static void test_errors(void)
{
    float x[4] = {0}, y[2] = {0};
    graft_source *tr = graft_source_arrays(x, y, 2, graft_shape1(2), 1, 2, 0, 0);
    graft_model *m = mlp();
    graft_fit_cfg fc = {.epochs = 1};
    CHECK(graft_model_fit(m, tr, &fc, NULL) == GRAFT_ESTATE);
    CHECK(strstr(graft_last_error(), "compile") != NULL);
    graft_compile_cfg cc = {.optimizer = graft_adam(-1), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK(graft_model_compile(m, &cc) == GRAFT_EINVAL);
    cc.optimizer = graft_adam(1e-3f);
    cc.loss = GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY;
    CHECK_OK(graft_model_compile(m, &cc));
    y[0] = 3; /* not a class of a 1-unit output */
    graft_source *bad = graft_source_arrays(x, y, 2, graft_shape1(2), 1, 2, 0, 0);
    CHECK(graft_model_fit(m, bad, &fc, NULL) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "label") != NULL);
    graft_source *wrong = graft_source_arrays(x, y, 1, graft_shape1(4), 1, 1, 0, 0);
    CHECK(graft_model_fit(m, wrong, &fc, NULL) == GRAFT_ESHAPE);
    graft_source_free(tr);
    graft_source_free(bad);
    graft_source_free(wrong);
    graft_model_free(m);
}

/* verbose=2 prints Keras's "Epoch 1/2" and one line per epoch. */
static void test_verbose_two_lines(void)
{
    enum { N = 32 };
    float x[2 * N], y[N];
    make_blobs(x, y, N, 4);
    graft_source *tr = graft_source_arrays(x, y, N, graft_shape1(2), 1, 8, 1, 1);
    graft_model *m = mlp();
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    char path[] = "/tmp/graft_verbose_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    graft_fit_cfg fc = {.epochs = 2, .validation_data = tr, .verbose = 2};
    graft_status s = graft_model_fit(m, tr, &fc, NULL);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK_OK(s);
    char buf[1024] = {0};
    FILE *f = fdopen(fd, "r");
    rewind(f);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    unlink(path);
    CHECK(got > 0);
    CHECK(strncmp(buf, "Epoch 1/2\n4/4 - ", 16) == 0);
    CHECK(strstr(buf, " - loss: ") && strstr(buf, " - accuracy: ") && strstr(buf, " - val_loss: ") &&
          strstr(buf, " - val_accuracy: ") && strstr(buf, "/epoch - ") && strstr(buf, "/step\nEpoch 2/2\n"));
    graft_model_free(m);
    graft_source_free(tr);
}

int main(void)
{
    if (fixture_load(&fx, "tests/fixtures/train.bin") != 0) return 1;
    RUN(test_losses_match_reference);
    RUN(test_loss_gradients);
    RUN(test_optimizer_steps);
    RUN(test_adam_same_bits_as_scalar);
    RUN(test_fit_learns_and_history);
    RUN(test_user_source);
    RUN(test_same_seed_same_run);
    RUN(test_frozen_layer_does_not_change);
    RUN(test_errors);
    RUN(test_verbose_two_lines);
    fixture_free(&fx);
    return CHECK_SUMMARY();
}
