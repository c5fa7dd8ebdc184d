/* Loading time against the number of layers: for each N given, a functional
 * chain of N layers (an input and Dense(1) layers) built from its Keras config (listed in order and
 * in reverse), then saved as a Keras .h5 and loaded back with graft_model_load.
 * Prints seconds per step; linear loading keeps seconds / N flat.
 *   build/bench/bench_load N...   (bench/bench_load.sh runs 1k, 10k and 100k; 100000
 * is graft's limit) */
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

/* Seconds to build the model of one config; -1 on failure. */
static double time_build(int n, bool reverse, graft_model **keep)
{
    char *text = chain_config(n, true, reverse);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) return -1;
    graft_model *m = NULL;
    double t0 = now();
    graft_status s = io_model_from_config(j, "chain.json", &m);
    double t = now() - t0;
    cJSON_Delete(j);
    if (s != GRAFT_OK) {
        fprintf(stderr, "bench_load: %s\n", graft_last_error());
        return -1;
    }
    if (keep) *keep = m;
    else graft_model_free(m);
    return t;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_load N...\n");
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/graft_bench_load_%d.h5", (int)getpid());
    printf("%9s %12s %12s %12s %12s %14s\n", "layers", "config s", "reversed s", "save .h5 s",
           "load .h5 s", "load us/layer");
    for (int a = 1; a < argc; a++) {
        int n = atoi(argv[a]);
        graft_model *m = NULL, *back = NULL;
        double fwd = time_build(n, false, &m), rev = time_build(n, true, NULL);
        if (fwd < 0 || rev < 0) return 1;
        double t0 = now();
        graft_status s = graft_model_save(m, path);
        double save = now() - t0;
        t0 = now();
        if (s == GRAFT_OK) s = graft_model_load(path, &back);
        double load = now() - t0;
        unlink(path);
        graft_model_free(m);
        graft_model_free(back);
        if (s != GRAFT_OK) {
            fprintf(stderr, "bench_load: %s\n", graft_last_error());
            return 1;
        }
        printf("%9d %12.3f %12.3f %12.3f %12.3f %14.1f\n", n, fwd, rev, save, load, 1e6 * load / n);
        fflush(stdout);
    }
    return 0;
}
