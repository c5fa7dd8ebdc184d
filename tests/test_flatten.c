/* Flatten and Reshape: channels_last order, -1 inference, gradients, bad shapes. */
#include "layer_check.h"

static void test_forward_matches_reference(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_B) == 0);
    if (!fx.n) return;
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 4, 2));
    graft_layer *f = graft_flatten(m, NULL, NULL);
    CHECK(f && graft_layer_output_shape(f).rank == 1 && graft_layer_output_shape(f).dim[0] == 24);
    check_forward(m, fixture_get(&fx, "flatten/x"), fixture_get(&fx, "flatten/y"), false, 1e-7, 0);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 4, 2));
    graft_layer *r = graft_reshape(m, NULL, NULL, (graft_shape){2, {6, -1}});
    graft_shape s = r ? graft_layer_output_shape(r) : (graft_shape){0, {0}};
    CHECK(s.rank == 2 && s.dim[0] == 6 && s.dim[1] == 4);
    check_forward(m, fixture_get(&fx, "flatten/x"), fixture_get(&fx, "reshape/y"), false, 1e-7, 0);
    graft_model_free(m);
    fixture_free(&fx);
}

static void test_names(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(2, 2, 3));
    graft_layer *a = graft_flatten(m, NULL, NULL);
    graft_layer *b = graft_reshape(m, NULL, NULL, graft_shape3(3, 2, 2));
    graft_layer *c = graft_flatten(m, NULL, NULL);
    graft_layer *d = graft_reshape(m, NULL, NULL, (graft_shape){4, {1, 3, -1, 2}});
    CHECK_OK(graft_model_status(m));
    CHECK(a && strcmp(graft_layer_name(a), "flatten") == 0);
    CHECK(a && strcmp(graft_layer_class(a), "Flatten") == 0);
    CHECK(b && strcmp(graft_layer_name(b), "reshape") == 0);
    CHECK(b && strcmp(graft_layer_class(b), "Reshape") == 0);
    CHECK(c && strcmp(graft_layer_name(c), "flatten_1") == 0);
    CHECK(d && strcmp(graft_layer_name(d), "reshape_1") == 0);
    CHECK(d && graft_layer_output_shape(d).dim[2] == 2);
    graft_model_free(m);
}

static void test_gradients(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 2, 4));
    graft_flatten(m, NULL, NULL);
    CHECK(gradcheck_model(m, 2, NULL, 101, 30) == 0);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(3, 2, 4));
    graft_reshape(m, NULL, NULL, (graft_shape){2, {-1, 3}});
    CHECK(gradcheck_model(m, 2, NULL, 102, 30) == 0);
    graft_model_free(m);

    /* Two consumers: the second backward adds to the first. */
    m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(2, 3, 2));
    graft_layer *pair[2] = {graft_flatten(m, in, NULL),
                            graft_reshape(m, in, NULL, graft_shape1(12))};
    graft_add(m, NULL, 2, pair);
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 2, NULL, 103, 30) == 0);
    graft_model_free(m);

    m = graft_model_new("t");
    in = graft_input(m, NULL, graft_shape3(2, 3, 2));
    pair[0] = graft_reshape(m, in, NULL, graft_shape1(12));
    pair[1] = graft_flatten(m, in, NULL);
    graft_add(m, NULL, 2, pair);
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 2, NULL, 104, 30) == 0);
    graft_model_free(m);
}

/* Large enough for the copies in blocks on all threads, with a partial last
 * block: forward and backward move every element, and a second consumer's
 * gradient adds to the first. */
static void test_large_copies(void)
{
    const int n = 2, H = 61, W = 67, C = 17;
    const size_t size = (size_t)n * H * W * C;
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape3(H, W, C));
    graft_layer *pair[2] = {graft_flatten(m, in, NULL), graft_flatten(m, in, NULL)};
    graft_add(m, NULL, 2, pair);
    CHECK_OK(graft_model_status(m));
    m->want_input_grad = true;
    float *x = malloc(2 * size * sizeof(float)), *dy = x + size;
    for (size_t i = 0; i < size; i++) {
        x[i] = (float)i;
        dy[i] = (float)(i % 1000) - 500.0f;
    }
    CHECK_OK(graft_model_forward(m, x, n, true));
    CHECK(memcmp(pair[0]->out, x, size * sizeof(float)) == 0);
    CHECK(memcmp(pair[1]->out, x, size * sizeof(float)) == 0);
    CHECK_OK(graft_model_backward(m, dy, n));
    const float *dx = in->dout;
    size_t wrong = 0;
    for (size_t i = 0; dx && i < size; i++) wrong += dx[i] != 2 * dy[i];
    CHECK_MSG(dx && wrong == 0, "%zu of %zu input gradients wrong", wrong, size);
    free(x);
    graft_model_free(m);
}

static void test_wrong_element_count_refused(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(4, 4, 3));
    CHECK(graft_reshape(m, NULL, NULL, (graft_shape){2, {5, 10}}) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    const char *e = graft_model_error(m);
    CHECK(strstr(e, "'reshape'") != NULL);
    CHECK(strstr(e, "(None, 4, 4, 3)") != NULL);
    CHECK(strstr(e, "(None, 5, 10)") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(4, 4, 3));
    CHECK(graft_reshape(m, NULL, "r", (graft_shape){2, {5, -1}}) == NULL);
    CHECK(strstr(graft_model_error(m), "'r'") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(4, 4, 3));
    CHECK(graft_reshape(m, NULL, "r2", (graft_shape){3, {-1, -1, 3}}) == NULL);
    CHECK(strstr(graft_model_error(m), "'r2'") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape3(4, 4, 3));
    CHECK(graft_reshape(m, NULL, "r3", (graft_shape){2, {0, 48}}) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_forward_matches_reference);
    RUN(test_names);
    RUN(test_gradients);
    RUN(test_large_copies);
    RUN(test_wrong_element_count_refused);
    return CHECK_SUMMARY();
}
