/*
 * graft_model_prepare: which outputs need a gradient, the steps (fusions
 * found by the step files' matches), and the buffers: one arena for every
 * step's outputs, aux buffers and gradients, laid out by liveness so that
 * buffers whose lives do not overlap share memory.
 */
#include "exec/plan.h"
#include "quant/int8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ arena layout */

/* A first-fit allocator over offsets, for planning the activation arena. */
typedef struct {
    size_t off, len;
} block;

typedef struct {
    block *free_list;
    int n_free;
    size_t top, peak; /* top falls as buffers are released; peak is the arena's size */
} planner;

static size_t plan_alloc(planner *p, size_t len)
{
    len = (len + 15) & ~(size_t)15; /* 64-byte alignment for every buffer */
    for (int i = 0; i < p->n_free; i++) {
        if (p->free_list[i].len >= len) {
            size_t off = p->free_list[i].off;
            p->free_list[i].off += len;
            p->free_list[i].len -= len;
            return off;
        }
    }
    size_t off = p->top;
    p->top += len;
    if (p->top > p->peak) p->peak = p->top;
    return off;
}

static void plan_release(planner *p, size_t off, size_t len)
{
    len = (len + 15) & ~(size_t)15;
    /* Insert sorted and merge neighbours, so big buffers find room again. */
    int i = 0;
    while (i < p->n_free && p->free_list[i].off < off) i++;
    memmove(&p->free_list[i + 1], &p->free_list[i], (size_t)(p->n_free - i) * sizeof(block));
    p->free_list[i] = (block){off, len};
    p->n_free++;
    if (i + 1 < p->n_free && p->free_list[i].off + p->free_list[i].len == p->free_list[i + 1].off) {
        p->free_list[i].len += p->free_list[i + 1].len;
        memmove(&p->free_list[i + 1], &p->free_list[i + 2],
                (size_t)(p->n_free - i - 2) * sizeof(block));
        p->n_free--;
    }
    if (i > 0 && p->free_list[i - 1].off + p->free_list[i - 1].len == p->free_list[i].off) {
        p->free_list[i - 1].len += p->free_list[i].len;
        memmove(&p->free_list[i], &p->free_list[i + 1], (size_t)(p->n_free - i - 1) * sizeof(block));
        p->n_free--;
    }
    if (p->n_free > 0) {
        block *last = &p->free_list[p->n_free - 1];
        if (last->off + last->len == p->top) {
            p->top = last->off;
            p->n_free--;
        }
    }
}

/* ------------------------------------------------------------ steps */


static void plan_free(struct graft_plan *p)
{
    if (!p) return;
    if (p->steps)
        for (int k = 0; k < p->n_steps; k++) free(p->steps[k].bn_params);
    free(p->steps);
    free(p->step_of);
    free(p->has_out);
    free(p->buf_of);
    free(p->row_floats);
    free(p->grad_written);
    free(p->segments);
    free(p->chunk);
    free(p->whole);
    free(p);
}

static bool splittable(const graft_step *s);
static bool spans_kept_split(const graft_model *m, const graft_step *s);
static bool kept_split_between(const graft_model *m, const graft_step *a, const graft_step *b);

/* Whether layer i runs as an ALIAS step: it hands its input on unchanged in
 * this pass, nothing needs its gradient, and its input has a buffer of the
 * plan's (the model's input is the caller's array). */
static bool passes_through(const graft_model *m, const struct graft_plan *p, int i, bool training)
{
    const graft_layer *l = m->layers[i];
    if (l->requires_grad || l->n_inputs != 1 || !l->ops->passes_through ||
        !l->ops->passes_through(l, training))
        return false;
    const int src = l->inputs[0];
    return p->buf_of[src] > 0 && p->has_out[src];
}

/* The steps, in graph order of their first layers. Each layer not yet in a
 * step starts one: the first fusion whose match takes it, else its own. */
static graft_status plan_steps(graft_model *m, struct graft_plan *p, bool training, int cap)
{
    const int L = m->n_layers;
    /* GRAFT_NO_CONV_POOL=1, GRAFT_NO_WINOGRAD_POOL=1 keep those pairs apart
     * (to compare numerics). */
    const bool conv_pool = !graft_env_on(GRAFT_ENV_NO_CONV_POOL);
    const bool wino_pool = !graft_env_on(GRAFT_ENV_NO_WINOGRAD_POOL);
    for (int i = 0; i < L; i++) p->step_of[i] = -1;
    for (int i = 0; i < L; i++) {
        if (p->step_of[i] >= 0) continue;
        graft_step s = {.kind = GRAFT_STEP_LAYER, .n = 1, .layer = {i}, .bn = -1};
        /* The pools' fusions before POINTWISE: a 1x1 ReLU convolution read
         * by a max pool runs the same kernel in training and inference. */
        if (i > 0 && passes_through(m, p, i, training))
            s.kind = GRAFT_STEP_ALIAS;
        else if (i > 0 && !graft_step_dw_block_match(m, i, training, &s) &&
            !(conv_pool && graft_step_conv_pool_match(m, i, &s)) &&
            !(wino_pool && graft_step_winograd_pool_match(m, i, training, cap, &s)) &&
            !graft_step_pointwise_match(m, i, training, p->step_of, &s) &&
            !graft_step_pad_dw_match(m, i, training, &s) &&
            !graft_step_pad_pool_match(m, i, &s) &&
            !graft_step_conv_epilogue_match(m, i, training, &s))
            graft_step_relu_pool_match(m, i, training, &s);
        if (splittable(&s) && spans_kept_split(m, &s))
            s = (graft_step){.kind = GRAFT_STEP_LAYER, .n = 1, .layer = {i}, .bn = -1};
        if (s.bn >= 0) {
            int C = m->layers[i]->out_shape.dim[m->layers[i]->out_shape.rank - 1];
            s.bn_params = malloc(3 * (size_t)C * sizeof(float));
            if (!s.bn_params) return graft_fail(GRAFT_ENOMEM, "out of memory planning steps");
            s.epi.mean = s.bn_params;
            s.epi.scale = s.bn_params + C;
            s.epi.shift = s.bn_params + 2 * C;
        }
        if (s.kind == GRAFT_STEP_DW_BLOCK || s.kind == GRAFT_STEP_POINTWISE) {
            size_t pf = s.kind == GRAFT_STEP_DW_BLOCK ? graft_step_dw_block_param_floats(m, &s)
                                                      : graft_step_pointwise_param_floats(m, &s);
            s.bn_params = malloc(pf * sizeof(float));
            if (!s.bn_params) return graft_fail(GRAFT_ENOMEM, "out of memory planning steps");
        }
        for (int k = 0; k < s.n; k++) {
            int j = s.layer[k];
            p->step_of[j] = p->n_steps;
            p->has_out[j] = true;
            p->buf_of[j] = s.kind == GRAFT_STEP_CONV_EPILOGUE ? i
                           : (s.kind == GRAFT_STEP_PAD_DW || s.kind == GRAFT_STEP_PAD_POOL) && k > 0
                               ? s.layer[1]
                           : s.kind == GRAFT_STEP_ALIAS ? p->buf_of[m->layers[j]->inputs[0]]
                                                        : j;
            /* Only the output of a DW_BLOCK or POINTWISE step exists: its inner
             * tensors live in cache or in registers. */
            if (s.kind == GRAFT_STEP_DW_BLOCK || s.kind == GRAFT_STEP_POINTWISE)
                p->has_out[j] = k == s.n - 1;
        }
        /* The fused convolution's output never exists: the pool's pass
         * computes it; nor does the padded tensor of a PAD_DW or PAD_POOL step. */
        if (s.kind == GRAFT_STEP_CONV_POOL || s.kind == GRAFT_STEP_WINOGRAD_POOL ||
            s.kind == GRAFT_STEP_PAD_DW || s.kind == GRAFT_STEP_PAD_POOL)
            p->has_out[i] = false;
        p->steps[p->n_steps++] = s;
    }
    graft_status st = graft_step_concat_chains(m, p);
    /* A chain's last member now lives in its first member's buffer, and so
     * does an ALIAS of it. */
    for (int k = 0; k < p->n_steps && st == GRAFT_OK; k++)
        if (p->steps[k].kind == GRAFT_STEP_ALIAS) {
            const int j = p->steps[k].layer[0];
            p->buf_of[j] = p->buf_of[m->layers[j]->inputs[0]];
        }
    return st;
}

/* DW_BLOCK, POINTWISE, PAD_DW and PAD_POOL steps keep no inner tensors, so
 * a feature cache's boundary (a kept split) inside one breaks the step
 * there instead. */
static bool splittable(const graft_step *s)
{
    return s->kind == GRAFT_STEP_DW_BLOCK || s->kind == GRAFT_STEP_POINTWISE ||
           s->kind == GRAFT_STEP_PAD_DW || s->kind == GRAFT_STEP_PAD_POOL;
}

static bool step_spans(const graft_step *s, int k)
{
    int lo = s->layer[0], hi = s->layer[0];
    for (int q = 1; q < s->n; q++) {
        if (s->layer[q] < lo) lo = s->layer[q];
        if (s->layer[q] > hi) hi = s->layer[q];
    }
    return lo < k && hi >= k;
}

bool graft_plan_splits_at(const graft_model *m, int k)
{
    const struct graft_plan *p = m->plan;
    if (!p || p->n_layers != m->n_layers || m->capacity == 0) return true;
    for (int s = 0; s < p->n_steps; s++)
        if (!splittable(&p->steps[s]) && step_spans(&p->steps[s], k)) return false;
    return true;
}

bool graft_plan_keep_split(graft_model *m, int k)
{
    for (int i = 0; i < m->n_kept_splits; i++)
        if (m->kept_split[i] == k) return true;
    if (m->n_kept_splits == GRAFT_MAX_KEPT_SPLITS) return false;
    m->kept_split[m->n_kept_splits++] = k;
    const struct graft_plan *p = m->plan;
    if (p && p->n_layers == m->n_layers && m->capacity > 0) {
        for (int s = 0; s < p->n_steps; s++)
            if (step_spans(&p->steps[s], k)) m->capacity = 0; /* plan again */
        if (graft_step_concat_crosses(m, p, k)) m->capacity = 0;
        for (int g = 0; g < p->n_segments; g++)
            if (kept_split_between(m, &p->steps[p->segments[g].first],
                                   &p->steps[p->segments[g].end - 1]))
                m->capacity = 0;
    }
    return true;
}

static bool spans_kept_split(const graft_model *m, const graft_step *s)
{
    for (int i = 0; i < m->n_kept_splits; i++)
        if (step_spans(s, m->kept_split[i])) return true;
    return false;
}

/* ------------------------------------------------------------ depth-first runs */

/* A step a depth-first run may take (plan.h's graft_segment): one that
 * needs no gradient and treats each image alone (every inference step but
 * the fused pools, whose code bytes are for training; in a training pass
 * the frozen layers' steps but those of layers that draw noise or
 * normalise by the batch), whose
 * convolution runs the same algorithm over `images` images as over the
 * plan's batch (so the bits do not depend on the run) and not by Winograd,
 * and whose weights, read again for every chunk, weigh no more than the
 * output the chunk keeps in cache. */
static bool chunkable(const graft_model *m, const struct graft_plan *p, const graft_step *s,
                      bool training, int images, int cap)
{
    if (s->layer[0] == 0) return false; /* the input is the caller's array */
    for (int q = 0; q < s->n; q++) {
        const graft_layer *l = m->layers[s->layer[q]];
        if (l->requires_grad) return false;
        /* A run enters its whole buffers at a chunk's first image by the
         * layer's own image size; a CONCAT_APPEND chain's prefix has another. */
        for (int j = 0; j < l->n_inputs; j++)
            if (graft_step_concat_view(m, p, l->inputs[j])) return false;
    }
    switch (s->kind) {
    case GRAFT_STEP_LAYER: {
        /* In training a layer may draw noise (Dropout), or normalise by the
         * batch (a BatchNormalization that trains): what a feature cache
         * may not keep either. */
        const graft_layer *l = m->layers[s->layer[0]];
        if (training && l->ops->stochastic && l->ops->stochastic(l)) return false;
        break;
    }
    case GRAFT_STEP_CONV_EPILOGUE:
    case GRAFT_STEP_PAD_DW:
    case GRAFT_STEP_PAD_POOL:
    case GRAFT_STEP_DW_BLOCK:
    case GRAFT_STEP_POINTWISE:
    case GRAFT_STEP_ALIAS: break;
    default: return false;
    }
    size_t weights = 0;
    for (int q = 0; q < s->n; q++) {
        const graft_layer *l = m->layers[s->layer[q]];
        const char *algo = graft_conv2d_algorithm(l, training, images);
        if (algo != graft_conv2d_algorithm(l, training, cap)) return false;
        /* Winograd's 36 small GEMMs run 1.2-2.7x slower an image over two
         * images than over 32 (ResNet50's 3x3s: docs/PERFORMANCE.md). */
        if (algo && strstr(algo, "Winograd")) return false;
        for (int k = 0; k < l->n_weights; k++) weights += graft_shape_size(&l->weights[k].shape);
    }
    return weights <= (size_t)images * graft_shape_size(&m->layers[s->layer[s->n - 1]]->out_shape);
}

/* Floats an image of step k reads from earlier steps and writes. */
static size_t step_floats(const graft_model *m, const struct graft_plan *p, int k)
{
    const graft_step *s = &p->steps[k];
    size_t n = graft_shape_size(&m->layers[s->layer[s->n - 1]]->out_shape);
    for (int q = 0; q < s->n; q++) {
        const graft_layer *l = m->layers[s->layer[q]];
        for (int j = 0; j < l->n_inputs; j++)
            if (p->step_of[l->inputs[j]] != k) n += graft_shape_size(&m->layers[l->inputs[j]]->out_shape);
    }
    return n;
}

bool graft_plan_split_between(const graft_model *m, int a, int b)
{
    for (int i = 0; i < m->n_kept_splits; i++)
        if (a < m->kept_split[i] && b >= m->kept_split[i]) return true;
    return false;
}

/* Whether a kept split falls between steps a and b. */
static bool kept_split_between(const graft_model *m, const graft_step *a, const graft_step *b)
{
    return graft_plan_split_between(m, a->layer[0], b->layer[0]);
}

/* Layer i's output has a buffer of its own (not the model's output, which
 * the caller's array holds): a run may hold it for a chunk. */
static bool own_buffer(const struct graft_plan *p, int i, int out)
{
    return p->has_out[i] && p->buf_of[i] == i && i != out;
}

/* The depth-first runs a plan may take: the longest runs of two or
 * more chunkable steps, each one's inputs and output for the whole batch
 * more than half the last-level cache and for `images` images at most
 * 3/8 of it (ResNet50's 56x56x256 residual steps, 14 MB for two images,
 * ran slower depth first) (GRAFT_DEPTH_FIRST=1: any size; =0: none),
 * `images` the threads (one image each). runs_keep picks among them. */
static graft_status plan_segments(const graft_model *m, struct graft_plan *p, bool training,
                                  int cap)
{
    const char *env = graft_env(GRAFT_ENV_DEPTH_FIRST);
    const bool off = env && strcmp(env, "0") == 0, any = env && strcmp(env, "1") == 0;
    const int images = graft_threads();
    if (off || cap < 2 * images) return GRAFT_OK;
    graft_status st = graft_last_cache(&p->cache);
    if (st != GRAFT_OK) return st;
    p->any_run = any;
    const size_t llc = p->cache.bytes, half_llc = llc / 2;
    p->segments = calloc((size_t)p->n_steps / 2 + 1, sizeof *p->segments);
    if (!p->segments) return graft_fail(GRAFT_ENOMEM, "out of memory planning steps");
    int run = -1;
    for (int k = 0; k <= p->n_steps; k++) {
        const graft_step *s = k < p->n_steps ? &p->steps[k] : NULL;
        bool take = s && chunkable(m, p, s, training, images, cap);
        if (take && !any) {
            const size_t bytes = step_floats(m, p, k) * sizeof(float);
            take = cap * bytes > half_llc && images * bytes <= llc / 8 * 3;
        }
        if (run >= 0 && (!take || kept_split_between(m, &p->steps[run], s))) {
            if (k - run >= 2) p->segments[p->n_segments++] = (graft_segment){run, k, images};
            run = -1;
        }
        if (take && run < 0) run = k;
    }
    return GRAFT_OK;
}

/* The runs marked in `keep` applied to the plan: their steps in_run, the
 * buffers read only inside a run held for a chunk's images, and every
 * buffer a run reads or writes alive to its end (the next chunk runs its
 * first steps again, so nothing it touches may give its memory to a later
 * step of the run). last_use starts from `base`, the liveness without runs. */
static void runs_apply(const graft_model *m, struct graft_plan *p, const bool *keep,
                       const int *base, int *last_use, int out)
{
    memcpy(last_use, base, (size_t)p->n_layers * sizeof(int));
    memset(p->chunk, 0, (size_t)p->n_layers * sizeof(int));
    for (int k = 0; k < p->n_steps; k++) p->steps[k].in_run = false;
    for (int g = 0; g < p->n_segments; g++) {
        if (!keep[g]) continue;
        const graft_segment sg = p->segments[g];
        for (int k = sg.first; k < sg.end; k++) {
            p->steps[k].in_run = true;
            for (int q = 0; q < p->steps[k].n; q++) {
                const graft_layer *l = m->layers[p->steps[k].layer[q]];
                if (own_buffer(p, l->index, out) && last_use[l->index] < sg.end)
                    p->chunk[l->index] = sg.images;
                if (last_use[l->index] < sg.end - 1) last_use[l->index] = sg.end - 1;
                for (int j = 0; j < l->n_inputs; j++) {
                    const int src = p->buf_of[l->inputs[j]];
                    if (last_use[src] < sg.end - 1) last_use[src] = sg.end - 1;
                }
            }
        }
    }
}

int graft_plan_depth_first(const graft_model *m, int i)
{
    const struct graft_plan *p = m->plan;
    if (!p || p->n_layers != m->n_layers || m->capacity == 0 || i < 0 || i >= p->n_layers)
        return 0;
    for (int g = 0; g < p->n_segments; g++)
        if (p->step_of[i] >= p->segments[g].first && p->step_of[i] < p->segments[g].end)
            return p->segments[g].images;
    return 0;
}

/* ------------------------------------------------------------ prepare */

/* Floats an image of layer i's buffer holds: its output's, or a
 * CONCAT_APPEND chain's width of rows. */
static size_t image_floats(const graft_model *m, const struct graft_plan *p, int i)
{
    const graft_shape *s = &m->layers[i]->out_shape;
    const size_t n = graft_shape_size(s);
    return p->row_floats[i] ? n / (size_t)s->dim[s->rank - 1] * (size_t)p->row_floats[i] : n;
}

size_t graft_plan_row_floats(const graft_model *m, int i)
{
    const struct graft_plan *p = m->plan;
    const graft_shape *s = &m->layers[i]->out_shape;
    return p && p->row_floats[i] ? (size_t)p->row_floats[i] : (size_t)s->dim[s->rank - 1];
}

/* GRAFT_PROFILE=1: what the planner chose, on stderr, once per plan. */
static void plan_print(const graft_model *m, int cap, bool training)
{
    const struct graft_plan *p = m->plan;
    int fused = 0;
    for (int k = 0; k < p->n_steps; k++)
        fused += p->steps[k].kind != GRAFT_STEP_LAYER && p->steps[k].kind != GRAFT_STEP_ALIAS;
    fprintf(stderr, "GRAFT_PROFILE %s: plan for batches of %d, %s, %d threads: %d steps, %d fused\n",
            m->name, cap, training ? "training" : "inference", graft_threads(), p->n_steps, fused);
    if (m->int8 && !training) graft_int8_describe(m->int8, stderr);
    const graft_cache llc = p->cache;
    if (llc.bytes) {
        if (llc.reported)
            fprintf(stderr, "  last-level cache: %zu MiB counted (%s said %zu MiB: taken as a "
                    "whole socket's)\n", llc.bytes >> 20, llc.from, llc.reported >> 20);
        else
            fprintf(stderr, "  last-level cache: %zu MiB (%s)\n", llc.bytes >> 20, llc.from);
    }
    for (int k = 0; k < p->n_steps; k++) {
        const graft_step *s = &p->steps[k];
        if (s->kind == GRAFT_STEP_LAYER) {
            /* A convolution's algorithm is chosen per pass (graft_conv2d_algorithm). */
            const graft_layer *l = m->layers[s->layer[0]];
            const char *algo = graft_conv2d_algorithm(l, training, cap);
            if (algo) fprintf(stderr, "  step %-3d %-13s %s: %s\n", k, "layer", l->name, algo);
            continue;
        }
        char what[256] = "";
        if (s->kind == GRAFT_STEP_DW_BLOCK) graft_step_dw_block_describe(m, s, cap, what, sizeof what);
        if (s->kind == GRAFT_STEP_POINTWISE)
            graft_step_pointwise_describe(m, s, cap, what, sizeof what);
        const char *algo = graft_conv2d_algorithm(m->layers[s->layer[0]], training, cap);
        if (s->kind == GRAFT_STEP_PAD_DW) algo = "pad skipped by the depthwise kernel";
        if (s->kind == GRAFT_STEP_PAD_POOL)
            snprintf(what, sizeof what, "the pool reads the padding as zeros");
        if (s->kind == GRAFT_STEP_CONCAT_APPEND) {
            const int i = s->layer[0], f = p->buf_of[i];
            const graft_layer *l = m->layers[i];
            const int c = l->out_shape.dim[2];
            const int from = f == i ? 0 : m->layers[l->inputs[0]]->out_shape.dim[2];
            snprintf(what, sizeof what, "channels %d..%d of a %d-wide buffer in place (%s's)", from,
                     c - 1, p->row_floats[i], m->layers[f]->name);
        }
        if (s->kind == GRAFT_STEP_CONV_EPILOGUE || s->kind == GRAFT_STEP_PAD_DW)
            snprintf(what, sizeof what, "%s%s%s%s%s%s", algo ? algo : "", algo ? " " : "",
                     s->epi.bn ? "+ BN" : "",
                     s->epi.clamp ? " + clamp" : "", s->epi.act != GRAFT_LINEAR ? " + " : "",
                     s->epi.act != GRAFT_LINEAR ? graft_activation_name(s->epi.act) : "");
        fprintf(stderr, "  step %-3d %-13s %s .. %s (%d layers)%s%s\n", k,
                graft_plan_step_kind(m, s->layer[0], NULL), m->layers[s->layer[0]]->name,
                m->layers[s->layer[s->n - 1]]->name, s->n, *what ? ": " : "", what);
    }
    for (int g = 0; g < p->n_segments; g++) {
        const graft_segment *sg = &p->segments[g];
        size_t kept = 0;
        for (int i = 0; i < p->n_layers; i++)
            if (p->chunk[i] && p->step_of[i] >= sg->first && p->step_of[i] < sg->end)
                kept += (size_t)(cap - sg->images) * graft_shape_size(&m->layers[i]->out_shape);
        fprintf(stderr, "  steps %d-%d depth first, %d images at a time: %.1f MiB of their "
                "tensors never exist for the whole batch\n",
                sg->first, sg->end - 1, sg->images, (double)kept * sizeof(float) / 1048576.0);
    }
}

/* A fused pool's aux holds one code byte per output; its scratch is its pass's. */
static size_t aux_floats(const graft_model *m, const graft_step *s, const graft_layer *l, int cap)
{
    if (s->kind == GRAFT_STEP_DW_BLOCK || s->kind == GRAFT_STEP_POINTWISE ||
        s->kind == GRAFT_STEP_ALIAS)
        return 0;
    if ((s->kind == GRAFT_STEP_CONV_POOL || s->kind == GRAFT_STEP_WINOGRAD_POOL) &&
        l->index == s->layer[1])
        return graft_max_pool_code_floats(l, cap);
    return l->ops->aux_floats ? l->ops->aux_floats(l, cap) : 0;
}

static size_t scratch_floats(const graft_model *m, const graft_step *s, const graft_layer *l, int cap)
{
    if (s->kind == GRAFT_STEP_DW_BLOCK)
        return l->index == s->layer[0] ? graft_step_dw_block_scratch_floats(m, s, cap) : 0;
    if (s->kind == GRAFT_STEP_POINTWISE)
        return l->index == s->layer[0] ? graft_step_pointwise_scratch_floats(m, s) : 0;
    if (s->kind == GRAFT_STEP_ALIAS) return 0;
    if (s->kind == GRAFT_STEP_CONV_POOL && l->index == s->layer[1])
        return graft_step_conv_pool_scratch_floats(m, s);
    if (s->kind == GRAFT_STEP_WINOGRAD_POOL && l->index == s->layer[1])
        return graft_max_pool_codes_scratch_floats(l);
    return l->ops->scratch_floats ? l->ops->scratch_floats(l, cap) : 0;
}

/* The forward pass's buffers, step by step, first fit on `pl`: offsets
 * of the outputs and aux areas; and each step's scratch (graft_step.scratch). */
static void forward_layout(const graft_model *m, struct graft_plan *p, int cap,
                           const int *last_use, planner *pl, size_t *offs, size_t *aux_off,
                           size_t *dout_off)
{
#define BUF(i) (p->buf_of[i])
    /* An output's floats: the batch's, or a depth-first run's chunk's. */
#define OUT_FLOATS(i) ((size_t)(p->chunk[i] ? p->chunk[i] : cap) * image_floats(m, p, i))
    for (int k = 0; k < p->n_steps; k++) {
        graft_step *s = &p->steps[k];
        s->scratch = 0;
        for (int q = 0; q < s->n; q++) {
            const int i = s->layer[q];
            graft_layer *l = m->layers[i];
            aux_off[i] = SIZE_MAX;
            dout_off[i] = SIZE_MAX;
            if (BUF(i) != i) {
                offs[i] = offs[BUF(i)];
                continue;
            }
            if (!p->has_out[i]) {
                offs[i] = SIZE_MAX;
                if (s->kind == GRAFT_STEP_CONV_POOL) continue; /* the pool's pass is all of it */
            } else {
                /* The input is the caller's array. */
                offs[i] = i == 0 ? SIZE_MAX : plan_alloc(pl, OUT_FLOATS(i));
            }
            size_t a = aux_floats(m, s, l, cap);
            if (a) aux_off[i] = plan_alloc(pl, a);
            size_t sc = scratch_floats(m, s, l, cap);
            if (sc > s->scratch) s->scratch = sc;
        }
        /* Release what dies here: the step's inputs from outside it, and its
         * outputs nobody reads. */
        for (int q = 0; q < s->n; q++) {
            const graft_layer *l = m->layers[s->layer[q]];
            for (int j = 0; j < l->n_inputs; j++) {
                int src = BUF(l->inputs[j]);
                if (p->step_of[src] == k) continue; /* inside the step */
                bool seen = false; /* Add(x, x) reads one buffer twice, as may two layers of a step */
                for (int r = 0; r <= q && !seen; r++) {
                    const graft_layer *lr = m->layers[s->layer[r]];
                    for (int t = 0; t < (r == q ? j : lr->n_inputs) && !seen; t++)
                        seen = BUF(lr->inputs[t]) == src;
                }
                if (!seen && src > 0 && last_use[src] == k)
                    plan_release(pl, offs[src], OUT_FLOATS(src));
            }
        }
        for (int q = 0; q < s->n; q++) {
            const int i = s->layer[q];
            if (i > 0 && BUF(i) == i && p->has_out[i] && last_use[i] == k) /* read by nobody */
                plan_release(pl, offs[i], OUT_FLOATS(i));
        }
    }
#undef OUT_FLOATS
#undef BUF
}

/* Whether run sg would hold a buffer for a chunk's images: one of its
 * outputs read only inside it. A run that holds none saves no memory and
 * only adds a parallel region per chunk (Xception's middle flow). */
static bool run_holds_chunks(const graft_model *m, const struct graft_plan *p,
                             const graft_segment *sg, const int *base, int out)
{
    for (int k = sg->first; k < sg->end; k++)
        for (int q = 0; q < p->steps[k].n; q++) {
            const int i = p->steps[k].layer[q];
            if (own_buffer(p, i, out) && base[i] < sg->end) return true;
        }
    return false;
}

/* Which candidate runs the plan keeps (GRAFT_DEPTH_FIRST=1: all of them):
 * each in turn that holds a buffer for a chunk, where adding it does not
 * raise the forward pass's peak.
 * A run saves its inner tensors for all but a chunk's images but keeps
 * what it touches alive to its end, and first fit places the rest
 * differently: an estimate of the two let EfficientNetB0's stem at 224
 * raise its peak (docs/PERFORMANCE.md). The layouts are cheap beside the
 * pass; `pl` is left empty for the real one. */
static graft_status runs_choose(const graft_model *m, struct graft_plan *p, int cap,
                                int *last_use, int out, planner *pl, size_t *offs,
                                size_t *aux_off, size_t *dout_off)
{
    if (p->n_segments == 0) return GRAFT_OK;
    const bool any = p->any_run;
    const int L = p->n_layers;
    int *base = malloc((size_t)L * sizeof(int));
    bool *keep = calloc((size_t)p->n_segments, sizeof(bool));
    if (!base || !keep) {
        free(base);
        free(keep);
        return graft_fail(GRAFT_ENOMEM, "out of memory planning steps");
    }
    memcpy(base, last_use, (size_t)L * sizeof(int));
    size_t best = SIZE_MAX;
    for (int g = -1; g < p->n_segments; g++) {
        if (g >= 0) keep[g] = any || run_holds_chunks(m, p, &p->segments[g], base, out);
        if (g >= 0 && !keep[g]) continue;
        if (any && g + 1 < p->n_segments) continue;
        runs_apply(m, p, keep, base, last_use, out);
        *pl = (planner){pl->free_list, 0, 0, 0};
        forward_layout(m, p, cap, last_use, pl, offs, aux_off, dout_off);
        if (any || pl->peak <= best) best = pl->peak;
        else keep[g] = false;
    }
    runs_apply(m, p, keep, base, last_use, out);
    *pl = (planner){pl->free_list, 0, 0, 0};
    int kept = 0;
    for (int g = 0; g < p->n_segments; g++)
        if (keep[g]) p->segments[kept++] = p->segments[g];
    p->n_segments = kept;
    free(base);
    free(keep);
    return GRAFT_OK;
}

graft_status graft_model_prepare(graft_model *m, int n, bool training)
{
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    if (m->n_layers < 1 || strcmp(m->layers[0]->ops->class_name, "InputLayer") != 0)
        return graft_fail(GRAFT_ESTATE, "model '%s' has no InputLayer", m->name);
    if (n <= 0) return graft_fail(GRAFT_EINVAL, "batch size must be positive (got %d)", n);
    if (m->capacity >= n && m->prepared_training == training && m->planned_threads == graft_threads())
        return GRAFT_OK;
    int cap = n > m->capacity ? n : m->capacity;
    const int L = m->n_layers, out = graft_model_output_index(m);

    if (!m->compiled)
        for (int i = 0; i < L; i++) m->layers[i]->trains = m->layers[i]->trainable;

    /* Which outputs need a gradient, and where backward can stop. */
    m->lowest_grad_layer = L;
    for (int i = 0; i < L; i++) {
        graft_layer *l = m->layers[i];
        bool rg = false;
        if (training) {
            rg = i == 0 ? m->want_input_grad : graft_layer_trains_weights(l);
            for (int j = 0; j < l->n_inputs && !rg; j++) rg = m->layers[l->inputs[j]]->requires_grad;
        }
        l->requires_grad = rg;
        if (rg && i < m->lowest_grad_layer) m->lowest_grad_layer = i;
    }

    if (m->plan_free) m->plan_free(m->plan);
    m->plan = NULL;
    m->capacity = 0;
    struct graft_plan *p = calloc(1, sizeof *p);
    if (p) {
        p->n_layers = L;
        p->steps = calloc((size_t)L, sizeof *p->steps);
        p->step_of = calloc((size_t)L, sizeof(int));
        p->has_out = calloc((size_t)L, sizeof(bool));
        p->buf_of = calloc((size_t)L, sizeof(int));
        p->row_floats = calloc((size_t)L, sizeof(int));
        p->grad_written = calloc((size_t)L, sizeof(bool));
        p->chunk = calloc((size_t)L, sizeof(int));
        p->whole = calloc((size_t)L, sizeof(float *));
    }
    m->plan = p;
    m->plan_free = plan_free;
    int *last_use = malloc((size_t)L * sizeof(int));
    block *fl = malloc((size_t)(2 * L + 2) * sizeof(block));
    size_t *offs = malloc((size_t)L * sizeof(size_t));
    size_t *dout_off = malloc((size_t)L * sizeof(size_t));
    size_t *aux_off = malloc((size_t)L * sizeof(size_t));
    graft_status st = GRAFT_OK;
    if (!p || !p->steps || !p->step_of || !p->has_out || !p->buf_of || !p->row_floats || !p->grad_written ||
        !p->chunk || !p->whole || !last_use || !fl || !offs || !dout_off || !aux_off) {
        st = graft_fail(GRAFT_ENOMEM, "out of memory planning buffers");
        goto done;
    }
    for (int i = 0; i < L; i++) offs[i] = dout_off[i] = aux_off[i] = SIZE_MAX;
    if ((st = plan_steps(m, p, training, cap)) != GRAFT_OK) goto done;
    const int S = p->n_steps;
#define BUF(i) (p->buf_of[i])

    /* Liveness, in steps: an output dies after the step of its last reader,
     * unless backward reads it. A fused step's inner outputs live in its
     * root's buffer or in none. */
    for (int i = 0; i < L; i++) last_use[i] = p->step_of[i];
    for (int i = 0; i < L; i++) {
        const graft_layer *l = m->layers[i];
        for (int j = 0; j < l->n_inputs; j++) {
            int src = BUF(l->inputs[j]), at = p->step_of[i];
            last_use[src] = l->requires_grad ? S : (at > last_use[src] ? at : last_use[src]);
        }
        if (l->requires_grad) last_use[i] = S;
    }
    last_use[BUF(out)] = S;
    if ((st = plan_segments(m, p, training, cap)) != GRAFT_OK) goto done;
    planner pl = {fl, 0, 0, 0};
    size_t scratch = 0;
    if ((st = runs_choose(m, p, cap, last_use, BUF(out), &pl, offs, aux_off, dout_off)) != GRAFT_OK)
        goto done;
    forward_layout(m, p, cap, last_use, &pl, offs, aux_off, dout_off);
    for (int k = 0; k < S; k++)
        if (p->steps[k].scratch > scratch) scratch = p->steps[k].scratch;
#undef BUF
    /* Gradients, in backward's order: dL/d(out) of a layer lives from the
     * backward of its last consumer (which writes it first) to its own. A
     * convolution inside a CONV_POOL step has none: the step's pass takes
     * the pool's gradient. */
#define DOUT_FLOATS(i) ((size_t)cap * graft_shape_size(&m->layers[i]->out_shape))
#define HAS_GRAD(i) (m->layers[i]->requires_grad && \
                     !(p->steps[p->step_of[i]].kind == GRAFT_STEP_CONV_POOL && !p->has_out[i]))
    if (HAS_GRAD(out)) dout_off[out] = plan_alloc(&pl, DOUT_FLOATS(out));
    for (int k = S - 1; k >= 0; k--) {
        const graft_step *s = &p->steps[k];
        for (int q = s->n - 1; q >= 0; q--) {
            const int i = s->layer[q];
            const graft_layer *l = m->layers[i];
            if (i == 0 || !HAS_GRAD(i)) continue;
            if (dout_off[i] == SIZE_MAX) dout_off[i] = plan_alloc(&pl, DOUT_FLOATS(i)); /* dead branch */
            for (int j = 0; j < l->n_inputs; j++) {
                int src = l->inputs[j];
                if (HAS_GRAD(src) && dout_off[src] == SIZE_MAX)
                    dout_off[src] = plan_alloc(&pl, DOUT_FLOATS(src));
            }
            plan_release(&pl, dout_off[i], DOUT_FLOATS(i));
        }
    }
    if (m->layers[0]->requires_grad && dout_off[0] == SIZE_MAX) dout_off[0] = plan_alloc(&pl, DOUT_FLOATS(0));
#undef HAS_GRAD
#undef DOUT_FLOATS

    size_t total = pl.peak;
    if (total > m->arena_floats) {
        if (!graft_arena_alloc(m, total))
            st = graft_fail(GRAFT_ENOMEM, "out of memory: activations for a batch of %d need %.1f MiB",
                            cap, (double)total * 4 / 1048576.0);
    }
    if (st == GRAFT_OK && scratch > m->scratch_floats) {
        graft_free(m->scratch);
        m->scratch = graft_alloc(scratch * sizeof(float));
        m->scratch_floats = m->scratch ? scratch : 0;
        if (!m->scratch) st = graft_fail(GRAFT_ENOMEM, "out of memory for %zu scratch floats", scratch);
    }
    if (st == GRAFT_OK && training && !m->grads) {
        m->grads = graft_pages_alloc(m->n_weight_floats * sizeof(float));
        if (!m->grads) st = graft_fail(GRAFT_ENOMEM, "out of memory for weight gradients");
        else graft_model_bind_weights(m);
    }
    if (st == GRAFT_OK) {
        for (int i = 0; i < L; i++) {
            graft_layer *l = m->layers[i];
            l->out = offs[i] == SIZE_MAX ? NULL : m->arena + offs[i];
            l->dout = dout_off[i] == SIZE_MAX ? NULL : m->arena + dout_off[i];
            l->aux = aux_off[i] == SIZE_MAX ? NULL : m->arena + aux_off[i];
        }
        m->capacity = cap;
        m->prepared_training = training;
        m->planned_threads = graft_threads();
        if (m->profiling) {
            plan_print(m, cap, training);
            graft_profile_replanned(m);
        }
    }
done:
    free(last_use);
    free(fl);
    free(offs);
    free(dout_off);
    free(aux_off);
    return st;
}

const char *graft_plan_step_kind(const graft_model *m, int layer, int *root)
{
    static const char *const names[] = {"layer",     "conv_epilogue", "conv_pool",
                                        "winograd_pool", "relu_pool",   "dw_block",
                                        "pointwise", "pad_dw", "pad_pool", "alias",
                                        "concat_append"};
    const struct graft_plan *p = m->plan;
    if (root) *root = layer;
    if (!p || p->n_layers != m->n_layers || layer < 0 || layer >= p->n_layers) return "none";
    const graft_step *s = &p->steps[p->step_of[layer]];
    if (root) *root = s->layer[0];
    return names[s->kind];
}
