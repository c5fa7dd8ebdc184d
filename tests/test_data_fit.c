/* ImageDataGenerator.fit against Keras's computation in numpy
 * (tests/fixtures/formats.bin from scripts/gen_fixtures_formats.py): the
 * featurewise mean and std, the ZCA matrix, and what standardize then does
 * to an image; the fit over a folder; mismatched shapes refused. */
#include "check.h"
#include "data/data.h"
#include "data_util.h"
#include "fixture.h"

#include <graft.h>
#include <math.h>

static fixture fx;
static char tmpdir[64];

/* The largest |a - b| over the fixture array, relative to its largest |b|. */
static double rel_err(const float *a, const fixture_array *b, size_t n)
{
    if (!b || b->size != n) return INFINITY;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(b->data[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(a[i] - b->data[i]));
    return worst / (scale > 0 ? scale : 1);
}

static void test_fit_matches_keras(void)
{
    const fixture_array *x = fixture_get(&fx, "fit_x");
    CHECK(x && x->rank == 4);
    if (!x || x->rank != 4) return;
    int n = x->dim[0], h = x->dim[1], w = x->dim[2], c = x->dim[3], d = h * w * c;
    graft_image_data_generator g = {.rescale = 1 / 255.0f,
                                    .featurewise_center = 1,
                                    .featurewise_std_normalization = 1,
                                    .zca_whitening = 1};
    graft_generator_stats st;
    CHECK_OK(graft_generator_fit(&g, x->data, n, h, w, c, &st));
    CHECK(g.mean == st.mean && g.std == st.std &&
          g.principal_components == st.principal_components);
    CHECK(st.dim == d && g.zca_dim == d);
    double e_mean = rel_err(st.mean, fixture_get(&fx, "fit_mean"), 3);
    double e_std = rel_err(st.std, fixture_get(&fx, "fit_std"), 3);
    double e_pc = rel_err(st.principal_components, fixture_get(&fx, "fit_pc"), (size_t)d * d);
    CHECK_MSG(e_mean < 1e-6 && e_std < 1e-6, "mean %g, std %g", e_mean, e_std);
    CHECK_MSG(e_pc < 1e-5, "principal components differ by %g", e_pc);

    /* standardize: rescale, centre, normalise, whiten (in float). */
    float img[3 * 4 * 3];
    CHECK((size_t)d == sizeof img / sizeof *img);
    if ((size_t)d == sizeof img / sizeof *img) {
        memcpy(img, x->data, sizeof img);
        CHECK_OK(graft_standardize(&g, img, h, w, c));
        double e = rel_err(img, fixture_get(&fx, "fit_standardized0"), (size_t)d);
        CHECK_MSG(e < 1e-4, "standardized image differs by %g", e);
        /* Whitened images of another size are refused, not read past. */
        CHECK(graft_standardize(&g, img, 2, 5, 3) == GRAFT_ESHAPE);
    }
    graft_generator_stats_free(&st);

    /* ZCA alone, with Keras's zca_epsilon, on the raw (uncentred) pixels. */
    graft_image_data_generator z = {.zca_whitening = 1, .zca_epsilon = 0.1f};
    CHECK_OK(graft_generator_fit(&z, x->data, n, h, w, c, &st));
    CHECK(z.mean == NULL && z.std == NULL);
    e_pc = rel_err(st.principal_components, fixture_get(&fx, "fit_pc_only"), (size_t)d * d);
    CHECK_MSG(e_pc < 1e-5, "principal components (zca_epsilon 0.1) differ by %g", e_pc);
    graft_generator_stats_free(&st);

    CHECK(graft_generator_fit(&z, x->data, 0, h, w, c, &st) == GRAFT_EINVAL);
}

static void write_ppm(const char *path, int h, int w, unsigned seed)
{
    char head[32];
    int k = snprintf(head, sizeof head, "P6\n%d %d\n255\n", w, h);
    unsigned char buf[32 + 3 * 16 * 16];
    memcpy(buf, head, (size_t)k);
    for (int i = 0; i < 3 * h * w; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[k + i] = (unsigned char)(seed >> 16);
    }
    CHECK(write_bytes(path, buf, (size_t)k + 3u * h * w) == 0);
}

/* The fit over a folder sees the images the flow decodes: the statistics
 * over every image equal those of the same images loaded one by one. */
/* fit(augment=True, rounds=3) with horizontal flips only: the same
 * statistics as a plain fit over the three rounds built by hand (each image
 * flipped by a loop here where the generator's draw says so, in Keras's
 * order ax[i + r * n]). */
static void test_fit_augmented(void)
{
    const fixture_array *x = fixture_get(&fx, "fit_x");
    if (!x || x->rank != 4) return;
    int n = x->dim[0] < 8 ? x->dim[0] : 8, h = x->dim[1], w = x->dim[2], c = x->dim[3], rounds = 3;
    size_t per = (size_t)h * (size_t)w * (size_t)c;
    graft_image_data_generator g = {.rescale = 1 / 255.0f,
                                    .featurewise_center = 1,
                                    .featurewise_std_normalization = 1,
                                    .zca_whitening = 1,
                                    .horizontal_flip = 1};
    float *by_hand = malloc((size_t)rounds * (size_t)n * per * sizeof *by_hand);
    CHECK(by_hand != NULL);
    if (!by_hand) return;
    int flipped = 0;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            graft_rng rng;
            graft_rng_seed(&rng, graft_mix64(graft_mix64(42, (uint64_t)r), (uint64_t)i));
            graft_transform t;
            graft_transform_random(&g, h, w, &rng, &t);
            flipped += t.flip_horizontal;
            const float *src = x->data + (size_t)i * per;
            float *dst = by_hand + ((size_t)r * (size_t)n + (size_t)i) * per;
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < w; xx++)
                    for (int k = 0; k < c; k++)
                        dst[((size_t)y * w + xx) * c + k] =
                            src[((size_t)y * w + (t.flip_horizontal ? w - 1 - xx : xx)) * c + k];
        }
    CHECK(flipped > 0 && flipped < rounds * n); /* both kinds drawn */
    graft_image_data_generator g1 = g, g2 = g;
    graft_generator_stats want, got;
    CHECK_OK(graft_generator_fit(&g1, by_hand, rounds * n, h, w, c, &want));
    CHECK_OK(graft_generator_fit_augmented(&g2, x->data, n, h, w, c, rounds, 42, &got));
    for (int k = 0; k < c; k++) CHECK(want.mean[k] == got.mean[k] && want.std[k] == got.std[k]);
    CHECK(want.dim == got.dim && want.principal_components && got.principal_components &&
          memcmp(want.principal_components, got.principal_components,
                 (size_t)want.dim * (size_t)want.dim * sizeof(float)) == 0);
    /* A plain fit over one round differs (the flips change the ZCA matrix). */
    graft_generator_stats plain;
    graft_image_data_generator g3 = g;
    CHECK_OK(graft_generator_fit(&g3, x->data, n, h, w, c, &plain));
    CHECK(memcmp(plain.principal_components, got.principal_components,
                 (size_t)got.dim * (size_t)got.dim * sizeof(float)) != 0);
    CHECK(graft_generator_fit_augmented(&g2, x->data, n, h, w, c, 0, 42, &plain) == GRAFT_EINVAL);
    graft_generator_stats_free(&want);
    graft_generator_stats_free(&got);
    graft_generator_stats_free(&plain);
    free(by_hand);
}

static void test_fit_directory(void)
{
    char cls[128], path[192];
    snprintf(cls, sizeof cls, "%s/cls", tmpdir);
    CHECK(mkdir(cls, 0700) == 0);
    enum { N = 7, H = 6, W = 5 };
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "%s/img%d.ppm", cls, i);
        write_ppm(path, H, W, 17u + (unsigned)i);
    }
    float *all = malloc(sizeof(float) * N * H * W * 3);
    CHECK(all != NULL);
    if (!all) return;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "%s/img%d.ppm", cls, i);
        CHECK_OK(
            graft_image_load(path, H, W, GRAFT_INTERP_NEAREST, 0, all + (size_t)i * H * W * 3));
    }
    graft_image_data_generator want = {
        .featurewise_center = 1, .featurewise_std_normalization = 1, .zca_whitening = 1};
    graft_generator_stats a, b;
    CHECK_OK(graft_generator_fit(&want, all, N, H, W, 3, &a));
    graft_image_data_generator g = {
        .featurewise_center = 1, .featurewise_std_normalization = 1, .zca_whitening = 1};
    graft_flow_cfg cfg = {.target_size = {H, W}, .batch_size = 3, .seed = 5};
    CHECK_OK(graft_generator_fit_directory(&g, tmpdir, &cfg, 0, &b));
    for (int k = 0; k < 3; k++) {
        CHECK_NEAR(a.mean[k], b.mean[k], 1e-4);
        CHECK_NEAR(a.std[k], b.std[k], 1e-4);
    }
    /* The order of the images does not change sigma (up to rounding). */
    double worst = 0;
    for (size_t i = 0; i < (size_t)a.dim * a.dim; i++)
        worst = fmax(worst, fabs(a.principal_components[i] - b.principal_components[i]));
    CHECK_MSG(a.dim == b.dim && worst < 1e-2, "ZCA differs by %g", worst);

    /* A flow with the fitted generator: its batches are centred. */
    graft_source *s = NULL;
    cfg.quiet = 1;
    cfg.batch_size = N;
    cfg.class_mode = GRAFT_CLASS_NONE;
    g.zca_whitening = 0;
    CHECK_OK(graft_flow_from_directory(tmpdir, &g, &cfg, &s));
    if (s) {
        int n = 0;
        float y[1];
        CHECK_OK(s->next(s, all, y, &n));
        double sum = 0;
        for (int i = 0; i < n * H * W * 3; i++)
            sum += all[i];
        CHECK_MSG(n == N && fabs(sum / (n * H * W * 3)) < 1e-4, "mean %g", sum / (n * H * W * 3));
        s->free(s);
    }
    /* Principal components fitted on another size are refused by the flow. */
    g.zca_whitening = 1;
    cfg.target_size[0] = H + 1;
    CHECK(graft_flow_from_directory(tmpdir, &g, &cfg, &s) == GRAFT_EINVAL);
    graft_generator_stats_free(&a);
    graft_generator_stats_free(&b);
    free(all);
}

int main(void)
{
    if (fixture_load(&fx, "tests/fixtures/formats.bin")) return 1;
    strcpy(tmpdir, "/tmp/graft_fit_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_fit_matches_keras);
    RUN(test_fit_augmented);
    RUN(test_fit_directory);
    remove_tree(tmpdir);
    fixture_free(&fx);
    return CHECK_SUMMARY();
}
