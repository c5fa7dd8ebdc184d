/* Datasets that come as archives (Keras's get_file(..., extract=True)):
 * downloaded through graft_download, checked, and unpacked with libarchive
 * into a fresh temporary folder that is renamed into place only when every
 * entry landed and the checks passed. An archive is hostile until proven
 * otherwise: no entry, hard link or symbolic link may reach outside the
 * folder, and only files, folders and inside links are created. */
#include "core/file_open.h"
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zoo/zoo.h"

static graft_status make_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return graft_fail(GRAFT_EINVAL, "path %s is too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char keep = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return graft_fail(GRAFT_EIO, "cannot create %s: %s", buf, strerror(errno));
        *p = keep;
        if (!keep) break;
    }
    return GRAFT_OK;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Removes a folder and everything below it without following links. */
static void remove_tree(const char *dir) { nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

/* True when a path names something inside the folder: relative, no ".." part. */
static bool stays_inside(const char *name)
{
    if (name[0] == '/' || name[0] == '\0') return false;
    for (const char *p = name; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return false;
        p += len + (slash ? 1 : 0);
    }
    return true;
}

static const char *type_name(mode_t type)
{
    switch (type) {
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a FIFO";
    case AE_IFSOCK: return "a socket";
    default: return "of an unknown type";
    }
}

/* Our own checks before libarchive's: they name the entry and the reason.
 * A symbolic link may only point down (relative, no ".."): a lexical check
 * of a target with ".." could be fooled by another link on its way. */
static graft_status check_entry(const char *archive, struct archive_entry *e, const char *name)
{
    if (!stays_inside(name))
        return graft_fail(GRAFT_EFORMAT, "%s: refusing entry '%s' (absolute or with '..')", archive,
                          name);
    const char *hard = archive_entry_hardlink(e);
    if (hard) {
        if (!stays_inside(hard))
            return graft_fail(GRAFT_EFORMAT,
                              "%s: refusing entry '%s', a hard link to '%s' outside the archive's "
                              "folder",
                              archive, name, hard);
        return GRAFT_OK;
    }
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (!target || !stays_inside(target))
            return graft_fail(GRAFT_EFORMAT,
                              "%s: refusing entry '%s', a symbolic link to '%s' (links must point "
                              "down inside the archive's folder, without '..')",
                              archive, name, target ? target : "");
        return GRAFT_OK;
    }
    if (type != AE_IFREG && type != AE_IFDIR)
        return graft_fail(GRAFT_EFORMAT, "%s: refusing entry '%s', %s", archive, name,
                          type_name(type));
    return GRAFT_OK;
}

typedef struct {
    const char *archive; /* as the caller named it: for messages and opening */
    const char *tmp;     /* the fresh folder entries land in */
    graft_status s;
    char msg[1024];
} unpack_job;

static void job_fail(unpack_job *j, graft_status s)
{
    j->s = s;
    snprintf(j->msg, sizeof j->msg, "%s", graft_last_error());
}

/* Unpacks into j->tmp from a thread whose working folder is its own
 * (unshare(CLONE_FS)), so that libarchive sees the entries' own relative
 * names and its secure-extraction checks (no "..", no absolute paths, no
 * writing through links) apply to them, while the process's working folder
 * never changes. */
static void *unpack_thread(void *arg)
{
    unpack_job *j = arg;
    struct archive *in = NULL, *out = NULL;
    int fd = -1;
    graft_status opened = graft_open_regular(j->archive, &fd, NULL);
    if (opened != GRAFT_OK) {
        job_fail(j, opened);
        return NULL;
    }
    if (unshare(CLONE_FS) != 0 || chdir(j->tmp) != 0) {
        close(fd);
        job_fail(j, graft_fail(GRAFT_EIO, "cannot enter %s: %s", j->tmp, strerror(errno)));
        return NULL;
    }
    in = archive_read_new();
    out = archive_write_disk_new();
    if (!in || !out) {
        job_fail(j, graft_fail(GRAFT_ENOMEM, "out of memory opening %s", j->archive));
        goto done;
    }
    archive_read_support_format_all(in);
    archive_read_support_filter_all(in);
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                            ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                            ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
    if (archive_read_open_fd(in, fd, 1 << 16) != ARCHIVE_OK) {
        job_fail(j, graft_fail(GRAFT_EFORMAT, "%s: %s", j->archive, archive_error_string(in)));
        goto done;
    }
    struct archive_entry *e;
    int r;
    long entries = 0;
    while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
        const char *entry = archive_entry_pathname(e);
        char name[2048];
        if (!entry || snprintf(name, sizeof name, "%s", entry) >= (int)sizeof name) {
            job_fail(j, graft_fail(GRAFT_EFORMAT, "%s: an entry name is missing or too long",
                                   j->archive));
            goto done;
        }
        graft_status s = check_entry(j->archive, e, name);
        if (s != GRAFT_OK) {
            job_fail(j, s);
            goto done;
        }
        /* A dataset's own modes are not kept: a folder of mode 000 could be
         * neither moved into place nor cleaned up by a user other than root,
         * and no set-id or executable bit has a use here. */
        if (archive_entry_filetype(e) == AE_IFDIR) archive_entry_set_perm(e, 0755);
        else if (archive_entry_filetype(e) == AE_IFREG) archive_entry_set_perm(e, 0644);
        if (archive_write_header(out, e) != ARCHIVE_OK) {
            job_fail(j, graft_fail(GRAFT_EFORMAT, "%s: refusing entry '%s': %s", j->archive, name,
                                   archive_error_string(out)));
            goto done;
        }
        const void *buf;
        size_t len;
        la_int64_t off;
        while ((r = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK) {
            if (archive_write_data_block(out, buf, len, off) != ARCHIVE_OK) {
                job_fail(j, graft_fail(GRAFT_EIO, "unpacking %s: writing '%s': %s", j->archive,
                                       name, archive_error_string(out)));
                goto done;
            }
        }
        if (r != ARCHIVE_EOF) {
            job_fail(j, graft_fail(GRAFT_EFORMAT, "%s: entry '%s' is damaged: %s", j->archive, name,
                                   archive_error_string(in)));
            goto done;
        }
        if (archive_write_finish_entry(out) != ARCHIVE_OK) {
            job_fail(j, graft_fail(GRAFT_EIO, "unpacking %s: writing '%s': %s", j->archive, name,
                                   archive_error_string(out)));
            goto done;
        }
        entries++;
    }
    if (r != ARCHIVE_EOF)
        job_fail(j, graft_fail(GRAFT_EFORMAT, "%s is truncated or damaged: %s", j->archive,
                               archive_error_string(in)));
    else if (entries == 0)
        job_fail(j, graft_fail(GRAFT_EFORMAT, "%s holds no files", j->archive));
    else if (archive_write_close(out) != ARCHIVE_OK)
        job_fail(j, graft_fail(GRAFT_EIO, "unpacking %s: %s", j->archive, archive_error_string(out)));
done:
    archive_read_free(in);
    archive_write_free(out);
    close(fd);
    return NULL;
}

/* Unpacks archive_path into a new temporary folder inside dest_dir, whose
 * path is left in tmp (the caller removes it). */
static graft_status unpack_to_temp(const char *archive_path, const char *dest_dir, char *tmp,
                                   size_t cap)
{
    tmp[0] = '\0';
    graft_status s = make_dirs(dest_dir);
    if (s != GRAFT_OK) return s;
    if (snprintf(tmp, cap, "%s/.unpack-XXXXXX", dest_dir) >= (int)cap) {
        tmp[0] = '\0';
        return graft_fail(GRAFT_EINVAL, "path %s is too long", dest_dir);
    }
    if (!mkdtemp(tmp)) {
        s = graft_fail(GRAFT_EIO, "cannot create a folder in %s: %s", dest_dir, strerror(errno));
        tmp[0] = '\0';
        return s;
    }
    unpack_job j = {.archive = archive_path, .tmp = tmp, .s = GRAFT_OK};
    pthread_t t;
    int e = pthread_create(&t, NULL, unpack_thread, &j);
    if (e != 0) return graft_fail(GRAFT_EIO, "cannot start a thread to unpack %s: %s", archive_path,
                                  strerror(e));
    pthread_join(t, NULL);
    return j.s == GRAFT_OK ? GRAFT_OK : graft_fail(j.s, "%s", j.msg);
}

/* Renames tmp/rel to dest/rel (creating dest's folders above it); refuses to
 * replace anything already there. */
static graft_status move_into_place(const char *tmp, const char *dest, const char *rel)
{
    char from[4096], to[4096];
    if (snprintf(from, sizeof from, "%s/%s", tmp, rel) >= (int)sizeof from ||
        snprintf(to, sizeof to, "%s/%s", dest, rel) >= (int)sizeof to)
        return graft_fail(GRAFT_EINVAL, "path %s/%s is too long", dest, rel);
    char *slash = strrchr(to, '/');
    *slash = '\0';
    graft_status s = make_dirs(to);
    *slash = '/';
    if (s != GRAFT_OK) return s;
    struct stat sb;
    if (lstat(to, &sb) == 0)
        return graft_fail(GRAFT_EIO, "%s already exists; remove it to unpack the archive again", to);
    if (rename(from, to) != 0)
        return graft_fail(GRAFT_EIO, "cannot move %s to %s: %s", from, to, strerror(errno));
    return GRAFT_OK;
}

static graft_status move_all(const char *tmp, const char *dest)
{
    DIR *d = opendir(tmp);
    if (!d) return graft_fail(GRAFT_EIO, "cannot read %s: %s", tmp, strerror(errno));
    graft_status s = GRAFT_OK;
    struct dirent *e;
    while (s == GRAFT_OK && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            s = move_into_place(tmp, dest, e->d_name);
    closedir(d);
    return s;
}

graft_status graft_archive_extract(const char *archive_path, const char *dest_dir)
{
    if (!archive_path || !dest_dir) return graft_fail(GRAFT_EINVAL, "extract: missing argument");
    char tmp[4096];
    graft_status s = unpack_to_temp(archive_path, dest_dir, tmp, sizeof tmp);
    if (s == GRAFT_OK) s = move_all(tmp, dest_dir);
    if (tmp[0]) remove_tree(tmp);
    return s;
}

/* ------------------------------------------------------------ tree digests */

typedef struct {
    char **paths;
    int n, cap;
} pathlist;

static void pathlist_free(pathlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
}

static graft_status pathlist_add(pathlist *l, const char *p)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        char **grown = realloc(l->paths, (size_t)cap * sizeof *grown);
        if (!grown) return graft_fail(GRAFT_ENOMEM, "out of memory listing files");
        l->paths = grown;
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(p))) return graft_fail(GRAFT_ENOMEM, "out of memory listing files");
    l->n++;
    return GRAFT_OK;
}

/* Lists the regular files below root/rel (relative to root); anything that
 * is neither a folder nor a regular file is refused. */
static graft_status list_files(const char *root, const char *rel, pathlist *out, int depth)
{
    char full[4096];
    if (snprintf(full, sizeof full, "%s/%s", root, rel) >= (int)sizeof full)
        return graft_fail(GRAFT_EINVAL, "path %s/%s is too long", root, rel);
    if (depth > 64) return graft_fail(GRAFT_EFORMAT, "%s: folders nested too deep", full);
    struct stat sb;
    if (lstat(full, &sb) != 0) return graft_fail(GRAFT_ENOTFOUND, "%s: %s", full, strerror(errno));
    if (S_ISREG(sb.st_mode)) return pathlist_add(out, rel);
    if (!S_ISDIR(sb.st_mode))
        return graft_fail(GRAFT_EFORMAT, "%s is neither a file nor a folder", full);
    DIR *d = opendir(full);
    if (!d) return graft_fail(GRAFT_EIO, "cannot read %s: %s", full, strerror(errno));
    graft_status s = GRAFT_OK;
    struct dirent *e;
    while (s == GRAFT_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[4096];
        if (snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name) >= (int)sizeof sub)
            s = graft_fail(GRAFT_EINVAL, "path %s/%s is too long", full, e->d_name);
        else
            s = list_files(root, sub, out, depth + 1);
    }
    closedir(d);
    return s;
}

static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

graft_status graft_tree_digest(const char *root, const char *const *dirs, int n_dirs, char hex[65],
                               int *n_files)
{
    if (!root || !dirs || n_dirs <= 0 || !hex)
        return graft_fail(GRAFT_EINVAL, "tree digest: missing argument");
    pathlist l = {0};
    graft_status s = GRAFT_OK;
    for (int i = 0; i < n_dirs && s == GRAFT_OK; i++) {
        if (!stays_inside(dirs[i]))
            s = graft_fail(GRAFT_EINVAL, "tree digest: '%s' is not a relative path without '..'",
                           dirs[i]);
        else
            s = list_files(root, dirs[i], &l, 0);
    }
    if (s == GRAFT_OK) {
        if (l.n > 1) qsort(l.paths, (size_t)l.n, sizeof *l.paths, by_bytes);
        zoo_hash all;
        graft_zoo_hash_init(&all, GRAFT_HASH_SHA256);
        for (int i = 0; i < l.n && s == GRAFT_OK; i++) {
            char full[4096], one[65];
            snprintf(full, sizeof full, "%s/%s", root, l.paths[i]);
            s = graft_hash_file(GRAFT_HASH_SHA256, full, one);
            if (s != GRAFT_OK) break;
            graft_zoo_hash_update(&all, one, 64);
            graft_zoo_hash_update(&all, "  ", 2);
            graft_zoo_hash_update(&all, l.paths[i], strlen(l.paths[i]));
            graft_zoo_hash_update(&all, "\n", 1);
        }
        if (s == GRAFT_OK) graft_zoo_hash_final(&all, hex);
        if (n_files) *n_files = l.n;
    }
    pathlist_free(&l);
    return s;
}

/* ------------------------------------------------------------ get_file(extract=True) */

graft_status graft_dataset_fetch(const char *url, const char *dest_dir, const graft_fetch_opts *o)
{
    static const graft_fetch_opts none = {0};
    if (!o) o = &none;
    if (!url || !dest_dir) return graft_fail(GRAFT_EINVAL, "fetch dataset: missing url or folder");
    bool hashed = o->hash_kind != GRAFT_HASH_NONE, tree = o->tree_sha256 != NULL;
    if (tree && (o->n_tree_dirs <= 0 || !o->tree_dirs))
        return graft_fail(GRAFT_EINVAL, "fetch dataset %s: a tree digest needs the folders it covers",
                          url);
    if (!hashed && !tree && !o->insecure)
        return graft_fail(GRAFT_EINVAL,
                          "refusing to download %s without a checksum: give its SHA-256 (or allow "
                          "an unchecked download explicitly)",
                          url);
    graft_status s = make_dirs(dest_dir);
    if (s != GRAFT_OK) return s;
    char archive[4096], tmp[4096] = "";
    if (snprintf(archive, sizeof archive, "%s/.download-%d.archive", dest_dir, (int)getpid()) >=
        (int)sizeof archive)
        return graft_fail(GRAFT_EINVAL, "path %s is too long", dest_dir);
    s = graft_download(url, archive, o->hash_kind, o->hash);
    if (s != GRAFT_OK) return s;
    s = unpack_to_temp(archive, dest_dir, tmp, sizeof tmp);
    if (s == GRAFT_OK && tree) {
        char got[65];
        int n = 0;
        s = graft_tree_digest(tmp, o->tree_dirs, o->n_tree_dirs, got, &n);
        if (s == GRAFT_OK && strcasecmp(got, o->tree_sha256) != 0)
            s = graft_fail(GRAFT_EFORMAT,
                           "%s: the unpacked files (%d) are not the expected ones (SHA-256 of their "
                           "list %s, expected %s); nothing was kept",
                           url, n, got, o->tree_sha256);
        else if (s != GRAFT_OK) {
            char why[1024];
            snprintf(why, sizeof why, "%s", graft_last_error());
            s = graft_fail(s, "%s: %s; nothing was kept", url, why);
        }
    }
    /* With a tree digest only the checked folders are kept. */
    if (s == GRAFT_OK && tree)
        for (int i = 0; i < o->n_tree_dirs && s == GRAFT_OK; i++)
            s = move_into_place(tmp, dest_dir, o->tree_dirs[i]);
    else if (s == GRAFT_OK)
        s = move_all(tmp, dest_dir);
    if (tmp[0]) remove_tree(tmp);
    if (unlink(archive) != 0 && errno != ENOENT && s == GRAFT_OK)
        s = graft_fail(GRAFT_EIO, "cannot remove %s: %s", archive, strerror(errno));
    return s;
}
