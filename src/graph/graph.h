/*
 * The model as a graph: its layers in Keras's order, all weights in one
 * array, the compiled training state, and the buffers the plan (exec/)
 * lays out. Building, weights, accessors and the summary live here; the
 * plan and the passes over it in exec/.
 */
#ifndef GRAFT_GRAPH_H
#define GRAFT_GRAPH_H

#include "core/names.h"
#include "layers/layer.h"

#include <signal.h>

/* Far beyond any real model (Keras Applications' largest have about 1000
 * layers and 350M parameters), and refused before allocating: a hostile
 * file must not make graft allocate gigabytes or run for hours. */
#define GRAFT_MAX_LAYERS 100000
#define GRAFT_MAX_PARAMS ((size_t)1 << 31)       /* 8 GiB of float32 weights */
#define GRAFT_MAX_LAYER_OUTPUT ((size_t)1 << 31) /* floats per sample */

struct graft_plan;

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
    bool grads_lent; /* grads is another owner's memory (dist/: the ranks' shared window) */

    /* Compiled state. */
    bool compiled;
    graft_compile_cfg compile;
    float *opt_m, *opt_v; /* optimizer slots, parallel to weights */
    long opt_iterations;
    graft_rng rng;
    /* Training noise's key and sample ids for the current batch; set by fit
     * for each global batch (noise_set), else drawn from rng by each
     * training forward. */
    graft_noise noise;
    bool noise_set;

    /* The execution plan for batches of up to `capacity` (0: none; the
     * graph changed). The plan (exec/plan.c) owns its steps and frees them
     * through plan_free; the model owns the arena and scratch it lays out. */
    struct graft_plan *plan;
    void (*plan_free)(struct graft_plan *plan);
    int capacity;
    float *arena;
    size_t arena_floats;
    float *scratch;
    size_t scratch_floats;
    bool prepared_training;
    /* Boundaries a feature cache reads or fills (exec/plan.c keeps them):
     * no inference-only fused step may span one. */
#define GRAFT_MAX_KEPT_SPLITS 8
    int kept_split[GRAFT_MAX_KEPT_SPLITS];
    int n_kept_splits;
    int planned_threads;    /* graft_threads() at planning: per-thread scratch is sized by it */
    bool want_input_grad;   /* tests: also compute dL/d(input) */
    /* graft_model_set_weights_constant's promise in force, numbered from 1
     * (promises_made), 0 for none: a kept form of a kernel is checked once
     * under each promise, so that weights written between two promises are
     * seen. graft's own writers of the weights (init, load, fit, a
     * checkpoint's state) withdraw it. */
    uint64_t weights_constant, promises_made;
    /* graft_model_quantize_int8's run (quant/int8.h), valid while the
     * promise it made (int8_promise) is the one in force; NULL: none.
     * Freed through int8_free, as the plan through plan_free. */
    struct graft_int8 *int8;
    void (*int8_free)(struct graft_int8 *q);
    uint64_t int8_promise;
    int lowest_grad_layer;  /* first layer whose backward runs; n_layers when none */
    uint64_t init_seed;
    bool skip_init; /* layers placed now are not drawn (graft_zoo_cfg.skip_init) */
    volatile sig_atomic_t stop_requested;
    /* Data parallelism (dist/): called by backward after each step, when the
     * weight gradients of every layer >= `layer` are final. NULL: none. */
    void (*grads_ready)(void *ctx, int layer);
    void *grads_ready_ctx;
    /* Synchronized BatchNormalization's sums over the ranks; NULL: none. */
    const graft_allsum *allsum;
    /* Kernels split by rows among the ranks (layers/layer.h); NULL: none. */
    graft_row_split *split;
    /* GRAFT_PROFILE=1: seconds per layer and pass, printed when the model is
     * freed (layer i's forward at [2i], backward at [2i+1]; the optimizer
     * last). NULL otherwise. A slot's first time after each plan goes to
     * profile_first instead (seen marks it): it takes the first page faults
     * of the plan's buffers and oneDNN's JIT, which in a short run weighed
     * as much as a large step's work (docs/PERFORMANCE.md). */
    bool profiling;
    int profile_slots;
    double *profile, *profile_first;
    bool *profile_seen;
};

/* The activations' arena of `floats` floats in place of the old one (false:
 * out of memory, no arena); freed, whichever allocator made it. */
bool graft_arena_alloc(graft_model *m, size_t floats);
void graft_arena_free(graft_model *m);
/* Layer i's name, for the name index (core/names.h). */
const char *graft_model_layer_name_at(const void *m, int i);
/* The layer whose output is the model's. */
int graft_model_output_index(const graft_model *m);
/* The one layer that reads layer i's output, or -1 (none, several, or i is
 * the model's output). */
int graft_model_sole_reader(const graft_model *m, int i);
/* Points every weight view at the current weight and gradient arrays. */
void graft_model_bind_weights(graft_model *m);
/* Makes `grads` (n_weight_floats, owned by the caller, who gives it back
 * with NULL before freeing it) the gradient array; NULL: none, made again at
 * the next training step. The model's own array is freed. */
void graft_model_lend_grads(graft_model *m, float *grads);
/* Grows the weight array for a newly built layer's weights and draws them (graph/weights.c). */
graft_status graft_model_place_weights(graft_model *m, graft_layer *l);
/* GRAFT_PROFILE: adds seconds to a slot of m->profile: 2i and 2i+1 are layer
 * i's forward and backward, then these, after the layers. */
typedef enum {
    GRAFT_PROFILE_OPTIMIZER,
    GRAFT_PROFILE_DATA,      /* waiting for a decoded batch */
    GRAFT_PROFILE_RANK_SUMS, /* ranks' per-step sums: waiting for the slowest rank */
    GRAFT_PROFILE_ALLREDUCE, /* gradient allreduce left after backward */
    GRAFT_PROFILE_INT8,      /* graft_model_quantize_int8's run, all its layers */
    GRAFT_PROFILE_N_EXTRA
} graft_profile_extra;
void graft_profile_add(graft_model *m, int slot, double seconds);
/* A new plan: every slot's next time is again a first one. */
void graft_profile_replanned(graft_model *m);
void graft_profile_add_extra(graft_model *m, graft_profile_extra what, double seconds);

#endif
