/*
 * flow_from_directory: Keras's DirectoryIterator as a graft_source.
 *
 * Listing follows Keras exactly (class subfolders sorted; inside each, the
 * folders of a recursive walk sorted by path and their files sorted by
 * name; the extension test is Keras's lower-case endswith; validation_split
 * takes the first fraction of each class). Shuffling and augmentation are
 * derived from (seed, pass, file) so that the worker threads of prefetch.c
 * produce the same batches whatever their timing. A file that fails to
 * decode is dropped from its batch, warned about once and counted.
 */
#include "data/data.h"
#include "train/source.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Any number of classes up to this; more class folders than that is a wrong
 * folder (a home or a cache folder), not a dataset. */
enum { MAX_CLASSES = 100000 };

/* Keras's white-list (image_dataset_from_directory adds gif), and WebP. */
static const char *const image_exts[] = {"png", "jpg", "jpeg", "bmp",  "ppm",
                                         "tif", "tiff", "gif", "webp"};

static int is_image_name(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof image_exts / sizeof *image_exts; i++) {
        size_t e = strlen(image_exts[i]);
        if (n >= e && strcasecmp(name + n - e, image_exts[i]) == 0) return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), cap = na + strlen(b) + 2;
    char *s = malloc(cap);
    if (!s) return NULL;
    snprintf(s, cap, "%s%s%s", a, na && a[na - 1] != '/' ? "/" : "", b);
    return s;
}

/* A growable list of strings. */
typedef struct {
    char **v;
    int n, cap;
} strlist;

static int strlist_push(strlist *l, char *s)
{
    if (!s) return -1;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, sizeof(char *) * (size_t)cap);
        if (!v) {
            free(s);
            return -1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

static void strlist_free(strlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The entries of one folder, sorted: subfolders and other names apart. */
static graft_status list_dir(const char *path, strlist *dirs, strlist *files, int follow_links)
{
    DIR *d = opendir(path);
    if (!d) return graft_fail(GRAFT_EIO, "%s: cannot open folder: %s", path, strerror(errno));
    struct dirent *e;
    graft_status st = GRAFT_OK;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *full = join(path, e->d_name);
        if (!full) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory while listing", path);
            break;
        }
        struct stat sb, lsb;
        int is_dir = stat(full, &sb) == 0 && S_ISDIR(sb.st_mode);
        int is_link = lstat(full, &lsb) == 0 && S_ISLNK(lsb.st_mode);
        int r = 0;
        /* As os.walk: a link to a folder is a folder, entered only with follow_links. */
        if (is_dir) {
            if (dirs && (!is_link || follow_links)) r = strlist_push(dirs, full);
            else free(full);
        } else {
            free(full);
            if (files) r = strlist_push(files, strdup(e->d_name));
        }
        if (r) {
            st = graft_fail(GRAFT_ENOMEM, "%s: no memory while listing", path);
            break;
        }
        errno = 0;
    }
    if (st == GRAFT_OK && errno)
        st = graft_fail(GRAFT_EIO, "%s: cannot read folder: %s", path, strerror(errno));
    closedir(d);
    if (dirs && dirs->n > 1) qsort(dirs->v, (size_t)dirs->n, sizeof(char *), cmp_str);
    if (files && files->n > 1) qsort(files->v, (size_t)files->n, sizeof(char *), cmp_str);
    return st;
}

/* Every folder under (and including) root, as full paths sorted the way
 * Keras sorts os.walk's tuples. Linked folders that lead back to one already
 * seen are not walked twice (os.walk would loop forever). */
static graft_status walk_dirs(const char *root, int follow_links, strlist *out)
{
    graft_status st = GRAFT_OK;
    dev_t *seen_dev = NULL;
    ino_t *seen_ino = NULL;
    int n_seen = 0;
    if (strlist_push(out, strdup(root))) return graft_fail(GRAFT_ENOMEM, "no memory");
    for (int i = 0; i < out->n && st == GRAFT_OK; i++) {
        struct stat sb;
        if (stat(out->v[i], &sb) == 0) {
            int dup = 0;
            for (int k = 0; k < n_seen; k++)
                if (seen_dev[k] == sb.st_dev && seen_ino[k] == sb.st_ino) dup = 1;
            if (dup) {
                out->v[i][0] = '\0'; /* marked: no files, no descent */
                continue;
            }
            dev_t *nd = realloc(seen_dev, sizeof(dev_t) * (size_t)(n_seen + 1));
            if (nd) seen_dev = nd;
            ino_t *ni = realloc(seen_ino, sizeof(ino_t) * (size_t)(n_seen + 1));
            if (ni) seen_ino = ni;
            if (!nd || !ni) {
                st = graft_fail(GRAFT_ENOMEM, "no memory while walking %s", root);
                break;
            }
            seen_dev[n_seen] = sb.st_dev;
            seen_ino[n_seen++] = sb.st_ino;
        }
        strlist sub = {0};
        st = list_dir(out->v[i], &sub, NULL, follow_links);
        for (int k = 0; k < sub.n && st == GRAFT_OK; k++) {
            if (strlist_push(out, sub.v[k])) st = graft_fail(GRAFT_ENOMEM, "no memory");
            sub.v[k] = NULL;
        }
        strlist_free(&sub);
    }
    free(seen_dev);
    free(seen_ino);
    if (st == GRAFT_OK && out->n > 1) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return st;
}

/* ------------------------------------------------------------- the source */

typedef struct {
    graft_source base; /* first: the graft_source pointer is this struct */
    char *dir;
    int n, n_classes, n_ignored;
    char **class_names;
    char **filenames; /* relative: "cats/cat.0.jpg" */
    char **paths;
    int *classes;
    atomic_uchar *bad;
    atomic_int skipped;
    int h, w, c;
    graft_flow_cfg cfg;
    int has_gen;
    graft_image_data_generator gen;
    float mean[4], std[4];
    graft_decode_opts dec;
    graft_prefetch *pf;
    long served;       /* batches returned */
    int pass_dropped;  /* samples dropped in the current pass */
    int *last_idx;
    int last_n;
} flow;

static graft_status flow_next(graft_source *self, float *x, float *y, int *n);
static void flow_free(graft_source *self);
static void label(const flow *f, int i, float *y);

static flow *as_flow(const graft_source *s)
{
    return s && s->next == flow_next ? (flow *)s : NULL;
}

/* Decodes, resizes and augments sample `pos` of pass `pass`. */
static int flow_fill(void *ctx, long pass, int pos, float *x, float *y, int *index)
{
    flow *f = ctx;
    uint32_t i = f->cfg.no_shuffle
                     ? (uint32_t)pos
                     : graft_permute_index((uint32_t)pos, (uint32_t)f->n,
                                           graft_mix64(f->cfg.seed, (uint64_t)pass));
    *index = (int)i;
    if (graft_source_book_get(&f->base)->shard_count > 1) {
        int b = pos / f->base.batch_size, k = pos % f->base.batch_size;
        int count = b == f->base.length - 1 ? f->n - b * f->base.batch_size : f->base.batch_size;
        if (!graft_source_keeps(&f->base, k, count, i)) return -1; /* another rank's */
    }
    if (atomic_load(&f->bad[i])) return -1;
    graft_img img, sized;
    graft_status st = graft_img_decode(f->paths[i], &f->dec, &img);
    if (st == GRAFT_OK) {
        if (img.h == f->h && img.w == f->w) {
            sized = img;
        } else {
            st = graft_img_resize(&img, f->h, f->w, f->cfg.interpolation, &sized);
            graft_img_free(&img);
        }
    }
    if (st != GRAFT_OK) {
        if (f->cfg.strict) return st;
        if (!atomic_exchange(&f->bad[i], 1)) {
            atomic_fetch_add(&f->skipped, 1);
            if (!f->cfg.quiet) fprintf(stderr, "graft: skipping %s\n", graft_last_error());
        }
        return -1;
    }
    size_t n = (size_t)f->h * (size_t)f->w * (size_t)f->c;
    for (size_t k = 0; k < n; k++) x[k] = sized.px[k];
    graft_img_free(&sized);
    if (f->has_gen) {
        graft_rng rng;
        graft_rng_seed(&rng, graft_mix64(graft_mix64(f->cfg.seed, (uint64_t)pass), i));
        graft_transform t;
        graft_transform_random(&f->gen, f->h, f->w, &rng, &t);
        /* n > 0: graft_flow_from_directory checked the target size. */
        float *tmp = malloc(n * sizeof(float)); // NOLINT(clang-analyzer-optin.portability.UnixAPI)
        if (!tmp) return graft_fail(GRAFT_ENOMEM, "%s: no memory to augment", f->paths[i]);
        graft_transform_apply(&t, f->gen.fill_mode, f->gen.cval, f->gen.interpolation_order_nearest ? 0 : 1,
                              x, tmp, f->h, f->w, f->c);
        free(tmp);
        st = graft_standardize(&f->gen, x, f->h, f->w, f->c);
        if (st != GRAFT_OK) return st;
    }
    if (f->cfg.class_mode == GRAFT_CLASS_INPUT) memcpy(y, x, n * sizeof(float));
    else label(f, (int)i, y);
    return GRAFT_OK;
}

/* Labels of sample i as the class mode wants them (not for class_mode input). */
static void label(const flow *f, int i, float *y)
{
    switch (f->cfg.class_mode) {
    case GRAFT_CLASS_CATEGORICAL:
        for (int k = 0; k < f->n_classes; k++) y[k] = k == f->classes[i];
        break;
    case GRAFT_CLASS_BINARY:
    case GRAFT_CLASS_SPARSE: y[0] = (float)f->classes[i]; break;
    case GRAFT_CLASS_INPUT:
    case GRAFT_CLASS_NONE: break;
    }
}

/* How many of batch b's `count` samples are this rank's. */
static int shard_share(const flow *f, int b, int count)
{
    if (graft_source_book_get(&f->base)->shard_count <= 1) return count;
    long pass = f->served / f->base.length;
    int m = 0;
    for (int k = 0; k < count; k++) {
        int pos = b * f->base.batch_size + k;
        uint32_t i = f->cfg.no_shuffle ? (uint32_t)pos
                                       : graft_permute_index((uint32_t)pos, (uint32_t)f->n,
                                                             graft_mix64(f->cfg.seed, (uint64_t)pass));
        m += graft_source_keeps(&f->base, k, count, i);
    }
    return m;
}

static graft_status flow_next_ids(graft_source *self, float *x, float *y, int *n, long *ids)
{
    flow *f = (flow *)self;
    int b = (int)(f->served % self->length);
    int expected = b == self->length - 1 ? f->n - b * self->batch_size : self->batch_size;
    graft_status st = GRAFT_OK;
    if (!x) {
        /* Ids and labels only (feature caching): work out the batch without
         * decoding, skipping the files already found bad. */
        if (f->cfg.class_mode == GRAFT_CLASS_INPUT)
            return graft_fail(GRAFT_EINVAL, "%s: class_mode input needs the images", f->dir);
        long pass = f->served / self->length;
        int m = 0;
        for (int k = 0; k < expected; k++) {
            int pos = b * self->batch_size + k;
            uint32_t i = f->cfg.no_shuffle ? (uint32_t)pos
                                           : graft_permute_index((uint32_t)pos, (uint32_t)f->n,
                                                                 graft_mix64(f->cfg.seed, (uint64_t)pass));
            if (!graft_source_keeps(self, k, expected, i) || atomic_load(&f->bad[i])) continue;
            label(f, (int)i, y + (size_t)m * (size_t)self->y_dim);
            f->last_idx[m] = (int)i;
            if (ids) ids[m] = i;
            m++;
        }
        *n = m;
    } else {
        st = graft_prefetch_seek(f->pf, f->served); /* after ids-only batches */
        if (st == GRAFT_OK) st = graft_prefetch_next(f->pf, x, y, f->last_idx, n);
        for (int k = 0; ids && st == GRAFT_OK && k < *n; k++) ids[k] = f->last_idx[k];
        f->pass_dropped += shard_share(f, b, expected) - *n;
    }
    f->last_n = *n;
    f->served++;
    if (b == self->length - 1) {
        if (f->pass_dropped && !f->cfg.quiet)
            fprintf(stderr, "graft: %d image(s) skipped in this pass of %s (unreadable or malformed)\n",
                    f->pass_dropped, f->dir);
        f->pass_dropped = 0;
    }
    return st;
}

static graft_status flow_next(graft_source *self, float *x, float *y, int *n)
{
    return flow_next_ids(self, x, y, n, NULL);
}

static void flow_free(graft_source *self)
{
    flow *f = (flow *)self;
    if (!f) return;
    graft_prefetch_free(f->pf);
    free(f->dir);
    for (int i = 0; i < f->n_classes; i++) free(f->class_names[i]);
    free(f->class_names);
    for (int i = 0; i < f->n; i++) {
        free(f->filenames[i]);
        free(f->paths[i]);
    }
    free(f->filenames);
    free(f->paths);
    free(f->classes);
    free(f->bad);
    free(f->last_idx);
    free(f);
}

/* The image files of one class folder in Keras's order, then the split. */
static graft_status list_class(flow *f, const char *dir, int cls, double lo, double hi,
                               strlist *paths, strlist *rel, int **classes, int *cap)
{
    char *cdir = join(dir, f->class_names[cls]);
    if (!cdir) return graft_fail(GRAFT_ENOMEM, "no memory");
    strlist dirs = {0}, all = {0};
    graft_status st = GRAFT_OK;
    struct stat sb;
    if (stat(cdir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        if (!f->cfg.quiet) fprintf(stderr, "graft: class folder %s does not exist\n", cdir);
        free(cdir);
        return GRAFT_OK;
    }
    st = walk_dirs(cdir, f->cfg.follow_links, &dirs);
    for (int d = 0; d < dirs.n && st == GRAFT_OK; d++) {
        if (!dirs.v[d][0]) continue;
        strlist files = {0};
        st = list_dir(dirs.v[d], NULL, &files, f->cfg.follow_links);
        for (int k = 0; k < files.n && st == GRAFT_OK; k++) {
            if (!is_image_name(files.v[k])) {
                f->n_ignored++;
                continue;
            }
            if (strlist_push(&all, join(dirs.v[d], files.v[k])))
                st = graft_fail(GRAFT_ENOMEM, "no memory while listing %s", cdir);
        }
        strlist_free(&files);
    }
    int start = (int)(lo * all.n), stop = (int)(hi * all.n);
    size_t cut = strlen(dir);
    for (int k = start; k < stop && st == GRAFT_OK; k++) {
        if (paths->n == *cap) {
            int ncap = *cap ? 2 * *cap : 64;
            int *nc = realloc(*classes, sizeof(int) * (size_t)ncap);
            if (!nc) {
                st = graft_fail(GRAFT_ENOMEM, "no memory");
                break;
            }
            *classes = nc;
            *cap = ncap;
        }
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): start <= k < stop <= all.n
        const char *r = all.v[k] + cut;
        while (*r == '/') r++;
        if (strlist_push(rel, strdup(r))) {
            st = graft_fail(GRAFT_ENOMEM, "no memory");
            break;
        }
        /* paths owns the string from here on, or a failed push has freed it. */
        char *path = all.v[k];
        all.v[k] = NULL;
        if (strlist_push(paths, path)) {
            st = graft_fail(GRAFT_ENOMEM, "no memory");
            break;
        }
        (*classes)[paths->n - 1] = cls;
    }
    strlist_free(&all);
    strlist_free(&dirs);
    free(cdir);
    return st;
}

graft_status graft_flow_from_directory(const char *dir, const graft_image_data_generator *gen,
                                       const graft_flow_cfg *cfg_in, graft_source **out)
{
    *out = NULL;
    if (!dir || !cfg_in) return graft_fail(GRAFT_EINVAL, "flow_from_directory: NULL argument");
    graft_flow_cfg cfg = *cfg_in;
    if (!cfg.target_size[0] && !cfg.target_size[1]) cfg.target_size[0] = cfg.target_size[1] = 256;
    if (cfg.target_size[0] <= 0 || cfg.target_size[1] <= 0)
        return graft_fail(GRAFT_EINVAL, "flow_from_directory(%s): target_size (%d, %d)", dir,
                          cfg.target_size[0], cfg.target_size[1]);
    if (!cfg.batch_size) cfg.batch_size = 32;
    if (cfg.batch_size < 0)
        return graft_fail(GRAFT_EINVAL, "flow_from_directory(%s): batch_size %d", dir, cfg.batch_size);
    if (!cfg.workers) cfg.workers = 2;
    if (!cfg.queue_depth) cfg.queue_depth = 2 * cfg.workers;
    if (cfg.workers < 0 || cfg.queue_depth < 0)
        return graft_fail(GRAFT_EINVAL, "flow_from_directory(%s): workers %d, queue_depth %d", dir,
                          cfg.workers, cfg.queue_depth);
    if ((unsigned)cfg.interpolation > GRAFT_INTERP_LANCZOS || (unsigned)cfg.color_mode > GRAFT_COLOR_RGBA ||
        (unsigned)cfg.class_mode > GRAFT_CLASS_NONE || (unsigned)cfg.subset > GRAFT_SUBSET_VALIDATION)
        return graft_fail(GRAFT_EINVAL, "flow_from_directory(%s): an enum option is out of range", dir);
    double split = gen ? gen->validation_split : 0;
    if (split < 0 || split >= 1)
        return graft_fail(GRAFT_EINVAL, "validation_split %g must be in [0, 1)", split);
    if (cfg.subset != GRAFT_SUBSET_ALL && split == 0)
        return graft_fail(GRAFT_EINVAL,
                          "flow_from_directory(%s): a subset needs a validation_split in the generator",
                          dir);
    int c = cfg.color_mode == GRAFT_COLOR_GRAYSCALE ? 1 : cfg.color_mode == GRAFT_COLOR_RGBA ? 4 : 3;
    if (gen && ((gen->featurewise_center && !gen->mean) ||
                (gen->featurewise_std_normalization && !gen->std)))
        return graft_fail(GRAFT_EINVAL,
                          "featurewise centering/normalisation needs the per-channel mean/std");
    if (gen && gen->zca_whitening &&
        (!gen->principal_components ||
         (long)gen->zca_dim != (long)cfg.target_size[0] * cfg.target_size[1] * c))
        return graft_fail(GRAFT_EINVAL,
                          "ZCA whitening needs principal components fitted on %dx%dx%d images "
                          "(graft_generator_fit)",
                          cfg.target_size[0], cfg.target_size[1], c);
    if (gen && ((gen->zoom_range[1] != 0 && gen->zoom_range[0] > gen->zoom_range[1]) ||
                gen->zoom_range[0] < 0 || gen->brightness_range[0] > gen->brightness_range[1]))
        return graft_fail(GRAFT_EINVAL, "zoom_range / brightness_range must be [lower, upper]");

    flow *f = calloc(1, sizeof *f);
    if (!f) return graft_fail(GRAFT_ENOMEM, "no memory");
    f->cfg = cfg;
    f->cfg.classes = NULL;
    f->dir = strdup(dir);
    if (!f->dir) {
        free(f);
        return graft_fail(GRAFT_ENOMEM, "no memory");
    }
    f->h = cfg.target_size[0];
    f->w = cfg.target_size[1];
    f->c = c;
    if (gen) {
        f->has_gen = 1;
        f->gen = *gen;
        for (int k = 0; k < c; k++) {
            if (gen->mean) f->mean[k] = gen->mean[k];
            if (gen->std) f->std[k] = gen->std[k];
        }
        f->gen.mean = gen->mean ? f->mean : NULL;
        f->gen.std = gen->std ? f->std : NULL;
    }
    f->dec = (graft_decode_opts){.channels = c, .target_h = f->h, .target_w = f->w,
                                 .jpeg_full_decode = cfg.jpeg_full_decode,
                                 .max_pixels = cfg.max_pixels};
    graft_status st = GRAFT_OK;
    strlist names = {0}, paths = {0}, rel = {0};
    int *classes = NULL, cap = 0;

    if (cfg.classes && cfg.n_classes > MAX_CLASSES) {
        st = graft_fail(GRAFT_EINVAL, "flow_from_directory(%s): %d classes; graft takes at most %d",
                        dir, cfg.n_classes, MAX_CLASSES);
    } else if (cfg.classes) {
        for (int k = 0; k < cfg.n_classes && st == GRAFT_OK; k++)
            if (!cfg.classes[k] || strlist_push(&names, strdup(cfg.classes[k])))
                st = graft_fail(GRAFT_EINVAL, "bad class list");
    } else {
        st = list_dir(dir, &names, NULL, 1);
        /* list_dir returns full paths for folders: keep the names. */
        for (int k = 0; k < names.n; k++) {
            char *slash = strrchr(names.v[k], '/');
            memmove(names.v[k], slash + 1, strlen(slash + 1) + 1);
        }
        if (names.n > 1) qsort(names.v, (size_t)names.n, sizeof(char *), cmp_str);
    }
    if (st == GRAFT_OK && names.n > MAX_CLASSES)
        st = graft_fail(GRAFT_EINVAL,
                        "%s: %d class folders; graft takes at most %d classes (is this the folder "
                        "of the class folders?)",
                        dir, names.n, MAX_CLASSES);
    if (st != GRAFT_OK) goto fail;
    f->n_classes = names.n;
    f->class_names = names.v;
    names.v = NULL;
    names.n = 0;
    if (cfg.class_mode == GRAFT_CLASS_BINARY && f->n_classes > 2) {
        st = graft_fail(GRAFT_EINVAL, "%s: class_mode binary needs 2 classes, found %d", dir,
                        f->n_classes);
        goto fail;
    }
    double lo = 0, hi = 1;
    if (cfg.subset == GRAFT_SUBSET_VALIDATION) hi = split;
    if (cfg.subset == GRAFT_SUBSET_TRAINING) lo = split;
    for (int k = 0; k < f->n_classes && st == GRAFT_OK; k++)
        st = list_class(f, dir, k, lo, hi, &paths, &rel, &classes, &cap);
    if (st != GRAFT_OK) goto fail;
    f->n = paths.n;
    f->paths = paths.v;
    f->filenames = rel.v;
    f->classes = classes;
    /* f owns the strings now: the failure path below must not free them again. */
    memset(&paths, 0, sizeof paths);
    memset(&rel, 0, sizeof rel);
    classes = NULL;
    if (!cfg.quiet) {
        printf("Found %d images belonging to %d classes.\n", f->n, f->n_classes);
        fflush(stdout);
        if (f->n_ignored)
            fprintf(stderr, "graft: ignored %d file(s) without an image extension in %s\n",
                    f->n_ignored, dir);
    }
    if (f->n == 0) {
        st = graft_fail(GRAFT_ENOTFOUND,
                        "%s: no images found (expected one subfolder per class holding png, jpg, "
                        "jpeg, bmp, ppm, tif, tiff, gif or webp files)",
                        dir);
        goto fail;
    }
    f->bad = calloc((size_t)f->n, sizeof *f->bad);
    f->last_idx = malloc(sizeof(int) * (size_t)cfg.batch_size);
    if (!f->bad || !f->last_idx) {
        st = graft_fail(GRAFT_ENOMEM, "no memory");
        goto fail;
    }
    atomic_init(&f->skipped, 0);
    size_t xf = (size_t)f->h * (size_t)f->w * (size_t)c;
    int y_dim = 0;
    switch (cfg.class_mode) {
    case GRAFT_CLASS_CATEGORICAL: y_dim = f->n_classes; break;
    case GRAFT_CLASS_BINARY:
    case GRAFT_CLASS_SPARSE: y_dim = 1; break;
    case GRAFT_CLASS_INPUT: y_dim = (int)xf; break;
    case GRAFT_CLASS_NONE: y_dim = 0; break;
    }
    st = graft_prefetch_new(f->n, cfg.batch_size, xf, (size_t)y_dim, cfg.workers, cfg.queue_depth,
                            flow_fill, f, &f->pf);
    if (st != GRAFT_OK) goto fail;
    f->base.x_shape = graft_shape3(f->h, f->w, c);
    f->base.y_dim = y_dim;
    f->base.batch_size = cfg.batch_size;
    f->base.length = (f->n + cfg.batch_size - 1) / cfg.batch_size;
    f->base.next = flow_next;
    f->base.free = flow_free;
    f->base.n_samples = f->n;
    f->base.next_ids = flow_next_ids;
    f->base.decodes = 1;
    graft_source_mark_own(&f->base);
    /* Random transforms change a sample every pass: nothing to cache then. */
    f->base.deterministic = !(f->has_gen && graft_generator_is_random(&f->gen));
    *out = &f->base;
    return GRAFT_OK;
fail:
    strlist_free(&names);
    strlist_free(&paths);
    strlist_free(&rel);
    free(classes);
    f->base.next = flow_next;
    flow_free(&f->base);
    return st;
}

int graft_flow_samples(const graft_source *s)
{
    flow *f = as_flow(s);
    return f ? f->n : -1;
}

int graft_flow_num_classes(const graft_source *s)
{
    flow *f = as_flow(s);
    return f ? f->n_classes : -1;
}

const char *graft_flow_class_name(const graft_source *s, int k)
{
    flow *f = as_flow(s);
    return f && k >= 0 && k < f->n_classes ? f->class_names[k] : NULL;
}

int graft_flow_class_index(const graft_source *s, const char *name)
{
    flow *f = as_flow(s);
    if (!f || !name) return -1;
    for (int k = 0; k < f->n_classes; k++)
        if (strcmp(f->class_names[k], name) == 0) return k;
    return -1;
}

const char *graft_flow_filename(const graft_source *s, int i)
{
    flow *f = as_flow(s);
    return f && i >= 0 && i < f->n ? f->filenames[i] : NULL;
}

int graft_flow_class_of(const graft_source *s, int i)
{
    flow *f = as_flow(s);
    return f && i >= 0 && i < f->n ? f->classes[i] : -1;
}

int graft_flow_skipped(const graft_source *s)
{
    flow *f = as_flow(s);
    return f ? atomic_load(&f->skipped) : -1;
}

int graft_flow_last_indices(const graft_source *s, int *idx)
{
    flow *f = as_flow(s);
    if (!f) return -1;
    if (idx) memcpy(idx, f->last_idx, sizeof(int) * (size_t)f->last_n);
    return f->last_n;
}

/* ------------------------------------------------------------- predict */

/* One image at (target_h, target_w) as floats 0..255; a JPEG at full size,
 * or reduced by DCT scaling where that still covers the target. */
static graft_status load_img(const char *path, int target_h, int target_w, graft_interpolation interp,
                             int grayscale, int full_decode, float *out)
{
    graft_decode_opts o = {.channels = grayscale ? 1 : 3, .jpeg_full_decode = full_decode,
                           .target_h = target_h, .target_w = target_w};
    graft_img img, sized;
    graft_status st = graft_img_decode(path, &o, &img);
    if (st != GRAFT_OK) return st;
    if ((target_h == 0 && target_w == 0) || (img.h == target_h && img.w == target_w)) {
        sized = img;
    } else {
        st = graft_img_resize(&img, target_h, target_w, interp, &sized);
        graft_img_free(&img);
        if (st != GRAFT_OK) return st;
    }
    size_t n = (size_t)sized.h * (size_t)sized.w * (size_t)sized.c;
#pragma omp simd
    for (size_t k = 0; k < n; k++) out[k] = sized.px[k];
    graft_img_free(&sized);
    return GRAFT_OK;
}

graft_status graft_image_load(const char *path, int target_h, int target_w,
                              graft_interpolation interp, int grayscale, float *out)
{
    return load_img(path, target_h, target_w, interp, grayscale, 1, out);
}

graft_status graft_image_load_many(const char *const *paths, int n, int target_h, int target_w,
                                   graft_interpolation interp, int grayscale, int full_decode,
                                   float *out, int *ok, char (*why)[GRAFT_WHY_LEN])
{
    if (n < 0 || target_h <= 0 || target_w <= 0 || (n > 0 && (!paths || !out || !ok)))
        return graft_fail(GRAFT_EINVAL, "image_load_many: %d files at %dx%d", n, target_w, target_h);
    size_t each = (size_t)target_h * (size_t)target_w * (grayscale ? 1u : 3u);
    /* Images differ in size, so threads take them one at a time. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(graft_threads()) if (n > 1)
    for (int i = 0; i < n; i++) {
        graft_status st = load_img(paths[i], target_h, target_w, interp, grayscale, full_decode,
                                   out + (size_t)i * each);
        ok[i] = st == GRAFT_OK;
        if (why) snprintf(why[i], GRAFT_WHY_LEN, "%s", st == GRAFT_OK ? "" : graft_last_error());
    }
    return GRAFT_OK;
}

graft_status graft_image_list(const char *dir, char ***paths, int *n)
{
    *paths = NULL;
    *n = 0;
    strlist files = {0}, keep = {0};
    graft_status st = list_dir(dir, NULL, &files, 0);
    for (int k = 0; k < files.n && st == GRAFT_OK; k++)
        if (is_image_name(files.v[k]) && strlist_push(&keep, join(dir, files.v[k])))
            st = graft_fail(GRAFT_ENOMEM, "no memory while listing %s", dir);
    strlist_free(&files);
    if (st == GRAFT_OK && keep.n == 0)
        st = graft_fail(GRAFT_ENOTFOUND,
                        "%s: no png, jpg, jpeg, bmp, ppm, tif, tiff, gif or webp files", dir);
    if (st != GRAFT_OK) {
        strlist_free(&keep);
        return st;
    }
    *paths = keep.v;
    *n = keep.n;
    return GRAFT_OK;
}

void graft_image_list_free(char **paths, int n)
{
    for (int k = 0; k < n; k++) free(paths[k]);
    free(paths);
}
