/*
 * graft/fetch.h: downloads, dataset archives and checksums: what graft
 * fetches from the network and checks before using (Keras's get_file). The
 * core of graft needs none of it; libcurl, libarchive and Nettle stay here.
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_FETCH_H
#define GRAFT_API_FETCH_H

#include "graft/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GRAFT_HASH_NONE = 0, GRAFT_HASH_MD5, GRAFT_HASH_SHA256 } graft_hash_kind;

/* Hex digest (65 bytes with the NUL) of memory or of a file. */
graft_status graft_hash_hex(graft_hash_kind kind, const void *data, size_t len, char hex[65]);
graft_status graft_hash_file(graft_hash_kind kind, const char *path, char hex[65]);

/* Downloads url to dest through a temporary file in dest's folder, checks the
 * hash (kind NONE: only that the transfer completed) and renames into place;
 * on any failure no file is left at dest or in the temporary. */
graft_status graft_download(const char *url, const char *dest, graft_hash_kind kind,
                            const char *hex);
/* How a downloaded dataset archive is checked: by the archive's own checksum
 * (Keras's get_file file_hash), or, where none is published, by the digest of
 * the files it unpacks to (graft_tree_digest of tree_dirs; only those folders
 * are kept). Neither is refused unless insecure is set. */
typedef struct {
    graft_hash_kind hash_kind; /* the archive's checksum, or GRAFT_HASH_NONE */
    const char *hash;          /* hex */
    const char *tree_sha256;   /* or NULL */
    const char *const *tree_dirs; /* relative to the archive's root */
    int n_tree_dirs;
    int insecure; /* allow an archive checked by nothing */
} graft_fetch_opts;
/* Keras's get_file(..., extract=True): downloads url, checks it as `opts`
 * says, and unpacks it under dest_dir as graft_archive_extract does; the
 * checks run before anything is moved into place. */
graft_status graft_dataset_fetch(const char *url, const char *dest_dir, const graft_fetch_opts *opts);
/* The SHA-256 of the list of the regular files below root/dirs[i], one line
 * per file in byte order of their paths relative to root, as
 * `find DIRS -type f | LC_ALL=C sort | xargs sha256sum | sha256sum` prints
 * it; anything else than a file or folder there is refused. n_files
 * (optional) receives the number of files. */
graft_status graft_tree_digest(const char *root, const char *const *dirs, int n_dirs, char hex[65],
                               int *n_files);

/* Unpacks a .zip or .tar(.gz) archive under dest_dir (created if needed):
 * into a fresh temporary folder there, whose top-level entries are renamed
 * into place once every entry landed (an existing one is never replaced).
 * Entries with "..", absolute paths or through symbolic links, hard links or
 * symbolic links that leave the folder (a symbolic link must be relative,
 * without ".."), devices, FIFOs and sockets are refused, and on any failure
 * nothing is left behind. */
graft_status graft_archive_extract(const char *archive_path, const char *dest_dir);

#ifdef __cplusplus
}
#endif

#endif /* GRAFT_API_FETCH_H */
