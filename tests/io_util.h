/* Helpers shared by the model-file tests: a scratch folder removed at exit,
 * paths in it, and the optional Python oracle (files: test_util.h). */
#ifndef GRAFT_IO_UTIL_H
#define GRAFT_IO_UTIL_H

#include "test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char io_tmpdir[64];

static inline int io_tmp_init(void)
{
    snprintf(io_tmpdir, sizeof io_tmpdir, "/tmp/graft_io_XXXXXX");
    return make_tmpdir(io_tmpdir);
}

/* A path inside the scratch folder (a few rotating buffers). */
static inline const char *io_tmp(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", io_tmpdir, name);
    return buf[k];
}

static inline int io_write_file(const char *path, const void *data, size_t n)
{
    return write_bytes(path, data, n);
}

/* Copies the first `n` bytes of src (all when n is 0). */
static inline int io_copy_prefix(const char *src, const char *dst, size_t n)
{
    FILE *in = fopen(src, "rb");
    if (!in) return -1;
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[65536];
    size_t total = 0, got;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0) {
        if (n && total + got > n) got = n - total;
        fwrite(buf, 1, got, out);
        total += got;
        if (n && total >= n) break;
    }
    fclose(in);
    return fclose(out);
}

#define ORACLE "/usr/bin/python3"

static inline int have_oracle(void)
{
    static int known = -1;
    if (known < 0) {
        known = access(ORACLE, X_OK) == 0 &&
                system(ORACLE " -c 'import h5py, numpy' >/dev/null 2>&1") == 0;
        if (!known) printf("# skipped: %s with h5py not found, Python cross-checks off\n", ORACLE);
    }
    return known;
}

/* Runs a Python snippet (given as argv[1] file) and captures its stdout. */
static inline int run_python(const char *script, char *out, size_t cap)
{
    const char *sp = io_tmp("snippet.py");
    if (io_write_file(sp, script, strlen(script)) != 0) return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, ORACLE " %s", sp);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    return pclose(p) == 0 ? 0 : -1;
}

#endif
