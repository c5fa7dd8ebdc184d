/*
 * What the model-file readers share: a format-neutral listing of the weights
 * in a file (layer by layer, in file order), the one routine that matches it
 * to a model with Keras's rules, and the Keras model-config JSON builder.
 */
#ifndef GRAFT_IO_H
#define GRAFT_IO_H

#include "internal.h"

#include <cjson/cJSON.h>

#define IO_MAX_RANK 8
/* No single weight tensor of a supported layer comes near this (VGG16's fc1
 * has 103M floats); anything larger is a corrupt header, refused before any
 * allocation. */
#define IO_MAX_TENSOR_FLOATS ((size_t)1 << 31)

typedef struct {
    char name[256];      /* as the file spells it: "conv1/kernel:0" */
    char short_name[64]; /* "kernel" */
    int rank;
    long long dim[IO_MAX_RANK];
    size_t count;        /* floats */
    size_t handle;       /* where the reader finds the data */
} io_weight;

typedef struct {
    char name[GRAFT_NAME_MAX];
    int n, cap;
    io_weight *w;
} io_layer;

typedef struct io_file io_file;
struct io_file {
    const char *path;
    /* Layer order in the file carries no meaning (TF.js manifests are sorted
     * by name): loading always matches names, and every layer must match. */
    bool by_name_only;
    int n_layers, cap;
    io_layer *layers;
    int n_listed; /* the layers the file names, with weights or without */
    void *ctx;
    /* Reads w->count float32 values of `w` into dst. */
    graft_status (*read)(io_file *f, const io_weight *w, float *dst);
    void (*close)(io_file *f); /* releases ctx */
    /* Called (when set) as the reader gets on with a long listing. */
    void (*progress)(io_file *f);
};

void io_file_free(io_file *f);

/*
 * Adds one layer group of a file. A group whose weights belong to several
 * layers (a nested model saved as one layer: "conv1/kernel:0",
 * "conv1_bn/gamma:0", ...) is split into one entry per owning layer, in order
 * of first appearance, so nested models load into their flattened form.
 * group_name "" means "name each entry after the owner in its weight names".
 */
graft_status io_file_add_group(io_file *f, const char *group_name, const io_weight *w, int n);

/* Fills name/short_name of a weight from its full name; checks rank and size. */
graft_status io_weight_init(io_weight *w, const char *path, const char *full_name, int rank,
                            const long long *dims);

/* Copies the file's weights into the model (Keras's load_weights rules). */
graft_status io_assign(graft_model *m, io_file *f, const graft_load_opts *opts);

/* Readers behind graft_model_load_weights / graft_model_load. */
graft_status io_h5_list(const char *path, io_file *f, char **model_config);
graft_status io_tfjs_open(const char *path, io_file *f, cJSON **topology);

/* Keras model config ({"class_name", "config"}) to a model, and back. */
graft_status io_model_from_config(const cJSON *config, const char *path, graft_model **out);
graft_status io_model_to_config(const graft_model *m, cJSON **out);

/* "path" ends with ".json" (a TF.js model.json). */
bool io_is_json_path(const char *path);

#endif
