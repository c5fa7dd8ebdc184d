/* ZeroPadding2D: asymmetric pads against PyTorch, gradients, invalid pads. */
#include "layer_check.h"

static graft_model *pad_model(graft_shape in, int t, int b, int l, int r)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", in);
    graft_zero_padding2d(m, NULL, NULL, t, b, l, r);
    return m;
}

static void test_forward_matches_torch(void)
{
    fixture fx;
    CHECK(fixture_load(&fx, FIXTURE_LAYERS_B) == 0);
    if (!fx.n) return;
    const fixture_array *x = fixture_get(&fx, "zero_padding2d/x");
    for (int i = 0; i < 3; i++) {
        char cname[64], yname[64];
        snprintf(cname, sizeof cname, "zero_padding2d/%d/cfg", i);
        snprintf(yname, sizeof yname, "zero_padding2d/%d/y", i);
        const fixture_array *c = fixture_get(&fx, cname);
        if (!c || !x) {
            CHECK(0);
            continue;
        }
        graft_model *m = pad_model(graft_shape3(x->dim[1], x->dim[2], x->dim[3]), (int)c->data[0],
                                   (int)c->data[1], (int)c->data[2], (int)c->data[3]);
        check_forward(m, x, fixture_get(&fx, yname), false, 1e-7, 0);
        graft_model_free(m);
    }
    fixture_free(&fx);
}

static void test_shape(void)
{
    graft_model *m = pad_model(graft_shape3(5, 4, 3), 1, 2, 0, 3);
    CHECK_OK(graft_model_status(m));
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    CHECK(s.rank == 3 && s.dim[0] == 8 && s.dim[1] == 7 && s.dim[2] == 3);
    CHECK(strcmp(graft_layer_name(graft_model_output(m)), "zero_padding2d") == 0);
    CHECK(strcmp(graft_layer_class(graft_model_output(m)), "ZeroPadding2D") == 0);
    graft_model_free(m);
}

static void test_gradients(void)
{
    static const int pads[][4] = {{1, 2, 0, 3}, {1, 1, 1, 1}, {0, 0, 0, 0}, {3, 0, 2, 1}};
    for (size_t i = 0; i < sizeof pads / sizeof *pads; i++) {
        graft_model *m =
            pad_model(graft_shape3(3, 5, 2), pads[i][0], pads[i][1], pads[i][2], pads[i][3]);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_model(m, 2, NULL, 41 + i, 40) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

static void test_gradients_accumulate(void)
{
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, "in", graft_shape3(3, 4, 2));
    graft_layer *pair[2] = {graft_zero_padding2d(m, in, NULL, 1, 0, 2, 1),
                            graft_zero_padding2d(m, in, NULL, 0, 1, 1, 2)};
    graft_add(m, NULL, 2, pair);
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 2, NULL, 51, 48) == 0);
    graft_model_free(m);
}

static void test_negative_pad_refused(void)
{
    graft_model *m = pad_model(graft_shape3(4, 4, 1), 1, -1, 0, 0);
    CHECK(graft_model_status(m) == GRAFT_EINVAL);
    CHECK(strstr(graft_model_error(m), "zero_padding2d") != NULL);
    CHECK(strstr(graft_model_error(m), "negative") != NULL);
    graft_model_free(m);

    m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(6));
    CHECK(graft_zero_padding2d(m, NULL, "zp", 1, 1, 1, 1) == NULL);
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "'zp'") != NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_forward_matches_torch);
    RUN(test_shape);
    RUN(test_gradients);
    RUN(test_gradients_accumulate);
    RUN(test_negative_pad_refused);
    return CHECK_SUMMARY();
}
