/* Convolution through oneDNN's primitives: its JIT kernels beat im2col + GEMM
 * (docs/PERFORMANCE.md) and need no patch matrix.
 *
 * Activations stay NHWC and the user's kernel stays HWIO. The primitives pick
 * their own blocked kernel layout (format "any": with HWIO forced, oneDNN 2.6
 * falls back to its im2col + GEMM code), so a call first reorders the HWIO
 * kernel into that layout, or, for the kernel gradient, back out of it:
 * kernels are small next to activations. Primitives are made per batch size
 * on first use and kept. What a call needs besides its arguments (oneDNN's
 * scratchpad, the reordered kernel) lives in one work area: the caller's
 * scratch when it is large enough, else memory this object keeps. Nothing is
 * allocated per step. */
#include "core/core.h"
#include "kernels.h"

#include <dnnl.h>
#include <stdlib.h>
#include <string.h>

enum { FWD, BWD_DATA, BWD_WEIGHTS, N_PASSES };

/* Batch sizes remembered: a fit's batch, its last partial batch, predict's;
 * a fifth size replaces the oldest. */
#define N_PLANS 4
#define MAX_ARGS 6

typedef struct {
    dnnl_primitive_desc_t pd; /* NULL: oneDNN can not do this pass */
    dnnl_primitive_t prim;    /* made on first use */
    dnnl_exec_arg_t args[MAX_ARGS];
    int n_args;
    int kernel_arg; /* DNNL_ARG_WEIGHTS or DNNL_ARG_DIFF_WEIGHTS */
    /* Between HWIO and the primitive's kernel layout; NULL when they agree. */
    dnnl_primitive_desc_t reorder_pd;
    dnnl_primitive_t reorder;
    dnnl_exec_arg_t reorder_args[3];
    int n_reorder_args;
    /* The work area: oneDNN's scratchpad, the reordered kernel, the reorder's scratchpad. */
    size_t scratchpad_bytes, kernel_bytes, reorder_scratchpad_bytes;
    bool failed; /* making a primitive failed: do not retry every step */
} pass;

typedef struct {
    int n; /* batch size; 0: an unused slot */
    pass p[N_PASSES];
} plan;

struct graft_onednn_conv {
    graft_conv_geom g;
    int filters;
    bool bias, relu;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    plan plans[N_PLANS];
    int next; /* the slot a new batch size takes */
    void *own;
    size_t own_bytes;
};

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

static size_t pass_bytes(const pass *p)
{
    return align64(p->scratchpad_bytes) + align64(p->kernel_bytes) +
           align64(p->reorder_scratchpad_bytes);
}

static void pass_free(pass *p)
{
    for (int i = 0; i < p->n_args; i++) dnnl_memory_destroy(p->args[i].memory);
    for (int i = 0; i < p->n_reorder_args; i++) dnnl_memory_destroy(p->reorder_args[i].memory);
    dnnl_primitive_destroy(p->prim);
    dnnl_primitive_destroy(p->reorder);
    dnnl_primitive_desc_destroy(p->pd);
    dnnl_primitive_desc_destroy(p->reorder_pd);
    memset(p, 0, sizeof *p);
}

static void plan_free(plan *pl)
{
    for (int i = 0; i < N_PASSES; i++) pass_free(&pl->p[i]);
    pl->n = 0;
}

/* A memory object (no data yet) for argument `arg` of primitive `pd`. */
static bool add_arg(dnnl_exec_arg_t *args, int *n, const_dnnl_primitive_desc_t pd, int arg,
                    dnnl_engine_t e)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    dnnl_memory_t m;
    if (!md || dnnl_memory_create(&m, md, e, DNNL_MEMORY_NONE) != dnnl_success) return false;
    args[*n].arg = arg;
    args[*n].memory = m;
    (*n)++;
    return true;
}

static size_t scratchpad_size(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* Memory objects for a pass whose pd exists, and the kernel reorder it needs.
 * On failure the pass is emptied (oneDNN then does not do it). */
static void finish_pass(pass *p, dnnl_engine_t e, const_dnnl_primitive_attr_t attr,
                        const dnnl_memory_desc_t *hwio, const int *args, int n_args, int kernel_arg)
{
    if (!p->pd) return;
    p->kernel_arg = kernel_arg;
    bool ok = true;
    for (int i = 0; i < n_args && ok; i++) ok = add_arg(p->args, &p->n_args, p->pd, args[i], e);
    ok = ok && add_arg(p->args, &p->n_args, p->pd, DNNL_ARG_SCRATCHPAD, e);
    const dnnl_memory_desc_t *kmd =
        ok ? dnnl_primitive_desc_query_md(p->pd, dnnl_query_exec_arg_md, kernel_arg) : NULL;
    if (ok && kmd && !dnnl_memory_desc_equal(kmd, hwio)) {
        bool out = kernel_arg == DNNL_ARG_DIFF_WEIGHTS; /* the gradient goes back to HWIO */
        ok = dnnl_reorder_primitive_desc_create(&p->reorder_pd, out ? kmd : hwio, e,
                                                out ? hwio : kmd, e, attr) == dnnl_success;
        ok = ok && add_arg(p->reorder_args, &p->n_reorder_args, p->reorder_pd, DNNL_ARG_FROM, e) &&
             add_arg(p->reorder_args, &p->n_reorder_args, p->reorder_pd, DNNL_ARG_TO, e) &&
             add_arg(p->reorder_args, &p->n_reorder_args, p->reorder_pd, DNNL_ARG_SCRATCHPAD, e);
        if (ok) {
            p->kernel_bytes = dnnl_memory_desc_get_size(kmd);
            p->reorder_scratchpad_bytes = scratchpad_size(p->reorder_pd);
        }
    }
    ok = ok && kmd;
    if (ok) p->scratchpad_bytes = scratchpad_size(p->pd);
    else pass_free(p);
}

/* Primitive descriptors for a batch of n. Passes oneDNN can not do stay empty. */
static void make_plan(graft_onednn_conv *c, plan *pl, int n)
{
    const graft_conv_geom *g = &c->g;
    const int F = c->filters;
    /* TensorFlow's padding as explicit (before, after) pairs; what oneDNN
     * needs after is whatever makes its output size TensorFlow's. */
    int pad_bottom = (g->oh - 1) * g->sh + g->kh - g->h - g->pad_top;
    int pad_right = (g->ow - 1) * g->sw + g->kw - g->w - g->pad_left;
    dnnl_dims_t src_dims = {n, g->c, g->h, g->w}, dst_dims = {n, F, g->oh, g->ow},
                k_dims = {F, g->c, g->kh, g->kw}, b_dims = {F}, strides = {g->sh, g->sw},
                pad_l = {g->pad_top, g->pad_left},
                pad_r = {pad_bottom > 0 ? pad_bottom : 0, pad_right > 0 ? pad_right : 0};
    dnnl_memory_desc_t src, dst, hwio, kany, bias;
    dnnl_primitive_attr_t attr = NULL, fwd_attr = NULL;
    dnnl_post_ops_t relu = NULL;
    pl->n = n;
    bool ok = dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_f32, dnnl_nhwc) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, dnnl_f32, dnnl_nhwc) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&hwio, 4, k_dims, dnnl_f32, dnnl_hwio) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&kany, 4, k_dims, dnnl_f32, dnnl_format_tag_any) ==
                  dnnl_success &&
              dnnl_memory_desc_init_by_tag(&bias, 1, b_dims, dnnl_f32, dnnl_a) == dnnl_success &&
              dnnl_primitive_attr_create(&attr) == dnnl_success &&
              dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ==
                  dnnl_success &&
              dnnl_primitive_attr_clone(&fwd_attr, attr) == dnnl_success;
    if (ok && c->relu)
        ok = dnnl_post_ops_create(&relu) == dnnl_success &&
             dnnl_post_ops_append_eltwise(relu, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(fwd_attr, relu) == dnnl_success;
    const dnnl_memory_desc_t *b = c->bias ? &bias : NULL;
    dnnl_convolution_desc_t d;
    pass *fwd = &pl->p[FWD], *bd = &pl->p[BWD_DATA], *bw = &pl->p[BWD_WEIGHTS];
    /* forward_training even for inference: predict and fit then compute the same bits. */
    if (ok && dnnl_convolution_forward_desc_init(&d, dnnl_forward_training, dnnl_convolution_direct,
                                                 &src, &kany, b, &dst, strides, pad_l,
                                                 pad_r) == dnnl_success &&
        dnnl_primitive_desc_create(&fwd->pd, &d, fwd_attr, c->engine, NULL) != dnnl_success)
        fwd->pd = NULL;
    if (fwd->pd) {
        /* Under one vector of input channels oneDNN 2.6's direct backward-data
         * kernel is far slower than its GEMM one, which HWIO selects. */
        const dnnl_memory_desc_t *bd_k = g->c < 16 ? &hwio : &kany;
        if (dnnl_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &src, bd_k, &dst,
                                                     strides, pad_l, pad_r) == dnnl_success &&
            dnnl_primitive_desc_create(&bd->pd, &d, attr, c->engine, fwd->pd) != dnnl_success)
            bd->pd = NULL;
        /* No bias: its gradient is the caller's (oneDNN sums it in a slow scalar loop). */
        if (dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &src, &kany,
                                                        NULL, &dst, strides, pad_l,
                                                        pad_r) == dnnl_success &&
            dnnl_primitive_desc_create(&bw->pd, &d, attr, c->engine, fwd->pd) != dnnl_success)
            bw->pd = NULL;
    }
    int fwd_args[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    int bd_args[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
    int bw_args[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS};
    finish_pass(fwd, c->engine, attr, &hwio, fwd_args, c->bias ? 4 : 3, DNNL_ARG_WEIGHTS);
    finish_pass(bd, c->engine, attr, &hwio, bd_args, 3, DNNL_ARG_WEIGHTS);
    finish_pass(bw, c->engine, attr, &hwio, bw_args, 3, DNNL_ARG_DIFF_WEIGHTS);
    dnnl_post_ops_destroy(relu);
    dnnl_primitive_attr_destroy(fwd_attr);
    dnnl_primitive_attr_destroy(attr);
}

static plan *get_plan(graft_onednn_conv *c, int n)
{
    for (int i = 0; i < N_PLANS; i++)
        if (c->plans[i].n == n) return &c->plans[i];
    plan *pl = &c->plans[c->next];
    c->next = (c->next + 1) % N_PLANS;
    plan_free(pl);
    make_plan(c, pl, n);
    return pl;
}

graft_onednn_conv *graft_onednn_conv_new(const graft_conv_geom *g, int filters, bool bias,
                                         bool relu)
{
    /* GRAFT_NO_ONEDNN=1: im2col + GEMM only (to compare numerics; the tests of that path). */
    if (graft_env_on(GRAFT_ENV_NO_ONEDNN)) return NULL;
    graft_onednn_conv *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->g = *g;
    c->filters = filters;
    c->bias = bias;
    c->relu = relu;
    if (dnnl_engine_create(&c->engine, dnnl_cpu, 0) != dnnl_success) {
        free(c);
        return NULL;
    }
    if (dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(c->engine);
        free(c);
        return NULL;
    }
    return c;
}

void graft_onednn_conv_free(graft_onednn_conv *c)
{
    if (!c) return;
    for (int i = 0; i < N_PLANS; i++) plan_free(&c->plans[i]);
    dnnl_stream_destroy(c->stream);
    dnnl_engine_destroy(c->engine);
    graft_free(c->own);
    free(c);
}

size_t graft_onednn_conv_scratch_floats(graft_onednn_conv *c, int n)
{
    const plan *pl = get_plan(c, n);
    size_t bytes = 0;
    for (int i = 0; i < N_PASSES; i++)
        if (pl->p[i].pd && pass_bytes(&pl->p[i]) > bytes) bytes = pass_bytes(&pl->p[i]);
    return (bytes + sizeof(float) - 1) / sizeof(float);
}

static bool set(dnnl_exec_arg_t *args, int n, int arg, const void *data)
{
    for (int i = 0; i < n; i++)
        if (args[i].arg == arg)
            /* oneDNN takes a non-const handle; inputs are only read. */
            return dnnl_memory_set_data_handle(args[i].memory, (void *)data) == dnnl_success;
    return false;
}

typedef struct {
    int arg;
    const void *data;
} binding;

/* Runs one pass for a batch of n; false (the caller falls back) when oneDNN can not. */
static bool run(graft_onednn_conv *c, int n, int which, const binding *bind, int n_bind,
                float *kernel, float *scratch, size_t scratch_floats)
{
    pass *p = &get_plan(c, n)->p[which];
    if (!p->pd || p->failed) return false;
    if (!p->prim && dnnl_primitive_create(&p->prim, p->pd) != dnnl_success) p->failed = true;
    if (p->reorder_pd && !p->reorder && dnnl_primitive_create(&p->reorder, p->reorder_pd) != dnnl_success)
        p->failed = true;
    if (p->failed) return false;

    size_t need = pass_bytes(p);
    char *work = (char *)scratch;
    if (need > scratch_floats * sizeof(float)) {
        if (need > c->own_bytes) {
            graft_free(c->own);
            c->own = graft_alloc(need);
            c->own_bytes = c->own ? need : 0;
            if (!c->own) return false;
        }
        work = c->own;
    }
    /* With a reorder, need > 0 and so work is not NULL. */
    char *reordered = p->reorder ? work + align64(p->scratchpad_bytes) : NULL;
    char *reorder_scratchpad = p->reorder ? reordered + align64(p->kernel_bytes) : NULL;

    bool ok = set(p->args, p->n_args, DNNL_ARG_SCRATCHPAD, work);
    for (int i = 0; i < n_bind && ok; i++) ok = set(p->args, p->n_args, bind[i].arg, bind[i].data);
    ok = ok && set(p->args, p->n_args, p->kernel_arg, p->reorder ? reordered : (char *)kernel);
    if (p->reorder) {
        bool out = p->kernel_arg == DNNL_ARG_DIFF_WEIGHTS;
        ok = ok && set(p->reorder_args, 3, DNNL_ARG_FROM, out ? reordered : (char *)kernel) &&
             set(p->reorder_args, 3, DNNL_ARG_TO, out ? (char *)kernel : reordered) &&
             set(p->reorder_args, 3, DNNL_ARG_SCRATCHPAD, reorder_scratchpad);
        if (ok && !out)
            ok = dnnl_primitive_execute(p->reorder, c->stream, 3, p->reorder_args) == dnnl_success;
    }
    ok = ok && dnnl_primitive_execute(p->prim, c->stream, p->n_args, p->args) == dnnl_success;
    if (ok && p->reorder && p->kernel_arg == DNNL_ARG_DIFF_WEIGHTS)
        ok = dnnl_primitive_execute(p->reorder, c->stream, 3, p->reorder_args) == dnnl_success;
    return ok && dnnl_stream_wait(c->stream) == dnnl_success;
}

bool graft_onednn_conv_forward(graft_onednn_conv *c, int n, const float *x, const float *kernel,
                               const float *bias, float *y, float *scratch, size_t scratch_floats)
{
    binding b[] = {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}, {DNNL_ARG_BIAS, bias}};
    return run(c, n, FWD, b, c->bias ? 3 : 2, (float *)kernel, scratch, scratch_floats);
}

bool graft_onednn_conv_backward_data(graft_onednn_conv *c, int n, const float *dy,
                                     const float *kernel, float *dx, float *scratch,
                                     size_t scratch_floats)
{
    binding b[] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_SRC, dx}};
    return run(c, n, BWD_DATA, b, 2, (float *)kernel, scratch, scratch_floats);
}

bool graft_onednn_conv_backward_weights(graft_onednn_conv *c, int n, const float *x,
                                        const float *dy, float *dkernel, float *scratch,
                                        size_t scratch_floats)
{
    binding b[] = {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy}};
    return run(c, n, BWD_WEIGHTS, b, 2, dkernel, scratch, scratch_floats);
}
