/*
 * Ctrl-C on `graft train`: the run stops at the end of a batch with exit
 * status 130 and a message saying how to resume; `graft resume RUN_DIR`
 * then finishes it with the same weights and history as a run that was
 * never interrupted. GRAFT_BIN (set by tests/run.sh) names the tool.
 * Runs alone (tests/run.sh): a Ctrl-C must end the run within seconds.
 */
#include "check.h"
#include "test_util.h"
#include "graft.h"

#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DATA "../shared/data/cats_and_dogs_filtered/train"
#define EPOCHS "30"

static char tmp[] = "/tmp/graft_sigint_XXXXXX";
static const char *bin;

/* 16 cats and 16 dogs, linked from the lesson's data. */
static int make_data(void)
{
    char cwd[256];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    for (int c = 0; c < 2; c++) {
        const char *cls = c ? "dogs" : "cats";
        char dir[256];
        snprintf(dir, sizeof dir, "%s/data", tmp);
        mkdir(dir, 0755);
        snprintf(dir, sizeof dir, "%s/data/%s", tmp, cls);
        if (mkdir(dir, 0755) != 0) return -1;
        for (int i = 0; i < 16; i++) {
            char src[600], dst[600];
            snprintf(src, sizeof src, "%s/" DATA "/%s/%.3s.%d.jpg", cwd, cls, cls, i);
            snprintf(dst, sizeof dst, "%s/%.3s.%d.jpg", dir, cls, i);
            if (symlink(src, dst) != 0) return -1;
        }
    }
    return 0;
}

/* Starts `graft train` into tmp/<run> with output in tmp/<run>.out/.err. */
static pid_t start_train(const char *run)
{
    char data[128], out[128], o[160], e[160];
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(out, sizeof out, "%s/%s", tmp, run);
    snprintf(o, sizeof o, "%s.out", out);
    snprintf(e, sizeof e, "%s.err", out);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(o, "w", stdout) || !freopen(e, "w", stderr)) _exit(126);
        execl(bin, bin, "train", "--data", data, "--base", "scratch", "--input-size", "32",
              "--batch", "4", "--epochs", EPOCHS, "--seed", "3", "--out", out, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int finish(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool same_model(const char *a, const char *b)
{
    graft_model *ma = NULL, *mb = NULL;
    bool same = graft_model_load(a, &ma) == GRAFT_OK && graft_model_load(b, &mb) == GRAFT_OK &&
                graft_model_num_layers(ma) == graft_model_num_layers(mb);
    for (int i = 0; same && i < graft_model_num_layers(ma); i++) {
        graft_layer *la = graft_model_layer(ma, i), *lb = graft_model_layer(mb, i);
        for (int k = 0; same && k < graft_layer_num_weights(la); k++) {
            graft_shape s = graft_layer_weight_shape(la, k);
            same = memcmp(graft_layer_weight_data(la, k), graft_layer_weight_data(lb, k),
                          graft_shape_size(&s) * sizeof(float)) == 0;
        }
    }
    graft_model_free(ma);
    graft_model_free(mb);
    return same;
}

static void test_sigint_then_resume(void)
{
    NEED_FILE(DATA "/cats/cat.0.jpg");
    char p[256], q[256], msg[8192];
    /* The uninterrupted run. */
    CHECK(finish(start_train("whole")) == 0);

    pid_t pid = start_train("cut");
    /* Signalled once the first epoch's line is out (fit flushes each), so
     * however fast the machine, most of the run is still ahead. */
    snprintf(p, sizeof p, "%s/cut.out", tmp);
    struct timespec tick = {0, 1000000};
    for (int i = 0; i < 60000; i++) {
        slurp(p, msg, sizeof msg);
        if (strstr(msg, "Epoch 2/")) break;
        nanosleep(&tick, NULL);
    }
    CHECK(kill(pid, SIGINT) == 0);
    int rc = finish(pid);
    snprintf(p, sizeof p, "%s/cut.err", tmp);
    slurp(p, msg, sizeof msg);
    snprintf(q, sizeof q, "graft resume %s/cut", tmp);
    CHECK_MSG(rc == 130, "exit status %d (0: the run ended before the signal)", rc);
    CHECK_MSG(strstr(msg, "interrupted") && strstr(msg, q), "stderr: %s", msg);
    snprintf(p, sizeof p, "%s/cut/history.json", tmp);
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/cut/model.h5", tmp);
    CHECK(access(p, F_OK) != 0); /* an interrupted stage leaves no final model */

    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s resume %s/cut >%s/resume.out 2>&1", bin, tmp, tmp);
    int st = system(cmd);
    snprintf(p, sizeof p, "%s/resume.out", tmp);
    slurp(p, msg, sizeof msg);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "resume: %s", msg);
    CHECK_MSG(strstr(msg, "Resuming stage 'scratch' at epoch"), "%s", msg);

    graft_history a, b;
    snprintf(p, sizeof p, "%s/whole/history.json", tmp);
    snprintf(q, sizeof q, "%s/cut/history.json", tmp);
    CHECK_OK(graft_history_load_json(p, &a, NULL, NULL));
    CHECK_OK(graft_history_load_json(q, &b, NULL, NULL));
    CHECK(a.n == atoi(EPOCHS) && b.n == a.n);
    for (int i = 0; i < a.n && i < b.n; i++)
        CHECK_MSG(a.loss[i] == b.loss[i] && a.accuracy[i] == b.accuracy[i], "epoch %d", i + 1);
    graft_history_free(&a);
    graft_history_free(&b);
    snprintf(p, sizeof p, "%s/whole/model.h5", tmp);
    snprintf(q, sizeof q, "%s/cut/model.h5", tmp);
    CHECK_MSG(same_model(p, q), "the resumed run's weights differ from the uninterrupted run's");
}

int main(void)
{
    bin = getenv("GRAFT_BIN");
    if (!bin) bin = "build/graft";
    /* One thread in the tool: the same sums, bit for bit, in both runs. */
    setenv("OMP_NUM_THREADS", "1", 1);
    if (!mkdtemp(tmp) || make_data() != 0) return 1;
    RUN(test_sigint_then_resume);
    remove_tree(tmp);
    rmdir(tmp);
    return CHECK_SUMMARY();
}
