/* The fused steps' kernels (kernels/pointwise.c, depthwise.c) against plain
 * double-precision loops, over sizes off the vector widths and tiles, every
 * epilogue part, padding and strides; and their bits: the same whichever
 * rows a call covers, and on AVX2 as on AVX-512. */
#include "check.h"
#include "internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

static float *rnd(size_t n, graft_rng *r, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = scale * (2 * graft_rng_uniform(r) - 1);
    return p;
}

/* The epilogue in double, in the layers' order. */
static double epi_ref(const graft_kernel_epi *e, int n, double v, const float *res)
{
    if (e->bias) v += e->bias[n];
    if (e->mean) v = (v - e->mean[n]) * e->scale[n] + e->shift[n];
    if (e->clamp) v = v < e->lo ? e->lo : (v > e->hi ? e->hi : v);
    if (res) v = res[n] + v;
    if (e->res_clamp) v = v < e->res_lo ? e->res_lo : (v > e->res_hi ? e->res_hi : v);
    return v;
}

typedef struct {
    float *bias, *mean, *scale, *shift;
} epi_arrays;

static graft_kernel_epi make_epi(int N, int variant, graft_rng *r, epi_arrays *a)
{
    graft_kernel_epi e = {0};
    a->bias = rnd((size_t)N, r, 1);
    a->mean = rnd((size_t)N, r, 1);
    a->scale = rnd((size_t)N, r, 2);
    a->shift = rnd((size_t)N, r, 1);
    if (variant & 1) e.bias = a->bias;
    if (variant & 2) e.mean = a->mean, e.scale = a->scale, e.shift = a->shift;
    if (variant & 4) e.clamp = true, e.lo = 0, e.hi = 6;
    if (variant & 8) e.res_clamp = true, e.res_lo = 0, e.res_hi = INFINITY;
    return e;
}

static void free_epi(epi_arrays *a)
{
    free(a->bias);
    free(a->mean);
    free(a->scale);
    free(a->shift);
}

static void test_pointwise_against_reference(void)
{
    graft_rng r;
    graft_rng_seed(&r, 11);
    const int shapes[][3] = {{1, 1, 1}, {13, 24, 144}, {114, 144, 24}, {25, 40, 7},
                             {7, 3, 5},  {30, 17, 33}, {12, 56, 64},  {50, 8, 96},
                             {98, 64, 40}, {21, 96, 19}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        const size_t lda = (size_t)K + 3, ldc = (size_t)N + 5, ldr = (size_t)N + 2;
        float *A = rnd((size_t)M * lda, &r, 1), *B = rnd((size_t)K * N, &r, 1);
        float *R = rnd((size_t)M * ldr, &r, 1);
        float *C = malloc((size_t)M * ldc * sizeof(float));
        float *P = malloc(graft_pw_pack_floats(K, N, true) * sizeof(float));
        for (int variant = 0; variant < 16; variant++) {
            epi_arrays a;
            graft_kernel_epi e = make_epi(N, variant, &r, &a);
            const bool res = variant & 8;
            /* in place, and packed (whole panels take their own tiles) */
            for (int pass = 0; pass < 4; pass++) {
                const int wide = pass & 1;
                memset(C, 0xff, (size_t)M * ldc * sizeof(float)); /* NaN: every output written */
                if (pass < 2) {
                    graft_pw_gemm(M, N, K, A, lda, B, (size_t)N, C, ldc, &e, res ? R : NULL, ldr,
                                  wide);
                } else {
                    graft_pw_pack(K, N, B, (size_t)N, P, wide);
                    graft_pw_gemm(M, N, K, A, lda, P, 0, C, ldc, &e, res ? R : NULL, ldr, wide);
                }
                double worst = 0;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double acc = 0;
                        for (int k = 0; k < K; k++) acc += (double)A[m * lda + k] * B[(size_t)k * N + n];
                        double want = epi_ref(&e, n, acc, res ? R + m * ldr : NULL);
                        double err = fabs(C[m * ldc + n] - want) / (1e-5 + 1e-5 * fabs(want) + 1e-6 * K);
                        if (!(err <= worst)) worst = err; /* a NaN counts */
                    }
                CHECK_MSG(worst <= 1, "M %d N %d K %d variant %d wide %d packed %d: %g", M, N, K,
                          variant, wide, pass >= 2, worst);
            }
            free_epi(&a);
        }
        free(A);
        free(B);
        free(R);
        free(C);
        free(P);
    }
}

/* Row by row, in odd groups, AVX2 or AVX-512 (and the scalar loop that
 * takes AVX2's last columns off its vector width), packed or not: the same
 * bits. */
static void pointwise_bits(int N)
{
    graft_rng r;
    graft_rng_seed(&r, 12);
    const int M = 41, K = 37;
    float *A = rnd((size_t)M * K, &r, 1), *B = rnd((size_t)K * N, &r, 1);
    float *C0 = malloc((size_t)M * N * sizeof(float)), *C1 = malloc((size_t)M * N * sizeof(float));
    epi_arrays a;
    graft_kernel_epi e = make_epi(N, 7, &r, &a);
    graft_pw_gemm(M, N, K, A, K, B, N, C0, N, &e, NULL, 0, true);
    for (int m = 0; m < M; m += 5) {
        int rows = M - m < 5 ? M - m : 5;
        graft_pw_gemm(rows, N, K, A + (size_t)m * K, K, B, N, C1 + (size_t)m * N, N, &e, NULL, 0, true);
    }
    CHECK(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0);
    graft_pw_gemm(M, N, K, A, K, B, N, C1, N, &e, NULL, 0, false);
    CHECK(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0);
    /* The kernel packed in panels, for either ISA. */
    for (int wide = 0; wide < 2; wide++) {
        float *P = malloc(graft_pw_pack_floats(K, N, wide) * sizeof(float));
        graft_pw_pack(K, N, B, N, P, wide);
        memset(C1, 0, (size_t)M * N * sizeof(float));
        graft_pw_gemm(M, N, K, A, K, P, 0, C1, N, &e, NULL, 0, wide);
        CHECK_MSG(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0, "packed, wide %d", wide);
        free(P);
    }
    /* NaN passes the clamp, as in the unfused ReLU layers. */
    A[0] = NAN;
    graft_pw_gemm(1, N, K, A, K, B, N, C1, N, &e, NULL, 0, true);
    CHECK(isnan(C1[0]) && isnan(C1[N - 1]));
    graft_pw_gemm(1, N, K, A, K, B, N, C1, N, &e, NULL, 0, false);
    CHECK(isnan(C1[0]) && isnan(C1[N - 1]));
    free_epi(&a);
    free(A);
    free(B);
    free(C0);
    free(C1);
}

static void test_pointwise_bits(void)
{
    pointwise_bits(40);
    pointwise_bits(45);
    pointwise_bits(5);
}

/* Rows of A 4 KiB apart (lda a multiple of 1024 floats, as 1x1 convolutions
 * over 1024 or 2048 channels read them): the AVX-512 kernel goes 8 rows per
 * tile there; the values and bits are those of the same rows packed
 * densely, and of AVX2. */
static void test_pointwise_rows_4k_apart(void)
{
    graft_rng r;
    graft_rng_seed(&r, 14);
    const int M = 21, N = 40, K = 256;
    const size_t lda = 1024;
    float *A = rnd((size_t)M * lda, &r, 1), *B = rnd((size_t)K * N, &r, 1);
    float *D = malloc((size_t)M * K * sizeof(float));
    float *C0 = malloc((size_t)M * N * sizeof(float)), *C1 = malloc((size_t)M * N * sizeof(float));
    for (int m = 0; m < M; m++) memcpy(D + (size_t)m * K, A + (size_t)m * lda, (size_t)K * sizeof(float));
    epi_arrays a;
    graft_kernel_epi e = make_epi(N, 7, &r, &a);
    graft_pw_gemm(M, N, K, A, lda, B, N, C0, N, &e, NULL, 0, true);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)A[(size_t)m * lda + k] * B[(size_t)k * N + n];
            double want = epi_ref(&e, n, acc, NULL);
            double err = fabs(C0[(size_t)m * N + n] - want) / (1e-5 + 1e-5 * fabs(want) + 1e-6 * K);
            if (!(err <= worst)) worst = err; /* a NaN counts */
        }
    CHECK_MSG(worst <= 1, "lda %zu: %g", lda, worst);
    graft_pw_gemm(M, N, K, D, (size_t)K, B, N, C1, N, &e, NULL, 0, true);
    CHECK(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0);
    graft_pw_gemm(M, N, K, A, lda, B, N, C1, N, &e, NULL, 0, false);
    CHECK(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0);
    free_epi(&a);
    free(A);
    free(B);
    free(D);
    free(C0);
    free(C1);
}

/* Rows of B 2 or 4 KiB apart (ldb a multiple of 512 floats: a 1x1 kernel
 * of 512 to 2048 filters read in place at batch 1, or a share of its
 * columns): the kernels copy B a block of k at a time and carry the partial
 * sums in C between blocks. K = 600 spans three blocks, the last one short;
 * the values are the reference's, and the bits those of the kernel packed
 * (no copying), of AVX2, and of the rows one at a time (no copying either),
 * with the epilogue's every part and the residual; so are those of B
 * streamed panel by panel (also with B's rows dense, ldb = N). */
static void b_rows_apart(size_t ldb)

{
    graft_rng r;
    graft_rng_seed(&r, 15);
    const int M = 30, N = 45, K = 600;
    float *A = rnd((size_t)M * K, &r, 1), *B = rnd((size_t)K * ldb, &r, 1);
    float *R = rnd((size_t)M * N, &r, 1);
    float *C0 = malloc((size_t)M * N * sizeof(float)), *C1 = malloc((size_t)M * N * sizeof(float));
    epi_arrays a;
    graft_kernel_epi e = make_epi(N, 15, &r, &a);
    graft_pw_gemm(M, N, K, A, K, B, ldb, C0, N, &e, R, N, true);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)A[(size_t)m * K + k] * B[(size_t)k * ldb + n];
            double want = epi_ref(&e, n, acc, R + (size_t)m * N);
            double err = fabs(C0[(size_t)m * N + n] - want) / (1e-5 + 1e-5 * fabs(want) + 1e-6 * K);
            if (!(err <= worst)) worst = err; /* a NaN counts */
        }
    CHECK_MSG(worst <= 1, "ldb %zu: %g", ldb, worst);
    graft_pw_gemm(M, N, K, A, K, B, ldb, C1, N, &e, R, N, false);
    CHECK(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0);
    for (int m = 0; m < M; m++)
        graft_pw_gemm(1, N, K, A + (size_t)m * K, K, B, ldb, C1 + (size_t)m * N, N, &e,
                      R + (size_t)m * N, N, true);
    CHECK(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0);
    for (int wide = 0; wide < 2; wide++) {
        float *P = malloc(graft_pw_pack_floats(K, N, wide) * sizeof(float));
        graft_pw_pack(K, N, B, ldb, P, wide);
        memset(C1, 0, (size_t)M * N * sizeof(float));
        graft_pw_gemm(M, N, K, A, K, P, 0, C1, N, &e, R, N, wide);
        CHECK_MSG(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0, "packed, wide %d", wide);
        free(P);
    }
    /* Streamed (graft_pw_gemm_stream, a panel at a time, its first row
     * tile copying each block of B's rows as it reads them, a last panel
     * of 13 columns copied before its tiles): all columns, a share of them
     * at a time, and the first 7 rows alone (one tile). */
    memset(C1, 0, (size_t)M * N * sizeof(float));
    graft_pw_gemm_stream(M, 0, N, K, A, K, B, ldb, C1, N, &e, R, N);
    CHECK_MSG(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0, "streamed, ldb %zu", ldb);
    memset(C1, 0, (size_t)M * N * sizeof(float));
    graft_pw_gemm_stream(M, 0, 32, K, A, K, B, ldb, C1, N, &e, R, N);
    graft_pw_gemm_stream(M, 32, N - 32, K, A, K, B, ldb, C1, N, &e, R, N);
    CHECK_MSG(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0, "streamed in two shares");
    memset(C1, 0, (size_t)M * N * sizeof(float));
    graft_pw_gemm_stream(7, 0, N, K, A, K, B, ldb, C1, N, &e, R, N);
    CHECK(memcmp(C0, C1, (size_t)7 * N * sizeof(float)) == 0);
    /* and at AVX2's width (panels of 16, then 8, then 5 columns alone);
     * with at most 4 rows (3, then 1: B's rows in order), at both widths */
    for (int avx2 = 0; avx2 < 2; avx2++) {
        if (avx2) setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
        memset(C1, 0, (size_t)M * N * sizeof(float));
        graft_pw_gemm_stream(M, 0, N, K, A, K, B, ldb, C1, N, &e, R, N);
        CHECK_MSG(memcmp(C0, C1, (size_t)M * N * sizeof(float)) == 0, "streamed, AVX2 %d", avx2);
        memset(C1, 0, (size_t)M * N * sizeof(float));
        graft_pw_gemm_stream(3, 0, N, K, A, K, B, ldb, C1, N, &e, R, N);
        graft_pw_gemm_stream(1, 0, 29, K, A + 3 * (size_t)K, K, B, ldb, C1 + 3 * (size_t)N, N, &e,
                             R + 3 * (size_t)N, N);
        graft_pw_gemm_stream(1, 29, N - 29, K, A + 3 * (size_t)K, K, B, ldb, C1 + 3 * (size_t)N,
                             N, &e, R + 3 * (size_t)N, N);
        CHECK_MSG(memcmp(C0, C1, (size_t)4 * N * sizeof(float)) == 0, "few rows, AVX2 %d", avx2);
        unsetenv("ONEDNN_MAX_CPU_ISA");
    }
    free_epi(&a);
    free(A);
    free(B);
    free(R);
    free(C0);
    free(C1);
}

static void test_pointwise_b_rows_apart(void)
{
    b_rows_apart(512);
    b_rows_apart(1024);
    b_rows_apart(45); /* dense */
}

/* A depthwise output row against the direct definition. */
static void dw_case(int h, int w, int C, int kh, int kw, int sh, int sw, int pt, int pl, int variant,
                    graft_rng *r)
{
    const int oh = (h + 2 * pt - kh) / sh + 1, ow = (w + 2 * pl - kw) / sw + 1;
    float *x = rnd((size_t)h * w * C, r, 1), *k = rnd((size_t)kh * kw * C, r, 1);
    float *out = malloc((size_t)ow * C * sizeof(float)), *out2 = malloc((size_t)ow * C * sizeof(float));
    epi_arrays a;
    graft_kernel_epi e = make_epi(C, variant & 7, r, &a);
    const float *in[16];
    double worst = 0;
    bool same = true;
    for (int oy = 0; oy < oh; oy++) {
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh - pt + ky;
            in[ky] = iy < 0 || iy >= h ? NULL : x + (size_t)iy * w * C;
        }
        graft_dw_row(in, w, C, kh, kw, sw, pl, ow, k, &e, out, true, 0);
        graft_dw_row(in, w, C, kh, kw, sw, pl, ow, k, &e, out2, false, 0);
        same = same && memcmp(out, out2, (size_t)ow * C * sizeof(float)) == 0;
        for (int ox = 0; ox < ow; ox++)
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++) {
                        int iy = oy * sh - pt + ky, ix = ox * sw - pl + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        acc += (double)x[((size_t)iy * w + ix) * C + c] * k[(size_t)(ky * kw + kx) * C + c];
                    }
                double want = epi_ref(&e, c, acc, NULL);
                double err = fabs(out[(size_t)ox * C + c] - want) / (1e-5 + 1e-5 * fabs(want));
                if (!(err <= worst)) worst = err; /* a NaN counts */
            }
    }
    CHECK_MSG(worst <= 1, "%dx%dx%d k%dx%d s%d,%d pad %d,%d variant %d: %g", h, w, C, kh, kw, sh, sw,
              pt, pl, variant, worst);
    CHECK_MSG(same, "%dx%dx%d k%dx%d s%d: AVX2 and AVX-512 bits differ", h, w, C, kh, kw, sh);
    free_epi(&a);
    free(x);
    free(k);
    free(out);
    free(out2);
}

static void test_depthwise_against_reference(void)
{
    graft_rng r;
    graft_rng_seed(&r, 13);
    for (int variant = 0; variant < 8; variant++) {
        dw_case(7, 9, 32, 3, 3, 1, 1, 1, 1, variant, &r);   /* 'same' */
        dw_case(8, 8, 24, 3, 3, 2, 2, 0, 0, variant, &r);   /* 'valid' stride 2 */
        dw_case(9, 6, 20, 3, 3, 2, 2, 1, 1, variant, &r);   /* padded stride 2, channel tail */
        dw_case(5, 5, 3, 3, 3, 1, 1, 1, 1, variant, &r);    /* fewer channels than a vector */
        dw_case(6, 10, 40, 5, 5, 1, 1, 2, 2, variant, &r);  /* 5x5 */
        dw_case(2, 2, 16, 3, 3, 1, 1, 1, 1, variant, &r);   /* every window clipped */
        dw_case(4, 7, 48, 3, 1, 1, 1, 1, 0, variant, &r);   /* 3x1 */
    }
}

int main(void)
{
    RUN(test_pointwise_against_reference);
    RUN(test_pointwise_bits);
    RUN(test_pointwise_rows_4k_apart);
    RUN(test_pointwise_b_rows_apart);
    RUN(test_depthwise_against_reference);
    return CHECK_SUMMARY();
}
