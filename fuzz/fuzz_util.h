/* What the fuzz targets share: a scratch folder of this process (the readers
 * that take a path get the input as a file there), removed at exit. */
#ifndef GRAFT_FUZZ_UTIL_H
#define GRAFT_FUZZ_UTIL_H

#include "graft.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libhdf5 1.10.8 loses the blocks of an object header it fails to load
 * into its metadata cache (a corrupt header: allocated under H5C_protect,
 * reached from H5Aexists, H5Gopen2, H5Dopen2): a bug of the library, not
 * graft's. Every other leak, libhdf5's vlen strings included, still counts. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:H5C_protect\n"; }

static char fuzz_dir[64];

static inline void fuzz_dir_remove(void)
{
    DIR *d = opendir(fuzz_dir);
    if (!d) return;
    struct dirent *e;
    char p[400];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", fuzz_dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(fuzz_dir);
}

/* Makes a fresh folder named prefix_XXXXXX in memory (/dev/shm) where there
 * is one, else in /tmp: the targets write files on every run. */
static inline void fuzz_mkdtemp(char *buf, size_t cap, const char *prefix)
{
    snprintf(buf, cap, "/dev/shm/%s_XXXXXX", prefix);
    if (mkdtemp(buf)) return;
    snprintf(buf, cap, "/tmp/%s_XXXXXX", prefix);
    if (!mkdtemp(buf)) abort(); /* the harness, not graft: nothing to fuzz without it */
}

/* A path in the scratch folder, which is made on first use. */
static inline const char *fuzz_path(const char *name)
{
    static char buf[4][320];
    static int k;
    if (!fuzz_dir[0]) {
        fuzz_mkdtemp(fuzz_dir, sizeof fuzz_dir, "graft_fuzz");
        atexit(fuzz_dir_remove);
    }
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fuzz_dir, name);
    return buf[k];
}

/* Writes bytes to a file of the scratch folder and returns its path. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    const char *p = fuzz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    return p;
}

/* graft's error messages must always be NUL-terminated text. */
static inline void fuzz_check_message(void)
{
    const char *msg = graft_last_error();
    if (!msg || strlen(msg) > 65536) abort();
}

/* The small model the weight-file seeds are saved from (fuzz/make_seeds.c),
 * so that mutated files reach the code that matches weights to layers. */
static inline graft_model *fuzz_small_model(void)
{
    graft_model *m = graft_model_new("small");
    graft_input(m, "input_1", graft_shape3(8, 8, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv", .filters = 4, .kernel_size = {3, 3},
                                             .activation = GRAFT_RELU});
    graft_batch_norm(m, NULL, (graft_batch_norm_cfg){.name = "bn"});
    graft_depthwise_conv2d(m, NULL, (graft_depthwise_conv2d_cfg){.name = "dw", .kernel_size = {3, 3}});
    graft_global_average_pooling2d(m, NULL, "gap");
    graft_dropout(m, NULL, "drop", 0.5f);
    graft_dense(m, NULL, (graft_dense_cfg){.name = "dense", .units = 2, .activation = GRAFT_SOFTMAX});
    if (graft_model_status(m) != GRAFT_OK) abort();
    return m;
}

#endif
