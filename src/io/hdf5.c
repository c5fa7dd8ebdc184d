/*
 * Keras HDF5 files through libhdf5. The layout Keras writes: an attribute
 * `layer_names` (a string array) on the weights group, one group per layer
 * with an attribute `weight_names`, and each weight as a dataset at
 * group/weight_name ("conv1/conv1/kernel:0"). Weights-only files keep that
 * at the root; full-model files keep it under `model_weights` and add the
 * `model_config` JSON as a root attribute.
 *
 * The readers here run in a child process (src/io/h5_child.c) unless
 * GRAFT_H5_CHILD=0: libhdf5 loops forever or crashes on some corrupt files
 * (fuzz/libhdf5_findings/), and only a process of its own bounds that.
 */
#include "core/atomic_file.h"
#include "core/file_open.h"
#include "io/h5_child.h"
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keras's own string attributes are tiny; this bounds a corrupt header. */
#define MAX_ATTR_BYTES ((size_t)256 << 20)
#define MAX_ATTR_ITEMS ((hssize_t)1 << 20)

/* libhdf5 prints its error stack to stderr by default; graft reports instead. */
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t first_error(unsigned n, const H5E_error2_t *e, void *data)
{
    char *buf = data;
    if (n == 0 && e->desc) snprintf(buf, 160, "%s", e->desc);
    return 0;
}

/* The innermost libhdf5 error description ("" when none), for messages. */
static const char *h5_reason(char *buf)
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf[0] ? buf : "unknown HDF5 error";
}

static void close_id(hid_t id, herr_t (*fn)(hid_t))
{
    if (id >= 0) fn(id);
}

/* ------------------------------------------------------------ string attributes */

typedef struct {
    int n, cap;
    char **s;
} strlist;

static void strlist_free(strlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static graft_status strlist_push(strlist *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **grown = realloc(l->s, (size_t)cap * sizeof *grown);
        if (!grown) return graft_fail(GRAFT_ENOMEM, "out of memory reading strings");
        l->s = grown;
        l->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return graft_fail(GRAFT_ENOMEM, "out of memory reading strings");
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->s[l->n++] = copy;
    return GRAFT_OK;
}

/* Appends the strings of one attribute (fixed- or variable-length, scalar
 * or array); an empty attribute of any type is an empty list, as Keras
 * writes `weight_names` of a layer without weights as an empty float array. */
static graft_status read_attr_strings(hid_t obj, const char *attr, const char *path,
                                      const char *where, strlist *out)
{
    char why[160];
    graft_status s = GRAFT_OK;
    hid_t a = H5Aopen(obj, attr, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    hid_t mt = -1;
    char *buf = NULL;
    char **vbuf = NULL;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (a < 0 || t < 0 || sp < 0 || np < 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s: cannot read attribute '%s' of %s: %s", path, attr, where,
                       h5_reason(why));
        goto done;
    }
    if (np > MAX_ATTR_ITEMS) {
        s = graft_fail(GRAFT_EFORMAT, "%s: attribute '%s' of %s has %lld items", path, attr, where,
                       (long long)np);
        goto done;
    }
    if (np == 0) goto done;
    if (H5Tget_class(t) != H5T_STRING) {
        s = graft_fail(GRAFT_EFORMAT, "%s: attribute '%s' of %s is not a string or list of strings",
                       path, attr, where);
        goto done;
    }
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s: %s", path, h5_reason(why));
        goto done;
    }
    if (H5Tis_variable_str(t) > 0) {
        vbuf = calloc((size_t)np, sizeof *vbuf);
        if (!vbuf) {
            s = graft_fail(GRAFT_ENOMEM, "out of memory reading attribute '%s'", attr);
            goto done;
        }
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
            H5Aread(a, mt, vbuf) < 0) {
            s = graft_fail(GRAFT_EFORMAT, "%s: cannot read attribute '%s' of %s: %s", path, attr,
                           where, h5_reason(why));
            free(vbuf);
            vbuf = NULL;
            goto done;
        }
        for (hssize_t i = 0; i < np && s == GRAFT_OK; i++)
            s = strlist_push(out, vbuf[i] ? vbuf[i] : "", vbuf[i] ? strlen(vbuf[i]) : 0);
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, vbuf);
        free(vbuf);
        vbuf = NULL;
        goto done;
    }
    size_t sz = H5Tget_size(t), total;
    if (sz == 0 || !graft_mul_ok(sz, (size_t)np, &total) || total > MAX_ATTR_BYTES) {
        s = graft_fail(GRAFT_EFORMAT, "%s: attribute '%s' of %s has an impossible size", path, attr,
                       where);
        goto done;
    }
    buf = malloc(total);
    if (!buf) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory reading attribute '%s'", attr);
        goto done;
    }
    if (H5Tset_size(mt, sz) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0 ||
        H5Aread(a, mt, buf) < 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s: cannot read attribute '%s' of %s: %s", path, attr, where,
                       h5_reason(why));
        goto done;
    }
    for (hssize_t i = 0; i < np && s == GRAFT_OK; i++)
        s = strlist_push(out, buf + (size_t)i * sz, strnlen(buf + (size_t)i * sz, sz));
done:
    free(buf);
    close_id(mt, H5Tclose);
    close_id(sp, H5Sclose);
    close_id(t, H5Tclose);
    close_id(a, H5Aclose);
    return s;
}

/* Keras splits attributes too large for an object header into attr0, attr1, ...;
 * *found says whether either form was there. */
static graft_status read_strings(hid_t obj, const char *attr, const char *path, const char *where,
                                 strlist *out, bool *found)
{
    *found = false;
    htri_t e = H5Aexists(obj, attr);
    if (e > 0) {
        *found = true;
        return read_attr_strings(obj, attr, path, where, out);
    }
    for (int k = 0;; k++) {
        char name[96];
        snprintf(name, sizeof name, "%s%d", attr, k);
        if (H5Aexists(obj, name) <= 0) break;
        *found = true;
        graft_status s = read_attr_strings(obj, name, path, where, out);
        if (s != GRAFT_OK) return s;
    }
    H5Eclear2(H5E_DEFAULT);
    return GRAFT_OK;
}

/* ------------------------------------------------------------ reading */

typedef struct {
    hid_t file, root;
    hid_t gapl, dapl; /* access lists that refuse to follow external links */
    strlist datasets; /* "layer/weight_name", indexed by io_weight.handle */
} h5_ctx;

static void h5_close(io_file *f)
{
    h5_ctx *c = f->ctx;
    if (!c) return;
    close_id(c->root, H5Gclose);
    close_id(c->file, H5Fclose);
    close_id(c->gapl, H5Pclose);
    close_id(c->dapl, H5Pclose);
    strlist_free(&c->datasets);
    free(c);
    f->ctx = NULL;
}

/* ------------------------------------------------------------ staying inside the file
 *
 * A weight must be bytes of the file itself. HDF5 can also name other files:
 * external links, external raw storage (H5Pset_external) and virtual
 * datasets read them, and a crafted .h5 would carry a local file's bytes into
 * a model's weights and from there into the .h5 a user shares. Keras never
 * writes any of these, nor soft links: every object on a weight's path must
 * be a hard link, and a dataset must keep its data in the file. The access
 * lists also refuse external links, should a path reach one regardless. */

static herr_t deny_external_link(const char *parent_file, const char *parent_group,
                                 const char *child_file, const char *child_object,
                                 unsigned *acc_flags, hid_t fapl, void *data)
{
    (void)parent_file, (void)parent_group, (void)child_file, (void)child_object;
    (void)acc_flags, (void)fapl, (void)data;
    return -1;
}

static graft_status make_access_lists(h5_ctx *c, const char *path)
{
    char why[160];
    c->gapl = H5Pcreate(H5P_GROUP_ACCESS);
    c->dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (c->gapl < 0 || c->dapl < 0 || H5Pset_elink_cb(c->gapl, deny_external_link, NULL) < 0 ||
        H5Pset_elink_cb(c->dapl, deny_external_link, NULL) < 0)
        return graft_fail(GRAFT_EIO, "%s: cannot set up HDF5 access: %s", path, h5_reason(why));
    return GRAFT_OK;
}

static const char *link_kind(H5L_type_t t)
{
    switch (t) {
    case H5L_TYPE_SOFT: return "a soft link";
    case H5L_TYPE_EXTERNAL: return "an external link to another file";
    default: return "a user-defined link";
    }
}

/* Every prefix of `name` below `base` must be a hard link. */
static graft_status check_hard_path(hid_t base, const char *name, const char *path)
{
    char why[160], prefix[GRAFT_NAME_MAX + 260];
    if (snprintf(prefix, sizeof prefix, "%s", name) >= (int)sizeof prefix)
        return graft_fail(GRAFT_EFORMAT, "%s: object name '%.60s...' is too long", path, name);
    size_t len = strlen(prefix);
    for (size_t i = 0; i <= len; i++) {
        if (prefix[i] != '/' && prefix[i] != '\0') continue;
        if (i == 0 || prefix[i - 1] == '/') continue;
        char keep = prefix[i];
        prefix[i] = '\0';
        H5L_info_t info;
        if (H5Lget_info(base, prefix, &info, H5P_DEFAULT) < 0)
            return graft_fail(GRAFT_EFORMAT, "%s: '%s' cannot be found: %s", path, prefix,
                              h5_reason(why));
        if (info.type != H5L_TYPE_HARD)
            return graft_fail(GRAFT_EFORMAT,
                              "%s: '%s' is %s; graft reads weights only from inside the file", path,
                              prefix, link_kind(info.type));
        prefix[i] = keep;
    }
    return GRAFT_OK;
}

/* The dataset's data must be stored in the file. */
static graft_status check_storage(hid_t d, const char *name, const char *path)
{
    char why[160];
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) return graft_fail(GRAFT_EFORMAT, "%s: weight '%s': %s", path, name, h5_reason(why));
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int external = H5Pget_external_count(dcpl);
    H5Pclose(dcpl);
    if (layout == H5D_VIRTUAL)
        return graft_fail(GRAFT_EFORMAT,
                          "%s: weight '%s' is a virtual dataset (its data is in other files); graft "
                          "reads weights only from inside the file",
                          path, name);
    if (external != 0)
        return graft_fail(GRAFT_EFORMAT,
                          "%s: weight '%s' keeps its data in external files; graft reads weights "
                          "only from inside the file",
                          path, name);
    if (layout < 0) return graft_fail(GRAFT_EFORMAT, "%s: weight '%s': %s", path, name, h5_reason(why));
    return GRAFT_OK;
}

static graft_status h5_read(io_file *f, const io_weight *w, float *dst)
{
    h5_ctx *c = f->ctx;
    char why[160];
    graft_status s = GRAFT_OK;
    hid_t d = H5Dopen2(c->root, c->datasets.s[w->handle], c->dapl);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (np < 0 || (size_t)np != w->count)
        s = graft_fail(GRAFT_EFORMAT, "%s: cannot open weight '%s': %s", f->path, w->name,
                       h5_reason(why));
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        s = graft_fail(GRAFT_EFORMAT, "%s: reading weight '%s' failed (truncated or corrupt file?): %s",
                       f->path, w->name, h5_reason(why));
    close_id(sp, H5Sclose);
    close_id(d, H5Dclose);
    return s;
}

/* Describes one weight dataset; only float data (any width) is accepted. */
static graft_status list_dataset(io_file *f, h5_ctx *c, hid_t g, const char *layer,
                                 const char *wname, io_weight *w)
{
    char why[160];
    graft_status s = GRAFT_OK;
    hid_t d = -1, t = -1, sp = -1;
    s = check_hard_path(g, wname, f->path);
    if (s != GRAFT_OK) goto done;
    d = H5Dopen2(g, wname, c->dapl);
    t = d >= 0 ? H5Dget_type(d) : -1;
    sp = d >= 0 ? H5Dget_space(d) : -1;
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (d < 0 || t < 0 || sp < 0 || rank < 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s: layer '%s' lists weight '%s', which cannot be opened: %s",
                       f->path, layer, wname, h5_reason(why));
        goto done;
    }
    s = check_storage(d, wname, f->path);
    if (s != GRAFT_OK) goto done;
    if (H5Tget_class(t) != H5T_FLOAT) {
        s = graft_fail(GRAFT_EFORMAT,
                       "%s: weight '%s' of layer '%s' is not floating point data (HDF5 type class "
                       "%d); Keras weights are float32",
                       f->path, wname, layer, (int)H5Tget_class(t));
        goto done;
    }
    if (rank > IO_MAX_RANK) {
        s = graft_fail(GRAFT_EFORMAT, "%s: weight '%s' of layer '%s' has rank %d", f->path, wname,
                       layer, rank);
        goto done;
    }
    hsize_t dims[IO_MAX_RANK];
    long long ld[IO_MAX_RANK];
    if (H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s: weight '%s': %s", f->path, wname, h5_reason(why));
        goto done;
    }
    for (int k = 0; k < rank; k++) ld[k] = dims[k] > (hsize_t)IO_MAX_TENSOR_FLOATS ? -1 : (long long)dims[k];
    s = io_weight_init(w, f->path, wname, rank, ld);
    if (s != GRAFT_OK) goto done;
    char full[GRAFT_NAME_MAX + 260];
    snprintf(full, sizeof full, "%s/%s", layer, wname);
    w->handle = (size_t)c->datasets.n;
    s = strlist_push(&c->datasets, full, strlen(full));
done:
    close_id(sp, H5Sclose);
    close_id(t, H5Tclose);
    close_id(d, H5Dclose);
    return s;
}

static graft_status list_layer(io_file *f, h5_ctx *c, const char *layer)
{
    char why[160], where[GRAFT_NAME_MAX + 16];
    snprintf(where, sizeof where, "layer '%s'", layer);
    strlist names = {0};
    io_weight *ws = NULL;
    bool found;
    graft_status s = check_hard_path(c->root, layer, f->path);
    hid_t g = s == GRAFT_OK ? H5Gopen2(c->root, layer, c->gapl) : -1;
    if (s != GRAFT_OK) goto done;
    if (g < 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s: layer '%s' is listed in layer_names but has no group: %s",
                       f->path, layer, h5_reason(why));
        goto done;
    }
    s = read_strings(g, "weight_names", f->path, where, &names, &found);
    if (s == GRAFT_OK && !found)
        s = graft_fail(GRAFT_EFORMAT, "%s: layer '%s' has no weight_names attribute", f->path, layer);
    if (s != GRAFT_OK || names.n == 0) goto done;
    ws = calloc((size_t)names.n, sizeof *ws);
    if (!ws) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory listing %s", f->path);
        goto done;
    }
    for (int i = 0; i < names.n && s == GRAFT_OK; i++)
        s = list_dataset(f, c, g, layer, names.s[i], &ws[i]);
    if (s == GRAFT_OK) s = io_file_add_group(f, layer, ws, names.n);
done:
    free(ws);
    strlist_free(&names);
    close_id(g, H5Gclose);
    return s;
}

/* Opens `path` for reading with a clear message for the common wrong files. */
static graft_status open_h5(const char *path, hid_t *out)
{
    char why[160];
    quiet();
    /* libhdf5's own open would block forever on a FIFO. */
    int fd = -1;
    graft_status s = graft_open_regular(path, &fd, NULL);
    if (s != GRAFT_OK) return s;
    close(fd);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return graft_fail(GRAFT_EFORMAT,
                          "%s is not an HDF5 file (no HDF5 signature); expected a Keras .h5 file",
                          path);
    }
    *out = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*out < 0)
        return graft_fail(GRAFT_EFORMAT, "cannot open HDF5 file %s (truncated or corrupt?): %s", path,
                          h5_reason(why));
    return GRAFT_OK;
}

graft_status io_h5_list(const char *path, io_file *f, char **model_config)
{
    return h5_child_wanted() ? h5_child_list(path, f, model_config)
                             : h5_list_here(path, f, model_config);
}

graft_status h5_list_here(const char *path, io_file *f, char **model_config)
{
    char why[160];
    strlist layers = {0}, cfg = {0};
    bool found = false;
    h5_ctx *c = calloc(1, sizeof *c);
    if (!c) return graft_fail(GRAFT_ENOMEM, "out of memory opening %s", path);
    c->file = c->root = -1;
    f->ctx = c;
    f->close = h5_close;
    f->read = h5_read;
    c->gapl = c->dapl = -1;
    graft_status s = make_access_lists(c, path);
    if (s == GRAFT_OK) s = open_h5(path, &c->file);
    if (s != GRAFT_OK) goto done;
    if (model_config) {
        s = read_strings(c->file, "model_config", path, "the file", &cfg, &found);
        if (s != GRAFT_OK) goto done;
        if (found && cfg.n == 1) {
            *model_config = cfg.s[0];
            cfg.s[0] = NULL;
            cfg.n = 0;
        }
    }
    /* Weights-only files keep the layout at the root, full models in model_weights. */
    htri_t at_root = H5Aexists(c->file, "layer_names");
    if (at_root <= 0 && H5Lexists(c->file, "model_weights", H5P_DEFAULT) > 0) {
        s = check_hard_path(c->file, "model_weights", path);
        if (s != GRAFT_OK) goto done;
        c->root = H5Gopen2(c->file, "model_weights", c->gapl);
    } else {
        c->root = H5Gopen2(c->file, "/", c->gapl);
    }
    if (c->root < 0) {
        s = graft_fail(GRAFT_EFORMAT, "%s: cannot open the weights group: %s", path, h5_reason(why));
        goto done;
    }
    s = read_strings(c->root, "layer_names", path, "the weights group", &layers, &found);
    if (s == GRAFT_OK && !found)
        s = graft_fail(GRAFT_EFORMAT,
                       "%s: no 'layer_names' attribute; not a Keras weights file (Keras's "
                       "save_weights or model.save .h5 layout expected)",
                       path);
    for (int i = 0; i < layers.n && s == GRAFT_OK; i++) {
        s = list_layer(f, c, layers.s[i]);
        if (f->progress) f->progress(f);
    }
    f->n_listed = layers.n;
done:
    H5Eclear2(H5E_DEFAULT);
    strlist_free(&layers);
    strlist_free(&cfg);
    return s;
}

/* ------------------------------------------------------------ writing */

/*
 * libhdf5 builds the file in memory (the core driver, without a backing
 * store) and graft writes the finished image through an atomic file. libhdf5
 * then never writes to disk itself: with its own file I/O, a write that
 * failed inside H5Dclose or H5Fclose could go unreported (the rename went
 * ahead with data missing), and a failed H5Fclose left a half-destroyed file
 * ID that libhdf5 closed again at exit (a crash).
 *
 * Writing stays in graft's process, verify_file's read-back included: libhdf5
 * sees only the bytes it has just built itself, never a file from outside.
 */

/* Memory the in-memory file grows by. */
#define CORE_INCREMENT ((size_t)1 << 20)

typedef struct {
    const char *path; /* the file being written, for messages */
    hid_t gcpl, dcpl; /* without modification times, so that equal models give equal bytes */
    hid_t lcpl;       /* creates the intermediate groups of names with '/' */
} writer;

/* Closes an ID of the file being written: a failure there is an error too. */
static graft_status close_w(const writer *w, hid_t id, herr_t (*fn)(hid_t), graft_status s)
{
    char why[160];
    if (id < 0 || fn(id) >= 0) return s;
    if (s != GRAFT_OK) {
        H5Eclear2(H5E_DEFAULT);
        return s;
    }
    return graft_fail(GRAFT_EIO, "cannot write %s: %s", w->path, h5_reason(why));
}

static graft_status write_attr(const writer *w, hid_t obj, const char *name,
                               const char *const *str, int n, bool scalar)
{
    char why[160];
    size_t sz = 1;
    for (int i = 0; i < n; i++)
        if (strlen(str[i]) > sz) sz = strlen(str[i]);
    char *buf = calloc(n > 0 ? (size_t)n : 1, sz);
    if (!buf) return graft_fail(GRAFT_ENOMEM, "out of memory writing %s", w->path);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * sz, str[i], strlen(str[i]));
    hsize_t dims = (hsize_t)n;
    /* numpy byte strings, as h5py stores Keras's attributes: fixed length, null padded */
    hid_t t = H5Tcopy(H5T_C_S1);
    herr_t e = t >= 0 ? H5Tset_size(t, sz) : -1;
    if (e >= 0) e = H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t sp = e < 0 ? -1 : scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, NULL);
    hid_t a = sp >= 0 ? H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (a >= 0 && n > 0) e = H5Awrite(a, t, buf);
    graft_status s = GRAFT_OK;
    if (a < 0 || e < 0)
        s = graft_fail(GRAFT_EIO, "%s: cannot write attribute '%s': %s", w->path, name,
                       h5_reason(why));
    s = close_w(w, a, H5Aclose, s);
    s = close_w(w, sp, H5Sclose, s);
    s = close_w(w, t, H5Tclose, s);
    free(buf);
    return s;
}

static graft_status write_string(const writer *w, hid_t obj, const char *name, const char *value)
{
    return write_attr(w, obj, name, &value, 1, true);
}

static graft_status write_dataset(const writer *w, hid_t g, const graft_weight *wt,
                                  const char *full_name)
{
    char why[160], name[sizeof wt->name + 4];
    snprintf(name, sizeof name, "%s:0", wt->name);
    hsize_t dims[GRAFT_MAX_RANK];
    for (int d = 0; d < wt->shape.rank; d++) dims[d] = (hsize_t)wt->shape.dim[d];
    graft_status s = GRAFT_OK;
    hid_t sp = H5Screate_simple(wt->shape.rank, dims, NULL);
    hid_t d = sp >= 0 ? H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, w->lcpl, w->dcpl, H5P_DEFAULT) : -1;
    if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, wt->data) < 0)
        s = graft_fail(GRAFT_EIO, "%s: cannot write weight '%s': %s", w->path, full_name,
                       h5_reason(why));
    s = close_w(w, d, H5Dclose, s);
    return close_w(w, sp, H5Sclose, s);
}

/* Whether every group along `path` (a/b/c) exists below `parent`. */
static bool path_exists(hid_t parent, const char *path)
{
    char buf[GRAFT_NAME_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return false;
    for (char *p = buf;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char keep = *p;
        *p = '\0';
        if (H5Lexists(parent, buf, H5P_DEFAULT) <= 0) return false;
        if (keep == '\0') return true;
        *p = keep;
    }
}

/* Keras's layout: group LAYER holding group LAYER holding the datasets
 * "kernel:0", ..., and weight_names "LAYER/kernel:0", ... on the outer group. */
static graft_status write_layer(const writer *w, hid_t parent, const graft_layer *l)
{
    char why[160];
    char names[GRAFT_MAX_WEIGHTS][GRAFT_NAME_MAX + 40];
    const char *ptrs[GRAFT_MAX_WEIGHTS];
    graft_status s = GRAFT_OK;
    hid_t inner = -1, g = -1;
    /* A name with '/' ("conv1/conv" in Keras's DenseNet) is a path of groups, as h5py makes it. */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0) {
        /* ... and one layer's path may already be another's folder
         * ("expanded_conv_1/depthwise/pad" comes before "expanded_conv_1/depthwise"). */
        g = path_exists(parent, l->name) ? H5Gopen2(parent, l->name, H5P_DEFAULT)
                                         : H5Gcreate2(parent, l->name, lcpl, w->gcpl, H5P_DEFAULT);
        if (g >= 0 && l->n_weights > 0) inner = H5Gcreate2(g, l->name, lcpl, w->gcpl, H5P_DEFAULT);
    }
    if (lcpl >= 0) H5Pclose(lcpl);
    if (g < 0 || (l->n_weights > 0 && inner < 0)) {
        s = graft_fail(GRAFT_EIO, "%s: cannot create the group of layer '%s': %s", w->path,
                       l->name, h5_reason(why));
        goto done;
    }
    for (int k = 0; k < l->n_weights; k++) {
        snprintf(names[k], sizeof names[k], "%s/%s:0", l->name, l->weights[k].name);
        ptrs[k] = names[k];
    }
    s = write_attr(w, g, "weight_names", ptrs, l->n_weights, false);
    for (int k = 0; k < l->n_weights && s == GRAFT_OK; k++)
        s = write_dataset(w, inner, &l->weights[k], names[k]);
done:
    s = close_w(w, inner, H5Gclose, s);
    return close_w(w, g, H5Gclose, s);
}

/* Keras's own attributes; loaders only compare keras_version with "1". */
static graft_status write_version(const writer *w, hid_t obj)
{
    graft_status s = write_string(w, obj, "backend", "tensorflow");
    return s == GRAFT_OK ? write_string(w, obj, "keras_version", "2.11.0") : s;
}

static graft_status write_weights(const writer *w, hid_t obj, const graft_model *m)
{
    const char **names = malloc((size_t)(m->n_layers ? m->n_layers : 1) * sizeof *names);
    if (!names) return graft_fail(GRAFT_ENOMEM, "out of memory writing %s", w->path);
    graft_status s = GRAFT_OK;
    for (int i = 0; i < m->n_layers; i++) {
        names[i] = m->layers[i]->name;
        size_t len = strlen(names[i]);
        if (names[i][0] == '/' || (len && names[i][len - 1] == '/') || strstr(names[i], "//"))
            s = graft_fail(GRAFT_EINVAL, "%s: layer name '%s' is not a path of HDF5 groups", w->path,
                           names[i]);
    }
    if (s == GRAFT_OK) s = write_attr(w, obj, "layer_names", names, m->n_layers, false);
    free(names);
    if (s == GRAFT_OK) s = write_version(w, obj);
    for (int i = 0; i < m->n_layers && s == GRAFT_OK; i++) s = write_layer(w, obj, m->layers[i]);
    return s;
}

/* Bob Jenkins's lookup3 hash (hashlittle, initial value 0): libhdf5's metadata checksum. */
#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
static uint32_t lookup3(const unsigned char *k, size_t len)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len;
    while (len > 12) {
        a += k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
        b += k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
        c += k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
        a -= c, a ^= ROT(c, 4), c += b;
        b -= a, b ^= ROT(a, 6), a += c;
        c -= b, c ^= ROT(b, 8), b += a;
        a -= c, a ^= ROT(c, 16), c += b;
        b -= a, b ^= ROT(a, 19), a += c;
        c -= b, c ^= ROT(b, 4), b += a;
        len -= 12;
        k += 12;
    }
    if (len == 0) return c;
    unsigned char t[12] = {0};
    memcpy(t, k, len);
    a += t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
    b += t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;
    c += t[8] | (uint32_t)t[9] << 8 | (uint32_t)t[10] << 16 | (uint32_t)t[11] << 24;
    c ^= b, c -= ROT(b, 14);
    a ^= c, a -= ROT(c, 11);
    b ^= a, b -= ROT(a, 25);
    c ^= b, c -= ROT(b, 16);
    a ^= c, a -= ROT(c, 4);
    b ^= a, b -= ROT(a, 14);
    c ^= b, c -= ROT(b, 24);
    return c;
}
#undef ROT

/* H5Fget_file_image (libhdf5 1.10) clears the superblock's status flags in
 * the image but keeps the checksum of the flags the open file has, so the
 * image would not open. Version 2 and 3 superblocks: signature, 4 bytes,
 * 4 addresses, checksum. Recomputing is harmless where libhdf5 got it right. */
static void fix_superblock_checksum(unsigned char *image, size_t size)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (size < 12 || memcmp(image, sig, 8) != 0 || image[8] < 2) return;
    size_t n = 12 + 4 * (size_t)image[9];
    if (size < n + 4) return;
    uint32_t c = lookup3(image, n);
    for (int i = 0; i < 4; i++) image[n + i] = (unsigned char)(c >> (8 * i));
}

/* The whole file, built in memory: *image (malloc'ed) and its size. */
typedef struct {
    const char *name, *text; /* an application's own root attribute, or NULL */
} h5_meta;

static graft_status build_image(const writer *w, const graft_model *m, const char *config,
                                const h5_meta *meta, const char *core_name, void **image,
                                size_t *size)
{
    char why[160];
    graft_status s = GRAFT_OK;
    hid_t file = -1, g = -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    /* v1.8 object headers: attributes over 64 KiB (a big model_config) are allowed.
     * SEMI: closing the file fails, rather than waits, if an ID were left open. */
    if (fapl < 0 || fcpl < 0 || H5Pset_fapl_core(fapl, CORE_INCREMENT, 0) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) < 0 || H5Pset_obj_track_times(fcpl, 0) < 0) {
        s = graft_fail(GRAFT_EIO, "cannot write %s: %s", w->path, h5_reason(why));
        goto done;
    }
    file = H5Fcreate(core_name, H5F_ACC_TRUNC, fcpl, fapl);
    if (file < 0) {
        s = graft_fail(GRAFT_EIO, "cannot write %s: creating the file failed: %s", w->path,
                       h5_reason(why));
        goto done;
    }
    if (config) {
        s = write_version(w, file);
        if (s == GRAFT_OK) s = write_string(w, file, "model_config", config);
        if (s == GRAFT_OK && meta && meta->name) s = write_string(w, file, meta->name, meta->text);
        if (s == GRAFT_OK) {
            g = H5Gcreate2(file, "model_weights", H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
            if (g < 0)
                s = graft_fail(GRAFT_EIO, "%s: cannot create model_weights: %s", w->path,
                               h5_reason(why));
        }
        if (s == GRAFT_OK) s = write_weights(w, g, m);
        s = close_w(w, g, H5Gclose, s);
    } else {
        s = write_weights(w, file, m);
    }
    if (s != GRAFT_OK) goto done;
    if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0) {
        s = graft_fail(GRAFT_EIO, "cannot write %s: %s", w->path, h5_reason(why));
        goto done;
    }
    ssize_t n = H5Fget_file_image(file, NULL, 0);
    if (n <= 0) {
        s = graft_fail(GRAFT_EIO, "cannot write %s: %s", w->path, h5_reason(why));
        goto done;
    }
    *image = malloc((size_t)n);
    if (!*image) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory writing %s (%zd bytes)", w->path, n);
        goto done;
    }
    if (H5Fget_file_image(file, *image, (size_t)n) != n) {
        s = graft_fail(GRAFT_EIO, "cannot write %s: %s", w->path, h5_reason(why));
        goto done;
    }
    *size = (size_t)n;
    fix_superblock_checksum(*image, *size);
done:
    s = close_w(w, file, H5Fclose, s);
    s = close_w(w, fcpl, H5Pclose, s);
    s = close_w(w, fapl, H5Pclose, s);
    if (s != GRAFT_OK) {
        free(*image);
        *image = NULL;
    }
    return s;
}

/* Reads the written file back before it replaces anything: every weight
 * must hold the model's bytes. */
static graft_status verify_file(const graft_model *m, const char *tmp, const char *path,
                                bool full_model)
{
    char why[160], name[2 * GRAFT_NAME_MAX + 64];
    graft_status s = GRAFT_OK;
    size_t most = 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i]->n_weights; k++) {
            size_t n = graft_shape_size(&m->layers[i]->weights[k].shape);
            if (n > most) most = n;
        }
    float *back = malloc((most ? most : 1) * sizeof *back);
    if (!back) return graft_fail(GRAFT_ENOMEM, "out of memory checking %s", path);
    hid_t file = H5Fopen(tmp, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        s = graft_fail(GRAFT_EIO, "cannot write %s: the written file does not open: %s", path,
                       h5_reason(why));
    for (int i = 0; i < m->n_layers && s == GRAFT_OK; i++) {
        const graft_layer *l = m->layers[i];
        for (int k = 0; k < l->n_weights && s == GRAFT_OK; k++) {
            const graft_weight *wt = &l->weights[k];
            size_t n = graft_shape_size(&wt->shape);
            snprintf(name, sizeof name, "%s%s/%s/%s:0", full_model ? "model_weights/" : "",
                     l->name, l->name, wt->name);
            hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
            hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
            hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
            if (np < 0 || (size_t)np != n ||
                H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) < 0)
                s = graft_fail(GRAFT_EIO, "cannot write %s: weight '%s' does not read back: %s",
                               path, name, h5_reason(why));
            else if (memcmp(back, wt->data, n * sizeof *back) != 0)
                s = graft_fail(GRAFT_EIO, "cannot write %s: weight '%s' reads back different",
                               path, name);
            if (sp >= 0 && H5Sclose(sp) < 0 && s == GRAFT_OK)
                s = graft_fail(GRAFT_EIO, "checking %s: %s", path, h5_reason(why));
            if (d >= 0 && H5Dclose(d) < 0 && s == GRAFT_OK)
                s = graft_fail(GRAFT_EIO, "checking %s: %s", path, h5_reason(why));
        }
    }
    /* Read-only: closing writes nothing. */
    if (file >= 0 && H5Fclose(file) < 0 && s == GRAFT_OK)
        s = graft_fail(GRAFT_EIO, "checking %s: %s", path, h5_reason(why));
    H5Eclear2(H5E_DEFAULT);
    free(back);
    return s;
}

/* Writes into a temporary file beside `path` and renames it over, so a
 * failure or crash never leaves a half-written file under the real name. */
static graft_status write_file(const graft_model *m, const char *path, const char *config,
                               const h5_meta *meta)
{
    char why[160];
    quiet();
    if (!m || !path) return graft_fail(GRAFT_EINVAL, "saving: no model or path");
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    graft_atomic_file af;
    graft_status s = graft_atomic_open(&af, path);
    if (s != GRAFT_OK) return s;
    void *image = NULL;
    size_t size = 0;
    writer w = {path, H5Pcreate(H5P_GROUP_CREATE), H5Pcreate(H5P_DATASET_CREATE),
                H5Pcreate(H5P_LINK_CREATE)};
    if (w.gcpl < 0 || w.dcpl < 0 || w.lcpl < 0 || H5Pset_obj_track_times(w.gcpl, 0) < 0 ||
        H5Pset_obj_track_times(w.dcpl, 0) < 0 || H5Pset_create_intermediate_group(w.lcpl, 1) < 0)
        s = graft_fail(GRAFT_EIO, "cannot write %s: %s", path, h5_reason(why));
    /* The in-memory file needs a name libhdf5 holds nowhere else (it may hold
     * `path` open for reading) and that names no file (it would open it). */
    size_t cap = strlen(af.tmp) + sizeof ".memory";
    char *core_name = malloc(cap);
    if (!core_name && s == GRAFT_OK) s = graft_fail(GRAFT_ENOMEM, "out of memory writing %s", path);
    if (s == GRAFT_OK) {
        snprintf(core_name, cap, "%s.memory", af.tmp);
        s = build_image(&w, m, config, meta, core_name, &image, &size);
    }
    free(core_name);
    s = close_w(&w, w.lcpl, H5Pclose, s);
    s = close_w(&w, w.dcpl, H5Pclose, s);
    s = close_w(&w, w.gcpl, H5Pclose, s);
    H5Eclear2(H5E_DEFAULT);
    if (s == GRAFT_OK && (fwrite(image, 1, size, af.f) != size || fflush(af.f) != 0))
        s = graft_fail(GRAFT_EIO, "cannot write '%s': %s", path, strerror(errno));
    free(image);
    if (s == GRAFT_OK) s = verify_file(m, af.tmp, path, config != NULL);
    if (s != GRAFT_OK) {
        graft_atomic_abort(&af);
        return s;
    }
    return graft_atomic_commit(&af);
}

graft_status graft_model_save_weights(const graft_model *m, const char *path)
{
    return write_file(m, path, NULL, NULL);
}

static graft_status save_model(const graft_model *m, const char *path, const h5_meta *meta)
{
    if (!m || !path) return graft_fail(GRAFT_EINVAL, "graft_model_save: no model or path");
    cJSON *cfg = NULL;
    graft_status s = io_model_to_config(m, &cfg);
    if (s != GRAFT_OK) return s;
    char *text = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    if (!text) return graft_fail(GRAFT_ENOMEM, "out of memory writing the config of %s", path);
    s = write_file(m, path, text, meta);
    cJSON_free(text);
    return s;
}

graft_status graft_model_save(const graft_model *m, const char *path)
{
    return save_model(m, path, NULL);
}

/* Names Keras itself gives root attributes: an application's must differ. */
static bool keras_root_attr(const char *name)
{
    static const char *const keras[] = {"model_config", "training_config", "keras_version",
                                        "backend", "layer_names"};
    for (size_t i = 0; i < sizeof keras / sizeof *keras; i++)
        if (strncmp(name, keras[i], strlen(keras[i])) == 0) return true;
    return false;
}

graft_status graft_model_save_with_metadata(const graft_model *m, const char *path,
                                            const char *name, const char *text)
{
    if (!name || !*name || !text || strchr(name, '/') || keras_root_attr(name))
        return graft_fail(GRAFT_EINVAL,
                          "saving %s: the metadata attribute needs a name of its own (not "
                          "Keras's, no '/') and a text",
                          path ? path : "a model");
    h5_meta meta = {name, text};
    return save_model(m, path, &meta);
}

graft_status graft_h5_metadata_read(const char *path, const char *name, char **text)
{
    return h5_child_wanted() ? h5_child_metadata(path, name, text)
                             : h5_metadata_here(path, name, text);
}

graft_status h5_metadata_here(const char *path, const char *name, char **text)
{
    *text = NULL;
    hid_t file = -1;
    strlist l = {0};
    bool found = false;
    graft_status s = open_h5(path, &file);
    if (s == GRAFT_OK) s = read_strings(file, name, path, "the file", &l, &found);
    if (s == GRAFT_OK && (!found || l.n != 1))
        s = graft_fail(GRAFT_ENOTFOUND, "%s has no '%s' attribute", path, name);
    if (s == GRAFT_OK) {
        *text = l.s[0];
        l.s[0] = NULL;
    }
    strlist_free(&l);
    close_id(file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    return s;
}
