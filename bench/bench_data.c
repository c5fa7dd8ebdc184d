/* Images per second of graft's flow_from_directory: decode + resize to
 * 150x150 + rescale (+ augmentation) + batching, one pass over a folder.
 * usage: bench_data DIR WORKERS AUGMENT(0/1) [FULL_DECODE(0/1)] */
#include "graft.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s DIR WORKERS AUGMENT [FULL_DECODE]\n", argv[0]);
        return 2;
    }
    int workers = atoi(argv[2]), augment = atoi(argv[3]), full = argc > 4 ? atoi(argv[4]) : 0;
    graft_image_data_generator g = {.rescale = 1.0f / 255};
    if (augment) {
        g.rotation_range = 40;
        g.width_shift_range = g.height_shift_range = 0.2f;
        g.shear_range = 0.2f;
        g.zoom_range[0] = 0.2f;
        g.horizontal_flip = 1;
    }
    graft_flow_cfg cfg = {.target_size = {150, 150}, .class_mode = GRAFT_CLASS_BINARY,
                          .batch_size = 32, .seed = 1, .workers = workers, .quiet = 1,
                          .jpeg_full_decode = full};
    double t0 = now();
    graft_source *s = NULL;
    if (graft_flow_from_directory(argv[1], &g, &cfg, &s) != GRAFT_OK) {
        fprintf(stderr, "bench_data: %s\n", graft_last_error());
        return 1;
    }
    float *x = malloc(sizeof(float) * 32 * 150 * 150 * 3), y[32];
    if (!x) return 1;
    long images = 0;
    for (int b = 0; b < s->length; b++) {
        int n;
        if (s->next(s, x, y, &n) != GRAFT_OK) {
            fprintf(stderr, "bench_data: %s\n", graft_last_error());
            return 1;
        }
        images += n;
    }
    double dt = now() - t0;
    printf("%.1f\n", (double)images / dt);
    s->free(s);
    free(x);
    return 0;
}
