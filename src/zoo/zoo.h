/* What the zoo's files share: each architecture adds its layers to a model
 * that zoo.c has created with Keras's name and an InputLayer. */
#ifndef GRAFT_ZOO_H
#define GRAFT_ZOO_H

#include "internal.h"

#include <nettle/md5.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha2.h>

/* A cfg with every default filled in and checked by zoo.c. */
typedef struct {
    graft_zoo_cfg cfg;
    double alpha; /* cfg.alpha as the decimal the user wrote (0.35, not 0.3499999940) */
    const struct zoo_entry *arch;
} zoo_spec;

typedef void (*zoo_builder)(graft_model *m, graft_layer *in, const zoo_spec *s);

/* One row of the architecture table (zoo.c): the public facts, the builder,
 * the family's arguments, and Keras Applications' weight files. */
typedef struct zoo_entry {
    graft_zoo_arch pub;
    const char *model_name; /* Keras's Model name ("resnet50v2"); "" where it depends on alpha */
    zoo_builder build;
    int variant;            /* the builder's own: depth, size or width index */
    unsigned args;          /* ZOO_ARG_*: the optional arguments it takes */
    /* Weights: storage.googleapis.com/tensorflow/keras-applications/<dir>/<file>;
     * NULL where zoo/weights.c works the names out itself. */
    const char *weights_dir, *top_file, *notop_file;
    graft_hash_kind hash_kind;
    const char *top_hash, *notop_hash;
    const char *mark;       /* a layer name only this architecture has (detect_arch) */
} zoo_entry;

enum {
    ZOO_ARG_ALPHA = 1,
    ZOO_ARG_DEPTH_MULTIPLIER = 2,
    ZOO_ARG_MINIMALISTIC = 4,
};

/* The table row for any spelling of a name, or NULL. */
const zoo_entry *graft_zoo_entry(const char *name);

/* Each adds its layers after the InputLayer `in`; errors are sticky in m. */
void graft_zoo_mobilenet(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_mobilenet_v2(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_resnet(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_resnet_v2(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_vgg(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_densenet(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_inception_v3(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_xception(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_efficientnet(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_mobilenet_v3(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_convnext(graft_model *m, graft_layer *in, const zoo_spec *s);

/* Reorders m's layers as Keras's Functional model lists them (model.layers):
 * by decreasing depth below the output, ties in the order a depth-first walk
 * from the output meets them. Builders add layers in any order that runs. */
graft_status graft_zoo_keras_order(graft_model *m);

/* Keras's `pooling` argument without top: global average or max pooling. */
graft_layer *graft_zoo_pooling(graft_model *m, graft_layer *x, graft_pooling p,
                               const char *avg_name, const char *max_name);

/* MD5 (RFC 1321) and SHA-256 (FIPS 180-4), streaming, by Nettle: its
 * contexts are plain structs, so a hash lives on the stack, cannot fail to
 * start and needs no freeing when a caller abandons it on an error path. */
typedef struct {
    const struct nettle_hash *alg;
    union {
        struct md5_ctx md5;
        struct sha256_ctx sha256;
    } ctx;
} zoo_hash;

void graft_zoo_hash_init(zoo_hash *h, graft_hash_kind kind);
void graft_zoo_hash_update(zoo_hash *h, const void *data, size_t len);
void graft_zoo_hash_final(zoo_hash *h, char hex[65]);

#endif
