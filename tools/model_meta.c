/* A run's settings inside its model.h5 (the "graft_config" attribute: the
 * run's config.json), so that a bare .h5 from graft predicts with its own
 * class names, preprocessing, interpolation and input size. Keras ignores
 * root attributes it does not know, so the file stays a Keras model file. */
#include "cli.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_ATTR "graft_config"
/* HDF5 keeps attributes in the object header, which holds at most 64 KiB:
 * a run with more class names than fit keeps them in config.json only. */
#define META_MAX 60000

typedef struct {
    FILE *in;
    const char *from;
} copy_ctx;

static graft_status copy_out(FILE *f, void *vctx)
{
    copy_ctx *c = vctx;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, c->in)) > 0)
        if (fwrite(buf, 1, n, f) != n) return GRAFT_EIO; /* the commit names the file */
    return ferror(c->in) ? GRAFT_EIO : GRAFT_OK;
}

int cli_copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in) return cli_fail("cannot read %s: %s", from, strerror(errno));
    graft_status s = graft_write_file_atomic(to, copy_out, &(copy_ctx){in, from});
    bool bad_read = ferror(in);
    fclose(in);
    if (bad_read) return cli_fail("cannot read %s", from);
    return s == GRAFT_OK ? 0 : cli_fail_status(s, to);
}

/* Writes text into the root attribute of an .h5; 0 or an HDF5 failure (<0). */
static int put_attr(const char *path, const char *text)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (t >= 0 && sp >= 0 && H5Tset_size(t, strlen(text) + 1) >= 0 && H5Tset_strpad(t, H5T_STR_NULLTERM) >= 0) {
        if (H5Aexists(f, META_ATTR) > 0) H5Adelete(f, META_ATTR);
        a = H5Acreate2(f, META_ATTR, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0 && H5Awrite(a, t, text) >= 0) rc = 0;
    }
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (H5Fclose(f) < 0) rc = -1;
    return rc;
}

static int sync_file(const char *path)
{
    FILE *f = fopen(path, "rb+");
    if (!f) return -1;
    int rc = fsync(fileno(f));
    return fclose(f) == 0 ? rc : -1;
}

int run_save_model(const graft_model *m, const run_config *c, const char *path)
{
    char tmp[CLI_PATH + 16];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    graft_status s = graft_save_model(m, tmp);
    if (s != GRAFT_OK) {
        unlink(tmp);
        return s == GRAFT_EUNSUPPORTED ? 2 : cli_fail_status(s, path);
    }
    char *text = run_config_text(c);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = !text ? -1 : strlen(text) > META_MAX ? 0 : put_attr(tmp, text);
    free(text);
    if (rc == 0) rc = sync_file(tmp);
    if (rc == 0 && rename(tmp, path) != 0) rc = -1;
    if (rc != 0) {
        unlink(tmp);
        return cli_fail("cannot write %s (the run's settings into the model file)", path);
    }
    return 0;
}

int run_config_from_h5(const char *path, run_config *c)
{
    memset(c, 0, sizeof *c);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    int rc = -1;
    if (H5Aexists(f, META_ATTR) > 0) {
        hid_t a = H5Aopen(f, META_ATTR, H5P_DEFAULT);
        hid_t t = a >= 0 ? H5Aget_type(a) : -1;
        size_t n = t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) ? H5Tget_size(t) : 0;
        char *text = n > 0 && n <= META_MAX + 1 ? calloc(1, n + 1) : NULL;
        if (text && H5Aread(a, t, text) >= 0) {
            char what[CLI_PATH + 32];
            snprintf(what, sizeof what, "%s (attribute %s)", path, META_ATTR);
            rc = run_config_parse(text, what, c) == 0 ? 0 : -1;
        }
        free(text);
        if (t >= 0) H5Tclose(t);
        if (a >= 0) H5Aclose(a);
    }
    H5Fclose(f);
    return rc;
}
