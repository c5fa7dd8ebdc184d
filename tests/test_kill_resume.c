/*
 * Nothing lost on a crash: a training run (a child process: this binary
 * re-executed with "child") is killed with SIGKILL at random moments, at
 * least 50 times. After every kill the last checkpoint must load (its
 * checksum covers every byte) and hold complete epochs; the next child
 * resumes from it. Each run that reaches its end must finish with exactly
 * the weights and history of an uninterrupted run with the same seed.
 * Runs alone (tests/run.sh): runs are killed at chosen moments.
 */
#include "check.h"
#include "graft.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EPOCHS 8
#define N_SAMPLES 64
#define BATCH 16
#define MIN_KILLS 50

/* conv -> dense(256) -> dropout -> softmax: ~75k weights (a checkpoint of
 * ~0.9 MB with Adam's slots, so kills land inside writes too) and dropout,
 * whose RNG must resume exactly. */
static graft_model *build(void)
{
    graft_model *m = graft_model_new("kill_resume");
    graft_input(m, "input_1", graft_shape3(8, 8, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 8, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 256, .activation = GRAFT_RELU});
    graft_dropout(m, NULL, NULL, 0.25f);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 3, .activation = GRAFT_SOFTMAX});
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f),
                            .loss = GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY,
                            .seed = 5};
    if (graft_model_status(m) != GRAFT_OK || graft_model_init_weights(m, 9) != GRAFT_OK ||
        graft_model_compile(m, &cc) != GRAFT_OK) {
        graft_model_free(m);
        return NULL;
    }
    return m;
}

/* Labels that depend on the pixels, so that the loss moves. */
static graft_source *make_source(void)
{
    static float x[N_SAMPLES * 8 * 8 * 3], y[N_SAMPLES];
    graft_rng r;
    graft_rng_seed(&r, 11);
    for (int i = 0; i < N_SAMPLES; i++) {
        float sum = 0;
        for (int k = 0; k < 8 * 8 * 3; k++) sum += x[i * 192 + k] = graft_rng_uniform(&r);
        y[i] = sum < 94 ? 0.0f : sum < 98 ? 1.0f : 2.0f;
    }
    return graft_source_arrays(x, y, N_SAMPLES, graft_shape3(8, 8, 3), 1, BATCH, 1, 3);
}

static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* The training process: resumes from dir/checkpoint.graft when there is one,
 * trains to EPOCHS with a checkpoint after every epoch, then writes
 * dir/final.graft. */
static int child(const char *dir)
{
    graft_threads_set(1); /* bitwise-reproducible sums */
    char ck[512], fin[512];
    path_in(ck, sizeof ck, dir, "checkpoint.graft");
    path_in(fin, sizeof fin, dir, "final.graft");
    graft_model *m = build();
    graft_source *src = make_source();
    if (!m || !src) return 2;
    graft_history h;
    graft_history_init(&h);
    graft_train_state st = {0, 0, 0};
    struct stat sb;
    if (stat(ck, &sb) == 0 && (graft_train_state_load(m, ck, &h, &st) != GRAFT_OK ||
                               graft_source_skip(src, st.train_batches) != GRAFT_OK)) {
        fprintf(stderr, "child: %s\n", graft_last_error());
        return 3;
    }
    graft_callback cb;
    if (graft_train_state_callback(ck, src, NULL, &h, &cb) != GRAFT_OK) return 4;
    graft_fit_cfg fc = {.epochs = EPOCHS, .initial_epoch = st.epoch, .callbacks = &cb, .n_callbacks = 1};
    graft_status s = graft_model_fit(m, src, &fc, &h);
    graft_train_state end = {EPOCHS, graft_source_drawn(src), 0};
    if (s == GRAFT_OK) s = graft_train_state_save(m, &h, &end, fin);
    if (s != GRAFT_OK) fprintf(stderr, "child: %s\n", graft_last_error());
    graft_callback_free(&cb);
    graft_source_free(src);
    graft_history_free(&h);
    graft_model_free(m);
    return s == GRAFT_OK ? 0 : 5;
}

static char self_exe[512];

static pid_t spawn(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_exe, self_exe, "child", dir, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void empty_dir(const char *dir, int *leftovers)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[768];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (leftovers && e->d_name[0] == '.') ++*leftovers;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* Loads a checkpoint into a fresh model; NULL when it does not load. */
static graft_model *load(const char *path, graft_history *h, graft_train_state *st)
{
    graft_model *m = build();
    if (m && graft_train_state_load(m, path, h, st) != GRAFT_OK) {
        fprintf(stderr, "  %s: %s\n", path, graft_last_error());
        graft_model_free(m);
        return NULL;
    }
    return m;
}

static bool same_weights(graft_model *a, graft_model *b)
{
    for (int i = 0; i < graft_model_num_layers(a); i++) {
        graft_layer *la = graft_model_layer(a, i), *lb = graft_model_layer(b, i);
        for (int k = 0; k < graft_layer_num_weights(la); k++) {
            graft_shape s = graft_layer_weight_shape(la, k);
            if (memcmp(graft_layer_weight_data(la, k), graft_layer_weight_data(lb, k),
                       graft_shape_size(&s) * sizeof(float)) != 0)
                return false;
        }
    }
    return true;
}

static bool same_history(const graft_history *a, const graft_history *b)
{
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; i++)
        if (a->epoch[i] != b->epoch[i] || a->loss[i] != b->loss[i] || a->accuracy[i] != b->accuracy[i])
            return false;
    return true;
}

static void test_sigkill_at_random_moments(void)
{
    char root[] = "/tmp/graft_kill_XXXXXX", ref_dir[64], run_dir[64], p[512];
    CHECK(mkdtemp(root) != NULL);
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", root);
    snprintf(run_dir, sizeof run_dir, "%s/run", root);
    CHECK(mkdir(ref_dir, 0755) == 0 && mkdir(run_dir, 0755) == 0);

    /* The uninterrupted run, and how long a whole run takes. */
    double t0 = now();
    int status;
    pid_t pid = spawn(ref_dir);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reference run status %d", status);
    double run_time = now() - t0;
    graft_history ref_h, h;
    graft_history_init(&ref_h);
    graft_history_init(&h);
    graft_train_state st;
    path_in(p, sizeof p, ref_dir, "final.graft");
    graft_model *ref = load(p, &ref_h, &st);
    CHECK(ref != NULL && ref_h.n == EPOCHS);
    if (!ref) return;

    graft_rng r;
    graft_rng_seed(&r, 2024);
    int kills = 0, campaigns = 0, finished_ok = 0, leftovers = 0, kills_with_ckpt = 0;
    int last_epoch = -1;
    char ck[512], fin[512];
    path_in(ck, sizeof ck, run_dir, "checkpoint.graft");
    path_in(fin, sizeof fin, run_dir, "final.graft");
    while (check_failures_in_test == 0) {
        pid = spawn(run_dir);
        CHECK(pid > 0);
        /* A moment anywhere in a whole run, startup included. */
        double delay = graft_rng_uniform(&r) * run_time;
        struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        CHECK(waitpid(pid, &status, 0) == pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            kills++;
            struct stat sb;
            if (stat(ck, &sb) == 0) {
                graft_model *m = load(ck, &h, &st);
                CHECK_MSG(m != NULL, "the checkpoint after kill %d does not load", kills);
                CHECK_MSG(st.epoch >= last_epoch && st.epoch <= EPOCHS && h.n == st.epoch,
                          "kill %d: checkpoint at epoch %d (before: %d) with %d history rows",
                          kills, st.epoch, last_epoch, h.n);
                last_epoch = st.epoch;
                kills_with_ckpt++;
                graft_model_free(m);
            }
            continue;
        }
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "resumed run status %d", status);
        campaigns++;
        graft_model *m = load(fin, &h, &st);
        CHECK_MSG(m && same_weights(m, ref) && same_history(&h, &ref_h),
                  "run %d (resumed after kills) differs from the uninterrupted run", campaigns);
        finished_ok += m && same_weights(m, ref);
        graft_model_free(m);
        if (kills >= MIN_KILLS) break;
        empty_dir(run_dir, &leftovers);
        last_epoch = -1;
    }
    printf("  %d SIGKILLs (%d after a checkpoint existed), %d resumed runs all equal to the "
           "uninterrupted one: %d; %d temporary files left by kills; a run takes %.2fs\n",
           kills, kills_with_ckpt, campaigns, finished_ok, leftovers, run_time);
    CHECK(kills >= MIN_KILLS && finished_ok == campaigns && campaigns > 0);
    graft_history_free(&ref_h);
    graft_history_free(&h);
    graft_model_free(ref);
    empty_dir(run_dir, NULL);
    empty_dir(ref_dir, NULL);
    rmdir(run_dir);
    rmdir(ref_dir);
    rmdir(root);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "child") == 0) return child(argv[2]);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) return 1;
    self_exe[n] = '\0';
    RUN(test_sigkill_at_random_moments);
    return CHECK_SUMMARY();
}
