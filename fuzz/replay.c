/* main() for a fuzz target built with the normal compiler, without libFuzzer:
 * runs every file named, or every file of every folder named, through
 * LLVMFuzzerTestOneInput once. The target aborts on what it checks, and a
 * sanitizer build reports the rest; an input that takes longer than
 * GRAFT_REPLAY_SECONDS (default 120) ends the process (a hang). Prints how
 * many inputs ran. `make test` runs the committed corpora through these
 * (tests/test_fuzz_regressions.c). */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned timeout_s = 120;
static const char *current;

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "replay: an input ran past the time limit (a hang)\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    if (current && write(2, current, strlen(current)) < 0) _exit(3);
    _exit(3);
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    uint8_t *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            uint8_t *d = realloc(data, cap);
            if (!d) {
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = d;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        return -1;
    }
    current = path;
    alarm(timeout_s);
    /* libFuzzer hands over a copy of exactly size bytes. */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) abort();
    memcpy(copy, data, n);
    LLVMFuzzerTestOneInput(copy, n);
    alarm(0);
    free(copy);
    free(data);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *t = getenv("GRAFT_REPLAY_SECONDS");
    if (t && atoi(t) > 0) timeout_s = (unsigned)atoi(t);
    signal(SIGALRM, on_alarm);
    int ran = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: no such file or folder %s\n", argv[i]);
            failed++;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            failed += run_file(argv[i]) != 0;
            ran++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            failed++;
            continue;
        }
        char **names = NULL;
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char **v = realloc(names, sizeof *names * (size_t)(n + 1));
            if (!v || !(v[n] = malloc(strlen(argv[i]) + strlen(e->d_name) + 2))) abort();
            names = v;
            sprintf(names[n++], "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
        for (int k = 0; k < n; k++) {
            failed += run_file(names[k]) != 0;
            ran++;
            free(names[k]);
        }
        free(names);
    }
    printf("%d inputs replayed, %d unreadable\n", ran, failed);
    return failed ? 1 : 0;
}
