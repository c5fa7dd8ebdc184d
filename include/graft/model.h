/*
 * graft/model.h: The basics and the model: status codes, the RNG, shapes, activations;
 * building a model layer by layer, its layers and weights, the summary;
 * and the runtime (threads, crash-safe files, environment switches).
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_MODEL_H
#define GRAFT_API_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/* Keras's activation functions by their names ("swish" and "silu" are one
 * function under two names, kept so that a model is written back as read).
 * hard_sigmoid is Keras 3's relu6(x + 3) / 6, which Keras Applications'
 * MobileNetV3 uses (Keras 2's 0.2 x + 0.5 is not graft's); gelu is exact
 * (erf), gelu_approximate its tanh form (TF.js: gelu_new); leaky_relu is
 * Keras 3's with negative_slope 0.2. Softmax is over the last axis. */
typedef enum {
    GRAFT_LINEAR = 0,
    GRAFT_RELU,
    GRAFT_RELU6,
    GRAFT_SIGMOID,
    GRAFT_TANH,
    GRAFT_SOFTMAX,
    GRAFT_SWISH,
    GRAFT_SILU,
    GRAFT_HARD_SIGMOID,
    GRAFT_HARD_SWISH,
    GRAFT_HARD_SILU,
    GRAFT_GELU,
    GRAFT_GELU_APPROXIMATE,
    GRAFT_SOFTPLUS,
    GRAFT_SOFTSIGN,
    GRAFT_SELU,
    GRAFT_ELU,
    GRAFT_EXPONENTIAL,
    GRAFT_LEAKY_RELU
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
    int dilation_rate[2]; /* 0 -> 1 (with strides 1) */
    int groups;           /* 0 -> 1; divides the input channels and filters */
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
    int dilation_rate[2]; /* 0 -> 1 (with strides 1) */
} graft_depthwise_conv2d_cfg;
graft_layer *graft_depthwise_conv2d(graft_model *m, graft_layer *in,
                                    graft_depthwise_conv2d_cfg cfg);

/* SeparableConv2D: depthwise (depth_multiplier, no bias), then 1x1 to `filters`. */
typedef struct {
    const char *name;
    int filters;
    int kernel_size[2];
    int strides[2];       /* 0 -> 1 */
    graft_padding padding;
    int depth_multiplier; /* 0 -> 1 */
    int no_bias;
    graft_activation activation;
    int dilation_rate[2]; /* 0 -> 1 */
} graft_separable_conv2d_cfg;
graft_layer *graft_separable_conv2d(graft_model *m, graft_layer *in,
                                    graft_separable_conv2d_cfg cfg);

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
/* keepdims=True: output (1, 1, C). */
graft_layer *graft_global_average_pooling2d_keepdims(graft_model *m, graft_layer *in,
                                                     const char *name);
graft_layer *graft_global_max_pooling2d_keepdims(graft_model *m, graft_layer *in, const char *name);
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

/* Rescaling: y = x * scale + offset; each one value, or one per channel (the last
 * axis). n 0: scale 1, offset 0. */
#define GRAFT_RESCALING_MAX 64
typedef struct {
    const char *name;
    int n_scale, n_offset;
    float scale[GRAFT_RESCALING_MAX], offset[GRAFT_RESCALING_MAX];
} graft_rescaling_cfg;
graft_layer *graft_rescaling(graft_model *m, graft_layer *in, graft_rescaling_cfg cfg);

/* Normalization: y = (x - mean) / max(sqrt(variance), 1e-7) along Keras's `axis`
 * (0 -> -1); invert: y = x * max(sqrt(variance), 1e-7) + mean. n_values 0: mean,
 * variance (and count) are weights, as after Keras's adapt(); else constants, one
 * value or one per entry of the axis. */
#define GRAFT_NORMALIZATION_MAX 64
typedef struct {
    const char *name;
    int axis;
    int invert;
    int n_values;
    float mean[GRAFT_NORMALIZATION_MAX], variance[GRAFT_NORMALIZATION_MAX];
} graft_normalization_cfg;
graft_layer *graft_normalization(graft_model *m, graft_layer *in, graft_normalization_cfg cfg);

/* LayerNormalization over the trailing axes from Keras's axis `first_axis` (0 -> -1,
 * the channels) on; gamma and beta shaped as those axes. */
typedef struct {
    const char *name;
    int first_axis;
    float epsilon; /* 0 -> 1e-3 */
    int no_center; /* center=False: no beta */
    int no_scale;  /* scale=False: no gamma */
} graft_layer_norm_cfg;
graft_layer *graft_layer_norm(graft_model *m, graft_layer *in, graft_layer_norm_cfg cfg);

/* ConvNeXt's LayerScale: y = x * gamma, gamma (projection_dim,) starting at init_values. */
graft_layer *graft_layer_scale(graft_model *m, graft_layer *in, const char *name,
                               float init_values, int projection_dim);

/* Activation layers with options: LeakyReLU (alpha; Keras 2 and 3 default 0.3),
 * ELU (alpha, Keras's default 1), PReLU (a learned alpha, zeros at first, shared
 * along Keras's shared_axes, 1-based after the batch), Softmax along Keras's axis (0 -> -1). */
graft_layer *graft_leaky_relu(graft_model *m, graft_layer *in, const char *name, float alpha);
graft_layer *graft_elu(graft_model *m, graft_layer *in, const char *name, float alpha);
graft_layer *graft_prelu(graft_model *m, graft_layer *in, const char *name, int n_shared,
                         const int *shared_axes);
graft_layer *graft_softmax(graft_model *m, graft_layer *in, const char *name, int axis);

/* Conv2DTranspose: kernel (kh, kw, filters, in_channels) as Keras holds it. */
typedef struct {
    const char *name;
    int filters;
    int kernel_size[2];
    int strides[2]; /* 0 -> 1 */
    graft_padding padding;
    int dilation_rate[2]; /* 0 -> 1 */
    int has_output_padding; /* else Keras's None */
    int output_padding[2];
    int no_bias;
    graft_activation activation;
} graft_conv2d_transpose_cfg;
graft_layer *graft_conv2d_transpose(graft_model *m, graft_layer *in,
                                    graft_conv2d_transpose_cfg cfg);

/* UpSampling2D by (sh, sw) (0 -> 2), nearest or (bilinear != 0) TensorFlow's
 * half-pixel bilinear resize. Cropping2D(((top, bottom), (left, right))).
 * Permute(dims): dims a permutation of 1..rank. */
graft_layer *graft_upsampling2d(graft_model *m, graft_layer *in, const char *name, int sh, int sw,
                                int bilinear);
graft_layer *graft_cropping2d(graft_model *m, graft_layer *in, const char *name, int top,
                              int bottom, int left, int right);
graft_layer *graft_permute(graft_model *m, graft_layer *in, const char *name, int n,
                           const int *dims);

/* Noise layers: the identity at inference; in training SpatialDropout2D drops whole
 * channels (scaling the rest by 1 / (1 - rate)), GaussianNoise adds N(0, stddev),
 * GaussianDropout multiplies by N(1, sqrt(rate / (1 - rate))), from the model's RNG. */
graft_layer *graft_spatial_dropout2d(graft_model *m, graft_layer *in, const char *name, float rate);
graft_layer *graft_gaussian_noise(graft_model *m, graft_layer *in, const char *name, float stddev);
graft_layer *graft_gaussian_dropout(graft_model *m, graft_layer *in, const char *name, float rate);
graft_layer *graft_add(graft_model *m, const char *name, int n, graft_layer *const *inputs);

/* Concatenate along Keras's `axis` (the batch is axis 0; -1 is the last, the channels). */
graft_layer *graft_concatenate(graft_model *m, const char *name, int axis, int n,
                               graft_layer *const *inputs);
/* Elementwise merges with Keras's broadcasting: inputs of one rank whose sizes agree
 * or are 1 on each axis ((1, 1, C) x (H, W, C) for squeeze-and-excitation). */
graft_layer *graft_multiply(graft_model *m, const char *name, int n, graft_layer *const *inputs);
graft_layer *graft_average(graft_model *m, const char *name, int n, graft_layer *const *inputs);
graft_layer *graft_maximum(graft_model *m, const char *name, int n, graft_layer *const *inputs);
graft_layer *graft_minimum(graft_model *m, const char *name, int n, graft_layer *const *inputs);
graft_layer *graft_subtract(graft_model *m, const char *name, graft_layer *a, graft_layer *b);

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
/* A promise (constant 1) that the model's weights stay as they are, as an
 * ONNX Runtime session's do, until it is withdrawn (constant 0): inference
 * then keeps forms of its large kernels between calls (packed copies,
 * Winograd transforms) and checks each against the weights once under each
 * promise, not at every call: at a batch of one the check costs as much as
 * the GEMM's own read (docs/PERFORMANCE.md). Results are the same bits
 * either way. graft's own writers (graft_model_init_weights, loading
 * weights, fit, graft_train_state_load) withdraw it; a caller writing
 * through graft_layer_weight_data must withdraw it first, and may make it
 * again once written. `graft predict` makes it. */
graft_status graft_model_set_weights_constant(graft_model *m, int constant);

/* ------------------------------------------------------------ int8 inference */

/* Quantizes the model's inference to 8 bits, calibrated on n images (n *
 * input floats, preprocessed as for predict; a few hundred of the data the
 * model will see). The longest run of layers from the input made of
 * Conv2D, DepthwiseConv2D (depth multiplier 1), their BatchNormalization,
 * ReLU / relu6, Add, ZeroPadding2D and MaxPooling2D (a Keras
 * Applications base: MobileNet, MobileNetV2, ResNet50, VGG16/19) runs as
 * oneDNN int8 primitives (VNNI where the CPU has it): kernels s8 with one
 * scale per output channel, BatchNormalization folded in first; each
 * tensor 8-bit at one scale from the largest magnitude it takes over the
 * images, u8 where it is never negative. The layers after the run (the
 * head) stay in float. Predict, evaluate and feature extraction use it,
 * training never. It makes the promise that the weights are constant
 * (graft_model_set_weights_constant) and lasts as long as that promise:
 * anything that writes the weights drops it. GRAFT_EUNSUPPORTED where not
 * even the first layer after the input can be quantized (its name in the
 * message). */
graft_status graft_model_quantize_int8(graft_model *m, const float *images, int n);
/* Layers the int8 run takes (0: not quantized) and, in *first_float (may
 * be NULL), the first layer after it (NULL: none). */
int graft_model_int8_layers(const graft_model *m, const char **first_float);
/* Back to float inference. */
void graft_model_drop_int8(graft_model *m);

/* ------------------------------------------------------------ files */

/* Writes the whole content of a file; returns GRAFT_OK or a graft_fail status. */
typedef graft_status (*graft_file_writer)(FILE *f, void *ctx);
/* Crash-safe replacement of `path`, as every file graft writes: write(f, ctx)
 * into a temporary file beside it, fsync, rename over `path`, fsync the
 * folder. A failure leaves the old file (or none) and no temporary. */
graft_status graft_file_write_atomic(const char *path, graft_file_writer write, void *ctx);

/* ------------------------------------------------------------ threads */

/* Worker threads for graft's own loops and the BLAS (0: all cores). */
void graft_threads_set(int n);
int graft_threads_get(void);

/* ------------------------------------------------------------ environment */

/* The environment variables graft reads, one table (src/core/env.c; the
 * README's "Environment" section). Each is read when it takes effect. */
typedef enum {
    GRAFT_ENV_PROFILE,           /* GRAFT_PROFILE=1: per-layer timings on stderr */
    GRAFT_ENV_NO_ONEDNN,         /* GRAFT_NO_ONEDNN=1: no oneDNN convolution primitives */
    GRAFT_ENV_NO_WINOGRAD,       /* GRAFT_NO_WINOGRAD=1: no Winograd convolutions */
    GRAFT_ENV_NO_CONV_POOL,      /* GRAFT_NO_CONV_POOL=1: no fused image conv + pool step */
    GRAFT_ENV_NO_WINOGRAD_POOL,  /* GRAFT_NO_WINOGRAD_POOL=1: no fused Winograd conv + pool step */
    GRAFT_ENV_HOME,              /* GRAFT_HOME: the cache folder */
    GRAFT_ENV_WEIGHTS_BASE_URL,  /* GRAFT_WEIGHTS_BASE_URL: where pretrained weights come from */
    GRAFT_ENV_DARKNET_DATA,      /* GRAFT_DARKNET_DATA: ImageNet label lists */
    GRAFT_ENV_WEIGHTS,           /* GRAFT_WEIGHTS: the tool's pretrained MobileNet */
    GRAFT_ENV_DATA,              /* GRAFT_DATA: the tool's dataset folder */
    GRAFT_ENV_DATA_URL,          /* GRAFT_DATA_URL: the tool's dataset download */
    GRAFT_ENV_DATA_SHA256,       /* GRAFT_DATA_SHA256: that download's checksum */
    GRAFT_ENV_ONEDNN_MAX_CPU_ISA, /* ONEDNN_MAX_CPU_ISA: oneDNN's ISA cap, which graft follows */
    GRAFT_ENV_USER_HOME,         /* HOME: the default cache folder is under it */
    GRAFT_ENV_TMPDIR,            /* TMPDIR: where temporary files go */
    GRAFT_ENV_NO_FUSED_INFERENCE, /* GRAFT_NO_FUSED_INFERENCE=1: no inference-only steps */
    GRAFT_ENV_SYNC_BN,           /* GRAFT_SYNC_BN=1: mpirun graft: synchronized BatchNormalization */
    GRAFT_ENV_H5_TIMEOUT,        /* GRAFT_H5_TIMEOUT: seconds libhdf5 may go without answering */
    GRAFT_ENV_H5_CHILD,          /* GRAFT_H5_CHILD=0: read .h5 files in-process, not in a child */
    GRAFT_ENV_ALLREDUCE,         /* GRAFT_ALLREDUCE=auto|shared|buckets: mpirun graft's gradient sums */
    GRAFT_ENV_DEPTH_FIRST,       /* GRAFT_DEPTH_FIRST=0|1: inference's early steps a few images at a time */
    GRAFT_ENV_SPLIT_KERNELS,     /* GRAFT_SPLIT_KERNELS=N|off: mpirun graft: Dense kernels split by rows */
    GRAFT_ENV_CACHE_MIB,         /* GRAFT_CACHE_MIB=N: the last-level cache the planner counts on */
    GRAFT_ENV_FEATURE_CACHE_MIB, /* GRAFT_FEATURE_CACHE_MIB=N: the graft command's feature caches' memory */
    GRAFT_ENV_COUNT
} graft_env_var;

/* Its value (NULL when unset), its name and a line on what it does. */
const char *graft_env(graft_env_var v);
const char *graft_env_name(graft_env_var v);
const char *graft_env_doc(graft_env_var v);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_MODEL_H */
