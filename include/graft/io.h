/*
 * graft/io.h: Model files: Keras HDF5 (weights only or whole models), TF.js models.
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_IO_H
#define GRAFT_API_IO_H

#include "graft/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ model files (src/io) */
typedef struct {
    int by_name;       /* match layers by name (else by order of weighted layers) */
    int skip_mismatch; /* skip layers absent from the model or of another shape */
    int *layers_loaded; /* optional out: how many model layers received weights */
} graft_load_opts;

/* Weights from a Keras HDF5 file (weights-only or full model) or a TF.js model.json. */
graft_status graft_model_load_weights(graft_model *m, const char *path, const graft_load_opts *opts);
/* Keras HDF5, weights only (`model.save_weights`). */
graft_status graft_model_save_weights(const graft_model *m, const char *path);
/* Keras HDF5, full model: model_config JSON + model_weights (`model.save`). */
graft_status graft_model_save(const graft_model *m, const char *path);
/* The same with an application's own text as one more root attribute
 * (`name`: not one of Keras's; graft's tool keeps a run's settings under
 * "graft_config"); Keras and TF.js's converter ignore it. */
graft_status graft_model_save_with_metadata(const graft_model *m, const char *path,
                                            const char *name, const char *text);
/* That attribute of an HDF5 file read back (*text malloc'd): GRAFT_ENOTFOUND
 * when the file has none. Opened as every model file is (no FIFO waits, no
 * external links followed). */
graft_status graft_h5_metadata_read(const char *path, const char *name, char **text);
/* The weights a model file holds (a Keras .h5, full or weights-only, or a
 * TF.js model.json), read with graft_model_load_weights's checks but without
 * their data: fn(layer, weight as the file names it, rank, dims, ctx) for
 * each, in file order; *n_listed (may be NULL): the layers the file names,
 * with weights or without. */
typedef void (*graft_weight_fn)(const char *layer, const char *weight, int rank,
                                const long long *dims, void *ctx);
graft_status graft_weights_file_list(const char *path, graft_weight_fn fn, void *ctx, int *n_listed);
/* A whole model (graph and weights) from a full Keras HDF5 file or a TF.js model.json. */
graft_status graft_model_load(const char *path, graft_model **out);
/* Every reader of .h5 files here runs libhdf5 in a child process (fork()ed, and
 * killed and reaped before the call returns): a file libhdf5 loops on fails
 * after GRAFT_H5_TIMEOUT seconds without progress (default 60), a crash in
 * libhdf5 is an error naming the file. GRAFT_H5_CHILD=0 reads in-process. */

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_IO_H */
