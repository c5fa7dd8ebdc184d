/*
 * The model as a graph: its layers in Keras's order, all weights in one
 * array, the compiled training state, and the buffers the plan (exec/)
 * lays out. Building, weights, accessors and the summary live here; the
 * plan and the passes over it in exec/.
 */
#ifndef GRAFT_GRAPH_H
#define GRAFT_GRAPH_H

#include "layers/layer.h"

#include <signal.h>

struct graft_plan;

struct graft_model {
    char name[GRAFT_NAME_MAX];
    graft_status status;
    char error[512];
    int n_layers, cap_layers;
    graft_layer **layers;
    int output; /* layer index; -1: last */

    /* All weights in one array (kann): saving, loading and optimizing are loops. */
    size_t n_weight_floats;
    float *weights, *grads;

    /* Compiled state. */
    bool compiled;
    graft_compile_cfg compile;
    float *opt_m, *opt_v; /* optimizer slots, parallel to weights */
    long opt_iterations;
    graft_rng rng;

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
    int planned_threads;    /* graft_threads() at planning: per-thread scratch is sized by it */
    bool want_input_grad;   /* tests: also compute dL/d(input) */
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

/* The layer whose output is the model's. */
int graft_model_output_index(const graft_model *m);
/* Points every weight view at the current weight and gradient arrays. */
void graft_model_bind_weights(graft_model *m);
/* Grows the weight array for a newly built layer's weights and draws them (graph/weights.c). */
graft_status graft_model_place_weights(graft_model *m, graft_layer *l);
/* GRAFT_PROFILE: adds seconds to a slot of m->profile. */
void graft_profile_add(graft_model *m, int slot, double seconds);

#endif
