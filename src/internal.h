/*
 * What the library's modules share and users do not see: the layer struct
 * and its ops table, the model graph, error reporting helpers.
 */
#ifndef GRAFT_INTERNAL_H
#define GRAFT_INTERNAL_H

#include "graft.h"
#include "core/names.h"

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>

struct cJSON;

/* ------------------------------------------------------------- errors */

/* Records a message for graft_last_error() and returns `s`. */
graft_status graft_fail(graft_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#ifdef __clang_analyzer__
/* The analyzer sees one file at a time and cannot know that graft_fail returns
 * `s`, so it would follow every `return graft_fail(GRAFT_E..., ...)` error path
 * on as if it had succeeded. Spelling out the return value prunes those paths. */
#define graft_fail(s, ...) (graft_fail((s), __VA_ARGS__), (s))
#endif
void graft_clear_error(void);

/* Overflow-checked size arithmetic: false when a*b does not fit. */
static inline bool graft_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* 64-byte aligned allocation (AVX loads, no false sharing); NULL on failure. */
void *graft_alloc(size_t bytes);
void *graft_calloc(size_t bytes);
void graft_free(void *p);

/* The index of the first NaN or Inf among the n floats at p (any alignment),
 * or n when all are finite; "NaN", "Inf" or "-Inf" for the float at index i. */
size_t graft_first_nonfinite(const void *p, size_t n);
const char *graft_nonfinite_name(const void *p, size_t i);

/* ------------------------------------------------------------- layers */

#define GRAFT_MAX_WEIGHTS 4

/* Far beyond any real model (Keras Applications' largest have about 1000
 * layers and 350M parameters), and refused before allocating: a hostile
 * file must not make graft allocate gigabytes or run for hours. */
#define GRAFT_MAX_LAYERS 100000
#define GRAFT_MAX_PARAMS ((size_t)1 << 31)       /* 8 GiB of float32 weights */
#define GRAFT_MAX_LAYER_OUTPUT ((size_t)1 << 31) /* floats per sample */

typedef struct {
    char name[32];     /* "kernel", "bias", "gamma", ... */
    graft_shape shape;
    bool trainable;    /* false for BatchNormalization's moving statistics */
    enum { GRAFT_INIT_ZEROS, GRAFT_INIT_ONES, GRAFT_INIT_GLOROT_UNIFORM } init;
    size_t offset;     /* into the model's weight array */
    float *data;       /* view into graft_model.weights */
    float *grad;       /* view into graft_model.grads (NULL until compiled) */
} graft_weight;

/* What a layer's forward pass sees. */
typedef struct {
    int n;                 /* samples in the batch */
    bool training;         /* fit (true) or predict/evaluate (false) */
    const float *const *in; /* one pointer per input, n * input size floats each */
    float *out;            /* n * output size floats */
    float *aux;            /* the layer's own buffer kept until backward (aux_floats) */
    float *scratch;        /* shared scratch, valid during this call only */
    graft_rng *rng;
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
    /* Optional: adds the layer's Keras config options (beyond name, trainable
     * and dtype) to `config`, a cJSON object, for saving Keras model files. */
    graft_status (*get_config)(const graft_layer *l, struct cJSON *config);
    void (*destroy)(graft_layer *l);
} graft_layer_ops;

/* Inference-time fusion: a BatchNormalization in inference mode and a ReLU
 * that follow a convolution run in the convolution's output pass instead of
 * as passes of their own (set by the model's planner). */
typedef struct graft_epilogue {
    const graft_layer *bn; /* folded BatchNormalization, or NULL */
    bool clamp;            /* then clamp to [lo, hi] */
    float lo, hi;
} graft_epilogue;

struct graft_layer {
    const graft_layer_ops *ops;
    graft_model *model;
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
    /* Runtime state owned by the model. */
    bool requires_grad;    /* its output's gradient is needed in backward */
    graft_epilogue epi;    /* what this layer's output pass also applies */
    int fused_into;        /* -1, or the layer whose epilogue computes this one */
    /* Training: a max pool that is the sole reader of a ReLU convolution
     * applies the ReLU's derivative in its own backward pass (the pooled
     * value is the convolution's output at the cell it routes to) and sums
     * the convolution's bias gradient over its own, 4x smaller, gradient:
     * the convolution's backward then makes no pass over its whole output. */
    bool masks_relu_below; /* the pool */
    bool dout_relu_applied; /* the convolution: dout has the ReLU's derivative, and the
                               bias gradient is written when the weights train */
    /* A ReLU Conv2D over few channels (the image) read only by a 2x2 max pool,
     * where nothing needs its input's gradient: the pool computes both in one
     * pass (kernels/conv_pool.c), forward and backward; the convolution's
     * output and its gradient have no buffers. */
    bool computed_by_pool; /* the convolution: skipped by the passes */
    bool computes_conv;    /* the pool */
    /* A ReLU Conv2D on the Winograd path whose sole reader is the 2x2 max
     * pool right after it (the lesson's second convolution): its output
     * transform pools each 4x4 tile while it is in cache, writing the pool's
     * output and one code byte per output into the pool's aux (as
     * computes_conv does); the pool's forward is skipped and the
     * convolution's output has no buffer. In backward the pool scatters its
     * gradient by the codes (the ReLU's derivative included) into the
     * convolution's dout, whose own Winograd backward then runs as usual. */
    bool pools_in_winograd; /* the convolution */
    bool pooled_by_conv;    /* the pool: skipped by the forward pass */
    float *out, *dout, *aux;
};

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

/* Common helpers for layer kinds. */
void graft_activation_forward(graft_activation a, float *x, size_t rows, size_t cols);
/* dx = dy * act'(y) given the activation's output y (in place on dy allowed). */
void graft_activation_backward(graft_activation a, const float *y, const float *dy, float *dx,
                               size_t rows, size_t cols, bool accumulate);
/* The epilogue over n rows of C channels, in place; true when there is one. */
bool graft_epilogue_apply(const graft_epilogue *e, float *out, size_t rows, int C);
/* The same in two steps, for kernels that apply it row by row while the
 * output is in cache: the per-channel transform (true when a BN is folded),
 * then rows of it (C <= GRAFT_EPILOGUE_MAX_C). */
bool graft_epilogue_params(const graft_epilogue *e, float *mean, float *scale, float *shift);
void graft_epilogue_rows(const graft_epilogue *e, bool bn, const float *mean, const float *scale,
                         const float *shift, float *out, size_t rows, int C);
/* BatchNormalization's inference transform y = (x - mean) * scale + shift. */
bool graft_batch_norm_inference(const graft_layer *l, float *mean, float *scale, float *shift);
/* A ReLU layer (no slope, no threshold) or Activation relu/relu6 as a clamp. */
bool graft_relu_clamp(const graft_layer *l, float *lo, float *hi);
/* A Conv2D with activation='relu'. */
bool graft_conv2d_has_relu(const graft_layer *l);
/* A Conv2D that kernels/conv_pool.c can compute together with a 2x2 max
 * pool reading it (ReLU, stride 1, few input channels): its geometry and
 * filters (either may be NULL). */
struct graft_conv_geom;
bool graft_conv2d_pool_geom(const graft_layer *l, struct graft_conv_geom *g, int *filters);
/* A Conv2D with activation='relu' that runs forward by Winograd (kernels/winograd.c). */
bool graft_conv2d_winograd_relu(const graft_layer *l);
/* A MaxPooling2D with 2x2 windows, strides 2 and 'valid' padding. */
bool graft_max_pool_2x2(const graft_layer *l);
/* Whether backward writes gradients of the layer's weights (it trains and has trainable ones). */
bool graft_layer_trains_weights(const graft_layer *l);
bool graft_activation_clamp(const graft_layer *l, float *lo, float *hi);
#define GRAFT_EPILOGUE_MAX_C 4096

/* TensorFlow's output size and leading pad for one spatial dimension. */
int graft_conv_out_size(int in, int k, int stride, graft_padding p, int *pad_before);

/* ------------------------------------------------------------- model */

struct graft_model {
    char name[GRAFT_NAME_MAX];
    graft_status status;
    char error[512];
    int n_layers, cap_layers;
    graft_layer **layers;
    graft_names names; /* layer names to indices */
    int output; /* layer index; -1: last */

    /* All weights in one array (kann): saving, loading and optimizing are loops. */
    size_t n_weight_floats, cap_weight_floats; /* weights grow geometrically while building */
    float *weights, *grads;
    bool weights_ready;

    /* Compiled state. */
    bool compiled;
    graft_compile_cfg compile;
    float *opt_m, *opt_v; /* optimizer slots, parallel to weights */
    long opt_iterations;
    graft_rng rng;

    /* Activation buffers for batches of up to `capacity`. */
    int capacity;
    float *arena;
    size_t arena_floats;
    float *scratch;
    size_t scratch_floats;
    size_t *out_offset;     /* per layer, into arena (SIZE_MAX: no buffer) */
    bool *grad_written;     /* per layer, during backward: its dL/d(out) has a value */
    bool prepared_training;
    int planned_threads;    /* graft_threads() at planning: per-thread scratch is sized by it */
    bool want_input_grad;   /* tests: also compute dL/d(input) */
    float *input_grad;      /* with want_input_grad: n * input size floats */
    int lowest_grad_layer;  /* first layer whose backward runs; n_layers when none */
    uint64_t init_seed;
    volatile sig_atomic_t stop_requested;
    /* GRAFT_PROFILE=1: seconds per layer and pass, printed when the model is
     * freed (layer i's forward at [2i], backward at [2i+1]; the optimizer
     * last). NULL otherwise. */
    bool profiling;
    int profile_slots;
    double *profile;
};

/* CLOCK_MONOTONIC seconds. */
double graft_now(void);
/* GRAFT_PROFILE: adds seconds to a slot of m->profile. */
void graft_profile_add(graft_model *m, int slot, double seconds);

/* Weights come into existence lazily (after all layers are built). */
graft_status graft_model_ensure_weights(graft_model *m);
/* Sizes the activation arena for batches of n. */
graft_status graft_model_prepare(graft_model *m, int n, bool training);
/* Forward over the whole graph; the output is in the output layer's `out`. */
graft_status graft_model_forward(graft_model *m, const float *x, int n, bool training);
/* Forward over layers [first, last) only; the outputs of earlier layers that
 * these read must already be in place (feature caching). x may be NULL then. */
graft_status graft_model_forward_range(graft_model *m, const float *x, int n, bool training,
                                       int first, int last);
/* Backward from dL/d(output) (n * output size floats) into the weight grads. */
graft_status graft_model_backward(graft_model *m, const float *dout, int n);
/* One optimizer step on the trainable weights. */
void graft_optimizer_step(graft_model *m);
/* dL/d(pred) for the mean loss over n samples; returns the mean loss. */
double graft_loss_grad(graft_loss_kind kind, int from_logits, const float *pred, const float *y,
                       int n, int dim, float *dpred);

/* Threads for graft's own loops. */
int graft_threads(void);
/* Flush-to-zero and denormals-are-zero on the calling thread and the OpenMP team. */
void graft_flush_denormals(void);

#endif
