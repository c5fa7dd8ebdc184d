/*
 * A full disk during `graft finetune`: the LD_PRELOAD shim
 * (tests/shim/failwrite.c, built beside this test) fails the n-th write,
 * fsync, ftruncate or close of a written file in the run folder, for every n
 * a whole finetune makes, and then the same with every call from the n-th on
 * failing (a disk that stays full). After each run every file of the run
 * folder must be the old one or a complete new one (byte for byte those of a
 * run without failures, or a checkpoint and history.json that load), no
 * temporary file may be left, the exit status must be non-zero with the
 * cause on stderr whenever a call failed, and the process must never die of
 * a signal.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "check.h"
#include "graft.h"
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define H5_025 "../shared/models/mobilenet_2_5_224_tf_no_top.h5"

static char root[64], shim[1024], bin[1024], self_exe[1024];
static char err[1 << 16];

/* The files a finetune rewrites, compared byte for byte. */
static const char *const exact[] = {"config.json", "log.csv", "accuracy_loss.png", "model.h5"};
#define N_EXACT (int)(sizeof exact / sizeof *exact)

typedef struct {
    char *data;
    size_t len;
    bool present;
} blob;

static blob read_blob(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    blob b = {NULL, 0, false};
    FILE *f = fopen(p, "rb");
    if (!f) return b;
    b.present = true;
    size_t cap = 1 << 16;
    b.data = malloc(cap);
    for (size_t n; b.data && (n = fread(b.data + b.len, 1, cap - b.len, f)) > 0;) {
        b.len += n;
        if (b.len < cap) continue;
        char *g = realloc(b.data, cap *= 2);
        if (!g) free(b.data);
        b.data = g;
    }
    if (!b.data) b.len = 0;
    fclose(f);
    return b;
}

static bool same(const blob *a, const blob *b)
{
    return a->present == b->present && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Hidden temporary files (".NAME.tmp-*") left in dir. */
static int leftovers(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp-")) n++;
    if (d) closedir(d);
    return n;
}

/* Copies the plain files of one folder into a new one. */
static int copy_dir(const char *from, const char *to)
{
    if (mkdir(to, 0755) != 0) return -1;
    DIR *d = opendir(from);
    if (!d) return -1;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        blob b = read_blob(from, e->d_name);
        snprintf(p, sizeof p, "%s/%s", to, e->d_name);
        FILE *f = fopen(p, "wb");
        if (!b.present || !f || fwrite(b.data, 1, b.len, f) != b.len) rc = -1;
        if (f && fclose(f) != 0) rc = -1;
        free(b.data);
    }
    closedir(d);
    return rc;
}

/* Runs exe with args; the shim's variables when n != 0 (n < 0: counting,
 * nothing fails). Returns the wait status; stderr in err[]. */
static int run_exe(const char *exe, const char *const *args, const char *dir, long n, bool stay,
                   const char *mark, const char *count)
{
    char err_path[128];
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", root);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        if (fd < 0 || null < 0 || dup2(fd, 2) < 0 || dup2(null, 1) < 0) _exit(126);
        alarm(300); /* a hang fails the test (as a signal) rather than stalling it */
        /* graft re-executes itself to set this; the shim's filter forbids exec. */
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        if (n != 0) {
            char v[32];
            snprintf(v, sizeof v, "%ld", n > 0 ? n : 0);
            setenv("FAILWRITE_DIR", dir, 1);
            setenv("FAILWRITE_N", v, 1);
            setenv("FAILWRITE_STAY", stay ? "1" : "0", 1);
            setenv("FAILWRITE_ERRNO", "28", 1); /* ENOSPC */
            if (mark) setenv("FAILWRITE_MARK", mark, 1);
            if (count) setenv("FAILWRITE_COUNT", count, 1);
            setenv("LD_PRELOAD", shim, 1);
            /* Under ASan: the shim comes first; LSan's leak check at exit
             * never finishes under the filter (see the shim). */
            setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);
        }
        char *argv[32] = {(char *)exe};
        for (int k = 0; args[k] && k < 30; k++) argv[k + 1] = (char *)args[k];
        execv(exe, argv);
        _exit(127);
    }
    int status = -1;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) status = -1;
    slurp(err_path, err, sizeof err);
    return status;
}

static int run(const char *const *args, const char *dir, long n, bool stay, const char *mark,
               const char *count)
{
    return run_exe(bin, args, dir, n, stay, mark, count);
}

static int finetune(const char *dir, long n, bool stay, const char *mark, const char *count)
{
    const char *args[] = {"finetune", dir, "--unfreeze", "6", "--epochs", "1", "--verbose", "0",
                          NULL};
    return run(args, dir, n, stay, mark, count);
}


/* ------------------------------------------------------------ the library alone */

/* conv -> BatchNormalization -> dense; the moving mean is not zero, as it
 * was when a lost write left zeros there. */
static graft_model *small_model(uint64_t seed)
{
    graft_model *m = graft_model_new("small");
    graft_input(m, "input_1", graft_shape3(6, 6, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv1", .filters = 4, .kernel_size = {3, 3}});
    graft_layer *bn = graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "conv1_bn"});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3, .activation = GRAFT_SOFTMAX});
    if (graft_model_status(m) != GRAFT_OK || graft_model_init_weights(m, seed) != GRAFT_OK) {
        graft_model_free(m);
        return NULL;
    }
    for (int k = 0; k < graft_layer_num_weights(bn); k++) {
        graft_shape sh = graft_layer_weight_shape(bn, k);
        float *d = graft_layer_weight_data(bn, k);
        for (size_t i = 0; i < graft_shape_size(&sh); i++) d[i] = 0.5f + (float)(seed + i + k);
    }
    return m;
}

/* The child: saves small_model(2) to path as a full model or weights only. */
static int save_child(const char *kind, const char *path)
{
    graft_model *m = small_model(2);
    if (!m) return 2;
    graft_status s = strcmp(kind, "weights") == 0 ? graft_model_save_weights(m, path)
                                                  : graft_model_save(m, path);
    if (s != GRAFT_OK) fprintf(stderr, "%s\n", graft_last_error());
    graft_model_free(m);
    return s == GRAFT_OK ? 0 : 3;
}

static bool write_blob(const char *path, const blob *b)
{
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(b->data, 1, b->len, f) == b->len;
    return f && fclose(f) == 0 && ok;
}

/* Every failure while graft_model_save / graft_model_save_weights write model.h5
 * over an old one: the old file or the new one, a status, never a signal. */
static void library_saves(const char *kind)
{
    char dir[128], ref[128], path[160], mark[128], count[128];
    snprintf(dir, sizeof dir, "%s/lib_%s", root, kind);
    snprintf(ref, sizeof ref, "%s/lib_%s_ref", root, kind);
    snprintf(mark, sizeof mark, "%s/fired", root);
    snprintf(count, sizeof count, "%s/count.txt", root);
    CHECK(mkdir(dir, 0755) == 0 && mkdir(ref, 0755) == 0);
    graft_model *old_m = small_model(1), *new_m = small_model(2);
    CHECK(old_m && new_m);
    if (!old_m || !new_m) {
        graft_model_free(old_m);
        graft_model_free(new_m);
        return;
    }
    bool full = strcmp(kind, "model") == 0;
    snprintf(path, sizeof path, "%s/model.h5", dir);
    CHECK_OK(full ? graft_model_save(old_m, path) : graft_model_save_weights(old_m, path));
    blob old_b = read_blob(dir, "model.h5");
    snprintf(path, sizeof path, "%s/model.h5", ref);
    CHECK_OK(full ? graft_model_save(new_m, path) : graft_model_save_weights(new_m, path));
    blob new_b = read_blob(ref, "model.h5");
    CHECK(old_b.present && new_b.present && !same(&old_b, &new_b));
    graft_model_free(old_m);
    graft_model_free(new_m);
    snprintf(path, sizeof path, "%s/model.h5", dir);
    const char *args[] = {"save-child", kind, path, NULL};

    /* The child's save gives the reference's bytes; count its calls. */
    int st = run_exe(self_exe, args, dir, -1, false, NULL, count);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "counting save: %s", err);
    blob b = read_blob(dir, "model.h5");
    CHECK(same(&b, &new_b));
    free(b.data);
    char text[32];
    slurp(count, text, sizeof text);
    long calls = atol(text);
    printf("  saving the %s makes %ld counted write calls\n", full ? "model" : "weights", calls);
    CHECK_MSG(calls >= 3, "%ld calls counted", calls);

    for (int stay = 0; stay < 2; stay++) {
        for (long n = 1; n <= calls + !stay; n++) {
            const char *mode = stay ? "from call" : "call";
            CHECK(write_blob(path, &old_b));
            unlink(mark);
            st = run_exe(self_exe, args, dir, n, stay, mark, NULL);
            bool fired = access(mark, F_OK) == 0;
            CHECK_MSG(!WIFSIGNALED(st), "%s: %s %ld: killed by signal %d", kind, mode, n,
                      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
            int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            if (fired)
                CHECK_MSG(rc == 3 && strstr(err, "No space left on device") && strstr(err, path),
                          "%s: %s %ld failed: exit %d, %s", kind, mode, n, rc, err);
            else
                CHECK_MSG(n > calls && rc == 0, "%s: %s %ld of %ld: exit %d, %s", kind, mode, n,
                          calls, rc, err);
            b = read_blob(dir, "model.h5");
            CHECK_MSG(same(&b, &old_b) || same(&b, &new_b),
                      "%s: %s %ld: model.h5 is neither the old file nor the new one", kind, mode, n);
            CHECK_MSG(rc != 0 || same(&b, &new_b), "%s: %s %ld: exit 0 with the old file", kind,
                      mode, n);
            free(b.data);
            CHECK_MSG(leftovers(dir) == 0, "%s: %s %ld: temporary files left", kind, mode, n);
        }
    }
    free(old_b.data);
    free(new_b.data);
}

static void test_save_model_fails_cleanly(void) { library_saves("model"); }

static void test_save_weights_fails_cleanly(void) { library_saves("weights"); }

/* ------------------------------------------------------------ the tool */

/* Eight training and four validation photos, as links. */
static int make_data(void)
{
    return lesson_subset(path_in(root, "data"), 4, 2, 0);
}

/* A checkpoint is complete when its CRC-32 (the last 4 bytes) covers the rest. */
static bool checkpoint_complete(const blob *b)
{
    if (!b->present || b->len < 12 || memcmp(b->data, "GRAFTCKP", 8) != 0) return false;
    uint32_t stored;
    memcpy(&stored, b->data + b->len - 4, 4);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)b->data, (uInt)(b->len - 4));
    return (uint32_t)crc == stored;
}

/* history.json loads and holds the old epochs or the new ones (the losses,
 * not the seconds, which differ from run to run). */
static bool history_ok(const char *dir, const graft_history *old_h, const graft_history *new_h)
{
    char p[512];
    snprintf(p, sizeof p, "%s/history.json", dir);
    graft_history h;
    if (graft_history_load_json(p, &h, NULL, NULL) != GRAFT_OK) {
        fprintf(stderr, "  %s\n", graft_last_error());
        return false;
    }
    const graft_history *want = h.n == old_h->n ? old_h : new_h;
    bool ok = h.n == want->n;
    for (int i = 0; ok && i < h.n; i++) ok = h.loss[i] == want->loss[i] && h.epoch[i] == want->epoch[i];
    graft_history_free(&h);
    return ok;
}

static bool load_history(const char *dir, graft_history *h)
{
    char p[512];
    snprintf(p, sizeof p, "%s/history.json", dir);
    return graft_history_load_json(p, h, NULL, NULL) == GRAFT_OK;
}

typedef struct {
    char base[128], ref[128];
    blob old_files[N_EXACT], new_files[N_EXACT], old_ckpt, new_ckpt;
    graft_history old_h, new_h;
    long calls; /* counted calls of a finetune without failures */
} fixture;

static fixture fx;
static bool have_fixture;

/* The run a finetune starts from, one finetuned without failures, and the
 * number of calls the shim counts in a finetune. */
static bool setup(void)
{
    snprintf(fx.base, sizeof fx.base, "%s/base", root);
    snprintf(fx.ref, sizeof fx.ref, "%s/ref", root);
    char data[128];
    snprintf(data, sizeof data, "%s/data", root);
    const char *train[] = {"train", "--data", data, "--base", "mobilenet", "--alpha", "0.25",
                           "--weights", H5_025, "--input-size", "32", "--head", "dropout",
                           "--epochs", "1", "--batch", "8", "--out", fx.base, "--verbose", "0",
                           NULL};
    int st = run(train, fx.base, 0, false, NULL, NULL);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "graft train: %s", err);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) return false;
    CHECK(copy_dir(fx.base, fx.ref) == 0);
    st = finetune(fx.ref, 0, false, NULL, NULL);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "graft finetune: %s", err);
    for (int i = 0; i < N_EXACT; i++) {
        fx.old_files[i] = read_blob(fx.base, exact[i]);
        fx.new_files[i] = read_blob(fx.ref, exact[i]);
        CHECK_MSG(fx.old_files[i].present && fx.new_files[i].present &&
                      !same(&fx.old_files[i], &fx.new_files[i]),
                  "%s: missing, or unchanged by the finetune", exact[i]);
    }
    fx.old_ckpt = read_blob(fx.base, "checkpoint.graft");
    fx.new_ckpt = read_blob(fx.ref, "checkpoint.graft");
    CHECK(checkpoint_complete(&fx.old_ckpt) && checkpoint_complete(&fx.new_ckpt));
    CHECK(load_history(fx.base, &fx.old_h) && load_history(fx.ref, &fx.new_h));
    CHECK(fx.old_h.n == 1 && fx.new_h.n == 2);

    /* Counting: the shim loaded, nothing failed, the same files. */
    char dir[128], count[128];
    snprintf(dir, sizeof dir, "%s/count", root);
    snprintf(count, sizeof count, "%s/count.txt", root);
    CHECK(copy_dir(fx.base, dir) == 0);
    st = finetune(dir, -1, false, NULL, count);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "counting run: %s", err);
    char text[32];
    slurp(count, text, sizeof text);
    fx.calls = atol(text);
    printf("  a finetune makes %ld counted write calls\n", fx.calls);
    CHECK_MSG(fx.calls >= 20, "the shim counted %ld calls (not loaded?)", fx.calls);
    for (int i = 0; i < N_EXACT; i++) {
        blob b = read_blob(dir, exact[i]);
        CHECK_MSG(same(&b, &fx.new_files[i]), "%s differs under the shim", exact[i]);
        free(b.data);
    }
    return check_failures_in_test == 0;
}

/* Which of the files a failure message named, over all runs: each writer must
 * have been hit. */
static const char *const writers[] = {"config.json", "checkpoint.graft", "history.json",
                                      "log.csv", "accuracy_loss.png", "model.h5"};
#define N_WRITERS (int)(sizeof writers / sizeof *writers)

/* One finetune with the n-th counted call failing (and those after, if stay). */
static void one_run(long n, bool stay, bool named[N_WRITERS])
{
    char dir[128], mark[128];
    snprintf(dir, sizeof dir, "%s/w", root);
    snprintf(mark, sizeof mark, "%s/fired", root);
    remove_tree(dir);
    rmdir(dir);
    unlink(mark);
    if (copy_dir(fx.base, dir) != 0) {
        CHECK_MSG(false, "cannot copy %s", fx.base);
        return;
    }
    int st = finetune(dir, n, stay, mark, NULL);
    bool fired = access(mark, F_OK) == 0;
    const char *mode = stay ? "from call" : "call";
    CHECK_MSG(!WIFSIGNALED(st), "%s %ld: killed by signal %d: %s", mode, n,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, err);
    if (WIFSIGNALED(st)) return;
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (fired) {
        CHECK_MSG(rc != 0, "%s %ld failed, yet graft exited 0", mode, n);
        CHECK_MSG(rc == 0 || strstr(err, "No space left on device"),
                  "%s %ld: exit %d, the cause is not on stderr: %s", mode, n, rc, err);
        for (int i = 0; i < N_WRITERS; i++)
            if (strstr(err, writers[i])) named[i] = true;
    } else {
        CHECK_MSG(n > fx.calls, "%s %ld of %ld did not fire", mode, n, fx.calls);
        CHECK_MSG(rc == 0, "%s %ld: nothing failed, exit %d: %s", mode, n, rc, err);
    }
    for (int i = 0; i < N_EXACT; i++) {
        blob b = read_blob(dir, exact[i]);
        bool is_old = same(&b, &fx.old_files[i]), is_new = same(&b, &fx.new_files[i]);
        CHECK_MSG(is_old || is_new, "%s %ld: %s is neither the old file nor the new one (%zu bytes)",
                  mode, n, exact[i], b.len);
        CHECK_MSG(rc != 0 || is_new, "%s %ld: exit 0 but %s is the old file", mode, n, exact[i]);
        free(b.data);
    }
    blob ck = read_blob(dir, "checkpoint.graft");
    CHECK_MSG(same(&ck, &fx.old_ckpt) || checkpoint_complete(&ck),
              "%s %ld: checkpoint.graft is damaged (%zu bytes)", mode, n, ck.len);
    CHECK_MSG(rc != 0 || ck.len == fx.new_ckpt.len, "%s %ld: exit 0 with an old checkpoint", mode, n);
    free(ck.data);
    CHECK_MSG(history_ok(dir, &fx.old_h, &fx.new_h), "%s %ld: history.json is damaged", mode, n);
    CHECK_MSG(leftovers(dir) == 0, "%s %ld: %d temporary files left", mode, n, leftovers(dir));
    char p[256];
    snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    CHECK_MSG(access(p, F_OK) != 0, "%s %ld: wrote model.weights.h5 instead", mode, n);
}

static void test_setup(void) { have_fixture = setup(); }

static void test_each_write_fails_once(void)
{
    if (!have_fixture) return;
    bool named[N_WRITERS] = {false};
    /* One past the count: a run in which nothing fails must succeed too. */
    for (long n = 1; n <= fx.calls + 1; n++) one_run(n, false, named);
    for (int i = 0; i < N_WRITERS; i++)
        CHECK_MSG(named[i], "no failure hit %s", writers[i]);
}

static void test_disk_stays_full(void)
{
    if (!have_fixture) return;
    bool named[N_WRITERS] = {false};
    for (long n = 1; n <= fx.calls; n++) one_run(n, true, named);
    for (int i = 0; i < N_WRITERS; i++)
        CHECK_MSG(named[i], "no failure hit %s", writers[i]);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "save-child") == 0) return save_child(argv[2], argv[3]);
    const char *b = getenv("GRAFT_BIN");
    snprintf(bin, sizeof bin, "%s", b ? b : "build/graft");
    ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    self_exe[len > 0 ? len : 0] = '\0';
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", self_exe);
    snprintf(shim, sizeof shim, "%s/shim/failwrite.so", len > 0 ? dirname(dir) : ".");
#if !defined(__x86_64__) || !defined(__linux__)
    printf("  skipped: the shim works on x86-64 Linux only\n");
    return CHECK_SUMMARY();
#endif
    if (len <= 0 || access(shim, R_OK) != 0) {
        fprintf(stderr, "test_write_failures needs %s\n", shim);
        return 1;
    }
    snprintf(root, sizeof root, "/tmp/graft_wfail_XXXXXX");
    if (!mkdtemp(root)) return 1;
    RUN(test_save_model_fails_cleanly);
    RUN(test_save_weights_fails_cleanly);
    if (access(LESSON_DATA "/train/cats/cat.0.jpg", R_OK) != 0 || access(H5_025, R_OK) != 0) {
        printf("  skipped the tool's tests: %s or %s is missing\n", LESSON_DATA, H5_025);
    } else if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test_write_failures needs %s\n", bin);
        tests_failed++;
    } else if (make_data() != 0) {
        fprintf(stderr, "cannot lay out test data in %s\n", root);
        tests_failed++;
    } else {
        RUN(test_setup);
        RUN(test_each_write_fails_once);
        RUN(test_disk_stays_full);
    }
    remove_tree(root);
    rmdir(root);
    return CHECK_SUMMARY();
}
