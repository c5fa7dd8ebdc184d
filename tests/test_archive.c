/*
 * Hostile dataset archives: graft_archive_extract must never create, change
 * or link anything outside the destination folder, whatever the archive
 * says (absolute names, "..", hard links out of the folder, hard links to
 * names relative to the process's working folder, symbolic links out and
 * writes through them, devices and FIFOs), and must leave nothing behind
 * when it refuses. A normal archive with folders and inside links unpacks.
 */
#include "check.h"
#include "test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <graft.h>
#include <stdlib.h>

static char tmpdir[256], dest[300], victim[300];

typedef struct {
    const char *name;
    mode_t type;       /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFIFO, AE_IFCHR */
    const char *body;  /* file data */
    const char *link;  /* symbolic link target */
    const char *hard;  /* hard link target */
    mode_t perm;       /* 0: 0755 for folders, 0644 else */
} entry;

/* Writes a tar (or zip) archive of the entries to path. */
static int write_archive(const char *path, const entry *es, int n, int zip)
{
    struct archive *a = archive_write_new();
    if (zip)
        archive_write_set_format_zip(a);
    else
        archive_write_set_format_pax_restricted(a);
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) return -1;
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, es[i].name);
        archive_entry_set_perm(e, es[i].perm ? es[i].perm : es[i].type == AE_IFDIR ? 0755 : 0644);
        if (es[i].hard) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, es[i].hard);
            /* pax lets a hard link carry data, written into the linked file */
            archive_entry_set_size(e, es[i].body ? (la_int64_t)strlen(es[i].body) : 0);
        } else {
            archive_entry_set_filetype(e, es[i].type);
            if (es[i].link) archive_entry_set_symlink(e, es[i].link);
            archive_entry_set_size(e, es[i].body ? (la_int64_t)strlen(es[i].body) : 0);
        }
        archive_write_header(a, e);
        if (es[i].body) archive_write_data(a, es[i].body, strlen(es[i].body));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return 0;
}

static void reset(void)
{
    remove_tree(dest);
    rmdir(dest);
    FILE *f = fopen(victim, "w");
    if (f) {
        fputs("original", f);
        fclose(f);
    }
}

/* The archive is refused with a message naming the entry, the victim keeps
 * its bytes, and the destination holds nothing. */
static void expect_refused(const entry *es, int n, int zip, const char *why)
{
    reset();
    char path[400], buf[64];
    snprintf(path, sizeof path, "%s/hostile.%s", tmpdir, zip ? "zip" : "tar");
    CHECK(write_archive(path, es, n, zip) == 0);
    graft_status s = graft_archive_extract(path, dest);
    CHECK_MSG(s != GRAFT_OK, "%s was unpacked", why);
    CHECK_MSG(strstr(graft_last_error(), "hostile.") != NULL, "%s: message '%s' names no archive",
              why, graft_last_error());
    slurp(victim, buf, sizeof buf);
    CHECK_MSG(strcmp(buf, "original") == 0, "%s: the file outside became '%s'", why, buf);
    CHECK_MSG(dir_entries(dest) <= 0, "%s: %d entries left in the destination", why,
              dir_entries(dest));
    unlink(path);
}

static void test_absolute_and_dotdot_names(void)
{
    entry abs[] = {{.name = victim, .type = AE_IFREG, .body = "pwned"}};
    expect_refused(abs, 1, 0, "an absolute name");
    expect_refused(abs, 1, 1, "an absolute name in a zip");
    entry up[] = {{.name = "data/../../victim.txt", .type = AE_IFREG, .body = "pwned"}};
    expect_refused(up, 1, 0, "a name with ..");
    CHECK(strstr(graft_last_error(), "'..'") != NULL);
}

static void test_hard_links_out(void)
{
    /* A hard link to the file outside, then data written through it. */
    entry abs[] = {{.name = "h", .hard = victim}, {.name = "h", .type = AE_IFREG, .body = "pwned"}};
    expect_refused(abs, 2, 0, "a hard link to an absolute path");
    entry data[] = {{.name = "h", .hard = victim, .body = "pwned"}};
    expect_refused(data, 1, 0, "a hard link with data to an absolute path");
    CHECK(strstr(graft_last_error(), "hard link") != NULL);
    entry up[] = {{.name = "h", .hard = "../victim.txt"},
                  {.name = "h", .type = AE_IFREG, .body = "pwned"}};
    expect_refused(up, 2, 0, "a hard link to ../");
    /* A hard link whose target looks inside but names a file in the
     * process's working folder (libarchive resolves link targets from there). */
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(tmpdir) == 0);
    entry rel[] = {{.name = "h", .hard = "victim.txt", .body = "pwned"}};
    expect_refused(rel, 1, 0, "a hard link to a name in the working folder");
    CHECK(chdir(cwd) == 0);
}

static void test_symbolic_links_out(void)
{
    entry abs[] = {{.name = "s", .type = AE_IFLNK, .link = tmpdir},
                   {.name = "s/victim.txt", .type = AE_IFREG, .body = "pwned"}};
    expect_refused(abs, 2, 0, "a symbolic link to an absolute folder");
    CHECK(strstr(graft_last_error(), "symbolic link") != NULL);
    entry up[] = {{.name = "s", .type = AE_IFLNK, .link = ".."},
                  {.name = "s/victim.txt", .type = AE_IFREG, .body = "pwned"}};
    expect_refused(up, 2, 0, "a symbolic link to ..");
    /* A link that would only be read later (a dataset image pointing at a
     * system file) is refused too. */
    entry read[] = {{.name = "cats/a.jpg", .type = AE_IFLNK, .link = "/etc/passwd"}};
    expect_refused(read, 1, 0, "a symbolic link to a system file");
    /* Through an inside link that points up: the second link is refused. */
    entry chain[] = {{.name = "a/", .type = AE_IFDIR},
                     {.name = "a/up", .type = AE_IFLNK, .link = "../.."},
                     {.name = "a/up/victim.txt", .type = AE_IFREG, .body = "pwned"}};
    expect_refused(chain, 3, 0, "a chain of links");
}

static void test_special_files(void)
{
    entry fifo[] = {{.name = "cats/x.jpg", .type = AE_IFIFO}};
    expect_refused(fifo, 1, 0, "a FIFO");
    CHECK(strstr(graft_last_error(), "FIFO") != NULL);
    entry dev[] = {{.name = "null", .type = AE_IFCHR}};
    expect_refused(dev, 1, 0, "a character device");
}

/* A refusal after good entries leaves none of them behind. */
static void test_nothing_left_on_failure(void)
{
    entry es[] = {{.name = "data/train/a.txt", .type = AE_IFREG, .body = "a"},
                  {.name = "data/train/b.txt", .type = AE_IFREG, .body = "b"},
                  {.name = "../escape.txt", .type = AE_IFREG, .body = "pwned"}};
    expect_refused(es, 3, 0, "a bad entry after good ones");
    char p[400];
    snprintf(p, sizeof p, "%s/escape.txt", tmpdir);
    CHECK(access(p, F_OK) != 0);
}

static void test_normal_archive(void)
{
    reset();
    char path[400], p[500], buf[64];
    snprintf(path, sizeof path, "%s/ok.tar", tmpdir);
    entry es[] = {{.name = "data/", .type = AE_IFDIR},
                  {.name = "data/train/cats/a.txt", .type = AE_IFREG, .body = "meow"},
                  {.name = "data/train/cats/same.txt", .hard = "data/train/cats/a.txt"},
                  {.name = "data/latest", .type = AE_IFLNK, .link = "train/cats"}};
    CHECK(write_archive(path, es, 4, 0) == 0);
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK_OK(graft_archive_extract(path, dest));
    char after[4096];
    CHECK(getcwd(after, sizeof after) != NULL && strcmp(cwd, after) == 0);
    snprintf(p, sizeof p, "%s/data/latest/a.txt", dest);
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "meow") == 0);
    snprintf(p, sizeof p, "%s/data/train/cats/same.txt", dest);
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "meow") == 0);
    CHECK(dir_entries(dest) == 1); /* data/, and no temporary folder */
    /* Unpacking again does not replace what is there. */
    CHECK(graft_archive_extract(path, dest) != GRAFT_OK);
    CHECK(strstr(graft_last_error(), "already exists") != NULL);
    CHECK(dir_entries(dest) == 1);
    unlink(path);
}

/* Modes from the archive are not kept: a mode 000 folder could not be moved
 * or removed by a user other than root, and set-id bits have no place in a
 * dataset (fuzz_archive's modes.tar). */
static void test_modes_not_kept(void)
{
    reset();
    char path[400], p[500], buf[16];
    snprintf(path, sizeof path, "%s/modes.tar", tmpdir);
    entry es[] = {{.name = "locked/", .type = AE_IFDIR, .perm = 01000},
                  {.name = "locked/a.txt", .type = AE_IFREG, .body = "a", .perm = 04777}};
    CHECK(write_archive(path, es, 2, 0) == 0);
    CHECK_OK(graft_archive_extract(path, dest));
    mode_t mask = umask(0);
    umask(mask);
    struct stat sb;
    snprintf(p, sizeof p, "%s/locked", dest);
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 07777) == (0755 & ~mask));
    snprintf(p, sizeof p, "%s/locked/a.txt", dest);
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 07777) == (0644 & ~mask));
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "a") == 0);
    unlink(path);
}

/* The digest of a folder's files is what coreutils computes. */
static void test_tree_digest(void)
{
    reset();
    char path[400], cmd[1200], want[80] = "";
    snprintf(path, sizeof path, "%s/ok.tar", tmpdir);
    entry es[] = {{.name = "d/train/b/2.txt", .type = AE_IFREG, .body = "two"},
                  {.name = "d/train/a/1.txt", .type = AE_IFREG, .body = "one"},
                  {.name = "d/train/a/B.txt", .type = AE_IFREG, .body = "upper"},
                  {.name = "d/validation/x.txt", .type = AE_IFREG, .body = ""},
                  {.name = "d/other.txt", .type = AE_IFREG, .body = "not covered"}};
    CHECK(write_archive(path, es, 5, 0) == 0);
    CHECK_OK(graft_archive_extract(path, dest));
    const char *dirs[] = {"d/train", "d/validation"};
    char hex[65];
    int n = 0;
    CHECK_OK(graft_tree_digest(dest, dirs, 2, hex, &n));
    CHECK(n == 4);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && find d/train d/validation -type f | LC_ALL=C sort | xargs sha256sum | "
             "sha256sum",
             dest);
    FILE *f = popen(cmd, "r");
    if (f) {
        if (!fgets(want, sizeof want, f)) want[0] = '\0';
        pclose(f);
    }
    CHECK_MSG(strlen(want) >= 64 && strncmp(hex, want, 64) == 0, "%s vs %s", hex, want);
    /* A link inside the covered folders is refused. */
    char p[500];
    snprintf(p, sizeof p, "%s/d/train/link", dest);
    CHECK(symlink("a", p) == 0);
    CHECK(graft_tree_digest(dest, dirs, 2, hex, NULL) == GRAFT_EFORMAT);
    unlink(path);
}

/* The lesson's data beside the repository has the digest the CLI expects of
 * Google's archive (the same images). */
static void test_lesson_digest(void)
{
    const char *root = "../shared/data";
    char p[300];
    snprintf(p, sizeof p, "%s/cats_and_dogs_filtered/train", root);
    NEED_FILE(p);
    const char *dirs[] = {"cats_and_dogs_filtered/train", "cats_and_dogs_filtered/validation"};
    char hex[65];
    int n = 0;
    CHECK_OK(graft_tree_digest(root, dirs, 2, hex, &n));
    CHECK(n == 3000);
    CHECK(strcmp(hex, "ad5acefe3c4f000e46fcecabc985f9dd6712e94452d052d3d0e45dd8f4f8027a") == 0);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/graft_archive_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(dest, sizeof dest, "%s/dest", tmpdir);
    snprintf(victim, sizeof victim, "%s/victim.txt", tmpdir);
    RUN(test_absolute_and_dotdot_names);
    RUN(test_hard_links_out);
    RUN(test_symbolic_links_out);
    RUN(test_special_files);
    RUN(test_nothing_left_on_failure);
    RUN(test_normal_archive);
    RUN(test_modes_not_kept);
    RUN(test_tree_digest);
    RUN(test_lesson_digest);
    remove_tree(tmpdir);
    rmdir(tmpdir);
    return CHECK_SUMMARY();
}
