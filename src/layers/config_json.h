/*
 * What the layer kinds share to write their Keras config options (the
 * get_config op): Keras's value forms for tuples, floats and initializers.
 * Each helper returns false when cJSON runs out of memory; a get_config ends
 * with graft_config_done(l, ok).
 */
#ifndef GRAFT_LAYERS_CONFIG_JSON_H
#define GRAFT_LAYERS_CONFIG_JSON_H

#include "layers/layer.h"

#include <cjson/cJSON.h>

/* "key": [a, b], as Keras writes its 2-tuples (kernel_size, strides, ...). */
bool graft_config_add_pair(cJSON *o, const char *key, int a, int b);

/* "key": v as the shortest decimal that reads back as the same float, so
 * 0.99f is written 0.99 as Keras writes the Python float it was given. */
bool graft_config_add_float(cJSON *o, const char *key, float v);

/* "key": {"class_name": cls, "config": {...}}, with GlorotUniform's
 * {"seed": null} (graft draws from its own seeded RNG, not Keras's seed). */
bool graft_config_add_initializer(cJSON *o, const char *key, const char *cls);

/* "key": null for each of the NULL-terminated keys: the regularizers and
 * constraints graft does not have. GRAFT_CONFIG_NULLS(o, "a", "b") is the
 * call with the list written out. */
bool graft_config_add_nulls(cJSON *o, const char *const *keys);
#define GRAFT_CONFIG_NULLS(o, ...)                                                                 \
    graft_config_add_nulls((o), (const char *const[]){__VA_ARGS__, NULL})

/* "padding": "valid" or "same". */
bool graft_config_add_padding(cJSON *o, graft_padding p);

/* The fields Conv2D and DepthwiseConv2D share, from kernel_size to use_bias. */
bool graft_config_add_conv_common(cJSON *o, const int kernel[2], const int strides[2],
                                  graft_padding padding, graft_activation activation, int no_bias);

/* GRAFT_OK, or an out-of-memory failure naming the layer. */
graft_status graft_config_done(const graft_layer *l, bool ok);

#endif
