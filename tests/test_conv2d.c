/* Conv2D: gradients by central differences, shapes of TensorFlow's padding. */
#include "gradcheck.h"

static graft_model *conv_model(int h, int w, int c, graft_conv2d_cfg cfg)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, "in", graft_shape3(h, w, c));
    graft_conv2d(m, NULL, cfg);
    return m;
}

static void test_same_padding_shapes(void)
{
    /* TF 'same': ceil(in/stride); an odd total pad goes after. */
    graft_model *m = conv_model(7, 6, 2, (graft_conv2d_cfg){.filters = 3, .kernel_size = {3, 3},
                                                            .strides = {2, 2}, .padding = GRAFT_SAME});
    CHECK_OK(graft_model_status(m));
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    CHECK(s.rank == 3 && s.dim[0] == 4 && s.dim[1] == 3 && s.dim[2] == 3);
    graft_model_free(m);
}

static void test_gradients(void)
{
    struct {
        int h, w, c;
        graft_conv2d_cfg cfg;
    } cases[] = {
        {5, 6, 3, {.filters = 4, .kernel_size = {3, 3}, .activation = GRAFT_RELU}},
        {6, 5, 2, {.filters = 3, .kernel_size = {3, 2}, .strides = {2, 1}, .padding = GRAFT_SAME,
                   .activation = GRAFT_SIGMOID}},
        {4, 4, 5, {.filters = 3, .kernel_size = {1, 1}, .no_bias = 1}},
        {7, 7, 2, {.filters = 2, .kernel_size = {3, 3}, .strides = {2, 2}, .padding = GRAFT_SAME}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        graft_model *m = conv_model(cases[i].h, cases[i].w, cases[i].c, cases[i].cfg);
        CHECK_OK(graft_model_status(m));
        CHECK_MSG(gradcheck_model(m, 2, NULL, 7 + i, 40) == 0, "case %zu", i);
        graft_model_free(m);
    }
}

static void test_dense_gradients(void)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(6));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 5, .activation = GRAFT_TANH});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3, .activation = GRAFT_SOFTMAX});
    CHECK_OK(graft_model_status(m));
    CHECK(gradcheck_model(m, 3, NULL, 3, 40) == 0);
    graft_model_free(m);
}

static void test_too_small_input_refused(void)
{
    graft_model *m = conv_model(2, 2, 1, (graft_conv2d_cfg){.filters = 1, .kernel_size = {3, 3}});
    CHECK(graft_model_status(m) == GRAFT_ESHAPE);
    CHECK(strstr(graft_model_error(m), "conv2d") != NULL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_same_padding_shapes);
    RUN(test_gradients);
    RUN(test_dense_gradients);
    RUN(test_too_small_input_refused);
    return CHECK_SUMMARY();
}
