/* A 1x1 convolution -> BatchNormalization -> swish (EfficientNet's expand,
 * MobileNetV3's hard_swish) as one POINTWISE step: the activation runs on
 * each GEMM block, with the bits of the activation applied afterwards. A
 * classifier's 1x1 top (MobileNet's conv_preds) at a batch of one, whose
 * kernel is streamed in place, not kept packed: the bits of larger batches. */
#include "check.h"
#include "plan_check.h"
#include "internal.h"
#include "exec/plan.h"

#include <stdlib.h>

static graft_model *expand(graft_activation a, int stride)
{
    graft_model *m = graft_model_new("expand");
    graft_input(m, NULL, graft_shape3(7, 6, 16));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "pw", .filters = 40, .kernel_size = {1, 1},
                                             .strides = {stride, stride}, .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "pw_bn"});
    if (a != GRAFT_LINEAR) graft_activation_layer(m, NULL, "pw_act", a);
    set_random(m, 4);
    return m;
}

static void test_pointwise_activation_equals_separate(void)
{
    static const graft_activation acts[] = {GRAFT_SWISH, GRAFT_HARD_SWISH, GRAFT_SIGMOID};
    enum { N = 3, XS = 7 * 6 * 16, OUT = 7 * 6 * 40 };
    float *x = malloc(N * XS * sizeof(float)), *fused = malloc(N * OUT * sizeof(float)),
          *plain = malloc(N * OUT * sizeof(float));
    CHECK(x && fused && plain);
    if (!x || !fused || !plain) goto done;
    graft_rng r;
    graft_rng_seed(&r, 2);
    for (size_t i = 0; i < N * XS; i++) x[i] = graft_rng_normal(&r) * 2;
    for (int stride = 1; stride <= 2; stride++) {
        size_t out = stride == 1 ? OUT : 4 * 3 * 40;
        for (size_t k = 0; k < sizeof acts / sizeof *acts; k++) {
            graft_model *a = expand(acts[k], stride), *b = expand(GRAFT_LINEAR, stride);
            CHECK_OK(graft_model_status(a));
            CHECK_OK(graft_model_predict(a, x, N, fused));
            CHECK_OK(graft_model_predict(b, x, N, plain));
            CHECK_MSG(in_step(a, graft_model_find(a, "pw_act"), "pointwise"), "%s",
                      graft_activation_name(acts[k]));
            graft_activation_forward(acts[k], plain, 1, N * out);
            CHECK_MSG(memcmp(fused, plain, N * out * sizeof(float)) == 0, "%s, stride %d",
                      graft_activation_name(acts[k]), stride);
            graft_model_free(a);
            graft_model_free(b);
        }
    }
done:
    free(x);
    free(fused);
    free(plain);
}

/* 1x1 maps of 1024 channels -> 1x1 to 300 (a kernel large enough to be
 * kept packed) -> BN -> ReLU: six images in one call (the copy kept packed),
 * each alone (one row: streamed, B's rows in order), one thread, AVX2. */
static void test_top_alone_streamed(void)
{
    graft_model *m = graft_model_new("top");
    graft_input(m, NULL, graft_shape3(1, 1, 1024));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "preds", .filters = 300, .kernel_size = {1, 1},
                                             .no_bias = 1});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "preds_bn"});
    graft_relu(m, NULL, (graft_relu_cfg){.name = "preds_relu"});
    set_random(m, 5);
    CHECK_OK(graft_model_status(m));
    enum { N = 6 };
    float *x = malloc(N * 1024 * sizeof(float));
    graft_rng r;
    graft_rng_seed(&r, 6);
    for (size_t i = 0; x && i < N * 1024; i++) x[i] = graft_rng_normal(&r);
    if (x && graft_model_status(m) == GRAFT_OK) {
        check_same_bits(m, x, N, "preds_relu", "pointwise");
        /* The plan for one image says so (AVX-512 keeps kernels; AVX2 reads them in place). */
        float y[300];
        CHECK_OK(graft_model_predict(m, x, 1, y)); /* planned for one image */
        const graft_step *st = &m->plan->steps[m->plan->step_of[graft_model_find(m, "preds")->index]];
        char how[512] = "";
        graft_step_pointwise_describe(m, st, 1, how, sizeof how);
        const char *want = graft_step_pointwise_streams() ? "streamed in place" : "read in place";
        CHECK_MSG(strstr(how, want) != NULL, "%s", how);
    }
    free(x);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_pointwise_activation_equals_separate);
    RUN(test_top_alone_streamed);
    return CHECK_SUMMARY();
}
