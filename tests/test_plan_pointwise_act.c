/* A 1x1 convolution -> BatchNormalization -> swish (EfficientNet's expand,
 * MobileNetV3's hard_swish) as one POINTWISE step: the activation runs on
 * each GEMM block, with the bits of the activation applied afterwards. */
#include "check.h"
#include "plan_check.h"
#include "internal.h"

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

int main(void)
{
    RUN(test_pointwise_activation_equals_separate);
    return CHECK_SUMMARY();
}
