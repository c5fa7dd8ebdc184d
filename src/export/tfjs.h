/* What the TF.js and web-page exports share: the pieces of a layers model
 * and crash-safe writing of the files. */
#ifndef GRAFT_EXPORT_TFJS_H
#define GRAFT_EXPORT_TFJS_H

#include "internal.h"

#include <cjson/cJSON.h>

/* The Keras model config (modelTopology), the weight specs (the manifest's
 * "weights") and their bytes, quantized as o asks; the caller frees all three. */
graft_status export_tfjs_parts(const graft_model *m, const graft_tfjs_opts *o, cJSON **topology,
                               cJSON **specs, unsigned char **data, size_t *n_data);
/* Crash-safe writes (graft_file_write_atomic) of bytes and of JSON text. */
graft_status export_write_bytes(const char *path, const void *data, size_t n);
graft_status export_write_json(const char *path, const cJSON *json);
/* The folder, made when absent. */
graft_status export_make_dir(const char *dir);

#endif
