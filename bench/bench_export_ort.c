/*
 * Inference latency: graft_model_predict against ONNX Runtime running graft's
 * own ONNX export of the same model (a zoo model with its ImageNet top,
 * 224x224x3, random weights), batch 1 and 32, alternating between the two in
 * every round. The peer is bench/ort_peer.js (onnxruntime-node, intra-op
 * threads as graft's, all graph optimisations).
 * graft's weights are promised constant (graft_model_set_weights_constant).
 * INT8=1: graft's base in 8 bits (graft_model_quantize_int8, calibrated on
 * the 32 timed images) against ORT on the QDQ export of that same quantized
 * model (graft_onnx_opts.int8: graft's scales and s8 kernels).
 * usage: bench_export_ort ARCH ONNX_PATH [SECONDS] [THREADS] [ROUNDS]
 * (ROUNDS 0: the export alone)
 * prints per batch: graft and ORT median milliseconds per batch, images/s, ratio.
 */
#include <graft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIDE 224

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median milliseconds of one predict call over `seconds` (at least 3 calls). */
static double time_graft(graft_model *m, const float *x, float *y, int batch, double seconds)
{
    static double t[100000];
    int n = 0;
    graft_model_predict(m, x, batch, y); /* plans and warms up */
    double start = now();
    while (n < 3 || (now() - start < seconds && n < 100000)) {
        double t0 = now();
        if (graft_model_predict(m, x, batch, y) != GRAFT_OK) return -1;
        t[n++] = 1e3 * (now() - t0);
    }
    return median(t, n);
}

static double time_ort(const char *onnx, int batch, double seconds, int threads)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "node bench/ort_peer.js %s %d %g %d", onnx, batch, seconds, threads);
    FILE *p = popen(cmd, "r");
    double ms = -1;
    if (!p || fscanf(p, "%lf", &ms) != 1) ms = -1;
    if (p) pclose(p);
    return ms;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s mobilenet|mobilenet_v2|resnet50|vgg16 OUT.onnx [seconds] [threads] [rounds]\n",
                argv[0]);
        return 2;
    }
    const char *arch = argv[1], *onnx = argv[2];
    double seconds = argc > 3 ? atof(argv[3]) : 3.0;
    int threads = argc > 4 ? atoi(argv[4]) : 2, rounds = argc > 5 ? atoi(argv[5]) : 3;
    if (rounds < 0 || rounds > 99) rounds = 3;
    graft_threads_set(threads);
    const char *int8_env = getenv("INT8");
    int int8 = int8_env && int8_env[0] == '1';
    const int batches[2] = {1, 32};
    size_t in = (size_t)SIDE * SIDE * 3, out = 1000;
    float *x = malloc(32 * in * sizeof *x), *y = malloc(32 * out * sizeof *y);
    if (!x || !y) return 1;
    for (size_t i = 0; i < 32 * in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.input_shape[0] = c.input_shape[1] = SIDE;
    graft_model *m = NULL;
    if (graft_zoo_build(arch, &c, &m) != GRAFT_OK ||
        (int8 && graft_model_quantize_int8(m, x, 32) != GRAFT_OK) ||
        graft_export_onnx(m, onnx, &(graft_onnx_opts){.int8 = int8}) != GRAFT_OK) {
        fprintf(stderr, "%s: %s\n", arch, graft_last_error());
        graft_model_free(m);
        return 1;
    }
    /* deployed weights are constant, as the ORT session's (CONSTANT=0: without
     * the promise); the int8 run made it already and lasts as long as it */
    const char *constant = getenv("CONSTANT");
    if (!int8) graft_model_set_weights_constant(m, !(constant && constant[0] == '0'));
    const char *tag = int8 ? " int8" : "";
    for (int b = 0; b < 2 && rounds > 0; b++) {
        double g[99], o[99];
        for (int r = 0; r < rounds; r++) {
            g[r] = time_graft(m, x, y, batches[b], seconds);
            o[r] = time_ort(onnx, batches[b], seconds, threads);
            if (g[r] < 0 || o[r] < 0) {
                fprintf(stderr, "%s batch %d: a measurement failed (%s)\n", arch, batches[b], graft_last_error());
                return 1;
            }
        }
        double gm = median(g, rounds), om = median(o, rounds);
        printf("%-13s batch %2d  graft%s %9.2f ms %8.1f img/s   ORT%s %9.2f ms %8.1f img/s   graft/ORT speed %5.2fx\n",
               arch, batches[b], tag, gm, 1e3 * batches[b] / gm, tag, om, 1e3 * batches[b] / om, om / gm);
        fflush(stdout);
    }
    free(x);
    free(y);
    graft_model_free(m);
    return 0;
}
