/*
 * graft — transfer learning in C.
 *
 * The one public header. Keras names and semantics throughout: layers carry
 * Keras names and weight layouts (Conv2D kernel HWIO, DepthwiseConv2D HWC1,
 * Dense IO), activations are NHWC float32, `trainable` works per layer.
 *
 * Errors: every fallible call returns a graft_status; graft_last_error()
 * holds a human message (naming the file, layer or tensor) for the calling
 * thread. Layer-building calls record the first error in the model (sticky)
 * and return NULL, so a chain of calls can be checked once at the end with
 * graft_model_status().
 */
#ifndef GRAFT_H
#define GRAFT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRAFT_VERSION "0.1.0"

/* ------------------------------------------------------------------ status */

typedef enum {
    GRAFT_OK = 0,
    GRAFT_EINVAL,       /* a bad argument or option */
    GRAFT_EIO,          /* a read, write or open failed */
    GRAFT_EFORMAT,      /* a file is malformed or truncated */
    GRAFT_ESHAPE,       /* shapes do not fit together */
    GRAFT_ENOMEM,       /* an allocation failed or a size limit was hit */
    GRAFT_ENOTFOUND,    /* a file, layer or weight is missing */
    GRAFT_EUNSUPPORTED, /* valid input that graft does not handle */
    GRAFT_ESTATE,       /* a call in the wrong state (e.g. fit before compile) */
    GRAFT_ENAN,         /* the loss became NaN or infinite */
    GRAFT_EINTERRUPTED  /* stopped on request (SIGINT) */
} graft_status;

const char *graft_status_name(graft_status s);
/* The message of the last failure in this thread ("" when none). */
const char *graft_last_error(void);

/* --------------------------------------------------------------------- rng */

/* xoshiro256**: every random choice in graft goes through an explicit state. */
typedef struct {
    uint64_t s[4];
} graft_rng;

void graft_rng_seed(graft_rng *rng, uint64_t seed);
uint64_t graft_rng_next(graft_rng *rng);
float graft_rng_uniform(graft_rng *rng);  /* [0, 1) */
float graft_rng_normal(graft_rng *rng);   /* N(0, 1) */
uint32_t graft_rng_below(graft_rng *rng, uint32_t n); /* [0, n) */

/* ------------------------------------------------------------------ shapes */

#define GRAFT_MAX_RANK 4
#define GRAFT_NAME_MAX 128

/* A per-sample shape (the batch dimension is never part of it). */
typedef struct {
    int rank;
    int dim[GRAFT_MAX_RANK];
} graft_shape;

graft_shape graft_shape1(int a);
graft_shape graft_shape3(int h, int w, int c);
size_t graft_shape_size(const graft_shape *s);
/* "(None, 75, 75, 32)" as Keras prints it. */
void graft_shape_format(const graft_shape *s, char *buf, size_t cap);

/* ------------------------------------------------------------- activations */

typedef enum {
    GRAFT_LINEAR = 0,
    GRAFT_RELU,
    GRAFT_RELU6,
    GRAFT_SIGMOID,
    GRAFT_TANH,
    GRAFT_SOFTMAX
} graft_activation;

graft_status graft_activation_parse(const char *name, graft_activation *out);
const char *graft_activation_name(graft_activation a);

typedef enum { GRAFT_VALID = 0, GRAFT_SAME } graft_padding;

/* ------------------------------------------------------------------ models */

typedef struct graft_model graft_model;
typedef struct graft_layer graft_layer;

graft_model *graft_model_new(const char *name);
void graft_model_free(graft_model *m);
const char *graft_model_name(const graft_model *m);
/* The first error recorded while building (GRAFT_OK when none). */
graft_status graft_model_status(const graft_model *m);
const char *graft_model_error(const graft_model *m);

/*
 * Layers. Every constructor takes the model and its input layer; an input of
 * NULL means "the layer added last" (Sequential style), an explicit layer
 * gives the functional style. A NULL or zero config field means Keras's
 * default; name NULL gives Keras's automatic name ("conv2d", "conv2d_1", ...).
 */
graft_layer *graft_input(graft_model *m, const char *name, graft_shape shape);

typedef struct {
    const char *name;
    int filters;
    int kernel_size[2];
    int strides[2];   /* 0 -> 1 */
    graft_padding padding;
    int no_bias;      /* use_bias=False */
    graft_activation activation;
} graft_conv2d_cfg;
graft_layer *graft_conv2d(graft_model *m, graft_layer *in, graft_conv2d_cfg cfg);

typedef struct {
    const char *name;
    int kernel_size[2];
    int strides[2];
    graft_padding padding;
    int depth_multiplier; /* 0 -> 1 */
    int no_bias;
    graft_activation activation;
} graft_depthwise_conv2d_cfg;
graft_layer *graft_depthwise_conv2d(graft_model *m, graft_layer *in,
                                    graft_depthwise_conv2d_cfg cfg);

typedef struct {
    const char *name;
    float momentum; /* 0 -> 0.99 */
    float epsilon;  /* 0 -> 1e-3 */
    int no_center;  /* center=False: no beta */
    int no_scale;   /* scale=False: no gamma */
} graft_batch_norm_cfg;
graft_layer *graft_batch_norm(graft_model *m, graft_layer *in, graft_batch_norm_cfg cfg);

graft_layer *graft_activation_layer(graft_model *m, graft_layer *in, const char *name,
                                    graft_activation a);

typedef struct {
    const char *name;
    float max_value;      /* <= 0: none */
    float negative_slope; /* 0 */
    float threshold;      /* 0 */
} graft_relu_cfg;
graft_layer *graft_relu(graft_model *m, graft_layer *in, graft_relu_cfg cfg);

/* ZeroPadding2D(((top, bottom), (left, right))) */
graft_layer *graft_zero_padding2d(graft_model *m, graft_layer *in, const char *name, int top,
                                  int bottom, int left, int right);

typedef struct {
    const char *name;
    int pool_size[2]; /* 0 -> 2 */
    int strides[2];   /* 0 -> pool_size */
    graft_padding padding;
} graft_pool2d_cfg;
graft_layer *graft_max_pooling2d(graft_model *m, graft_layer *in, graft_pool2d_cfg cfg);
graft_layer *graft_average_pooling2d(graft_model *m, graft_layer *in, graft_pool2d_cfg cfg);
graft_layer *graft_global_average_pooling2d(graft_model *m, graft_layer *in, const char *name);
graft_layer *graft_global_max_pooling2d(graft_model *m, graft_layer *in, const char *name);
graft_layer *graft_flatten(graft_model *m, graft_layer *in, const char *name);
graft_layer *graft_reshape(graft_model *m, graft_layer *in, const char *name,
                           graft_shape target);

typedef struct {
    const char *name;
    int units;
    graft_activation activation;
    int no_bias;
} graft_dense_cfg;
graft_layer *graft_dense(graft_model *m, graft_layer *in, graft_dense_cfg cfg);

graft_layer *graft_dropout(graft_model *m, graft_layer *in, const char *name, float rate);
graft_layer *graft_add(graft_model *m, const char *name, int n, graft_layer *const *inputs);

/* The model's output is the last layer added unless set here. */
graft_status graft_model_set_output(graft_model *m, graft_layer *out);
graft_layer *graft_model_output(const graft_model *m);

/* Layer list, in Keras's `model.layers` order (InputLayer first). */
int graft_model_num_layers(const graft_model *m);
graft_layer *graft_model_layer(const graft_model *m, int index); /* negative: from the end */
graft_layer *graft_model_find(const graft_model *m, const char *name);

const char *graft_layer_name(const graft_layer *l);
const char *graft_layer_class(const graft_layer *l); /* Keras class_name */
int graft_layer_index(const graft_layer *l);
graft_shape graft_layer_output_shape(const graft_layer *l);
int graft_layer_trainable(const graft_layer *l);
/* Changing trainability takes effect at the next graft_model_compile, as in Keras. */
void graft_layer_set_trainable(graft_layer *l, int trainable);
/* Sets `trainable` on layers [first, last) (negative indices count from the end). */
graft_status graft_model_set_trainable(graft_model *m, int first, int last, int trainable);

/* Weights in Keras order and layout: ("kernel", "bias") or
 * ("gamma", "beta", "moving_mean", "moving_variance"). */
int graft_layer_num_weights(const graft_layer *l);
const char *graft_layer_weight_name(const graft_layer *l, int i);
graft_shape graft_layer_weight_shape(const graft_layer *l, int i);
float *graft_layer_weight_data(graft_layer *l, int i);
size_t graft_layer_count_params(const graft_layer *l);

typedef struct {
    size_t total, trainable, non_trainable;
} graft_param_counts;
graft_param_counts graft_model_count_params(const graft_model *m);

/* Keras's model.summary() table. */
void graft_model_summary(const graft_model *m, FILE *out);

/* Re-draw every weight from the model's initializers (glorot_uniform, zeros, ones). */
graft_status graft_model_init_weights(graft_model *m, uint64_t seed);

/* ------------------------------------------------------------ training */

typedef enum { GRAFT_SGD = 0, GRAFT_ADAM, GRAFT_RMSPROP } graft_optimizer_kind;

typedef struct {
    graft_optimizer_kind kind;
    float learning_rate;
    float momentum; /* SGD, RMSprop */
    int nesterov;   /* SGD */
    float beta_1, beta_2, epsilon; /* Adam (epsilon also RMSprop) */
    float rho;      /* RMSprop */
} graft_optimizer;

/* Keras defaults: Adam(1e-3, 0.9, 0.999, 1e-7), SGD(0.01), RMSprop(1e-3, rho 0.9, 1e-7). */
graft_optimizer graft_adam(float learning_rate);
graft_optimizer graft_sgd(float learning_rate, float momentum, int nesterov);
graft_optimizer graft_rmsprop(float learning_rate);

typedef enum {
    GRAFT_BINARY_CROSSENTROPY = 0,
    GRAFT_CATEGORICAL_CROSSENTROPY,
    GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY
} graft_loss_kind;

typedef struct {
    graft_optimizer optimizer;
    graft_loss_kind loss;
    int from_logits;
    uint64_t seed; /* dropout masks and other training randomness */
} graft_compile_cfg;

/* Fixes which weights train, resets the optimizer state (as Keras's compile). */
graft_status graft_model_compile(graft_model *m, const graft_compile_cfg *cfg);
graft_status graft_model_set_learning_rate(graft_model *m, float lr);
float graft_model_learning_rate(const graft_model *m);

/*
 * A source of batches. It is an endless stream: after `length` batches
 * (one pass) it starts the next pass (reshuffled, if it shuffles). Labels
 * are float: 0/1 for binary, class index for sparse, one-hot for
 * categorical (y_dim floats per sample).
 */
typedef struct graft_source graft_source;
struct graft_source {
    graft_shape x_shape;
    int y_dim;       /* floats of label per sample */
    int batch_size;
    int length;      /* batches in one pass */
    graft_status (*next)(graft_source *self, float *x, float *y, int *n);
    void (*free)(graft_source *self);
};

/* In-memory arrays (copied). shuffle with seed: a fresh permutation each pass. */
graft_source *graft_source_arrays(const float *x, const float *y, int n, graft_shape x_shape,
                                  int y_dim, int batch_size, int shuffle, uint64_t seed);
void graft_source_free(graft_source *s);

/* Keras History: one entry per epoch; fits that continue a run append. */
typedef struct {
    int n, cap;
    int *epoch;
    double *loss, *accuracy, *val_loss, *val_accuracy, *lr, *seconds;
} graft_history;

void graft_history_init(graft_history *h);
void graft_history_free(graft_history *h);
graft_status graft_history_append(graft_history *h, int epoch, double loss, double acc,
                                  double val_loss, double val_acc, double lr, double seconds);

typedef struct {
    int epoch;
    double loss, accuracy, val_loss, val_accuracy; /* val_* NAN when no validation */
    double lr;
} graft_epoch_logs;

/* Called at the end of each epoch; set *stop to end training. */
typedef struct {
    void *ctx;
    graft_status (*on_epoch_end)(void *ctx, graft_model *m, const graft_epoch_logs *logs,
                                 int *stop);
    graft_status (*on_train_end)(void *ctx, graft_model *m);
} graft_callback;

typedef struct {
    int epochs;          /* train until this epoch (Keras's `epochs`) */
    int initial_epoch;   /* start from this epoch (continue a run) */
    int steps_per_epoch; /* 0: one pass of the source */
    graft_source *validation_data;
    int validation_steps; /* 0: one pass */
    int verbose;          /* 0 silent, 1 progress bar, 2 one line per epoch */
    const graft_callback *callbacks;
    int n_callbacks;
} graft_fit_cfg;

/* Appends to *history (may be NULL). */
graft_status graft_model_fit(graft_model *m, graft_source *train, const graft_fit_cfg *cfg,
                             graft_history *history);
graft_status graft_model_evaluate(graft_model *m, graft_source *data, int steps, double *loss,
                                  double *accuracy);
/* out: n * (output size) floats. */
graft_status graft_model_predict(graft_model *m, const float *x, int n, float *out);

/* Loss and accuracy of a batch of predictions (no model needed). */
double graft_loss_value(graft_loss_kind kind, int from_logits, const float *pred, const float *y,
                        int n, int dim);
double graft_accuracy_value(graft_loss_kind kind, const float *pred, const float *y, int n,
                            int dim);

/* ------------------------------------------------------------ data pipeline (src/data) */
/* (begin data section) */
/* (end data section) */

/* ------------------------------------------------------------ model files (src/io) */
/* (begin io section) */
typedef struct {
    int by_name;       /* match layers by name (else by order of weighted layers) */
    int skip_mismatch; /* skip layers absent from the model or of another shape */
} graft_load_opts;

/* Weights from a Keras HDF5 file (weights-only or full model) or a TF.js model.json. */
graft_status graft_load_weights(graft_model *m, const char *path, const graft_load_opts *opts);
/* Keras HDF5, weights only (`model.save_weights`). */
graft_status graft_save_weights(const graft_model *m, const char *path);
/* Keras HDF5, full model: model_config JSON + model_weights (`model.save`). */
graft_status graft_save_model(const graft_model *m, const char *path);
/* A whole model (graph and weights) from a full Keras HDF5 file or a TF.js model.json. */
graft_status graft_load_model(const char *path, graft_model **out);
/* (end io section) */

/* ------------------------------------------------------------ pretrained bases (src/zoo) */
/* (begin zoo section) */
/* (end zoo section) */

/* ------------------------------------------------------------ threads */

/* Worker threads for graft's own loops and the BLAS (0: all cores). */
void graft_set_num_threads(int n);
int graft_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_H */
