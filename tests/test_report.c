/* Run-folder files: history.json, the CSV log, crash-safe writes, figures. */
#include "check.h"
#include "io_util.h"

#include "core/atomic_file.h"
#include "graft.h"

#include <cairo.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ------------------------------------------------------------ helpers */

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Entries of a folder other than . and .. */
static int count_entries(const char *dir, const char *containing)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (!containing || strstr(e->d_name, containing)))
            n++;
    closedir(d);
    return n;
}

/* A fresh empty folder inside the scratch folder. */
static const char *fresh_dir(const char *name)
{
    const char *d = io_tmp(name);
    mkdir(d, 0755);
    return d;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static const char *join(const char *dir, const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int write_str(const char *path, const char *s)
{
    return io_write_file(path, s, strlen(s));
}

/* A history shaped like the lesson's: 5 frozen epochs, 10 fine-tuning. */
static void lesson_history(graft_history *h, int with_validation)
{
    graft_history_init(h);
    for (int e = 0; e < 15; e++) {
        double acc = e < 5 ? 0.80 + 0.03 * e : 0.95 + 0.003 * (e - 5);
        double vacc = e < 5 ? 0.90 + 0.01 * e : 0.955 + 0.002 * (e - 5) + 0.003 * sin(e);
        double vl = with_validation ? 0.35 - 0.02 * e : NAN;
        graft_history_append(h, e, 0.6 - 0.03 * e, acc, vl, with_validation ? vacc : NAN,
                             e < 5 ? 1e-4 : 1e-5, 2.5);
    }
}

/* ------------------------------------------------------------ atomic writes */

static graft_status write_hello(FILE *f, void *ctx)
{
    (void)ctx;
    return fputs("hello\n", f) >= 0 ? GRAFT_OK : GRAFT_EIO;
}

static graft_status write_then_fail(FILE *f, void *ctx)
{
    (void)ctx;
    fputs("partial", f);
    fflush(f);
    return GRAFT_EIO;
}

static void test_atomic_success_leaves_no_temp(void)
{
    const char *dir = fresh_dir("atomic_ok");
    const char *path = join(dir, "out.txt");
    CHECK_OK(graft_file_write_atomic(path, write_hello, NULL));
    char *s = read_text(path, NULL);
    CHECK(s && strcmp(s, "hello\n") == 0);
    free(s);
    CHECK(count_entries(dir, NULL) == 1);

    /* The permissions a plain fopen would give, not mkstemp's 0600. */
    mode_t mask = umask(0);
    umask(mask);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == (0666 & ~mask));

    /* Replacing an existing file. */
    CHECK(write_str(path, "old content that is longer") == 0);
    CHECK_OK(graft_file_write_atomic(path, write_hello, NULL));
    s = read_text(path, NULL);
    CHECK(s && strcmp(s, "hello\n") == 0);
    free(s);
    CHECK(count_entries(dir, NULL) == 1);
    rm_dir(dir);
}

/* Temporary files of writers killed mid-write go with the next successful
 * write of the same file; those of a running process, or of other files, stay. */
static void test_atomic_removes_orphans(void)
{
    const char *dir = fresh_dir("atomic_orphans");
    pid_t child = fork();
    if (child == 0) _exit(0);
    CHECK(child > 0 && waitpid(child, NULL, 0) == child); /* now a PID that does not run */
    char dead[64], live[64], other[64], odd[64];
    snprintf(dead, sizeof dead, ".out.txt.tmp-%ld-3", (long)child);
    snprintf(live, sizeof live, ".out.txt.tmp-%ld-0", (long)getppid());
    snprintf(other, sizeof other, ".other.txt.tmp-%ld-0", (long)child);
    snprintf(odd, sizeof odd, ".out.txt.tmp-notapid");
    CHECK(write_str(join(dir, dead), "partial") == 0);
    CHECK(write_str(join(dir, live), "partial") == 0);
    CHECK(write_str(join(dir, other), "partial") == 0);
    CHECK(write_str(join(dir, odd), "partial") == 0);
    CHECK_OK(graft_file_write_atomic(join(dir, "out.txt"), write_hello, NULL));
    CHECK(!file_exists(join(dir, dead)));
    CHECK(file_exists(join(dir, live)) && file_exists(join(dir, other)) && file_exists(join(dir, odd)));
    CHECK(count_entries(dir, NULL) == 4);
    rm_dir(dir);
}

static void test_atomic_failure_leaves_nothing(void)
{
    const char *dir = fresh_dir("atomic_fail");
    const char *path = join(dir, "out.txt");
    CHECK(graft_file_write_atomic(path, write_then_fail, NULL) == GRAFT_EIO);
    CHECK(!file_exists(path));
    CHECK(count_entries(dir, NULL) == 0);

    /* An existing target survives a failed rewrite untouched. */
    CHECK(write_str(path, "old") == 0);
    CHECK(graft_file_write_atomic(path, write_then_fail, NULL) == GRAFT_EIO);
    char *s = read_text(path, NULL);
    CHECK(s && strcmp(s, "old") == 0);
    free(s);
    CHECK(count_entries(dir, NULL) == 1);

    /* A missing folder, a folder that is a file, a path that is a folder. */
    CHECK(graft_file_write_atomic(join(dir, "missing/out.txt"), write_hello, NULL) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "missing/out.txt") != NULL);
    CHECK(graft_file_write_atomic(join(dir, "out.txt/x"), write_hello, NULL) == GRAFT_EIO);
    CHECK(mkdir(join(dir, "sub"), 0755) == 0);
    CHECK(graft_file_write_atomic(join(dir, "sub"), write_hello, NULL) == GRAFT_EIO);
    CHECK(count_entries(dir, NULL) == 2);
    CHECK(count_entries(join(dir, "sub"), NULL) == 0);
    rmdir(join(dir, "sub"));
    rm_dir(dir);
}

static void test_atomic_trio_with_named_writer(void)
{
    const char *dir = fresh_dir("atomic_trio");
    const char *path = join(dir, "model.h5");
    graft_atomic_file af;
    CHECK_OK(graft_atomic_open(&af, path));
    CHECK(af.f && af.tmp && strstr(af.tmp, dir) == af.tmp);
    CHECK(!file_exists(path));
    /* A writer that wants a file name (HDF5) closes the stream first. */
    fclose(af.f);
    af.f = NULL;
    CHECK(write_str(af.tmp, "by name") == 0);
    CHECK_OK(graft_atomic_commit(&af));
    char *s = read_text(path, NULL);
    CHECK(s && strcmp(s, "by name") == 0);
    free(s);
    CHECK(af.tmp == NULL && af.path == NULL);

    CHECK_OK(graft_atomic_open(&af, path));
    fputs("discarded", af.f);
    graft_atomic_abort(&af);
    s = read_text(path, NULL);
    CHECK(s && strcmp(s, "by name") == 0);
    free(s);
    CHECK(count_entries(dir, NULL) == 1);
    graft_atomic_abort(&af); /* harmless twice */
    rm_dir(dir);
}

/* ------------------------------------------------------------ history.json */

static void test_json_round_trip(void)
{
    const char *path = io_tmp("history.json");
    graft_history h, r;
    graft_history_init(&h);
    /* Values that need all 17 digits, a partial validation gap, a gap in lr. */
    const double third = 1.0 / 3.0;
    CHECK_OK(graft_history_append(&h, 0, 0.6931471805599453, 0.5, 0.7, third, 1e-3, 12.25));
    CHECK_OK(graft_history_append(&h, 1, 0.1 + 0.2, 0.75, NAN, NAN, 1e-5, 3.5));
    CHECK_OK(graft_history_append(&h, 2, 1e-300, 1.0, 0.125, 0.9, NAN, 3.25));
    graft_history_stage st[2] = {{"frozen", 0}, {"fine-tune", 2}};
    CHECK_OK(graft_history_save_json(path, &h, st, 2));

    graft_history_stage *rs = NULL;
    int nrs = -1;
    CHECK_OK(graft_history_load_json(path, &r, &rs, &nrs));
    CHECK(r.n == 3);
    for (int i = 0; i < r.n && r.n == 3; i++) {
        CHECK(r.epoch[i] == i);
        CHECK(r.loss[i] == h.loss[i]);
        CHECK(r.accuracy[i] == h.accuracy[i]);
        CHECK(r.seconds[i] == h.seconds[i]);
        CHECK((isnan(r.val_loss[i]) && isnan(h.val_loss[i])) || r.val_loss[i] == h.val_loss[i]);
        CHECK((isnan(r.val_accuracy[i]) && isnan(h.val_accuracy[i])) ||
              r.val_accuracy[i] == h.val_accuracy[i]);
        CHECK((isnan(r.lr[i]) && isnan(h.lr[i])) || r.lr[i] == h.lr[i]);
    }
    CHECK(nrs == 2 && rs);
    if (nrs == 2 && rs) {
        CHECK(strcmp(rs[0].name, "frozen") == 0 && rs[0].first_epoch == 0);
        CHECK(strcmp(rs[1].name, "fine-tune") == 0 && rs[1].first_epoch == 2);
    }
    free(rs);
    graft_history_free(&r);

    /* Python's json reads it as a Keras History dict. */
    if (access(ORACLE, X_OK) == 0) {
        char script[512], out[256];
        snprintf(script, sizeof script,
                 "import json\nd = json.load(open('%s'))\n"
                 "print(sorted(d['history']), d['epoch'], repr(d['history']['loss'][1]), "
                 "d['history']['val_loss'][1], d['stages'][1]['first_epoch'])\n",
                 path);
        CHECK(run_python(script, out, sizeof out) == 0);
        CHECK_MSG(strcmp(out, "['accuracy', 'loss', 'lr', 'val_accuracy', 'val_loss'] [0, 1, 2] "
                              "0.30000000000000004 None 2\n") == 0,
                  "python read: %s", out);
    }
    graft_history_free(&h);
}

static void test_json_without_validation(void)
{
    const char *path = io_tmp("history_noval.json");
    graft_history h, r;
    lesson_history(&h, 0);
    CHECK_OK(graft_history_save_json(path, &h, NULL, 0));
    char *text = read_text(path, NULL);
    CHECK(text && strstr(text, "\"loss\"") && strstr(text, "\"accuracy\""));
    CHECK(text && !strstr(text, "val_") && !strstr(text, "stages") && !strstr(text, "null"));
    free(text);
    int nst = -1;
    CHECK_OK(graft_history_load_json(path, &r, NULL, &nst));
    CHECK(r.n == 15 && nst == 0);
    for (int i = 0; i < r.n; i++)
        CHECK(isnan(r.val_loss[i]) && isnan(r.val_accuracy[i]));
    graft_history_free(&r);
    graft_history_free(&h);

    /* An empty history round-trips too. */
    graft_history_init(&h);
    CHECK_OK(graft_history_save_json(path, &h, NULL, 0));
    CHECK_OK(graft_history_load_json(path, &r, NULL, NULL));
    CHECK(r.n == 0);
    graft_history_free(&r);
}

static void test_json_keras_dict(void)
{
    /* What json.dump of a History's attributes gives, with Keras 3's
     * learning_rate and a metric graft does not track; no "epoch". */
    const char *path = io_tmp("keras.json");
    CHECK(write_str(path, "{\"history\": {\"loss\": [0.5, 0.25], \"accuracy\": [0.7, 0.8],"
                          " \"precision\": [1, 1], \"learning_rate\": [0.001, 0.0005]},"
                          " \"params\": {\"verbose\": 1, \"epochs\": 2, \"steps\": 100}}") == 0);
    graft_history r;
    CHECK_OK(graft_history_load_json(path, &r, NULL, NULL));
    CHECK(r.n == 2);
    if (r.n == 2) {
        CHECK(r.epoch[0] == 0 && r.epoch[1] == 1);
        CHECK(r.loss[1] == 0.25 && r.accuracy[0] == 0.7 && r.lr[1] == 0.0005);
        CHECK(isnan(r.val_loss[0]) && isnan(r.seconds[1]));
    }
    graft_history_free(&r);
}

/* Each bad file must be refused with `status`, a message naming the file and
 * `key`, an empty history and no stages. */
static void expect_refused(const char *name, const char *text, graft_status status, const char *key)
{
    const char *path = io_tmp(name);
    CHECK(write_str(path, text) == 0);
    graft_history r;
    graft_history_stage *st = (graft_history_stage *)&r; /* must be reset */
    int n = -1;
    graft_status s = graft_history_load_json(path, &r, &st, &n);
    CHECK_MSG(s == status, "%s: got %s: %s", name, graft_status_name(s), graft_last_error());
    CHECK_MSG(strstr(graft_last_error(), path) != NULL, "%s: %s", name, graft_last_error());
    if (key) CHECK_MSG(strstr(graft_last_error(), key) != NULL, "%s: %s", name, graft_last_error());
    CHECK(r.n == 0 && r.loss == NULL && st == NULL && n == 0);
    graft_history_free(&r);
}

static void test_json_malformed(void)
{
    const graft_status F = GRAFT_EFORMAT;
    expect_refused("empty.json", "", F, NULL);
    expect_refused("trunc.json", "{\"history\": {\"loss\": [0.5, 0.4", F, "truncated");
    expect_refused("garbage.json", "{\"history\": {\"loss\": [0.5,, 0.4]}}", F, NULL);
    expect_refused("nan.json", "{\"history\": {\"loss\": [NaN]}}", F, NULL);
    expect_refused("root.json", "[1, 2]", F, "history");
    expect_refused("hist_type.json", "{\"history\": [1]}", F, "history");
    expect_refused("no_loss.json", "{\"history\": {\"accuracy\": [0.5]}}", F, "loss");
    expect_refused("loss_type.json", "{\"history\": {\"loss\": \"0.5\"}}", F, "loss");
    expect_refused("acc_elem.json",
                   "{\"history\": {\"loss\": [0.5, 0.4], \"accuracy\": [0.1, \"x\"]}}", F,
                   "accuracy");
    expect_refused("len.json",
                   "{\"history\": {\"loss\": [0.5, 0.4], \"val_loss\": [0.5]}, \"epoch\": [0, 1]}",
                   F, "val_loss");
    expect_refused("len_epoch.json", "{\"history\": {\"loss\": [0.5, 0.4]}, \"epoch\": [0]}", F,
                   "epoch");
    expect_refused("epoch_frac.json", "{\"history\": {\"loss\": [0.5]}, \"epoch\": [1.5]}", F,
                   "epoch");
    expect_refused("epoch_neg.json", "{\"history\": {\"loss\": [0.5]}, \"epoch\": [-1]}", F,
                   "epoch");
    expect_refused("epoch_order.json", "{\"history\": {\"loss\": [0.5, 0.4]}, \"epoch\": [3, 2]}",
                   F, "epoch");
    expect_refused("seconds.json", "{\"history\": {\"loss\": [0.5]}, \"seconds\": {\"a\": 1}}", F,
                   "seconds");
    expect_refused("stages_type.json", "{\"history\": {\"loss\": [0.5]}, \"stages\": 3}", F,
                   "stages");
    expect_refused("stage_name.json",
                   "{\"history\": {\"loss\": [0.5]}, \"stages\": [{\"first_epoch\": 0}]}", F,
                   "name");
    expect_refused(
        "stage_order.json",
        "{\"history\": {\"loss\": [0.5]}, \"stages\": [{\"name\": \"a\", \"first_epoch\": 3},"
        " {\"name\": \"b\", \"first_epoch\": 1}]}",
        F, "first_epoch");
    expect_refused("stage_elem.json", "{\"history\": {\"loss\": [0.5]}, \"stages\": [[1]]}", F,
                   "stages");

    graft_history r;
    CHECK(graft_history_load_json(io_tmp("does_not_exist.json"), &r, NULL, NULL) ==
          GRAFT_ENOTFOUND);
    CHECK(strstr(graft_last_error(), "does_not_exist.json") != NULL);
    CHECK(graft_history_load_json(io_tmpdir, &r, NULL, NULL) != GRAFT_OK);
}

/* Every prefix of a good file is refused, and no byte change crashes. */
static void test_json_fuzz(void)
{
    const char *good = io_tmp("good.json");
    graft_history h;
    lesson_history(&h, 1);
    graft_history_stage st[2] = {{"frozen", 0}, {"fine-tune", 5}};
    CHECK_OK(graft_history_save_json(good, &h, st, 2));
    graft_history_free(&h);
    size_t len = 0;
    char *text = read_text(good, &len);
    CHECK(text && len > 100);
    if (!text) return;
    const char *path = io_tmp("fuzz.json");
    int accepted = 0;
    /* Each case is a new file: rewriting one in place makes ext4 flush it
     * on close (auto_da_alloc), which slows this loop tenfold. */
    for (size_t n = 0; n + 1 < len; n++) { /* the last byte is a newline */
        unlink(path);
        CHECK(io_write_file(path, text, n) == 0);
        graft_history r;
        graft_status s = graft_history_load_json(path, &r, NULL, NULL);
        accepted += s == GRAFT_OK;
        graft_history_free(&r);
    }
    CHECK_MSG(accepted == 0, "%d truncated files accepted", accepted);
    static const char subst[] = {'"', '[', ']', '{', '}', ',', '-', 'x', '9', '\0'};
    for (size_t i = 0; i < len; i += 3)
        for (size_t k = 0; k < sizeof subst; k++) {
            char saved = text[i];
            text[i] = subst[k];
            unlink(path);
            CHECK(io_write_file(path, text, len) == 0);
            graft_history r;
            graft_history_stage *rs = NULL;
            int nrs = 0;
            graft_status s = graft_history_load_json(path, &r, &rs, &nrs);
            if (s == GRAFT_OK)
                CHECK(r.n == 15 || r.n == 0);
            else
                CHECK(r.n == 0 && rs == NULL && graft_last_error()[0]);
            free(rs);
            graft_history_free(&r);
            text[i] = saved;
        }
    free(text);
}

static void test_json_save_errors(void)
{
    graft_history h;
    lesson_history(&h, 1);
    graft_history_stage bad_order[2] = {{"frozen", 5}, {"fine-tune", 5}};
    const char *path = io_tmp("bad_stages.json");
    CHECK(graft_history_save_json(path, &h, bad_order, 2) == GRAFT_EINVAL);
    graft_history_stage unnamed[1] = {{"", 0}};
    CHECK(graft_history_save_json(path, &h, unnamed, 1) == GRAFT_EINVAL);
    CHECK(!file_exists(path));
    CHECK(graft_history_save_json(io_tmp("no/such/dir.json"), &h, NULL, 0) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "no/such/dir.json") != NULL);
    graft_history_free(&h);
}

/* ------------------------------------------------------------ CSV */

static void test_csv_exact(void)
{
    const char *path = io_tmp("log.csv");
    graft_history h;
    graft_history_init(&h);
    CHECK_OK(graft_history_append(&h, 0, 0.6931471805599453, 0.5, 0.1 + 0.2, 0.75, 0.001, 1));
    CHECK_OK(graft_history_append(&h, 1, 1e-05, 1.0, 100000.0, NAN, 1e-05, 1));
    CHECK_OK(graft_history_append(&h, 2, 1e16, 0.123456789, 12345678.9, 0.0001, 2.5e-07, 1));
    CHECK_OK(graft_history_save_csv(path, &h));
    /* What CSVLogger writes for these logs: sorted keys, Python's float
     * repr, "NA" for the missing val_accuracy, the csv module's \r\n. */
    const char *want = "epoch,accuracy,loss,lr,val_accuracy,val_loss\r\n"
                       "0,0.5,0.6931471805599453,0.001,0.75,0.30000000000000004\r\n"
                       "1,1.0,1e-05,1e-05,NA,100000.0\r\n"
                       "2,0.123456789,1e+16,2.5e-07,0.0001,12345678.9\r\n";
    char *got = read_text(path, NULL);
    CHECK_MSG(got && strcmp(got, want) == 0, "got:\n%s", got ? got : "(nothing)");
    free(got);
    graft_history_free(&h);

    graft_history_init(&h);
    CHECK_OK(graft_history_append(&h, 3, 1.0 / 3.0, -0.0, NAN, NAN, 123456789012345678.0, 1));
    CHECK_OK(graft_history_save_csv(path, &h));
    got = read_text(path, NULL);
    CHECK_MSG(got && strcmp(got, "epoch,accuracy,loss,lr\r\n"
                                 "3,-0.0,0.3333333333333333,1.2345678901234568e+17\r\n") == 0,
              "got:\n%s", got ? got : "(nothing)");
    free(got);
    graft_history_free(&h);
}

/* ------------------------------------------------------------ plots */

typedef struct {
    cairo_surface_t *s;
    int w, h, stride;
    unsigned char *data;
} image;

static int load_png(const char *path, image *im)
{
    im->s = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(im->s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(im->s);
        im->s = NULL;
        return -1;
    }
    cairo_surface_flush(im->s);
    im->w = cairo_image_surface_get_width(im->s);
    im->h = cairo_image_surface_get_height(im->s);
    im->stride = cairo_image_surface_get_stride(im->s);
    im->data = cairo_image_surface_get_data(im->s);
    return 0;
}

static void pixel(const image *im, int x, int y, int *r, int *g, int *b)
{
    uint32_t p;
    memcpy(&p, im->data + (size_t)y * im->stride + 4 * (size_t)x, 4);
    *r = (p >> 16) & 255;
    *g = (p >> 8) & 255;
    *b = p & 255;
}

/* Pixels in rows [y0, y1) within a small distance of the colour. */
static int count_colour(const image *im, int y0, int y1, int cr, int cg, int cb)
{
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = 0; x < im->w; x++) {
            int r, g, b;
            pixel(im, x, y, &r, &g, &b);
            n += abs(r - cr) + abs(g - cg) + abs(b - cb) < 40;
        }
    return n;
}

static int dark(const image *im, int x, int y)
{
    int r, g, b;
    pixel(im, x, y, &r, &g, &b);
    return r < 100 && g < 100 && b < 100;
}

/* The column with the most pixels that are dark in a and not in b. */
static int new_dark_column(const image *a, const image *b, int *count)
{
    int best = -1;
    *count = 0;
    for (int x = 0; x < a->w; x++) {
        int n = 0;
        for (int y = 0; y < a->h; y++)
            n += dark(a, x, y) && !dark(b, x, y);
        if (n > *count) {
            *count = n;
            best = x;
        }
    }
    return best;
}

/* matplotlib's first two cycle colours, the lesson's training/validation. */
#define BLUE 0x1f, 0x77, 0xb4
#define ORANGE 0xff, 0x7f, 0x0e
#define GREEN 0x2c, 0xa0, 0x2c

/* The figure graft train draws for a run fine-tuned from epoch ft: the
 * lesson's titles (with a suffix, or "") and a line where the fine-tuning
 * starts. */
static graft_status plot_finetuned(const graft_history *h, int ft, const char *suffix,
                                   const char *png_path)
{
    char acc[128], loss[128];
    snprintf(acc, sizeof acc, "Accuracy before and after fine-tuning%s", suffix);
    snprintf(loss, sizeof loss, "Loss before and after fine-tuning%s", suffix);
    const graft_history_stage st[2] = {{"frozen", INT_MIN}, {"fine-tuning", ft}};
    const graft_stages_plot cfg = {st, 2, acc, loss};
    return graft_plot_stages(h, &cfg, png_path);
}

static void test_plot_finetuned(void)
{
    const char *dir = fresh_dir("plots");
    graft_history h;
    lesson_history(&h, 1);
    const char *with = join(dir, "lesson.png"), *without = join(dir, "plain.png");
    const char *late = join(dir, "late.png");
    CHECK_OK(plot_finetuned(&h, 5, "", with));
    CHECK_OK(graft_plot_stages(&h, NULL, without));
    CHECK_OK(plot_finetuned(&h, 10, " (MobileNet 0.75)", late));
    CHECK(count_entries(dir, ".tmp") == 0);

    image a = {0}, b = {0}, c = {0};
    CHECK(load_png(with, &a) == 0 && load_png(without, &b) == 0 && load_png(late, &c) == 0);
    if (a.s && b.s && c.s) {
        CHECK(a.w == 800 && a.h == 800);
        /* training and validation curves in both panels, well beyond the
         * legend's short swatches */
        int top_blue = count_colour(&a, 0, 400, BLUE),
            top_orange = count_colour(&a, 0, 400, ORANGE);
        int bot_blue = count_colour(&a, 400, 800, BLUE),
            bot_orange = count_colour(&a, 400, 800, ORANGE);
        CHECK_MSG(top_blue > 600 && top_orange > 600 && bot_blue > 600 && bot_orange > 600,
                  "curve pixels: top %d %d, bottom %d %d", top_blue, top_orange, bot_blue,
                  bot_orange);
        /* the dashed line: a column of dark pixels through both panels */
        int n5, n10;
        int x5 = new_dark_column(&a, &b, &n5);
        int x10 = new_dark_column(&c, &b, &n10);
        CHECK_MSG(n5 > 250 && n10 > 250, "dark pixels in the line's column: %d, %d", n5, n10);
        int top = 0, bottom = 0;
        for (int y = 0; y < 800; y++) {
            if (dark(&a, x5, y) && !dark(&b, x5, y)) *(y < 400 ? &top : &bottom) += 1;
        }
        CHECK_MSG(top > 100 && bottom > 100, "line pixels top %d bottom %d", top, bottom);
        /* five epochs later is about a third of the axis to the right */
        CHECK_MSG(x10 - x5 > 150 && x10 - x5 < 350, "line at %d and %d", x5, x10);
    }
    cairo_surface_destroy(a.s);
    cairo_surface_destroy(b.s);
    cairo_surface_destroy(c.s);
    graft_history_free(&h);

    /* Without validation: no orange anywhere (not even in the legend). */
    lesson_history(&h, 0);
    const char *noval = join(dir, "noval.png");
    CHECK_OK(plot_finetuned(&h, 5, "", noval));
    image d = {0};
    CHECK(load_png(noval, &d) == 0);
    if (d.s) {
        CHECK(count_colour(&d, 0, 800, ORANGE) < 10);
        CHECK(count_colour(&d, 0, 400, BLUE) > 600 && count_colour(&d, 400, 800, BLUE) > 600);
    }
    cairo_surface_destroy(d.s);
    graft_history_free(&h);
    rm_dir(dir);
}

/* The general figure: a line per stage after the first, whose name and
 * start change nothing (the first line is the second stage's), file for
 * file. */
static void test_plot_stages(void)
{
    const char *dir = fresh_dir("stages");
    graft_history h;
    lesson_history(&h, 1);
    graft_history_stage two[2] = {{"frozen", 0}, {"fine-tuning", 5}};
    graft_stages_plot cfg2 = {two, 2, "Accuracy before and after fine-tuning",
                              "Loss before and after fine-tuning"};
    const char *lesson = join(dir, "lesson.png"), *general = join(dir, "general.png");
    CHECK_OK(plot_finetuned(&h, 5, "", lesson));
    CHECK_OK(graft_plot_stages(&h, &cfg2, general));
    size_t na = 0, nb = 0;
    unsigned char *a = read_bytes(lesson, &na), *b = read_bytes(general, &nb);
    CHECK(a && b && na == nb && na > 0 && memcmp(a, b, na) == 0);
    free(a);
    free(b);

    graft_history_stage three[3] = {{"frozen", 0}, {"fine-tune", 5}, {"all layers", 10}};
    graft_stages_plot cfg3 = {three, 3, NULL, NULL};
    const char *plain = join(dir, "plain.png"), *both = join(dir, "three.png");
    CHECK_OK(graft_plot_stages(&h, NULL, plain));
    CHECK_OK(graft_plot_stages(&h, &cfg3, both));
    image p = {0}, t = {0};
    CHECK(load_png(plain, &p) == 0 && load_png(both, &t) == 0);
    if (p.s && t.s) {
        /* two dashed columns: the strongest new one, and another well apart */
        int n1, x1 = new_dark_column(&t, &p, &n1);
        int n2 = 0, x2 = -1;
        for (int x = 0; x < t.w; x++) {
            if (abs(x - x1) < 50) continue;
            int n = 0;
            for (int y = 0; y < t.h; y++) n += dark(&t, x, y) && !dark(&p, x, y);
            if (n > n2) {
                n2 = n;
                x2 = x;
            }
        }
        CHECK_MSG(n1 > 250 && n2 > 250 && x2 >= 0, "line pixels %d at %d, %d at %d", n1, x1, n2, x2);
    }
    cairo_surface_destroy(p.s);
    cairo_surface_destroy(t.s);

    graft_history_stage backwards[2] = {{"a", 5}, {"b", 3}}, late[2] = {{"a", 0}, {"b", 40}};
    graft_stages_plot bad1 = {backwards, 2, NULL, NULL}, bad2 = {late, 2, NULL, NULL};
    CHECK(graft_plot_stages(&h, &bad1, join(dir, "x.png")) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "stage 'b'") != NULL);
    CHECK(graft_plot_stages(&h, &bad2, join(dir, "y.png")) == GRAFT_EINVAL);
    CHECK(count_entries(dir, ".png") == 4);
    graft_history_free(&h);
}

static void test_plot_edge_cases(void)
{
    const char *dir = fresh_dir("plot_edges");
    graft_history h;
    image im = {0};

    /* one epoch: a dot per curve */
    graft_history_init(&h);
    CHECK_OK(graft_history_append(&h, 0, 0.5, 0.7, 0.6, 0.65, 1e-3, 1));
    CHECK_OK(graft_plot_stages(&h, NULL, join(dir, "one.png")));
    CHECK(load_png(join(dir, "one.png"), &im) == 0);
    if (im.s) CHECK(count_colour(&im, 0, 400, BLUE) > 20 && count_colour(&im, 0, 400, ORANGE) > 20);
    cairo_surface_destroy(im.s);
    im.s = NULL;
    graft_history_free(&h);

    /* constant series and gaps */
    graft_history_init(&h);
    for (int e = 0; e < 8; e++)
        CHECK_OK(graft_history_append(&h, e, 0.5, 0.75, e % 3 == 1 ? NAN : 0.4,
                                      e % 3 == 1 ? NAN : 0.8, 1e-3, 1));
    CHECK_OK(plot_finetuned(&h, 3, "", join(dir, "flat.png")));
    CHECK(load_png(join(dir, "flat.png"), &im) == 0);
    if (im.s)
        CHECK(count_colour(&im, 0, 400, BLUE) > 400 && count_colour(&im, 0, 400, ORANGE) > 150);
    cairo_surface_destroy(im.s);
    im.s = NULL;

    /* extreme values: infinities and overflowing spans are gaps, tiny steps
     * still get distinct labels */
    graft_history x;
    graft_history_init(&x);
    CHECK_OK(graft_history_append(&x, 0, INFINITY, 1e-20, 1e308, 3e-20, 1e-3, 1));
    CHECK_OK(graft_history_append(&x, 1, 2.0, 2e-20, -1e308, 2e-20, 1e-3, 1));
    CHECK_OK(graft_history_append(&x, 2, 1.0, 3e-20, 0.5, 1e-20, 1e-3, 1));
    CHECK_OK(plot_finetuned(&x, 1, "", join(dir, "extreme.png")));
    CHECK(load_png(join(dir, "extreme.png"), &im) == 0);
    cairo_surface_destroy(im.s);
    im.s = NULL;
    graft_history_free(&x);

    /* errors: empty history, fine-tuning outside the run, bad text, no folder */
    graft_history empty;
    graft_history_init(&empty);
    const char *p = join(dir, "empty.png");
    CHECK(graft_plot_stages(&empty, NULL, p) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "empty") && strstr(graft_last_error(), p));
    CHECK(plot_finetuned(&h, 20, "", p) == GRAFT_EINVAL);
    CHECK(plot_finetuned(&h, 3, " \xff\xfe", p) != GRAFT_OK);
    CHECK(strstr(graft_last_error(), p) != NULL);
    CHECK(!file_exists(p));
    const char *nodir = join(dir, "missing/fig.png");
    CHECK(plot_finetuned(&h, 3, "", nodir) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), nodir) != NULL);
    CHECK(!file_exists(nodir));
    CHECK(count_entries(dir, NULL) == 3);
    graft_history_free(&h);
    rm_dir(dir);
}

static void test_plot_compare(void)
{
    const char *dir = fresh_dir("compare");
    graft_history a, b, c;
    lesson_history(&a, 1);
    graft_history_init(&b);
    graft_history_init(&c);
    for (int e = 0; e < 10; e++) {
        graft_history_append(&b, e, 0.69 - 0.02 * e, 0.5 + 0.03 * e, 0.69 - 0.015 * e,
                             0.52 + 0.02 * e, 1e-3, 1);
        graft_history_append(&c, e, 0.5, 0.6, NAN, e == 4 ? NAN : 0.6 + 0.01 * e, 1e-3, 1);
    }
    const graft_history *runs[3] = {&b, &a, &c};
    const char *labels[3] = {"From scratch", "Transfer learning + fine-tuning", NULL};
    const char *path = join(dir, "compare.png");
    CHECK_OK(graft_plot_compare(runs, labels, 3, path, "Accuracy comparison"));
    image im = {0};
    CHECK(load_png(path, &im) == 0);
    if (im.s) {
        CHECK(im.w == 800 && im.h == 600);
        CHECK(count_colour(&im, 0, 600, BLUE) > 500);
        CHECK(count_colour(&im, 0, 600, ORANGE) > 500);
        CHECK(count_colour(&im, 0, 600, GREEN) > 300);
    }
    cairo_surface_destroy(im.s);

    /* one run whose validation was never measured is named in the error */
    graft_history noval;
    lesson_history(&noval, 0);
    const graft_history *bad[2] = {&a, &noval};
    const char *bad_labels[2] = {"good", "unvalidated"};
    const char *p2 = join(dir, "bad.png");
    CHECK(graft_plot_compare(bad, bad_labels, 2, p2, NULL) == GRAFT_EINVAL);
    CHECK(strstr(graft_last_error(), "unvalidated") != NULL);
    CHECK(graft_plot_compare(bad, bad_labels, 0, p2, NULL) == GRAFT_EINVAL);
    CHECK(!file_exists(p2));
    CHECK(graft_plot_compare(runs, NULL, 3, join(dir, "nope/x.png"), NULL) == GRAFT_EIO);
    CHECK(count_entries(dir, NULL) == 1);
    graft_history_free(&a);
    graft_history_free(&b);
    graft_history_free(&c);
    graft_history_free(&noval);
    rm_dir(dir);
}

/* LeakSanitizer's hook (unused without it): fontconfig keeps its
 * process-wide font configuration until exit, by design. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig.so\n";
}

int main(void)
{
    if (io_tmp_init() != 0) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_atomic_success_leaves_no_temp);
    RUN(test_atomic_failure_leaves_nothing);
    RUN(test_atomic_removes_orphans);
    RUN(test_atomic_trio_with_named_writer);
    RUN(test_json_round_trip);
    RUN(test_json_without_validation);
    RUN(test_json_keras_dict);
    RUN(test_json_malformed);
    RUN(test_json_fuzz);
    RUN(test_json_save_errors);
    RUN(test_csv_exact);
    RUN(test_plot_finetuned);
    RUN(test_plot_stages);
    RUN(test_plot_edge_cases);
    RUN(test_plot_compare);
    return CHECK_SUMMARY();
}
