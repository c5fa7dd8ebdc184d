/* Opening inputs without blocking on special files: see file_open.h. */
#include "core/file_open.h"
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *kind_of(mode_t mode)
{
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "a special file";
}

graft_status graft_open_regular(const char *path, int *fd, struct stat *st)
{
    *fd = -1;
    if (!path || !*path) return graft_fail(GRAFT_EINVAL, "no file name to read");
    /* O_NONBLOCK: opening a FIFO for reading waits for a writer, forever
     * (and opening a tty or a tape may wait too); without a writer it now
     * opens at once and fstat tells what it is. */
    int d = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (d < 0) {
        int err = errno;
        struct stat sb;
        /* A socket cannot be opened at all (ENXIO): say what it is. */
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
            return graft_fail(GRAFT_EIO, "%s is not a regular file (%s)", path,
                              kind_of(sb.st_mode));
        return graft_fail(err == ENOENT ? GRAFT_ENOTFOUND : GRAFT_EIO, "cannot open %s: %s", path,
                          strerror(err));
    }
    struct stat sb;
    if (fstat(d, &sb) != 0) {
        int err = errno;
        close(d);
        return graft_fail(GRAFT_EIO, "cannot open %s: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(d);
        return graft_fail(GRAFT_EIO, "%s is not a regular file (%s)", path, kind_of(sb.st_mode));
    }
    int flags = fcntl(d, F_GETFL);
    if (flags < 0 || fcntl(d, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int err = errno;
        close(d);
        return graft_fail(GRAFT_EIO, "cannot open %s: %s", path, strerror(err));
    }
    if (st) *st = sb;
    *fd = d;
    return GRAFT_OK;
}

graft_status graft_fopen_regular(const char *path, FILE **f, struct stat *st)
{
    *f = NULL;
    int fd;
    graft_status s = graft_open_regular(path, &fd, st);
    if (s != GRAFT_OK) return s;
    *f = fdopen(fd, "rb");
    if (!*f) {
        int err = errno;
        close(fd);
        return graft_fail(GRAFT_ENOMEM, "cannot open %s: %s", path, strerror(err));
    }
    return GRAFT_OK;
}

graft_status graft_temp_file(FILE **f)
{
    *f = NULL;
    const char *dir = graft_env(GRAFT_ENV_TMPDIR);
    if (!dir || !*dir) dir = "/tmp";
    size_t cap = strlen(dir) + 32;
    char *name = malloc(cap);
    if (!name) return graft_fail(GRAFT_ENOMEM, "out of memory for a temporary file name");
    snprintf(name, cap, "%s/graft-XXXXXX", dir);
    int fd = mkostemp(name, O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        free(name);
        return graft_fail(GRAFT_EIO, "cannot create a temporary file in %s: %s", dir,
                          strerror(err));
    }
    /* Nothing is left behind, whatever way the process ends. */
    unlink(name);
    free(name);
    *f = fdopen(fd, "w+b");
    if (!*f) {
        int err = errno;
        close(fd);
        return graft_fail(GRAFT_ENOMEM, "cannot open a temporary file in %s: %s", dir,
                          strerror(err));
    }
    return GRAFT_OK;
}
