/*
 * Crash-safe file replacement. Everything graft writes (histories, logs,
 * figures, models) goes to a fresh file beside the target, is flushed and
 * fsync'ed, and is then renamed over the target: a reader sees either the
 * old complete file or the new complete one, and a failed write leaves no
 * file behind (only a crash in the middle can leave a hidden ".NAME.tmp-*"
 * file, never a truncated NAME).
 */
#ifndef GRAFT_ATOMIC_FILE_H
#define GRAFT_ATOMIC_FILE_H

#include "graft.h"

#include <stdio.h>

typedef struct {
    char *path; /* the target */
    char *tmp;  /* the temporary file in the target's folder */
    FILE *f;    /* open for writing on tmp */
} graft_atomic_file;

/* Creates the temporary file. On failure *af is left empty and nothing exists. */
graft_status graft_atomic_open(graft_atomic_file *af, const char *path);

/*
 * Flushes, fsyncs, closes and renames tmp over path, then syncs the folder. A
 * writer that needs a file name rather than a stream may fclose f, set it to
 * NULL and write af->tmp itself before committing. A failure before the
 * rename removes the temporary file and leaves the target untouched; a
 * failure to sync the folder after it is reported too (the new file is in
 * place but might not survive a power cut). *af is emptied either way.
 */
graft_status graft_atomic_commit(graft_atomic_file *af);

/* Removes the temporary file; the target is untouched. Safe on an empty *af. */
void graft_atomic_abort(graft_atomic_file *af);

/* graft_file_write_atomic (open, write, commit) is in graft.h. */

#endif
