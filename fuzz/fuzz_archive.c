/* Dataset archives (.zip, .tar, .tar.gz: libarchive tells them apart) as
 * graft_archive_extract unpacks them, and the security property it owes:
 * nothing lands outside the destination folder. Each input is extracted
 * into a fresh folder of a sandbox on tmpfs, with the process's working
 * folder moved into the sandbox for the call (libarchive resolves hard link
 * targets against it); then any of these aborts:
 *   - the sandbox holds anything new beside the destination, or the working
 *     folder is no longer empty;
 *   - the sentinel file beside the destination, or the archive itself, has
 *     changed or gained a hard link;
 *   - a symbolic link inside the destination resolves outside it;
 *   - a file inside has more hard links than the destination holds (one is
 *     outside), or is a device node;
 *   - a failed extraction left anything in the (fresh) destination.
 * The destination is then removed (links not followed). */
#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>

static char box[64], box_real[PATH_MAX], dest[128], dest_real[PATH_MAX], cwd[128], sentinel[128],
    input[128];
static struct stat sentinel_st;
static int home_fd = -1;

static const char SENTINEL[] = "outside the destination: must never change\n";

static void violation(const char *what, const char *path)
{
    fprintf(stderr, "fuzz_archive: SECURITY: %s: %s\n", what, path);
    abort();
}

/* Removes p and all below it, links not followed; folders that came with
 * mode 000 are opened up first (only root could read them as they are). */
static void remove_tree(const char *p)
{
    struct stat sb;
    if (lstat(p, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        if (chmod(p, 0700) != 0) abort();
        DIR *d = opendir(p);
        if (!d) abort();
        struct dirent *e;
        char sub[PATH_MAX];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                if (snprintf(sub, sizeof sub, "%s/%s", p, e->d_name) >= (int)sizeof sub) abort();
                remove_tree(sub);
            }
        closedir(d);
        if (rmdir(p) != 0) abort();
    } else if (unlink(p) != 0) {
        abort();
    }
}

static void box_remove(void)
{
    remove_tree(box);
}

static void setup(void)
{
    fuzz_mkdtemp(box, sizeof box, "graft_fuzz_archive");
    if (!realpath(box, box_real)) abort();
    atexit(box_remove);
    snprintf(dest, sizeof dest, "%s/dest", box);
    snprintf(cwd, sizeof cwd, "%s/cwd", box);
    snprintf(sentinel, sizeof sentinel, "%s/sentinel", box);
    snprintf(input, sizeof input, "%s/input.archive", box);
    if (snprintf(dest_real, sizeof dest_real, "%s/dest", box_real) >= (int)sizeof dest_real) abort();
    if (mkdir(cwd, 0755) != 0) abort();
    FILE *f = fopen(sentinel, "wb");
    if (!f || fwrite(SENTINEL, 1, sizeof SENTINEL - 1, f) != sizeof SENTINEL - 1 || fclose(f) != 0)
        abort();
    if (stat(sentinel, &sentinel_st) != 0) abort();
    home_fd = open(".", O_RDONLY | O_DIRECTORY);
    if (home_fd < 0) abort();
}

/* Normalises "a/./b/../c" to "a/c" in place (the path is absolute). */
static void normalise(char *p)
{
    char out[PATH_MAX];
    size_t n = 0;
    for (const char *s = p; *s;) {
        while (*s == '/') s++;
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0) break;
        if (len == 1 && s[0] == '.') {
        } else if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (n > 0 && out[n - 1] != '/') n--;
            if (n > 0) n--;
        } else if (n + 1 + len < sizeof out) {
            out[n++] = '/';
            memcpy(out + n, s, len);
            n += len;
        }
        s += len;
    }
    out[n] = '\0';
    snprintf(p, PATH_MAX, "%s", n ? out : "/");
}

/* Where a path really leads: realpath where it exists, else its deepest
 * existing folder resolved and the rest (names that do not exist, so are
 * no links) taken literally. 0 where a link loop hides it. */
static int resolve(const char *path, char *out)
{
    if (realpath(path, out)) return 1;
    if (errno != ENOENT && errno != ENOTDIR) return 0;
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent) {
        snprintf(out, PATH_MAX, "%s", path);
        normalise(out);
        return 1;
    }
    *slash = '\0';
    char base[PATH_MAX];
    if (!resolve(parent, base)) return 0;
    if (snprintf(out, PATH_MAX, "%s/%s", base, slash + 1) >= PATH_MAX) return 0;
    normalise(out);
    return 1;
}

static int inside_dest(const char *real)
{
    size_t n = strlen(dest_real);
    return strncmp(real, dest_real, n) == 0 && (real[n] == '\0' || real[n] == '/');
}

typedef struct {
    ino_t ino;
    nlink_t links, seen;
} inode_count;

static inode_count inodes[4096];
static int n_inodes;

static int check_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_SL || flag == FTW_SLN) {
        char target[PATH_MAX], joined[2 * PATH_MAX], real[PATH_MAX];
        ssize_t n = readlink(p, target, sizeof target - 1);
        if (n < 0) abort();
        target[n] = '\0';
        if (target[0] == '/') {
            snprintf(joined, sizeof joined, "%s", target);
        } else {
            snprintf(joined, sizeof joined, "%s", p);
            char *slash = strrchr(joined, '/');
            snprintf(slash + 1, sizeof joined - (size_t)(slash + 1 - joined), "%s", target);
        }
        if (strlen(joined) >= PATH_MAX) return 0; /* no such path can be opened */
        if (resolve(joined, real) && !inside_dest(real)) violation("a link leads outside", p);
        return 0;
    }
    if (S_ISCHR(sb->st_mode) || S_ISBLK(sb->st_mode)) violation("a device node", p);
    if (!S_ISDIR(sb->st_mode) && sb->st_nlink > 1) {
        int k = 0;
        while (k < n_inodes && inodes[k].ino != sb->st_ino) k++;
        if (k == n_inodes) {
            if (n_inodes == (int)(sizeof inodes / sizeof *inodes)) return 0;
            inodes[n_inodes++] = (inode_count){sb->st_ino, sb->st_nlink, 0};
        }
        inodes[k].seen++;
    }
    return 0;
}

/* A failure leaves nothing in the destination. */
static void check_leftovers(graft_status s)
{
    DIR *d = s != GRAFT_OK ? opendir(dest) : NULL;
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            violation("a failed extraction left an entry", e->d_name);
    closedir(d);
}

static void check_box(void)
{
    DIR *d = opendir(box);
    if (!d) abort();
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "dest") &&
            strcmp(e->d_name, "cwd") && strcmp(e->d_name, "sentinel") &&
            strcmp(e->d_name, "input.archive"))
            violation("a new entry beside the destination", e->d_name);
    closedir(d);
    d = opendir(cwd);
    if (!d) abort();
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            violation("a new entry in the working folder", e->d_name);
    closedir(d);

    struct stat sb;
    char buf[sizeof SENTINEL];
    FILE *f = fopen(sentinel, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    if (lstat(sentinel, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_ino != sentinel_st.st_ino ||
        sb.st_nlink != 1 || n != sizeof SENTINEL - 1 || memcmp(buf, SENTINEL, n) != 0 ||
        sb.st_mtim.tv_sec != sentinel_st.st_mtim.tv_sec ||
        sb.st_mtim.tv_nsec != sentinel_st.st_mtim.tv_nsec)
        violation("the sentinel beside the destination changed", sentinel);
    if (lstat(input, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1)
        violation("the archive itself changed or gained a link", input);

    n_inodes = 0;
    if (lstat(dest, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) violation("the destination is not a folder", dest);
        if (nftw(dest, check_entry, 16, FTW_PHYS) != 0) abort();
        for (int k = 0; k < n_inodes; k++)
            if (inodes[k].seen != inodes[k].links)
                violation("a file inside is hard-linked from outside", dest);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!box[0]) setup();
    FILE *f = fopen(input, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    if (chdir(cwd) != 0) abort();
    graft_status s = graft_archive_extract(input, dest);
    fuzz_check_message();
    if (fchdir(home_fd) != 0) abort();
    check_box();
    check_leftovers(s);
    remove_tree(dest);
    unlink(input);
    return 0;
}
