/* graft_model_load of a .h5 through the watchdogged child process against
 * in-process reading (GRAFT_H5_CHILD=0), alternating, ROUNDS times each:
 * a zoo model with big weights (VGG16 with top: 138M parameters, 553 MB)
 * and a chain of many small layers (one request to the child per weight).
 * Prints the medians and child / in-process.
 *   build/bench/bench_h5_load [ARCH [LAYERS [ROUNDS]]]   (default vgg16 10000 5) */
#include "../tests/config_gen.h"
#include "io/io.h"

#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Seconds for one graft_model_load of path; -1 on failure. */
static double time_load(const char *path, bool child)
{
    setenv("GRAFT_H5_CHILD", child ? "1" : "0", 1);
    graft_model *m = NULL;
    double t0 = now();
    graft_status s = graft_model_load(path, &m);
    double t = now() - t0;
    graft_model_free(m);
    if (s != GRAFT_OK) {
        fprintf(stderr, "bench_h5_load: %s\n", graft_last_error());
        return -1;
    }
    return t;
}

static int compare(const char *what, const char *path, int rounds)
{
    double in[64], ch[64];
    for (int r = 0; r < rounds; r++) {
        in[r] = time_load(path, false);
        ch[r] = time_load(path, true);
        if (in[r] < 0 || ch[r] < 0) return 1;
    }
    double a = median(in, rounds), b = median(ch, rounds);
    printf("%-28s %12.3f %12.3f %10.2f\n", what, a, b, b / a);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const char *arch = argc > 1 ? argv[1] : "vgg16";
    int layers = argc > 2 ? atoi(argv[2]) : 10000;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (rounds < 1 || rounds > 64 || layers < 1) {
        fprintf(stderr, "usage: bench_h5_load [ARCH [LAYERS [ROUNDS (1-64)]]]\n");
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/graft_bench_h5_%d.h5", (int)getpid());
    printf("%-28s %12s %12s %10s\n", "graft_model_load of", "in-process s", "child s", "ratio");
    graft_zoo_cfg z = graft_zoo_default_cfg();
    graft_model *m = NULL;
    graft_status s = graft_zoo_build(arch, &z, &m);
    if (s == GRAFT_OK) s = graft_model_init_weights(m, 1);
    if (s == GRAFT_OK) s = graft_model_save(m, path);
    graft_model_free(m);
    m = NULL;
    char what[64];
    snprintf(what, sizeof what, "%s (with top)", arch);
    int rc = s == GRAFT_OK ? compare(what, path, rounds) : 1;
    if (s != GRAFT_OK) fprintf(stderr, "bench_h5_load: %s\n", graft_last_error());
    unlink(path);
    char *text = rc == 0 ? chain_config(layers, true, false) : NULL;
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    s = j ? io_model_from_config(j, "chain.json", &m) : GRAFT_EFORMAT;
    cJSON_Delete(j);
    if (rc == 0 && s == GRAFT_OK) s = graft_model_save(m, path);
    graft_model_free(m);
    snprintf(what, sizeof what, "chain of %d Dense(1)", layers);
    if (rc == 0) rc = s == GRAFT_OK ? compare(what, path, rounds) : 1;
    unlink(path);
    return rc;
}
