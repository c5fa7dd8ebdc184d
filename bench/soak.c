/*
 * Memory over a long run: trains a small CNN on an image folder for many
 * epochs (the data pipeline's worker threads, a validation pass, a
 * checkpoint and a history file every epoch) and prints the resident set
 * size after each epoch. A leak shows as RSS that keeps growing after the
 * first epochs; a flat line is what a 20-hour run needs.
 * Usage: soak DATA_DIR OUT_DIR [EPOCHS]   (DATA_DIR: one subfolder per class)
 */
#include "graft.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    long first, after_warmup, last, peak;
    const char *history_path;
    const graft_history *h;
} soak_ctx;

#define WARMUP_EPOCHS 3

static graft_status on_epoch_end(void *vctx, graft_model *m, const graft_epoch_logs *logs, int *stop)
{
    soak_ctx *c = vctx;
    graft_status s = graft_history_save_json(c->history_path, c->h, NULL, 0);
    long r = rss_kib();
    if (logs->epoch == 0) c->first = r;
    if (logs->epoch == WARMUP_EPOCHS - 1) c->after_warmup = r;
    if (r > c->peak) c->peak = r;
    c->last = r;
    printf("epoch %4d  loss %.4f  val_accuracy %.3f  rss %ld KiB\n", logs->epoch + 1, logs->loss,
           logs->val_accuracy, r);
    fflush(stdout);
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: soak DATA_DIR OUT_DIR [EPOCHS]\n");
        return 2;
    }
    int epochs = argc > 3 ? atoi(argv[3]) : 100;
    if (epochs <= WARMUP_EPOCHS) epochs = WARMUP_EPOCHS + 1;
    graft_image_data_generator gen = {.rescale = 1.0f / 255, .horizontal_flip = 1, .rotation_range = 10};
    graft_flow_cfg fc = {.target_size = {32, 32}, .class_mode = GRAFT_CLASS_BINARY, .batch_size = 16,
                         .seed = 1, .quiet = 1};
    graft_source *train = NULL, *val = NULL;
    graft_status s = graft_flow_from_directory(argv[1], &gen, &fc, &train);
    fc.no_shuffle = 1;
    if (s == GRAFT_OK) s = graft_flow_from_directory(argv[1], NULL, &fc, &val);
    graft_model *m = graft_model_new("soak");
    graft_input(m, "input_1", graft_shape3(32, 32, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 16, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(m, NULL, (graft_pool2d_cfg){0});
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_global_average_pooling2d(m, NULL, NULL);
    graft_dropout(m, NULL, NULL, 0.2f);
    graft_dense(m, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    graft_compile_cfg cc = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_BINARY_CROSSENTROPY, .seed = 1};
    if (s == GRAFT_OK) s = graft_model_status(m);
    if (s == GRAFT_OK) s = graft_model_compile(m, &cc);
    graft_history h;
    graft_history_init(&h);
    char ck[4096], hp[4096];
    snprintf(ck, sizeof ck, "%s/checkpoint.graft", argv[2]);
    snprintf(hp, sizeof hp, "%s/history.json", argv[2]);
    soak_ctx ctx = {.history_path = hp, .h = &h};
    graft_callback cbs[2] = {{0}, {.ctx = &ctx, .on_epoch_end = on_epoch_end}};
    if (s == GRAFT_OK) s = graft_train_state_callback(ck, train, val, &h, &cbs[0]);
    graft_fit_cfg fit = {.epochs = epochs, .validation_data = val, .callbacks = cbs, .n_callbacks = 2};
    if (s == GRAFT_OK) s = graft_model_fit(m, train, &fit, &h);
    if (s != GRAFT_OK) {
        fprintf(stderr, "soak: %s\n", graft_last_error());
    } else {
        printf("rss after epoch 1: %ld KiB, after epoch %d: %ld KiB, at the end (epoch %d): %ld KiB, "
               "peak %ld KiB; growth after warm-up: %+ld KiB (%+.3f KiB/epoch)\n",
               ctx.first, WARMUP_EPOCHS, ctx.after_warmup, epochs, ctx.last, ctx.peak,
               ctx.last - ctx.after_warmup,
               (double)(ctx.last - ctx.after_warmup) / (epochs - WARMUP_EPOCHS));
    }
    graft_callback_free(&cbs[0]);
    graft_history_free(&h);
    graft_source_free(train);
    graft_source_free(val);
    graft_model_free(m);
    return s == GRAFT_OK ? 0 : 1;
}
