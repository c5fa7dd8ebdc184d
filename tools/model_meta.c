/* A run's settings inside its model.h5 (the "graft_config" attribute: the
 * run's config.json), so that a bare .h5 from graft predicts with its own
 * class names, preprocessing, interpolation and input size. Keras ignores
 * root attributes it does not know, so the file stays a Keras model file. */
#include "cli.h"

#include <errno.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_ATTR "graft_config"
/* HDF5 keeps attributes in the object header, which holds at most 64 KiB:
 * a run with more class names than fit keeps them in config.json only. */
#define META_MAX 60000

int cli_copy_file(const char *from, const char *to)
{
    char tmp[CLI_PATH + 16];
    snprintf(tmp, sizeof tmp, "%s.partial", to);
    FILE *in = fopen(from, "rb");
    if (!in) return cli_fail("cannot read %s: %s", from, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        int err = errno;
        fclose(in);
        return cli_fail("cannot write %s: %s", to, strerror(err));
    }
    /* Each step's errno is the message: a full disk says so. */
    char buf[1 << 16];
    size_t n;
    int err = 0;
    while (!err && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) err = errno ? errno : EIO;
    bool bad_read = ferror(in);
    fclose(in);
    if (!err && fflush(out) != 0) err = errno;
    if (!err && fsync(fileno(out)) != 0) err = errno;
    if (fclose(out) != 0 && !err) err = errno;
    if (!err && !bad_read && rename(tmp, to) != 0) err = errno;
    if (err || bad_read) {
        unlink(tmp);
        return bad_read ? cli_fail("cannot read %s", from) : cli_fail("cannot write %s: %s", to, strerror(err));
    }
    return 0;
}

/* Writes bytes to path through path.partial (fsync'd, renamed); 0, or errno. */
static int write_atomic(const char *path, const void *data, size_t n)
{
    char tmp[CLI_PATH + 16];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return errno;
    int err = 0;
    if (n && fwrite(data, 1, n, f) != n) err = errno ? errno : EIO;
    if (!err && fflush(f) != 0) err = errno;
    if (!err && fsync(fileno(f)) != 0) err = errno;
    if (fclose(f) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) unlink(tmp);
    return err;
}

/* libhdf5 1.10's H5Fget_file_image keeps the checksum of the superblock as
 * the open file has it, with the status flags it clears in the image (as
 * src/io/hdf5.c's writer finds): the checksum (Bob Jenkins's lookup3,
 * hashlittle with initial value 0) is recomputed. */
#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
static uint32_t lookup3(const unsigned char *k, size_t len)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len;
    for (; len > 12; len -= 12, k += 12) {
        a += k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
        b += k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
        c += k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
        a -= c, a ^= ROT(c, 4), c += b;
        b -= a, b ^= ROT(a, 6), a += c;
        c -= b, c ^= ROT(b, 8), b += a;
        a -= c, a ^= ROT(c, 16), c += b;
        b -= a, b ^= ROT(a, 19), a += c;
        c -= b, c ^= ROT(b, 4), b += a;
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

static void fix_superblock_checksum(unsigned char *image, size_t size)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (size < 12 || memcmp(image, sig, 8) != 0 || image[8] < 2) return;
    size_t n = 12 + 4 * (size_t)image[9];
    if (size < n + 4) return;
    uint32_t c = lookup3(image, n);
    for (int i = 0; i < 4; i++) image[n + i] = (unsigned char)(c >> (8 * i));
}

/* The .h5 at `from` with the text as its root attribute, in memory (HDF5's
 * core driver, writing nothing back): *image (malloc'd) and *n, or -1. */
static int with_attr(const char *from, const char *text, void **image, size_t *n)
{
    *image = NULL;
    /* Read here and opened from memory: libhdf5 holds no descriptor of the file. */
    FILE *in = fopen(from, "rb");
    long size0 = -1;
    void *bytes = NULL;
    if (in && fseek(in, 0, SEEK_END) == 0) size0 = ftell(in);
    if (in && size0 > 0 && fseek(in, 0, SEEK_SET) == 0 && (bytes = malloc((size_t)size0)) &&
        fread(bytes, 1, (size_t)size0, in) != (size_t)size0) {
        free(bytes);
        bytes = NULL;
    }
    if (in) fclose(in);
    if (!bytes) return -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 || H5Pset_file_image(fapl, bytes, (size_t)size0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        free(bytes);
        return -1;
    }
    free(bytes); /* H5Pset_file_image copied it */
    /* A name no file can have: the core driver refuses to open an image
     * under the name of a file that exists. */
    hid_t f = H5Fopen("/dev/null/graft-image.h5", H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
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
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rc = -1;
    ssize_t size = rc == 0 ? H5Fget_file_image(f, NULL, 0) : -1;
    if (size > 0 && (*image = malloc((size_t)size)) && H5Fget_file_image(f, *image, (size_t)size) == size)
        *n = (size_t)size;
    else
        rc = -1;
    if (rc == 0) fix_superblock_checksum(*image, *n);
    if (H5Fclose(f) < 0) rc = -1;
    if (rc) {
        free(*image);
        *image = NULL;
    }
    return rc;
}

int run_save_model(const graft_model *m, const run_config *c, const char *path)
{
    char tmp[CLI_PATH + 16];
    snprintf(tmp, sizeof tmp, "%s.model", path);
    graft_status s = graft_save_model(m, tmp);
    if (s != GRAFT_OK) {
        unlink(tmp);
        return s == GRAFT_EUNSUPPORTED ? 2 : cli_fail_status(s, path);
    }
    char *text = run_config_text(c);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    void *image = NULL;
    size_t n = 0;
    int rc = 0;
    if (!text) rc = cli_fail("out of memory writing %s", path);
    else if (strlen(text) > META_MAX) rc = rename(tmp, path) == 0 ? 0 : cli_fail("cannot write %s: %s", path, strerror(errno));
    else if (with_attr(tmp, text, &image, &n) != 0) rc = cli_fail("cannot add the run's settings to %s", path);
    else if ((rc = write_atomic(path, image, n)) != 0) rc = cli_fail("cannot write %s: %s", path, strerror(rc));
    free(text);
    free(image);
    unlink(tmp);
    return rc;
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
