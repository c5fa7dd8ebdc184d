/*
 * Frozen feature extraction: a zoo base without top (150x150x3, random
 * weights), forward passes in inference mode on batches of 32.
 * usage: bench_features ARCH [SECONDS] [THREADS]
 * prints: graft ARCH IMG_PER_S img/s GFLOP_PER_S GFLOP/s FLOP_PER_IMAGE
 */
#include <graft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 32
#define SIDE 150

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Multiply-adds x2 of the convolutions and dense layers, per image. */
static double flops_per_image(const graft_model *m)
{
    double f = 0;
    for (int i = 0; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        const char *cls = graft_layer_class(l);
        graft_shape o = graft_layer_output_shape(l), k = graft_layer_weight_shape(l, 0);
        if (!strcmp(cls, "Conv2D")) /* kernel (kh, kw, cin, cout) */
            f += 2.0 * o.dim[0] * o.dim[1] * k.dim[0] * k.dim[1] * k.dim[2] * k.dim[3];
        else if (!strcmp(cls, "DepthwiseConv2D")) /* (kh, kw, c, dm) */
            f += 2.0 * o.dim[0] * o.dim[1] * k.dim[0] * k.dim[1] * k.dim[2] * k.dim[3];
        else if (!strcmp(cls, "Dense"))
            f += 2.0 * k.dim[0] * k.dim[1];
    }
    return f;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s mobilenet|mobilenet_v2|resnet50|vgg16 [seconds] [threads]\n",
                argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    graft_set_num_threads(argc > 3 ? atoi(argv[3]) : 2);
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = SIDE;
    graft_model *m = NULL;
    if (graft_zoo_build(argv[1], &c, &m) != GRAFT_OK) {
        fprintf(stderr, "%s\n", graft_last_error());
        return 1;
    }
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t in_n = (size_t)BATCH * SIDE * SIDE * 3, out_n = (size_t)BATCH * graft_shape_size(&os);
    float *x = malloc(in_n * sizeof(float)), *y = malloc(out_n * sizeof(float));
    if (!x || !y) return 1;
    graft_rng rng;
    graft_rng_seed(&rng, 1);
    for (size_t i = 0; i < in_n; i++) x[i] = 2.0f * graft_rng_uniform(&rng) - 1.0f;
    graft_model_set_trainable(m, 0, graft_model_num_layers(m), 0); /* frozen, as in the lesson */
    if (graft_model_predict(m, x, BATCH, y) != GRAFT_OK) { /* warm-up: buffers, caches */
        fprintf(stderr, "%s\n", graft_last_error());
        return 1;
    }
    int iters = 0;
    double t0 = now(), t;
    do {
        if (graft_model_predict(m, x, BATCH, y) != GRAFT_OK) {
            fprintf(stderr, "%s\n", graft_last_error());
            return 1;
        }
        iters++;
        t = now() - t0;
    } while (t < seconds || iters < 2);
    double ips = iters * BATCH / t, fpi = flops_per_image(m);
    printf("graft %s %.2f img/s %.1f GFLOP/s %.0f\n", argv[1], ips, ips * fpi / 1e9, fpi);
    free(x);
    free(y);
    graft_model_free(m);
    return 0;
}
