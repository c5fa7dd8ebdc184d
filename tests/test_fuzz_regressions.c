/*
 * Inputs the fuzzers (fuzz/) found, replayed through the same calls: each
 * must be refused with a status and a message, never crash or leak (the
 * suite also runs under ASan, `make asan`). The file name's prefix says
 * which reader it is for: keras_h5-, keras_config-, image-, history-,
 * run_config- (through `graft resume`; GRAFT_BIN names the tool).
 *
 * Then every committed corpus (fuzz/corpus/<target>/) runs through its
 * target's own entry point, built without libFuzzer beside the tool
 * (BUILD/fuzz-replay/<target>, see fuzz/replay.c): the checks the targets
 * make (the archive extractor's sandbox, the run-folder round trip, ...)
 * hold for every input the fuzzers kept.
 * Starts early (tests/run.sh): one of the longest suites.
 */
#include "check.h"
#include "graft.h"
#include "data/data.h"
#include "io/io.h"
#include "test_util.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIR_PATH "tests/fuzz_regressions"

/* See fuzz/fuzz_util.h: libhdf5 1.10.8 itself loses the blocks of a corrupt
 * object header it fails to load; nothing of graft's is on those stacks. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:H5C_protect\n"; }
/* libhdf5 has no frame pointers: only the slow unwinder sees H5C_protect. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

static bool refused(graft_status s)
{
    return s != GRAFT_OK && graft_last_error()[0] != '\0';
}

static int replayed;

static void replay(const char *name, const char *path)
{
    size_t n = 0;
    unsigned char *data = read_bytes(path, &n);
    CHECK(data != NULL);
    if (!data) return;
    if (!strncmp(name, "keras_h5-", 9)) {
        graft_model *m = NULL, *into = tiny_conv_model();
        CHECK_MSG(refused(graft_model_load(path, &m)) && !m, "%s loaded as a model", name);
        graft_load_opts o = {.by_name = 1, .skip_mismatch = 1};
        CHECK_MSG(refused(graft_model_load_weights(into, path, &o)), "%s loaded as weights", name);
        graft_model_free(into);
    } else if (!strncmp(name, "keras_config-", 13)) {
        cJSON *j = cJSON_ParseWithLength((const char *)data, n);
        graft_model *m = NULL;
        CHECK_MSG(!j || refused(io_model_from_config(j, path, &m)), "%s built a model", name);
        graft_model_free(m);
        cJSON_Delete(j);
    } else if (!strncmp(name, "image-", 6)) {
        graft_decode_opts o = {.channels = 3, .max_pixels = 1u << 22};
        graft_img img;
        CHECK_MSG(refused(graft_img_decode_mem(data, n, name, &o, &img)), "%s decoded", name);
    } else if (!strncmp(name, "history-", 8)) {
        graft_history h;
        CHECK_MSG(refused(graft_history_load_json(path, &h, NULL, NULL)), "%s loaded", name);
    } else if (!strncmp(name, "run_config-", 11)) {
        /* The run-folder reader is the tool's: `graft resume` on a folder holding it. */
        char dir[] = "/tmp/graft_fuzzreg_XXXXXX", cfg[64], cmd[1024];
        CHECK(mkdtemp(dir) != NULL);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        FILE *f = fopen(cfg, "wb");
        CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
        const char *bin = getenv("GRAFT_BIN");
        snprintf(cmd, sizeof cmd, "%s resume %s >/dev/null 2>&1", bin ? bin : "build/graft", dir);
        int st = system(cmd);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s: graft resume exited with %d", name, st);
        unlink(cfg);
        rmdir(dir);
    } else {
        CHECK_MSG(0, "%s: no reader for this prefix", name);
    }
    replayed++;
    free(data);
}

static void test_replay_findings(void)
{
    DIR *d = opendir(DIR_PATH);
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, DIR_PATH "/%s", e->d_name);
        replay(e->d_name, p);
    }
    closedir(d);
    printf("  %d inputs replayed\n", replayed);
    CHECK(replayed > 0);
}

/* The build folder the suite runs from: that of GRAFT_BIN (tests/run.sh). */
static void build_dir(char *out, size_t cap)
{
    const char *bin = getenv("GRAFT_BIN");
    snprintf(out, cap, "%s", bin ? bin : "build/graft");
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
    else snprintf(out, cap, ".");
}

static void test_replay_corpora(void)
{
    char build[512];
    build_dir(build, sizeof build);
    DIR *d = opendir("fuzz/corpus");
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *e;
    int targets = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char cmd[2048];
        /* libhdf5 has no frame pointers: its leak suppression needs the slow
         * unwinder. The targets' warnings are kept for a failure's report. */
        snprintf(cmd, sizeof cmd,
                 "ASAN_OPTIONS=fast_unwind_on_malloc=0:allocator_may_return_null=1:$ASAN_OPTIONS "
                 "OMP_NUM_THREADS=1 %s/fuzz-replay/%s fuzz/corpus/%s 2>&1",
                 build, e->d_name, e->d_name);
        FILE *p = popen(cmd, "r");
        CHECK(p != NULL);
        if (!p) continue;
        static char out[1 << 16];
        size_t n = 0, got;
        char chunk[4096];
        while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) {
            if (got > sizeof out - 1) got = sizeof out - 1;
            if (n + got > sizeof out - 1) { /* keep the end, where the summary is */
                size_t drop = n + got - (sizeof out - 1);
                memmove(out, out + drop, n - drop);
                n -= drop;
            }
            memcpy(out + n, chunk, got);
            n += got;
        }
        out[n] = '\0';
        int st = pclose(p);
        const char *last = out, *hit;
        while ((hit = strstr(last + 1, "inputs replayed"))) last = hit;
        while (last > out && last[-1] != '\n') last--;
        int ran = 0;
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0 && sscanf(last, "%d inputs replayed", &ran) == 1 &&
                      ran > 0,
                  "%s: replaying fuzz/corpus/%s failed (status %d):\n%s", e->d_name, e->d_name, st,
                  out + (n > 2000 ? n - 2000 : 0));
        printf("  %s: %d inputs\n", e->d_name, ran);
        targets++;
    }
    closedir(d);
    CHECK(targets >= 10);
}

int main(void)
{
    RUN(test_replay_findings);
    RUN(test_replay_corpora);
    return CHECK_SUMMARY();
}
