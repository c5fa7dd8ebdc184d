/* Datasets that come as archives (Keras's get_file(..., extract=True)):
 * downloaded through graft_download, unpacked with libarchive, refusing
 * entries that would land outside the destination. */
#include "core/file_open.h"
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* True when the entry stays inside the destination: relative, no ".." part. */
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

graft_status graft_extract_archive(const char *archive_path, const char *dest_dir)
{
    graft_status s = make_dirs(dest_dir);
    if (s != GRAFT_OK) return s;
    int fd;
    if ((s = graft_open_regular(archive_path, &fd, NULL)) != GRAFT_OK) return s;
    struct archive *in = archive_read_new(), *out = archive_write_disk_new();
    if (!in || !out) {
        archive_read_free(in);
        archive_write_free(out);
        close(fd);
        return graft_fail(GRAFT_ENOMEM, "out of memory opening %s", archive_path);
    }
    archive_read_support_format_all(in);
    archive_read_support_filter_all(in);
    /* Entries land under dest_dir by their relative names (checked below);
     * libarchive refuses to write through symbolic links. */
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS);
    if (archive_read_open_fd(in, fd, 1 << 16) != ARCHIVE_OK) {
        s = graft_fail(GRAFT_EFORMAT, "%s: %s", archive_path, archive_error_string(in));
        goto done;
    }
    struct archive_entry *e;
    int r;
    long entries = 0;
    while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
        const char *entry = archive_entry_pathname(e);
        char name[2048], dest[4096];
        if (!entry || snprintf(name, sizeof name, "%s", entry) >= (int)sizeof name ||
            snprintf(dest, sizeof dest, "%s/%s", dest_dir, name) >= (int)sizeof dest) {
            s = graft_fail(GRAFT_EFORMAT, "%s: an entry name is missing or too long", archive_path);
            goto done;
        }
        if (!stays_inside(name)) {
            s = graft_fail(GRAFT_EFORMAT, "%s: refusing entry '%s' (absolute or with '..')",
                           archive_path, name);
            goto done;
        }
        archive_entry_set_pathname(e, dest);
        if (archive_write_header(out, e) != ARCHIVE_OK) {
            s = graft_fail(GRAFT_EFORMAT, "%s: refusing entry '%s': %s", archive_path, name,
                           archive_error_string(out));
            goto done;
        }
        const void *buf;
        size_t len;
        la_int64_t off;
        while ((r = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK) {
            if (archive_write_data_block(out, buf, len, off) != ARCHIVE_OK) {
                s = graft_fail(GRAFT_EIO, "writing %s: %s", dest, archive_error_string(out));
                goto done;
            }
        }
        if (r != ARCHIVE_EOF) {
            s = graft_fail(GRAFT_EFORMAT, "%s: entry '%s' is damaged: %s", archive_path, name,
                           archive_error_string(in));
            goto done;
        }
        if (archive_write_finish_entry(out) != ARCHIVE_OK) {
            s = graft_fail(GRAFT_EIO, "writing %s: %s", dest, archive_error_string(out));
            goto done;
        }
        entries++;
    }
    if (r != ARCHIVE_EOF)
        s = graft_fail(GRAFT_EFORMAT, "%s is truncated or damaged: %s", archive_path, archive_error_string(in));
    else if (entries == 0)
        s = graft_fail(GRAFT_EFORMAT, "%s holds no files", archive_path);
done:
    archive_read_free(in);
    archive_write_free(out);
    close(fd);
    return s;
}

graft_status graft_fetch_dataset(const char *url, const char *dest_dir, graft_hash_kind kind,
                                 const char *hex)
{
    graft_status s = make_dirs(dest_dir);
    if (s != GRAFT_OK) return s;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s/.download-%d.archive", dest_dir, (int)getpid()) >= (int)sizeof tmp)
        return graft_fail(GRAFT_EINVAL, "path %s is too long", dest_dir);
    s = graft_download(url, tmp, kind, hex);
    if (s == GRAFT_OK) s = graft_extract_archive(tmp, dest_dir);
    if (unlink(tmp) != 0 && errno != ENOENT && s == GRAFT_OK)
        s = graft_fail(GRAFT_EIO, "cannot remove %s: %s", tmp, strerror(errno));
    return s;
}
