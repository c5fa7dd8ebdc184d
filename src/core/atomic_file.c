/* Write-to-temp, fsync, rename: see atomic_file.h. */
#include "core/atomic_file.h"
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Distinguishes temporary names made by threads of one process. */
static atomic_uint tmp_counter;

static void clear(graft_atomic_file *af)
{
    free(af->path);
    free(af->tmp);
    af->path = af->tmp = NULL;
    af->f = NULL;
}

/* The folder part of path ("." when there is none), as a new string. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

graft_status graft_atomic_open(graft_atomic_file *af, const char *path)
{
    af->path = af->tmp = NULL;
    af->f = NULL;
    if (!path || !*path) return graft_fail(GRAFT_EINVAL, "no file name to write");
    size_t len = strlen(path);
    if (path[len - 1] == '/')
        return graft_fail(GRAFT_EINVAL, "'%s' names a folder, not a file", path);

    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    size_t cap = len + 64;
    af->path = strdup(path);
    af->tmp = malloc(cap);
    if (!af->path || !af->tmp) {
        clear(af);
        return graft_fail(GRAFT_ENOMEM, "out of memory writing '%s'", path);
    }
    /* Mode 0666 through the umask, unlike mkstemp's 0600, so the renamed
     * file gets the permissions a plain fopen would have given it. */
    int fd = -1, err = 0;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(af->tmp, cap, "%.*s.%s.tmp-%ld-%u", (int)dir_len, path, path + dir_len,
                 (long)getpid(), atomic_fetch_add(&tmp_counter, 1u));
        fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        err = errno;
        if (fd < 0 && err != EEXIST) break;
    }
    if (fd < 0) {
        graft_status s = graft_fail(GRAFT_EIO,
                                    "cannot write '%s': creating a temporary file "
                                    "beside it failed: %s",
                                    path, strerror(err));
        clear(af);
        return s;
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        err = errno;
        close(fd);
        unlink(af->tmp);
        clear(af);
        return graft_fail(GRAFT_EIO, "cannot write '%s': %s", path, strerror(err));
    }
    return GRAFT_OK;
}

void graft_atomic_abort(graft_atomic_file *af)
{
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    clear(af);
}

/* Makes the rename itself durable; file systems that cannot sync a folder
 * say EINVAL, which leaves nothing to do. */
static graft_status sync_folder(const char *path)
{
    char *dir = folder_of(path);
    if (!dir) return graft_fail(GRAFT_ENOMEM, "out of memory writing '%s'", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && fsync(fd) != 0 && errno != EINVAL) err = errno;
    if (fd >= 0) close(fd);
    graft_status s = GRAFT_OK;
    if (err)
        s = graft_fail(GRAFT_EIO, "wrote '%s' but could not sync its folder '%s': %s", path, dir,
                       strerror(err));
    free(dir);
    return s;
}

/* Removes the temporary files that writers of the same file left when they
 * were killed mid-write (".NAME.tmp-PID-N" whose PID no longer runs). A PID
 * that runs, ours or another's, may be writing now: its files stay. */
static void remove_orphans(const char *path)
{
    char *dir = folder_of(path);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    size_t cap = strlen(name) + 8;
    char *prefix = malloc(cap);
    DIR *d = dir && prefix ? opendir(dir) : NULL;
    if (d) {
        snprintf(prefix, cap, ".%s.tmp-", name);
        size_t plen = strlen(prefix);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (strncmp(e->d_name, prefix, plen) != 0) continue;
            char *end;
            long pid = strtol(e->d_name + plen, &end, 10);
            unsigned counter;
            if (pid <= 0 || *end != '-' || sscanf(end + 1, "%u", &counter) != 1) continue;
            if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
            /* Best effort: a file another cleaner took first is gone either way. */
            (void)unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    free(prefix);
    free(dir);
}

graft_status graft_atomic_commit(graft_atomic_file *af)
{
    if (!af->tmp) return graft_fail(GRAFT_ESTATE, "commit of a file that is not open");
    int err = 0;
    if (af->f) {
        /* ferror also catches a failed write the writer did not check. */
        errno = 0;
        if (fflush(af->f) != 0)
            err = errno ? errno : EIO;
        else if (ferror(af->f))
            err = EIO;
        if (!err && fsync(fileno(af->f)) != 0) err = errno;
        /* A failed close can report a write the kernel deferred. */
        if (fclose(af->f) != 0 && !err) err = errno ? errno : EIO;
        af->f = NULL;
    } else {
        int fd = open(af->tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            err = errno;
        else {
            if (fsync(fd) != 0) err = errno;
            if (close(fd) != 0 && !err) err = errno;
        }
    }
    if (!err && rename(af->tmp, af->path) != 0) err = errno;
    if (err) {
        graft_status s = graft_fail(GRAFT_EIO, "cannot write '%s': %s", af->path, strerror(err));
        graft_atomic_abort(af);
        return s;
    }
    remove_orphans(af->path);
    graft_status s = sync_folder(af->path);
    clear(af);
    return s;
}

graft_status graft_file_write_atomic(const char *path, graft_file_writer write, void *ctx)
{
    graft_atomic_file af;
    graft_status s = graft_atomic_open(&af, path);
    if (s != GRAFT_OK) return s;
    s = write(af.f, ctx);
    if (s != GRAFT_OK) {
        graft_atomic_abort(&af);
        return s;
    }
    return graft_atomic_commit(&af);
}
