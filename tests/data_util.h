/* Helpers shared by the data pipeline tests: temporary folders and files,
 * and capturing what the library prints. */
#ifndef GRAFT_TEST_DATA_UTIL_H
#define GRAFT_TEST_DATA_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static inline unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = len > 0 ? (size_t)len : 0;
    return b;
}

/* rm -r, for the temporary trees the tests make (no symlink following). */
static inline void remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[4096];
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub)
                remove_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

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
