/* Dense with a kernel far taller than wide, whose forward pass splits the
 * inputs among the threads and whose input gradient is made transposed at
 * up to 64 rows: output and gradients against a reference loop in
 * double (batches 1, 7, 32 and 65, 1 to 3 threads, a second consumer of the input
 * so that the input gradient adds up, a frozen layer; a frozen layer's bits
 * across batches, threads and ISA), a gradient check, and
 * which kernels take the split. Dense on the last axis of a rank-2 or rank-3
 * input (Keras's rule, ConvNeXt's pointwise convolutions): output against the
 * reference loop, gradients, Keras config and .h5 round trip. */
#include "layers_util.h"

#include <stdlib.h>

static float *random_floats(size_t n, float scale, uint64_t seed)
{
    float *v = malloc(n * sizeof(float));
    graft_rng r;
    graft_rng_seed(&r, seed);
    for (size_t i = 0; v && i < n; i++) v[i] = graft_rng_normal(&r) * scale;
    return v;
}

/* The largest |got - want| relative to an error scale per element: float
 * sums of K products stay within 1e-5 of the sum of their magnitudes here. */
static double worst_ratio(const float *got, const double *want, const double *scale, size_t n,
                          size_t *at)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - want[i]) / (1e-5 * scale[i] + 1e-6);
        if (!(r <= worst)) { /* NaN counts as worst */
            worst = r;
            *at = i;
        }
    }
    return worst;
}

typedef struct {
    int in, units;   /* kernel shape */
    int threads, n;  /* graft threads, batch */
    bool two;        /* a second Dense reads the input too (their outputs added) */
    bool frozen;     /* the first Dense does not train */
} dcase;

/* Sums in double of n rows of K products, and the sums of their magnitudes:
 * out[r][j] = sum over k of a(r, k) b[k][j], with a(r, k) = a[r * ar + k * ak]
 * and b row-major, in floats (bf) or doubles (bd). */
static void ref_matmul(int n, int K, int J, const float *a, size_t ar, size_t ak, const float *bf,
                       const double *bd, double *out, double *mag)
{
    for (int r = 0; r < n; r++)
        for (int j = 0; j < J; j++) {
            double s = 0, m = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)a[(size_t)r * ar + (size_t)k * ak] *
                           (bd ? bd[(size_t)k * J + j] : (double)bf[(size_t)k * J + j]);
                s += p;
                m += fabs(p);
            }
            out[(size_t)r * J + j] = s;
            mag[(size_t)r * J + j] = m;
        }
}

static void check_case(const dcase *c)
{
    const int I = c->in, U = c->units, n = c->n, nd = c->two ? 2 : 1;
    graft_threads_set(c->threads);
    graft_model *m = graft_model_new("t");
    graft_layer *in = graft_input(m, NULL, graft_shape1(I)), *d[2] = {NULL, NULL};
    for (int k = 0; k < nd; k++)
        d[k] = graft_dense(m, in, (graft_dense_cfg){.units = U, .activation = GRAFT_RELU});
    if (c->two) graft_add(m, NULL, 2, d);
    CHECK_OK(graft_model_status(m));
    if (graft_model_status(m) != GRAFT_OK) {
        graft_model_free(m);
        return;
    }
    if (c->frozen) graft_layer_set_trainable(d[0], 0);
    /* Biases that cut about a third of the units by the ReLU. */
    for (int k = 0; k < nd; k++)
        for (int j = 0; j < U; j++) d[k]->weights[1].data[j] = (float)(j % 3) - 1.0f;
    m->want_input_grad = true;
    float *x = random_floats((size_t)n * I, 1.0f, 100 + (uint64_t)n);
    float *dy = random_floats((size_t)n * U, 1.0f, 200 + (uint64_t)n);
    CHECK_OK(graft_model_forward(m, x, n, true));
    CHECK_OK(graft_model_backward(m, dy, n));

    const size_t ys = (size_t)n * U, ws = (size_t)I * U, xs = (size_t)n * I;
    double *y = malloc(ys * sizeof(double)), *ym = malloc(ys * sizeof(double));
    double *dz = malloc(ys * sizeof(double)), *g = malloc(ws * sizeof(double));
    double *gm = malloc(ws * sizeof(double)), *dx = calloc(xs, sizeof(double));
    double *dxm = calloc(xs, sizeof(double));
    size_t at = 0;
    char what[160];
    snprintf(what, sizeof what, "%d x %d, %d threads, n %d%s%s", I, U, c->threads, n,
             c->two ? ", two consumers" : "", c->frozen ? ", frozen" : "");
    for (int k = 0; k < nd; k++) {
        const float *W = d[k]->weights[0].data, *b = d[k]->weights[1].data;
        ref_matmul(n, I, U, x, I, 1, W, NULL, y, ym);
        for (size_t i = 0; i < ys; i++) {
            y[i] += b[i % U];
            ym[i] += fabs(b[i % U]);
            if (y[i] < 0) y[i] = 0;
        }
        double r = worst_ratio(d[k]->out, y, ym, ys, &at);
        CHECK_MSG(r <= 1, "%s: dense %d out[%zu] %.9g, reference %.9g", what, k, at,
                  (double)d[k]->out[at], y[at]);
        /* Through the ReLU mask of the layer's own output: where the float
         * and the double sums straddle 0, the mask is the layer's. */
        for (size_t i = 0; i < ys; i++) dz[i] = d[k]->out[i] > 0 ? dy[i] : 0;
        /* dx += dz W^T: a(r, j) = dz[r * U + j], b(j, i) = W[i * U + j]. */
        for (int row = 0; row < n; row++)
            for (int i = 0; i < I; i++) {
                double s = 0, mg = 0;
                for (int j = 0; j < U; j++) {
                    double p = dz[(size_t)row * U + j] * W[(size_t)i * U + j];
                    s += p;
                    mg += fabs(p);
                }
                dx[(size_t)row * I + i] += s;
                dxm[(size_t)row * I + i] += mg;
            }
        const float *dW = d[k]->weights[0].grad, *db = d[k]->weights[1].grad;
        if (c->frozen && k == 0) {
            size_t written = 0;
            for (size_t i = 0; i < ws; i++) written += dW[i] != 0 || (i < (size_t)U && db[i] != 0);
            CHECK_MSG(written == 0, "%s: %zu gradients written for a frozen layer", what, written);
            continue;
        }
        /* dW = x^T dz: a(i, r) = x[r * I + i]. */
        ref_matmul(I, n, U, x, 1, I, NULL, dz, g, gm);
        r = worst_ratio(dW, g, gm, ws, &at);
        CHECK_MSG(r <= 1, "%s: dense %d d(kernel)[%zu] %.9g, reference %.9g", what, k, at,
                  (double)dW[at], g[at]);
        for (int j = 0; j < U; j++) {
            g[j] = gm[j] = 0;
            for (int row = 0; row < n; row++) {
                g[j] += dz[(size_t)row * U + j];
                gm[j] += fabs(dz[(size_t)row * U + j]);
            }
        }
        r = worst_ratio(db, g, gm, (size_t)U, &at);
        CHECK_MSG(r <= 1, "%s: dense %d d(bias)[%zu] %.9g, reference %.9g", what, k, at,
                  (double)db[at], g[at]);
    }
    double r = worst_ratio(in->dout, dx, dxm, xs, &at);
    CHECK_MSG(r <= 1, "%s: d(input)[%zu] %.9g, reference %.9g", what, at, (double)in->dout[at],
              dx[at]);
    free(y);
    free(ym);
    free(dz);
    free(g);
    free(gm);
    free(dx);
    free(dxm);
    free(x);
    free(dy);
    graft_model_free(m);
}

/* 30841 x 17 = 524297 weights (the split's threshold is 2^19), 1814 times
 * more inputs than units; both odd, so that no share comes out even. */
static void test_split(void)
{
    static const int batches[] = {1, 7, 32};
    for (int b = 0; b < 3; b++) check_case(&(dcase){30841, 17, 2, batches[b], false, false});
    check_case(&(dcase){30841, 17, 3, 7, false, false}); /* two partial sums */
    check_case(&(dcase){30841, 17, 1, 7, false, false}); /* one thread: no split */
    check_case(&(dcase){16411, 64, 2, 32, false, false});
    check_case(&(dcase){30841, 17, 2, 65, false, false}); /* past the transposed gradient */
}

/* The input feeds two Dense layers: the second backward adds into dL/dx. */
static void test_accumulated_input_gradient(void)
{
    check_case(&(dcase){30841, 17, 2, 7, true, false});
    check_case(&(dcase){16411, 64, 2, 5, true, false});
}

/* Frozen: no kernel or bias gradient is written, the input gradient is. */
static void test_frozen(void)
{
    check_case(&(dcase){30841, 17, 2, 7, false, true});
    check_case(&(dcase){16411, 64, 2, 5, true, true});
}

/* A frozen Dense's output row by row is the same whatever rows share its
 * call (outputs cached per sample must equal recomputed ones), on one or
 * two threads, with AVX2 or AVX-512: a batch of 150 (two blocks of rows),
 * each row alone (the threads sharing the columns), one thread, AVX2. An
 * ImageNet top's shape (2048 -> 1000 at a batch of one) against the
 * reference too. */
static void frozen_bits(int I, int U, int n)
{
    graft_model *m = graft_model_new("t");
    graft_layer *d = graft_dense(m, graft_input(m, NULL, graft_shape1(I)),
                                 (graft_dense_cfg){.units = U, .activation = GRAFT_RELU});
    CHECK_OK(graft_model_status(m));
    if (graft_model_status(m) != GRAFT_OK) {
        graft_model_free(m);
        return;
    }
    graft_layer_set_trainable(d, 0);
    float *W = d->weights[0].data, *b = d->weights[1].data;
    graft_rng r;
    graft_rng_seed(&r, 31);
    for (size_t i = 0; i < (size_t)I * U; i++) W[i] = graft_rng_normal(&r) * 0.05f;
    for (int j = 0; j < U; j++) b[j] = (float)(j % 3) - 1.0f;
    float *x = random_floats((size_t)n * I, 1.0f, 7);
    const size_t ys = (size_t)n * U;
    float *batch = malloc(ys * sizeof(float)), *other = malloc(ys * sizeof(float));
    graft_threads_set(2);
    CHECK_OK(graft_model_predict(m, x, n, batch));
    double *y = malloc(ys * sizeof(double)), *ym = malloc(ys * sizeof(double));
    ref_matmul(n, I, U, x, I, 1, W, NULL, y, ym);
    for (size_t i = 0; i < ys; i++) {
        y[i] += b[i % U];
        ym[i] += fabs(b[i % U]);
        if (y[i] < 0) y[i] = 0;
    }
    size_t at = 0;
    double worst = worst_ratio(batch, y, ym, ys, &at);
    CHECK_MSG(worst <= 1, "%d x %d, n %d: out[%zu] %.9g, reference %.9g", I, U, n, at,
              (double)batch[at], y[at]);
    for (int i = 0; i < n; i++)
        CHECK_OK(graft_model_predict(m, x + (size_t)i * I, 1, other + (size_t)i * U));
    CHECK_MSG(memcmp(batch, other, ys * sizeof(float)) == 0, "%d x %d: rows alone", I, U);
    graft_threads_set(1);
    CHECK_OK(graft_model_predict(m, x, n, other));
    CHECK_MSG(memcmp(batch, other, ys * sizeof(float)) == 0, "%d x %d: one thread", I, U);
    graft_threads_set(2);
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    CHECK_OK(graft_model_predict(m, x, n, other));
    unsetenv("ONEDNN_MAX_CPU_ISA");
    CHECK_MSG(memcmp(batch, other, ys * sizeof(float)) == 0, "%d x %d: AVX2", I, U);
    free(y);
    free(ym);
    free(x);
    free(batch);
    free(other);
    graft_model_free(m);
}

static void test_frozen_same_bits(void)
{
    frozen_bits(1100, 45, 150); /* 45: a last panel of 13 columns, 5 past AVX2's 8 */
    frozen_bits(2048, 1000, 2);
}

static void gradcheck_dense(int in, int units, int n, uint64_t seed)
{
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(in));
    graft_dense(m, NULL, (graft_dense_cfg){.units = units, .activation = GRAFT_TANH});
    CHECK_OK(graft_model_status(m));
    CHECK_MSG(gradcheck_model(m, n, NULL, seed, 12) == 0, "%d x %d, n %d", in, units, n);
    graft_model_free(m);
}

static void test_gradcheck(void)
{
    graft_threads_set(2);
    gradcheck_dense(30841, 17, 3, 7);
    gradcheck_dense(768, 1024, 2, 8); /* the transfer head's: no split */
}

/* Scratch floats a Dense of in x units asks for at batch n. */
static size_t scratch_of(int in, int units, int n, int threads)
{
    graft_threads_set(threads);
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, graft_shape1(in));
    graft_dense(m, NULL, (graft_dense_cfg){.units = units});
    float *x = calloc((size_t)n * in, sizeof(float));
    CHECK_OK(graft_model_forward(m, x, n, true));
    size_t s = m->scratch_floats;
    free(x);
    graft_model_free(m);
    return s;
}

/* The split holds a partial sum (n x units) per thread but the first; the
 * transposed input gradient (at most 64 rows) a chunk of 4096 kernel rows
 * per thread; the scratch is the larger. */
static void test_which_kernels_split(void)
{
    const size_t chunk = 4096;
    CHECK(scratch_of(30841, 17, 32, 2) == 2 * chunk * 32);
    CHECK(scratch_of(30841, 17, 8, 3) == 3 * chunk * 8);
    CHECK(scratch_of(30841, 17, 8, 1) == chunk * 8);
    CHECK(scratch_of(30841, 17, 65, 2) == (size_t)65 * 17);  /* too many rows: split only */
    CHECK(scratch_of(30841, 17, 65, 1) == 0);
    CHECK(scratch_of(30841, 16, 8, 2) == 0);  /* 493456 weights */
    CHECK(scratch_of(768, 1024, 8, 2) == 0);  /* not 32 times taller than wide */
    CHECK(scratch_of(8192, 512, 8, 2) == 0);
}

/* (3, 4, 5) -> (3, 4, 6) with exact gelu, as ConvNeXt's pointwise_conv_1 is
 * followed by; and a frozen one, which runs the per-sample kernel. */
static void test_last_axis(void)
{
    graft_threads_set(2);
    for (int frozen = 0; frozen < 2; frozen++) {
        const int n = 2, P = 3 * 4, K = 5, U = 6;
        graft_model *m = graft_model_new("t");
        graft_input(m, NULL, graft_shape3(3, 4, K));
        graft_layer *d = graft_dense(m, NULL, (graft_dense_cfg){.units = U, .activation = GRAFT_GELU});
        CHECK_OK(graft_model_status(m));
        if (!d) {
            graft_model_free(m);
            return;
        }
        graft_shape os = graft_layer_output_shape(d);
        CHECK(os.rank == 3 && os.dim[0] == 3 && os.dim[1] == 4 && os.dim[2] == U);
        graft_shape ks = graft_layer_weight_shape(d, 0);
        CHECK(ks.rank == 2 && ks.dim[0] == K && ks.dim[1] == U);
        fill_random_weights(m, 21);
        graft_layer_set_trainable(d, !frozen);
        float *x = random_floats((size_t)n * P * K, 1.0f, 22);
        double *want = malloc((size_t)n * P * U * sizeof(double));
        double *mag = malloc((size_t)n * P * U * sizeof(double));
        const float *w = graft_layer_weight_data(d, 0), *b = graft_layer_weight_data(d, 1);
        ref_matmul(n * P, K, U, x, K, 1, w, NULL, want, mag);
        for (int r = 0; r < n * P; r++)
            for (int j = 0; j < U; j++) {
                double z = want[r * U + j] + b[j];
                want[r * U + j] = 0.5 * z * (1.0 + erf(z / sqrt(2.0)));
                mag[r * U + j] += fabs(b[j]) + 1.0;
            }
        CHECK_OK(graft_model_forward(m, x, n, !frozen));
        size_t at = 0;
        double r = worst_ratio(graft_model_output(m)->out, want, mag, (size_t)n * P * U, &at);
        CHECK_MSG(r <= 1, "frozen %d: out[%zu] %.9g, reference %.9g", frozen, at,
                  graft_model_output(m)->out[at], want[at]);
        if (!frozen) CHECK(gradcheck_model(m, n, NULL, 23, 40) == 0);
        free(x);
        free(want);
        free(mag);
        graft_model_free(m);
    }
    /* Rank 2, no bias, and a layer that takes a scalar per sample is refused. */
    graft_model *m = graft_model_new("t");
    graft_input(m, NULL, (graft_shape){2, {7, 3}});
    graft_layer *d = graft_dense(m, NULL, (graft_dense_cfg){.units = 4, .no_bias = 1,
                                                         .activation = GRAFT_TANH});
    CHECK_OK(graft_model_status(m));
    CHECK(d && graft_layer_output_shape(d).rank == 2 && graft_layer_output_shape(d).dim[0] == 7 &&
          graft_layer_output_shape(d).dim[1] == 4);
    if (d) CHECK(gradcheck_model(m, 3, NULL, 24, 40) == 0);
    graft_model_free(m);
}

/* Keras's config of a Dense on (H, W, C) in, written back and round-tripped. */
static void test_last_axis_config(void)
{
    graft_model *m = NULL;
    CHECK_OK(sequential_from_json(
        "3, 4, 5",
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"pw1\", \"units\": 8,"
        " \"activation\": \"gelu\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"pw2\", \"units\": 5}}",
        &m));
    if (!m) return;
    graft_shape os = graft_layer_output_shape(graft_model_find(m, "pw1"));
    CHECK(os.rank == 3 && os.dim[2] == 8);
    CHECK(graft_model_count_params(m).total == 5 * 8 + 8 + 8 * 5 + 5);
    fill_random_weights(m, 25);
    check_h5_round_trip(m, 2);
    graft_model_free(m);
}

int main(void)
{
    RUN(test_split);
    RUN(test_accumulated_input_gradient);
    RUN(test_frozen);
    RUN(test_frozen_same_bits);
    RUN(test_gradcheck);
    RUN(test_which_kernels_split);
    RUN(test_last_axis);
    RUN(test_last_axis_config);
    return CHECK_SUMMARY();
}
