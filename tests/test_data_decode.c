/* Decoding and resizing against Pillow (tests/fixtures/data.bin from
 * scripts/gen_fixtures_data.py), and bad files that must fail cleanly. */
#include "check.h"
#include "data/data.h"
#include "data_util.h"
#include "fixture.h"

#include <jpeglib.h>

static fixture fx;
static char tmpdir[64];

/* A fixture array of bytes (stored as floats) back to bytes. */
static unsigned char *fx_bytes(const char *name, size_t *n) { return fixture_bytes(&fx, name, n); }

/* Number of values of img that differ from the fixture array by more than tol. */
static long diff_count(const graft_img *img, const fixture_array *a, int tol)
{
    if (!a) return -1;
    size_t n = (size_t)img->h * (size_t)img->w * (size_t)img->c;
    if (n != a->size) {
        fprintf(stderr, "  size %zu vs %zu\n", n, a->size);
        return -1;
    }
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        if (abs((int)img->px[i] - (int)a->data[i]) > tol) bad++;
    return bad;
}

static void test_resize_matches_pillow(void)
{
    const fixture_array *s = fixture_get(&fx, "src");
    if (!s) {
        CHECK(0);
        return;
    }
    graft_img src = {17, 23, 3, malloc(s->size)};
    for (size_t i = 0; i < s->size; i++) src.px[i] = (uint8_t)s->data[i];
    const char *names[] = {"nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"};
    const int sizes[][2] = {{9, 11}, {31, 40}, {17, 10}, {5, 23}, {40, 7}};
    for (int f = 0; f < 6; f++) {
        graft_interpolation interp;
        CHECK_OK(graft_interpolation_parse(names[f], &interp));
        for (int k = 0; k < 5; k++) {
            char key[64];
            snprintf(key, sizeof key, "resize_%s_%dx%d", names[f], sizes[k][0], sizes[k][1]);
            graft_img out;
            CHECK_OK(graft_img_resize(&src, sizes[k][0], sizes[k][1], interp, &out));
            long bad = diff_count(&out, fixture_get(&fx, key), 0);
            CHECK_MSG(bad == 0, "%s: %ld values differ from Pillow", key, bad);
            graft_img_free(&out);
        }
    }
    graft_img_free(&src);

    const fixture_array *g = fixture_get(&fx, "src_gray");
    graft_img gray = {17, 23, 1, malloc(g->size)};
    for (size_t i = 0; i < g->size; i++) gray.px[i] = (uint8_t)g->data[i];
    graft_img out;
    CHECK_OK(graft_img_resize(&gray, 9, 11, GRAFT_INTERP_BILINEAR, &out));
    CHECK(diff_count(&out, fixture_get(&fx, "resize_gray_bilinear_9x11"), 0) == 0);
    graft_img_free(&out);
    graft_img_free(&gray);

    /* A larger source: many taps, blocks of rows, passes in one direction. */
    const char *large[] = {"bilinear_29x37", "bilinear_131x97", "bilinear_61x40", "bilinear_20x83",
                           "bicubic_29x37",  "lanczos_45x120",  "box_7x5"};
    const fixture_array *sl = fixture_get(&fx, "src_large");
    CHECK(sl && sl->size == 61 * 83 * 3);
    graft_img big = {61, 83, 3, malloc(61 * 83 * 3)};
    for (size_t i = 0; sl && i < sl->size; i++) big.px[i] = (uint8_t)sl->data[i];
    for (int k = 0; sl && k < 7; k++) {
        char key[64], name[16];
        int h, w;
        CHECK(sscanf(large[k], "%15[a-z]_%dx%d", name, &h, &w) == 3);
        snprintf(key, sizeof key, "large_%s", large[k]);
        graft_interpolation interp;
        CHECK_OK(graft_interpolation_parse(name, &interp));
        CHECK_OK(graft_img_resize(&big, h, w, interp, &out));
        long bad = diff_count(&out, fixture_get(&fx, key), 0);
        CHECK_MSG(bad == 0, "%s: %ld values differ from Pillow", key, bad);
        graft_img_free(&out);
    }
    graft_img_free(&big);
    const fixture_array *gl = fixture_get(&fx, "src_large_gray");
    CHECK(gl && gl->size == 61 * 83);
    graft_img big_gray = {61, 83, 1, malloc(61 * 83)};
    for (size_t i = 0; gl && i < gl->size; i++) big_gray.px[i] = (uint8_t)gl->data[i];
    CHECK_OK(graft_img_resize(&big_gray, 29, 37, GRAFT_INTERP_BILINEAR, &out));
    CHECK(diff_count(&out, fixture_get(&fx, "large_gray_bilinear_29x37"), 0) == 0);
    graft_img_free(&out);
    graft_img_free(&big_gray);

    graft_interpolation i2;
    CHECK_OK(graft_interpolation_parse("area", &i2));
    CHECK(i2 == GRAFT_INTERP_BOX);
    CHECK(graft_interpolation_parse("cubic", &i2) == GRAFT_EINVAL);
}

static void test_formats_match_pillow(void)
{
    const char *files[] = {"png_rgb", "png_rgba", "png_la", "png_gray", "png_1bit",
                           "png_palette", "png_rgb16", "bmp_24", "bmp_8", "bmp_1",
                           "ppm_p6", "ppm_p5", "jpeg_rgb", "jpeg_gray", "jpeg_cmyk"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char key[64];
        size_t n;
        snprintf(key, sizeof key, "file_%s", files[k]);
        unsigned char *bytes = fx_bytes(key, &n);
        if (!bytes) {
            CHECK(0);
            continue;
        }
        const struct {
            int c;
            const char *suffix;
        } modes[] = {{3, "rgb"}, {1, "l"}, {4, "rgba"}};
        for (int m = 0; m < 3; m++) {
            snprintf(key, sizeof key, "pix_%s_%s", files[k], modes[m].suffix);
            if (modes[m].c == 4 && strcmp(files[k], "png_rgba") && strcmp(files[k], "png_la") &&
                strcmp(files[k], "png_palette"))
                continue;
            graft_decode_opts o = {.channels = modes[m].c};
            graft_img img;
            graft_status st = graft_img_decode_mem(bytes, n, files[k], &o, &img);
            CHECK_MSG(st == GRAFT_OK, "%s: %s", key, graft_last_error());
            if (st != GRAFT_OK) continue;
            long bad = diff_count(&img, fixture_get(&fx, key), 0);
            CHECK_MSG(bad == 0, "%s: %ld values differ from Pillow", key, bad);
            graft_img_free(&img);
        }
        free(bytes);
    }
    /* 16-bit grayscale keeps the high byte (Pillow would clip at 255). */
    size_t n;
    unsigned char *bytes = fx_bytes("file_png_gray16", &n);
    graft_decode_opts o = {.channels = 1};
    graft_img img;
    CHECK_OK(graft_img_decode_mem(bytes, n, "gray16", &o, &img));
    CHECK(diff_count(&img, fixture_get(&fx, "pix_png_gray16_l"), 0) == 0);
    graft_img_free(&img);
    free(bytes);
}

static const char *real_files[] = {"../shared/data/cats_and_dogs_filtered/train/cats/cat.0.jpg",
                                   "../shared/data/cats_and_dogs_filtered/train/cats/cat.1.jpg",
                                   "../shared/data/cats_and_dogs_filtered/train/dogs/dog.0.jpg"};

static void test_lesson_jpegs_match_keras_load_img(void)
{
    NEED_FILE(real_files[0]);
    for (int k = 0; k < 3; k++) {
        char key[64];
        snprintf(key, sizeof key, "real%d_size", k);
        const fixture_array *size = fixture_get(&fx, key);
        int h, w;
        CHECK_OK(graft_image_size(real_files[k], &h, &w));
        CHECK(size && h == (int)size->data[0] && w == (int)size->data[1]);

        float out[17 * 23 * 3];
        const char *kinds[] = {"nearest", "bilinear", "gray_nearest"};
        for (int m = 0; m < 3; m++) {
            graft_interpolation interp = m == 1 ? GRAFT_INTERP_BILINEAR : GRAFT_INTERP_NEAREST;
            CHECK_OK(graft_image_load(real_files[k], 17, 23, interp, m == 2, out));
            snprintf(key, sizeof key, "real%d_%s", k, kinds[m]);
            const fixture_array *ref = fixture_get(&fx, key);
            size_t count = 17 * 23 * (m == 2 ? 1 : 3);
            CHECK(ref && ref->size == count);
            long bad = 0;
            for (size_t i = 0; ref && i < count; i++) bad += out[i] != ref->data[i];
            CHECK_MSG(bad == 0, "%s: %ld values differ from Pillow", key, bad);
        }
    }
}

/* DCT scaling: decoded at 1/2..1/8, the 150x150 result stays close to the
 * full-size decode that Keras would use. */
static void test_dct_scaling(void)
{
    NEED_FILE(real_files[0]);
    int h, w;
    CHECK_OK(graft_image_size(real_files[0], &h, &w));
    graft_decode_opts full = {.channels = 3, .target_h = 150, .target_w = 150, .jpeg_full_decode = 1};
    graft_decode_opts fast = {.channels = 3, .target_h = 150, .target_w = 150};
    graft_decode_opts tiny = {.channels = 3, .target_h = 20, .target_w = 20};
    CHECK(graft_jpeg_scale_denom(w, h, &full) == 1);
    CHECK(graft_jpeg_scale_denom(1000, 800, &fast) == 4);  /* 250x200 */
    CHECK(graft_jpeg_scale_denom(500, 375, &fast) == 2);   /* 250x188 */
    CHECK(graft_jpeg_scale_denom(499, 297, &fast) == 1);   /* 250x149 would be too small */
    CHECK(graft_jpeg_scale_denom(4000, 3000, &fast) == 8);
    CHECK(graft_jpeg_scale_denom(4000, 3000, &tiny) == 8);
    graft_decode_opts limited = {.channels = 3, .jpeg_full_decode = 1, .max_pixels = 1000000};
    CHECK(graft_jpeg_scale_denom(4000, 3000, &limited) == 4); /* 1000x750 fits */
    CHECK(graft_jpeg_scale_denom(40000, 30000, &limited) == 0);

    graft_img a, b, ra, rb;
    tiny.jpeg_full_decode = 0;
    CHECK_OK(graft_img_decode(real_files[0], &full, &a));
    CHECK_OK(graft_img_decode(real_files[0], &tiny, &b));
    int d = graft_jpeg_scale_denom(w, h, &tiny);
    CHECK(d > 1);
    CHECK(b.w == (w + d - 1) / d && b.h == (h + d - 1) / d);
    CHECK_OK(graft_img_resize(&a, 20, 20, GRAFT_INTERP_BILINEAR, &ra));
    CHECK_OK(graft_img_resize(&b, 20, 20, GRAFT_INTERP_BILINEAR, &rb));
    double mad = 0;
    for (int i = 0; i < 20 * 20 * 3; i++) mad += fabs((double)ra.px[i] - rb.px[i]);
    mad /= 20 * 20 * 3;
    CHECK_MSG(mad < 6, "mean abs difference %.2f", mad);

    /* Full decode + nearest to 150x150 is Keras's pixels exactly. */
    graft_img r150;
    CHECK_OK(graft_img_resize(&a, 150, 150, GRAFT_INTERP_NEAREST, &r150));
    double sum = 0;
    for (int i = 0; i < 150 * 150 * 3; i++) sum += r150.px[i];
    const fixture_array *ref = fixture_get(&fx, "real0_150_nearest_sum");
    CHECK(ref && sum == ref->data[0]);
    graft_img_free(&a);
    graft_img_free(&b);
    graft_img_free(&ra);
    graft_img_free(&rb);
    graft_img_free(&r150);
}

/* A gray JPEG of any size, written with libjpeg (rows of a gradient). */
static int write_jpeg(const char *path, int w, int h)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 50, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc((size_t)w);
    for (int x = 0; x < w; x++) row[x] = (unsigned char)(x * 255 / (w > 1 ? w - 1 : 1));
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    return fclose(f);
}

static void test_huge_and_tiny_images(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/huge.jpg", tmpdir);
    CHECK(write_jpeg(path, 20000, 20000) == 0);
    graft_decode_opts o = {.channels = 3, .target_h = 150, .target_w = 150};
    graft_img img;
    CHECK_OK(graft_img_decode(path, &o, &img));
    CHECK(img.w == 2500 && img.h == 2500); /* decoded at 1/8: 19 MB, not 1.2 GB */
    graft_img_free(&img);
    /* At full size it would exceed the pixel limit even at 1/8 of 1e6. */
    graft_decode_opts strict = {.channels = 3, .jpeg_full_decode = 1, .max_pixels = 1000000};
    graft_status st = graft_img_decode(path, &strict, &img);
    CHECK(st == GRAFT_ENOMEM && strstr(graft_last_error(), "huge.jpg"));
    float *out = malloc(sizeof(float) * 150 * 150 * 3);
    /* load_img decodes at full size: 400 Mpx is over the default limit. */
    st = graft_image_load(path, 150, 150, GRAFT_INTERP_NEAREST, 0, out);
    CHECK(st == GRAFT_OK); /* decoded at 1/4 to fit the default limit */
    unlink(path);

    snprintf(path, sizeof path, "%s/one.jpg", tmpdir);
    CHECK(write_jpeg(path, 1, 1) == 0);
    CHECK_OK(graft_image_load(path, 150, 150, GRAFT_INTERP_BILINEAR, 0, out));
    CHECK(out[0] == out[150 * 150 * 3 - 1]);
    unlink(path);
    free(out);
}

/* Many files at once on two threads: each image as graft_image_load gives
 * it, a bad file flagged with a message naming it, the others unharmed. */
static void test_load_many(void)
{
    enum { N = 7, S = 40 };
    char paths[N][128];
    const char *list[N];
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/many%d.jpg", tmpdir, i);
        list[i] = paths[i];
        if (i == 3) CHECK(write_bytes(paths[i], "not an image", 12) == 0);
        else CHECK(write_jpeg(paths[i], 30 + 17 * i, 90 - 9 * i) == 0);
    }
    size_t each = (size_t)S * S * 3;
    float *x = malloc(N * each * sizeof(float)), *one = malloc(each * sizeof(float));
    int ok[N];
    char(*why)[GRAFT_WHY_LEN] = malloc(N * sizeof *why);
    int threads = graft_threads_get();
    graft_threads_set(2);
    CHECK_OK(graft_image_load_many(list, N, S, S, GRAFT_INTERP_BILINEAR, 0, 1, x, ok, why));
    graft_threads_set(threads);
    for (int i = 0; i < N; i++) {
        CHECK_MSG(ok[i] == (i != 3), "file %d: ok %d", i, ok[i]);
        if (i == 3) {
            CHECK_MSG(strstr(why[i], "many3.jpg"), "%s", why[i]);
            continue;
        }
        CHECK_MSG(why[i][0] == '\0', "%s", why[i]);
        CHECK_OK(graft_image_load(list[i], S, S, GRAFT_INTERP_BILINEAR, 0, one));
        CHECK_MSG(memcmp(one, x + i * each, each * sizeof(float)) == 0, "image %d differs", i);
    }
    /* Without full decoding, a JPEG four times the size is read at 1/4, as
     * a flow reads it: its decode at the target, then the resize. */
    CHECK(write_jpeg(paths[0], 4 * S + 9, 4 * S + 3) == 0);
    CHECK_OK(graft_image_load_many(list, 1, S, S, GRAFT_INTERP_BILINEAR, 0, 0, x, ok, NULL));
    graft_decode_opts o = {.channels = 3, .target_h = S, .target_w = S};
    graft_img img, sized;
    CHECK_OK(graft_img_decode(paths[0], &o, &img));
    CHECK(img.w == S + 3 && img.h == S + 1); /* 1/4, rounded up */
    CHECK_OK(graft_img_resize(&img, S, S, GRAFT_INTERP_BILINEAR, &sized));
    long differ = 0;
    for (size_t i = 0; i < each; i++) differ += x[i] != (float)sized.px[i];
    CHECK_MSG(differ == 0, "%ld values differ from the reduced decode", differ);
    graft_img_free(&img);
    graft_img_free(&sized);
    /* ... and with it, at full size, as graft_image_load. */
    CHECK_OK(graft_image_load_many(list, 1, S, S, GRAFT_INTERP_BILINEAR, 0, 1, x, ok, NULL));
    CHECK_OK(graft_image_load(list[0], S, S, GRAFT_INTERP_BILINEAR, 0, one));
    CHECK(memcmp(one, x, each * sizeof(float)) == 0);
    /* Nothing to load is no error; a size of 0 is. */
    CHECK_OK(graft_image_load_many(NULL, 0, S, S, GRAFT_INTERP_BILINEAR, 0, 1, NULL, NULL, NULL));
    CHECK(graft_image_load_many(list, N, 0, S, GRAFT_INTERP_BILINEAR, 0, 1, x, ok, NULL) == GRAFT_EINVAL);
    for (int i = 0; i < N; i++) unlink(paths[i]);
    free(x);
    free(one);
    free(why);
}

static graft_status decode_bytes(const void *b, size_t n, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (write_bytes(path, b, n)) return GRAFT_EIO;
    graft_decode_opts o = {.channels = 3, .target_h = 32, .target_w = 32};
    graft_img img;
    graft_status st = graft_img_decode(path, &o, &img);
    if (st == GRAFT_OK) graft_img_free(&img);
    else if (!strstr(graft_last_error(), name)) {
        fprintf(stderr, "  message does not name the file: %s\n", graft_last_error());
        st = GRAFT_OK; /* makes the caller's check fail */
    }
    unlink(path);
    return st;
}

static void test_bad_files_fail_cleanly(void)
{
    CHECK(decode_bytes("", 0, "empty.jpg") == GRAFT_EFORMAT);
    const char *text = "this is not an image\n";
    CHECK(decode_bytes(text, strlen(text), "text.jpg") == GRAFT_EFORMAT);

    size_t n;
    unsigned char *jpg = read_bytes(real_files[1], &n);
    if (jpg) {
        CHECK(decode_bytes(jpg, n, "whole.jpg") == GRAFT_OK);
        CHECK(decode_bytes(jpg, n / 2, "half.jpg") == GRAFT_EFORMAT);
        CHECK(decode_bytes(jpg, 200, "header_only.jpg") == GRAFT_EFORMAT);
        CHECK(decode_bytes(jpg, 3, "magic_only.jpg") == GRAFT_EFORMAT);
        /* Garbage in the entropy-coded data: decodes (as Pillow does) or fails, never crashes. */
        for (size_t i = n / 3; i < n / 3 + 64 && i < n; i++) jpg[i] ^= 0x5A;
        graft_status st = decode_bytes(jpg, n, "scrambled.jpg");
        CHECK(st == GRAFT_OK || st == GRAFT_EFORMAT);
        free(jpg);
    } else {
        CHECK_MSG(access(real_files[1], R_OK) != 0, "%s is here but was not read", real_files[1]);
        printf("  skip: the lesson's JPEG cut short and scrambled: %s is absent\n", real_files[1]);
    }

    unsigned char *png = fx_bytes("file_png_rgb", &n);
    CHECK(decode_bytes(png, n, "good.png") == GRAFT_OK);
    /* The byte after IHDR's CRC is IDAT's length; damage the IDAT payload. */
    png[8 + 25 + 8 + 2] ^= 0xFF;
    CHECK(decode_bytes(png, n, "badcrc.png") == GRAFT_EFORMAT);
    png[8 + 25 + 8 + 2] ^= 0xFF;
    CHECK(decode_bytes(png, n - 20, "truncated.png") == GRAFT_EFORMAT);
    png[23] ^= 0x01; /* IHDR height: the header's CRC no longer matches */
    CHECK(decode_bytes(png, n, "badheader.png") == GRAFT_EFORMAT);
    free(png);

    /* A 20000x20000 PNG header: refused before any pixel memory is taken. */
    unsigned char big[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                           0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    uint32_t crc = 0xFFFFFFFFu;
    for (int i = 12; i < 29; i++) {
        crc ^= big[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
    }
    crc = ~crc;
    big[29] = (unsigned char)(crc >> 24);
    big[30] = (unsigned char)(crc >> 16);
    big[31] = (unsigned char)(crc >> 8);
    big[32] = (unsigned char)crc;
    CHECK(decode_bytes(big, sizeof big, "huge.png") == GRAFT_ENOMEM);
    CHECK(strstr(graft_last_error(), "limit") != NULL);

    /* A TIFF and a GIF cut off after their headers (tests/test_data_formats.c
     * has the formats themselves). */
    CHECK(decode_bytes("II*\0\x08\0\0\0", 8, "scan.tif") == GRAFT_EFORMAT);
    CHECK(strstr(graft_last_error(), "TIFF") != NULL);
    CHECK(decode_bytes("GIF89a\1\0\1\0", 10, "anim.jpg") == GRAFT_EFORMAT);

    unsigned char *bmp = fx_bytes("file_bmp_24", &n);
    CHECK(decode_bytes(bmp, n - 7, "short.bmp") == GRAFT_EFORMAT);
    bmp[30] = 1; /* BI_RLE8 */
    CHECK(decode_bytes(bmp, n, "rle.bmp") == GRAFT_EUNSUPPORTED);
    free(bmp);
    CHECK(decode_bytes("P6\n4 4\n255\n\1\2\3", 14, "short.ppm") == GRAFT_EFORMAT);
    CHECK(decode_bytes("P3 2 1 255 1 2 3 4 5 6", 22, "plain.ppm") == GRAFT_OK);

    char link[128];
    snprintf(link, sizeof link, "%s/dangling.jpg", tmpdir);
    CHECK(symlink("/nonexistent/graft/file.jpg", link) == 0);
    graft_decode_opts o = {.channels = 3};
    graft_img img;
    CHECK(graft_img_decode(link, &o, &img) == GRAFT_ENOTFOUND);
    CHECK(strstr(graft_last_error(), "dangling.jpg") != NULL);
    unlink(link);
}

int main(void)
{
    if (fixture_load(&fx, "tests/fixtures/data.bin")) return 1;
    strcpy(tmpdir, "/tmp/graft_decode_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_resize_matches_pillow);
    RUN(test_formats_match_pillow);
    RUN(test_lesson_jpegs_match_keras_load_img);
    RUN(test_dct_scaling);
    RUN(test_huge_and_tiny_images);
    RUN(test_load_many);
    RUN(test_bad_files_fail_cleanly);
    remove_tree(tmpdir);
    fixture_free(&fx);
    return CHECK_SUMMARY();
}
