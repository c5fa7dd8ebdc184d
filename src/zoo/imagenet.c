/*
 * ImageNet's side of the zoo: Keras's preprocess_input modes and
 * decode_predictions. Keras's class index is the 1000 ILSVRC-2012 WordNet ids
 * in sorted order; Debian's darknet package lists them (the first 1000 lines
 * of imagenet.labels.list) with names on the same lines of
 * imagenet.shortnames.list, so graft reads those instead of shipping a copy.
 */
#include "core/file_open.h"
#include "zoo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

graft_status graft_preprocess_input(const char *arch, float *x, size_t n_pixels)
{
    if (!arch || (!x && n_pixels))
        return graft_fail(GRAFT_EINVAL, "preprocess_input: missing architecture or data");
    const graft_zoo_arch *a = graft_zoo_find(arch);
    const char *mode = a ? a->preprocess : arch;
    if (!strcmp(mode, "tf")) {
#pragma omp simd
        for (size_t i = 0; i < 3 * n_pixels; i++) x[i] = x[i] / 127.5f - 1.0f;
        return GRAFT_OK;
    }
    if (!strcmp(mode, "caffe")) {
        /* RGB -> BGR, then the BGR ImageNet means. */
        for (size_t i = 0; i < n_pixels; i++) {
            float *p = x + 3 * i, r = p[0];
            p[0] = p[2] - 103.939f;
            p[1] = p[1] - 116.779f;
            p[2] = r - 123.68f;
        }
        return GRAFT_OK;
    }
    if (!strcmp(mode, "torch")) {
        static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
        for (size_t i = 0; i < 3 * n_pixels; i++)
            x[i] = (x[i] / 255.0f - mean[i % 3]) / std[i % 3];
        return GRAFT_OK;
    }
    if (!strcmp(mode, "none")) return GRAFT_OK;
    return graft_fail(GRAFT_EINVAL,
                      "preprocess_input: unknown architecture '%s' (a zoo base such as "
                      "ResNet50V2, or the modes tf, caffe, torch and none)",
                      arch);
}

/* ------------------------------------------------------------ labels */

#define DEFAULT_DARKNET_DIR "/usr/share/darknet/data"

typedef struct {
    char wnid[16];
    char name[64];
} label;

static pthread_mutex_t labels_lock = PTHREAD_MUTEX_INITIALIZER;
static label labels[GRAFT_IMAGENET_CLASSES];
static char labels_dir[4096]; /* the folder they came from; "" until loaded */

static int by_wnid(const void *a, const void *b)
{
    return strcmp(((const label *)a)->wnid, ((const label *)b)->wnid);
}

/* Reads the first `n` lines of a list, trimmed, each into dst + i*stride (cap bytes). */
static graft_status read_lines(const char *path, int n, char *dst, size_t stride, size_t cap,
                               const char *why)
{
    FILE *f;
    if (graft_fopen_regular(path, &f, NULL) != GRAFT_OK)
        return graft_fail(GRAFT_ENOTFOUND,
                          "%s: the ImageNet %s come from Debian's darknet package; install it, "
                          "or set GRAFT_DARKNET_DATA to a folder holding imagenet.labels.list "
                          "and imagenet.shortnames.list",
                          graft_last_error(), why);
    char line[512];
    int i = 0;
    while (i < n && fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (len == 0 || len >= cap) {
            fclose(f);
            return graft_fail(GRAFT_EFORMAT, "%s: line %d is %s", path, i + 1,
                              len ? "too long" : "empty");
        }
        memcpy(dst + (size_t)i * stride, line, len + 1);
        i++;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) return graft_fail(GRAFT_EIO, "%s: read error", path);
    if (i < n)
        return graft_fail(GRAFT_EFORMAT, "%s has %d lines; the ImageNet %s need %d", path, i, why,
                          n);
    return GRAFT_OK;
}

static graft_status load_labels_locked(void)
{
    const char *dir = graft_env(GRAFT_ENV_DARKNET_DATA);
    if (!dir || !*dir) dir = DEFAULT_DARKNET_DIR;
    if (labels_dir[0] && strcmp(dir, labels_dir) == 0) return GRAFT_OK;
    if (strlen(dir) + 32 > sizeof labels_dir)
        return graft_fail(GRAFT_EINVAL, "GRAFT_DARKNET_DATA is too long");
    static label fresh[GRAFT_IMAGENET_CLASSES];
    char path[4200];
    snprintf(path, sizeof path, "%s/imagenet.labels.list", dir);
    graft_status s = read_lines(path, GRAFT_IMAGENET_CLASSES, fresh[0].wnid, sizeof(label),
                                sizeof fresh[0].wnid, "class ids");
    if (s != GRAFT_OK) return s;
    snprintf(path, sizeof path, "%s/imagenet.shortnames.list", dir);
    s = read_lines(path, GRAFT_IMAGENET_CLASSES, fresh[0].name, sizeof(label),
                   sizeof fresh[0].name, "class names");
    if (s != GRAFT_OK) return s;
    qsort(fresh, GRAFT_IMAGENET_CLASSES, sizeof *fresh, by_wnid);
    for (int i = 0; i < GRAFT_IMAGENET_CLASSES; i++) {
        const char *w = fresh[i].wnid;
        if (w[0] != 'n' || strspn(w + 1, "0123456789") != 8 || w[9] != '\0' ||
            (i > 0 && strcmp(fresh[i - 1].wnid, w) == 0))
            return graft_fail(GRAFT_EFORMAT,
                              "%s/imagenet.labels.list: '%s' among the first %d lines is not a "
                              "distinct WordNet id",
                              dir, w, GRAFT_IMAGENET_CLASSES);
    }
    memcpy(labels, fresh, sizeof labels);
    snprintf(labels_dir, sizeof labels_dir, "%s", dir);
    return GRAFT_OK;
}

static graft_status load_labels(void)
{
    pthread_mutex_lock(&labels_lock);
    graft_status s = load_labels_locked();
    pthread_mutex_unlock(&labels_lock);
    return s;
}

graft_status graft_imagenet_class(int index, const char **wnid, const char **name)
{
    if (index < 0 || index >= GRAFT_IMAGENET_CLASSES)
        return graft_fail(GRAFT_EINVAL, "ImageNet class %d is out of range [0, %d)", index,
                          GRAFT_IMAGENET_CLASSES);
    graft_status s = load_labels();
    if (s != GRAFT_OK) return s;
    if (wnid) *wnid = labels[index].wnid;
    if (name) *name = labels[index].name;
    return GRAFT_OK;
}

graft_status graft_decode_predictions(const float *probs, int n_classes, int top,
                                      graft_prediction *out)
{
    if (!probs || !out || top < 1)
        return graft_fail(GRAFT_EINVAL, "decode_predictions: missing argument or top < 1");
    if (n_classes != GRAFT_IMAGENET_CLASSES)
        return graft_fail(GRAFT_ESHAPE,
                          "decode_predictions expects the %d ImageNet class probabilities, got %d",
                          GRAFT_IMAGENET_CLASSES, n_classes);
    if (top > n_classes) top = n_classes;
    graft_status s = load_labels();
    if (s != GRAFT_OK) return s;
    /* Selection by insertion into the sorted top list; ties keep the lower index. */
    int best[GRAFT_IMAGENET_CLASSES] = {0}, nb = 0;
    for (int i = 0; i < n_classes; i++) {
        float p = probs[i];
        if (nb == top && nb > 0 && !(p > probs[best[nb - 1]])) continue;
        int j = nb < top ? nb++ : nb - 1;
        while (j > 0 && p > probs[best[j - 1]]) {
            best[j] = best[j - 1];
            j--;
        }
        best[j] = i;
    }
    pthread_mutex_lock(&labels_lock);
    for (int k = 0; k < top; k++) {
        graft_prediction *o = &out[k];
        o->index = best[k];
        o->prob = probs[best[k]];
        snprintf(o->wnid, sizeof o->wnid, "%s", labels[best[k]].wnid);
        snprintf(o->name, sizeof o->name, "%s", labels[best[k]].name);
    }
    pthread_mutex_unlock(&labels_lock);
    return GRAFT_OK;
}

graft_status graft_preprocess_hook(void *ctx, float *x, int h, int w, int c)
{
    if (c != 3)
        return graft_fail(GRAFT_ESHAPE, "preprocess_input takes RGB images, not %d channels", c);
    if (h < 0 || w < 0) return graft_fail(GRAFT_EINVAL, "preprocess_input: negative image size");
    return graft_preprocess_input((const char *)ctx, x, (size_t)h * (size_t)w);
}
