/*
 * graft/train.h: Training: optimizers and losses, compile, data sources, callbacks and
 * the history, fit / evaluate / predict, checkpoints, the feature store.
 * Included by graft.h; see there for conventions.
 */
#ifndef GRAFT_API_TRAIN_H
#define GRAFT_API_TRAIN_H

#include "graft/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ processes */

/*
 * A group of processes that train one model together, data-parallel (one
 * MPI communicator: include/graft/mpi.h makes one, in a build with MPI).
 * Everywhere a graft_comm * is taken, NULL means this process alone.
 */
typedef struct graft_comm graft_comm;
int graft_comm_rank(const graft_comm *c); /* 0 for NULL */
int graft_comm_size(const graft_comm *c); /* 1 for NULL */
/* Whether this build of graft has MPI (make MPI=1). */
int graft_mpi_built(void);
/* GRAFT_OK when every rank passes the same bytes; else GRAFT_EINVAL with a
 * message naming `what` and the first rank that differs from rank 0. */
graft_status graft_comm_check_same(graft_comm *c, const void *data, size_t n, const char *what);
graft_status graft_comm_barrier(graft_comm *c);
/* Sums n doubles over the ranks, in place (nothing to do for one process). */
graft_status graft_comm_sum(graft_comm *c, double *v, int n);

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
    /* graft's own bookkeeping (batches drawn, the identity a feature store
     * keeps the source's features under, the share of each batch that this
     * process takes): not yours to set. Zero it with the rest of the struct
     * (an initializer, calloc or memset do); copying a source copies it. */
    union {
        unsigned char bytes[64];
        uint64_t align;
    } graft_internal;
};
/* Batches the source has given so far (counted by fit, evaluate and
 * graft_source_skip): what a checkpoint records (graft_train_state) so that a
 * resumed run skips them on a fresh source. */
long graft_source_drawn(const graft_source *s);

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
    /* With a communicator: run on rank 0 only (callbacks that write files).
     * Others run on every rank, which see the same logs and weights. */
    int root_only;
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
} graft_model_checkpoint_cfg;
graft_status graft_model_checkpoint(graft_model_checkpoint_cfg cfg, graft_callback *out);

/* Feature caches that outlive a fit (graft_fit_cfg.feature_store), found again
 * by the source's uid: they stay, in memory or spilled, until the store is
 * freed (after the last fit that needs them). */
typedef struct graft_feature_store graft_feature_store;
graft_feature_store *graft_feature_store_new(void);
void graft_feature_store_free(graft_feature_store *store);

/* How data-parallel training sums the gradients over the ranks. */
typedef enum {
    /* SHARED where every rank runs on one machine, else BUCKETS. */
    GRAFT_ALLREDUCE_AUTO = 0,
    /* Non-blocking MPI allreduces, a bucket of layers (about 2 MiB) at a
     * time, started as the backward pass finishes each (Horovod's and
     * PyTorch DDP's way): on a network the transfers overlap the backward
     * pass. */
    GRAFT_ALLREDUCE_BUCKETS,
    /* One machine: each rank's backward pass writes its gradients into an
     * MPI-3 shared window; after it, each rank sums its 1/N of every rank's
     * gradients, in rank order, and writes the sums back to all of them.
     * Each gradient is read and written once per rank, with no copies
     * through MPI's buffers and no progress calls inside the backward pass. */
    GRAFT_ALLREDUCE_SHARED,
} graft_allreduce;

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
    /* Data-parallel training over the ranks of comm (NULL: this process
     * alone). Every rank calls fit with the same model, sources and settings
     * (checked at the start: the data's file lists too); rank 0's weights and
     * optimizer state are broadcast; each batch of train->batch_size (the
     * global batch) is split over the ranks, each decoding only its share;
     * the gradients are summed over the ranks (as `allreduce` says); every
     * rank takes the same step;
     * the logs and the history are the whole batch's, and only rank 0
     * prints. Trainable BatchNormalization uses each rank's own batch
     * statistics (Keras's MirroredStrategy), and the moving statistics are
     * averaged over the ranks at the end of every epoch. sync_batch_norm:
     * the statistics of the whole batch instead (sums over the ranks in
     * every trainable BatchNormalization's forward and backward pass), so
     * that N ranks compute what one process would, up to summation order. */
    graft_comm *comm;
    int sync_batch_norm;
    graft_allreduce allreduce;
    /* With SHARED sums: a trainable Dense kernel on flat inputs of at least
     * this many weights (0: 65536, 256 KiB; SIZE_MAX: none) is split by rows
     * among the ranks (tensor parallelism, as Megatron-LM splits its
     * layers): rank r keeps rows [I r / N, I (r + 1) / N) of the (I, U)
     * kernel, computes its part of every sample's output, the gradient of
     * its rows over the whole batch and their optimizer step, and the ranks
     * trade the layer's inputs, partial outputs and gradients (a few MB)
     * through shared memory instead of each streaming the whole kernel
     * three times a step and summing its gradient. The lesson's CNN from
     * scratch has one (10.6M weights), a Dense(1024) head on 768 features
     * another. Each rank's copy of the others' rows
     * is brought up to date at the end of every epoch. */
    size_t split_kernels;
} graft_fit_cfg;

/*
 * Resumable training state (not the ModelCheckpoint callback above, which
 * writes Keras files): what a fit needs to continue exactly where it stopped
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

graft_status graft_train_state_save(const graft_model *m, const graft_history *h,
                                    const graft_train_state *st, const char *path);
/* The model must be built and compiled as when it was saved. h may be NULL. */
graft_status graft_train_state_load(graft_model *m, const char *path, graft_history *h,
                                    graft_train_state *st);
/* A callback that saves the training state after every epoch; `history` must
 * be the one passed to fit. */
graft_status graft_train_state_callback(const char *path, graft_source *train, graft_source *val,
                                        const graft_history *history, graft_callback *out);

/* Asks a running fit to stop at the end of the current batch (async-signal-safe:
 * call it from a SIGINT handler); fit then returns GRAFT_EINTERRUPTED. */
void graft_model_request_stop(graft_model *m);

/* Appends to *history (may be NULL). */
graft_status graft_model_fit(graft_model *m, graft_source *train, const graft_fit_cfg *cfg,
                             graft_history *history);
graft_status graft_model_evaluate(graft_model *m, graft_source *data, int steps, double *loss,
                                  double *accuracy);
/* The same over the ranks of comm, each evaluating its share of each batch. */
graft_status graft_model_evaluate_comm(graft_model *m, graft_source *data, int steps,
                                       graft_comm *comm, double *loss, double *accuracy);
/* out: n * (output size) floats. */
graft_status graft_model_predict(graft_model *m, const float *x, int n, float *out);

/* Loss and accuracy of a batch of predictions (no model needed). */
double graft_loss_value(graft_loss_kind kind, int from_logits, const float *pred, const float *y,
                        int n, int dim);
double graft_accuracy_value(graft_loss_kind kind, const float *pred, const float *y, int n,
                            int dim);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_TRAIN_H */
