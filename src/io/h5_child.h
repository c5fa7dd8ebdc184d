/*
 * Reading .h5 files in a watchdogged child process. libhdf5 loops forever
 * or crashes on some corrupt files (fuzz/libhdf5_findings/), and graft cannot
 * fix libhdf5: the child holds every libhdf5 handle and answers over a
 * socket, the listing first, then each weight's floats when asked. graft
 * waits at most GRAFT_H5_TIMEOUT seconds for any progress, then kills it;
 * a child that crashes is an error naming the file. GRAFT_H5_CHILD=0 reads
 * in-process (the fuzzer, debuggers).
 */
#ifndef GRAFT_H5_CHILD_H
#define GRAFT_H5_CHILD_H

#include "io/io.h"

/* Whether .h5 files are read in a child (GRAFT_H5_CHILD is not "0"). */
bool h5_child_wanted(void);

/* io_h5_list and graft_h5_metadata_read through a child: the same results
 * and the same messages. The io_file's read and close talk to the child;
 * io_file_free kills and reaps it. */
graft_status h5_child_list(const char *path, io_file *f, char **model_config);
graft_status h5_child_metadata(const char *path, const char *name, char **text);

/* The in-process readers (src/io/hdf5.c), which the child runs. */
graft_status h5_list_here(const char *path, io_file *f, char **model_config);
graft_status h5_metadata_here(const char *path, const char *name, char **text);

#endif
