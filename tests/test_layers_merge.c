/* Concatenate (every axis) and the broadcasting merges Multiply, Subtract,
 * Average, Maximum, Minimum: forward against torch, central-difference
 * gradients, Keras config in and out, and the .h5 round trip. */
#include "layers_util.h"

static void test_concatenate_forward(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_C) == 0);
    if (!fx.n) return;
    static const int axes[] = {1, 2, 3, -1};
    for (int i = 0; i < 4; i++) {
        char na[32], nb[32], ny[32];
        snprintf(na, sizeof na, "concat/%d/a", axes[i]);
        snprintf(nb, sizeof nb, "concat/%d/b", axes[i]);
        snprintf(ny, sizeof ny, "concat/%d/y", axes[i]);
        const fixture_array *a = fixture_get(&fx, na), *b = fixture_get(&fx, nb);
        CHECK(a && b);
        if (!a || !b) continue;
        graft_shape s[2] = {graft_shape3(a->dim[1], a->dim[2], a->dim[3]),
                            graft_shape3(b->dim[1], b->dim[2], b->dim[3])};
        graft_layer *ins[2];
        graft_model *m = inputs_model(2, s, ins);
        graft_layer *c = graft_concatenate(m, NULL, axes[i], 2, ins);
        CHECK_OK(graft_model_status(m));
        if (c) {
            const fixture_array *y = fixture_get(&fx, ny);
            size_t n = 2 * graft_shape_size(&c->out_shape);
            float *out = malloc(n * sizeof(float));
            const float *in[2] = {a->data, b->data};
            layer_run(c, 2, in, out);
            check_array(out, y, n, 1e-30, 0);
            free(out);
            CHECK(strcmp(graft_layer_name(c), "concatenate") == 0);
        }
        graft_model_free(m);
    }
    fixture_free(&fx);
}

static float *random_floats(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof(float));
    graft_rng rng;
    graft_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = graft_rng_normal(&rng);
    return x;
}

static void test_concatenate_gradients(void)
{
    static const int axes[] = {1, 2, 3, -2};
    for (int i = 0; i < 4; i++) {
        graft_shape s[3] = {graft_shape3(2, 3, 2), graft_shape3(2, 3, 2), graft_shape3(2, 3, 2)};
        int ax = axes[i] < 0 ? 3 + axes[i] : axes[i] - 1;
        s[1].dim[ax] = 1;
        s[2].dim[ax] = 3;
        graft_layer *ins[3];
        graft_model *m = inputs_model(3, s, ins);
        graft_layer *c = graft_concatenate(m, NULL, axes[i], 3, ins);
        CHECK_OK(graft_model_status(m));
        if (c) {
            float *x[3];
            for (int k = 0; k < 3; k++) x[k] = random_floats(2 * graft_shape_size(&s[k]), 10 + k);
            CHECK_MSG(layer_gradcheck(c, 2, x, 5) == 0, "axis %d", axes[i]);
            for (int k = 0; k < 3; k++) free(x[k]);
        }
        graft_model_free(m);
    }
}

static void test_concatenate_refusals(void)
{
    graft_shape s[2] = {graft_shape3(2, 3, 2), graft_shape3(2, 4, 2)};
    graft_layer *ins[2];
    graft_model *m = inputs_model(2, s, ins);
    CHECK(graft_concatenate(m, "cat", -1, 2, ins) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "'cat'") && strstr(graft_model_error(m), "(None, 2, 4, 2)"));
    graft_model_free(m);
    m = inputs_model(2, s, ins);
    CHECK(graft_concatenate(m, "cat0", 0, 2, ins) == NULL);
    CHECK_MSG(strstr(graft_model_error(m), "axis=0") != NULL, "%s", graft_model_error(m));
    graft_model_free(m);
}

typedef graft_layer *(*merge_fn)(graft_model *, const char *, int, graft_layer *const *);

static graft_layer *subtract2(graft_model *m, const char *name, int n, graft_layer *const *in)
{
    (void)n;
    return graft_subtract(m, name, in[0], in[1]);
}

static const struct {
    const char *ref, *cls;
    merge_fn fn;
    int n; /* 2: x, g; 3: g, x, h */
} MERGES[] = {
    {"merge/multiply_xg", "Multiply", graft_multiply, 2},
    {"merge/multiply_gxh", "Multiply", graft_multiply, 3},
    {"merge/subtract_xg", "Subtract", subtract2, 2},
    {"merge/average_gxh", "Average", graft_average, 3},
    {"merge/maximum_gxh", "Maximum", graft_maximum, 3},
    {"merge/minimum_gxh", "Minimum", graft_minimum, 3},
};

static void test_merges_forward_and_gradients(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_C) == 0);
    if (!fx.n) return;
    const fixture_array *x = fixture_get(&fx, "merge/x"), *g = fixture_get(&fx, "merge/g"),
                        *h = fixture_get(&fx, "merge/h");
    CHECK(x && g && h);
    if (!x || !g || !h) return;
    for (size_t i = 0; i < sizeof MERGES / sizeof *MERGES; i++) {
        const fixture_array *arr[3];
        if (MERGES[i].n == 2) {
            arr[0] = x;
            arr[1] = g;
        } else {
            arr[0] = g;
            arr[1] = x;
            arr[2] = h;
        }
        graft_shape s[3];
        for (int k = 0; k < MERGES[i].n; k++)
            s[k] = graft_shape3(arr[k]->dim[1], arr[k]->dim[2], arr[k]->dim[3]);
        graft_layer *ins[3];
        graft_model *m = inputs_model(MERGES[i].n, s, ins);
        graft_layer *l = MERGES[i].fn(m, NULL, MERGES[i].n, ins);
        CHECK_OK(graft_model_status(m));
        if (!l) {
            graft_model_free(m);
            continue;
        }
        CHECK(strcmp(graft_layer_class(l), MERGES[i].cls) == 0);
        graft_shape o = graft_layer_output_shape(l);
        CHECK(o.rank == 3 && o.dim[0] == 4 && o.dim[1] == 3 && o.dim[2] == 5);
        size_t n = 2 * graft_shape_size(&o);
        float *out = malloc(n * sizeof(float));
        const float *in[3] = {arr[0]->data, arr[1]->data, MERGES[i].n > 2 ? arr[2]->data : NULL};
        layer_run(l, 2, in, out);
        check_array(out, fixture_get(&fx, MERGES[i].ref), n, 1e-6, 1e-6);
        free(out);
        /* Values 0.05 apart over all inputs keep Maximum/Minimum away from ties. */
        size_t total = 0, off = 0;
        for (int k = 0; k < MERGES[i].n; k++) total += 2 * graft_shape_size(&s[k]);
        float *all = spaced_input(total, 0.05f, 40 + i), *xs[3];
        for (int k = 0; k < MERGES[i].n; k++) {
            xs[k] = all + off;
            off += 2 * graft_shape_size(&s[k]);
        }
        CHECK_MSG(layer_gradcheck(l, 2, xs, 9) == 0, "%s", MERGES[i].ref);
        free(all);
        graft_model_free(m);
    }
    fixture_free(&fx);
}

static void test_same_input_twice(void)
{
    /* Multiply(x, x) = x^2 and Concatenate(x, x): one buffer handed twice. */
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(2, 2, 3));
    graft_layer *twice[2] = {in, in};
    graft_layer *sq = graft_multiply(m, NULL, 2, twice);
    graft_layer *pair[2] = {sq, in};
    graft_concatenate(m, NULL, -1, 2, pair);
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 2, NULL, 77, 24) == 0);
    graft_model_free(m);
}

static void test_merge_refusals(void)
{
    graft_shape s[2] = {graft_shape3(4, 4, 3), graft_shape3(2, 4, 3)};
    graft_layer *ins[2];
    graft_model *m = inputs_model(2, s, ins);
    CHECK(graft_multiply(m, "mul", 2, ins) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "'mul' (Multiply)") != NULL);
    graft_model_free(m);
    s[1] = graft_shape1(3);
    m = inputs_model(2, s, ins);
    CHECK(graft_maximum(m, "mx", 2, ins) == NULL); /* ranks differ */
    graft_model_free(m);
}

/* A squeeze-and-excitation block and a DenseNet-style concatenation read
 * from a Keras config, then saved and loaded. */
static const char *SE_JSON =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"se\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\","
    " \"batch_input_shape\": [null, 4, 4, 3]}, \"inbound_nodes\": []},"
    "{\"class_name\": \"AveragePooling2D\", \"name\": \"sq\", \"config\": {\"name\": \"sq\","
    " \"pool_size\": [4, 4]}, \"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"Conv2D\", \"name\": \"ex\", \"config\": {\"name\": \"ex\", \"filters\": 3,"
    " \"kernel_size\": 1, \"activation\": \"sigmoid\"}, \"inbound_nodes\": [[[\"sq\", 0, 0, {}]]]},"
    "{\"class_name\": \"Multiply\", \"name\": \"gate\", \"config\": {\"name\": \"gate\"},"
    " \"inbound_nodes\": [[[\"x\", 0, 0, {}], [\"ex\", 0, 0, {}]]]},"
    "{\"class_name\": \"Subtract\", \"name\": \"sub\", \"config\": {\"name\": \"sub\"},"
    " \"inbound_nodes\": [[[\"gate\", 0, 0, {}], [\"ex\", 0, 0, {}]]]},"
    "{\"class_name\": \"Maximum\", \"name\": \"mx\", \"config\": {\"name\": \"mx\"},"
    " \"inbound_nodes\": [[[\"sub\", 0, 0, {}], [\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"Minimum\", \"name\": \"mn\", \"config\": {\"name\": \"mn\"},"
    " \"inbound_nodes\": [[[\"sub\", 0, 0, {}], [\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"Average\", \"name\": \"av\", \"config\": {\"name\": \"av\"},"
    " \"inbound_nodes\": [[[\"mx\", 0, 0, {}], [\"mn\", 0, 0, {}], [\"gate\", 0, 0, {}]]]},"
    "{\"class_name\": \"Concatenate\", \"name\": \"cat\", \"config\": {\"name\": \"cat\","
    " \"axis\": 3}, \"inbound_nodes\": [[[\"av\", 0, 0, {}], [\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"Concatenate\", \"name\": \"cat_w\", \"config\": {\"name\": \"cat_w\","
    " \"axis\": -2}, \"inbound_nodes\": [[[\"cat\", 0, 0, {}], [\"cat\", 0, 0, {}]]]}],"
    " \"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"cat_w\", 0, 0]]}}";

static void test_config_in_and_out(void)
{
    graft_model *m = NULL;
    CHECK_OK(model_from_json(SE_JSON, &m));
    if (!m) return;
    graft_shape o = graft_layer_output_shape(graft_model_output(m));
    CHECK(o.rank == 3 && o.dim[0] == 4 && o.dim[1] == 8 && o.dim[2] == 6);
    fill_random_weights(m, 3);
    check_h5_round_trip(m, 3);
    char *t = model_config_text(m);
    CHECK(t && strstr(t, "\"axis\":-2") != NULL && strstr(t, "\"class_name\":\"Multiply\""));
    cJSON_free(t);
    CHECK(gradcheck_model(m, 2, NULL, 5, 30) == 0);
    graft_model_free(m);

    /* Subtract takes exactly two inputs. */
    CHECK(model_from_json(
              "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
              "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\","
              " \"batch_input_shape\": [null, 3]}, \"inbound_nodes\": []},"
              "{\"class_name\": \"Subtract\", \"name\": \"s3\", \"config\": {\"name\": \"s3\"},"
              " \"inbound_nodes\": [[[\"x\", 0, 0, {}], [\"x\", 0, 0, {}], [\"x\", 0, 0, {}]]]}],"
              " \"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"s3\", 0, 0]]}}",
              &m) != GRAFT_OK);
    CHECK(strstr(graft_last_error(), "'s3' (Subtract)") != NULL);
    CHECK(sequential_from_json("4", "{\"class_name\": \"Concatenate\", \"config\": {\"name\": \"c\","
                                    " \"axis\": 1.5}}",
                               &m) == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "'c' (Concatenate)") != NULL);
}

/* The squeeze-and-excitation scaling (a row-by-row loop), gate on either side:
 * each output the one product x * g, as the general broadcast computes it. */
static void test_multiply_gate_fast_path(void)
{
    for (int gate_first = 0; gate_first <= 1; gate_first++) {
        graft_shape s[2] = {graft_shape3(5, 3, 19), graft_shape3(1, 1, 19)};
        if (gate_first) s[0] = graft_shape3(1, 1, 19), s[1] = graft_shape3(5, 3, 19);
        graft_layer *ins[2];
        graft_model *m = inputs_model(2, s, ins);
        graft_layer *l = graft_multiply(m, NULL, 2, ins);
        CHECK_OK(graft_model_status(m));
        if (!l) {
            graft_model_free(m);
            continue;
        }
        enum { N = 2, X = 5 * 3 * 19, G = 19 };
        float x[N * X], g[N * G], out[N * X];
        for (int i = 0; i < N * X; i++) x[i] = 0.37f * (float)(i % 23) - 3.1f;
        for (int i = 0; i < N * G; i++) g[i] = 1.0f / (1.0f + (float)i);
        const float *in[2] = {gate_first ? g : x, gate_first ? x : g};
        layer_run(l, N, in, out);
        int wrong = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < X; i++) {
                float want = gate_first ? g[n * G + i % G] * x[n * X + i] : x[n * X + i] * g[n * G + i % G];
                wrong += memcmp(&out[n * X + i], &want, sizeof want) != 0;
            }
        CHECK_MSG(wrong == 0, "gate %s: %d outputs differ", gate_first ? "first" : "second", wrong);
        /* Backward: the map's gradient dy * g, the gate's the sum over the
         * cells in order; accumulating onto what the buffers held. */
        float dy[N * X], dx[N * X], dg[N * G], want_dx[N * X], want_dg[N * G];
        for (int i = 0; i < N * X; i++) dy[i] = 0.11f * (float)(i % 17) - 0.8f;
        for (int i = 0; i < N * X; i++) dx[i] = want_dx[i] = 0.5f;
        for (int i = 0; i < N * G; i++) dg[i] = want_dg[i] = -0.25f;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < X; i++) {
                want_dx[n * X + i] += dy[n * X + i] * g[n * G + i % G];
                want_dg[n * G + i % G] += dy[n * X + i] * x[n * X + i];
            }
        float *din[2] = {gate_first ? dg : dx, gate_first ? dx : dg};
        bool acc[2] = {true, true};
        graft_bwd bw = {.n = N, .training = true, .in = in, .out = out, .dout = dy, .din = din,
                        .din_accumulate = acc};
        l->ops->backward(l, &bw);
        CHECK(memcmp(dx, want_dx, sizeof dx) == 0 && memcmp(dg, want_dg, sizeof dg) == 0);
        float *xs[2] = {gate_first ? g : x, gate_first ? x : g};
        CHECK(layer_gradcheck(l, N, xs, 5) == 0);
        graft_model_free(m);
    }
}

int main(void)
{
    RUN(test_concatenate_forward);
    RUN(test_multiply_gate_fast_path);
    RUN(test_concatenate_gradients);
    RUN(test_concatenate_refusals);
    RUN(test_merges_forward_and_gradients);
    RUN(test_same_input_twice);
    RUN(test_merge_refusals);
    RUN(test_config_in_and_out);
    int r = CHECK_SUMMARY();
    test_tmpdirs_remove();
    return r;
}
