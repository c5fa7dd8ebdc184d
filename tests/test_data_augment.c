/* ImageDataGenerator transforms against the reference of
 * scripts/gen_fixtures_data.py (Keras's matrix, scipy's resampling,
 * numpy's channel shift, PIL's brightness), with pinned parameters. */
#include "check.h"
#include "data/data.h"
#include "fixture.h"

static fixture fx;
enum { H = 17, W = 23, C = 3, N = H * W * C };

static void load_src(float *x)
{
    const fixture_array *s = fixture_get(&fx, "src");
    for (int i = 0; i < N; i++) x[i] = s ? s->data[i] : 0;
}

static void test_affine_matches_keras(void)
{
    static const char *modes[] = {"nearest", "constant", "reflect", "wrap"};
    float x[N], tmp[N];
    int cases = 0;
    for (int k = 0;; k++) {
        char key[64];
        snprintf(key, sizeof key, "aug%d_params", k);
        int found = 0;
        for (int i = 0; i < fx.n; i++) found |= strcmp(fx.a[i].name, key) == 0;
        if (!found) break;
        const fixture_array *p = fixture_get(&fx, key);
        snprintf(key, sizeof key, "aug%d", k);
        const fixture_array *ref = fixture_get(&fx, key);
        if (!p || !ref || ref->size != N) {
            CHECK(0);
            continue;
        }
        graft_transform t = {.theta = p->data[0], .tx = p->data[1], .ty = p->data[2],
                             .shear = p->data[3], .zx = p->data[4], .zy = p->data[5],
                             .flip_horizontal = p->data[6] != 0, .flip_vertical = p->data[7] != 0};
        graft_fill_mode mode = (graft_fill_mode)(int)p->data[8];
        load_src(x);
        graft_transform_apply(&t, mode, p->data[9], (int)p->data[10], x, tmp, H, W, C);
        size_t worst = 0;
        double r = check_close_ratio(x, ref->data, N, 1e-3, 1e-5, &worst);
        CHECK_MSG(r <= 1, "case %d (theta %g tx %g ty %g shear %g zoom %g,%g flips %g,%g, %s, order %g): "
                  "pixel %zu: %g vs %g",
                  k, p->data[0], p->data[1], p->data[2], p->data[3], p->data[4], p->data[5],
                  p->data[6], p->data[7], modes[(int)p->data[8]], p->data[10], worst / C,
                  x[worst], ref->data[worst]);
        cases++;
    }
    CHECK(cases >= 40);
}

static void test_channel_shift_and_brightness(void)
{
    float x[N], tmp[N];
    const fixture_array *cp = fixture_get(&fx, "chshift_params");
    const fixture_array *bp = fixture_get(&fx, "bright_params");
    const char *ck[] = {"chshift_a", "chshift_b"}, *bk[] = {"bright_a", "bright_b"};
    for (int k = 0; k < 2 && cp && bp; k++) {
        graft_transform t = {.zx = 1, .zy = 1, .has_channel_shift = 1,
                             .channel_shift_intensity = cp->data[k]};
        load_src(x);
        graft_transform_apply(&t, GRAFT_FILL_NEAREST, 0, 1, x, tmp, H, W, C);
        const fixture_array *ref = fixture_get(&fx, ck[k]);
        CHECK(ref && check_close_ratio(x, ref->data, N, 1e-4, 0, NULL) <= 1);

        graft_transform b = {.zx = 1, .zy = 1, .has_brightness = 1, .brightness = bp->data[k]};
        load_src(x);
        graft_transform_apply(&b, GRAFT_FILL_NEAREST, 0, 1, x, tmp, H, W, C);
        ref = fixture_get(&fx, bk[k]);
        CHECK(ref && check_close_ratio(x, ref->data, N, 1e-6, 0, NULL) <= 1);
    }
}

static void test_random_transform_ranges(void)
{
    graft_image_data_generator g = {.rotation_range = 40, .width_shift_range = 0.2f,
                                    .height_shift_range = 0.2f, .shear_range = 0.2f,
                                    .zoom_range = {0.2f, 0}, .horizontal_flip = 1,
                                    .channel_shift_range = 10, .brightness_range = {0.5f, 1.5f}};
    graft_rng a, b;
    graft_rng_seed(&a, 5);
    graft_rng_seed(&b, 5);
    int flips = 0;
    for (int i = 0; i < 1000; i++) {
        graft_transform t, u;
        graft_transform_random(&g, 150, 100, &a, &t);
        graft_transform_random(&g, 150, 100, &b, &u);
        CHECK(memcmp(&t, &u, sizeof t) == 0);
        CHECK(fabs(t.theta) <= 40 && fabs(t.tx) <= 0.2 * 150 && fabs(t.ty) <= 0.2 * 100);
        CHECK(fabs(t.shear) <= 0.2 && t.zx >= 0.8 && t.zx <= 1.2 && t.zy >= 0.8 && t.zy <= 1.2);
        CHECK(t.has_channel_shift && fabs(t.channel_shift_intensity) <= 10);
        CHECK(t.has_brightness && t.brightness >= 0.5 && t.brightness <= 1.5);
        CHECK(!t.flip_vertical);
        flips += t.flip_horizontal;
    }
    CHECK(flips > 400 && flips < 600);
    /* Shifts of 1 or more are pixels, not fractions. */
    graft_image_data_generator px = {.width_shift_range = 3};
    for (int i = 0; i < 100; i++) {
        graft_transform t;
        graft_transform_random(&px, 150, 100, &a, &t);
        CHECK(fabs(t.ty) <= 3 && t.tx == 0 && t.zx == 1 && !t.has_brightness);
    }
    /* An explicit [lower, upper] zoom. */
    graft_image_data_generator z = {.zoom_range = {0.5f, 0.75f}};
    graft_transform t;
    graft_transform_random(&z, 10, 10, &a, &t);
    CHECK(t.zx >= 0.5 && t.zx <= 0.75 && t.zy >= 0.5 && t.zy <= 0.75);
}

static int calls;
static graft_status halve(void *ctx, float *x, int h, int w, int c)
{
    (void)ctx;
    calls++;
    for (int i = 0; i < h * w * c; i++) x[i] *= 0.5f;
    return GRAFT_OK;
}

static void test_standardize(void)
{
    float x[N];
    load_src(x);
    graft_image_data_generator g = {.preprocessing_function = halve, .rescale = 1.0f / 255,
                                    .samplewise_center = 1, .samplewise_std_normalization = 1};
    CHECK_OK(graft_standardize(&g, x, H, W, C));
    CHECK(calls == 1);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) mean += x[i];
    mean /= N;
    for (int i = 0; i < N; i++) var += (x[i] - mean) * (x[i] - mean);
    CHECK_NEAR(mean, 0, 1e-5);
    CHECK_NEAR(sqrt(var / N), 1, 1e-4);

    /* Order: preprocessing_function, then rescale, then featurewise. */
    float mean_c[3] = {0.1f, 0.2f, 0.3f}, std_c[3] = {2, 4, 8};
    graft_image_data_generator f = {.preprocessing_function = halve, .rescale = 0.01f,
                                    .featurewise_center = 1, .featurewise_std_normalization = 1,
                                    .mean = mean_c, .std = std_c};
    float px[3] = {100, 200, 40};
    CHECK_OK(graft_standardize(&f, px, 1, 1, 3));
    CHECK_NEAR(px[0], (0.5 - 0.1) / (2 + 1e-6), 1e-6);
    CHECK_NEAR(px[1], (1.0 - 0.2) / (4 + 1e-6), 1e-6);
    CHECK_NEAR(px[2], (0.2 - 0.3) / (8 + 1e-6), 1e-6);
}

int main(void)
{
    if (fixture_load(&fx, "tests/fixtures/data.bin")) return 1;
    RUN(test_affine_matches_keras);
    RUN(test_channel_shift_and_brightness);
    RUN(test_random_transform_ranges);
    RUN(test_standardize);
    fixture_free(&fx);
    return CHECK_SUMMARY();
}
