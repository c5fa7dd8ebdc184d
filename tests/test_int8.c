/* int8 inference (quant/int8.c, graft_model_quantize_int8): which layers the
 * 8-bit run takes on the zoo's bases and on hand-built graphs; the run's
 * float twin (the same steps over the folded kernels in float) against
 * graft's own float forward, which proves the translation of padding,
 * strides, BatchNormalization, clamps and Adds; the 8-bit outputs near the
 * float ones; the same bits call after call; the head after the run in
 * float; refusal with the layer named; and the run dropped when the
 * weights change. */
#include "check.h"
#include "internal.h"
#include "quant/int8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float urand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f;
}

/* Moving statistics, gamma and beta drawn away from their initial values,
 * so that the folding of BatchNormalization is exercised. */
static void randomize_bn(graft_model *m, unsigned seed)
{
    for (int i = 0; i < m->n_layers; i++) {
        graft_layer *l = m->layers[i];
        if (strcmp(l->ops->class_name, "BatchNormalization") != 0) continue;
        for (int k = 0; k < l->n_weights; k++) {
            size_t n = graft_shape_size(&l->weights[k].shape);
            const char *w = l->weights[k].name;
            for (size_t j = 0; j < n; j++) {
                float r = urand(&seed);
                l->weights[k].data[j] = strstr(w, "variance") || strstr(w, "gamma") ? 0.5f + r
                                                                                     : (r - 0.5f) * 0.2f;
            }
        }
    }
}

static float *images(int n, size_t each, unsigned seed)
{
    float *x = malloc((size_t)n * each * sizeof(float));
    for (size_t i = 0; x && i < (size_t)n * each; i++) x[i] = urand(&seed) * 2 - 1;
    return x;
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    return mx > 0 ? d / mx : d;
}

static double rel_rms(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* A zoo base without pooling: the whole model is the 8-bit run. */
static void check_base(const char *arch, int size)
{
    printf("  %s at %d\n", arch, size);
    graft_zoo_cfg c = {.input_shape = {size, size, 3}};
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build(arch, &c, &m));
    if (!m) return;
    randomize_bn(m, 7);
    const int n = 3;
    size_t xs = graft_shape_size(&m->layers[0]->out_shape);
    size_t ys = graft_shape_size(&graft_model_output(m)->out_shape);
    float *x = images(n, xs, 11), *ref = malloc(n * ys * 4), *twin = malloc(n * ys * 4),
          *q1 = malloc(n * ys * 4), *q2 = malloc(n * ys * 4);
    CHECK_OK(graft_model_predict(m, x, n, ref));
    CHECK_OK(graft_model_quantize_int8(m, x, n));
    const char *first_float = "unset";
    CHECK(graft_model_int8_layers(m, &first_float) == m->n_layers - 1);
    CHECK(first_float == NULL);
    CHECK_OK(graft_int8_forward_float(m->int8, x, n, twin));
    double d = rel_diff(twin, ref, n * ys);
    CHECK_MSG(d < 1e-4, "%s: float twin of the int8 run differs from graft's forward by %.3g", arch, d);
    CHECK_OK(graft_model_predict(m, x, n, q1));
    CHECK_OK(graft_model_predict(m, x, n, q2));
    CHECK(memcmp(q1, q2, n * ys * 4) == 0);
    double r = rel_rms(q1, ref, n * ys);
    printf("    float twin %.2g, int8 relative rms %.4f\n", d, r);
    CHECK_MSG(r < 0.05, "%s: int8 outputs' relative rms error %.4f", arch, r);
    /* A writer of the weights withdraws the promise: float again. */
    CHECK_OK(graft_model_init_weights(m, 3));
    randomize_bn(m, 7);
    float *after = malloc(n * ys * 4);
    CHECK_OK(graft_model_predict(m, x, n, after));
    CHECK(graft_model_int8_layers(m, NULL) == 0);
    CHECK(m->int8 == NULL);
    graft_model_drop_int8(m);
    CHECK_OK(graft_model_predict(m, x, n, q2));
    CHECK(memcmp(after, q2, n * ys * 4) == 0);
    free(after);
    free(x);
    free(ref);
    free(twin);
    free(q1);
    free(q2);
    graft_model_free(m);
}

static void test_zoo_bases(void)
{
    check_base("mobilenet", 64);
    check_base("mobilenet_v2", 64);
    check_base("resnet50", 64);
    check_base("vgg16", 48);
}

/* A base with pooling and a head: the run ends before the pooling, and the
 * float plan takes over from its output. */
static void test_head_in_float(void)
{
    graft_zoo_cfg c = {.input_shape = {64, 64, 3}, .pooling = GRAFT_POOL_AVG};
    graft_model *m = NULL;
    CHECK_OK(graft_zoo_build("mobilenet_v2", &c, &m));
    if (!m) return;
    graft_layer *d = graft_dense(m, NULL, (graft_dense_cfg){.name = "head", .units = 2,
                                                          .activation = GRAFT_SOFTMAX});
    CHECK(d != NULL);
    CHECK_OK(graft_model_status(m));
    randomize_bn(m, 5);
    const int n = 5;
    size_t xs = graft_shape_size(&m->layers[0]->out_shape);
    float *x = images(n, xs, 3), ref[10], got[10];
    CHECK_OK(graft_model_predict(m, x, n, ref));
    CHECK_OK(graft_model_quantize_int8(m, x, n));
    const char *first_float = NULL;
    int layers = graft_model_int8_layers(m, &first_float);
    CHECK(layers == m->n_layers - 3);
    CHECK(first_float && strcmp(first_float, m->layers[m->n_layers - 2]->name) == 0);
    CHECK_OK(graft_model_predict(m, x, n, got));
    for (int i = 0; i < 2 * n; i++) CHECK_MSG(fabsf(got[i] - ref[i]) < 0.02f, "%d: %g vs %g", i, got[i], ref[i]);
    /* One image at a time as in a batch. */
    float one[2];
    CHECK_OK(graft_model_predict(m, x + 2 * xs, 1, one));
    CHECK(fabsf(one[0] - got[4]) < 1e-3f && fabsf(one[1] - got[5]) < 1e-3f);
    free(x);
    graft_model_free(m);
}

/* What the run does not take ends it, the float plan going on from there:
 * a swish convolution (EfficientNet's), a max pool over a padded tensor
 * that may be negative (its zeros could win), an Add of two earlier
 * tensors. */
static void test_stops(void)
{
    graft_model *m = graft_model_new("stops");
    graft_layer *in = graft_input(m, NULL, graft_shape3(12, 12, 3));
    graft_layer *a = graft_conv2d(m, in, (graft_conv2d_cfg){.name = "a", .filters = 8,
                                                            .kernel_size = {3, 3}, .padding = GRAFT_SAME});
    graft_layer *p = graft_zero_padding2d(m, a, "pad", 1, 1, 1, 1);
    graft_layer *pool = graft_max_pooling2d(m, p, (graft_pool2d_cfg){.name = "pool", .pool_size = {3, 3},
                                                                    .strides = {2, 2}});
    graft_conv2d(m, pool, (graft_conv2d_cfg){.name = "b", .filters = 4, .kernel_size = {1, 1},
                                             .activation = GRAFT_SWISH});
    CHECK_OK(graft_model_status(m));
    CHECK_OK(graft_model_init_weights(m, 1));
    size_t xs = 12 * 12 * 3, ys = graft_shape_size(&graft_model_output(m)->out_shape);
    float *x = images(4, xs, 9), *ref = malloc(4 * ys * 4), *got = malloc(4 * ys * 4);
    CHECK_OK(graft_model_predict(m, x, 4, ref));
    CHECK_OK(graft_model_quantize_int8(m, x, 4));
    const char *first_float = NULL;
    CHECK(graft_model_int8_layers(m, &first_float) == 1);
    CHECK(first_float && strcmp(first_float, "pad") == 0);
    CHECK_OK(graft_model_predict(m, x, 4, got));
    double r = rel_rms(got, ref, 4 * ys);
    CHECK_MSG(r < 0.03, "relative rms %.4f", r);
    free(x);
    free(ref);
    free(got);
    graft_model_free(m);

    /* Nothing to take: refused, naming the layer. */
    m = graft_model_new("dense_first");
    in = graft_input(m, NULL, graft_shape3(4, 4, 3));
    graft_layer *f = graft_flatten(m, in, "flat");
    graft_dense(m, f, (graft_dense_cfg){.name = "d", .units = 3});
    CHECK_OK(graft_model_init_weights(m, 1));
    float z[48] = {0};
    graft_status s = graft_model_quantize_int8(m, z, 1);
    CHECK(s == GRAFT_EUNSUPPORTED);
    CHECK(strstr(graft_last_error(), "'flat'") && strstr(graft_last_error(), "Flatten"));
    CHECK(graft_model_int8_layers(m, NULL) == 0);
    CHECK(graft_model_quantize_int8(m, NULL, 1) == GRAFT_EINVAL);
    CHECK(graft_model_quantize_int8(m, z, 0) == GRAFT_EINVAL);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_zoo_bases);
    RUN(test_head_in_float);
    RUN(test_stops);
    return CHECK_SUMMARY();
}
