/* Dropout: identity in inference; in training a seeded mask keeping about
 * 1 - rate of the values, scaled by 1/(1 - rate); gradient = mask * scale. */
#include "gradcheck.h"

static graft_model *dropout_model(graft_shape in, const char *name, float rate)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", in);
    graft_dropout(m, NULL, name, rate);
    return m;
}

static float *random_input(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof(float));
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    /* Never 0, so that a 0 in the output means a dropped value. */
    for (size_t i = 0; i < n; i++) {
        x[i] = graft_rng_normal(&rng);
        if (x[i] == 0) x[i] = 1;
    }
    return x;
}

static void test_layer_basics(void)
{
    graft_model *m = dropout_model(graft_shape3(4, 4, 2), NULL, 0.5f);
    CHECK_OK(graft_model_status(m));
    graft_layer *l = graft_model_output(m);
    CHECK(strcmp(graft_layer_name(l), "dropout") == 0);
    CHECK(strcmp(graft_layer_class(l), "Dropout") == 0);
    CHECK(graft_layer_num_weights(l) == 0);
    graft_shape s = graft_layer_output_shape(l);
    CHECK(s.rank == 3 && s.dim[0] == 4 && s.dim[1] == 4 && s.dim[2] == 2);
    CHECK(l->ops->stochastic && l->ops->stochastic(l));
    graft_layer *l2 = graft_dropout(m, NULL, NULL, 0.2f);
    CHECK(l2 && strcmp(graft_layer_name(l2), "dropout_1") == 0);
    graft_model_free(m);
}

static void test_inference_is_identity(void)
{
    const int n = 3;
    graft_model *m = dropout_model(graft_shape1(50), NULL, 0.7f);
    float *x = random_input((size_t)n * 50, 1), *y = malloc((size_t)n * 50 * sizeof(float));
    CHECK_OK(graft_model_predict(m, x, n, y));
    CHECK(memcmp(x, y, (size_t)n * 50 * sizeof(float)) == 0);
    free(x);
    free(y);
    graft_model_free(m);
}

/* Training forward with the model's rng seeded to `seed`; returns the output (malloc'd). */
static float *train_forward(graft_model *m, const float *x, int n, uint64_t seed)
{
    graft_rng_seed(&m->rng, seed);
    size_t ys = (size_t)n * graft_shape_size(&graft_model_output(m)->out_shape);
    float *y = malloc(ys * sizeof(float));
    CHECK_OK(graft_model_forward(m, x, n, true));
    memcpy(y, graft_model_output(m)->out, ys * sizeof(float));
    return y;
}

static void test_training_mask(void)
{
    const float rates[] = {0.1f, 0.5f, 0.8f};
    const int n = 4;
    const graft_shape s = graft_shape3(50, 50, 10);
    const size_t total = (size_t)n * graft_shape_size(&s);
    float *x = random_input(total, 2);
    for (int r = 0; r < 3; r++) {
        const float rate = rates[r], scale = 1.0f / (1.0f - rate);
        graft_model *m = dropout_model(s, NULL, rate);
        float *y = train_forward(m, x, n, 77);
        size_t kept = 0, bad = 0;
        for (size_t i = 0; i < total; i++) {
            if (y[i] == 0) continue;
            kept++;
            if (y[i] != x[i] * scale) bad++;
        }
        CHECK_MSG(bad == 0, "rate %g: %zu kept values not scaled by %g", rate, bad, scale);
        /* 100000 draws: the kept fraction's standard deviation is < 0.0016. */
        double frac = (double)kept / (double)total;
        CHECK_MSG(fabs(frac - (1.0 - rate)) < 0.01, "rate %g: kept %.4f", rate, frac);

        float *again = train_forward(m, x, n, 77);
        CHECK(memcmp(y, again, total * sizeof(float)) == 0);
        float *other = train_forward(m, x, n, 78);
        CHECK(memcmp(y, other, total * sizeof(float)) != 0);
        free(y);
        free(again);
        free(other);
        graft_model_free(m);
    }
    free(x);
}

/* dL/dx = dL/dy * mask * scale, and the mask differs between samples. */
static void test_gradient_is_mask_times_scale(void)
{
    const int n = 5;
    const float rate = 0.4f, scale = 1.0f / (1.0f - rate);
    graft_model *m = dropout_model(graft_shape1(40), NULL, rate);
    m->want_input_grad = true;
    size_t total = (size_t)n * 40;
    float *x = random_input(total, 3), *dy = random_input(total, 4);
    float *y = train_forward(m, x, n, 5);
    CHECK_OK(graft_model_backward(m, dy, n));
    const float *dx = graft_model_layer(m, 0)->dout;
    size_t bad = 0;
    for (size_t i = 0; i < total; i++) {
        float want = y[i] == 0 ? 0.0f : dy[i] * scale;
        if (dx[i] != want) bad++;
    }
    CHECK_MSG(bad == 0, "%zu gradient values differ from mask * scale", bad);
    CHECK(memcmp(y, y + 40, 40 * sizeof(float)) != 0);
    free(x);
    free(dy);
    free(y);
    graft_model_free(m);

    /* Central differences through a dropout between two dense layers. */
    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(6));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 8, .activation = GRAFT_TANH});
    graft_dropout(m, NULL, NULL, 0.3f);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3});
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 4, NULL, 6, 40) == 0);
    graft_model_free(m);
}

static void test_invalid_rate_refused(void)
{
    const float bad[] = {1.5f, 1.0f, -0.1f, NAN};
    for (int i = 0; i < 4; i++) {
        graft_model *m = dropout_model(graft_shape1(4), "drop_bad", bad[i]);
        CHECK(graft_model_status(m) == GRAFT_EINVAL);
        CHECK(strstr(graft_model_error(m), "drop_bad") != NULL);
        graft_model_free(m);
    }
    graft_model *m = dropout_model(graft_shape1(4), NULL, 0.0f);
    CHECK_OK(graft_model_status(m));
    graft_model_free(m);
}

int main(void)
{
    RUN(test_layer_basics);
    RUN(test_inference_is_identity);
    RUN(test_training_mask);
    RUN(test_gradient_is_mask_times_scale);
    RUN(test_invalid_rate_refused);
    return CHECK_SUMMARY();
}
