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
} zoo_spec;

/* Each adds its layers after the InputLayer `in`; errors are sticky in m. */
void graft_zoo_mobilenet(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_mobilenet_v2(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_resnet50(graft_model *m, graft_layer *in, const zoo_spec *s);
void graft_zoo_vgg16(graft_model *m, graft_layer *in, const zoo_spec *s);

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
