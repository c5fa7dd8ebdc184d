/* TIFF, GIF and WebP against Pillow (tests/fixtures/formats.bin from
 * scripts/gen_fixtures_formats.py): every file to RGB, L and RGBA exactly as
 * Pillow's convert gives; truncated and damaged files fail cleanly naming
 * the file; oversized headers are refused before anything is allocated;
 * the directory walker lists the new extensions. */
#include "check.h"
#include "data/data.h"
#include "data_util.h"
#include "fixture.h"

#include <graft.h>

static fixture fx;
static char tmpdir[64];

static unsigned char *fx_bytes(const char *name, size_t *n) { return fixture_bytes(&fx, name, n); }

static long diff_count(const graft_img *img, const fixture_array *a)
{
    if (!a) return -1;
    size_t n = (size_t)img->h * (size_t)img->w * (size_t)img->c;
    if (n != a->size || (a->rank >= 2 && (a->dim[0] != img->h || a->dim[1] != img->w))) {
        fprintf(stderr, "  %dx%dx%d vs %zu values\n", img->h, img->w, img->c, a->size);
        return -1;
    }
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        if (img->px[i] != (int)a->data[i]) bad++;
    return bad;
}

/* The fixture's file names, space-separated. */
static int fixture_names(char names[64][48])
{
    size_t n;
    unsigned char *b = fx_bytes("names", &n);
    if (!b) return 0;
    b[n] = '\0';
    int k = 0;
    for (char *tok = strtok((char *)b, " "); tok && k < 64; tok = strtok(NULL, " "))
        snprintf(names[k++], 48, "%s", tok);
    free(b);
    return k;
}

static void test_match_pillow(void)
{
    char names[64][48];
    int n = fixture_names(names);
    CHECK(n >= 30);
    int seen[3] = {0};
    for (int i = 0; i < n; i++) {
        char key[96];
        size_t len;
        snprintf(key, sizeof key, "file_%.47s", names[i]);
        unsigned char *file = fx_bytes(key, &len);
        CHECK(file != NULL);
        if (!file) continue;
        const struct {
            int c;
            const char *suffix;
        } modes[] = {{3, "rgb"}, {1, "l"}, {4, "rgba"}};
        for (int m = 0; m < 3; m++) {
            graft_decode_opts o = {.channels = modes[m].c};
            graft_img img;
            graft_status st = graft_img_decode_mem(file, len, names[i], &o, &img);
            CHECK_MSG(st == GRAFT_OK, "%s: %s", names[i], graft_last_error());
            if (st != GRAFT_OK) continue;
            snprintf(key, sizeof key, "pix_%.47s_%s", names[i], modes[m].suffix);
            long bad = diff_count(&img, fixture_get(&fx, key));
            CHECK_MSG(bad == 0, "%s: %ld values differ from Pillow", key, bad);
            graft_img_free(&img);
        }
        graft_img_format f = graft_img_sniff(file, len);
        seen[0] += f == GRAFT_FMT_TIFF;
        seen[1] += f == GRAFT_FMT_GIF;
        seen[2] += f == GRAFT_FMT_WEBP;
        free(file);
    }
    CHECK(seen[0] >= 15 && seen[1] >= 6 && seen[2] >= 4);
}

/* Every prefix of a file, and bytes flipped through it: an error naming the
 * file or an image, never a crash (the sanitizer builds watch the memory). */
static void test_truncated_and_damaged(void)
{
    const char *files[] = {"tif_rgb_lzw",    "tif_tiled", "tif_planar", "tif_palette",
                           "gif_interlaced", "gif_trans", "webp_lossy", "webp_rgba_lossless"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char key[64];
        size_t len;
        snprintf(key, sizeof key, "file_%s", files[k]);
        unsigned char *b = fx_bytes(key, &len);
        CHECK(b != NULL);
        if (!b) continue;
        graft_decode_opts o = {.channels = 3};
        int failed = 0, named = 0;
        for (size_t cut = 0; cut < len; cut += 1 + len / 97) {
            graft_img img;
            graft_status st = graft_img_decode_mem(b, cut, files[k], &o, &img);
            if (st == GRAFT_OK) {
                graft_img_free(&img);
                continue;
            }
            failed++;
            named += strstr(graft_last_error(), files[k]) != NULL;
        }
        CHECK_MSG(failed > 0 && named == failed, "%s: %d of %d failures name the file", files[k],
                  named, failed);
        for (size_t at = 0; at < len; at += 1 + len / 61) {
            unsigned char *d = malloc(len);
            memcpy(d, b, len);
            d[at] ^= 0xA5;
            graft_img img;
            if (graft_img_decode_mem(d, len, files[k], &o, &img) == GRAFT_OK) graft_img_free(&img);
            free(d);
        }
        free(b);
    }
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Headers that promise far more pixels than the limit are refused with
 * GRAFT_ENOMEM from the header alone (the data is not even there). */
static void test_bombs_refused(void)
{
    graft_decode_opts o = {.channels = 3};
    graft_img img;
    /* A little-endian TIFF, 100000 x 100000 8-bit gray, one tiny strip. */
    unsigned char tif[8 + 2 + 8 * 12 + 4 + 4] = "II*";
    put32(tif + 4, 8);
    put16(tif + 8, 8);
    const unsigned tags[8][3] = {{256, 4, 100000}, {257, 4, 100000}, {258, 3, 8},      {259, 3, 1},
                                 {262, 3, 1},      {273, 4, 110},    {278, 4, 100000}, {279, 4, 4}};
    for (int i = 0; i < 8; i++) {
        unsigned char *e = tif + 10 + 12 * i;
        put16(e, tags[i][0]);
        put16(e + 2, tags[i][1]);
        put32(e + 4, 1);
        put32(e + 8, tags[i][2]);
    }
    CHECK(graft_img_decode_mem(tif, sizeof tif, "bomb.tif", &o, &img) == GRAFT_ENOMEM);
    CHECK(strstr(graft_last_error(), "bomb.tif") && strstr(graft_last_error(), "limit"));

    /* A GIF whose screen is 65535 x 65535. */
    size_t len;
    unsigned char *gif = fx_bytes("file_gif_plain", &len);
    CHECK(gif != NULL);
    if (gif) {
        put16(gif + 6, 65535);
        put16(gif + 8, 65535);
        CHECK(graft_img_decode_mem(gif, len, "bomb.gif", &o, &img) == GRAFT_ENOMEM);
        /* Within the default limit but not a smaller one. */
        put16(gif + 6, 300);
        put16(gif + 8, 200);
        graft_decode_opts small = {.channels = 3, .max_pixels = 50000};
        CHECK(graft_img_decode_mem(gif, len, "big.gif", &small, &img) == GRAFT_ENOMEM);
        CHECK(graft_img_decode_mem(gif, len, "big.gif", &o, &img) == GRAFT_OK);
        if (img.px) {
            CHECK(img.w == 300 && img.h == 200);
            graft_img_free(&img);
        }
        free(gif);
    }
    /* A lossless WebP (VP8L) header of 16384 x 16384. */
    unsigned char webp[34] = {'R', 'I', 'F', 'F', 26, 0, 0, 0,    'W',  'E',  'B',  'P', 'V',
                              'P', '8', 'L', 14,  0,  0, 0, 0x2f, 0xff, 0xff, 0xff, 0x0f};
    CHECK(graft_img_decode_mem(webp, sizeof webp, "bomb.webp", &o, &img) == GRAFT_ENOMEM);
    CHECK(strstr(graft_last_error(), "16384x16384") != NULL);
}

/* The extensions Keras reads (and WebP), listed by the folder walker. */
static void test_directory_lists_formats(void)
{
    const char *kinds[][2] = {{"a.tif", "file_tif_rgb"},
                              {"b.tiff", "file_tif_gray_deflate"},
                              {"c.gif", "file_gif_trans"},
                              {"d.webp", "file_webp_lossless"},
                              {"e.txt", "file_tif_rgb"}};
    for (int i = 0; i < 5; i++) {
        size_t len;
        unsigned char *b = fx_bytes(kinds[i][1], &len);
        char path[160];
        snprintf(path, sizeof path, "%s/%s", tmpdir, kinds[i][0]);
        CHECK(b && write_bytes(path, b, len) == 0);
        free(b);
    }
    char **paths = NULL;
    int n = 0;
    CHECK_OK(graft_image_list(tmpdir, &paths, &n));
    CHECK_MSG(n == 4, "%d images listed", n);
    for (int i = 0; i < n; i++) {
        float px[13 * 11 * 3];
        CHECK_MSG(graft_image_load(paths[i], 11, 13, GRAFT_INTERP_NEAREST, 0, px) == GRAFT_OK, "%s",
                  graft_last_error());
        int h = 0, w = 0;
        CHECK_OK(graft_image_size(paths[i], &h, &w));
        CHECK(h == 11 && w == 13);
    }
    graft_image_list_free(paths, n);
}

int main(void)
{
    if (fixture_load(&fx, "tests/fixtures/formats.bin")) return 1;
    strcpy(tmpdir, "/tmp/graft_formats_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_match_pillow);
    RUN(test_truncated_and_damaged);
    RUN(test_bombs_refused);
    RUN(test_directory_lists_formats);
    remove_tree(tmpdir);
    fixture_free(&fx);
    return CHECK_SUMMARY();
}
