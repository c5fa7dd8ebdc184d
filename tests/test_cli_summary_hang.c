/*
 * `graft summary` of an .h5 file that libhdf5 loops on (the hang file of
 * fuzz/libhdf5_findings, as test_h5_child uses it) gives up once: one reader
 * process (src/io/h5_child.c forks one per read of the file), one message
 * naming the file once, exit 1. Before, the summary fell back to reading the
 * file again as weights, then once more for its message: three waits of
 * GRAFT_H5_TIMEOUT. The readers are counted as graft's child processes, not
 * timed, so the test holds on a loaded machine.
 */
#include "check.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HANG "fuzz/libhdf5_findings/h5hg-free-space-of-size-zero-hang.h5"

static char tmp[] = "/tmp/graft_cli_hang_XXXXXX";
static const char *bin;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Adds the processes whose parent is `parent` to seen[] (distinct, at most cap). */
static void note_children(pid_t parent, pid_t *seen, int *n, int cap)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char stat[300], text[512];
        snprintf(stat, sizeof stat, "/proc/%s/stat", e->d_name);
        slurp(stat, text, sizeof text);
        const char *close = strrchr(text, ')'); /* after the command name */
        int ppid = 0;
        if (!close || sscanf(close + 1, " %*c %d", &ppid) != 1 || ppid != parent) continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        bool known = false;
        for (int i = 0; i < *n; i++) known |= seen[i] == pid;
        if (!known && *n < cap) seen[(*n)++] = pid;
    }
    if (d) closedir(d);
}

static bool said_anything(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_summary_gives_up_once(void)
{
    if (access(HANG, R_OK) != 0) {
        printf("skip - no %s\n", HANG);
        return;
    }
    const char *err_path = path_in(tmp, "err");
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (null < 0 || e < 0) _exit(126);
        dup2(null, 0);
        dup2(null, 1);
        dup2(e, 2);
        setenv("GRAFT_H5_TIMEOUT", "2", 1);
        unsetenv("GRAFT_H5_CHILD");
        execl(bin, bin, "summary", HANG, (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0);
    if (pid <= 0) return;
    /* Each reader lives GRAFT_H5_TIMEOUT (2 s) before graft kills it: a
     * look every 10 ms sees every one. A look counts only while nothing is
     * on stderr yet, before and after it: every reader has ended before the
     * message, and a process graft starts after it (LeakSanitizer's tracer
     * at exit, under make asan) is not a reader. The bound only catches a
     * hang. */
    pid_t readers[16];
    int n_readers = 0, st = 0;
    pid_t r = 0;
    struct timespec tick = {0, 10000000};
    for (double end = now() + 300; r == 0 && now() < end;) {
        if (!said_anything(err_path)) {
            pid_t seen[16];
            int n_seen = 0;
            note_children(pid, seen, &n_seen, 16);
            for (int i = 0; i < n_seen && !said_anything(err_path); i++) {
                bool known = false;
                for (int k = 0; k < n_readers; k++) known |= readers[k] == seen[i];
                if (!known && n_readers < 16) readers[n_readers++] = seen[i];
            }
        }
        r = waitpid(pid, &st, WNOHANG);
        if (r == 0) nanosleep(&tick, NULL);
    }
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    CHECK_MSG(r == pid, "graft summary did not end within 300 s");
    char err[4096];
    slurp(err_path, err, sizeof err);
    CHECK_MSG(r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d: %s", st, err);
    CHECK_MSG(n_readers == 1, "%d reader processes: the file was read %d times", n_readers, n_readers);
    CHECK_MSG(strncmp(err, "graft summary: " HANG ": ", strlen("graft summary: " HANG ": ")) == 0 &&
                  strstr(err, "stopped responding") && strstr(err, "GRAFT_H5_TIMEOUT"),
              "%s", err);
    CHECK_MSG(count_of(err, HANG) == 1 && err[0] && strchr(err, '\n') == err + strlen(err) - 1,
              "one line, naming the file once: %s", err);
    CHECK(no_children());
}

/* A weights-only file is read as a model, then (holding no model config) as
 * weights: the second read is the one the summary needs. */
static void test_weights_only_still_listed(void)
{
    const char *h5 = "../shared/models/mobilenet_2_5_224_tf_no_top.h5";
    if (access(h5, R_OK) != 0) {
        printf("skip - no %s\n", h5);
        return;
    }
    char cmd[512], out[1 << 16], err[4096];
    snprintf(cmd, sizeof cmd, "%s summary %s", bin, h5);
    int rc = run_captured(cmd, path_in(tmp, "out"), path_in(tmp, "err"), out, sizeof out, err,
                          sizeof err);
    CHECK_MSG(rc == 0 && strstr(out, "total params: 218,544") && strstr(out, "--base mobilenet --alpha 0.25"),
              "%s%s", out, err);
}

int main(void)
{
    bin = getenv("GRAFT_BIN");
    if (!bin) bin = "build/graft";
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test_cli_summary_hang needs %s\n", bin);
        return 1;
    }
    if (make_tmpdir(tmp) != 0) return 1;
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    RUN(test_summary_gives_up_once);
    RUN(test_weights_only_still_listed);
    return CHECK_SUMMARY();
}
