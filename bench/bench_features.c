/*
 * A zoo base without top (150x150x3, or the model's minimum where that is
 * larger; random weights) on batches of 32:
 *   features  frozen feature extraction, forward passes in inference mode;
 *   finetune  the top block (top_block() below) and a new head
 *             (GlobalAveragePooling2D, Dense(1, sigmoid)) train with Adam, the
 *             rest frozen, without graft's feature cache (the peer has none).
 * usage: bench_features ARCH [SECONDS] [THREADS] [features|finetune]
 * prints: graft ARCH IMG_PER_S img/s GFLOP_PER_S GFLOP/s FLOP_PER_IMAGE SIDE
 * (fine-tuning counts the forward pass and twice the trained layers' forward
 * FLOPs for their backward pass)
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

/* Multiply-adds x2 of the convolutions and dense layers from layer `first`, per image. */
static double flops_per_image(const graft_model *m, int first)
{
    double f = 0;
    for (int i = first; i < graft_model_num_layers(m); i++) {
        graft_layer *l = graft_model_layer(m, i);
        const char *cls = graft_layer_class(l);
        graft_shape o = graft_layer_output_shape(l), k = graft_layer_weight_shape(l, 0);
        if (!strcmp(cls, "Conv2D")) /* kernel (kh, kw, cin, cout) */
            f += 2.0 * o.dim[0] * o.dim[1] * k.dim[0] * k.dim[1] * k.dim[2] * k.dim[3];
        else if (!strcmp(cls, "DepthwiseConv2D")) /* (kh, kw, c, dm) */
            f += 2.0 * o.dim[0] * o.dim[1] * k.dim[0] * k.dim[1] * k.dim[2] * k.dim[3];
        else if (!strcmp(cls, "SeparableConv2D")) { /* depthwise (kh, kw, c, dm), pointwise (1, 1, c*dm, f) */
            graft_shape p = graft_layer_weight_shape(l, 1);
            f += 2.0 * o.dim[0] * o.dim[1] * (k.dim[0] * k.dim[1] * k.dim[2] * k.dim[3] + p.dim[2] * p.dim[3]);
        }
        else if (!strcmp(cls, "Dense")) /* on every position of the last axis */
            f += 2.0 * k.dim[0] * k.dim[1] * (double)graft_shape_size(&o) / o.dim[o.rank - 1];
    }
    return f;
}

/* The first layer of the block the fine-tuning trains: each family's last
 * block (the tutorials' choice); features_peer.py splits its models there too. */
static int top_block(const graft_model *m, const char *arch)
{
    static const struct {
        const char *arch, *first;
    } marks[] = {
        {"vgg16", "block5_conv1"},
        {"vgg19", "block5_conv1"},
        {"resnet50", "conv5_block3_1_conv"},
        {"resnet101", "conv5_block3_1_conv"},
        {"resnet152", "conv5_block3_1_conv"},
        {"resnet50v2", "conv5_block3_preact_bn"},
        {"resnet101v2", "conv5_block3_preact_bn"},
        {"resnet152v2", "conv5_block3_preact_bn"},
        {"densenet121", "conv5_block16_0_bn"},
        {"densenet169", "conv5_block32_0_bn"},
        {"densenet201", "conv5_block32_0_bn"},
        {"mobilenet", "conv_dw_13"},
        {"mobilenet_v2", "block_16_expand"},
        {"inceptionv3", "mixed9"},
        {"xception", "block14_sepconv1"},
        {"mobilenetv3small", "expanded_conv_10/expand"},
        {"mobilenetv3large", "expanded_conv_14/expand"},
        {"convnexttiny", "convnext_tiny_stage_3_block_2_depthwise_conv"},
        {"convnextsmall", "convnext_small_stage_3_block_2_depthwise_conv"},
        {"convnextbase", "convnext_base_stage_3_block_2_depthwise_conv"},
    };
    const char *first = NULL;
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
        if (!strcmp(marks[i].arch, arch)) first = marks[i].first;
    if (!strncmp(arch, "efficientnet", 12)) first = "block7a_expand_conv";
    for (int i = 0; first && i < graft_model_num_layers(m); i++)
        if (!strcmp(graft_layer_name(graft_model_layer(m, i)), first))
            return !strcmp(arch, "inceptionv3") ? i + 1 : i; /* after the mixed9 concatenation */
    return graft_model_num_layers(m) - 10;
}

static int fail(void)
{
    fprintf(stderr, "bench_features: %s\n", graft_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s ARCH [seconds] [threads] [features|finetune]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    graft_threads_set(argc > 3 ? atoi(argv[3]) : 2);
    int finetune = argc > 4 && !strcmp(argv[4], "finetune");
    const graft_zoo_arch *arch = graft_zoo_find(argv[1]);
    if (!arch) {
        fprintf(stderr, "bench_features: unknown architecture '%s'\n", argv[1]);
        return 2;
    }
    int side = arch->min_size > SIDE ? arch->min_size : SIDE;
    graft_zoo_cfg c = graft_zoo_default_cfg();
    c.include_top = 0;
    c.input_shape[0] = c.input_shape[1] = side;
    graft_model *m = NULL;
    if (graft_zoo_build(arch->name, &c, &m) != GRAFT_OK) return fail();
    int n_base = graft_model_num_layers(m);
    graft_shape os = graft_layer_output_shape(graft_model_output(m));
    size_t in_n = (size_t)BATCH * side * side * 3, out_n = (size_t)BATCH * graft_shape_size(&os);
    float *x = malloc(2 * in_n * sizeof(float)), *y = malloc(out_n * sizeof(float) + 2 * BATCH);
    if (!x || !y) return 1;
    graft_rng rng;
    graft_rng_seed(&rng, 1);
    for (size_t i = 0; i < 2 * in_n; i++) x[i] = 2.0f * graft_rng_uniform(&rng) - 1.0f;
    double ips, fpi;
    if (!finetune) {
        graft_model_set_trainable(m, 0, n_base, 0); /* frozen, as in the lesson */
        if (graft_model_predict(m, x, BATCH, y) != GRAFT_OK) return fail(); /* warm-up */
        int iters = 0;
        double t0 = now(), t;
        do {
            if (graft_model_predict(m, x, BATCH, y) != GRAFT_OK) return fail();
            iters++;
            t = now() - t0;
        } while (t < seconds || iters < 2);
        ips = iters * BATCH / t;
        fpi = flops_per_image(m, 0);
    } else {
        graft_global_average_pooling2d(m, NULL, "global_average_pooling2d");
        graft_dense(m, NULL, (graft_dense_cfg){.name = "predictions_new", .units = 1,
                                               .activation = GRAFT_SIGMOID});
        int first = top_block(m, arch->name);
        graft_compile_cfg cc = {.optimizer = graft_adam(1e-5f), .loss = GRAFT_BINARY_CROSSENTROPY};
        if (graft_model_status(m) != GRAFT_OK || graft_model_set_trainable(m, 0, first, 0) ||
            graft_model_compile(m, &cc) != GRAFT_OK)
            return fail();
        for (int i = 0; i < 2 * BATCH; i++) y[i] = (float)(i % 2);
        graft_source *src = graft_source_arrays(x, y, 2 * BATCH, graft_shape3(side, side, 3), 1,
                                                BATCH, 1, 1);
        if (!src) return fail();
        graft_fit_cfg warm = {.epochs = 1, .steps_per_epoch = 1, .no_feature_cache = 1};
        if (graft_model_fit(m, src, &warm, NULL) != GRAFT_OK) return fail();
        int steps = 1;
        double t0 = now(), t;
        for (;;) {
            graft_fit_cfg fc = {.epochs = 1, .steps_per_epoch = steps, .no_feature_cache = 1};
            t0 = now();
            if (graft_model_fit(m, src, &fc, NULL) != GRAFT_OK) return fail();
            t = now() - t0;
            if (t >= seconds || steps >= 1000) break;
            steps = t > 0 ? (int)(steps * seconds / t) + 1 : steps * 2; /* one timed fit of about `seconds` */
        }
        ips = steps * BATCH / t;
        fpi = flops_per_image(m, 0) + 2 * flops_per_image(m, first);
        graft_source_free(src);
    }
    printf("graft %s %.2f img/s %.1f GFLOP/s %.0f %d\n", arch->name, ips, ips * fpi / 1e9, fpi, side);
    free(x);
    free(y);
    graft_model_free(m);
    return 0;
}
