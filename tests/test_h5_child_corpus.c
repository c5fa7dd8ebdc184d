/*
 * Every input the Keras .h5 fuzzer kept, the fuzz regressions and the
 * hostile fixtures, read through the watchdogged child (src/io/h5_child.c)
 * and in-process (GRAFT_H5_CHILD=0): the same status and the same message,
 * as a whole model and into a model by order and by name. No time limit is
 * asserted here (test_h5_child, which runs alone, holds those), so this
 * suite runs beside the others.
 * Starts early (tests/run.sh): one of the longest suites under ASan.
 */
#include "check.h"
#include "test_util.h"

#include <dirent.h>
#include <graft.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>

/* A hang that slips through ends the test with a message, not forever. */
static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_h5_child_corpus: a read did not end within 15 minutes\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(2);
}

/* One load, into `into` or as a whole model; its status, and its message. */
static graft_status load_once(const char *path, graft_model *into, const graft_load_opts *o,
                              char *msg, size_t cap)
{
    graft_status st;
    if (into) {
        st = graft_model_load_weights(into, path, o);
    } else {
        graft_model *m = NULL;
        st = graft_model_load(path, &m);
        graft_model_free(m);
    }
    snprintf(msg, cap, "%s", st == GRAFT_OK ? "" : graft_last_error());
    return st;
}

/*
 * One load both ways: the same status and message. The in-process load runs
 * in a forked process that leaves with _exit(), as the reader's own child
 * does: libhdf5 leaks its metadata cache's objects on the error paths of
 * corrupt files, which LeakSanitizer would otherwise charge to this test.
 */
static int same_both_ways(const char *path, graft_model *into, const graft_load_opts *o)
{
    graft_status st[2];
    char msg[2][2048];
    st[0] = load_once(path, into, o, msg[0], sizeof msg[0]);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        setenv("GRAFT_H5_CHILD", "0", 1);
        char m[2048];
        int32_t s = load_once(path, into, o, m, sizeof m);
        ssize_t put = write(fds[1], &s, sizeof s);
        put += write(fds[1], m, strlen(m) + 1);
        _exit(put > 0 ? 0 : 1);
    }
    close(fds[1]);
    int32_t s1 = -1;
    memset(msg[1], 0, sizeof msg[1]);
    bool got = pid > 0 && read(fds[0], &s1, sizeof s1) == (ssize_t)sizeof s1;
    size_t len = 0;
    while (got && len < sizeof msg[1] - 1) {
        ssize_t r = read(fds[0], msg[1] + len, sizeof msg[1] - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fds[0]);
    int status = 0;
    if (pid > 0) waitpid(pid, &status, 0);
    st[1] = (graft_status)s1;
    CHECK_MSG(got, "%s: the in-process load ended without an answer (status %d)", path, status);
    CHECK_MSG(st[0] == st[1] && strcmp(msg[0], msg[1]) == 0, "%s: %d '%s' vs in-process %d '%s'",
              path, (int)st[0], msg[0], (int)st[1], msg[1]);
    return st[0] == GRAFT_OK;
}

/* Every input the Keras .h5 fuzzer kept (and the hostile fixtures): the
 * child's answers are the in-process reader's, message for message. */
static void test_corpus_same_as_in_process(void)
{
    static const char *const dirs[] = {"fuzz/corpus/fuzz_keras_h5", "tests/fuzz_regressions",
                                       "tests/fixtures/hostile_h5"};
    graft_model *into = tiny_conv_model();
    CHECK(graft_model_status(into) == GRAFT_OK && graft_model_init_weights(into, 1) == GRAFT_OK);
    graft_load_opts by_order = {0}, by_name = {.by_name = 1};
    int files = 0, loaded = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || strstr(e->d_name, "keras_config") ||
                strstr(e->d_name, "run_config") || strstr(e->d_name, ".bin"))
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dirs[i], e->d_name);
            files++;
            loaded += same_both_ways(path, NULL, NULL);
            loaded += same_both_ways(path, into, &by_order);
            loaded += same_both_ways(path, into, &by_name);
        }
        if (d) closedir(d);
    }
    printf("  %d files compared, %d loads succeeded\n", files, loaded);
    CHECK(no_children());
    graft_model_free(into);
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    alarm(900);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    unsetenv("GRAFT_H5_CHILD");
    unsetenv("GRAFT_H5_TIMEOUT");
    RUN(test_corpus_same_as_in_process);
    return CHECK_SUMMARY();
}
