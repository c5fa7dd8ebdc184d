/*
 * .h5 files are read in a watchdogged child process (src/io/h5_child.c):
 * the files libhdf5 itself loops forever or crashes on
 * (fuzz/libhdf5_findings/) end every reader with an error naming the file,
 * within GRAFT_H5_TIMEOUT, and leave no process behind; good files load the
 * same as in-process (GRAFT_H5_CHILD=0), large weights included
 * (test_h5_child_corpus: every corpus file); the graft tool ends on them with
 * a message, and at once on Ctrl-C.
 * Runs alone (tests/run.sh): readers must be stopped within GRAFT_H5_TIMEOUT.
 */
#include "check.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <graft.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#define FINDINGS "fuzz/libhdf5_findings"
#define HANG FINDINGS "/h5hg-free-space-of-size-zero-hang.h5"

static char tmp[] = "/tmp/graft_h5child_XXXXXX";
static const char *bin;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A hang that slips through ends the test with a message, not forever. */
static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_h5_child: a read did not end within 15 minutes\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(2);
}

static graft_model *dense_model(int in, int units)
{
    graft_model *m = graft_model_new("m");
    graft_input(m, "input_1", graft_shape1(in));
    graft_dense(m, NULL, (graft_dense_cfg){.name = "dense", .units = units});
    if (graft_model_status(m) != GRAFT_OK || graft_model_init_weights(m, 1) != GRAFT_OK) {
        graft_model_free(m);
        return NULL;
    }
    return m;
}

static void count_weight(const char *layer, const char *weight, int rank, const long long *dims,
                         void *ctx)
{
    (void)layer, (void)weight, (void)rank, (void)dims;
    ++*(int *)ctx;
}

/* One reader on one finding: an error naming the file, in bounded time. */
static void expect_contained(const char *what, graft_status s, const char *path, double t0)
{
    double took = now() - t0;
    const char *msg = graft_last_error();
    CHECK_MSG(s != GRAFT_OK, "%s on %s succeeded", what, path);
    CHECK_MSG(s == GRAFT_OK || strstr(msg, path), "%s on %s: '%s'", what, path, msg);
    CHECK_MSG(took < 30, "%s on %s took %.1f s", what, path, took);
    CHECK_MSG(no_children(), "%s on %s left a process", what, path);
}

static void test_findings_contained(void)
{
    DIR *d = opendir(FINDINGS);
    if (!d) {
        printf("skip - no %s here\n", FINDINGS);
        return;
    }
    CHECK(setenv("GRAFT_H5_TIMEOUT", "3", 1) == 0);
    graft_model *into = dense_model(2, 2);
    CHECK(into != NULL);
    int files = 0;
    struct dirent *e;
    while (into && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") != 0) continue;
        files++;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FINDINGS, e->d_name);
        graft_model *m = NULL;
        double t0 = now();
        expect_contained("graft_model_load", graft_model_load(path, &m), path, t0);
        graft_model_free(m);
        t0 = now();
        graft_load_opts by_name = {.by_name = 1};
        expect_contained("graft_model_load_weights", graft_model_load_weights(into, path, &by_name),
                         path, t0);
        /* Listing reads no weight data: the one finding inside H5Dread lists. */
        int n = 0;
        t0 = now();
        graft_status s = graft_weights_file_list(path, count_weight, &n, NULL);
        if (strstr(path, "h5dread")) CHECK_OK(s);
        else expect_contained("graft_weights_file_list", s, path, t0);
        CHECK(no_children());
        t0 = now();
        char *text = NULL;
        s = graft_h5_metadata_read(path, "model_config", &text);
        free(text);
        if (strstr(path, "hang") || strstr(path, "larger-than-heap"))
            expect_contained("graft_h5_metadata_read", s, path, t0);
    }
    closedir(d);
    CHECK(files >= 4);
    /* Which way each ended: the loop by the deadline, the crash by its signal. */
    graft_model *m = NULL;
    double t0 = now();
    CHECK(graft_model_load(HANG, &m) != GRAFT_OK); /* it loops reading model_config */
    CHECK_MSG(strstr(graft_last_error(), "stopped responding") &&
                  strstr(graft_last_error(), "GRAFT_H5_TIMEOUT"),
              "%s", graft_last_error());
    CHECK_MSG(now() - t0 >= 2.5, "gave up after %.1f s, before GRAFT_H5_TIMEOUT", now() - t0);
    CHECK(graft_model_load(FINDINGS "/h5hg-read-object-larger-than-heap.h5", &m) != GRAFT_OK);
    /* (an ASan build's child reports the overlap and exits instead) */
    CHECK_MSG(strstr(graft_last_error(), "crashed reading it (signal") ||
                  strstr(graft_last_error(), "ended without an answer"),
              "%s", graft_last_error());
    CHECK(no_children());
    graft_model_free(into);
    unsetenv("GRAFT_H5_TIMEOUT");
}

static void test_timeout_switch_checked(void)
{
    graft_model *m = dense_model(2, 2);
    CHECK(m != NULL);
    CHECK(setenv("GRAFT_H5_TIMEOUT", "soon", 1) == 0);
    CHECK(graft_model_load_weights(m, "tests/fixtures/hostile_h5/plain.h5", NULL) == GRAFT_EINVAL);
    CHECK_MSG(strstr(graft_last_error(), "GRAFT_H5_TIMEOUT='soon'"), "%s", graft_last_error());
    CHECK(setenv("GRAFT_H5_TIMEOUT", "0", 1) == 0);
    CHECK(graft_model_load_weights(m, "tests/fixtures/hostile_h5/plain.h5", NULL) == GRAFT_EINVAL);
    unsetenv("GRAFT_H5_TIMEOUT");
    CHECK_OK(graft_model_load_weights(m, "tests/fixtures/hostile_h5/plain.h5", NULL));
    CHECK(no_children());
    graft_model_free(m);
}

/* The child's own messages come back verbatim: the same as in-process. */
static void test_messages_verbatim(void)
{
    static const char *const files[] = {"tests/fixtures/hostile_h5/external_link.h5",
                                        "tests/fixtures/hostile_h5/external_storage.h5",
                                        "tests/fixtures/hostile_h5/missing.h5"};
    graft_model *m = dense_model(2, 2);
    CHECK(m != NULL);
    for (size_t i = 0; m && i < sizeof files / sizeof *files; i++) {
        char child_msg[2048];
        graft_status a = graft_model_load_weights(m, files[i], NULL);
        snprintf(child_msg, sizeof child_msg, "%s", graft_last_error());
        CHECK(setenv("GRAFT_H5_CHILD", "0", 1) == 0);
        graft_status b = graft_model_load_weights(m, files[i], NULL);
        unsetenv("GRAFT_H5_CHILD");
        CHECK_MSG(a != GRAFT_OK && a == b, "%s: %d vs %d", files[i], (int)a, (int)b);
        CHECK_MSG(strcmp(child_msg, graft_last_error()) == 0, "'%s' vs '%s'", child_msg,
                  graft_last_error());
        CHECK(strstr(child_msg, files[i]) != NULL);
    }
    CHECK(no_children());
    graft_model_free(m);
}

/* A model with a 12 MB kernel (more than a socket buffer, several of the
 * reader's chunks) and a config: loaded through the child bit for bit. */
static void test_large_model_round_trip(void)
{
    graft_model *m = dense_model(1000, 3001);
    CHECK(m != NULL);
    if (!m) return;
    const char *path = path_in(tmp, "big.h5");
    CHECK_OK(graft_model_save(m, path));
    graft_model *back = NULL;
    CHECK_OK(graft_model_load(path, &back));
    if (back) {
        for (int i = 0; i < 2; i++) {
            size_t n = i == 0 ? 1000 * 3001 : 3001;
            const float *a = graft_layer_weight_data(graft_model_find(m, "dense"), i);
            const float *b = graft_layer_weight_data(graft_model_find(back, "dense"), i);
            CHECK(a && b && memcmp(a, b, n * sizeof *a) == 0);
        }
    }
    /* Loaded twice into one model while the first reader is still open. */
    graft_model *again = dense_model(1000, 3001);
    CHECK_OK(graft_model_load_weights(again, path, NULL));
    CHECK(again && memcmp(graft_layer_weight_data(graft_model_find(again, "dense"), 0),
                          graft_layer_weight_data(graft_model_find(m, "dense"), 0),
                          1000 * 3001 * sizeof(float)) == 0);
    int n = 0;
    CHECK_OK(graft_weights_file_list(path, count_weight, &n, NULL));
    CHECK(n == 2);
    /* A shape mismatch is found by graft's side; the child still ends. */
    graft_model *other = dense_model(1000, 3000);
    CHECK(graft_model_load_weights(other, path, NULL) == GRAFT_ESHAPE);
    CHECK(no_children());
    graft_model_free(other);
    graft_model_free(again);
    graft_model_free(back);
    graft_model_free(m);
}

/* ------------------------------------------------------------ the tool */

static pid_t start_graft(const char *const *args, const char *timeout)
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        int e = open(path_in(tmp, "err"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (null < 0 || e < 0) _exit(126);
        dup2(null, 0);
        dup2(null, 1);
        dup2(e, 2);
        setenv("GRAFT_H5_TIMEOUT", timeout, 1);
        execv(bin, (char *const *)args);
        _exit(127);
    }
    return pid;
}

/* Waits for pid up to `seconds` (only catching a hang); then kills it and
 * returns -1. Else its exit status, or 128 + the signal. */
static int wait_bounded(pid_t pid, double seconds)
{
    struct timespec tick = {0, 10000000};
    for (double end = now() + seconds; now() < end;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0) return -2;
        nanosleep(&tick, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* A process whose parent is `parent` (0 when none shows up within 30 s). */
static pid_t child_of(pid_t parent)
{
    struct timespec tick = {0, 20000000};
    for (int i = 0; i < 1500; i++) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        pid_t found = 0;
        while (d && !found && (e = readdir(d))) {
            char stat[300], text[512];
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            snprintf(stat, sizeof stat, "/proc/%s/stat", e->d_name);
            slurp(stat, text, sizeof text);
            const char *close = strrchr(text, ')'); /* after the command name */
            int ppid = 0;
            if (close && sscanf(close + 1, " %*c %d", &ppid) == 1 && ppid == parent)
                found = (pid_t)atoi(e->d_name);
        }
        if (d) closedir(d);
        if (found) return found;
        nanosleep(&tick, NULL);
    }
    return 0;
}

static void test_cli_hang_file(void)
{
    if (access(HANG, R_OK) != 0 || access(bin, X_OK) != 0) {
        printf("skip - no %s or %s\n", HANG, bin);
        return;
    }
    const char *args[] = {bin, "summary", HANG, NULL};
    int rc = wait_bounded(start_graft(args, "2"), 120);
    char err[4096];
    slurp(path_in(tmp, "err"), err, sizeof err);
    CHECK_MSG(rc == 1, "exit %d: %s", rc, err);
    CHECK_MSG(strstr(err, "graft summary: ") && strstr(err, HANG) &&
                  strstr(err, "stopped responding"),
              "%s", err);
    CHECK(strchr(err, '\n') == err + strlen(err) - 1); /* one line */
    CHECK(no_children());
}

/* Ctrl-C while the child loops: graft ends at once, and its child with it. */
static void test_cli_ctrl_c(void)
{
    if (access(HANG, R_OK) != 0 || access(bin, X_OK) != 0) {
        printf("skip - no %s or %s\n", HANG, bin);
        return;
    }
    const char *args[] = {bin, "summary", HANG, NULL};
    pid_t pid = start_graft(args, "600");
    pid_t reader = child_of(pid);
    CHECK_MSG(reader > 0, "graft %d started no reader", (int)pid);
    /* Let the reader get into libhdf5's loop (no wait makes the test weaker, not flaky). */
    struct timespec settle = {0, 300000000};
    nanosleep(&settle, NULL);
    CHECK(kill(pid, SIGINT) == 0);
    int rc = wait_bounded(pid, 10);
    CHECK_MSG(rc == 128 + SIGINT, "graft ended with %d", rc);
    if (reader > 0) {
        /* An orphan comes to this test (the subreaper); it must already be ending. */
        int st = 0;
        pid_t r = -1;
        for (double end = now() + 10; now() < end && (r = waitpid(reader, &st, WNOHANG)) == 0;) {
            struct timespec tick = {0, 10000000};
            nanosleep(&tick, NULL);
        }
        CHECK_MSG(r == reader && WIFSIGNALED(st), "the reader %d outlived graft (%d)", (int)reader,
                  (int)r);
        if (r == 0) {
            kill(reader, SIGKILL);
            waitpid(reader, NULL, 0);
        }
    }
    CHECK(no_children());
}

int main(void)
{
    if (make_tmpdir(tmp) != 0) return 1;
    bin = getenv("GRAFT_BIN");
    if (!bin) bin = "build/graft";
    signal(SIGALRM, on_alarm);
    alarm(900);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    unsetenv("GRAFT_H5_CHILD");
    unsetenv("GRAFT_H5_TIMEOUT");
    RUN(test_findings_contained);
    RUN(test_timeout_switch_checked);
    RUN(test_messages_verbatim);
    RUN(test_large_model_round_trip);
    RUN(test_cli_hang_file);
    RUN(test_cli_ctrl_c);
    return CHECK_SUMMARY();
}
