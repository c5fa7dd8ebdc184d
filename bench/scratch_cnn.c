/* Training-step speed of the lesson's from-scratch CNN (batch 32, 150x150x3)
 * on synthetic data: images/second and peak memory, for bench/bench_scratch.sh. */
#include "graft.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 10, batch = 32;
    graft_threads_set(argc > 2 ? atoi(argv[2]) : 0);
    graft_model *m = graft_model_new("scratch");
    graft_input(m, NULL, graft_shape3(150, 150, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 64, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_flatten(m, NULL, NULL);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 128, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_BINARY_CROSSENTROPY};
    if (graft_model_status(m) != GRAFT_OK || graft_model_compile(m, &cc) != GRAFT_OK) {
        fprintf(stderr, "scratch_cnn: %s\n", graft_last_error());
        return 1;
    }
    int n = batch * 2;
    float *x = malloc(sizeof(float) * (size_t)n * 150 * 150 * 3), *y = malloc(sizeof(float) * (size_t)n);
    graft_rng r;
    graft_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)n * 150 * 150 * 3; i++) x[i] = graft_rng_uniform(&r);
    for (int i = 0; i < n; i++) y[i] = (float)(i % 2);
    graft_source *src = graft_source_arrays(x, y, n, graft_shape3(150, 150, 3), 1, batch, 1, 1);
    graft_fit_cfg warm = {.epochs = 1, .steps_per_epoch = 2};
    graft_fit_cfg fc = {.epochs = 1, .steps_per_epoch = steps};
    if (graft_model_fit(m, src, &warm, NULL) != GRAFT_OK) {
        fprintf(stderr, "scratch_cnn: %s\n", graft_last_error());
        return 1;
    }
    double t0 = now();
    if (graft_model_fit(m, src, &fc, NULL) != GRAFT_OK) {
        fprintf(stderr, "scratch_cnn: %s\n", graft_last_error());
        return 1;
    }
    double dt = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("graft images_per_s %.2f peak_rss_mib %.0f\n", steps * batch / dt, ru.ru_maxrss / 1024.0);
    graft_source_free(src);
    graft_model_free(m);
    free(x);
    free(y);
    return 0;
}
