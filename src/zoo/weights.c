/*
 * ImageNet weights by name: the files Keras Applications publishes (the same
 * URLs and checksums as tf.keras), a cache folder, and a libcurl download
 * that only ever leaves a complete, verified file in the cache.
 */
#include "core/file_open.h"
#include "zoo.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define KERAS_APPS "https://storage.googleapis.com/tensorflow/keras-applications/"

static bool alpha_is(double a, double v) { return fabs(a - v) < 1e-6; }

static bool in_list(int v, const int *list, int n)
{
    for (int i = 0; i < n; i++)
        if (list[i] == v) return true;
    return false;
}

static graft_status set_file(graft_weights_file *out, const char *dir, const char *file,
                             graft_hash_kind kind, const char *hash)
{
    memset(out, 0, sizeof *out);
    snprintf(out->file_name, sizeof out->file_name, "%s", file);
    const char *base = graft_env(GRAFT_ENV_WEIGHTS_BASE_URL);
    if (base && *base) {
        size_t len = strlen(base);
        snprintf(out->url, sizeof out->url, "%s%s%s", base, base[len - 1] == '/' ? "" : "/", file);
    } else {
        if (strstr(dir, "://")) /* EfficientNet's files sit elsewhere */
            snprintf(out->url, sizeof out->url, "%s%s", dir, file);
        else
            snprintf(out->url, sizeof out->url, KERAS_APPS "%s/%s", dir, file);
    }
    out->hash_kind = kind;
    snprintf(out->hash, sizeof out->hash, "%s", hash ? hash : "");
    return GRAFT_OK;
}

graft_status graft_zoo_imagenet_file(const char *arch, const graft_zoo_cfg *cfg,
                                     graft_weights_file *out)
{
    if (!arch || !out) return graft_fail(GRAFT_EINVAL, "imagenet weights: missing argument");
    graft_zoo_cfg c = cfg ? *cfg : graft_zoo_default_cfg();
    double alpha = c.alpha == 0.0f ? 1.0 : nearbyint((double)c.alpha * 1e6) / 1e6;
    const zoo_entry *known = graft_zoo_entry(arch);
    int rows = c.input_shape[0] ? c.input_shape[0] : known ? known->pub.default_size : 224;
    int cols = c.input_shape[1] ? c.input_shape[1] : known ? known->pub.default_size : 224;
    int chans = c.input_shape[2] ? c.input_shape[2] : 3;
    int classes = c.classes ? c.classes : 1000;
    if (chans != 3)
        return graft_fail(GRAFT_ESHAPE, "%s: the ImageNet weights need 3 input channels, not %d",
                          arch, chans);
    if (c.include_top && classes != 1000)
        return graft_fail(GRAFT_EINVAL,
                          "%s: the ImageNet top has 1000 classes; use include_top=0 with a head "
                          "of your own for %d classes",
                          arch, classes);
    char file[128];
    if (known) arch = known->pub.name;
    if (!strcmp(arch, "mobilenet")) {
        static const int sizes[] = {128, 160, 192, 224};
        static const struct {
            double alpha;
            const char *text;
        } alphas[] = {{0.25, "2_5"}, {0.5, "5_0"}, {0.75, "7_5"}, {1.0, "1_0"}};
        const char *text = NULL;
        for (int i = 0; i < 4; i++)
            if (alpha_is(alpha, alphas[i].alpha)) text = alphas[i].text;
        if (!text)
            return graft_fail(GRAFT_EUNSUPPORTED,
                              "MobileNet: ImageNet weights exist for alpha 0.25, 0.5, 0.75 and 1.0, "
                              "not %g",
                              alpha);
        if (c.depth_multiplier > 1)
            return graft_fail(GRAFT_EUNSUPPORTED,
                              "MobileNet: ImageNet weights need depth_multiplier 1");
        bool exact = rows == cols && in_list(rows, sizes, 4);
        if (c.include_top && !exact)
            return graft_fail(GRAFT_ESHAPE,
                              "MobileNet with its ImageNet top takes 128, 160, 192 or 224 square "
                              "input, not %dx%d",
                              rows, cols);
        /* Keras loads the 224 file for other sizes: convolutions fit any size. */
        snprintf(file, sizeof file, "mobilenet_%s_%d_tf%s.h5", text, exact ? rows : 224,
                 c.include_top ? "" : "_no_top");
        return set_file(out, "mobilenet", file, GRAFT_HASH_NONE, NULL);
    }
    if (!strcmp(arch, "mobilenet_v2")) {
        static const int sizes[] = {96, 128, 160, 192, 224};
        static const struct {
            double alpha;
            const char *text;
        } alphas[] = {{0.35, "0.35"}, {0.5, "0.5"}, {0.75, "0.75"},
                      {1.0, "1.0"},   {1.3, "1.3"}, {1.4, "1.4"}};
        const char *text = NULL;
        for (int i = 0; i < 6; i++)
            if (alpha_is(alpha, alphas[i].alpha)) text = alphas[i].text;
        if (!text)
            return graft_fail(GRAFT_EUNSUPPORTED,
                              "MobileNetV2: ImageNet weights exist for alpha 0.35, 0.5, 0.75, 1.0, "
                              "1.3 and 1.4, not %g",
                              alpha);
        bool exact = rows == cols && in_list(rows, sizes, 5);
        if (c.include_top && !exact)
            return graft_fail(GRAFT_ESHAPE,
                              "MobileNetV2 with its ImageNet top takes 96, 128, 160, 192 or 224 "
                              "square input, not %dx%d",
                              rows, cols);
        snprintf(file, sizeof file, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_%s_%d%s.h5",
                 text, exact ? rows : 224, c.include_top ? "" : "_no_top");
        return set_file(out, "mobilenet_v2", file, GRAFT_HASH_NONE, NULL);
    }
    if (known && known->build == graft_zoo_mobilenet_v3) {
        /* mobilenet_v3.py's WEIGHTS_HASHES: (with top, without top) per model. */
        static const struct {
            const char *model, *top, *notop;
        } v3[] = {
            {"large_224_0.75_float", "765b44a33ad4005b3ac83185abf1d0eb",
             "40af19a13ebea4e2ee0c676887f69a2e"},
            {"large_224_1.0_float", "59e551e166be033d707958cf9e29a6a7",
             "07fb09a5933dd0c8eaafa16978110389"},
            {"large_minimalistic_224_1.0_float", "675e7b876c45c57e9e63e6d90a36599c",
             "ec5221f64a2f6d1ef965a614bdae7973"},
            {"small_224_0.75_float", "cb65d4e5be93758266aa0a7f2c6708b7",
             "ebdb5cc8e0b497cd13a7c275d475c819"},
            {"small_224_1.0_float", "8768d4c2e7dee89b9d02b2d03d65d862",
             "d3e8ec802a04aa4fc771ee12a9a9b836"},
            {"small_minimalistic_224_1.0_float", "99cd97fb2fcdad2bf028eb838de69e37",
             "cde8136e733e811080d9fcd8a252f7e4"},
        };
        const char *k = known->pub.keras_name;
        bool full = alpha_is(alpha, 1.0);
        if (!full && !(alpha_is(alpha, 0.75) && !c.minimalistic))
            return graft_fail(GRAFT_EUNSUPPORTED,
                              "%s: ImageNet weights exist for alpha 0.75 and 1.0 (minimalistic: "
                              "1.0 only), not %g%s",
                              k, alpha, c.minimalistic ? " with minimalistic" : "");
        /* Keras loads the 224 files at any input size, with the top too: its
         * layers after the global pooling do not depend on the size. */
        char model[64];
        snprintf(model, sizeof model, "%s%s_224_%s_float", known->variant ? "large" : "small",
                 c.minimalistic ? "_minimalistic" : "", full ? "1.0" : "0.75");
        for (size_t i = 0; i < sizeof v3 / sizeof *v3; i++) {
            if (strcmp(v3[i].model, model) != 0) continue;
            /* The _v2 files without top end at Conv_1, as the TF 2.9 model
             * does (the earlier ones held Conv_2 too). */
            snprintf(file, sizeof file, "weights_mobilenet_v3_%s%s.h5", model,
                     c.include_top ? "" : "_no_top_v2");
            return set_file(out, known->weights_dir, file, GRAFT_HASH_MD5,
                            c.include_top ? v3[i].top : v3[i].notop);
        }
        return graft_fail(GRAFT_EUNSUPPORTED, "%s: no ImageNet weight file for %s", k, model);
    }
    const zoo_entry *e = graft_zoo_entry(arch);
    if (!e)
        return graft_fail(GRAFT_EINVAL, "unknown architecture '%s'; no ImageNet weights for it",
                          arch);
    const char *k = e->pub.keras_name;
    if (!e->weights_dir)
        return graft_fail(GRAFT_EUNSUPPORTED, "%s: graft knows no ImageNet weight file for it", k);
    int size = e->pub.default_size;
    if (c.include_top && (rows != size || cols != size))
        return graft_fail(GRAFT_ESHAPE, "%s with its ImageNet top takes %dx%d input, not %dx%d", k,
                          size, size, rows, cols);
    if (!alpha_is(alpha, 1.0)) return graft_fail(GRAFT_EINVAL, "%s has no alpha", k);
    return set_file(out, e->weights_dir, c.include_top ? e->top_file : e->notop_file,
                    e->hash_kind, c.include_top ? e->top_hash : e->notop_hash);
}

graft_status graft_zoo_cache_dir(char *buf, size_t cap)
{
    const char *home = graft_env(GRAFT_ENV_HOME);
    int n;
    if (home && *home) {
        n = snprintf(buf, cap, "%s/models", home);
    } else {
        const char *user = graft_env(GRAFT_ENV_USER_HOME);
        if (!user || !*user)
            return graft_fail(GRAFT_ENOTFOUND,
                              "no cache folder: set GRAFT_HOME (or HOME) to say where models go");
        n = snprintf(buf, cap, "%s/.cache/graft/models", user);
    }
    if (n < 0 || (size_t)n >= cap)
        return graft_fail(GRAFT_EINVAL, "the cache folder's path is too long");
    return GRAFT_OK;
}

/* mkdir -p */
static graft_status make_dirs(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return graft_fail(GRAFT_EINVAL, "path too long: %s", path);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char keep = *p;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return graft_fail(GRAFT_EIO, "cannot create folder %s: %s", tmp, strerror(errno));
        *p = keep;
        if (keep == '\0') break;
    }
    return GRAFT_OK;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;
static void curl_init(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct {
    FILE *f;
    zoo_hash hash;
    bool write_failed;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = userdata;
    size_t n = size * nmemb;
    if (fwrite(ptr, 1, n, s->f) != n) {
        s->write_failed = true;
        return 0; /* tells curl to stop */
    }
    graft_zoo_hash_update(&s->hash, ptr, n);
    return n;
}

graft_status graft_download(const char *url, const char *dest, graft_hash_kind kind,
                            const char *hex)
{
    if (!url || !dest) return graft_fail(GRAFT_EINVAL, "download: missing url or destination");
    size_t want = kind == GRAFT_HASH_MD5 ? 32 : kind == GRAFT_HASH_SHA256 ? 64 : 0;
    if (kind != GRAFT_HASH_NONE && (!hex || strlen(hex) != want))
        return graft_fail(GRAFT_EINVAL, "download %s: the expected %s checksum must be %zu hex digits",
                          url, kind == GRAFT_HASH_MD5 ? "MD5" : "SHA-256", want);
    pthread_once(&curl_once, curl_init);
    if (curl_init_code != CURLE_OK)
        return graft_fail(GRAFT_EIO, "libcurl failed to start: %s", curl_easy_strerror(curl_init_code));
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.part.XXXXXX", dest) >= (int)sizeof tmp)
        return graft_fail(GRAFT_EINVAL, "download: destination path too long");
    int fd = mkstemp(tmp);
    if (fd < 0) return graft_fail(GRAFT_EIO, "cannot create %s: %s", tmp, strerror(errno));
    sink s = {.f = fdopen(fd, "wb")};
    if (!s.f) {
        close(fd);
        unlink(tmp);
        return graft_fail(GRAFT_EIO, "cannot open %s: %s", tmp, strerror(errno));
    }
    graft_zoo_hash_init(&s.hash, kind == GRAFT_HASH_MD5 ? GRAFT_HASH_MD5 : GRAFT_HASH_SHA256);
    graft_status st = GRAFT_OK;
    CURL *c = curl_easy_init();
    if (!c) {
        st = graft_fail(GRAFT_ENOMEM, "libcurl could not make a handle for %s", url);
        fclose(s.f);
        goto fail;
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled transfer (under 1 byte/s for a minute) fails instead of hanging. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    bool close_failed = fclose(s.f) != 0;
    if (rc != CURLE_OK) {
        st = s.write_failed ? graft_fail(GRAFT_EIO, "writing %s failed while downloading %s", tmp, url)
                            : graft_fail(GRAFT_EIO, "downloading %s failed: %s", url,
                                         curl_err[0] ? curl_err : curl_easy_strerror(rc));
        goto fail;
    }
    if (close_failed) {
        st = graft_fail(GRAFT_EIO, "writing %s failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (kind != GRAFT_HASH_NONE) {
        char got[65];
        graft_zoo_hash_final(&s.hash, got);
        if (strcasecmp(got, hex) != 0) {
            st = graft_fail(GRAFT_EFORMAT,
                            "%s: %s checksum mismatch (expected %s, got %s); the download was "
                            "discarded",
                            url, kind == GRAFT_HASH_MD5 ? "MD5" : "SHA-256", hex, got);
            goto fail;
        }
    }
    if (rename(tmp, dest) != 0) {
        st = graft_fail(GRAFT_EIO, "cannot move %s to %s: %s", tmp, dest, strerror(errno));
        goto fail;
    }
    return GRAFT_OK;
fail:
    unlink(tmp);
    return st;
}

/* Files Keras publishes without a checksum must at least be HDF5. */
static graft_status check_hdf5(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *f;
    graft_status s = graft_fopen_regular(path, &f, NULL);
    if (s != GRAFT_OK) return s;
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (got != sizeof head || memcmp(head, sig, sizeof sig) != 0)
        return graft_fail(GRAFT_EFORMAT, "%s is not an HDF5 file", path);
    return GRAFT_OK;
}

graft_status graft_zoo_fetch_imagenet(const char *arch, const graft_zoo_cfg *cfg, char *path,
                                      size_t cap)
{
    graft_weights_file wf;
    graft_status st = graft_zoo_imagenet_file(arch, cfg, &wf);
    if (st != GRAFT_OK) return st;
    char dir[4096];
    if ((st = graft_zoo_cache_dir(dir, sizeof dir)) != GRAFT_OK) return st;
    if (!path || snprintf(path, cap, "%s/%s", dir, wf.file_name) >= (int)cap)
        return graft_fail(GRAFT_EINVAL, "fetch: the path buffer is too small");
    if (access(path, R_OK) == 0) return GRAFT_OK;
    if ((st = make_dirs(dir)) != GRAFT_OK) return st;
    st = graft_download(wf.url, path, wf.hash_kind, wf.hash);
    if (st == GRAFT_OK && wf.hash_kind == GRAFT_HASH_NONE && (st = check_hdf5(path)) != GRAFT_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s (downloaded from %s; removed)", graft_last_error(), wf.url);
        unlink(path);
        st = graft_fail(st, "%s", msg);
    }
    return st;
}

/* graft_weights_file_list's callback: the number of layers with weights. */
static void count_layer(const char *layer, const char *weight, int rank, const long long *dims,
                        void *ctx)
{
    (void)weight, (void)rank, (void)dims;
    struct {
        int n;
        char last[GRAFT_NAME_MAX];
    } *c = ctx;
    if (strcmp(layer, c->last) == 0) return;
    snprintf(c->last, sizeof c->last, "%s", layer);
    c->n++;
}

/* Each weighted layer of `base` into m's layer of the same name: all of
 * them checked first, so that m is left as it was on an error. */
static graft_status copy_by_name(graft_model *m, graft_model *base, const char *path, int *loaded)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < graft_model_num_layers(base); i++) {
            graft_layer *from = graft_model_layer(base, i);
            int nw = graft_layer_num_weights(from);
            if (nw == 0) continue;
            graft_layer *to = graft_model_find(m, graft_layer_name(from));
            if (!to || graft_layer_num_weights(to) != nw)
                return graft_fail(GRAFT_ESHAPE, "%s: model '%s' has no layer '%s' as the base has it",
                                  path, graft_model_name(m), graft_layer_name(from));
            for (int k = 0; k < nw; k++) {
                graft_shape a = graft_layer_weight_shape(from, k);
                graft_shape b = graft_layer_weight_shape(to, k);
                size_t n = graft_shape_size(&a);
                bool same = a.rank == b.rank;
                for (int d = 0; same && d < a.rank; d++) same = a.dim[d] == b.dim[d];
                if (!same)
                    return graft_fail(GRAFT_ESHAPE,
                                      "%s: layer '%s' of model '%s' differs from the base's", path,
                                      graft_layer_name(to), graft_model_name(m));
                if (pass)
                    memcpy(graft_layer_weight_data(to, k), graft_layer_weight_data(from, k),
                           n * sizeof(float));
            }
            *loaded += pass;
        }
    return GRAFT_OK;
}

graft_status graft_zoo_load_weights(graft_model *m, const char *arch, const graft_zoo_cfg *cfg,
                                    const char *path, int *layers_loaded)
{
    int loaded = 0;
    if (layers_loaded) *layers_loaded = 0;
    if (!m || !path) return graft_fail(GRAFT_EINVAL, "graft_zoo_load_weights: no model or path");
    m->weights_constant = 0; /* copy_by_name writes into m too */
    struct {
        int n;
        char last[GRAFT_NAME_MAX];
    } in_file = {0, ""};
    graft_status st = graft_weights_file_list(path, count_layer, &in_file, NULL);
    if (st != GRAFT_OK) return st;
    graft_load_opts by_name = {.by_name = 1, .layers_loaded = &loaded};
    st = graft_model_load_weights(m, path, &by_name);
    if (st == GRAFT_OK && loaded == in_file.n) goto done;
    /* By name with layers of the file left over (a top the base lacks):
     * kept unless the order fits every layer. */
    int named = st == GRAFT_OK ? loaded : -1;
    char first[1024];
    snprintf(first, sizeof first, "%s", st == GRAFT_OK ? "" : graft_last_error());
    /* Keras's own load_weights on an HDF5 file goes by the order of the
     * layers with weights, not their names: Keras 2.0 saved InceptionV3's
     * and Xception's files with its 1-based automatic names (conv2d_1 is
     * graft's conv2d). Loaded so into the bare base, then by name into m. */
    graft_zoo_cfg c = cfg ? *cfg : graft_zoo_default_cfg();
    graft_model *base = NULL;
    loaded = 0;
    st = graft_zoo_build(arch, &c, &base);
    if (st == GRAFT_OK) {
        graft_load_opts in_order = {.by_name = 0};
        st = graft_model_load_weights(base, path, &in_order);
        if (st != GRAFT_OK && first[0]) {
            char second[1024];
            snprintf(second, sizeof second, "%s", graft_last_error());
            st = graft_fail(st, "%s; in Keras's layer order instead: %s", first, second);
        }
    }
    if (st == GRAFT_OK) st = copy_by_name(m, base, path, &loaded);
    graft_model_free(base);
    if (st != GRAFT_OK && named >= 0) {
        loaded = named;
        st = GRAFT_OK;
    }
    if (st != GRAFT_OK) return st;
done:
    if (layers_loaded) *layers_loaded = loaded;
    return GRAFT_OK;
}

graft_status graft_zoo_load_imagenet(graft_model *m, const char *arch, const graft_zoo_cfg *cfg)
{
    if (!m) return graft_fail(GRAFT_EINVAL, "load imagenet weights: no model");
    const zoo_entry *e = graft_zoo_entry(arch);
    if (e && e->build == graft_zoo_efficientnet) {
        graft_layer *norm = graft_model_find(m, "normalization");
        graft_layer *next = norm ? graft_model_layer(m, graft_layer_index(norm) + 1) : NULL;
        if (!next || strcmp(graft_layer_class(next), "Rescaling") != 0)
            return graft_fail(GRAFT_EINVAL,
                              "%s: model '%s' has no Rescaling after its Normalization; build it "
                              "with imagenet_weights set (as Keras does for weights=\"imagenet\") "
                              "for the ImageNet weights to give their outputs",
                              e->pub.keras_name, graft_model_name(m));
    }
    char path[4096];
    graft_status st = graft_zoo_fetch_imagenet(arch, cfg, path, sizeof path);
    if (st != GRAFT_OK) return st;
    return graft_zoo_load_weights(m, arch, cfg, path, NULL);
}
