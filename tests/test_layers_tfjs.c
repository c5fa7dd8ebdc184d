/* A TensorFlow.js classifier with LeakyReLU, SeparableConv2D, PReLU,
 * UpSampling2D, Cropping2D, ELU, 'same' max pooling and Softmax, saved by
 * TF.js 4.22 itself (scripts/gen_fixtures_layers_tfjs.js): graft loads it,
 * predicts what TF.js predicted, saves and reloads it as Keras .h5, and
 * its gradients check out (so it fine-tunes). */
#include "layers_util.h"

#define DIR "tests/fixtures/layers/tfjs_leaky/"

static void test_loads_and_predicts_as_tfjs(void)
{
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(DIR "model.json", &m));
    if (!m) return;
    CHECK(graft_model_find(m, "leaky") && strcmp(graft_layer_class(graft_model_find(m, "leaky")),
                                                 "LeakyReLU") == 0);
    size_t nx = 0, ny = 0;
    float *x = (float *)read_bytes(DIR "x.f32", &nx), *y = (float *)read_bytes(DIR "y.f32", &ny);
    CHECK(x && y && nx == 3 * 8 * 8 * 3 * sizeof(float) && ny == 3 * 5 * sizeof(float));
    if (x && y && ny == 15 * sizeof(float)) {
        float out[15];
        CHECK_OK(graft_model_predict(m, x, 3, out));
        for (int i = 0; i < 15; i++)
            CHECK_MSG(fabsf(out[i] - y[i]) <= 1e-5f + 1e-4f * fabsf(y[i]), "[%d] %.7g vs TF.js %.7g",
                      i, (double)out[i], (double)y[i]);
    }
    free(x);
    free(y);
    check_h5_round_trip(m, 3);
    /* Fine-tuning: every kind's backward; Adam on the three samples lowers the loss. */
    x = (float *)read_bytes(DIR "x.f32", &nx);
    float labels[3] = {0, 2, 4};
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-2f),
                            .loss = GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY, .seed = 1};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_source *src = x ? graft_source_arrays(x, labels, 3, graft_shape3(8, 8, 3), 1, 3, 0, 1) : NULL;
    CHECK(src != NULL);
    if (src) {
        double l0, l1, acc;
        CHECK_OK(graft_model_evaluate(m, src, 1, &l0, &acc));
        graft_fit_cfg fc = {.epochs = 60, .no_feature_cache = 1};
        CHECK_OK(graft_model_fit(m, src, &fc, NULL));
        CHECK_OK(graft_model_evaluate(m, src, 1, &l1, &acc));
        CHECK_MSG(l1 < 0.5 * l0, "loss %g -> %g after 60 epochs", l0, l1);
        graft_source_free(src);
    }
    free(x);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_loads_and_predicts_as_tfjs);
    int r = CHECK_SUMMARY();
    test_tmpdirs_remove();
    return r;
}
