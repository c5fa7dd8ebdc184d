/* One writer per run folder: an flock on RUN_DIR/.lock, which the kernel
 * releases when its holder exits in any way (a SIGKILL included), so a lock
 * is never left stale. The holder's pid is written into the file for the
 * message of whoever is refused. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int run_lock(const char *cmd, const char *run_dir, bool *created)
{
    char path[CLI_PATH + 16];
    snprintf(path, sizeof path, "%s/.lock", run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    *created = fd >= 0;
    if (fd < 0 && errno == EEXIST) fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "graft %s: cannot create %s: %s\n", cmd, path, strerror(errno));
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
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        fprintf(stderr, "graft %s: cannot write %s: %s\n", cmd, path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void run_unlock(int fd)
{
    if (fd >= 0) close(fd);
}
