/* One writer per run folder: an flock on RUN_DIR/.lock, which the kernel
 * releases when its holder exits in any way (a SIGKILL included), so a lock
 * is never left stale. The holder's pid is written into the file for the
 * message of whoever is refused, through a descriptor of its own: the one
 * that holds the lock is read-only, so closing it at the end can fail nothing. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int run_lock(const char *cmd, const char *run_dir, bool *created)
{
    *created = false;
    /* Under mpirun rank 0 holds the lock for the job. */
    if (!cli_writes()) return open("/dev/null", O_RDONLY | O_CLOEXEC);
    char path[CLI_PATH + 16];
    snprintf(path, sizeof path, "%s/.lock", run_dir);
    /* O_NONBLOCK: a FIFO named .lock must not block the open. */
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NONBLOCK, 0644);
    *created = fd >= 0;
    if (fd < 0 && errno == EEXIST) fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "graft %s: cannot create %s: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "graft %s: %s is not a regular file\n", cmd, path);
        close(fd);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char text[32] = "";
        long pid = 0;
        ssize_t n = err == EWOULDBLOCK ? pread(fd, text, sizeof text - 1, 0) : -1;
        if (n > 0) {
            text[n] = '\0';
            pid = strtol(text, NULL, 10);
        }
        close(fd);
        if (err != EWOULDBLOCK) {
            fprintf(stderr, "graft %s: cannot lock %s: %s\n", cmd, path, strerror(err));
            return -1;
        }
        /* A holder between its flock and its pid write has not said who it is
         * yet, and one that is not graft (flock(1)) leaves an old pid there. */
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) pid = 0;
        if (pid > 0)
            fprintf(stderr, "graft %s: %s is in use by another graft process (pid %ld)\n", cmd,
                    run_dir, pid);
        else
            fprintf(stderr, "graft %s: %s is in use by another graft process\n", cmd, run_dir);
        return -1;
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    int wfd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    bool ok = wfd >= 0 && ftruncate(wfd, 0) == 0 && pwrite(wfd, text, (size_t)len, 0) == len;
    int err = errno;
    if (wfd >= 0 && close(wfd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        fprintf(stderr, "graft %s: cannot write %s: %s\n", cmd, path, strerror(err));
        close(fd);
        return -1;
    }
    return fd;
}

void run_unlock(int fd)
{
    if (fd >= 0) close(fd);
}
