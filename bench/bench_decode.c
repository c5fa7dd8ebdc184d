/* Images per CPU second of graft's decoders alone: every file of a folder
 * decoded to RGB at full size (what Keras's load_img gets from Pillow), one
 * thread, passes repeated until a CPU second has gone by (CPU time, so that
 * other jobs on the machine do not count).
 * usage: bench_decode DIR */
#include "data/data.h"
#include "graft.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    char **paths = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char **np = realloc(paths, sizeof *paths * (size_t)(n + 1));
        if (!np) return 1;
        paths = np;
        size_t len = strlen(argv[1]) + strlen(e->d_name) + 2;
        if (!(paths[n] = malloc(len))) return 1;
        snprintf(paths[n++], len, "%s/%s", argv[1], e->d_name);
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "bench_decode: no files in %s\n", argv[1]);
        return 1;
    }
    graft_decode_opts o = {.channels = 3, .jpeg_full_decode = 1};
    long images = 0;
    double t0 = now(), dt;
    do {
        for (int i = 0; i < n; i++) {
            graft_img img;
            if (graft_img_decode(paths[i], &o, &img) != GRAFT_OK) {
                fprintf(stderr, "bench_decode: %s\n", graft_last_error());
                return 1;
            }
            graft_img_free(&img);
        }
        images += n;
    } while ((dt = now() - t0) < 1.0);
    printf("%.1f\n", (double)images / dt);
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return 0;
}
