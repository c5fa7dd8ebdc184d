/* flow_from_directory: Keras's listing, labels and splits on the lesson's
 * dataset and on small trees made here; determinism across worker counts;
 * bad files skipped (or fatal with strict). */
#include "check.h"
#include "data/data.h"
#include "data_util.h"

#define LESSON "../shared/data/cats_and_dogs_filtered"

static char tmp[64];

/* A small P6 image whose pixels depend on `seed`. */
static int write_ppm(const char *path, int w, int h, unsigned seed)
{
    char head[64];
    int n = snprintf(head, sizeof head, "P6\n%d %d\n255\n", w, h);
    size_t size = (size_t)n + (size_t)w * h * 3;
    unsigned char *b = malloc(size);
    memcpy(b, head, (size_t)n);
    for (size_t i = (size_t)n; i < size; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (unsigned char)(seed >> 16);
    }
    int r = write_bytes(path, b, size);
    free(b);
    return r;
}

static void mkpath(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    mkdir(p, 0755);
}

static void ppm(const char *rel, int w, int h, unsigned seed)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    if (write_ppm(p, w, h, seed)) fprintf(stderr, "  cannot write %s\n", p);
}

static const char *sub(const char *rel)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    return p;
}

/* A tree of 3 classes with nested folders and names that sort tricky. */
static void make_small_tree(void)
{
    mkpath("small");
    mkpath("small/b_class");
    mkpath("small/a_class");
    mkpath("small/c_class");
    mkpath("small/a_class/x");
    mkpath("small/a_class/x y");
    mkpath("small/a_class/x/deep");
    ppm("small/a_class/img10.ppm", 20, 30, 1);
    ppm("small/a_class/img2.ppm", 31, 17, 2);
    ppm("small/a_class/x/in_x.ppm", 8, 8, 3);
    ppm("small/a_class/x y/in_xy.PPM", 9, 9, 4);
    ppm("small/a_class/x/deep/d.ppm", 40, 40, 5);
    write_bytes(sub("small/a_class/notes.txt"), "hello", 5);
    write_bytes(sub("small/a_class/anim.svg"), "<svg/>", 6);
    for (int i = 0; i < 7; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "small/b_class/b%d.ppm", i);
        ppm(rel, 16 + i, 12 + 2 * i, 100 + (unsigned)i);
    }
    for (int i = 0; i < 5; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "small/c_class/c%d.ppm", i);
        ppm(rel, 25, 19, 200 + (unsigned)i);
    }
}

static graft_source *open_flow(const char *dir, const graft_image_data_generator *g,
                               graft_flow_cfg cfg)
{
    cfg.quiet = 1;
    graft_source *s = NULL;
    graft_status st = graft_flow_from_directory(dir, g, &cfg, &s);
    CHECK_MSG(st == GRAFT_OK, "%s", graft_last_error());
    return s;
}

static void test_lesson_listing(void)
{
    NEED_FILE(LESSON "/train/cats/cat.0.jpg");
    graft_flow_cfg cfg = {.target_size = {150, 150}, .class_mode = GRAFT_CLASS_BINARY};
    graft_source *s = NULL;
    capture c;
    capture_begin(&c, 1);
    graft_status st = graft_flow_from_directory(LESSON "/train", NULL, &cfg, &s);
    char *out = capture_end(&c);
    CHECK_OK(st);
    CHECK_MSG(strcmp(out, "Found 2000 images belonging to 2 classes.\n") == 0, "printed '%s'", out);
    free(out);
    if (!s) return;
    CHECK(graft_flow_samples(s) == 2000 && graft_flow_num_classes(s) == 2);
    CHECK(strcmp(graft_flow_class_name(s, 0), "cats") == 0);
    CHECK(strcmp(graft_flow_class_name(s, 1), "dogs") == 0);
    CHECK(graft_flow_class_index(s, "dogs") == 1 && graft_flow_class_index(s, "birds") == -1);
    CHECK(strcmp(graft_flow_filename(s, 0), "cats/cat.0.jpg") == 0);
    CHECK(strcmp(graft_flow_filename(s, 2), "cats/cat.10.jpg") == 0);
    CHECK(strcmp(graft_flow_filename(s, 1000), "dogs/dog.0.jpg") == 0);
    int sorted = 1;
    for (int i = 0; i < 2000; i++) {
        CHECK(graft_flow_class_of(s, i) == (i >= 1000));
        if (i && i != 1000 && strcmp(graft_flow_filename(s, i - 1), graft_flow_filename(s, i)) >= 0)
            sorted = 0;
    }
    CHECK(sorted);
    CHECK(s->length == 63 && s->batch_size == 32 && s->y_dim == 1);
    CHECK(s->x_shape.rank == 3 && s->x_shape.dim[0] == 150 && s->x_shape.dim[1] == 150 &&
          s->x_shape.dim[2] == 3);
    s->free(s);

    s = open_flow(LESSON "/validation", NULL, cfg);
    CHECK(s && graft_flow_samples(s) == 1000);
    if (s) s->free(s);
}

/* One whole pass over the 2000 lesson JPEGs at 150x150: shapes, labels,
 * every file exactly once; then the next pass is another permutation. */
static void test_lesson_full_pass(void)
{
    NEED_FILE(LESSON "/train/cats/cat.0.jpg");
    graft_image_data_generator g = {.rescale = 1.0f / 255};
    graft_flow_cfg cfg = {.target_size = {150, 150}, .class_mode = GRAFT_CLASS_BINARY, .seed = 7};
    graft_source *s = open_flow(LESSON "/train", &g, cfg);
    if (!s) return;
    size_t xs = 150 * 150 * 3;
    float *x = malloc(sizeof(float) * xs * 32), y[32];
    int *seen = calloc(2000, sizeof(int)), idx[32], first[32], total = 0, n = 0;
    int in_range = 1, labels_ok = 1;
    for (int b = 0; b < s->length; b++) {
        CHECK_OK(s->next(s, x, y, &n));
        CHECK(n == (b == s->length - 1 ? 2000 - 62 * 32 : 32));
        CHECK(graft_flow_last_indices(s, idx) == n);
        if (b == 0) memcpy(first, idx, sizeof first);
        for (int i = 0; i < n; i++) {
            seen[idx[i]]++;
            if (y[i] != (float)graft_flow_class_of(s, idx[i])) labels_ok = 0;
        }
        for (size_t i = 0; i < xs * (size_t)n; i++)
            if (!(x[i] >= 0 && x[i] <= 1)) in_range = 0;
        total += n;
    }
    CHECK(total == 2000 && labels_ok && in_range);
    int once = 1;
    for (int i = 0; i < 2000; i++) once &= seen[i] == 1;
    CHECK(once);
    CHECK(graft_flow_skipped(s) == 0);
    CHECK_OK(s->next(s, x, y, &n));
    CHECK(n == 32 && graft_flow_last_indices(s, idx) == 32);
    CHECK(memcmp(idx, first, sizeof idx) != 0);
    free(seen);
    free(x);
    s->free(s);
}

static void test_listing_order_and_split(void)
{
    graft_flow_cfg cfg = {.target_size = {10, 12}, .class_mode = GRAFT_CLASS_SPARSE, .no_shuffle = 1,
                          .batch_size = 4};
    graft_source *s = open_flow(sub("small"), NULL, cfg);
    if (!s) return;
    /* Keras: folders sorted by path ("x y" before "x/deep"), files by name. */
    const char *want[] = {"a_class/img10.ppm", "a_class/img2.ppm", "a_class/x/in_x.ppm",
                          "a_class/x y/in_xy.PPM", "a_class/x/deep/d.ppm"};
    CHECK(graft_flow_samples(s) == 17 && graft_flow_num_classes(s) == 3);
    for (int i = 0; i < 5; i++)
        CHECK_MSG(strcmp(graft_flow_filename(s, i), want[i]) == 0, "%d: %s", i,
                  graft_flow_filename(s, i));
    CHECK(strcmp(graft_flow_filename(s, 5), "b_class/b0.ppm") == 0);
    float x[4 * 10 * 12 * 3], y[4];
    int n, idx[4];
    CHECK_OK(s->next(s, x, y, &n));
    graft_flow_last_indices(s, idx);
    CHECK(n == 4 && idx[0] == 0 && idx[3] == 3 && y[3] == 0);
    s->free(s);

    /* validation_split: the first int(0.3 * n) files of each class validate. */
    graft_image_data_generator g = {.validation_split = 0.3f};
    cfg.subset = GRAFT_SUBSET_VALIDATION;
    graft_source *v = open_flow(sub("small"), &g, cfg);
    cfg.subset = GRAFT_SUBSET_TRAINING;
    graft_source *t = open_flow(sub("small"), &g, cfg);
    if (!v || !t) return;
    CHECK(graft_flow_samples(v) == 1 + 2 + 1); /* int(.3*5), int(.3*7), int(.3*5) */
    CHECK(graft_flow_samples(t) == 17 - 4);
    CHECK(strcmp(graft_flow_filename(v, 0), "a_class/img10.ppm") == 0);
    int disjoint = 1;
    for (int i = 0; i < graft_flow_samples(v); i++)
        for (int j = 0; j < graft_flow_samples(t); j++)
            if (!strcmp(graft_flow_filename(v, i), graft_flow_filename(t, j))) disjoint = 0;
    CHECK(disjoint);
    v->free(v);
    t->free(t);
    cfg.subset = GRAFT_SUBSET_VALIDATION;
    graft_source *bad = NULL;
    cfg.quiet = 1;
    CHECK(graft_flow_from_directory(sub("small"), NULL, &cfg, &bad) == GRAFT_EINVAL);
}

/* Linked folders are walked only with follow_links, and a link back to an
 * ancestor does not make the walk loop. */
static void test_follow_links(void)
{
    mkpath("links");
    mkpath("links/k");
    mkpath("elsewhere");
    ppm("links/k/own.ppm", 5, 5, 1);
    ppm("elsewhere/far.ppm", 5, 5, 2);
    char target[512];
    snprintf(target, sizeof target, "%s", sub("elsewhere"));
    CHECK(symlink(target, sub("links/k/far")) == 0);
    snprintf(target, sizeof target, "%s", sub("links"));
    CHECK(symlink(target, sub("links/k/loop")) == 0);
    graft_flow_cfg cfg = {.target_size = {4, 4}};
    graft_source *s = open_flow(sub("links"), NULL, cfg);
    CHECK(s && graft_flow_samples(s) == 1);
    if (s) s->free(s);
    cfg.follow_links = 1;
    s = open_flow(sub("links"), NULL, cfg);
    /* own.ppm, far/far.ppm, and loop/k/... is links/k again: not walked twice. */
    CHECK(s && graft_flow_samples(s) == 2);
    if (s) {
        CHECK(strcmp(graft_flow_filename(s, 1), "k/far/far.ppm") == 0);
        s->free(s);
    }
}

static void test_class_modes(void)
{
    const char *order[] = {"c_class", "a_class"};
    graft_flow_cfg cfg = {.target_size = {8, 8}, .classes = order, .n_classes = 2, .no_shuffle = 1,
                          .batch_size = 16};
    graft_source *s = open_flow(sub("small"), NULL, cfg);
    if (!s) return;
    CHECK(graft_flow_samples(s) == 10 && s->y_dim == 2);
    float x[16 * 8 * 8 * 3], y[16 * 8 * 8 * 3];
    int n;
    CHECK_OK(s->next(s, x, y, &n));
    CHECK(n == 10);
    CHECK(y[0] == 1 && y[1] == 0 && y[2 * 5] == 0 && y[2 * 5 + 1] == 1);
    s->free(s);

    cfg.class_mode = GRAFT_CLASS_INPUT;
    cfg.color_mode = GRAFT_COLOR_GRAYSCALE;
    s = open_flow(sub("small"), NULL, cfg);
    if (!s) return;
    CHECK(s->y_dim == 64 && s->x_shape.dim[2] == 1);
    CHECK_OK(s->next(s, x, y, &n));
    CHECK(n == 10 && memcmp(x, y, sizeof(float) * 64 * 10) == 0);
    s->free(s);

    cfg.class_mode = GRAFT_CLASS_NONE;
    cfg.color_mode = GRAFT_COLOR_RGBA;
    s = open_flow(sub("small"), NULL, cfg);
    if (!s) return;
    CHECK(s->y_dim == 0 && s->x_shape.dim[2] == 4);
    CHECK_OK(s->next(s, x, NULL, &n));
    CHECK(n == 10 && x[3] == 255);
    s->free(s);

    cfg.classes = NULL;
    cfg.class_mode = GRAFT_CLASS_BINARY;
    graft_source *bad = NULL;
    cfg.quiet = 1;
    CHECK(graft_flow_from_directory(sub("small"), NULL, &cfg, &bad) == GRAFT_EINVAL);
}

/* Two passes of batches as bytes. */
static float *run_passes(int workers, int depth, uint64_t seed, size_t *len)
{
    graft_image_data_generator g = {.rotation_range = 40, .width_shift_range = 0.2f,
                                    .height_shift_range = 0.2f, .shear_range = 0.2f,
                                    .zoom_range = {0.2f, 0}, .horizontal_flip = 1,
                                    .brightness_range = {0.8f, 1.2f}, .rescale = 1.0f / 255};
    graft_flow_cfg cfg = {.target_size = {12, 14}, .batch_size = 5, .seed = seed,
                          .workers = workers, .queue_depth = depth};
    graft_source *s = open_flow(sub("small"), &g, cfg);
    if (!s) return NULL;
    size_t per = 5 * (12 * 14 * 3 + 3);
    float *all = calloc(per * 2 * (size_t)s->length, sizeof(float));
    for (int b = 0; b < 2 * s->length; b++) {
        float *x = all + per * (size_t)b, *y = x + 5 * 12 * 14 * 3;
        int n;
        CHECK_OK(s->next(s, x, y, &n));
    }
    *len = per * 2 * (size_t)s->length;
    s->free(s);
    return all;
}

static void test_same_seed_same_batches(void)
{
    size_t la, lb, lc;
    float *a = run_passes(1, 1, 42, &la);
    float *b = run_passes(4, 3, 42, &lb);
    float *c = run_passes(2, 2, 43, &lc);
    CHECK(a && b && c && la == lb && la == lc);
    if (a && b && c) {
        CHECK(memcmp(a, b, la * sizeof(float)) == 0);
        CHECK(memcmp(a, c, la * sizeof(float)) != 0);
    }
    free(a);
    free(b);
    free(c);
}

static void make_bad_tree(void)
{
    mkpath("bad");
    mkpath("bad/good");
    mkpath("bad/broken");
    mkpath("bad/empty");
    for (int i = 0; i < 4; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "bad/good/g%d.ppm", i);
        ppm(rel, 30, 20, 300 + (unsigned)i);
    }
    ppm("bad/good/tiny.ppm", 1, 1, 9);
    write_bytes(sub("bad/broken/zero.jpg"), "", 0);
    write_bytes(sub("bad/broken/text.jpg"), "just some text\n", 15);
    size_t n;
    unsigned char *jpg = read_bytes(LESSON "/train/cats/cat.2.jpg", &n);
    if (jpg) {
        write_bytes(sub("bad/broken/truncated.jpg"), jpg, n / 2);
        write_bytes(sub("bad/good/real.jpg"), jpg, n);
        free(jpg);
    }
    /* A PNG whose IHDR CRC is wrong. */
    unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                           0, 0, 0, 4, 0, 0, 0, 4, 8, 2, 0, 0, 0, 1, 2, 3, 4};
    write_bytes(sub("bad/broken/badcrc.png"), png, sizeof png);
    png[18] = 0x4e;
    png[19] = 0x20;
    png[22] = 0x4e;
    png[23] = 0x20;
    write_bytes(sub("bad/broken/huge.png"), png, sizeof png);
    write_bytes(sub("bad/broken/scan.tiff"), "MM\0*\0\0\0\x08", 8);
    write_bytes(sub("bad/broken/skip.svg"), "<svg/>", 6);
    if (symlink("/nonexistent/graft.jpg", sub("bad/broken/unreadable.jpg")) != 0)
        fprintf(stderr, "  cannot make a dangling link\n");
}

static void test_bad_files_skipped_once(void)
{
    NEED_FILE(LESSON "/train/cats/cat.2.jpg");
    graft_flow_cfg cfg = {.target_size = {16, 16}, .batch_size = 4, .seed = 3};
    graft_source *s = NULL;
    capture c;
    capture_begin(&c, 2);
    graft_status st = graft_flow_from_directory(sub("bad"), NULL, &cfg, &s);
    int total = 0, n;
    float x[4 * 16 * 16 * 3], y[4 * 3];
    for (int b = 0; s && b < 3 * s->length; b++) {
        CHECK_OK(s->next(s, x, y, &n));
        total += n;
    }
    char *err = capture_end(&c);
    CHECK_OK(st);
    if (!s) {
        free(err);
        return;
    }
    CHECK(graft_flow_samples(s) == 6 + 7 && graft_flow_num_classes(s) == 3);
    CHECK_MSG(total == 3 * 6, "kept %d samples in 3 passes", total);
    CHECK(graft_flow_skipped(s) == 7);
    const char *names[] = {"zero.jpg", "text.jpg", "truncated.jpg", "badcrc.png", "huge.png",
                           "scan.tiff", "unreadable.jpg"};
    for (int i = 0; i < 7; i++)
        CHECK_MSG(count_substr(err, names[i]) == 1, "%s named %d times in:\n%s", names[i],
                  count_substr(err, names[i]), err);
    CHECK(count_substr(err, "7 image(s) skipped in this pass") == 3); /* each pass */
    CHECK(count_substr(err, "ignored 1 file") == 1); /* the .svg */
    free(err);
    s->free(s);

    cfg.strict = 1;
    cfg.quiet = 1;
    cfg.no_shuffle = 1;
    CHECK_OK(graft_flow_from_directory(sub("bad"), NULL, &cfg, &s));
    st = GRAFT_OK;
    for (int b = 0; s && b < s->length && st == GRAFT_OK; b++) st = s->next(s, x, y, &n);
    CHECK(st == GRAFT_EFORMAT && strstr(graft_last_error(), "badcrc.png"));
    if (s) s->free(s);
}

static void test_no_images_is_an_error(void)
{
    mkpath("none");
    mkpath("none/empty_a");
    mkpath("none/empty_b");
    write_bytes(sub("none/empty_b/readme.txt"), "x", 1);
    graft_flow_cfg cfg = {.quiet = 1};
    graft_source *s = NULL;
    CHECK(graft_flow_from_directory(sub("none"), NULL, &cfg, &s) == GRAFT_ENOTFOUND);
    CHECK(s == NULL && strstr(graft_last_error(), "no images"));
    CHECK(graft_flow_from_directory(sub("missing"), NULL, &cfg, &s) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "missing") != NULL);
}

static void test_plain_folder_for_predict(void)
{
    char **paths = NULL;
    int n = 0;
    CHECK_OK(graft_image_list(sub("small/b_class"), &paths, &n));
    CHECK(n == 7 && paths && strstr(paths[0], "b0.ppm") && strstr(paths[6], "b6.ppm"));
    float out[20 * 20 * 3];
    for (int i = 0; i < n; i++) CHECK_OK(graft_image_load(paths[i], 20, 20, GRAFT_INTERP_BILINEAR, 0, out));
    int h, w;
    CHECK_OK(graft_image_size(paths[2], &h, &w));
    CHECK(w == 18 && h == 16);
    graft_image_list_free(paths, n);
    CHECK(graft_image_list(sub("none"), &paths, &n) == GRAFT_ENOTFOUND);
}

static void test_free_while_prefetching(void)
{
    NEED_FILE(LESSON "/validation/cats/cat.2000.jpg");
    graft_flow_cfg cfg = {.target_size = {64, 64}, .batch_size = 8, .workers = 3, .queue_depth = 4};
    graft_source *s = open_flow(LESSON "/validation", NULL, cfg);
    if (!s) return;
    float *x = malloc(sizeof(float) * 8 * 64 * 64 * 3), y[16];
    int n;
    CHECK_OK(s->next(s, x, y, &n));
    CHECK(n == 8 && y[0] + y[1] == 1);
    s->free(s); /* workers are mid-batch: must join, not hang */
    free(x);
}

/* Ids-only batches (feature caching) name the same samples and labels as
 * decoded ones, and decoding resumes at the right batch afterwards. */
static void test_ids_only_batches_match(void)
{
    NEED_FILE(LESSON "/validation/cats/cat.2000.jpg");
    graft_flow_cfg cfg = {.target_size = {24, 24}, .class_mode = GRAFT_CLASS_BINARY,
                          .batch_size = 64, .seed = 5, .quiet = 1};
    graft_source *a = NULL, *b = NULL;
    CHECK_OK(graft_flow_from_directory(LESSON "/validation", NULL, &cfg, &a));
    CHECK_OK(graft_flow_from_directory(LESSON "/validation", NULL, &cfg, &b));
    if (!a || !b) return;
    CHECK(a->next_ids && a->deterministic && a->n_samples == 1000);
    size_t xs = 24 * 24 * 3;
    float *xa = malloc(64 * xs * sizeof(float)), *xb = malloc(64 * xs * sizeof(float));
    float ya[64], yb[64];
    long ia[64], ib[64];
    int total = 2 * a->length + 3, bad = 0;
    for (int k = 0; k < total; k++) {
        int na, nb;
        bool decode_b = k < 3 || k >= 25; /* 22 ids-only batches across a pass boundary */
        CHECK_OK(a->next_ids(a, xa, ya, &na, ia));
        CHECK_OK(b->next_ids(b, decode_b ? xb : NULL, yb, &nb, ib));
        bad += na != nb || memcmp(ia, ib, sizeof(long) * (size_t)na) || memcmp(ya, yb, sizeof(float) * (size_t)na);
        if (decode_b && na == nb) bad += memcmp(xa, xb, xs * sizeof(float) * (size_t)na) != 0;
    }
    CHECK_MSG(bad == 0, "%d batches differ", bad);
    /* With augmentation a sample differs every pass: not cacheable. */
    graft_image_data_generator aug = {.horizontal_flip = 1};
    graft_source *c = NULL;
    CHECK_OK(graft_flow_from_directory(LESSON "/validation", &aug, &cfg, &c));
    CHECK(c && !c->deterministic);
    free(xa);
    free(xb);
    graft_source_free(a);
    graft_source_free(b);
    graft_source_free(c);
}

int main(void)
{
    strcpy(tmp, "/tmp/graft_flow_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    make_small_tree();
    make_bad_tree();
    RUN(test_lesson_listing);
    RUN(test_lesson_full_pass);
    RUN(test_listing_order_and_split);
    RUN(test_follow_links);
    RUN(test_class_modes);
    RUN(test_same_seed_same_batches);
    RUN(test_bad_files_skipped_once);
    RUN(test_no_images_is_an_error);
    RUN(test_plain_folder_for_predict);
    RUN(test_free_while_prefetching);
    RUN(test_ids_only_batches_match);
    remove_tree(tmp);
    return CHECK_SUMMARY();
}
