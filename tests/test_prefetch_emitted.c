/* Every software prefetch written in src/ is in the built objects
 * (scripts/check_prefetch.py, on the build tests/run.sh runs): GCC dropped
 * two kernels' prefetch loops, each in a static function of its own, and
 * nothing noticed. The script is first shown to tell a lost prefetch from a
 * kept one on a small source of its own. */
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SCRIPT "/usr/bin/python3 scripts/check_prefetch.py"

static char dir[] = "/tmp/graft_prefetch_XXXXXX";

/* Writes src/k/one.c under dir, builds it as the library is built (-O2 -g,
 * with the extra flags) into build/src/k/one.o, and returns the script's
 * exit status. */
static int check_source(const char *code, const char *flags)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/src/k %s/build/src/k", dir, dir);
    if (system(cmd) != 0) return -1;
    snprintf(cmd, sizeof cmd, "%s/src/k/one.c", dir);
    FILE *f = fopen(cmd, "w");
    if (!f) return -1;
    fputs(code, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -O2 -g %s -c %s/src/k/one.c -o %s/build/src/k/one.o", flags, dir,
             dir);
    if (system(cmd) != 0) return -1;
    snprintf(cmd, sizeof cmd, SCRIPT " build %s >/dev/null 2>&1", dir);
    const int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A source whose prefetch loop is not in its object must be reported; the
 * same source built as written must pass. (The shape GCC 12 dropped: the
 * loop alone in a static function, a null test on each row; the source here
 * has the loop in the caller, and the macro stands in for the compiler.) */
static void test_script_catches_lost_prefetch(void)
{
    static const char code[] =
        "#include <stddef.h>\n"
        "void work(const float *const *in);\n"
        "void row(const float *const *in, int kh, int w, int c)\n"
        "{\n"
        "    for (int ky = 0; ky < kh; ky++) {\n"
        "        const float *r = in[ky];\n"
        "        if (!r) continue;\n"
        "        for (size_t i = 0; i < (size_t)w * c; i += 16) __builtin_prefetch(r + i, 0, 3);\n"
        "    }\n"
        "    work(in);\n"
        "}\n";
    CHECK_MSG(check_source(code, "'-D__builtin_prefetch(...)=((void)0)'") == 1,
              "a prefetch missing from the object is not reported");
    CHECK_MSG(check_source(code, "") == 0, "a prefetch in the object is reported");
}

/* The optimised build only: what users run. The sanitizer build (-O1)
 * keeps other code, and make test runs this on the optimised one. */
static void test_library_prefetches_emitted(void)
{
#ifdef __SANITIZE_ADDRESS__
    printf("  (sanitizer build: the optimised build's run checks its objects)\n");
#else
    const char *bin = getenv("GRAFT_BIN"); /* BUILD/graft, set by tests/run.sh */
    char build[512] = "build", cmd[1024];
    if (bin && strrchr(bin, '/'))
        snprintf(build, sizeof build, "%.*s", (int)(strrchr(bin, '/') - bin), bin);
    snprintf(cmd, sizeof cmd, SCRIPT " %s", build);
    CHECK_MSG(system(cmd) == 0, "prefetches compiled away in %s (see above)", build);
#endif
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_script_catches_lost_prefetch);
    RUN(test_library_prefetches_emitted);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_SUMMARY();
}
