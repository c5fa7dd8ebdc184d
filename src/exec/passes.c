/*
 * The passes: forward runs the plan's steps in order, backward in reverse.
 * A one-layer step calls the layer's own forward and backward with its
 * tensors; a fused step calls its step file.
 */
#include "exec/plan.h"
#include "quant/int8.h"

#include <string.h>

#ifdef GRAFT_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define MAX_FANIN 64

void graft_model_bind_input(graft_model *m, const float *x)
{
    m->layers[0]->out = (float *)x; /* read only: no layer writes its input */
}

/* The forward view of layer l: its inputs, its output and aux. */
static graft_fwd fwd_of(graft_model *m, const graft_layer *l, int n, bool training, const float **in)
{
    for (int j = 0; j < l->n_inputs; j++) in[j] = m->layers[l->inputs[j]]->out;
    return (graft_fwd){n, training, in, l->out, l->aux, m->scratch, &m->noise, NULL, m->allsum,
                       m->split, m->weights_constant};
}

static void layer_forward(graft_model *m, graft_layer *l, int n, bool training)
{
    const float *in[MAX_FANIN];
    graft_fwd f = fwd_of(m, l, n, training, in);
    l->ops->forward(l, &f);
}

/* Under AddressSanitizer, the model's scratch past what step s declared
 * (graft_step.scratch) is poisoned while it runs: a step that writes past
 * its own part (the largest step's decides the allocation, so the write
 * stayed inside it) is stopped there, naming the step's code. */
#ifdef GRAFT_ASAN
static void scratch_fence(const graft_model *m, const graft_step *s, bool on)
{
    const size_t own = (s->scratch + 1) & ~(size_t)1; /* whole 8-byte granules */
    if (!m->scratch || own >= m->scratch_floats) return;
    if (on) ASAN_POISON_MEMORY_REGION(m->scratch + own, (m->scratch_floats - own) * sizeof(float));
    else ASAN_UNPOISON_MEMORY_REGION(m->scratch + own, (m->scratch_floats - own) * sizeof(float));
}
#else
static void scratch_fence(const graft_model *m, const graft_step *s, bool on)
{
    (void)m, (void)s, (void)on;
}
#endif

static void step_run(graft_model *m, graft_step *s, int n, bool training)
{
    graft_layer *first = m->layers[s->layer[0]];
    const float *in[MAX_FANIN];
    graft_fwd f = fwd_of(m, first, n, training, in);
    switch (s->kind) {
    case GRAFT_STEP_LAYER: first->ops->forward(first, &f); break;
    case GRAFT_STEP_CONV_EPILOGUE: graft_step_conv_epilogue_forward(m, s, &f); break;
    case GRAFT_STEP_PAD_DW: graft_step_pad_dw_forward(m, s, &f); break;
    case GRAFT_STEP_PAD_POOL: graft_step_pad_pool_forward(m, s, &f); break;
    case GRAFT_STEP_ALIAS: break; /* its output is its input's buffer */
    case GRAFT_STEP_CONCAT_APPEND: graft_step_concat_append_forward(m, s, &f); break;
    case GRAFT_STEP_CONV_POOL: graft_step_conv_pool_forward(m, s, &f); break;
    case GRAFT_STEP_WINOGRAD_POOL: graft_step_winograd_pool_forward(m, s, &f); break;
    case GRAFT_STEP_DW_BLOCK: graft_step_dw_block_forward(m, s, &f); break;
    case GRAFT_STEP_POINTWISE: graft_step_pointwise_forward(m, s, &f); break;
    case GRAFT_STEP_RELU_POOL:
        first->ops->forward(first, &f);
        layer_forward(m, m->layers[s->layer[1]], n, training);
        break;
    }
}

static void step_forward(graft_model *m, graft_step *s, int n, bool training)
{
    scratch_fence(m, s, true);
    step_run(m, s, n, training);
    scratch_fence(m, s, false);
}

/* Steps [k0, k1) of a depth-first run over images [c0, c0 + nc): the
 * buffers it keeps whole are entered at the chunk's first image, the
 * chunk-sized ones at their start. */
static void chunk_forward(graft_model *m, const graft_segment *g, int c0, int nc, bool training)
{
    struct graft_plan *p = m->plan;
    for (int i = 0; i < p->n_layers; i++)
        if (p->whole[i] && !p->chunk[p->buf_of[i]])
            m->layers[i]->out = p->whole[i] + (size_t)c0 * graft_shape_size(&m->layers[i]->out_shape);
    for (int k = g->first; k < g->end; k++) {
        graft_step *s = &p->steps[k];
        double t0 = m->profiling ? graft_now() : 0;
        step_forward(m, s, nc, training);
        if (m->profiling) graft_profile_add(m, 2 * s->layer[s->n - 1], graft_now() - t0);
    }
}

static void segment_forward(graft_model *m, const graft_segment *g, int n, bool training)
{
    struct graft_plan *p = m->plan;
    for (int i = 0; i < p->n_layers; i++) p->whole[i] = m->layers[i]->out;
    for (int c0 = 0; c0 < n; c0 += g->images)
        chunk_forward(m, g, c0, n - c0 < g->images ? n - c0 : g->images, training);
    for (int i = 0; i < p->n_layers; i++) m->layers[i]->out = p->whole[i];
}

graft_status graft_model_forward_range(graft_model *m, const float *x, int n, bool training,
                                       int first, int last)
{
    graft_status st = graft_model_prepare(m, n, training);
    if (st != GRAFT_OK) return st;
    if (x) graft_model_bind_input(m, x);
    if (training && !m->noise_set) m->noise = (graft_noise){graft_rng_next(&m->rng), NULL, 0};
    if (first < 1) first = 1;
    if (last > m->n_layers) last = m->n_layers;
    /* graft_model_quantize_int8's run takes the layers below its boundary,
     * while its promise of constant weights is in force. */
    if (m->int8 && m->weights_constant != m->int8_promise) graft_model_drop_int8(m);
    if (m->int8 && !training && first == 1 && x) {
        const int b = graft_int8_boundary(m->int8);
        float *out = m->layers[b - 1]->out;
        if (!out)
            return graft_fail(GRAFT_ESTATE, "model '%s': the plan gave layer '%s', where the "
                              "int8 run ends, no buffer", m->name, m->layers[b - 1]->name);
        double t0 = m->profiling ? graft_now() : 0;
        st = graft_int8_forward(m->int8, x, n, out);
        if (st != GRAFT_OK) return st;
        if (m->profiling) graft_profile_add_extra(m, GRAFT_PROFILE_INT8, graft_now() - t0);
        first = b;
    }
    struct graft_plan *p = m->plan;
    for (int k = 0; k < p->n_steps; k++)
        for (int q = 0; q < p->steps[k].n; q++)
            if (m->layers[p->steps[k].layer[q]]->n_inputs > MAX_FANIN)
                return graft_fail(GRAFT_EUNSUPPORTED, "layer '%s' has more than %d inputs",
                                  m->layers[p->steps[k].layer[q]]->name, MAX_FANIN);
    int g = 0; /* the next depth-first run */
    for (int k = 0; k < p->n_steps; k++) {
        graft_step *s = &p->steps[k];
        const int i = s->layer[0];
        while (g < p->n_segments && p->segments[g].end <= k) g++;
        const graft_segment *sg = g < p->n_segments && p->segments[g].first <= k ? &p->segments[g] : NULL;
        if (i < first || i >= last) continue;
        if (sg) {
            /* Its inner buffers hold a chunk: the run goes whole or not at all. */
            const int lo = p->steps[sg->first].layer[0], hi = p->steps[sg->end - 1].layer[0];
            if (k != sg->first || lo < first || hi >= last)
                return graft_fail(GRAFT_ESTATE,
                                  "model '%s': layers %d..%d split a depth-first run of steps "
                                  "(layers '%s' .. '%s') the plan did not keep a boundary in",
                                  m->name, first, last, m->layers[lo]->name, m->layers[hi]->name);
            segment_forward(m, sg, n, training);
            k = sg->end - 1;
            continue;
        }
        double t0 = m->profiling ? graft_now() : 0;
        step_forward(m, s, n, training);
        if (m->profiling) graft_profile_add(m, 2 * s->layer[s->n - 1], graft_now() - t0);
    }
    return GRAFT_OK;
}

graft_status graft_model_forward(graft_model *m, const float *x, int n, bool training)
{
    return graft_model_forward_range(m, x, n, training, 1, m->n_layers);
}

void graft_plan_layer_backward(graft_model *m, graft_layer *l, int n, graft_backward_fn fn,
                               void *ctx)
{
    bool *written = m->plan->grad_written;
    const float *in[MAX_FANIN];
    float *din[MAX_FANIN];
    bool acc[MAX_FANIN];
    if (!written[l->index]) /* a branch that does not reach the output */
        memset(l->dout, 0, (size_t)n * graft_shape_size(&l->out_shape) * sizeof(float));
    for (int j = 0; j < l->n_inputs; j++) {
        graft_layer *src = m->layers[l->inputs[j]];
        in[j] = src->out;
        din[j] = src->requires_grad ? src->dout : NULL;
        acc[j] = src->requires_grad && written[src->index];
        if (src->requires_grad) written[src->index] = true;
    }
    graft_bwd b = {n, true, in, l->out, l->dout, din, acc, graft_layer_trains_weights(l),
                   l->aux, m->scratch, m->allsum, m->split};
    double t0 = m->profiling ? graft_now() : 0;
    if (fn) fn(l, &b, ctx);
    else l->ops->backward(l, &b);
    if (m->profiling) graft_profile_add(m, 2 * l->index + 1, graft_now() - t0);
}

graft_status graft_model_backward(graft_model *m, const float *dout, int n)
{
    if (!m->prepared_training || m->capacity < n)
        return graft_fail(GRAFT_ESTATE, "backward without a training forward pass");
    const int L = m->n_layers, out = graft_model_output_index(m);
    graft_layer *ol = m->layers[out];
    if (!ol->requires_grad) return GRAFT_OK; /* nothing trains */
    struct graft_plan *p = m->plan;
    memset(p->grad_written, 0, (size_t)L * sizeof(bool)); /* sized by prepare: no allocation per step */
    memcpy(ol->dout, dout, (size_t)n * graft_shape_size(&ol->out_shape) * sizeof(float));
    p->grad_written[out] = true;
    for (int k = p->n_steps - 1; k >= 0; k--) {
        graft_step *s = &p->steps[k];
        const int i = s->layer[0];
        if (i < m->lowest_grad_layer || i == 0) continue;
        switch (s->kind) {
        case GRAFT_STEP_LAYER:
            if (m->layers[i]->requires_grad) graft_plan_layer_backward(m, m->layers[i], n, NULL, NULL);
            break;
        case GRAFT_STEP_CONV_EPILOGUE: /* planned only where nothing needs a gradient */
        case GRAFT_STEP_DW_BLOCK: /* planned only where nothing needs a gradient */
        case GRAFT_STEP_PAD_DW:
        case GRAFT_STEP_PAD_POOL:
        case GRAFT_STEP_ALIAS:
        case GRAFT_STEP_CONCAT_APPEND:
        case GRAFT_STEP_POINTWISE: break;
        case GRAFT_STEP_CONV_POOL: graft_step_conv_pool_backward(m, s, n); break;
        case GRAFT_STEP_WINOGRAD_POOL: graft_step_winograd_pool_backward(m, s, n); break;
        case GRAFT_STEP_RELU_POOL: graft_step_relu_pool_backward(m, s, n); break;
        }
        if (m->grads_ready) {
            double t0 = m->profiling ? graft_now() : 0;
            m->grads_ready(m->grads_ready_ctx, i);
            if (m->profiling) graft_profile_add_extra(m, GRAFT_PROFILE_ALLREDUCE, graft_now() - t0);
        }
    }
    return GRAFT_OK;
}
