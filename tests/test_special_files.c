/*
 * Hostile inputs: a FIFO (or socket, device, folder) where graft expects a
 * file, as an image in a class folder, an image to predict, a TF.js
 * model.json or weight shard, a checkpoint, a history or an archive, is
 * refused at once with a message naming it; none is waited on. Also: an
 * error message that quotes the error before it keeps it, more than 1024
 * class folders, and temporary files in $TMPDIR.
 * Runs alone (tests/run.sh): blocking files must be refused within an alarm.
 */
#include "check.h"
#include "core/file_open.h"
#include "data/data.h"
#include "internal.h"
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char tmp[] = "/tmp/graft_special_XXXXXX";

/* A path in the scratch folder (a few rotating buffers). */
static const char *at(const char *name) { return path_in(tmp, name); }

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* A w x h P6 image. */
static int write_ppm(const char *path, int w, int h, unsigned seed)
{
    unsigned char b[64 + 3 * 64 * 64];
    int n = snprintf((char *)b, 64, "P6\n%d %d\n255\n", w, h);
    for (int i = 0; i < 3 * w * h; i++) b[n + i] = (unsigned char)(seed * 37u + (unsigned)i * 11u);
    return write_file(path, b, (size_t)n + 3u * (size_t)w * (size_t)h);
}

/* Whether graft's message names the FIFO `name` as one. */
static bool names_fifo(const char *name)
{
    char want[320];
    snprintf(want, sizeof want, "%s is not a regular file (a FIFO)", at(name));
    return strstr(graft_last_error(), want) != NULL;
}

/* A regression blocks in open() with no writer on the other end, forever:
 * the alarm turns that into a failed test instead of a hung suite. */
static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "not ok - a test blocked on a special file (no answer in 60 s)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

static void test_open_regular(void)
{
    int fd;
    struct stat sb;
    CHECK(write_file(at("plain.bin"), "hello", 5) == 0);
    CHECK_OK(graft_open_regular(at("plain.bin"), &fd, &sb));
    CHECK(fd >= 0 && sb.st_size == 5);
    /* The descriptor blocks again, as a plain open's would. */
    CHECK(fd >= 0 && !(fcntl(fd, F_GETFL) & O_NONBLOCK));
    if (fd >= 0) close(fd);

    CHECK(mkfifo(at("x.jpg"), 0600) == 0);
    CHECK(graft_open_regular(at("x.jpg"), &fd, NULL) == GRAFT_EIO && fd == -1);
    char want[320];
    snprintf(want, sizeof want, "%s is not a regular file (a FIFO)", at("x.jpg"));
    CHECK_MSG(strcmp(graft_last_error(), want) == 0, "%s", graft_last_error());
    /* Through a link, as a class folder of links to the data would have it. */
    CHECK(symlink(at("x.jpg"), at("link.jpg")) == 0);
    CHECK(graft_open_regular(at("link.jpg"), &fd, NULL) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "(a FIFO)") != NULL);

    CHECK(mkdir(at("folder.png"), 0700) == 0);
    CHECK(graft_open_regular(at("folder.png"), &fd, NULL) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "folder.png is not a regular file (a folder)") != NULL);
    CHECK(graft_open_regular("/dev/null", &fd, NULL) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "/dev/null is not a regular file (a character device)"));

    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", at("sock.bmp"));
    CHECK(sock >= 0 && bind(sock, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(graft_open_regular(at("sock.bmp"), &fd, NULL) == GRAFT_EIO);
    CHECK(strstr(graft_last_error(), "sock.bmp is not a regular file (a socket)") != NULL);
    if (sock >= 0) close(sock);

    CHECK(graft_open_regular(at("absent"), &fd, NULL) == GRAFT_ENOTFOUND);
    CHECK(strstr(graft_last_error(), "absent") && strstr(graft_last_error(), strerror(ENOENT)));
    FILE *f;
    CHECK(graft_fopen_regular(at("x.jpg"), &f, NULL) == GRAFT_EIO && f == NULL);
    CHECK_OK(graft_fopen_regular(at("plain.bin"), &f, NULL));
    char buf[8] = "";
    CHECK(f && fread(buf, 1, sizeof buf, f) == 5 && memcmp(buf, "hello", 5) == 0);
    if (f) fclose(f);
}

static void test_fifo_image(void)
{
    graft_decode_opts o = {.channels = 3};
    graft_img img;
    CHECK(graft_img_decode(at("x.jpg"), &o, &img) == GRAFT_EIO);
    CHECK_MSG(names_fifo("x.jpg"), "%s", graft_last_error());
    int h, w;
    CHECK(graft_image_size(at("x.jpg"), &h, &w) == GRAFT_EIO && names_fifo("x.jpg"));
    /* What graft predict calls for each image it is given. */
    float x[32 * 32 * 3];
    CHECK(graft_image_load(at("x.jpg"), 32, 32, GRAFT_INTERP_BILINEAR, 0, x) == GRAFT_EIO);
    CHECK(names_fifo("x.jpg"));
}

/* Reads one pass of s; returns the samples served. */
static int one_pass(graft_source *s, graft_status *st)
{
    float x[4 * 8 * 8 * 3], y[4];
    int total = 0, n;
    *st = GRAFT_OK;
    for (int b = 0; b < s->length && *st == GRAFT_OK; b++) {
        *st = s->next(s, x, y, &n);
        if (*st == GRAFT_OK) total += n;
    }
    return total;
}

static void test_fifo_in_class_folder(void)
{
    CHECK(mkdir(at("data"), 0700) == 0 && mkdir(at("data/a"), 0700) == 0 &&
          mkdir(at("data/b"), 0700) == 0);
    CHECK(write_ppm(at("data/a/0.ppm"), 8, 8, 1) == 0 && write_ppm(at("data/a/1.ppm"), 8, 8, 2) == 0 &&
          write_ppm(at("data/b/0.ppm"), 8, 8, 3) == 0);
    CHECK(mkfifo(at("data/a/x.jpg"), 0600) == 0);
    graft_flow_cfg cfg = {.target_size = {8, 8}, .batch_size = 4, .quiet = 1,
                          .class_mode = GRAFT_CLASS_SPARSE};
    graft_source *s = NULL;
    CHECK_OK(graft_flow_from_directory(at("data"), NULL, &cfg, &s));
    if (!s) return;
    graft_status st;
    /* Skipped and counted like any unreadable image. */
    CHECK(graft_flow_samples(s) == 4);
    CHECK(one_pass(s, &st) == 3 && st == GRAFT_OK);
    CHECK(graft_flow_skipped(s) == 1);
    s->free(s);

    cfg.strict = 1;
    cfg.no_shuffle = 1;
    CHECK_OK(graft_flow_from_directory(at("data"), NULL, &cfg, &s));
    if (!s) return;
    one_pass(s, &st);
    CHECK_MSG(st == GRAFT_EIO && names_fifo("data/a/x.jpg"), "%s: %s", graft_status_name(st),
              graft_last_error());
    s->free(s);
}

static void test_fifo_tfjs(void)
{
    static const char *text =
        "{\"modelTopology\": {\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", "
        "\"layers\": [{\"class_name\": \"Dense\", \"config\": {\"name\": \"d1\", \"units\": 2, "
        "\"batch_input_shape\": [null, 3]}}]}}, \"weightsManifest\": [{\"paths\": [\"shard1\"], "
        "\"weights\": [{\"name\": \"d1/kernel\", \"shape\": [3, 2], \"dtype\": \"float32\"},"
        "{\"name\": \"d1/bias\", \"shape\": [2], \"dtype\": \"float32\"}]}]}";
    CHECK(write_file(at("model.json"), text, strlen(text)) == 0);
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(write_file(at("shard1"), w, sizeof w) == 0);
    graft_model *m = NULL;
    CHECK_OK(graft_model_load(at("model.json"), &m)); /* the good case first */
    graft_model_free(m);
    m = NULL;
    CHECK(unlink(at("shard1")) == 0 && mkfifo(at("shard1"), 0600) == 0);
    CHECK(graft_model_load(at("model.json"), &m) == GRAFT_EIO && m == NULL);
    CHECK_MSG(names_fifo("shard1") && strstr(graft_last_error(), "model.json"), "%s",
              graft_last_error());
    CHECK(mkfifo(at("fifo.json"), 0600) == 0);
    CHECK(graft_model_load(at("fifo.json"), &m) == GRAFT_EIO && m == NULL);
    CHECK_MSG(names_fifo("fifo.json"), "%s", graft_last_error());
}

static graft_model *small_model(void)
{
    graft_model *m = graft_model_new("small");
    graft_input(m, NULL, graft_shape1(3));
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    return m;
}

static void test_fifo_checkpoint_history_archive(void)
{
    graft_model *m = small_model();
    graft_train_state st;
    CHECK(mkfifo(at("checkpoint.graft"), 0600) == 0);
    CHECK(graft_train_state_load(m, at("checkpoint.graft"), NULL, &st) == GRAFT_EIO);
    CHECK_MSG(names_fifo("checkpoint.graft"), "%s", graft_last_error());
    graft_model_free(m);

    graft_history h;
    CHECK(mkfifo(at("history.json"), 0600) == 0);
    CHECK(graft_history_load_json(at("history.json"), &h, NULL, NULL) == GRAFT_EIO);
    CHECK_MSG(names_fifo("history.json"), "%s", graft_last_error());

    CHECK(mkfifo(at("data.zip"), 0600) == 0);
    CHECK(graft_archive_extract(at("data.zip"), at("unpacked")) == GRAFT_EIO);
    CHECK_MSG(names_fifo("data.zip"), "%s", graft_last_error());
}

/* A message that quotes the one before it (graft_last_error() as an
 * argument) keeps it: graft_fail formatted into the buffer it was reading. */
static void test_message_keeps_its_cause(void)
{
    graft_fail(GRAFT_EIO, "cannot create %s: %s", "/x/y", "No such file or directory");
    graft_fail(GRAFT_EIO, "writing checkpoint %s: %s", "/x/y", graft_last_error());
    CHECK_MSG(strcmp(graft_last_error(),
                     "writing checkpoint /x/y: cannot create /x/y: No such file or directory") == 0,
              "%s", graft_last_error());
    char long_cause[1200];
    memset(long_cause, 'c', sizeof long_cause - 1);
    long_cause[sizeof long_cause - 1] = '\0';
    graft_fail(GRAFT_EIO, "%s", long_cause);
    graft_fail(GRAFT_EIO, "outer: %s", graft_last_error());
    const char *e = graft_last_error();
    CHECK(strncmp(e, "outer: ccc", 10) == 0 && strlen(e) > 900 && !strstr(e + 1, "outer"));

    /* The case that showed it. */
    graft_model *m = small_model();
    graft_train_state st = {.epoch = 1};
    const char *path = at("no/such/folder/checkpoint.graft");
    CHECK(graft_train_state_save(m, NULL, &st, path) == GRAFT_EIO);
    /* The file named once, and the cause after it. */
    e = graft_last_error();
    const char *at_path = strstr(e, path);
    CHECK_MSG(at_path && !strstr(at_path + strlen(path), path) &&
                  strstr(at_path, strerror(ENOENT)) != NULL,
              "%s", e);
    graft_model_free(m);
}

static void test_many_classes(void)
{
    enum { K = 1100 };
    CHECK(mkdir(at("many"), 0700) == 0);
    static char names[K][16];
    static const char *list[K];
    for (int k = 0; k < K; k++) {
        snprintf(names[k], sizeof names[k], "c%04d", k);
        list[k] = names[k];
        char p[256];
        snprintf(p, sizeof p, "%s/%s", at("many"), names[k]);
        CHECK(mkdir(p, 0700) == 0);
        snprintf(p, sizeof p, "%s/%s/img.ppm", at("many"), names[k]);
        if (write_ppm(p, 2, 2, (unsigned)k) != 0) {
            CHECK(!"cannot write the class folders");
            return;
        }
    }
    graft_flow_cfg cfg = {.target_size = {2, 2}, .class_mode = GRAFT_CLASS_SPARSE, .quiet = 1};
    graft_source *s = NULL;
    CHECK_OK(graft_flow_from_directory(at("many"), NULL, &cfg, &s));
    if (s) {
        CHECK(graft_flow_num_classes(s) == K && graft_flow_samples(s) == K);
        CHECK(strcmp(graft_flow_class_name(s, K - 1), "c1099") == 0);
        CHECK(graft_flow_class_of(s, K - 1) == K - 1);
        s->free(s);
    }
    /* The same classes named by the caller, as graft train passes its run's. */
    cfg.classes = list;
    cfg.n_classes = K;
    CHECK_OK(graft_flow_from_directory(at("many"), NULL, &cfg, &s));
    if (s) {
        CHECK(graft_flow_num_classes(s) == K && graft_flow_samples(s) == K);
        s->free(s);
    }
    /* A bound far above any real dataset, refused with a message. */
    const char **huge = malloc(100001 * sizeof *huge);
    for (int k = 0; huge && k < 100001; k++) huge[k] = names[k % K];
    cfg.classes = huge;
    cfg.n_classes = 100001;
    CHECK(huge && graft_flow_from_directory(at("many"), NULL, &cfg, &s) == GRAFT_EINVAL && !s);
    CHECK_MSG(strstr(graft_last_error(), "at most 100000"), "%s", graft_last_error());
    free(huge);
}

/* Scratch files go to $TMPDIR (else /tmp), already unlinked. */
static void test_temp_files_in_tmpdir(void)
{
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    CHECK(mkdir(at("tmpdir"), 0700) == 0);
    setenv("TMPDIR", at("tmpdir"), 1);
    FILE *f = NULL;
    CHECK_OK(graft_temp_file(&f));
    char buf[6] = "";
    CHECK(f && fwrite("scratch", 1, 7, f) == 7 && fseek(f, 1, SEEK_SET) == 0 &&
          fread(buf, 1, 5, f) == 5 && memcmp(buf, "cratc", 5) == 0);
    if (f) fclose(f);
    CHECK(rmdir(at("tmpdir")) == 0); /* empty: nothing was left behind */

    setenv("TMPDIR", at("no_such_tmpdir"), 1);
    CHECK(graft_temp_file(&f) == GRAFT_EIO && f == NULL);
    CHECK(strstr(graft_last_error(), "no_such_tmpdir") != NULL);
    /* The feature cache past its memory bound: the error names the folder
     * and the variable to set. */
    static float x[40 * 3], y[40];
    for (int i = 0; i < 40 * 3; i++) x[i] = (float)(i % 7) - 3;
    for (int i = 0; i < 40; i++) y[i] = (float)(i % 2);
    graft_source *src = graft_source_arrays(x, y, 40, graft_shape1(3), 1, 8, 0, 0);
    graft_model *m = graft_model_new("spill");
    graft_input(m, NULL, graft_shape1(3));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "frozen", .units = 4, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.name = "head", .units = 1, .activation = GRAFT_SIGMOID});
    graft_model_set_trainable(m, 0, 2, 0);
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY};
    CHECK_OK(graft_model_compile(m, &cc));
    graft_fit_cfg fc = {.epochs = 1, .cache_max_bytes = 1};
    CHECK(src && graft_model_fit(m, src, &fc, NULL) == GRAFT_EIO);
    CHECK_MSG(strstr(graft_last_error(), "no_such_tmpdir") && strstr(graft_last_error(), "TMPDIR"),
              "%s", graft_last_error());
    graft_model_free(m);
    graft_source_free(src);
    if (saved) setenv("TMPDIR", saved, 1);
    else unsetenv("TMPDIR");
    free(saved);
}

int main(void)
{
    if (!mkdtemp(tmp)) return 1;
    signal(SIGALRM, on_alarm);
    alarm(60);
    RUN(test_open_regular);
    RUN(test_fifo_image);
    RUN(test_fifo_in_class_folder);
    RUN(test_fifo_tfjs);
    RUN(test_fifo_checkpoint_history_archive);
    alarm(0);
    RUN(test_message_keeps_its_cause);
    RUN(test_many_classes);
    RUN(test_temp_files_in_tmpdir);
    remove_tree(tmp);
    rmdir(tmp);
    return CHECK_SUMMARY();
}
