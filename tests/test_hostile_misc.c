/*
 * Hostile files and folders: NaN and Inf weights in Keras .h5, TF.js (raw,
 * float16 and quantized whose dequantized values overflow) and checkpoints
 * are refused by name; two graft processes never write one run folder, and a
 * lock dies with its holder (SIGKILL); config.json is valid UTF-8 whatever
 * bytes the class folders are named with; a train that fails early leaves no
 * folder behind. GRAFT_BIN (set by tests/run.sh) names the tool; the tests
 * of the tool skip without it or ../shared.
 */
#include "check.h"
#include "internal.h"
#include "io_util.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DATA "../shared/data/cats_and_dogs_filtered/train"

/* d1: Dense(3 -> 8), d2: Dense(8 -> 1) */
static graft_model *small_model(void)
{
    graft_model *m = graft_model_new("small");
    graft_input(m, "in", graft_shape1(3));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "d1", .units = 8, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.name = "d2", .units = 1, .activation = GRAFT_SIGMOID});
    graft_model_init_weights(m, 5);
    return m;
}

static void expect_refused(graft_status s, const char *needle)
{
    CHECK_MSG(s == GRAFT_EFORMAT, "got %s: %s", graft_status_name(s), graft_last_error());
    CHECK_MSG(strstr(graft_last_error(), needle) != NULL, "'%s' lacks '%s'", graft_last_error(),
              needle);
}

/* ------------------------------------------------------------ NaN and Inf weights */

static void test_h5_nonfinite(void)
{
    const char *path = io_tmp("nan.h5");
    graft_model *m = small_model();
    graft_layer *d1 = graft_model_find(m, "d1");
    graft_layer_weight_data(d1, 0)[17] = NAN;
    CHECK_OK(graft_model_save(m, path));
    graft_model *back = NULL;
    expect_refused(graft_model_load(path, &back),
                   "nan.h5: weight 'd1/kernel:0' of layer 'd1' holds NaN at index 17");
    CHECK(back == NULL);

    /* load_weights: refused, and the model keeps the weights it had */
    graft_layer_weight_data(d1, 0)[17] = 0.5f;
    graft_layer_weight_data(graft_model_find(m, "d2"), 1)[0] = -INFINITY;
    CHECK_OK(graft_model_save_weights(m, path));
    graft_model *fresh = small_model();
    float before = graft_layer_weight_data(graft_model_find(fresh, "d1"), 0)[17];
    expect_refused(graft_model_load_weights(fresh, path, NULL), "weight 'd2/bias:0' of layer 'd2' holds -Inf at index 0");
    CHECK(graft_layer_weight_data(graft_model_find(fresh, "d1"), 0)[17] == before);
    graft_model_free(fresh);
    graft_model_free(m);
}

static const char *TOPO =
    "{\"modelTopology\": {\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d1\", \"units\": 2, \"batch_input_shape\": [null, 3]}}]}},";

/* model.json with d1/kernel (3 x 2) as `kernel` says and a float32 bias (2). */
static const char *tfjs_model(const char *kernel, const void *kshard, size_t kbytes)
{
    static char text[2048];
    snprintf(text, sizeof text,
             "%s \"weightsManifest\": [{\"paths\": [\"k\", \"b\"], \"weights\": ["
             "{\"name\": \"d1/kernel\", \"shape\": [3, 2], %s},"
             "{\"name\": \"d1/bias\", \"shape\": [2], \"dtype\": \"float32\"}]}]}",
             TOPO, kernel);
    float bias[2] = {0.25f, -0.25f};
    const char *p = io_tmp("model.json");
    CHECK(io_write_file(p, text, strlen(text)) == 0);
    CHECK(io_write_file(io_tmp("k"), kshard, kbytes) == 0);
    CHECK(io_write_file(io_tmp("b"), bias, sizeof bias) == 0);
    return p;
}

static void test_tfjs_nonfinite(void)
{
    graft_model *m = NULL;
    float k[6] = {1, 2, 3, 4, 5, 6};
    const char *p = tfjs_model("\"dtype\": \"float32\"", k, sizeof k);
    CHECK_OK(graft_model_load(p, &m)); /* the good file first */
    graft_model_free(m);
    m = NULL;
    k[4] = NAN;
    p = tfjs_model("\"dtype\": \"float32\"", k, sizeof k);
    expect_refused(graft_model_load(p, &m), "model.json: weight 'd1/kernel' of layer 'd1' holds NaN at index 4");

    /* uint8 codes whose code * scale overflows float32 once dequantized */
    unsigned char codes[6] = {0, 1, 2, 3, 255, 7};
    p = tfjs_model("\"dtype\": \"float32\", \"quantization\": {\"dtype\": \"uint8\", \"scale\": 3e37, \"min\": 0}",
                   codes, sizeof codes);
    expect_refused(graft_model_load(p, &m), "weight 'd1/kernel' of layer 'd1' holds Inf at index 4");
    /* min past float32's range is refused when the manifest is read */
    p = tfjs_model("\"dtype\": \"float32\", \"quantization\": {\"dtype\": \"uint8\", \"scale\": 1, \"min\": -1e39}",
                   codes, sizeof codes);
    expect_refused(graft_model_load(p, &m), "not a finite float32");
    /* float16 with an Inf code (0x7c00) */
    uint16_t half[6] = {0x3c00, 0x3c00, 0x3c00, 0x3c00, 0x3c00, 0xfc00};
    p = tfjs_model("\"dtype\": \"float32\", \"quantization\": {\"dtype\": \"float16\"}", half, sizeof half);
    expect_refused(graft_model_load(p, &m), "holds -Inf at index 5");
    CHECK(m == NULL);
}

/* The check finds the first bad value wherever it falls in a long array. */
static void test_first_nonfinite(void)
{
    enum { N = 1000 };
    static float a[N + 1];
    for (int i = 0; i < N; i++) a[i] = (float)i - 500.0f;
    CHECK(graft_first_nonfinite(a, N) == N);
    a[N] = NAN; /* just past the end: not looked at */
    CHECK(graft_first_nonfinite(a, N) == N);
    const size_t at[] = {0, 63, 64, 130, 959, 960, 999};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        a[at[i]] = INFINITY;
        a[N - 1 - (N - 1 - at[i]) / 2] = NAN; /* a later one does not hide it */
        CHECK_MSG(graft_first_nonfinite(a, N) == at[i], "at %zu", at[i]);
        for (int k = 0; k < N; k++) a[k] = (float)k - 500.0f;
    }
    a[70] = FLT_MAX; /* the largest finite values are fine */
    a[71] = -FLT_MAX;
    CHECK(graft_first_nonfinite(a, N) == N);
    /* unaligned, as a checkpoint's packed arrays are */
    unsigned char raw[4 * 80 + 1];
    for (int i = 0; i < 80; i++) memcpy(raw + 1 + 4 * i, &a[i], 4);
    float inf = -INFINITY;
    memcpy(raw + 1 + 4 * 77, &inf, 4);
    CHECK(graft_first_nonfinite(raw + 1, 80) == 77);
    CHECK(strcmp(graft_nonfinite_name(raw + 1, 77), "-Inf") == 0);
}

static graft_model *compiled_model(void)
{
    graft_model *m = small_model();
    graft_compile_cfg cc = {.optimizer = graft_adam(0.01f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 1};
    CHECK_OK(graft_model_compile(m, &cc));
    return m;
}

static void test_checkpoint_nonfinite(void)
{
    const char *path = io_tmp("ckpt.graft");
    graft_model *m = compiled_model(), *fresh = compiled_model();
    graft_train_state st = {1, 0, 0}, got;
    CHECK_OK(graft_train_state_save(m, NULL, &st, path));
    CHECK_OK(graft_train_state_load(fresh, path, NULL, &got)); /* the good file first */

    graft_layer *d2 = graft_model_find(m, "d2");
    graft_layer_weight_data(d2, 0)[5] = INFINITY;
    CHECK_OK(graft_train_state_save(m, NULL, &st, path));
    float keep = graft_layer_weight_data(graft_model_find(fresh, "d2"), 0)[5];
    expect_refused(graft_train_state_load(fresh, path, NULL, &got),
                   "ckpt.graft: weight 'd2/kernel' of layer 'd2' holds Inf at index 5");
    CHECK(graft_layer_weight_data(graft_model_find(fresh, "d2"), 0)[5] == keep);

    graft_layer_weight_data(d2, 0)[5] = 0.5f;
    graft_layer *d1 = graft_model_find(m, "d1");
    if (m->opt_v) m->opt_v[d1->weights[1].offset + 3] = NAN;
    CHECK(m->opt_v != NULL);
    CHECK_OK(graft_train_state_save(m, NULL, &st, path));
    expect_refused(graft_train_state_load(fresh, path, NULL, &got),
                   "second moment of weight 'd1/bias' of layer 'd1' holds NaN at index 3");
    graft_model_free(fresh);
    graft_model_free(m);
}

/* ------------------------------------------------------------ the tool */

static const char *bin;
static char tmp[64], out[1 << 16], err[1 << 16];

static bool exists(const char *fmt, const char *a)
{
    char p[512];
    snprintf(p, sizeof p, fmt, a);
    return access(p, F_OK) == 0;
}

/* DIR/cls/ with n photos of the lesson's class `from` linked in. */
static int link_photos(const char *dir, const char *cls, const char *from, int n)
{
    char cwd[256], d[512];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    snprintf(d, sizeof d, "%s/%s", dir, cls);
    mkdir(dir, 0755);
    if (mkdir(d, 0755) != 0) return -1;
    for (int i = 0; i < n; i++) {
        char src[768], dst[768];
        snprintf(src, sizeof src, "%s/" DATA "/%s/%.3s.%d.jpg", cwd, from, from, i);
        snprintf(dst, sizeof dst, "%s/%d.jpg", d, i);
        if (symlink(src, dst) != 0) return -1;
    }
    return 0;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!n) return false;
        for (size_t i = 1; i < n; i++)
            if ((s[i] & 0xc0) != 0x80) return false;
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
            (c == 0xf4 && s[1] > 0x8f))
            return false;
        s += n;
    }
    return true;
}

/* Class folders named with Latin-1 bytes, under a data folder that is too. */
static void test_config_utf8(void)
{
    char data[128], a[1024], cfg[256];
    snprintf(data, sizeof data, "%s/dat\xff", tmp);
    CHECK(link_photos(data, "caf\xe9", "cats", 6) == 0 && link_photos(data, "dogs", "dogs", 6) == 0);
    /* a doubled slash in the path too: it is stored as one */
    snprintf(a, sizeof a, "train --data '%s//dat\xff' --base scratch --input-size 32 --epochs 1 --batch 4 "
                          "--out %s/utf --verbose 0", tmp, tmp);
    CHECK_MSG(graft("%s", a) == 0, "%s", err);
    snprintf(cfg, sizeof cfg, "%s/utf/config.json", tmp);
    static char text[1 << 14];
    slurp(cfg, text, sizeof text);
    CHECK(valid_utf8((const unsigned char *)text));
    cJSON *j = cJSON_Parse(text);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "classes");
    const cJSON *c0 = cJSON_GetArrayItem(cls, 0);
    CHECK_MSG(cJSON_IsString(c0) && strcmp(c0->valuestring, "caf//xE9") == 0, "%s", text);
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(j, "train_dir");
    CHECK_MSG(cJSON_IsString(td) && strstr(td->valuestring, "/dat//xFF") && !strstr(td->valuestring, "///"),
              "%s", text);
    cJSON_Delete(j);
    if (access(ORACLE, X_OK) == 0) {
        /* Python's json reads it with strict UTF-8 decoding */
        snprintf(a, sizeof a,
                 ORACLE " -c \"import json,sys; c=json.load(open(sys.argv[1],encoding='utf-8',errors='strict'));"
                        " sys.exit(0 if c['classes']==['caf//xE9','dogs'] else 1)\" %s", cfg);
        CHECK(system(a) == 0);
    }
    /* predictions name the folder as it is on disk, and the folders are found again */
    snprintf(a, sizeof a, "predict --model %s/utf --top 2 '%s/dogs/0.jpg'", tmp, data);
    CHECK_MSG(graft("%s", a) == 0 && strstr(out, "caf\xe9 "), "%s%s", out, err);
    snprintf(a, sizeof a, "evaluate --model %s/utf --data '%s'", tmp, data);
    CHECK_MSG(graft("%s", a) == 0 && strstr(out, "caf\xe9"), "%s%s", out, err);
    snprintf(a, sizeof a, "resume %s/utf", tmp); /* reopens the data from train_dir */
    CHECK_MSG(graft("%s", a) == 0, "%s", err);
}

static void hold_lock(const char *run, int *fd)
{
    char p[256], pid[32];
    snprintf(p, sizeof p, "%s/.lock", run);
    *fd = open(p, O_RDWR | O_CREAT, 0644);
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    CHECK(*fd >= 0 && flock(*fd, LOCK_EX | LOCK_NB) == 0 && ftruncate(*fd, 0) == 0 &&
          pwrite(*fd, pid, (size_t)n, 0) == n);
}

/* What `graft train --epochs 100000` writes into .lock, once it holds it
 * and has written its config (polled; a deadline only against a hang). */
static bool wait_for_holder(const char *run, pid_t pid)
{
    char p[256], c[256], text[64], want[32];
    snprintf(p, sizeof p, "%s/.lock", run);
    snprintf(c, sizeof c, "%s/config.json", run);
    snprintf(want, sizeof want, "%ld\n", (long)pid);
    for (int i = 0; i < 12000; i++) {
        slurp(p, text, sizeof text);
        if (strcmp(text, want) == 0 && access(c, F_OK) == 0) return true;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return false;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return false;
}

static void test_run_lock(void)
{
    char data[128], run[128], a[1024];
    snprintf(data, sizeof data, "%s/lockdata", tmp);
    snprintf(run, sizeof run, "%s/locked", tmp);
    CHECK(link_photos(data, "cats", "cats", 4) == 0 && link_photos(data, "dogs", "dogs", 4) == 0);
    const char *train = "train --data %s --base scratch --input-size 32 --batch 4 --out %s --verbose 0 --force --epochs ";
    snprintf(a, sizeof a, train, data, run);
    strcat(a, "1");
    CHECK_MSG(graft("%s", a) == 0, "%s", err);

    /* held by another process (this one): every writer is refused, one line */
    int fd;
    hold_lock(run, &fd);
    char want[256];
    snprintf(want, sizeof want, "%s is in use by another graft process (pid %ld)\n", run, (long)getpid());
    snprintf(a, sizeof a, "finetune %s", run);
    CHECK_MSG(graft("%s", a) == 1 && strncmp(err, "graft finetune: ", 16) == 0 && strcmp(err + 16, want) == 0, "%s", err);
    snprintf(a, sizeof a, "resume %s", run);
    CHECK_MSG(graft("%s", a) == 1 && strncmp(err, "graft resume: ", 14) == 0 && strcmp(err + 14, want) == 0, "%s", err);
    snprintf(a, sizeof a, train, data, run);
    strcat(a, "1");
    CHECK_MSG(graft("%s", a) == 1 && strstr(err, "graft train: ") && strstr(err, want), "%s", err);
    CHECK(exists("%s/model.h5", run)); /* the holder's run is untouched */
    close(fd);
    snprintf(a, sizeof a, "resume %s", run);
    CHECK_MSG(graft("%s", a) == 0, "%s", err);

    /* a graft training in it: refused with its pid; SIGKILLed: the lock is gone */
    snprintf(a, sizeof a, train, data, run);
    strcat(a, "100000");
    pid_t child = fork();
    if (child == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(bin, bin, "train", "--data", data, "--base",
              "scratch", "--input-size", "32", "--batch", "4", "--out", run, "--verbose", "0", "--force",
              "--epochs", "100000", (char *)NULL);
        _exit(127);
    }
    CHECK(child > 0 && wait_for_holder(run, child));
    snprintf(want, sizeof want, "%s is in use by another graft process (pid %ld)\n", run, (long)child);
    snprintf(a, sizeof a, "finetune %s", run);
    CHECK_MSG(graft("%s", a) == 1 && strstr(err, want), "%s", err);
    if (child > 0) {
        kill(child, SIGKILL);
        int st;
        CHECK(waitpid(child, &st, 0) == child && WIFSIGNALED(st));
    }
    snprintf(a, sizeof a, train, data, run);
    strcat(a, "1");
    CHECK_MSG(graft("%s", a) == 0, "%s", err);
}

/* `graft predict` on a model with a NaN weight: an error, not "nan" and 0. */
static void test_predict_refuses_nan(void)
{
    const char *path = io_tmp("nan_cli.h5");
    graft_model *m = graft_model_new("img");
    graft_input(m, "in", graft_shape3(16, 16, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv1", .filters = 2, .kernel_size = {3, 3}});
    graft_global_average_pooling2d(m, NULL, "gap");
    graft_dense(m, NULL, (graft_dense_cfg){.name = "out", .units = 2, .activation = GRAFT_SOFTMAX});
    graft_model_init_weights(m, 3);
    float *k = graft_layer_weight_data(graft_model_find(m, "conv1"), 0);
    char a[512];
    snprintf(a, sizeof a, "predict --model %s " DATA "/cats/cat.0.jpg", path);
    CHECK_OK(graft_model_save(m, path));
    CHECK_MSG(graft("%s", a) == 0 && !strstr(out, "nan"), "%s%s", out, err); /* the good file first */
    k[17] = NAN;
    CHECK_OK(graft_model_save(m, path));
    graft_model_free(m);
    CHECK_MSG(graft("%s", a) == 1 && !strstr(out, "nan") &&
                  strstr(err, "nan_cli.h5: weight 'conv1/kernel:0' of layer 'conv1' holds NaN at index 17\n"),
              "%s%s", out, err);
}

/* A train that fails before its first epoch ends leaves no folder behind;
 * a folder that was there keeps what it held, and nothing more. */
static void test_failed_train_cleans_up(void)
{
    char data[128], bad[128], a[1024], run[256];
    snprintf(data, sizeof data, "%s/cdata", tmp);
    CHECK(link_photos(data, "cats", "cats", 3) == 0 && link_photos(data, "dogs", "dogs", 3) == 0);
    /* bad weights file: fails while building the model */
    snprintf(bad, sizeof bad, "%s/garbage.h5", tmp);
    CHECK(io_write_file(bad, "not hdf5", 8) == 0);
    snprintf(run, sizeof run, "%s/new", tmp);
    snprintf(a, sizeof a, "train --data %s --base mobilenet --alpha 0.25 --weights %s --input-size 32 "
                          "--out %s/deeper/run", data, bad, run);
    CHECK_MSG(graft("%s", a) == 1 && strstr(err, "garbage.h5"), "%s", err);
    CHECK(!exists("%s", run));
    /* unreadable images: fails in the first epoch, after config and checkpoint were written */
    snprintf(bad, sizeof bad, "%s/baddata", tmp);
    mkdir(bad, 0755);
    for (int c = 0; c < 2; c++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%c", bad, 'a' + c);
        mkdir(p, 0755);
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%c/%d.jpg", bad, 'a' + c, i);
            CHECK(io_write_file(p, "not a jpeg", 10) == 0);
        }
    }
    snprintf(a, sizeof a, "train --data %s --base scratch --input-size 32 --epochs 1 --out %s --verbose 0", bad, run);
    CHECK_MSG(graft("%s", a) == 1 && strstr(err, "unreadable"), "%s", err);
    CHECK(!exists("%s", run));
    /* the same into a folder of the user's */
    CHECK(mkdir(run, 0755) == 0);
    char notes[300];
    snprintf(notes, sizeof notes, "%s/notes.txt", run);
    CHECK(io_write_file(notes, "mine", 4) == 0);
    CHECK(graft("%s", a) == 1);
    int n = dir_entries(run);
    CHECK_MSG(n == 1 && exists("%s/notes.txt", run), "%d entries", n);
    /* one that succeeds keeps its folder */
    snprintf(a, sizeof a, "train --data %s --base scratch --input-size 32 --epochs 1 --out %s/kept --verbose 0",
             data, tmp);
    CHECK_MSG(graft("%s", a) == 0 && exists("%s/kept/model.h5", tmp), "%s", err);
}

int main(void)
{
    if (io_tmp_init() != 0) return 1;
    RUN(test_first_nonfinite);
    RUN(test_h5_nonfinite);
    RUN(test_tfjs_nonfinite);
    RUN(test_checkpoint_nonfinite);
    bin = tool_bin();
    if (access(bin, X_OK) != 0 || access(DATA "/cats/cat.0.jpg", R_OK) != 0) {
        printf("skipping the tests of the tool: no %s or ../shared\n", bin);
        return CHECK_SUMMARY();
    }
    snprintf(tmp, sizeof tmp, "/tmp/graft_hostile_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    tool_output(tmp, out, sizeof out, err, sizeof err);
    RUN(test_predict_refuses_nan);
    RUN(test_config_utf8);
    RUN(test_run_lock);
    RUN(test_failed_train_cleans_up);
    remove_tree(tmp);
    rmdir(tmp);
    return CHECK_SUMMARY();
}
