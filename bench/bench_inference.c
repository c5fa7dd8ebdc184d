/*
 * Inference: a zoo base without top (SIZE x SIZE x 3, random weights,
 * frozen), forward passes in inference mode on batches of BATCH, each call
 * timed on its own; the median call is reported (robust against a shared
 * machine's pauses).
 * The weights are promised constant (graft_model_set_weights_constant), as
 * `graft predict` and a deployed model promise them and as an ONNX Runtime
 * session's are; CONSTANT=0 measures without the promise. INT8=1 runs the
 * base in 8 bits (graft_model_quantize_int8, calibrated on the batch).
 * usage: bench_inference ARCH SIZE BATCH [SECONDS] [THREADS]
 * prints: graft ARCH SIZE BATCH MEDIAN_MS ms IMG_PER_S img/s CPU_MS cpu_ms
 * (CPU_MS: the process's CPU time per call, all threads: on a machine shared
 * with other work it moves less than the wall-clock time does)
 */
#include <graft.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s ARCH SIZE BATCH [seconds] [threads]\n", argv[0]);
        return 2;
    }
    const char *arch = argv[1];
    int side = atoi(argv[2]), batch = atoi(argv[3]);
    double seconds = argc > 4 ? atof(argv[4]) : 3.0;
    graft_threads_set(argc > 5 ? atoi(argv[5]) : 2);
    if (side < 32 || batch < 1) {
        fprintf(stderr, "bench_inference: SIZE must be at least 32 and BATCH positive\n");
        return 2;
    }
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = side;
    graft_model *m = NULL;
    if (graft_zoo_build(arch, &c, &m) != GRAFT_OK) {
        fprintf(stderr, "bench_inference: %s\n", graft_last_error());
        return 1;
    }
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t in_n = (size_t)batch * side * side * 3, out_n = (size_t)batch * graft_shape_size(&os);
    float *x = malloc(in_n * sizeof(float)), *y = malloc(out_n * sizeof(float));
    enum { MAX_CALLS = 100000 };
    double *times = malloc(MAX_CALLS * sizeof(double));
    if (!x || !y || !times) {
        fprintf(stderr, "bench_inference: out of memory\n");
        return 1;
    }
    graft_rng rng;
    graft_rng_seed(&rng, 1);
    for (size_t i = 0; i < in_n; i++) x[i] = 2.0f * graft_rng_uniform(&rng) - 1.0f;
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0);
    const char *constant = getenv("CONSTANT");
    graft_model_set_weights_constant(m, !(constant && constant[0] == '0'));
    const char *int8 = getenv("INT8");
    if (int8 && int8[0] == '1' && graft_model_quantize_int8(m, x, batch) != GRAFT_OK) goto fail;
    int calls = 0;
    double t0 = now(), t = 0;
    for (int warm = 0; warm < 2; warm++) /* buffers, caches, oneDNN's JIT */
        if (graft_model_predict(m, x, batch, y) != GRAFT_OK) goto fail;
    t0 = now();
    double c0 = cpu_now();
    do {
        double s = now();
        if (graft_model_predict(m, x, batch, y) != GRAFT_OK) goto fail;
        t = now();
        times[calls++] = t - s;
    } while ((t - t0 < seconds || calls < 3) && calls < MAX_CALLS);
    double cpu = (cpu_now() - c0) / calls;
    qsort(times, (size_t)calls, sizeof(double), cmp_double);
    double med = calls % 2 ? times[calls / 2] : 0.5 * (times[calls / 2 - 1] + times[calls / 2]);
    printf("graft %s %d %d %.3f ms %.2f img/s %.3f cpu_ms\n", arch, side, batch, 1e3 * med,
           batch / med, 1e3 * cpu);
    free(x);
    free(y);
    free(times);
    graft_model_free(m);
    return 0;
fail:
    fprintf(stderr, "bench_inference: %s\n", graft_last_error());
    return 1;
}
