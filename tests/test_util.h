/* The tests' one helper header for temporary folders and files (the model-file,
 * data and tool tests build on it: io_util.h, data_util.h). */
#ifndef GRAFT_TEST_UTIL_H
#define GRAFT_TEST_UTIL_H

#include <dirent.h>
#include <graft.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The text of a file into buf ("" when it cannot be read). */
static inline void slurp(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* rm -r, for the temporary trees the tests make: path itself and everything
 * below it; links are removed, not followed. */
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

/* Writes n bytes to path (0, or -1 when anything failed). */
static inline int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* A whole file, malloc'd with a '\0' after it, its size in *n (may be
 * NULL); NULL when it cannot be read. */
static inline unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len + 1 : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[len > 0 ? len : 0] = '\0';
    if (n) *n = len > 0 ? (size_t)len : 0;
    return b;
}

/* The same as text. */
static inline char *read_text(const char *path, size_t *n) { return (char *)read_bytes(path, n); }

/* How many entries a folder holds (-1: it cannot be read). */
static inline int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

/* dir/name in one of a few rotating buffers (several may be used in one call). */
static inline const char *path_in(const char *dir, const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Runs the shell command `cmd` with stdout and stderr sent to out_path and
 * err_path and read back into out and err; its exit status (-1: killed by a
 * signal). */
static inline int run_captured(const char *cmd, const char *out_path, const char *err_path,
                               char *out, size_t out_cap, char *err, size_t err_cap)
{
    char line[8192];
    snprintf(line, sizeof line, "%s >%s 2>%s", cmd, out_path, err_path);
    int st = system(line);
    slurp(out_path, out, out_cap);
    slurp(err_path, err, err_cap);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The graft tool as the CLI tests run it: graft(FMT, ...) runs `TOOL ARGS`
 * through the shell, TOOL being tool_bin()'s and the output going where
 * tool_output says. */
static struct {
    const char *bin;
    char out_path[512], err_path[512];
    char *out, *err;
    size_t out_cap, err_cap;
} test_tool;

/* The tool's path: GRAFT_BIN (tests/run.sh sets it), else build/graft. */
static inline const char *tool_bin(void)
{
    test_tool.bin = getenv("GRAFT_BIN");
    if (!test_tool.bin) test_tool.bin = "build/graft";
    return test_tool.bin;
}

/* graft()'s stdout and stderr go to dir/out.txt and dir/err.txt and are read
 * back into out and err. */
static inline void tool_output(const char *dir, char *out, size_t out_cap, char *err,
                               size_t err_cap)
{
    snprintf(test_tool.out_path, sizeof test_tool.out_path, "%s/out.txt", dir);
    snprintf(test_tool.err_path, sizeof test_tool.err_path, "%s/err.txt", dir);
    test_tool.out = out, test_tool.out_cap = out_cap;
    test_tool.err = err, test_tool.err_cap = err_cap;
}

/* Runs `graft ARGS`, ARGS printf'd from fmt; its exit status (-1: killed by
 * a signal), its output in the buffers tool_output named. */
static inline int graft(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int graft(const char *fmt, ...)
{
    char args[4096], cmd[4600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", test_tool.bin ? test_tool.bin : tool_bin(), args);
    return run_captured(cmd, test_tool.out_path, test_tool.err_path, test_tool.out,
                        test_tool.out_cap, test_tool.err, test_tool.err_cap);
}

/* Nothing left to reap and nothing still running that was ours (for a test
 * that is a subreaper: graft's orphans would come to it). */
static inline bool no_children(void)
{
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) fprintf(stderr, "  reaped a stray process %d\n", (int)r);
    return r < 0 && errno == ECHILD;
}

/* The small model the .h5 suites load files into: 8x8x3 -> Conv2D 3x3 (4)
 * -> GlobalAveragePooling2D -> Dense 2 (softmax). */
static inline graft_model *tiny_conv_model(void)
{
    graft_model *m = graft_model_new("small");
    graft_input(m, "input_1", graft_shape3(8, 8, 3));
    graft_conv2d(m, NULL, (graft_conv2d_cfg){.name = "conv", .filters = 4, .kernel_size = {3, 3}});
    graft_global_average_pooling2d(m, NULL, "gap");
    graft_dense(m, NULL, (graft_dense_cfg){.name = "dense", .units = 2, .activation = GRAFT_SOFTMAX});
    return m;
}

/* A fresh folder from a mkdtemp template ("/tmp/graft_x_XXXXXX", changed in
 * place), removed with everything in it when the test exits; 0 or -1. */
#define TEST_MAX_TMPDIRS 8
static char *test_tmpdirs[TEST_MAX_TMPDIRS];
static int test_n_tmpdirs;

static inline void test_tmpdirs_remove(void)
{
    for (int i = 0; i < test_n_tmpdirs; i++) remove_tree(test_tmpdirs[i]);
    test_n_tmpdirs = 0;
}

static inline int make_tmpdir(char *tmpl)
{
    if (!mkdtemp(tmpl)) return -1;
    if (test_n_tmpdirs == 0) atexit(test_tmpdirs_remove);
    if (test_n_tmpdirs < TEST_MAX_TMPDIRS) test_tmpdirs[test_n_tmpdirs++] = tmpl;
    return 0;
}

/* The lesson's dataset, from the repository root (tests run there). */
#define LESSON_DATA "../shared/data/cats_and_dogs_filtered"

/* A small copy of the lesson's layout in dir (made if missing): train/ and
 * validation/, each with cats/ and dogs/ holding the first n_train (n_val)
 * photos of LESSON_DATA as symbolic links; drop_dog leaves out the last
 * training dog (a folder whose file list differs). 0, or -1. */
static inline int lesson_subset(const char *dir, int n_train, int n_val, int drop_dog)
{
    const char *splits[2] = {"train", "validation"};
    const int first[2] = {0, 2000}, count[2] = {n_train, n_val};
    char cwd[256], d[512], src[1024], dst[1024];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    mkdir(dir, 0755);
    for (int s = 0; s < 2; s++) {
        snprintf(d, sizeof d, "%s/%s", dir, splits[s]);
        mkdir(d, 0755);
        for (int c = 0; c < 2; c++) {
            const char *cls = c ? "dogs" : "cats";
            snprintf(d, sizeof d, "%s/%s/%s", dir, splits[s], cls);
            if (mkdir(d, 0755) != 0) return -1;
            for (int i = 0; i < count[s] - (drop_dog && s == 0 && c == 1); i++) {
                snprintf(src, sizeof src, "%s/" LESSON_DATA "/%s/%s/%.3s.%d.jpg", cwd, splits[s],
                         cls, cls, first[s] + i);
                snprintf(dst, sizeof dst, "%s/%.3s.%d.jpg", d, cls, first[s] + i);
                if (symlink(src, dst) != 0) return -1;
            }
        }
    }
    return 0;
}

#endif
