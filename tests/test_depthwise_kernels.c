/* kernels/depthwise.c's whole-tensor passes (DepthwiseConv2D with depth
 * multiplier 1, Conv2D with groups = channels = filters) against the
 * grouped direct convolution (layers/conv_plain.c), forward and both
 * gradients; AVX-512 and AVX2 rows bit for bit; one and two threads bit for
 * bit; Conv2D(groups = C) against DepthwiseConv2D, and its gradients by
 * central differences. */
#include "gradcheck.h"
#include "kernels/kernels.h"
#include "layers/conv_plain.h"

static const struct {
    int h, w, c, k[2], s[2];
    graft_padding pad;
} CASES[] = {
    {9, 21, 16, {7, 7}, {1, 1}, GRAFT_SAME},   /* ConvNeXt's: 15 inside, blocks of 8 and 7 */
    {12, 19, 40, {7, 7}, {1, 1}, GRAFT_SAME},  /* channels not a multiple of 16 or 32 */
    {11, 26, 19, {7, 7}, {2, 2}, GRAFT_VALID}, /* strided blocks */
    {5, 4, 24, {7, 7}, {1, 1}, GRAFT_SAME},    /* every window touches the padding */
    {10, 17, 33, {5, 5}, {2, 2}, GRAFT_SAME},  /* MobileNetV3's */
    {8, 20, 5, {3, 3}, {1, 1}, GRAFT_SAME},    /* fewer channels than a vector */
    {7, 30, 48, {1, 7}, {1, 1}, GRAFT_SAME},   /* not square */
    {6, 6, 100, {5, 5}, {1, 1}, GRAFT_SAME},   /* a block of 2 inside; outputs alone, their */
    {9, 13, 80, {3, 3}, {2, 2}, GRAFT_SAME},   /* channels 64 at a time, the last part */
    {4, 11, 32, {3, 3}, {1, 1}, GRAFT_SAME},   /* MobileNet's 3x3: 9 inside, blocks of 5 and 4 */
    {3, 3, 16, {3, 3}, {1, 1}, GRAFT_SAME},    /* a block of one output */
    {5, 5, 24, {3, 3}, {1, 1}, GRAFT_SAME},    /* a block of three */
    {6, 10, 17, {3, 3}, {1, 1}, GRAFT_SAME},   /* the 3x3 blocks (kernel in registers): */
    {7, 9, 40, {3, 3}, {1, 1}, GRAFT_SAME},    /* of eight, of seven, of two, and */
    {5, 4, 24, {3, 3}, {1, 1}, GRAFT_SAME},    /* strided ones of eight with padding */
    {9, 35, 24, {3, 3}, {2, 2}, GRAFT_SAME},   /* rows top and bottom */
};
#define N_CASES (sizeof CASES / sizeof *CASES)

static void fill(float *p, size_t n, graft_rng *r)
{
    for (size_t i = 0; i < n; i++) p[i] = graft_rng_normal(r);
}

typedef struct {
    graft_conv_geom g;
    graft_plain_conv pc;
    size_t xs, ys, ks;
    float *x, *k, *b, *dz, *y1, *y2, *dk1, *dk2, *db1, *db2, *dx1, *dx2, *scratch;
} setup;

static bool setup_case(setup *s, size_t i, int n)
{
    memset(s, 0, sizeof *s);
    graft_shape in = graft_shape3(CASES[i].h, CASES[i].w, CASES[i].c);
    const int one[2] = {1, 1};
    graft_conv_geom_init(&s->g, &in, CASES[i].k, CASES[i].s, CASES[i].pad);
    if (graft_plain_conv_init(&s->pc, "t", "Conv2D", &in, CASES[i].k, CASES[i].s, one,
                              CASES[i].pad, CASES[i].c, CASES[i].c) != GRAFT_OK)
        return false;
    CHECK(s->pc.oh == s->g.oh && s->pc.ow == s->g.ow && s->pc.pt == s->g.pad_top &&
          s->pc.pl == s->g.pad_left);
    const size_t C = (size_t)CASES[i].c;
    s->xs = (size_t)n * s->g.h * s->g.w * C;
    s->ys = (size_t)n * s->g.oh * s->g.ow * C;
    s->ks = (size_t)s->g.kh * s->g.kw * C;
    size_t sf = graft_dw_backward_scratch_floats(&s->g, 1, n);
    s->x = malloc(s->xs * 4), s->dx1 = malloc(s->xs * 4), s->dx2 = malloc(s->xs * 4);
    s->y1 = malloc(s->ys * 4), s->y2 = malloc(s->ys * 4), s->dz = malloc(s->ys * 4);
    s->k = malloc(s->ks * 4), s->dk1 = malloc(s->ks * 4), s->dk2 = malloc(s->ks * 4);
    s->b = malloc(C * 4), s->db1 = malloc(C * 4), s->db2 = malloc(C * 4);
    s->scratch = malloc(sf * 4);
    if (!s->x || !s->dx1 || !s->dx2 || !s->y1 || !s->y2 || !s->dz || !s->k || !s->dk1 ||
        !s->dk2 || !s->b || !s->db1 || !s->db2 || !s->scratch)
        return false;
    graft_rng r;
    graft_rng_seed(&r, 100 + i);
    fill(s->x, s->xs, &r);
    fill(s->k, s->ks, &r);
    fill(s->b, C, &r);
    fill(s->dz, s->ys, &r);
    return true;
}

static void free_case(setup *s)
{
    float *all[] = {s->x, s->k, s->b, s->dz, s->y1, s->y2, s->dk1, s->dk2,
                    s->db1, s->db2, s->dx1, s->dx2, s->scratch};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* tol: the sums' magnitudes (the kernel's over all outputs) allow for their
 * float rounding in another order. */
static void expect_close(const char *what, size_t i, const float *a, const float *b, size_t n,
                         double tol)
{
    size_t worst = 0;
    double r = check_close_ratio(a, b, n, tol, tol, &worst);
    CHECK_MSG(r <= 1, "case %zu %s: [%zu] %.7g vs %.7g", i, what, worst, a[worst], b[worst]);
}

static void test_against_grouped_direct(void)
{
    for (size_t i = 0; i < N_CASES; i++) {
        setup s;
        const int n = 3;
        if (!setup_case(&s, i, n)) {
            CHECK_MSG(0, "case %zu: setup failed", i);
            free_case(&s);
            continue;
        }
        graft_dw_forward(&s.g, n, s.x, s.k, s.b, s.y1);
        graft_plain_conv_forward(&s.pc, n, s.x, s.k, s.b, s.y2);
        expect_close("forward", i, s.y1, s.y2, s.ys, 1e-5);
        graft_dw_forward(&s.g, n, s.x, s.k, NULL, s.y1);
        graft_plain_conv_forward(&s.pc, n, s.x, s.k, NULL, s.y2);
        expect_close("forward without bias", i, s.y1, s.y2, s.ys, 1e-5);

        graft_dw_backward(&s.g, 1, n, s.x, s.dz, s.k, s.dk1, s.db1, s.dx1, false, s.scratch);
        graft_plain_conv_backward_weights(&s.pc, n, s.x, s.dz, s.dk2, s.db2);
        graft_plain_conv_backward_data(&s.pc, n, s.dz, s.k, s.dx2, false);
        expect_close("kernel gradient", i, s.dk1, s.dk2, s.ks, 1e-4);
        expect_close("bias gradient", i, s.db1, s.db2, (size_t)CASES[i].c, 1e-4);
        expect_close("input gradient", i, s.dx1, s.dx2, s.xs, 1e-5);
        /* Accumulating adds onto what is there. */
        graft_dw_backward(&s.g, 1, n, s.x, s.dz, s.k, NULL, NULL, s.dx1, true, NULL);
        for (size_t j = 0; j < s.xs; j++) s.dx2[j] *= 2;
        expect_close("accumulated input gradient", i, s.dx1, s.dx2, s.xs, 1e-5);
        free_case(&s);
    }
}

static bool same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* The AVX2 and AVX-512 rows (blocked and tap by tap), with every epilogue
 * part, give each output the same bits; so do one and two threads. */
static void test_bits(void)
{
    const int saved = graft_threads_get();
    for (size_t i = 0; i < N_CASES; i++) {
        setup s;
        const int n = 2;
        if (!setup_case(&s, i, n)) {
            CHECK_MSG(0, "case %zu: setup failed", i);
            free_case(&s);
            continue;
        }
        const graft_conv_geom *g = &s.g;
        const int C = g->c;
        float *mean = malloc(3 * (size_t)C * 4);
        if (!mean) {
            free_case(&s);
            continue;
        }
        graft_rng r;
        graft_rng_seed(&r, 7);
        fill(mean, 3 * (size_t)C, &r);
        graft_kernel_epi e = {.bias = s.b, .mean = mean, .scale = mean + C, .shift = mean + 2 * C,
                              .clamp = true, .lo = -0.5f, .hi = 1.5f};
        bool same = true;
        for (int oy = 0; oy < g->oh; oy++) {
            const float *in[GRAFT_DW_MAX_KH];
            for (int ky = 0; ky < g->kh; ky++) {
                int iy = oy * g->sh - g->pad_top + ky;
                in[ky] = iy < 0 || iy >= g->h ? NULL : s.x + (size_t)iy * g->w * C;
            }
            float *a = s.y1 + (size_t)oy * g->ow * C, *b = s.y2 + (size_t)oy * g->ow * C;
            const int fresh = graft_dw_fresh(g->kh, g->sh, oy == 0);
            graft_dw_row(in, g->w, C, g->kh, g->kw, g->sw, g->pad_left, g->ow, s.k, &e, a, true,
                         fresh);
            graft_dw_row(in, g->w, C, g->kh, g->kw, g->sw, g->pad_left, g->ow, s.k, &e, b, false,
                         fresh);
            same = same && same_bits(a, b, (size_t)g->ow * C);
        }
        CHECK_MSG(same, "case %zu: AVX-512 and AVX2 rows differ", i);
        free(mean);

        graft_threads_set(1);
        graft_dw_forward(g, n, s.x, s.k, s.b, s.y1);
        graft_dw_backward(g, 1, n, s.x, s.dz, s.k, s.dk1, s.db1, s.dx1, false, s.scratch);
        graft_threads_set(2);
        graft_dw_forward(g, n, s.x, s.k, s.b, s.y2);
        graft_dw_backward(g, 1, n, s.x, s.dz, s.k, s.dk2, s.db2, s.dx2, false, s.scratch);
        CHECK_MSG(same_bits(s.y1, s.y2, s.ys), "case %zu: forward differs between thread counts", i);
        CHECK_MSG(same_bits(s.dk1, s.dk2, s.ks) && same_bits(s.db1, s.db2, (size_t)C) &&
                      same_bits(s.dx1, s.dx2, s.xs),
                  "case %zu: gradients differ between thread counts", i);
        free_case(&s);
    }
    graft_threads_set(saved);
}

/* Conv2D(groups = C) takes the depthwise kernels: the same bits as a
 * DepthwiseConv2D with the same kernel, and its gradients check. */
static void test_conv2d_groups_route(void)
{
    graft_model *a = graft_model_new("a"), *b = graft_model_new("b");
    graft_input(a, NULL, graft_shape3(9, 17, 24));
    graft_input(b, NULL, graft_shape3(9, 17, 24));
    graft_layer *ca = graft_conv2d(a, NULL, (graft_conv2d_cfg){.filters = 24, .kernel_size = {7, 7},
                                                              .padding = GRAFT_SAME, .groups = 24,
                                                              .activation = GRAFT_GELU});
    graft_layer *cb = graft_depthwise_conv2d(
        b, NULL, (graft_depthwise_conv2d_cfg){.kernel_size = {7, 7}, .padding = GRAFT_SAME,
                                              .activation = GRAFT_GELU});
    CHECK_OK(graft_model_status(a));
    CHECK_OK(graft_model_status(b));
    if (!ca || !cb) goto done;
    graft_shape ka = graft_layer_weight_shape(ca, 0), kb = graft_layer_weight_shape(cb, 0);
    CHECK(ka.dim[2] == 1 && ka.dim[3] == 24 && kb.dim[2] == 24 && kb.dim[3] == 1);
    graft_rng r;
    graft_rng_seed(&r, 3);
    const size_t ks = 7 * 7 * 24, xs = 2 * 9 * 17 * 24;
    fill(graft_layer_weight_data(ca, 0), ks, &r);
    fill(graft_layer_weight_data(ca, 1), 24, &r);
    memcpy(graft_layer_weight_data(cb, 0), graft_layer_weight_data(ca, 0), ks * 4);
    memcpy(graft_layer_weight_data(cb, 1), graft_layer_weight_data(ca, 1), 24 * 4);
    float *x = malloc(xs * 4), *ya = malloc(xs * 4), *yb = malloc(xs * 4);
    if (x && ya && yb) {
        fill(x, xs, &r);
        CHECK_OK(graft_model_predict(a, x, 2, ya));
        CHECK_OK(graft_model_predict(b, x, 2, yb));
        CHECK(same_bits(ya, yb, xs));
    }
    free(x);
    free(ya);
    free(yb);
    CHECK(gradcheck_model(a, 2, NULL, 11, 60) == 0);
done:
    graft_model_free(a);
    graft_model_free(b);
}

/* graft_dw_fresh names the first input row that the output row before did
 * not read: every row from it on is new, and none before it is. */
static void test_fresh_rows(void)
{
    for (int kh = 1; kh <= 7; kh++)
        for (int sh = 1; sh <= 4; sh++) {
            CHECK_MSG(graft_dw_fresh(kh, sh, true) == 0, "kh %d sh %d: a first row asks all", kh,
                      sh);
            const int fresh = graft_dw_fresh(kh, sh, false), oy = 5;
            for (int ky = 0; ky < kh; ky++) {
                const int row = oy * sh + ky, prev_lo = (oy - 1) * sh, prev_hi = prev_lo + kh;
                const bool read_before = row >= prev_lo && row < prev_hi;
                CHECK_MSG(read_before == (ky < fresh), "kh %d sh %d: row %d of the taps %s", kh,
                          sh, ky, read_before ? "was read before" : "is new");
            }
        }
}

int main(void)
{
    RUN(test_against_grouped_direct);
    RUN(test_bits);
    RUN(test_conv2d_groups_route);
    RUN(test_fresh_rows);
    return CHECK_SUMMARY();
}
