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
    /* Optional, for feature caching: the number of distinct samples; whether a
     * sample's x is the same on every pass (no augmentation); and a next()
     * that also reports each sample's index in [0, n_samples) and skips
     * producing x when x is NULL. */
    long n_samples;
    int deterministic;
    graft_status (*next_ids)(graft_source *self, float *x, float *y, int *n, long *ids);
    /* x is decoded from files: worth caching even where the whole model
     * trains (then the decoded images themselves are kept). */
    int decodes;
    /* Batches given so far (kept by fit, evaluate and graft_source_skip): what a
     * checkpoint records so that a resumed run sees the same batches. */
    long drawn;
    /* Set by graft's own sources (graft_source_new_uid): the identity under
     * which a feature store keeps this source's features between fits. 0 (a
     * source of your own): its features are kept for one fit only. */
    uint64_t uid;
};
uint64_t graft_source_new_uid(void);

/* In-memory arrays (copied). shuffle with seed: a fresh permutation each pass. */
graft_source *graft_source_arrays(const float *x, const float *y, int n, graft_shape x_shape,
                                  int y_dim, int batch_size, int shuffle, uint64_t seed);
void graft_source_free(graft_source *s);
/* Draws and discards `batches` batches without producing images where the
 * source allows (next_ids with x NULL): fast-forwards a fresh source with the
 * same seed to where a checkpoint stopped. */
graft_status graft_source_skip(graft_source *s, long batches);

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

/* Keras callbacks: hooks around epochs; any may be NULL. on_epoch_end may
 * set *stop to end training after this epoch. `free` releases ctx. */
typedef struct {
    void *ctx;
    graft_status (*on_train_begin)(void *ctx, graft_model *m);
    graft_status (*on_epoch_begin)(void *ctx, graft_model *m, int epoch);
    graft_status (*on_epoch_end)(void *ctx, graft_model *m, const graft_epoch_logs *logs,
                                 int *stop);
    graft_status (*on_train_end)(void *ctx, graft_model *m);
    void (*free)(void *ctx);
} graft_callback;

void graft_callback_free(graft_callback *cb);

/* Which way a monitored quantity improves; AUTO: "max" for accuracies, else "min". */
typedef enum { GRAFT_MODE_AUTO = 0, GRAFT_MODE_MIN, GRAFT_MODE_MAX } graft_monitor_mode;

/* Monitors are "loss", "accuracy", "val_loss", "val_accuracy" ("acc"/"val_acc" too). */
typedef struct {
    const char *monitor;  /* NULL: "val_loss" */
    float min_delta;
    int patience;
    graft_monitor_mode mode;
    int has_baseline;
    double baseline;
    int restore_best_weights;
    int verbose;
} graft_early_stopping_cfg;
graft_status graft_early_stopping(graft_early_stopping_cfg cfg, graft_callback *out);

typedef struct {
    const char *monitor; /* NULL: "val_loss" */
    float factor;        /* 0: 0.1 */
    int patience;        /* 0: 10, as Keras */
    graft_monitor_mode mode;
    float min_delta;     /* 0: 1e-4 */
    int cooldown;
    float min_lr;
    int verbose;
} graft_reduce_lr_cfg;
graft_status graft_reduce_lr_on_plateau(graft_reduce_lr_cfg cfg, graft_callback *out);

/* LearningRateScheduler: lr = schedule(epoch, lr, ctx) before each epoch. */
graft_status graft_lr_scheduler(float (*schedule)(int epoch, float lr, void *ctx), void *ctx,
                                int verbose, graft_callback *out);

/* ModelCheckpoint: saves a Keras HDF5 file after each epoch (or only when the
 * monitored value improves). "{epoch}" / "{epoch:02d}" in path are replaced. */
typedef struct {
    const char *path;
    const char *monitor; /* NULL: "val_loss" */
    graft_monitor_mode mode;
    int save_best_only;
    int save_weights_only;
    int verbose;
} graft_checkpoint_cfg;
graft_status graft_model_checkpoint(graft_checkpoint_cfg cfg, graft_callback *out);

/* Feature caches that outlive a fit (graft_fit_cfg.feature_store), found again
 * by the source's uid: they stay, in memory or spilled, until the store is
 * freed (after the last fit that needs them). */
typedef struct graft_feature_store graft_feature_store;
graft_feature_store *graft_feature_store_new(void);
void graft_feature_store_free(graft_feature_store *store);

typedef struct {
    int epochs;          /* train until this epoch (Keras's `epochs`) */
    int initial_epoch;   /* start from this epoch (continue a run) */
    int steps_per_epoch; /* 0: one pass of the source */
    graft_source *validation_data;
    int validation_steps; /* 0: one pass */
    int verbose;          /* 0 silent, 1 progress bar, 2 one line per epoch */
    const graft_callback *callbacks;
    int n_callbacks;
    /* Feature caching (on by default): when the layers below the lowest
     * trainable one are frozen and deterministic and the source is too, their
     * output is computed once per sample and reused. Bounded by
     * cache_max_bytes (0: 4 GiB) in memory, counting every cache open in the
     * process (other fits' and a feature store's too); a cache beyond that
     * spills to a file in $TMPDIR (else /tmp). */
    int no_feature_cache;
    size_t cache_max_bytes;
    /* Optional: keeps the feature caches after the fit, for later fits on the
     * same source objects (a fine-tuning after training the head) while the
     * layers below each boundary keep their weights (checked by a hash). */
    graft_feature_store *feature_store;
    /* With a store: the lowest layer a later fit will unfreeze, with all
     * layers above it (e.g. base.layers[-20]). This fit then also fills the
     * cache at that fit's boundary (the first layer from there up with
     * weights) in its own forward passes, and the later fit's first epoch
     * decodes and recomputes nothing. */
    const char *keep_features_below;
} graft_fit_cfg;

/*
 * Training checkpoints: what a fit needs to continue exactly where it stopped
 * (weights, BatchNormalization statistics, optimizer slots and step count, the
 * dropout RNG, the epoch reached, the batches drawn from each source, and the
 * history), in graft's own checksummed file, written crash-safely (a temporary
 * file renamed over the old one). The Keras .h5 files are for sharing models;
 * this is for resuming.
 */
typedef struct {
    int epoch;           /* epochs completed: the next fit's initial_epoch */
    long train_batches;  /* batches drawn from the training source */
    long val_batches;    /* and from the validation source */
} graft_train_state;

graft_status graft_checkpoint_save(const graft_model *m, const graft_history *h,
                                   const graft_train_state *st, const char *path);
/* The model must be built and compiled as when it was saved. h may be NULL. */
graft_status graft_checkpoint_load(graft_model *m, const char *path, graft_history *h,
                                   graft_train_state *st);
/* A callback that saves a checkpoint after every epoch; `history` must be the
 * one passed to fit. */
graft_status graft_checkpoint_callback(const char *path, graft_source *train, graft_source *val,
                                       const graft_history *history, graft_callback *out);

/* Asks a running fit to stop at the end of the current batch (async-signal-safe:
 * call it from a SIGINT handler); fit then returns GRAFT_EINTERRUPTED. */
void graft_model_request_stop(graft_model *m);

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
/*
 * Keras's ImageDataGenerator(...).flow_from_directory(...) and load_img.
 * Images are decoded with libjpeg-turbo, libpng, libtiff, giflib and libwebp
 * (BMP and PPM by graft's own readers) to Pillow's pixels, resized exactly as Pillow
 * does (which is what Keras's flow_from_directory uses), augmented with
 * Keras's transform semantics, and prepared by worker threads ahead of the
 * training loop. A bad file is skipped with one warning naming it (or is an
 * error with `strict`).
 */
typedef enum {
    GRAFT_INTERP_NEAREST = 0, /* Keras's default */
    GRAFT_INTERP_BILINEAR,    /* Pillow's: antialiased when shrinking */
    GRAFT_INTERP_BICUBIC,
    GRAFT_INTERP_BOX,         /* "area": the average of the covered pixels */
    GRAFT_INTERP_HAMMING,
    GRAFT_INTERP_LANCZOS
} graft_interpolation;

/* "nearest", "bilinear", "bicubic", "box" or "area", "hamming", "lanczos". */
graft_status graft_interpolation_parse(const char *name, graft_interpolation *out);

typedef enum {
    GRAFT_FILL_NEAREST = 0, /* Keras's default */
    GRAFT_FILL_CONSTANT,
    GRAFT_FILL_REFLECT,
    GRAFT_FILL_WRAP
} graft_fill_mode;

/*
 * ImageDataGenerator's arguments; zero means Keras's default. The order of
 * operations is Keras's: resize, random affine transform (one resampling
 * pass), channel shift, flips, brightness, then preprocessing_function,
 * rescale, samplewise and featurewise normalisation.
 */
typedef struct {
    int featurewise_center, samplewise_center;
    int featurewise_std_normalization, samplewise_std_normalization;
    const float *mean, *std; /* per channel: what ImageDataGenerator.fit computes */
    /* ZCA whitening: each image, flattened to zca_dim = h*w*c values, times
     * principal_components (zca_dim x zca_dim, row-major), which fit
     * computes; it must outlive the flows made from this generator. */
    int zca_whitening;
    float zca_epsilon;         /* 0 -> Keras's 1e-6 (used by fit) */
    const float *principal_components;
    int zca_dim;
    float rotation_range;      /* degrees */
    float width_shift_range;   /* < 1: fraction of the width; >= 1: pixels */
    float height_shift_range;
    float brightness_range[2]; /* both 0: no brightness change */
    float shear_range;         /* degrees */
    /* [lower, upper]; with zoom_range[1] == 0, zoom_range[0] is Keras's
     * float form: [1 - z, 1 + z]. */
    float zoom_range[2];
    float channel_shift_range;
    graft_fill_mode fill_mode;
    float cval;
    int horizontal_flip, vertical_flip;
    float rescale;             /* 0: none */
    /* Runs on each augmented image (h x w x c floats in place), from worker
     * threads concurrently: it must be thread-safe. */
    graft_status (*preprocessing_function)(void *ctx, float *x, int h, int w, int c);
    void *preprocessing_ctx;
    float validation_split;    /* with graft_flow_cfg.subset */
    int interpolation_order_nearest; /* interpolation_order=0 (Keras's default is 1) */
} graft_image_data_generator;

typedef enum { GRAFT_COLOR_RGB = 0, GRAFT_COLOR_GRAYSCALE, GRAFT_COLOR_RGBA } graft_color_mode;

typedef enum {
    GRAFT_CLASS_CATEGORICAL = 0, /* Keras's default: one-hot */
    GRAFT_CLASS_BINARY,          /* 0/1, two classes */
    GRAFT_CLASS_SPARSE,          /* the class index */
    GRAFT_CLASS_INPUT,           /* y is a copy of x (autoencoders) */
    GRAFT_CLASS_NONE             /* no labels (y_dim 0) */
} graft_class_mode;

typedef enum { GRAFT_SUBSET_ALL = 0, GRAFT_SUBSET_TRAINING, GRAFT_SUBSET_VALIDATION } graft_subset;

typedef struct {
    int target_size[2];         /* (height, width); 0 -> (256, 256) */
    graft_color_mode color_mode;
    const char *const *classes; /* class subfolders in index order; NULL: all, sorted */
    int n_classes;
    graft_class_mode class_mode;
    int batch_size;             /* 0 -> 32 */
    int no_shuffle;             /* shuffle=False */
    uint64_t seed;              /* shuffling and augmentation (0 is a seed too) */
    graft_interpolation interpolation;
    graft_subset subset;
    int follow_links;
    int workers;                /* decoding threads; 0 -> 2 */
    int queue_depth;            /* batches kept ready; 0 -> 2 * workers */
    int strict;                 /* a bad image file is an error instead of skipped */
    int quiet;                  /* no "Found ..." line and no skip warnings */
    /* Decode every JPEG at full size, as Pillow (and so Keras) does, for
     * Keras's exact pixels. By default a JPEG is decoded at 1/2, 1/4 or 1/8
     * by libjpeg's DCT scaling when that still covers target_size (faster;
     * the pixels then differ slightly from Keras's). */
    int jpeg_full_decode;
    size_t max_pixels;          /* decoded pixels above this refuse a file; 0 -> 89478485 */
} graft_flow_cfg;

/*
 * flow_from_directory: one subfolder of `dir` per class (searched
 * recursively), files ending in png, jpg, jpeg, bmp, ppm, tif or tiff (Keras's
 * list), gif (image_dataset_from_directory's) or webp.
 * Prints Keras's "Found N images belonging to K classes." unless quiet.
 * The source is endless; `length` batches make one pass and each pass is a
 * fresh permutation (for the seed). gen may be NULL (no augmentation).
 * Shuffling and each sample's random transform derive from (seed, pass,
 * file) only, so the batches are the same for any number of workers (but
 * not Keras's numpy draws). A file that fails to decode is left out of its
 * batch (which is then shorter, possibly empty), named once on stderr and
 * counted (graft_flow_skipped); with `strict`, next() fails instead.
 */
graft_status graft_flow_from_directory(const char *dir, const graft_image_data_generator *gen,
                                       const graft_flow_cfg *cfg, graft_source **out);

/* What ImageDataGenerator.fit computes (graft_generator_fit fills it and
 * points the generator's mean, std and principal_components at it). */
typedef struct {
    int c;                       /* channels */
    float mean[4], std[4];       /* per channel */
    int dim;                     /* h*w*c with ZCA, else 0 */
    float *principal_components; /* dim x dim, row-major; NULL without ZCA */
} graft_generator_stats;

/*
 * ImageDataGenerator.fit(x) (augment=False): n images of h x w x c floats as
 * loaded (0..255), rescaled by gen->rescale, then as Keras: the per-channel
 * mean over images, rows and columns (featurewise_center) subtracted, the
 * per-channel standard deviation (featurewise_std_normalization, computed
 * whether or not centred, as np.std) divided out (+1e-6), and for
 * zca_whitening sigma = X^T X / n over the flattened images, its
 * eigendecomposition (LAPACK's dsyevd; sigma is symmetric, so this is the
 * SVD Keras takes), principal_components = U diag(1/sqrt(s + zca_epsilon)) U^T.
 * Computed in double precision. Free st with graft_generator_stats_free.
 */
graft_status graft_generator_fit(graft_image_data_generator *gen, const float *x, int n, int h,
                                 int w, int c, graft_generator_stats *st);
/* ImageDataGenerator.fit(x, augment=True, rounds, seed): each image's
 * random transform (the generator's augmentation, drawn from seed, round
 * and index as a flow draws them) `rounds` times, before the statistics. */
graft_status graft_generator_fit_augmented(graft_image_data_generator *gen, const float *x, int n,
                                           int h, int w, int c, int rounds, uint64_t seed,
                                           graft_generator_stats *st);
/* The same on up to n_sample images (0: all) of the folder as a flow with
 * cfg would list them (its target size, colour mode, subset and seed; a
 * random sample when shuffled), decoded and resized without augmentation. */
graft_status graft_generator_fit_directory(graft_image_data_generator *gen, const char *dir,
                                           const graft_flow_cfg *cfg, int n_sample,
                                           graft_generator_stats *st);
void graft_generator_stats_free(graft_generator_stats *st);

/* Accessors on a source from graft_flow_from_directory (Keras's attributes). */
int graft_flow_samples(const graft_source *s);
int graft_flow_num_classes(const graft_source *s);
const char *graft_flow_class_name(const graft_source *s, int class_index);
/* class_indices[name]; -1 when there is no such class. */
int graft_flow_class_index(const graft_source *s, const char *name);
/* filenames[i]: relative to the directory, "cats/cat.0.jpg". */
const char *graft_flow_filename(const graft_source *s, int i);
/* classes[i] */
int graft_flow_class_of(const graft_source *s, int i);
/* Files skipped so far as unreadable or malformed (each counted once). */
int graft_flow_skipped(const graft_source *s);
/* The sample indices (into filenames) of the batch returned last by next();
 * returns their count. idx has room for batch_size. */
int graft_flow_last_indices(const graft_source *s, int *idx);

/* load_img + img_to_array: one image at (target_h, target_w) (0, 0: its own
 * size), full-size decoding as Keras. out: h*w*c floats in 0..255, c = 1 for
 * grayscale else 3. The image's size is checked before decoding. */
graft_status graft_image_load(const char *path, int target_h, int target_w,
                              graft_interpolation interp, int grayscale, float *out);
/* The size of an image file without decoding it. */
graft_status graft_image_size(const char *path, int *h, int *w);

/* The image files directly inside `dir` (no class subfolders), sorted, as
 * full paths; free with graft_image_list_free. */
graft_status graft_image_list(const char *dir, char ***paths, int *n);
void graft_image_list_free(char **paths, int n);

/* Unpacks a .zip or .tar(.gz) archive under dest_dir (created if needed):
 * into a fresh temporary folder there, whose top-level entries are renamed
 * into place once every entry landed (an existing one is never replaced).
 * Entries with "..", absolute paths or through symbolic links, hard links or
 * symbolic links that leave the folder (a symbolic link must be relative,
 * without ".."), devices, FIFOs and sockets are refused, and on any failure
 * nothing is left behind. */
graft_status graft_extract_archive(const char *archive_path, const char *dest_dir);
/* (end data section) */

/* ------------------------------------------------------------ model files (src/io) */
/* (begin io section) */
typedef struct {
    int by_name;       /* match layers by name (else by order of weighted layers) */
    int skip_mismatch; /* skip layers absent from the model or of another shape */
    int *layers_loaded; /* optional out: how many model layers received weights */
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
/*
 * The Keras Applications bases, built with Keras's layer names, layer order
 * and weight layouts, so Keras and TF.js weight files load by name:
 * "mobilenet" (MobileNet v1), "mobilenet_v2", "resnet50", "vgg16".
 */
typedef enum { GRAFT_POOL_NONE = 0, GRAFT_POOL_AVG, GRAFT_POOL_MAX } graft_pooling;

typedef struct {
    float alpha;          /* width multiplier (MobileNet, MobileNetV2); 0 -> 1.0 */
    int depth_multiplier; /* MobileNet's DepthwiseConv2D depth_multiplier; 0 -> 1 */
    float dropout;        /* MobileNet's top Dropout rate (Keras default 1e-3) */
    int include_top;      /* the ImageNet classifier on top */
    int input_shape[3];   /* (H, W, C); zeros -> (224, 224, 3); H and W at least 32 */
    graft_pooling pooling; /* without top: none (4-D features), avg or max (2-D) */
    int classes;          /* with top; 0 -> 1000 */
} graft_zoo_cfg;

/* Keras's defaults: alpha 1, depth_multiplier 1, dropout 1e-3, include_top,
 * input (224, 224, 3), no pooling, 1000 classes. */
graft_zoo_cfg graft_zoo_default_cfg(void);

/* Builds a base with fresh weights (the layer initializers). The caller may
 * add a head to *out (layers added with input NULL follow the base's output);
 * graft_model_num_layers(*out) just after building is where the base ends. */
graft_status graft_zoo_build(const char *arch, const graft_zoo_cfg *cfg, graft_model **out);

/* The architecture whose layer names a model carries ("mobilenet", ...), or NULL. */
const char *graft_zoo_detect_arch(const graft_model *m);

/* Keras's preprocess_input for `arch` on n_pixels RGB pixels in 0..255, in
 * place: "mobilenet"/"mobilenet_v2" (mode "tf") scale to [-1, 1];
 * "resnet50"/"vgg16" (mode "caffe") swap to BGR and subtract the ImageNet
 * channel means. The mode names "tf" and "caffe" are accepted too. */
graft_status graft_preprocess_input(const char *arch, float *x, size_t n_pixels);

/* The same as an ImageDataGenerator preprocessing_function: ctx is the
 * architecture's name (a const char *), x one h*w*3 image; thread-safe. */
graft_status graft_preprocess_hook(void *ctx, float *x, int h, int w, int c);

/* ImageNet's 1000 classes in Keras's order, from Debian darknet's label lists
 * (imagenet.labels.list: WordNet ids, imagenet.shortnames.list: names) in
 * $GRAFT_DARKNET_DATA, else /usr/share/darknet/data. */
#define GRAFT_IMAGENET_CLASSES 1000
typedef struct {
    int index;     /* class index in Keras's order */
    char wnid[16]; /* "n02391049" */
    char name[64]; /* "zebra" */
    float prob;
} graft_prediction;

/* The name and WordNet id of class `index` (loads the lists once). */
graft_status graft_imagenet_class(int index, const char **wnid, const char **name);
/* Keras's decode_predictions for one sample: the `top` largest of n_classes
 * (= 1000) probabilities, best first, into out[top]. */
graft_status graft_decode_predictions(const float *probs, int n_classes, int top,
                                      graft_prediction *out);
/* preprocess_input for the model's architecture, predict and decode: n images
 * of the model's input shape, RGB 0..255 NHWC (not modified); out[n * top]. */
graft_status graft_zoo_classify(graft_model *m, const float *images, int n, int top,
                                graft_prediction *out);

/* For `graft predict`: loads an image file at the model's input size with
 * `interp` (Keras's load_img resamples with nearest by default;
 * image_dataset_from_directory with bilinear, which classifies better on
 * downscaled photos) and classifies it as graft_zoo_classify does. */
graft_status graft_zoo_predict_file(graft_model *m, const char *path, graft_interpolation interp,
                                    int top, graft_prediction *out);

/* Pretrained ImageNet weights as Keras Applications publishes them. */
typedef enum { GRAFT_HASH_NONE = 0, GRAFT_HASH_MD5, GRAFT_HASH_SHA256 } graft_hash_kind;
typedef struct {
    char file_name[128]; /* Keras's cache file name, e.g. mobilenet_1_0_224_tf_no_top.h5 */
    char url[256];
    graft_hash_kind hash_kind; /* NONE where Keras publishes no checksum */
    char hash[65];             /* lowercase hex */
} graft_weights_file;

/* The official file for a base built with cfg (MobileNet: alpha 0.25/0.5/0.75/1.0,
 * square 128/160/192/224 input, else the 224 file as Keras does; MobileNetV2:
 * alpha 0.35/0.5/0.75/1.0/1.3/1.4, 96/128/160/192/224). */
graft_status graft_zoo_imagenet_file(const char *arch, const graft_zoo_cfg *cfg,
                                     graft_weights_file *out);
/* The cache folder: $GRAFT_HOME/models, default ~/.cache/graft/models. */
graft_status graft_zoo_cache_dir(char *buf, size_t cap);
/* Downloads url to dest through a temporary file in dest's folder, checks the
 * hash (kind NONE: only that the transfer completed) and renames into place;
 * on any failure no file is left at dest or in the temporary. */
graft_status graft_download(const char *url, const char *dest, graft_hash_kind kind,
                            const char *hex);
/* How a downloaded dataset archive is checked: by the archive's own checksum
 * (Keras's get_file file_hash), or, where none is published, by the digest of
 * the files it unpacks to (graft_tree_digest of tree_dirs; only those folders
 * are kept). Neither is refused unless insecure is set. */
typedef struct {
    graft_hash_kind hash_kind; /* the archive's checksum, or GRAFT_HASH_NONE */
    const char *hash;          /* hex */
    const char *tree_sha256;   /* or NULL */
    const char *const *tree_dirs; /* relative to the archive's root */
    int n_tree_dirs;
    int insecure; /* allow an archive checked by nothing */
} graft_fetch_opts;
/* Keras's get_file(..., extract=True): downloads url, checks it as `opts`
 * says, and unpacks it under dest_dir as graft_extract_archive does; the
 * checks run before anything is moved into place. */
graft_status graft_fetch_dataset(const char *url, const char *dest_dir, const graft_fetch_opts *opts);
/* The SHA-256 of the list of the regular files below root/dirs[i], one line
 * per file in byte order of their paths relative to root, as
 * `find DIRS -type f | LC_ALL=C sort | xargs sha256sum | sha256sum` prints
 * it; anything else than a file or folder there is refused. n_files
 * (optional) receives the number of files. */
graft_status graft_tree_digest(const char *root, const char *const *dirs, int n_dirs, char hex[65],
                               int *n_files);
/* The cached file's path, downloading it first when absent (a file already at
 * that path is used as is: copy a local file there to work offline). */
graft_status graft_zoo_fetch_imagenet(const char *arch, const graft_zoo_cfg *cfg, char *path,
                                      size_t cap);
/* Fetches and loads ImageNet weights into a model built with the same cfg. */
graft_status graft_zoo_load_imagenet(graft_model *m, const char *arch, const graft_zoo_cfg *cfg);

/* Hex digest (65 bytes with the NUL) of memory or of a file. */
graft_status graft_hash_hex(graft_hash_kind kind, const void *data, size_t len, char hex[65]);
graft_status graft_hash_file(graft_hash_kind kind, const char *path, char hex[65]);
/* (end zoo section) */
/* (begin report section) */
/* ------------------------------------------------------------ reports (src/report) */
/*
 * Run folders: history.json, the CSV log and the figures. Every file is
 * written to a temporary file beside it and renamed into place, so a crash
 * or a full disk never leaves a truncated file and a failure leaves none.
 */

/* A named part of a run ("frozen", "fine-tune") and the epoch it starts at. */
#define GRAFT_STAGE_NAME_MAX 64
typedef struct {
    char name[GRAFT_STAGE_NAME_MAX];
    int first_epoch;
} graft_history_stage;

/*
 * history.json in the form of Keras's History object:
 *   {"history": {"loss": [...], "accuracy": [...], "val_loss": [...],
 *                "val_accuracy": [...], "lr": [...]},
 *    "epoch": [0, 1, ...], "seconds": [...],
 *    "stages": [{"name": "frozen", "first_epoch": 0}, ...]}
 * A metric whose every entry is NAN is left out (val_* without validation);
 * a single missing entry is written as null and read back as NAN. "seconds"
 * and "stages" are graft's own; stages may be NULL when n_stages is 0, and
 * must start at increasing epochs.
 */
graft_status graft_history_save_json(const char *path, const graft_history *h,
                                     const graft_history_stage *stages, int n_stages);
/*
 * Reads history.json (also a bare Keras `history.history` dict's keys inside
 * "history", with "epoch" optional and "learning_rate" accepted for "lr";
 * other metrics are ignored). *h is initialized here and freed by the caller
 * with graft_history_free. *stages (free()) and *n_stages may be NULL when
 * not wanted. Malformed files are refused with a message naming the file
 * and the key; on failure *h is empty and *stages NULL.
 */
graft_status graft_history_load_json(const char *path, graft_history *h,
                                     graft_history_stage **stages, int *n_stages);

/*
 * The CSV log as Keras's CSVLogger writes it: "epoch" then the metrics in
 * sorted order (accuracy,loss,lr,val_accuracy,val_loss; all-NAN ones left
 * out), Python's shortest float repr, "NA" for a missing entry, and the
 * csv module's \r\n line ends.
 */
graft_status graft_history_save_csv(const char *path, const graft_history *h);

/*
 * The lesson's figure (800x800 PNG drawn with cairo): training and validation
 * accuracy on top, loss below, x axis in epochs. finetune_epoch is the first
 * epoch of fine-tuning (-1: none); the dashed "Start fine-tuning" line stands
 * at the epoch before it, where the fine-tuning curves begin, as in
 * TensorFlow's transfer-learning tutorial. title_suffix (may be NULL) is
 * appended to both panel titles after a space. NAN entries leave gaps.
 */
graft_status graft_plot_lesson(const graft_history *h, int finetune_epoch,
                               const char *title_suffix, const char *png_path);

/*
 * Validation accuracy per epoch of several runs (800x600 PNG), one curve per
 * run against its own epoch numbers. labels and title may be NULL ("run 1",
 * ... and "Validation accuracy comparison").
 */
graft_status graft_plot_compare(const graft_history *const *runs, const char *const *labels,
                                int n_runs, const char *png_path, const char *title);
/* (end report section) */

/* ------------------------------------------------------------ files */

/* Writes the whole content of a file; returns GRAFT_OK or a graft_fail status. */
typedef graft_status (*graft_file_writer)(FILE *f, void *ctx);
/* Crash-safe replacement of `path`, as every file graft writes: write(f, ctx)
 * into a temporary file beside it, fsync, rename over `path`, fsync the
 * folder. A failure leaves the old file (or none) and no temporary. */
graft_status graft_write_file_atomic(const char *path, graft_file_writer write, void *ctx);

/* ------------------------------------------------------------ threads */

/* Worker threads for graft's own loops and the BLAS (0: all cores). */
void graft_set_num_threads(int n);
int graft_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_H */
