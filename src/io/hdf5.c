/*
 * Keras HDF5 files through libhdf5. The layout Keras writes: an attribute
 * `layer_names` (a string array) on the weights group, one group per layer
 * with an attribute `weight_names`, and each weight as a dataset at
 * group/weight_name ("conv1/conv1/kernel:0"). Weights-only files keep that
 * at the root; full-model files keep it under `model_weights` and add the
 * `model_config` JSON as a root attribute.
 */
#include "core/atomic_file.h"
#include "core/file_open.h"
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
    for (int i = 0; i < layers.n && s == GRAFT_OK; i++) s = list_layer(f, c, layers.s[i]);
done:
    H5Eclear2(H5E_DEFAULT);
    strlist_free(&layers);
    strlist_free(&cfg);
    return s;
}

/* ------------------------------------------------------------ writing */

static graft_status write_attr(hid_t obj, const char *name, const char *const *str, int n,
                               bool scalar, const char *path)
{
    char why[160];
    size_t sz = 1;
    for (int i = 0; i < n; i++)
        if (strlen(str[i]) > sz) sz = strlen(str[i]);
    char *buf = calloc(n > 0 ? (size_t)n : 1, sz);
    if (!buf) return graft_fail(GRAFT_ENOMEM, "out of memory writing %s", path);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * sz, str[i], strlen(str[i]));
    hsize_t dims = (hsize_t)n;
    /* numpy byte strings, as h5py stores Keras's attributes: fixed length, null padded */
    hid_t t = H5Tcopy(H5T_C_S1);
    herr_t e = t >= 0 ? H5Tset_size(t, sz) : -1;
    if (e >= 0) e = H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, NULL);
    hid_t a = e >= 0 && sp >= 0 ? H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (a >= 0 && n > 0) e = H5Awrite(a, t, buf);
    graft_status s = GRAFT_OK;
    if (a < 0 || e < 0)
        s = graft_fail(GRAFT_EIO, "%s: cannot write attribute '%s': %s", path, name, h5_reason(why));
    close_id(a, H5Aclose);
    close_id(sp, H5Sclose);
    close_id(t, H5Tclose);
    free(buf);
    return s;
}

static graft_status write_string(hid_t obj, const char *name, const char *value, const char *path)
{
    return write_attr(obj, name, &value, 1, true, path);
}

static graft_status write_layer(hid_t parent, const graft_layer *l, const char *path)
{
    char why[160];
    char names[GRAFT_MAX_WEIGHTS][GRAFT_NAME_MAX + 40];
    const char *ptrs[GRAFT_MAX_WEIGHTS];
    graft_status s = GRAFT_OK;
    hid_t g = H5Gcreate2(parent, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (g < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        s = graft_fail(GRAFT_EIO, "%s: cannot create the group of layer '%s': %s", path, l->name,
                       h5_reason(why));
        goto done;
    }
    for (int k = 0; k < l->n_weights; k++) {
        snprintf(names[k], sizeof names[k], "%s/%s:0", l->name, l->weights[k].name);
        ptrs[k] = names[k];
    }
    s = write_attr(g, "weight_names", ptrs, l->n_weights, false, path);
    for (int k = 0; k < l->n_weights && s == GRAFT_OK; k++) {
        const graft_weight *w = &l->weights[k];
        hsize_t dims[GRAFT_MAX_RANK];
        for (int d = 0; d < w->shape.rank; d++) dims[d] = (hsize_t)w->shape.dim[d];
        hid_t sp = H5Screate_simple(w->shape.rank, dims, NULL);
        hid_t d = sp >= 0 ? H5Dcreate2(g, names[k], H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT,
                                       H5P_DEFAULT)
                          : -1;
        if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->data) < 0)
            s = graft_fail(GRAFT_EIO, "%s: cannot write weight '%s': %s", path, names[k],
                           h5_reason(why));
        close_id(d, H5Dclose);
        close_id(sp, H5Sclose);
    }
done:
    close_id(lcpl, H5Pclose);
    close_id(g, H5Gclose);
    return s;
}

/* Keras's own attributes; loaders only compare keras_version with "1". */
static graft_status write_version(hid_t obj, const char *path)
{
    graft_status s = write_string(obj, "backend", "tensorflow", path);
    return s == GRAFT_OK ? write_string(obj, "keras_version", "2.11.0", path) : s;
}

static graft_status write_weights(hid_t obj, const graft_model *m, const char *path)
{
    const char **names = malloc((size_t)(m->n_layers ? m->n_layers : 1) * sizeof *names);
    if (!names) return graft_fail(GRAFT_ENOMEM, "out of memory writing %s", path);
    graft_status s = GRAFT_OK;
    for (int i = 0; i < m->n_layers; i++) {
        names[i] = m->layers[i]->name;
        if (strchr(names[i], '/'))
            s = graft_fail(GRAFT_EINVAL, "%s: layer name '%s' contains '/', which Keras files can "
                           "not hold", path, names[i]);
    }
    if (s == GRAFT_OK) s = write_attr(obj, "layer_names", names, m->n_layers, false, path);
    free(names);
    if (s == GRAFT_OK) s = write_version(obj, path);
    for (int i = 0; i < m->n_layers && s == GRAFT_OK; i++) s = write_layer(obj, m->layers[i], path);
    return s;
}

/* Writes into a temporary file beside `path` and renames it over, so a
 * failure or crash never leaves a half-written file under the real name. */
static graft_status write_file(const graft_model *m, const char *path, const char *config)
{
    char why[160];
    quiet();
    if (!m || !path) return graft_fail(GRAFT_EINVAL, "saving: no model or path");
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    /* libhdf5 writes by file name: the temporary file is closed here, written
     * by HDF5, then fsync'ed and renamed by graft_atomic_commit. */
    graft_atomic_file af;
    graft_status s = graft_atomic_open(&af, path);
    if (s != GRAFT_OK) return s;
    fclose(af.f);
    af.f = NULL;
    const char *tmp = af.tmp;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* v1.8 object headers: attributes over 64 KiB (a big model_config) are allowed. */
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0)
        s = graft_fail(GRAFT_EIO, "%s: %s", path, h5_reason(why));
    hid_t file = s == GRAFT_OK ? H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    if (s == GRAFT_OK && file < 0)
        s = graft_fail(GRAFT_EIO, "cannot write %s: creating %s failed: %s", path, tmp,
                       h5_reason(why));
    if (s == GRAFT_OK && config) {
        s = write_version(file, path);
        if (s == GRAFT_OK) s = write_string(file, "model_config", config, path);
        hid_t g = s == GRAFT_OK ? H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT,
                                             H5P_DEFAULT)
                                : -1;
        if (s == GRAFT_OK && g < 0)
            s = graft_fail(GRAFT_EIO, "%s: cannot create model_weights: %s", path, h5_reason(why));
        if (s == GRAFT_OK) s = write_weights(g, m, path);
        close_id(g, H5Gclose);
    } else if (s == GRAFT_OK) {
        s = write_weights(file, m, path);
    }
    if (file >= 0 && H5Fclose(file) < 0 && s == GRAFT_OK)
        s = graft_fail(GRAFT_EIO, "cannot finish writing %s (disk full?): %s", path,
                       h5_reason(why));
    close_id(fapl, H5Pclose);
    H5Eclear2(H5E_DEFAULT);
    if (s != GRAFT_OK) {
        graft_atomic_abort(&af);
        return s;
    }
    return graft_atomic_commit(&af);
}

graft_status graft_save_weights(const graft_model *m, const char *path)
{
    return write_file(m, path, NULL);
}

graft_status graft_save_model(const graft_model *m, const char *path)
{
    if (!m || !path) return graft_fail(GRAFT_EINVAL, "graft_save_model: no model or path");
    cJSON *cfg = NULL;
    graft_status s = io_model_to_config(m, &cfg);
    if (s != GRAFT_OK) return s;
    char *text = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    if (!text) return graft_fail(GRAFT_ENOMEM, "out of memory writing the config of %s", path);
    s = write_file(m, path, text);
    cJSON_free(text);
    return s;
}
