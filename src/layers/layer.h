/*
 * What a layer kind is: its struct, the tensors its passes see, its ops
 * table, and the few entry points the plan's fused steps call. A layer file
 * includes this header (and core/, kernels/), never the graph or the plan:
 * it sees only its own weights and the tensors a step hands it.
 */
#ifndef GRAFT_LAYERS_LAYER_H
#define GRAFT_LAYERS_LAYER_H

#include "core/core.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

struct cJSON;
struct graft_conv_geom;
typedef struct graft_config_in graft_config_in; /* layers/config_json.h */

#define GRAFT_MAX_WEIGHTS 4

typedef struct {
    char name[32];     /* "kernel", "bias", "gamma", ... */
    graft_shape shape;
    bool trainable;    /* false for BatchNormalization's moving statistics */
    enum { GRAFT_INIT_ZEROS, GRAFT_INIT_ONES, GRAFT_INIT_GLOROT_UNIFORM, GRAFT_INIT_CONSTANT } init;
    float init_value;  /* GRAFT_INIT_CONSTANT's value */
    size_t offset;     /* into the model's weight array */
    float *data;       /* view into graft_model.weights */
    float *grad;       /* view into graft_model.grads (NULL until compiled) */
} graft_weight;

/* Data parallelism with synchronized BatchNormalization (dist/): sums n
 * doubles over the ranks, in place. `empty`: this rank has no sample in the
 * batch; a placeholder runs through and must add nothing. */
typedef struct {
    void (*sum)(void *ctx, double *v, int n);
    void *ctx;
    bool empty;
} graft_allsum;

/* Data parallelism with a kernel split by rows among the ranks (dist/,
 * one machine's shared memory): rank r keeps, differentiates and steps rows
 * [graft_split_row(I, R, r), graft_split_row(I, R, r + 1)) of a layer's
 * (I, U) kernel, and the ranks trade the batch's inputs, partial outputs
 * and gradients through buffers every rank can read, instead of each rank
 * streaming the whole kernel three times a step and summing its gradient.
 * `rows` says whether layer l's kernel is split; `buffer` is rank q's
 * buffer `what` (GRAFT_SPLIT_*) of layer l, which only q writes; `sync`
 * publishes this rank's writes, waits for every rank's (a barrier) and
 * fills count, first and total from every rank's n (its samples in the
 * step). `empty`: this rank runs a placeholder sample and gives no rows. */
enum {
    GRAFT_SPLIT_INPUT,   /* the rank's samples' inputs (n x I) */
    GRAFT_SPLIT_COLUMNS, /* the batch's inputs, the rank's columns (total x rows; read by the rank alone) */
    GRAFT_SPLIT_PARTIAL, /* the batch's outputs over the rank's rows (total x U) */
    GRAFT_SPLIT_DOUT,    /* the rank's samples' output gradients (n x U) */
    GRAFT_SPLIT_DOUTS,   /* the batch's output gradients (total x U; read by the rank alone) */
    GRAFT_SPLIT_DIN,     /* the batch's input gradients, the rank's columns (total x rows) */
    GRAFT_SPLIT_BUFFERS
};
typedef struct graft_row_split {
    int ranks, rank;
    const int *count, *first; /* each rank's samples and the first one's place in the batch */
    int total;
    bool empty;
    bool (*rows)(const struct graft_row_split *s, const graft_layer *l);
    float *(*buffer)(const struct graft_row_split *s, const graft_layer *l, int what, int q);
    void (*sync)(struct graft_row_split *s, int n);
    void *ctx;
} graft_row_split;

/* The first kernel row of rank r's part of I rows split among R ranks. */
static inline int graft_split_row(int I, int R, int r) { return (int)((long)I * r / R); }

/* Training noise (Dropout, SpatialDropout2D, GaussianNoise, GaussianDropout).
 * Each sample draws from its own counter-based stream (graft_noise_key: the
 * batch's key, the sample's id and the layer), so that its noise is the same
 * whichever rank or thread computes it and wherever it sits in a rank's
 * share of the batch: N ranks draw what one process draws. fit takes one key
 * per global batch from the model's RNG and gives each sample's id in the
 * source (or its position in the global batch); any other training forward
 * takes a key of its own and numbers its samples from 0. */
typedef struct {
    uint64_t key;
    const long *ids; /* one per sample; NULL: base + i */
    long base;
} graft_noise;

/* The stream of sample i of the batch in layer `layer`. */
static inline uint64_t graft_noise_key(const graft_noise *z, int layer, int i)
{
    uint64_t id = z->ids ? (uint64_t)z->ids[i] : (uint64_t)(z->base + i);
    return graft_rng_at(graft_rng_at(z->key, (uint64_t)layer), id);
}

/* What a layer's forward pass sees. */
typedef struct {
    int n;                 /* samples in the batch */
    bool training;         /* fit (true) or predict/evaluate (false) */
    const float *const *in; /* one pointer per input, n * input size floats each */
    float *out;            /* n * output size floats */
    float *aux;            /* the layer's own buffer kept until backward (aux_floats) */
    float *scratch;        /* shared scratch, valid during this call only */
    const graft_noise *noise; /* training only */
    /* Convolutions: what their output pass also applies (a folded
     * BatchNormalization and clamp, given by a fused step), or NULL. */
    const graft_epilogue *epi;
    const graft_allsum *allsum; /* NULL: the batch is all here */
    graft_row_split *split;     /* NULL: every rank holds whole kernels */
    /* The promise in force that the model's weights are constant
     * (graft_model_set_weights_constant), 0 for none: a form of a kernel
     * kept from an earlier call under the same promise need not be checked
     * against the kernel again. */
    uint64_t promise;
} graft_fwd;

/* What a layer's backward pass sees. */
typedef struct {
    int n;
    bool training;
    const float *const *in; /* the inputs of the forward pass */
    const float *out;       /* the forward output */
    float *dout;            /* dL/d(out); the layer may overwrite it (nobody reads it after) */
    float *const *din;      /* dL/d(input i), NULL where not needed */
    const bool *din_accumulate; /* add into din[i] (a second consumer) instead of writing */
    bool param_grads;       /* write grads of the trainable weights */
    float *aux;
    float *scratch;
    const graft_allsum *allsum; /* as in graft_fwd */
    graft_row_split *split;     /* as in graft_fwd */
} graft_bwd;

typedef struct graft_layer_ops {
    const char *class_name; /* Keras class_name */
    /* Checks the input shapes, sets out_shape and declares the weights
     * (graft_layer_add_weight). Fails with a message naming the layer. */
    graft_status (*build)(graft_layer *l, const graft_shape *in_shapes);
    void (*forward)(graft_layer *l, const graft_fwd *f);
    void (*backward)(graft_layer *l, const graft_bwd *b);
    /* Optional sizes, in floats, for a batch of n. */
    size_t (*aux_floats)(const graft_layer *l, int n);
    size_t (*scratch_floats)(const graft_layer *l, int n);
    /* Optional: true when the forward pass differs between training and inference
     * or uses randomness (so its output can not be cached). */
    bool (*stochastic)(const graft_layer *l);
    /* Optional: true when the forward pass in this mode hands its input on
     * unchanged (Dropout and the noise layers at inference; Flatten and
     * Reshape, whose memory order is their input's): where nothing needs
     * its gradient the plan gives the output its input's buffer and runs
     * nothing. */
    bool (*passes_through)(const graft_layer *l, bool training);
    /* Optional: adds the layer's Keras config options (beyond name, trainable
     * and dtype) to `config`, a cJSON object, for saving Keras model files. */
    graft_status (*get_config)(const graft_layer *l, struct cJSON *config);
    /* Optional: adds the layer its Keras `config` describes to c->m, fed by
     * c->in, reading the options with layers/config_json.h's getters (which
     * name the file, layer and class when one is refused). *out NULL with
     * GRAFT_OK: the constructor's error is in the model. */
    graft_status (*from_config)(const graft_config_in *c, const struct cJSON *config,
                                graft_layer **out);
    /* Optional: the training passes can run with the first weight's rows
     * split among the ranks (graft_row_split). */
    bool (*splits_rows)(const graft_layer *l);
    /* A merge: takes two or more inputs (else exactly one). */
    bool merge;
    void (*destroy)(graft_layer *l);
} graft_layer_ops;

/* ------------------------------------------------------------- the kinds (layers/kinds.c) */

/* The kind with this Keras class_name, or NULL. */
const graft_layer_ops *graft_layer_kind(const char *class_name);
/* The kinds' class names, ", "-separated in the table's order, into buf (cut at cap). */
void graft_layer_kind_names(char *buf, size_t cap);

struct graft_layer {
    const graft_layer_ops *ops;
    graft_model *model;    /* the graph that holds it (for the graph's checks; layers never read it) */
    char name[GRAFT_NAME_MAX];
    int index;
    bool trainable;        /* the user's flag (Keras `layer.trainable`) */
    bool trains;           /* the flag in effect: fixed by compile, as in Keras */
    int n_inputs;
    int *inputs;           /* layer indices */
    graft_shape out_shape;
    int n_weights;
    graft_weight weights[GRAFT_MAX_WEIGHTS];
    void *cfg;             /* the layer kind's own config struct */
    /* Bound by the plan (exec/plan.c) for the current batch capacity: */
    bool requires_grad;    /* its output's gradient is needed in backward */
    float *out, *dout, *aux; /* NULL where the plan gives it none (computed inside a fused step) */
};

/* Whether backward writes gradients of the layer's weights (it trains and has trainable ones). */
static inline bool graft_layer_trains_weights(const graft_layer *l)
{
    if (!l->trains) return false;
    for (int k = 0; k < l->n_weights; k++)
        if (l->weights[k].trainable) return true;
    return false;
}

/* ------------------------------------------------------------- registering (graph/build.c) */

/* Declares a weight during build. */
graft_status graft_layer_add_weight(graft_layer *l, const char *name, graft_shape shape,
                                    bool trainable, int init);

/* Adds a layer of kind `ops` with config `cfg` (copied, cfg_size bytes) and inputs.
 * Name NULL: Keras's automatic name from `auto_prefix`. Records errors in the model. */
graft_layer *graft_model_add_layer(graft_model *m, const graft_layer_ops *ops,
                                   const char *name, const char *auto_prefix, const void *cfg,
                                   size_t cfg_size, int n_inputs, graft_layer *const *inputs);

/* The same for a one-input layer; in NULL means the layer added last. */
graft_layer *graft_model_add_unary(graft_model *m, const graft_layer_ops *ops, const char *name,
                                   const char *auto_prefix, const void *cfg, size_t cfg_size,
                                   graft_layer *in);

/* Sticky model error from a layer constructor. */
void graft_model_set_error(graft_model *m, graft_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------- for the planner's fused steps */

/* BatchNormalization's inference transform y = (x - mean) * scale + shift. */
bool graft_batch_norm_inference(const graft_layer *l, float *mean, float *scale, float *shift);
/* A ReLU layer (no slope, no threshold) or Activation relu/relu6 as a clamp. */
bool graft_relu_clamp(const graft_layer *l, float *lo, float *hi);
bool graft_activation_clamp(const graft_layer *l, float *lo, float *hi);
/* An Activation layer's function when it is element-wise (not linear or softmax). */
bool graft_activation_elementwise(const graft_layer *l, graft_activation *a);

/* A Conv2D with activation='relu'. */
bool graft_conv2d_has_relu(const graft_layer *l);
/* A Conv2D that kernels/conv_pool.c can compute together with a 2x2 max
 * pool reading it (ReLU, stride 1, few input channels): its geometry and
 * filters (either may be NULL). */
bool graft_conv2d_pool_geom(const graft_layer *l, struct graft_conv_geom *g, int *filters);
/* A Conv2D with activation='relu' that runs forward by Winograd
 * (kernels/winograd.c) in a pass of n images. */
bool graft_conv2d_winograd_relu(const graft_layer *l, bool training, int n);
/* How a Conv2D's forward pass runs over n images, for GRAFT_PROFILE (NULL:
 * not a Conv2D). In training passes per layer geometry only, never per batch:
 * a frozen layer's bits, which the feature cache keeps, do not depend on the
 * batch a sample comes in. Inference takes direct convolution where a call
 * has too few Winograd tiles (graft_winograd_pays). */
const char *graft_conv2d_algorithm(const graft_layer *l, bool training, int n);
/* Such a convolution's forward pass with the 2x2 max pool above it taken in
 * its output transform: `pooled` and `codes` (NULL in inference) are the
 * pool's output and code bytes (graft_winograd_forward_pool); f->out is unused. */
void graft_conv2d_forward_pool(graft_layer *l, const graft_fwd *f, float *pooled, uint8_t *codes);
/* Backward of a ReLU Conv2D whose b->dout already holds dL/d(pre-activation)
 * and whose bias gradient is already written (by the max pool above it). */
void graft_conv2d_backward_dz(graft_layer *l, const graft_bwd *b);

/* A Conv2D's or DepthwiseConv2D's geometry, filters (channels times depth
 * multiplier), kernel, bias (NULL: none) and activation, for steps that
 * compute it with kernels of their own; false for other layers. */
bool graft_conv2d_args(const graft_layer *l, struct graft_conv_geom *g, int *filters,
                       const float **kernel, const float **bias, graft_activation *act);
/* A 1x1 Conv2D's kernel in graft_pw_gemm's panels for `wide`
 * (graft_pw_pack), kept between calls like the Winograd transform and made
 * again when the kernel's bytes change: for the fused steps of depth-first
 * runs, which take a few images at a time. `promise`: the model's promise
 * in force that its weights are constant (graft_model_set_weights_constant,
 * 0 for none): a copy checked once under it is not checked again. NULL: not
 * 1x1, or no memory. */
const float *graft_conv2d_packed_kernel(graft_layer *l, bool wide, uint64_t promise);
/* A Multiply of a (H, W, C) map by a (1, 1, C) gate, squeeze-and-excitation's
 * scaling (y = map * gate, channel by channel): which input is the gate;
 * false for other layers. */
bool graft_multiply_gate(const graft_layer *l, int *gate);
bool graft_depthwise_conv2d_args(const graft_layer *l, struct graft_conv_geom *g, int *filters,
                                 const float **kernel, const float **bias, graft_activation *act);
/* A SeparableConv2D's depthwise geometry and weights (dw_kernel (kh, kw, C),
 * pw_kernel (C, filters), bias or NULL) where its depthwise stage is
 * kernels/depthwise.c's (depth multiplier 1, no dilation); else false. */
bool graft_separable_conv2d_args(const graft_layer *l, struct graft_conv_geom *g, int *filters,
                                 const float **dw_kernel, const float **pw_kernel,
                                 const float **bias, graft_activation *act);
/* A Concatenate of (H, W, C) maps along their channels (the last axis),
 * each pixel's row the inputs' rows in turn; false for other layers. */
bool graft_concatenate_channels(const graft_layer *l);
/* A ZeroPadding2D's pads; false for other layers. */
bool graft_zero_padding2d_pads(const graft_layer *l, int *top, int *bottom, int *left, int *right);

/* A MaxPooling2D with 2x2 windows, strides 2 and 'valid' padding. */
bool graft_max_pool_2x2(const graft_layer *l);
/* A MaxPooling2D's geometry (input, window, strides, TensorFlow padding,
 * output) in a convolution's terms; false for other layers. */
struct graft_conv_geom;
bool graft_max_pool_geom(const graft_layer *l, struct graft_conv_geom *g);
/* An AveragePooling2D with 2x2 windows, strides 2 and 'valid' padding: each
 * output the sum of its window's four inputs in row order, from 0, times
 * 1/4 (avg_forward's arithmetic). */
bool graft_avg_pool_2x2(const graft_layer *l);
/* A MaxPooling2D whose input is a ZeroPadding2D's output with these pads
 * (top, bottom, left, right) around a non-empty inner part. */
bool graft_max_pool_over_padding(const graft_layer *l, const int pad[4]);
/* Its inference forward from the inner part x (n samples) alone: the
 * padding's cells read as zeros; the bits of the two layers apart. */
void graft_max_pool_forward_padded(const graft_layer *l, const int pad[4], int n, const float *x,
                                   float *out);
/* Floats for one code byte per output of a batch of n (a fused pool's aux). */
size_t graft_max_pool_code_floats(const graft_layer *l, int n);
/* Scratch for graft_max_pool_backward_codes. */
size_t graft_max_pool_codes_scratch_floats(const graft_layer *l);
/* A max pool's backward from the code bytes in b->aux (written by a fused
 * convolution's pass): dL/d(pre-activation) of the ReLU convolution below
 * into b->din[0], and with dbias that convolution's bias gradient. */
void graft_max_pool_backward_codes(const graft_layer *l, const graft_bwd *b, float *dbias);
/* A max pool's backward that also applies the derivative of the ReLU
 * convolution below it (whose output it pools): b->din[0] gets
 * dL/d(pre-activation), and with dbias the convolution's bias gradient. */
void graft_max_pool_backward_relu(const graft_layer *l, const graft_bwd *b, float *dbias);

#endif
