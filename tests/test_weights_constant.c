/*
 * graft_model_set_weights_constant: with the promise, inference keeps packed
 * copies of the large 1x1 kernels (DW_BLOCK steps: MobileNet's conv_pw_13;
 * POINTWISE steps: ResNet50's) and of every kernel a call would pack, and
 * trusts them without reading the weights again. The outputs are the same
 * bits as without it (batches 1, 3 and 32, one and two threads); the copy is
 * really trusted (a kernel changed behind the promise is not seen until it
 * is withdrawn, and then is); a kernel written between a withdrawal and a
 * new promise is seen (each promise checks the kept copies once); the same
 * for a kept Winograd transform; graft's own writers (init, loading
 * weights) withdraw it, so their weights are used at once.
 */
#include "check.h"
#include "test_util.h"

#include <graft.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static char tmp[] = "/tmp/graft_constant_XXXXXX";

typedef struct {
    const char *arch;
    float alpha;
    int side;
    const char *big; /* a 1x1 Conv2D of at least 256 Ki floats */
} base;

static const base bases[] = {
    {"mobilenet", 0.5f, 96, "conv_pw_13"},
    {"resnet50", 1.0f, 32, "conv5_block3_1_conv"},
};

static graft_model *build(const base *b, uint64_t seed)
{
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.alpha = b->alpha;
    c.input_shape[0] = c.input_shape[1] = b->side;
    graft_model *m = NULL;
    if (graft_zoo_build(b->arch, &c, &m) != GRAFT_OK) {
        printf("  %s: %s\n", b->arch, graft_last_error());
        return NULL;
    }
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
    if (graft_model_init_weights(m, seed) != GRAFT_OK) {
        graft_model_free(m);
        return NULL;
    }
    return m;
}

static size_t out_floats(graft_model *m, int n)
{
    graft_shape s = graft_layer_output_shape(graft_model_output(m));
    return (size_t)n * graft_shape_size(&s);
}

/* The model's output for n fixed images (in the base's input size). */
static float *predict(graft_model *m, const base *b, int n)
{
    const size_t in = (size_t)n * b->side * b->side * 3;
    float *x = malloc(in * sizeof *x), *y = malloc(out_floats(m, n) * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return NULL;
    }
    for (size_t i = 0; i < in; i++) x[i] = (float)((i * 7919u) % 2001u) / 1000.0f - 1.0f;
    graft_status s = graft_model_predict(m, x, n, y);
    free(x);
    CHECK_MSG(s == GRAFT_OK, "%s: predict: %s", b->arch, graft_last_error());
    if (s != GRAFT_OK) {
        free(y);
        return NULL;
    }
    return y;
}

static bool same(graft_model *m, const float *a, const float *b, int n)
{
    return a && b && memcmp(a, b, out_floats(m, n) * sizeof *a) == 0;
}

static void scale_kernel(graft_model *m, const char *layer, float by)
{
    graft_layer *l = graft_model_find(m, layer);
    CHECK_MSG(l != NULL, "no layer %s", layer);
    if (!l) return;
    graft_shape s = graft_layer_weight_shape(l, 0);
    float *w = graft_layer_weight_data(l, 0);
    for (size_t i = 0; i < graft_shape_size(&s); i++) w[i] *= by;
}

static void test_same_bits(void)
{
    static const int batches[] = {1, 3, 32};
    for (size_t k = 0; k < sizeof bases / sizeof *bases; k++)
        for (int threads = 1; threads <= 2; threads++) {
            graft_threads_set(threads);
            graft_model *m = build(&bases[k], 1);
            CHECK(m != NULL);
            if (!m) continue;
            for (size_t j = 0; j < sizeof batches / sizeof *batches; j++) {
                const int n = batches[j];
                if (n == 32 && bases[k].side < 64) continue;
                graft_model_set_weights_constant(m, 0);
                float *plain = predict(m, &bases[k], n);
                CHECK(graft_model_set_weights_constant(m, 1) == GRAFT_OK);
                float *first = predict(m, &bases[k], n), *again = predict(m, &bases[k], n);
                CHECK_MSG(same(m, plain, first, n) && same(m, plain, again, n),
                          "%s, batch %d, %d threads: not the same bits with constant weights",
                          bases[k].arch, n, threads);
                free(plain);
                free(first);
                free(again);
            }
            graft_model_free(m);
        }
    graft_threads_set(2);
}

/* Under the promise, `layer`'s kernel doubled behind it is not read (the
 * kept form is); once the promise is withdrawn (and, with `again`, made
 * anew) the next call of n images reads the doubled kernel, as ref (m's
 * twin) does with its own doubled. */
static void check_behind_then_read(graft_model *m, graft_model *ref, const base *b, int n,
                                   const char *layer, bool again)
{
    graft_model_set_weights_constant(m, 1);
    float *before = predict(m, b, n);
    scale_kernel(m, layer, 2.0f);
    float *behind = predict(m, b, n);
    CHECK_MSG(same(m, before, behind, n), "%s: %s changed behind the promise was read", b->arch,
              layer);
    graft_model_set_weights_constant(m, 0);
    if (again) graft_model_set_weights_constant(m, 1);
    float *after = predict(m, b, n);
    scale_kernel(ref, layer, 2.0f);
    float *want = predict(ref, b, n);
    CHECK_MSG(!same(m, before, after, n) && same(m, want, after, n),
              "%s: %s changed was not read once the promise was withdrawn%s", b->arch, layer,
              again ? " and made again" : "");
    free(before);
    free(behind);
    free(after);
    free(want);
}

static void test_promise_trusted_until_withdrawn(void)
{
    for (size_t k = 0; k < sizeof bases / sizeof *bases; k++) {
        const base *b = &bases[k];
        graft_model *m = build(b, 1), *ref = build(b, 1);
        CHECK(m && ref);
        if (m && ref) {
            graft_shape s = graft_layer_weight_shape(graft_model_find(m, b->big), 0);
            CHECK_MSG(graft_shape_size(&s) >= 256 * 1024, "%s's kernel is small", b->big);
            check_behind_then_read(m, ref, b, 1, b->big, false);
        }
        graft_model_free(m);
        graft_model_free(ref);
    }
}

/* Withdraw, write, promise again: the new promise must not trust a copy
 * made under the old one (each promise checks its kept copies once); so
 * after graft_model_init_weights. */
static void test_new_promise_checks_once(void)
{
    for (size_t k = 0; k < sizeof bases / sizeof *bases; k++) {
        const base *b = &bases[k];
        graft_model *m = build(b, 1), *ref = build(b, 1), *two = build(b, 2);
        CHECK(m && ref && two);
        if (m && ref && two) {
            check_behind_then_read(m, ref, b, 1, b->big, true);
            CHECK(graft_model_init_weights(m, 2) == GRAFT_OK);
            graft_model_set_weights_constant(m, 1);
            float *got2 = predict(m, b, 1), *want2 = predict(two, b, 1);
            CHECK_MSG(same(m, want2, got2, 1),
                      "%s: promised again after init_weights: old kernels read", b->arch);
            free(got2);
            free(want2);
        }
        graft_model_free(m);
        graft_model_free(ref);
        graft_model_free(two);
    }
}

/* The same for a kept Winograd transform: ResNet50's first 3x3 at 64x64
 * input (16x16, 16 tiles: the transform kept, docs/PERFORMANCE.md). */
static void test_winograd_transform(void)
{
    const base r64 = {"resnet50", 1.0f, 64, "conv5_block3_1_conv"};
    graft_model *m = build(&r64, 1), *ref = build(&r64, 1);
    CHECK(m && ref);
    if (m && ref) check_behind_then_read(m, ref, &r64, 2, "conv2_block1_2_conv", true);
    graft_model_free(m);
    graft_model_free(ref);
}

static void test_writers_withdraw(void)
{
    const base *b = &bases[0];
    graft_model *m = build(b, 1), *two = build(b, 2), *three = build(b, 3);
    CHECK(m && two && three);
    if (m && two && three) {
        const char *path = path_in(tmp, "three.weights.h5");
        CHECK(graft_model_save_weights(three, path) == GRAFT_OK);
        float *want2 = predict(two, b, 1), *want3 = predict(three, b, 1);
        graft_model_set_weights_constant(m, 1);
        free(predict(m, b, 1));
        CHECK(graft_model_init_weights(m, 2) == GRAFT_OK);
        float *got2 = predict(m, b, 1);
        CHECK_MSG(same(m, want2, got2, 1), "init_weights under the promise: old kernels read");
        graft_model_set_weights_constant(m, 1);
        free(predict(m, b, 1));
        CHECK(graft_model_load_weights(m, path, NULL) == GRAFT_OK);
        float *got3 = predict(m, b, 1);
        CHECK_MSG(same(m, want3, got3, 1), "load_weights under the promise: old kernels read");
        free(want2);
        free(want3);
        free(got2);
        free(got3);
    }
    graft_model_free(m);
    graft_model_free(two);
    graft_model_free(three);
    CHECK(graft_model_set_weights_constant(NULL, 1) != GRAFT_OK);
}

int main(void)
{
    if (make_tmpdir(tmp) != 0) return 1;
    RUN(test_same_bits);
    RUN(test_promise_trusted_until_withdrawn);
    RUN(test_new_promise_checks_once);
    RUN(test_winograd_transform);
    RUN(test_writers_withdraw);
    return CHECK_SUMMARY();
}
