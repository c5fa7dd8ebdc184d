/*
 * Opening the files graft reads. A FIFO, socket or device named like an
 * input (x.jpg, checkpoint.graft, a weight shard) would block a plain open()
 * or read() forever; every input is opened through these helpers instead,
 * which never block in open and refuse anything but a regular file.
 */
#ifndef GRAFT_FILE_OPEN_H
#define GRAFT_FILE_OPEN_H

#include "graft.h"

#include <stdio.h>
#include <sys/stat.h>

/* Opens `path` for reading. Fails (with a one-line message naming the path)
 * when it cannot be opened (GRAFT_ENOTFOUND when it does not exist, else
 * GRAFT_EIO) or is not a regular file ("PATH is not a regular file (a
 * FIFO)", GRAFT_EIO). `st` (may be NULL) gets the file's fstat. */
graft_status graft_open_regular(const char *path, int *fd, struct stat *st);

/* The same as a stdio stream ("rb"). */
graft_status graft_fopen_regular(const char *path, FILE **f, struct stat *st);

/* A temporary file for scratch data, in $TMPDIR (else /tmp), already
 * unlinked: it disappears when closed or when the process ends. */
graft_status graft_temp_file(FILE **f);

#endif
