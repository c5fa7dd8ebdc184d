/*
 * The graft tool on hostile inputs: a FIFO given to predict or lying in a
 * class folder gives a message instead of a process stuck in open(); Ctrl-C
 * ends graft promptly whatever it is doing (a second Ctrl-C during a fit,
 * any Ctrl-C outside one, a predict blocked writing its output); more than
 * 1024 class folders all train. GRAFT_BIN (set by tests/run.sh) names the tool.
 *
 * The Ctrl-C handler itself is tested here in-process: the tool's run.c is
 * compiled into this test (the Makefile rebuilds it when run.c changes).
 * Runs alone (tests/run.sh): a Ctrl-C must end a blocked predict within seconds.
 */
#include "../tools/run.c"

#include "check.h"
#include "internal.h"
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp[] = "/tmp/graft_cli_special_XXXXXX";
static const char *bin;
static char err[1 << 16];

static const char *at(const char *name) { return path_in(tmp, name); }

static int write_ppm(const char *path, int size, unsigned seed)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fprintf(f, "P6\n%d %d\n255\n", size, size);
    for (int i = 0; i < 3 * size * size; i++) fputc((int)((seed * 53u + (unsigned)i * 7u) & 255), f);
    return fclose(f) == 0 ? 0 : -1;
}

/* Waits for pid up to `seconds` (generous: it only catches a hang); then
 * kills it and returns -1. Else its exit status, or 128 + the signal. */
static int wait_bounded(pid_t pid, int seconds)
{
    struct timespec tick = {0, 10000000};
    for (long i = 0; i < seconds * 100L; i++) {
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

/* Starts graft with argv (NULL-terminated); stdout to out_fd (-1: /dev/null),
 * stderr to tmp/err. */
static pid_t start(const char *const *args, int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        int e = open(at("err"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (null < 0 || e < 0) _exit(126);
        dup2(null, 0);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        dup2(e, 2);
        execv(bin, (char *const *)args);
        _exit(127);
    }
    return pid;
}

/* Runs graft to its end (at most 2 minutes); stderr in err[]. */
static int run_graft(const char *const *args)
{
    int rc = wait_bounded(start(args, -1), 120);
    slurp(at("err"), err, sizeof err);
    return rc;
}

/* A model for 8x8 RGB images, two classes, saved as tmp/model.h5. */
static const char *small_model(void)
{
    graft_model *m = graft_model_new("small");
    graft_input(m, NULL, graft_shape3(8, 8, 3));
    graft_global_average_pooling2d(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 2, .activation = GRAFT_SOFTMAX});
    CHECK_OK(graft_model_save(m, at("model.h5")));
    graft_model_free(m);
    return at("model.h5");
}

/* In a child: exits normally only if SIGINT did not end it. */
static int child_after(void (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        fn();
        _exit(0);
    }
    return wait_bounded(pid, 60);
}

static void two_ctrl_c_during_fit(void)
{
    graft_model *m = graft_model_new("watched");
    cli_watch_sigint(m);
    raise(SIGINT); /* the first asks the fit to stop after its batch */
    if (!m->stop_requested) _exit(3);
    raise(SIGINT); /* the second ends the process */
}

static void ctrl_c_after_fit(void)
{
    graft_model *m = graft_model_new("watched");
    cli_watch_sigint(m);
    cli_watch_sigint(NULL);
    raise(SIGINT);
}

static void test_sigint_handler(void)
{
    int rc = child_after(two_ctrl_c_during_fit);
    CHECK_MSG(rc == 128 + SIGINT, "a second Ctrl-C during a fit: status %d", rc);
    rc = child_after(ctrl_c_after_fit);
    CHECK_MSG(rc == 128 + SIGINT, "Ctrl-C with no fit watched: status %d", rc);
}

static void test_predict_fifo(void)
{
    const char *model = small_model();
    CHECK(mkfifo(at("x.jpg"), 0600) == 0);
    const char *args[] = {bin, "predict", "--model", model, at("x.jpg"), NULL};
    int rc = run_graft(args);
    CHECK_MSG(rc == 1 && strstr(err, "x.jpg is not a regular file (a FIFO)"), "status %d: %s", rc, err);
    /* In a folder given to predict. */
    CHECK(mkdir(at("pics"), 0700) == 0 && mkfifo(at("pics/y.png"), 0600) == 0);
    const char *dir_args[] = {bin, "predict", "--model", model, at("pics"), NULL};
    rc = run_graft(dir_args);
    CHECK_MSG(rc == 1 && strstr(err, "y.png is not a regular file (a FIFO)"), "status %d: %s", rc, err);
    /* As the model. */
    CHECK(mkfifo(at("model_fifo.h5"), 0600) == 0);
    const char *model_args[] = {bin, "predict", "--model", at("model_fifo.h5"), at("x.jpg"), NULL};
    rc = run_graft(model_args);
    CHECK_MSG(rc == 1 && strstr(err, "model_fifo.h5 is neither a file nor a run folder"), "status %d: %s",
              rc, err);
}

static void test_train_with_fifo_in_class_folder(void)
{
    CHECK(mkdir(at("fdata"), 0700) == 0 && mkdir(at("fdata/a"), 0700) == 0 &&
          mkdir(at("fdata/b"), 0700) == 0);
    for (int i = 0; i < 4; i++) {
        char p[64];
        snprintf(p, sizeof p, "fdata/a/%d.ppm", i);
        CHECK(write_ppm(at(p), 32, (unsigned)i) == 0);
        snprintf(p, sizeof p, "fdata/b/%d.ppm", i);
        CHECK(write_ppm(at(p), 32, 100u + (unsigned)i) == 0);
    }
    CHECK(mkfifo(at("fdata/a/x.jpg"), 0600) == 0);
    const char *args[] = {bin, "train", "--data", at("fdata"), "--base", "scratch", "--input-size", "32",
                          "--epochs", "1", "--batch", "4", "--verbose", "0", "--out", at("frun"), NULL};
    int rc = run_graft(args);
    CHECK_MSG(rc == 0 && strstr(err, "skipping") && strstr(err, "x.jpg is not a regular file (a FIFO)"),
              "status %d: %s", rc, err);
}

static void test_train_many_classes(void)
{
    enum { K = 1030 };
    CHECK(mkdir(at("many"), 0700) == 0);
    for (int k = 0; k < K; k++) {
        char p[64];
        snprintf(p, sizeof p, "many/c%04d", k);
        CHECK(mkdir(at(p), 0700) == 0);
        snprintf(p, sizeof p, "many/c%04d/0.ppm", k);
        if (write_ppm(at(p), 32, (unsigned)k) != 0) {
            CHECK(!"cannot write the class folders");
            return;
        }
    }
    int out = open(at("many.out"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char *args[] = {bin, "train", "--data", at("many"), "--base", "scratch", "--input-size", "32",
                          "--epochs", "1", "--batch", "64", "--verbose", "0", "--out", at("mrun"), NULL};
    int rc = wait_bounded(start(args, out), 120);
    close(out);
    static char text[1 << 16];
    slurp(at("many.out"), text, sizeof text);
    slurp(at("err"), err, sizeof err);
    CHECK_MSG(rc == 0, "status %d: %s", rc, err);
    CHECK_MSG(strstr(text, "Found 1030 images belonging to 1030 classes."), "%s", text);
    /* predict ranks all of them (it kept the first 1024 before). */
    const char *pargs[] = {bin, "predict", "--model", at("mrun"), "--top", "1030", "--json",
                           at("many/c1029/0.ppm"), NULL};
    out = open(at("many.out"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    rc = wait_bounded(start(pargs, out), 120);
    close(out);
    slurp(at("many.out"), text, sizeof text);
    CHECK_MSG(rc == 0 && strstr(text, "\"class\": \"c1029\""), "status %d", rc);
}

/* `graft predict many | less`, and Ctrl-C: predict, blocked writing to a
 * pipe nobody reads, ends at once. */
static void test_sigint_ends_blocked_predict(void)
{
    enum { IMAGES = 1500 }; /* ~100 bytes of output each: more than a pipe holds */
    CHECK(mkdir(at("lots"), 0700) == 0);
    for (int i = 0; i < IMAGES; i++) {
        char p[64];
        snprintf(p, sizeof p, "lots/%04d.ppm", i);
        if (write_ppm(at(p), 8, (unsigned)i) != 0) {
            CHECK(!"cannot write the images");
            return;
        }
    }
    int fds[2];
    CHECK(pipe(fds) == 0);
    const char *args[] = {bin, "predict", "--model", small_model(), at("lots"), NULL};
    pid_t pid = start(args, fds[1]);
    close(fds[1]);
    /* Its first output shows it is predicting; then nobody reads. */
    char buf[4096];
    ssize_t got = read(fds[0], buf, sizeof buf);
    CHECK(got > 0);
    CHECK(kill(pid, SIGINT) == 0);
    int rc = wait_bounded(pid, 10);
    CHECK_MSG(rc == 128 + SIGINT || rc == 130, "status %d (-1: still running 10 s after Ctrl-C)", rc);
    close(fds[0]);
}

int main(void)
{
    bin = getenv("GRAFT_BIN");
    if (!bin) bin = "build/graft";
    if (!mkdtemp(tmp)) return 1;
    RUN(test_sigint_handler);
    RUN(test_predict_fifo);
    RUN(test_train_with_fifo_in_class_folder);
    RUN(test_train_many_classes);
    RUN(test_sigint_ends_blocked_predict);
    remove_tree(tmp);
    rmdir(tmp);
    return CHECK_SUMMARY();
}
