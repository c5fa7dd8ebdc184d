/* make install / make uninstall into a DESTDIR: the headers, the libraries
 * with their SONAME links, the tool and graft.pc land under PREFIX; a program
 * compiled against the installed header through pkg-config runs against the
 * installed libgraft.so; uninstall leaves nothing of graft behind. Runs the
 * Makefile of the build GRAFT_BIN comes from, without rebuilding anything. */
#include "check.h"
#include "graft.h"
#include "test_util.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char tmp[64] = "/tmp/graft_install_XXXXXX", out_path[128], err_path[128];
static char out[1 << 16], err[1 << 16];
static char build[200], make_args[1100];

/* Under `make asan` the installed library is instrumented: the program built
 * against it is too, so that the sanitizer runtime comes first. */
#ifdef __SANITIZE_ADDRESS__
#define PROG_CFLAGS "-fsanitize=address,undefined"
#else
#define PROG_CFLAGS ""
#endif

static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[3000];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return run_captured(cmd, out_path, err_path, out, sizeof out, err, sizeof err);
}

/* The SONAME's version: 0.x releases keep the minor part (the Makefile's SOVER). */
static const char *sover(void)
{
    static char v[32];
    snprintf(v, sizeof v, "%s", GRAFT_VERSION);
    char *dot = strchr(v, '.');
    if (dot && strncmp(v, "0.", 2) == 0) dot = strchr(dot + 1, '.');
    if (dot) *dot = '\0';
    return v;
}

static void test_install_uninstall(void)
{
    char cmd[2900], so[64], ver[64], hello[64];
    snprintf(so, sizeof so, "usr/lib/libgraft.so.%s", sover());
    snprintf(ver, sizeof ver, "Version: %s", GRAFT_VERSION);
    snprintf(hello, sizeof hello, "%s 1\n", GRAFT_VERSION);
    snprintf(cmd, sizeof cmd, "make -s %s PREFIX=/usr DESTDIR=%s/root install", make_args, tmp);
    CHECK_MSG(sh("%s%s", cmd, "") == 0, "%s", err);
    const char *root = path_in(tmp, "root");
    char p[512];
    const char *files[] = {"usr/include/graft.h", "usr/include/graft/report.h", "usr/lib/libgraft.a",
                           "usr/lib/libgraft.so", so, "usr/lib/pkgconfig/graft.pc",
                           "usr/bin/graft"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i]);
        CHECK_MSG(access(p, R_OK) == 0, "%s is missing", p);
    }
    /* The SONAME the library records, and the link named after it. */
    snprintf(p, sizeof p, "%s/usr/lib/libgraft.so", root);
    char soname[96];
    snprintf(soname, sizeof soname, "Library soname: [libgraft.so.%s]", sover());
    CHECK_MSG(sh("readelf -d %s%s", p, "") == 0 && strstr(out, soname), "%s", out);
    snprintf(p, sizeof p, "%s/usr/lib/pkgconfig/graft.pc", root);
    char pc[2048];
    slurp(p, pc, sizeof pc);
    CHECK_MSG(strstr(pc, "prefix=/usr") && strstr(pc, ver), "%s", pc);

    /* A program built against what was installed, found through pkg-config. */
    const char *src = path_in(tmp, "hello.c"), *exe = path_in(tmp, "hello");
    const char *prog = "#include <graft.h>\n#include <stdio.h>\n#include <string.h>\n"
                       "int main(void) { graft_model *m = graft_model_new(\"m\");\n"
                       "  printf(\"%s %d\\n\", GRAFT_VERSION, m != NULL); graft_model_free(m); return 0; }\n";
    CHECK(write_bytes(src, prog, strlen(prog)) == 0);
    snprintf(cmd, sizeof cmd,
             "PKG_CONFIG_PATH=%s/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=%s cc " PROG_CFLAGS " -o %s %s "
             "$(PKG_CONFIG_PATH=%s/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=%s pkg-config --cflags --libs graft) "
             "-Wl,-rpath,%s/usr/lib",
             root, root, exe, src, root, root, root);
    CHECK_MSG(sh("%s%s", cmd, "") == 0, "%s", err);
    CHECK_MSG(sh("%s%s", exe, "") == 0 && strcmp(out, hello) == 0, "%s%s", out, err);
    CHECK_MSG(sh("ldd %s | grep libgraft%s", exe, "") == 0 && strstr(out, root), "%s", out);

    snprintf(cmd, sizeof cmd, "make -s %s PREFIX=/usr DESTDIR=%s/root uninstall", make_args, tmp);
    CHECK_MSG(sh("%s%s", cmd, "") == 0, "%s", err);
    CHECK_MSG(sh("find %s -type f -o -type l%s", root, "") == 0 && out[0] == '\0', "left behind: %s", out);
}

int main(void)
{
    const char *bin = getenv("GRAFT_BIN");
    if (!bin) bin = "build/graft";
    if (access(bin, X_OK) != 0 || access("Makefile", R_OK) != 0 || system("command -v pkg-config readelf >/dev/null") != 0) {
        printf("test_cli_install: skipped (needs %s, the Makefile, pkg-config and readelf)\n0 passed, 0 failed\n", bin);
        return 0;
    }
    char b[200];
    snprintf(b, sizeof b, "%s", bin);
    snprintf(build, sizeof build, "%s", dirname(b));
    /* -o: what the build already made counts as made (no rebuild with other flags). */
    snprintf(make_args, sizeof make_args, "BUILD=%s -o %s/libgraft.a -o %s/libgraft.so.%s -o %s/graft -o lib",
             build, build, build, GRAFT_VERSION, build);
    if (make_tmpdir(tmp) != 0) return 1;
    snprintf(out_path, sizeof out_path, "%s/out.txt", tmp);
    snprintf(err_path, sizeof err_path, "%s/err.txt", tmp);
    RUN(test_install_uninstall);
    return CHECK_SUMMARY();
}
