/*
 * The execution plan: the graph compiled into steps, each a kernel pass
 * with its inputs, outputs and epilogue. Most steps are one layer. A fused
 * step is a group of layers the planner found that runs as one pass, so
 * that no layer has to know its neighbours:
 *
 *   CONV_EPILOGUE  Conv2D/DepthwiseConv2D -> inference BatchNormalization ->
 *                  ReLU, nothing needing a gradient: the convolution's output
 *                  pass applies the normalisation and clamp (step_conv_epilogue.c)
 *   PAD_DW         ZeroPadding2D -> DepthwiseConv2D [-> BN] [-> activation],
 *                  nothing needing a gradient: the depthwise kernel skips the
 *                  padding's taps; the padded tensor never exists (step_pad_dw.c)
 *   PAD_POOL       ZeroPadding2D -> MaxPooling2D, nothing needing a gradient:
 *                  the pool reads the padding's cells as zeros; the padded
 *                  tensor never exists (step_pad_pool.c)
 *   ALIAS          a layer whose forward hands its input on unchanged
 *                  (layer ops' passes_through: Dropout at inference, Flatten),
 *                  nothing needing its gradient: its output is its input's
 *                  buffer, and nothing runs
 *   CONV_POOL      a ReLU Conv2D of the image -> 2x2 max pool, nothing below
 *                  needing a gradient: kernels/conv_pool.c computes both, both
 *                  ways; the convolution's output never exists (step_conv_pool.c)
 *   WINOGRAD_POOL  a ReLU Conv2D on the Winograd path -> 2x2 max pool: the
 *                  output transform pools each tile; backward routes by code
 *                  bytes into the convolution's gradient (step_winograd_pool.c)
 *   RELU_POOL      training: a ReLU Conv2D read only by a max pool: the pool's
 *                  backward applies the ReLU's derivative and writes the
 *                  convolution's bias gradient (step_relu_pool.c)
 *   DW_BLOCK       nothing needing a gradient (inference, or the frozen
 *                  layers below a training pass's first trained one): a
 *                  MobileNet block, [1x1 expand -> BN -> activation ->]
 *                  [ZeroPadding2D ->] depthwise -> BN -> activation ->
 *                  1x1 project -> BN [-> clamp] [-> Add of the block's
 *                  input], or an Xception one, SeparableConv2D [-> BN]
 *                  [-> clamp], computed a few rows at a time with the
 *                  expanded and depthwise tensors in cache; or an
 *                  EfficientNet block's first half, 1x1 expand -> BN ->
 *                  swish -> [ZeroPadding2D ->] depthwise -> BN -> swish,
 *                  ending at the depthwise output that squeeze-and-
 *                  excitation reads (step_dw_block.c)
 *   POINTWISE      nothing needing a gradient: [BN ->] [clamp ->] a 1x1
 *                  Conv2D of any stride -> [BN] -> [clamp] -> [Add of a
 *                  tensor an earlier step computed, or of a linear 1x1 of
 *                  any stride -> [BN] (a projection shortcut) the step
 *                  computes a block at a time] -> [clamp] (ResNet's 1x1
 *                  convolutions and residual adds; DenseNet's BN -> ReLU ->
 *                  1x1): one GEMM whose input rows go through the first BN
 *                  and clamp as they are copied to cache, and whose epilogue
 *                  does the rest (step_pointwise.c)
 *   CONCAT_APPEND  a chain of channel Concatenates, each the first input of
 *                  the next (DenseNet's dense blocks: x = Concatenate([x,
 *                  conv(x)]) over and over), none needing a gradient, each
 *                  but the last read otherwise only by POINTWISE steps: one
 *                  buffer as wide as the last holds them all, each a prefix
 *                  of its channels, and each Concatenate copies only its new
 *                  inputs into place instead of the whole growing tensor
 *                  (step_concat_append.c)
 *
 * A step runs at the place of its first layer; its later layers read only
 * what the step computes or what layers before its first computed, so
 * nothing in between needs them earlier.
 * Adding a fusion: a kind here, a step file with its match, sizes, forward
 * and backward, and a line in plan.c's planner.
 */
#ifndef GRAFT_EXEC_PLAN_H
#define GRAFT_EXEC_PLAN_H

#include "exec/exec.h"

typedef enum {
    GRAFT_STEP_LAYER,
    GRAFT_STEP_CONV_EPILOGUE,
    GRAFT_STEP_CONV_POOL,
    GRAFT_STEP_WINOGRAD_POOL,
    GRAFT_STEP_RELU_POOL,
    GRAFT_STEP_DW_BLOCK,
    GRAFT_STEP_POINTWISE,
    GRAFT_STEP_PAD_DW,
    GRAFT_STEP_PAD_POOL,
    GRAFT_STEP_ALIAS,
    GRAFT_STEP_CONCAT_APPEND,
} graft_step_kind;

#define GRAFT_STEP_MAX_LAYERS 12

/* A DW_BLOCK's (and a POINTWISE step's: project*, add, add_clamp) layers by
 * role (-1: absent). act_*: the clamp each part ends
 * with (a ReLU/Activation layer, or the convolution's own ReLU). */
typedef struct graft_dw_block {
    int expand, expand_bn, pad, dw, dw_bn, project, project_bn, add;
    int sep; /* a SeparableConv2D that is both the depthwise and the 1x1 (dw = project) */
    int residual; /* the layer whose output the Add adds */
    bool expand_clamp, dw_clamp, project_clamp, add_clamp;
    float expand_lo, expand_hi, dw_lo, dw_hi, project_lo, project_hi, add_lo, add_hi;
    /* DW_BLOCK: an element-wise activation that is not a clamp (swish)
     * after the expansion's or the depthwise's epilogue, over its rows in
     * cache (GRAFT_LINEAR: none). */
    graft_activation expand_act, dw_act;
    /* POINTWISE: the inference BatchNormalization (-1: none) and clamp
     * applied to the 1x1's input rows (pre-activation, as DenseNet's). */
    int pre_bn;
    bool pre_clamp;
    float pre_lo, pre_hi;
    /* POINTWISE: instead, a squeeze-and-excitation Multiply (-1: none)
     * whose input `excite_gate` (0 or 1) is each image's channel scale. */
    int excite, excite_gate;
    /* POINTWISE: a 2x2/2 AveragePooling2D that alone reads a linear 1x1/1
     * (DenseNet's transitions), taken before the 1x1 (0: none). */
    int avg_pool;
    /* POINTWISE: the Add's other input as a linear 1x1 of any stride (a
     * ResNet stage's projection shortcut) [-> its inference BN,
     * shortcut_bn], computed in the step a block of rows at a time (0:
     * none; the Add's input is then `residual`, an earlier step's). */
    int shortcut, shortcut_bn;
} graft_dw_block;

typedef struct graft_step {
    graft_step_kind kind;
    int n;                           /* layers in the step */
    int layer[GRAFT_STEP_MAX_LAYERS]; /* in graph order; the last one's output is the step's */
    /* CONV_EPILOGUE, PAD_DW: what the convolution's output pass applies, and the
     * BatchNormalization it folds (-1: none) with room for its transform. */
    graft_epilogue epi;
    int bn;
    float *bn_params; /* 3 * channels: mean, scale, shift (DW_BLOCK: for each of its BNs) */
    graft_dw_block blk; /* DW_BLOCK */
    /* In a depth-first run (graft_segment), which calls it once per chunk of
     * images: its 1x1 kernels come from the layers' kept packed copies,
     * packed once, not packed again for each chunk. */
    bool in_run;
    /* Floats of the model's scratch its forward may use at the plan's
     * capacity; passes.c poisons the rest under AddressSanitizer. */
    size_t scratch;
} graft_step;

/* A run of consecutive gradient-free steps (inference, or a training
 * pass's frozen layers) that forward runs a few images at a time, all of its steps over `images` images before the next ones (depth
 * first). At large batches the early layers' tensors (MobileNet's 112x112
 * and 56x56 ones: 1.6-3.2 MB an image) outgrow the last-level cache, and a
 * step-by-step pass writes each to memory for the next step to read back;
 * a few images' worth stays in cache. The tensors read only inside the run
 * have buffers for `images` images; the others stay whole, and each chunk
 * reads and writes its images' part. */
typedef struct graft_segment {
    int first, end; /* steps [first, end) */
    int images;
} graft_segment;

struct graft_plan {
    int n_layers, n_steps;
    graft_step *steps;
    int n_segments;
    bool any_run;      /* GRAFT_DEPTH_FIRST=1: every candidate run kept */
    graft_cache cache; /* the last-level cache the runs were chosen for (bytes 0: not read) */
    graft_segment *segments; /* in step order */
    int *chunk;      /* per layer: its buffer holds this many images, its segment's (0: the batch) */
    float **whole;   /* per layer: its `out` while a segment runs (forward's scratch) */
    int *step_of;    /* per layer: the step that computes it */
    bool *has_out;   /* per layer: its output has a buffer of its own or its step root's */
    int *buf_of;     /* per layer: the layer whose buffer holds its output */
    /* per layer: floats from one pixel's row of its output to the next in
     * its buffer, where that is not its own channel count (a CONCAT_APPEND
     * chain's members: the chain's buffer is as wide as its last); else 0 */
    int *row_floats;
    bool *grad_written; /* per layer, during backward: its dL/d(out) has a value */
};


/* Each fused step: does it start at layer i (filling s), and its passes. The
 * step files hold the rest of what their fusion needs. */
bool graft_step_conv_epilogue_match(const graft_model *m, int i, bool training, graft_step *s);
void graft_step_conv_epilogue_forward(graft_model *m, graft_step *s, const graft_fwd *f);
/* After the convolution at j (in f): an optional inference BatchNormalization,
 * then an optional clamp or element-wise activation, into f's epilogue. */
void graft_step_take_epilogue(const graft_model *m, graft_step *f, int j, bool training);

bool graft_step_pad_dw_match(const graft_model *m, int i, bool training, graft_step *s);
void graft_step_pad_dw_forward(graft_model *m, graft_step *s, const graft_fwd *f);
bool graft_step_pad_pool_match(const graft_model *m, int i, graft_step *s);
void graft_step_pad_pool_forward(graft_model *m, const graft_step *s, const graft_fwd *f);

bool graft_step_conv_pool_match(const graft_model *m, int i, graft_step *s);
size_t graft_step_conv_pool_scratch_floats(const graft_model *m, const graft_step *s);
void graft_step_conv_pool_forward(graft_model *m, const graft_step *s, const graft_fwd *f);
void graft_step_conv_pool_backward(graft_model *m, const graft_step *s, int n);

/* In inference, where the plan's batch (cap) gives Winograd enough tiles; a
 * plan's step then runs Winograd at smaller batches too. */
bool graft_step_winograd_pool_match(const graft_model *m, int i, bool training, int cap,
                                    graft_step *s);
void graft_step_winograd_pool_forward(graft_model *m, const graft_step *s, const graft_fwd *f);
void graft_step_winograd_pool_backward(graft_model *m, const graft_step *s, int n);

bool graft_step_relu_pool_match(const graft_model *m, int i, bool training, graft_step *s);
void graft_step_relu_pool_backward(graft_model *m, const graft_step *s, int n);

bool graft_step_dw_block_match(const graft_model *m, int i, bool training, graft_step *s);
/* Floats of s->bn_params the step needs (0: none). */
size_t graft_step_dw_block_param_floats(const graft_model *m, const graft_step *s);
size_t graft_step_dw_block_scratch_floats(const graft_model *m, const graft_step *s, int n);
void graft_step_dw_block_forward(graft_model *m, graft_step *s, const graft_fwd *f);
/* One line on what the step computes and how (GRAFT_PROFILE's plan). */
void graft_step_pointwise_describe(const graft_model *m, const graft_step *s, int n, char *buf,
                                   size_t size);
void graft_step_dw_block_describe(const graft_model *m, const graft_step *s, int n, char *buf,
                                  size_t size);

/* step_of: per layer, the earlier step that computes it, or -1 (the Add's
 * other input must exist when the step runs). */
bool graft_step_pointwise_match(const graft_model *m, int i, bool training, const int *step_of,
                                graft_step *s);
size_t graft_step_pointwise_param_floats(const graft_model *m, const graft_step *s);
size_t graft_step_pointwise_scratch_floats(const graft_model *m, const graft_step *s);
void graft_step_pointwise_forward(graft_model *m, graft_step *s, const graft_fwd *f);

/* The kernel of the 1x1 Conv2D l as the fused steps' GEMMs read it over
 * `rows` rows in all (step_pointwise.c): packed into `scratch`
 * (graft_pw_pack_floats) where so many rows pay for the copy; the layer's
 * kept packed copy where the step is in a depth-first run (in_run), or
 * where the model's weights are constant (`promise`: graft_fwd's, nonzero)
 * and the kernel would be packed each call or is at least
 * GRAFT_PW_KEEP_MIN_FLOATS; else in place, with *stream set where
 * graft_step_pw_streamed (graft_pw_gemm_stream reads it). *ldb: its row
 * stride, 0 when packed. */
#define GRAFT_PW_KEEP_MIN_FLOATS (256u * 1024u)
const float *graft_step_pw_kernel(graft_layer *l, size_t rows, bool wide, bool may_stream,
                                  bool in_run, uint64_t promise, float *scratch, size_t *ldb,
                                  bool *stream);
/* Columns [c0, c0 + nc) of a GEMM over such a kernel: graft_pw_gemm_stream
 * where graft_step_pw_kernel set `stream`, else graft_pw_gemm_cols. */
struct graft_kernel_epi;
void graft_step_pw_gemm_cols(int M, int c0, int nc, int K, const float *A, size_t lda,
                             const float *W, size_t ldb, float *C, size_t ldc,
                             const struct graft_kernel_epi *e, const float *R, size_t ldr, bool wide,
                             bool stream);
/* Whether a step that may stream kernels (`may_stream`) streams l's for a
 * GEMM of `rows` rows: too few rows to pack it each call, and a kernel of
 * at least graft_step_pw_stream_min_floats(). Streamed a panel at a time,
 * the kernel is read once, with no copy kept between calls (and no
 * fingerprint read to check one). */
bool graft_step_pw_streamed(const graft_layer *l, size_t rows, bool may_stream);
/* With AVX-512, a kernel larger than L1 (GRAFT_PW_STREAM_MIN_FLOATS_512):
 * the stream kernel's first row tile copies each block of it as it reads
 * it, and the other tiles read the copy from L1, where reading panels in
 * place tile after tile took them from L2 (MobileNetV2 at batch 1: 0.91 of
 * the time). With AVX2, a kernel larger than L2 can hold beside its rows
 * (GRAFT_PW_STREAM_MIN_FLOATS_256): lower, EfficientNetB0 lost 1.4%
 * (docs/PERFORMANCE.md). */
#define GRAFT_PW_STREAM_MIN_FLOATS_512 (16u * 1024u)
#define GRAFT_PW_STREAM_MIN_FLOATS_256 (256u * 1024u)
size_t graft_step_pw_stream_min_floats(void);
/* How graft_step_pw_kernel reads it, in words (GRAFT_PROFILE's plan). */
const char *graft_step_pw_how(const graft_layer *l, size_t rows, bool may_stream, bool in_run,
                              bool constant);
/* DW_BLOCK steps stream; POINTWISE steps (ResNet50's, DenseNet's) only with
 * AVX-512: with AVX2 they read such kernels in place, as measured when they
 * were kept packed instead (docs/PERFORMANCE.md). */
bool graft_step_pointwise_streams(void);

/* Shared by the inference steps' matches (step_dw_block.c): an element-wise
 * Activation (swish, hard_swish, ...) that alone reads layer j, added to s
 * with its function in *act; returns the last layer taken (j: none). The
 * step runs it over rows after its epilogue. */
int graft_step_take_act(const graft_model *m, graft_step *s, int j, graft_activation *act);
/* An inference BatchNormalization (bn; -1: none) as an epilogue's or a
 * prologue's normalisation: its C means, scales and shifts computed into
 * params (3 * C floats) and pointed to by e. */
struct graft_kernel_epi;
void graft_step_bn_epi(const graft_model *m, int bn, float *params, int C,
                       struct graft_kernel_epi *e);
/* Shared by the inference steps' matches (step_dw_block.c): after the
 * convolution at j (whose own ReLU, conv_relu, ends the chain) an optional
 * inference BatchNormalization, then an optional clamp, added to s; returns
 * the last layer taken. */
int graft_step_take_bn_clamp(const graft_model *m, graft_step *s, int j, bool training,
                             bool conv_relu, int *bn, bool *clamp, float *lo, float *hi);
/* A BatchNormalization a gradient-free step may fold: nothing needs its
 * gradient and it normalises with its moving statistics (in a training pass
 * only if it does not train: a trainable one without gamma or beta has no
 * gradient but normalises with the batch's). */
bool graft_step_bn_frozen(const graft_layer *l, bool training);
/* A convolution's activation as a clamp: false unless linear or ReLU. */
bool graft_step_conv_act(graft_activation a, bool *clamp, float *lo, float *hi);
/* A ReLU or Activation layer as a clamp. */
bool graft_step_act_clamp(const graft_layer *l, float *lo, float *hi);

/* Whether a kept split (a feature cache's boundary, whose stored outputs
 * are whole tensors) falls between layers a < b. */
bool graft_plan_split_between(const graft_model *m, int a, int b);

/* After the other steps are planned (plan_steps): turns chains of channel
 * Concatenates into CONCAT_APPEND steps sharing their last member's width
 * in the first member's buffer (buf_of, row_floats); chains stop at a kept
 * split (graft_plan_keep_split). */
graft_status graft_step_concat_chains(const graft_model *m, struct graft_plan *p);
/* Whether layer i's output is a strided view (a chain's member short of its
 * last), which only the chain's next member and POINTWISE steps read. */
bool graft_step_concat_view(const graft_model *m, const struct graft_plan *p, int i);
/* Whether such a view below layer k is read at or above it. */
bool graft_step_concat_crosses(const graft_model *m, const struct graft_plan *p, int k);
void graft_step_concat_append_forward(graft_model *m, const graft_step *s, const graft_fwd *f);

/* The passes' view of one layer (exec/passes.c): runs its backward with the
 * inputs, gradients and accumulation flags of the plan, by fn(l, b, ctx), or
 * by its own ops->backward when fn is NULL. */
typedef void (*graft_backward_fn)(graft_layer *l, const graft_bwd *b, void *ctx);
void graft_plan_layer_backward(graft_model *m, graft_layer *l, int n, graft_backward_fn fn,
                               void *ctx);

#endif
