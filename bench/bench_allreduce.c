/*
 * The gradient allreduce of one data-parallel step for each zoo model, over
 * this machine's loopback (shared memory between ranks):
 *   mpirun -np N build/bench/bench_allreduce [reps]
 * For each base: the lesson's fine-tuning (the last 20 base layers and the
 * head GAP -> Dense(1024) -> Dense(1)) and the whole model with that head.
 * Prints one line per case from rank 0: floats sent, median milliseconds of
 * an MPI_Allreduce of that many floats (GRAFT_ALLREDUCE=buckets sends the
 * same bytes in 2 MiB buckets), the bus bandwidth 2(N-1)/N x bytes / time
 * that the ring model of docs/SCALING.md uses, and the median milliseconds
 * of the same sum in an MPI-3 shared window as GRAFT_ALLREDUCE=shared does
 * it without the optimizer step (each rank sums its 1/N of the ranks'
 * arrays into its own between two barriers, then copies the others' sums).
 */
#include "graft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef GRAFT_MPI
#include <mpi.h>

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Trainable floats of base + head with the base's last `unfreeze` layers
 * trainable (-1: all). With step_images > 0 (rank 0 only): also the seconds
 * per image of a training step on random images, one thread, without the
 * feature cache (the base's forward pass every step, as Keras's fit). */
static long trainable_floats(const char *arch, float alpha, int size, int unfreeze,
                             int step_images, double *sec_per_image)
{
    graft_zoo_cfg zc = {.alpha = alpha, .input_shape = {size, size, 3}, .pooling = GRAFT_POOL_AVG};
    graft_model *m = NULL;
    if (graft_zoo_build(arch, &zc, &m) != GRAFT_OK) return -1;
    int nb = graft_model_num_layers(m);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1024, .activation = GRAFT_RELU});
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 1);
    if (unfreeze >= 0) graft_model_set_trainable(m, 0, nb - unfreeze, 0);
    long n = graft_model_status(m) == GRAFT_OK ? (long)graft_model_count_params(m).trainable : -1;
    *sec_per_image = 0;
    if (n > 0 && step_images > 0) {
        size_t px = (size_t)size * size * 3;
        float *x = malloc(px * (size_t)step_images * sizeof(float));
        float *y = calloc((size_t)step_images, sizeof(float));
        graft_compile_cfg cc = {.optimizer = graft_adam(1e-5f), .loss = GRAFT_BINARY_CROSSENTROPY};
        graft_source *src = NULL;
        if (x && y) {
            for (size_t i = 0; i < px * (size_t)step_images; i++) x[i] = (float)(i % 255) / 127.5f - 1;
            src = graft_source_arrays(x, y, step_images, graft_shape3(size, size, 3), 1, step_images, 0, 1);
        }
        graft_fit_cfg fc = {.epochs = 1, .steps_per_epoch = 1, .no_feature_cache = 1};
        if (src && graft_model_init_weights(m, 1) == GRAFT_OK && graft_model_compile(m, &cc) == GRAFT_OK &&
            graft_model_fit(m, src, &fc, NULL) == GRAFT_OK) { /* the first step plans */
            double t0 = MPI_Wtime();
            fc.steps_per_epoch = 2;
            if (graft_model_fit(m, src, &fc, NULL) == GRAFT_OK)
                *sec_per_image = (MPI_Wtime() - t0) / (2.0 * step_images);
        }
        graft_source_free(src);
        free(x);
        free(y);
    }
    graft_model_free(m);
    return n;
}

/* One sum of n floats per rank in the shared window `slot` (see the top). */
static double shared_sum(MPI_Win win, float *const *slot, int rank, int size, long n)
{
    MPI_Win_sync(win);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    MPI_Win_sync(win);
    long lo = n * rank / size, hi = n * (rank + 1) / size;
    float *restrict mine = slot[rank];
    for (int r = 0; r < size; r++) {
        if (r == rank) continue;
        const float *restrict other = slot[r];
        for (long i = lo; i < hi; i++) mine[i] += other[i];
    }
    MPI_Win_sync(win);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Win_sync(win);
    for (int r = 0; r < size; r++) {
        long a = n * r / size, b = n * (r + 1) / size;
        if (r != rank) memcpy(mine + a, slot[r] + a, (size_t)(b - a) * sizeof(float));
    }
    return MPI_Wtime() - t0;
}

int main(int argc, char **argv)
{
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0); /* as graft does under mpirun */
    MPI_Init(&argc, &argv);
    int rank, size, reps = argc > 1 ? atoi(argv[1]) : 20;
    /* bench_allreduce REPS STEP_IMAGES: also time a training step (rank 0). */
    int step_images = argc > 2 ? atoi(argv[2]) : 0;
    if (reps < 3) reps = 3;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const struct {
        const char *arch;
        float alpha;
        int size;
    } bases[] = {{"scratch", 0, 150},      {"mobilenet", 0.75f, 150}, {"mobilenet", 1.0f, 224},
                 {"mobilenet_v2", 1.0f, 224}, {"resnet50", 0, 224},    {"vgg16", 0, 224}};
    if (rank == 0)
        printf("%-14s %5s %-10s %12s %10s %10s %10s %12s %10s\n", "model", "alpha", "trainable", "floats",
               "MB", "ms (med)", "busbw GB/s", "step s/image", "shared ms");
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        for (int all = 0; all < 2; all++) {
            long n;
            double spi = 0;
            if (strcmp(bases[b].arch, "scratch") == 0) {
                if (all) continue;
                /* The lesson's CNN at 150x150 (tools/run.c builds it, not the
                 * zoo): every one of its weights trains. */
                n = 10636481;
            } else {
                n = trainable_floats(bases[b].arch, bases[b].alpha, bases[b].size, all ? -1 : 20,
                                     rank == 0 && !all ? step_images : 0, &spi);
            }
            if (n <= 0) continue;
            float *g = malloc((size_t)n * sizeof(float)), *mine = NULL, **slot = calloc((size_t)size, sizeof *slot);
            double *t = malloc((size_t)reps * sizeof(double)), *ts = malloc((size_t)reps * sizeof(double));
            MPI_Win win;
            if (!g || !t || !ts || !slot ||
                MPI_Win_allocate_shared((MPI_Aint)n * (MPI_Aint)sizeof(float), sizeof(float), MPI_INFO_NULL,
                                        MPI_COMM_WORLD, &mine, &win) != MPI_SUCCESS)
                MPI_Abort(MPI_COMM_WORLD, 1);
            for (int r = 0; r < size; r++) {
                MPI_Aint bytes;
                int unit;
                MPI_Win_shared_query(win, r, &bytes, &unit, &slot[r]);
            }
            MPI_Win_lock_all(MPI_MODE_NOCHECK, win);
            for (long i = 0; i < n; i++) mine[i] = 1e-3f * (float)(i % 7);
            for (long i = 0; i < n; i++) g[i] = 1e-3f * (float)(i % 7);
            for (int r = 0; r < reps; r++) {
                MPI_Barrier(MPI_COMM_WORLD);
                double t0 = MPI_Wtime();
                MPI_Allreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                double dt = MPI_Wtime() - t0;
                MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                t[r] = dt;
                dt = shared_sum(win, slot, rank, size, n);
                MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                ts[r] = dt;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp);
            qsort(ts, (size_t)reps, sizeof *ts, cmp);
            double med = t[reps / 2], bytes = (double)n * sizeof(float);
            if (rank == 0)
                printf("%-14s %5.2f %-10s %12ld %10.1f %10.3f %10.2f %12.4f %10.3f\n", bases[b].arch,
                       bases[b].alpha, all ? "all" : "top20+head", n, bytes / 1e6, med * 1e3,
                       2.0 * (size - 1) / size * bytes / med / 1e9, spi, ts[reps / 2] * 1e3);
            MPI_Win_unlock_all(win);
            MPI_Win_free(&win);
            free(slot);
            free(g);
            free(t);
            free(ts);
        }
    }
    MPI_Finalize();
    return 0;
}
#else
int main(void)
{
    printf("bench_allreduce: graft was built without MPI (make MPI=1)\n");
    return 0;
}
#endif
