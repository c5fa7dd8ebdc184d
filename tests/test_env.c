/* The table of environment switches (src/core/env.c): every entry named,
 * documented in the table and in the README, read when asked. */
#include "check.h"
#include "internal.h"
#include "test_util.h"

#include <stdlib.h>

static void test_table_complete(void)
{
    for (int v = 0; v < GRAFT_ENV_COUNT; v++) {
        const char *name = graft_env_name((graft_env_var)v), *doc = graft_env_doc((graft_env_var)v);
        CHECK_MSG(name && doc && *doc, "entry %d", v);
        if (!name) continue;
        /* graft's own, oneDNN's, and the two standard ones it honours */
        CHECK_MSG(strncmp(name, "GRAFT_", 6) == 0 || strncmp(name, "ONEDNN_", 7) == 0 ||
                      strcmp(name, "HOME") == 0 || strcmp(name, "TMPDIR") == 0,
                  "%s", name);
        for (int w = 0; w < v; w++) CHECK(strcmp(name, graft_env_name((graft_env_var)w)) != 0);
    }
    CHECK(graft_env_name(GRAFT_ENV_COUNT) == NULL && graft_env(GRAFT_ENV_COUNT) == NULL);
}

static void test_read_when_asked(void)
{
    const char *name = graft_env_name(GRAFT_ENV_NO_CONV_POOL);
    char *saved = getenv(name) ? strdup(getenv(name)) : NULL;
    unsetenv(name);
    CHECK(graft_env(GRAFT_ENV_NO_CONV_POOL) == NULL && !graft_env_on(GRAFT_ENV_NO_CONV_POOL));
    CHECK(setenv(name, "1", 1) == 0);
    CHECK(graft_env_on(GRAFT_ENV_NO_CONV_POOL));
    CHECK(setenv(name, "0", 1) == 0);
    CHECK(!graft_env_on(GRAFT_ENV_NO_CONV_POOL) && strcmp(graft_env(GRAFT_ENV_NO_CONV_POOL), "0") == 0);
    if (saved) setenv(name, saved, 1);
    else unsetenv(name);
    free(saved);
}

/* The README's reference section names every switch (run from the repository root). */
static void test_readme_lists_all(void)
{
    static char readme[1 << 17];
    slurp("README.md", readme, sizeof readme);
    if (!readme[0]) {
        printf("skip - no README.md here\n");
        return;
    }
    const char *sec = strstr(readme, "### Environment");
    CHECK(sec != NULL);
    if (!sec) return;
    for (int v = 0; v < GRAFT_ENV_COUNT; v++) {
        char want[64];
        snprintf(want, sizeof want, "`%s`", graft_env_name((graft_env_var)v));
        CHECK_MSG(strstr(sec, want) != NULL, "README does not list %s", want);
    }
}

int main(void)
{
    RUN(test_table_complete);
    RUN(test_read_when_asked);
    RUN(test_readme_lists_all);
    return CHECK_SUMMARY();
}
