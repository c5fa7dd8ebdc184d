/* Helpers shared by the data pipeline tests: capturing what the library
 * prints (files and folders: test_util.h). */
#ifndef GRAFT_TEST_DATA_UTIL_H
#define GRAFT_TEST_DATA_UTIL_H

#include "test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Redirects a file descriptor (1 or 2) into a temporary file until
 * capture_end, which returns what was written (malloc'd). */
typedef struct {
    int fd, saved;
    char path[64];
} capture;

static inline void capture_begin(capture *c, int fd)
{
    fflush(stdout);
    fflush(stderr);
    c->fd = fd;
    strcpy(c->path, "/tmp/graft_capture_XXXXXX");
    int t = mkstemp(c->path);
    c->saved = dup(fd);
    dup2(t, fd);
    close(t);
}

static inline char *capture_end(capture *c)
{
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved, c->fd);
    close(c->saved);
    size_t n;
    unsigned char *b = read_bytes(c->path, &n);
    unlink(c->path);
    char *s = malloc(n + 1);
    if (s) {
        if (b) memcpy(s, b, n);
        s[n] = '\0';
    }
    free(b);
    return s;
}

static inline int count_substr(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

#endif
