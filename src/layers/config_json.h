/*
 * What the layer kinds share to read and write their Keras config options
 * (the from_config and get_config ops): Keras's value forms for tuples,
 * floats, paddings, activations and initializers.
 * Writing: each helper returns false when cJSON runs out of memory; a
 * get_config ends with graft_config_done(l, ok).
 * Reading: each getter leaves Keras's default when the key is absent or
 * null, and fails with a message naming the file, the layer and its class.
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
/* ((v[0], v[1]), (v[2], v[3])) and data_format channels_last, as
 * ZeroPadding2D/Cropping2D write their amounts. */
bool graft_config_add_sides(cJSON *o, const char *key, const int v[4]);

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
                                  graft_padding padding, const int dilation[2], int groups,
                                  graft_activation activation, int no_bias);

/* GRAFT_OK, or an out-of-memory failure naming the layer. */
graft_status graft_config_done(const graft_layer *l, bool ok);

/* ------------------------------------------------------------- reading */

/* The layer being read: where it comes from and what feeds it. */
struct graft_config_in {
    graft_model *m;
    const char *path; /* the file, for messages */
    const char *name; /* the layer's name */
    const char *cls;  /* its class_name */
    int n_in;
    graft_layer *const *in;
};

/* "path: layer 'name' (cls): message"; returns s. */
graft_status graft_config_refuse(const graft_config_in *c, graft_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *graft_config_str(const cJSON *o, const char *key); /* NULL unless a string */
bool graft_config_present(const cJSON *o, const char *key);    /* there and not null */
/* An integral number in [lo, 2^24]. */
bool graft_config_small_int(const cJSON *v, int lo, int *out);

graft_status graft_config_bool(const graft_config_in *c, const cJSON *cfg, const char *key,
                               bool dflt, bool *out);
graft_status graft_config_num(const graft_config_in *c, const cJSON *cfg, const char *key,
                              double dflt, double *out);
/* The same as a float, refused when it does not fit one. */
graft_status graft_config_float(const graft_config_in *c, const cJSON *cfg, const char *key,
                                float dflt, float *out);
graft_status graft_config_int(const graft_config_in *c, const cJSON *cfg, const char *key,
                              int dflt, int lo, int *out);
/* A Keras 2-tuple: a positive int or a list of two (kernel_size, strides, pool_size). */
graft_status graft_config_pair(const graft_config_in *c, const cJSON *cfg, const char *key,
                               int dflt, int out[2]);
/* Keras's ZeroPadding2D/Cropping2D amounts: an int, a pair (symmetric per
 * axis) or ((top, bottom), (left, right)), into v = {top, bottom, left,
 * right}; absent or null: dflt on every side. */
graft_status graft_config_sides(const graft_config_in *c, const cJSON *cfg, const char *key,
                                int dflt, int v[4]);
/* A convolution's window: kernel_size (required), strides and
 * dilation_rate (default 1) and padding, refusing what Keras refuses:
 * strides and dilation_rate both above 1. */
graft_status graft_config_conv_window(const graft_config_in *c, const cJSON *cfg, int kernel[2],
                                      int strides[2], graft_padding *padding, int dilation[2]);
/* "padding": "valid" (the default) or "same". */
graft_status graft_config_padding(const graft_config_in *c, const cJSON *cfg,
                                  graft_padding *out);
/* An activation: Keras 2's "relu", or Keras 3's {"class_name": "function", "config": "relu"};
 * absent or null is linear. */
graft_status graft_config_activation(const graft_config_in *c, const cJSON *cfg,
                                     const char *key, graft_activation *out);
/* A layer's "axis" (an int, or a list of one), as an index into the
 * per-sample shape of `rank` dimensions (Keras counts the batch as axis 0;
 * negative counts from the end). */
graft_status graft_config_axis(const graft_config_in *c, const cJSON *cfg, const char *key,
                               int dflt, int rank, int *out);
/* Refuses a key that is present when graft does not implement it. */
graft_status graft_config_absent(const graft_config_in *c, const cJSON *cfg, const char *key);

#endif
