/* Dense: y = act(x W + b), W stored (in, out) as Keras does. On input of
 * rank above 1 it applies to the last axis, every position alike, as Keras
 * does (ConvNeXt's pointwise convolutions on (H, W, C)). */
#include "layers/layer.h"
#include "kernels/kernels.h"
#include "layers/config_json.h"

#include <omp.h>
#include <string.h>

typedef struct {
    graft_dense_cfg cfg;
    int in_dim;
    int rows; /* positions per sample: the input's size over its last axis */
    /* Chosen by scratch_floats at each plan (the scratch is sized for them): */
    int threads; /* graft_threads() then */
    bool split;  /* the inputs shared among the threads in forward */
    bool dx_chunks; /* the input gradient made transposed (TALL_CHUNK) */
    int chunk_rows; /* the rows of dz the scratch was sized for then */
} dense;

/*
 * A kernel far taller than wide (the lesson's Dense(128) on 82944 features:
 * 10.6M weights, 42 MB) makes a forward GEMM with an output of only
 * n x units, which dnnl_sgemm shares among the threads less well than an even
 * split of the inputs: each thread multiplies its share of the inputs and
 * kernel rows, and the partial sums add up in thread order (the bits depend on
 * the thread count). It pays from half a million weights and 32 times taller
 * than wide; splitting the backward GEMMs the same way does not
 * (docs/PERFORMANCE.md has the measurements).
 */
#define SPLIT_MIN_WEIGHTS ((size_t)1 << 19)
#define SPLIT_MIN_RATIO 32

/*
 * The same tall kernel's input gradient, dz W^T, at a few rows: dnnl_sgemm
 * with W transposed runs at a third of its speed there, but W dz^T (W read
 * row by row) at full speed. So the gradient is made as (dx)^T, TALL_CHUNK
 * kernel rows at a time (a chunk a thread, kept in cache), and transposed
 * into dx. It pays up to TALL_MAX_ROWS rows (docs/PERFORMANCE.md).
 */
#define TALL_CHUNK 4096
#define TALL_MAX_ROWS 64

static graft_status build(graft_layer *l, const graft_shape *in)
{
    dense *d = l->cfg;
    if (in[0].rank < 1)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (Dense): expects an input with a features axis, got a "
                          "scalar per sample",
                          l->name);
    if (d->cfg.units <= 0)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (Dense): units must be positive (got %d)",
                          l->name, d->cfg.units);
    const int r = in[0].rank;
    d->in_dim = in[0].dim[r - 1];
    size_t rows = graft_shape_size(&in[0]) / (size_t)(d->in_dim ? d->in_dim : 1);
    if (rows > INT32_MAX / (size_t)d->cfg.units)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (Dense): its output is too large", l->name);
    d->rows = (int)rows;
    l->out_shape = in[0];
    l->out_shape.dim[r - 1] = d->cfg.units;
    graft_shape ks = {2, {d->in_dim, d->cfg.units}};
    graft_status s = graft_layer_add_weight(l, "kernel", ks, true, GRAFT_INIT_GLOROT_UNIFORM);
    if (s == GRAFT_OK && !d->cfg.no_bias)
        s = graft_layer_add_weight(l, "bias", graft_shape1(d->cfg.units), true, GRAFT_INIT_ZEROS);
    return s;
}

static size_t scratch_floats(const graft_layer *l, int n)
{
    dense *d = l->cfg; /* the layer's own state, not its description */
    const size_t weights = (size_t)d->in_dim * (size_t)d->cfg.units;
    const size_t M = (size_t)n * (size_t)d->rows;
    const bool tall = weights >= SPLIT_MIN_WEIGHTS && d->in_dim >= SPLIT_MIN_RATIO * d->cfg.units;
    d->threads = graft_threads();
    d->split = d->threads > 1 && tall;
    d->dx_chunks = tall && M <= TALL_MAX_ROWS; /* then so is every smaller batch */
    d->chunk_rows = d->dx_chunks ? (int)M : 0;
    const size_t split = d->split ? (size_t)(d->threads - 1) * M * (size_t)d->cfg.units : 0,
                 chunks = d->dx_chunks ? (size_t)d->threads * TALL_CHUNK * M : 0;
    return split > chunks ? split : chunks;
}

/* y = x W with the inputs split among nth threads; part holds the partial
 * sums of threads 1.. (thread 0 writes y). */
static void forward_split(int nth, int n, int U, int I, const float *x, const float *W, float *y,
                          float *part)
{
    const size_t size = (size_t)n * (size_t)U;
#pragma omp parallel num_threads(nth)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const long k0 = (long)I * t / used, k1 = (long)I * (t + 1) / used;
        float *p = t == 0 ? y : part + (size_t)(t - 1) * size;
        /* dnnl_sgemm runs on this thread alone inside a parallel region. */
        graft_gemm(false, false, n, U, (int)(k1 - k0), 1.0f, x + k0, I, W + (size_t)k0 * U, U,
                   0.0f, p, U);
#pragma omp barrier
        const size_t lo = size * (size_t)t / (size_t)used,
                     hi = size * (size_t)(t + 1) / (size_t)used;
        for (int o = 1; o < used; o++) {
            const float *src = part + (size_t)(o - 1) * size;
#pragma omp simd
            for (size_t e = lo; e < hi; e++) y[e] += src[e];
        }
    }
}

/* A frozen layer's x W + b, and any layer's at inference: graft_pw_gemm_stream's
 * FMA chains, so that a row's bits do not depend on the rows beside it in the
 * call (a frozen layer's outputs may be cached per sample), on the threads or
 * on the ISA. The kernel is read in place once per block of rows: a call of
 * at most FROZEN_ROWS rows (a batch of one at deployment) is one block, the
 * threads sharing its columns, each reading only its part of the kernel. */
#define FROZEN_ROWS 96

static void frozen_forward(int M, int U, int I, const float *x, const float *W, const float *bias,
                           float *y)
{
    const graft_kernel_epi e = {.bias = bias};
    /* read by the omp pragmas, which the analyzer does not see */
    // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores)
    const int th = graft_threads();
    if (M <= FROZEN_ROWS) {
#pragma omp parallel num_threads(th)
        {
            int c0, c1;
            graft_pw_share(U, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
            if (c1 > c0)
                graft_pw_gemm_stream(M, c0, c1 - c0, I, x, (size_t)I, W, (size_t)U, y, (size_t)U,
                                     &e, NULL, 0);
        }
        return;
    }
    const long blocks = (M + FROZEN_ROWS - 1) / FROZEN_ROWS;
#pragma omp parallel for schedule(static) num_threads(th)
    for (long b = 0; b < blocks; b++) {
        const long r0 = (long)M * b / blocks, r1 = (long)M * (b + 1) / blocks;
        graft_pw_gemm_stream((int)(r1 - r0), 0, U, I, x + (size_t)r0 * I, (size_t)I, W, (size_t)U,
                             y + (size_t)r0 * U, (size_t)U, &e, NULL, 0);
    }
}

/*
 * The kernel split by rows among the ranks (graft_row_split): this rank's
 * rows [k0, k0 + k) of every sample's x W. The ranks' inputs go to their
 * INPUT buffers; this rank gathers its columns of all of them (COLUMNS, kept
 * for backward) and writes the batch's partial products (PARTIAL); each rank
 * then adds its own samples' partial products in rank order. One pass over
 * this rank's rows of the kernel, instead of one over the whole kernel.
 */
static void split_forward(graft_layer *l, const graft_fwd *f, int I, int U)
{
    graft_row_split *s = f->split;
    const int me = s->rank, n = s->empty ? 0 : f->n;
    const int k0 = graft_split_row(I, s->ranks, me), k = graft_split_row(I, s->ranks, me + 1) - k0;
    memcpy(s->buffer(s, l, GRAFT_SPLIT_INPUT, me), f->in[0], (size_t)n * I * sizeof(float));
    s->sync(s, n);
    float *cols = s->buffer(s, l, GRAFT_SPLIT_COLUMNS, me);
    for (int q = 0; q < s->ranks; q++) {
        const float *x = s->buffer(s, l, GRAFT_SPLIT_INPUT, q) + k0;
        for (int i = 0; i < s->count[q]; i++)
            memcpy(cols + (size_t)(s->first[q] + i) * k, x + (size_t)i * I, (size_t)k * sizeof(float));
    }
    graft_gemm(false, false, s->total, U, k, 1.0f, cols, k, l->weights[0].data + (size_t)k0 * U, U,
               0.0f, s->buffer(s, l, GRAFT_SPLIT_PARTIAL, me), U);
    s->sync(s, n);
    /* A placeholder's row stays 0. */
    memset(f->out, 0, (size_t)f->n * U * sizeof(float));
    const size_t mine = (size_t)n * U;
    for (int q = 0; q < s->ranks; q++) {
        const float *p = s->buffer(s, l, GRAFT_SPLIT_PARTIAL, q) + (size_t)s->first[me] * U;
        for (size_t e = 0; e < mine; e++) f->out[e] += p[e];
    }
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    dense *d = l->cfg;
    const int U = d->cfg.units, I = d->in_dim, M = f->n * d->rows;
    const float *bias = d->cfg.no_bias ? NULL : l->weights[1].data;
    /* Frozen (its outputs may be cached per sample), or inference: the
     * rows apart, as conv2d.c's rowwise passes. */
    if (!l->trains || !f->training) {
        frozen_forward(M, U, I, f->in[0], l->weights[0].data, bias, f->out);
        bias = NULL; /* added in the GEMM's epilogue */
    } else if (f->split && f->split->rows(f->split, l)) {
        split_forward(l, f, I, U);
    } else if (d->split && f->scratch) {
        forward_split(d->threads, M, U, I, f->in[0], l->weights[0].data, f->out, f->scratch);
    } else {
        graft_gemm(false, false, M, U, I, 1.0f, f->in[0], I, l->weights[0].data, U, 0.0f,
                   f->out, U);
    }
    if (bias)
        for (int r = 0; r < M; r++)
            for (int j = 0; j < U; j++) f->out[(size_t)r * U + j] += bias[j];
    /* swish, gelu, ...: backward needs the pre-activation. */
    if (f->aux) memcpy(f->aux, f->out, (size_t)M * U * sizeof(float));
    graft_activation_forward(d->cfg.activation, f->out, (size_t)M, (size_t)U);
}

static size_t aux_floats(const graft_layer *l, int n)
{
    const dense *d = l->cfg;
    return graft_activation_needs_input(d->cfg.activation)
               ? (size_t)n * (size_t)d->rows * (size_t)d->cfg.units
               : 0;
}

/* dx (+)= dz W^T for M rows of dz, as (W dz^T)^T in chunks of kernel rows:
 * each chunk's product (rows x M) in a thread's part of scratch
 * (TALL_CHUNK x M floats), then written across into dx's columns. Each
 * chunk is computed alike whatever thread takes it. */
static void input_grad_tall(int nth, int M, int U, int I, const float *dz, const float *W,
                            float *dx, bool accumulate, float *scratch)
{
    const int per = (I + TALL_CHUNK - 1) / TALL_CHUNK;
    const int chunks = (per + nth - 1) / nth * nth, rows = (I + chunks - 1) / chunks;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int c = 0; c < chunks; c++) {
        const int i0 = c * rows, k = I - i0 < rows ? I - i0 : rows;
        if (k <= 0) continue;
        float *t = scratch + (size_t)omp_get_thread_num() * TALL_CHUNK * (size_t)M;
        /* dnnl_sgemm runs on this thread alone inside a parallel region. */
        graft_gemm(false, true, k, M, U, 1.0f, W + (size_t)i0 * U, U, dz, U, 0.0f, t, M);
        /* Blocks of 64 columns, so that the reads across t stay in L1. */
        for (int b0 = 0; b0 < k; b0 += 64) {
            const int e = k - b0 < 64 ? k - b0 : 64;
            for (int r = 0; r < M; r++) {
                float *dst = dx + (size_t)r * I + i0 + b0;
                const float *src = t + (size_t)b0 * M + r;
                if (accumulate)
                    for (int j = 0; j < e; j++) dst[j] += src[(size_t)j * M];
                else
                    for (int j = 0; j < e; j++) dst[j] = src[(size_t)j * M];
            }
        }
    }
}

/* The backward pass of split_forward: the batch's output gradients
 * gathered (DOUT, DOUTS), the gradient of this rank's kernel rows over the
 * whole batch (complete: no rank sums it), and this rank's columns of the
 * batch's input gradient (DIN), from which each rank takes its samples'. */
static void split_backward(graft_layer *l, const graft_bwd *b, int I, int U, const float *dz)
{
    graft_row_split *s = b->split;
    const int me = s->rank, n = s->empty ? 0 : b->n;
    const int k0 = graft_split_row(I, s->ranks, me), k = graft_split_row(I, s->ranks, me + 1) - k0;
    memcpy(s->buffer(s, l, GRAFT_SPLIT_DOUT, me), dz, (size_t)n * U * sizeof(float));
    s->sync(s, n);
    float *dzs = s->buffer(s, l, GRAFT_SPLIT_DOUTS, me);
    for (int q = 0; q < s->ranks; q++)
        memcpy(dzs + (size_t)s->first[q] * U, s->buffer(s, l, GRAFT_SPLIT_DOUT, q),
               (size_t)s->count[q] * U * sizeof(float));
    const float *cols = s->buffer(s, l, GRAFT_SPLIT_COLUMNS, me), *W = l->weights[0].data + (size_t)k0 * U;
    if (b->param_grads)
        graft_gemm(true, false, k, U, s->total, 1.0f, cols, k, dzs, U, 0.0f,
                   l->weights[0].grad + (size_t)k0 * U, U);
    if (!b->din[0]) return;
    float *din = s->buffer(s, l, GRAFT_SPLIT_DIN, me);
    const dense *d = l->cfg;
    /* The plan may be sized for this rank's share alone (no feature cache). */
    if (d->dx_chunks && b->scratch && s->total <= d->chunk_rows)
        input_grad_tall(d->threads, s->total, U, k, dzs, W, din, false, b->scratch);
    else
        graft_gemm(false, true, s->total, k, U, 1.0f, dzs, U, W, U, 0.0f, din, k);
    s->sync(s, n);
    const bool acc = b->din_accumulate[0];
    if (!acc && b->n > n) /* a placeholder sample's row */
        memset(b->din[0] + (size_t)n * I, 0, (size_t)(b->n - n) * I * sizeof(float));
    /* The ranks' columns are disjoint and cover each row. */
    for (int q = 0; q < s->ranks; q++) {
        const int q0 = graft_split_row(I, s->ranks, q), kq = graft_split_row(I, s->ranks, q + 1) - q0;
        const float *src = s->buffer(s, l, GRAFT_SPLIT_DIN, q) + (size_t)s->first[me] * kq;
        for (int i = 0; i < n; i++) {
            float *dx = b->din[0] + (size_t)i * I + q0;
            const float *from = src + (size_t)i * kq;
            if (acc)
                for (int j = 0; j < kq; j++) dx[j] += from[j];
            else
                memcpy(dx, from, (size_t)kq * sizeof(float));
        }
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    dense *d = l->cfg;
    const int U = d->cfg.units, I = d->in_dim, M = b->n * d->rows;
    float *dz = b->dout; /* dL/d(pre-activation), in place */
    graft_activation_backward_x(d->cfg.activation, b->aux, b->out, dz, dz, (size_t)M, (size_t)U,
                                false);
    const bool split = b->split && b->split->rows(b->split, l);
    if (split) split_backward(l, b, I, U, dz);
    if (b->param_grads) {
        if (!split) graft_gemm(true, false, I, U, M, 1.0f, b->in[0], I, dz, U, 0.0f, l->weights[0].grad, U);
        if (!d->cfg.no_bias) {
            float *db = l->weights[1].grad;
            memset(db, 0, (size_t)U * sizeof(float));
            for (int r = 0; r < M; r++)
                for (int j = 0; j < U; j++) db[j] += dz[(size_t)r * U + j];
        }
    }
    if (split) return;
    if (b->din[0] && d->dx_chunks && b->scratch)
        input_grad_tall(d->threads, M, U, I, dz, l->weights[0].data, b->din[0],
                        b->din_accumulate[0], b->scratch);
    else if (b->din[0])
        graft_gemm(false, true, M, I, U, 1.0f, dz, U, l->weights[0].data, U,
                   b->din_accumulate[0] ? 1.0f : 0.0f, b->din[0], I);
}

/* Keras 2's Dense.get_config(). */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_dense_cfg *k = &((const dense *)l->cfg)->cfg;
    bool ok = cJSON_AddNumberToObject(o, "units", k->units) &&
              cJSON_AddStringToObject(o, "activation", graft_activation_name(k->activation)) &&
              cJSON_AddBoolToObject(o, "use_bias", !k->no_bias) &&
              graft_config_add_initializer(o, "kernel_initializer", "GlorotUniform") &&
              graft_config_add_initializer(o, "bias_initializer", "Zeros") &&
              GRAFT_CONFIG_NULLS(o, "kernel_regularizer", "bias_regularizer",
                                 "activity_regularizer", "kernel_constraint", "bias_constraint");
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_dense_cfg k = {.name = c->name};
    bool use_bias = true;
    graft_status s = graft_config_int(c, cfg, "units", 0, 1, &k.units);
    if (s == GRAFT_OK && !k.units) s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'units'");
    if (s == GRAFT_OK) s = graft_config_activation(c, cfg, "activation", &k.activation);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "use_bias", true, &use_bias);
    k.no_bias = !use_bias;
    if (s == GRAFT_OK) *out = graft_dense(c->m, c->in[0], k);
    return s;
}

/* Flat inputs: a sample's output is one row of x W. */
static bool splits_rows(const graft_layer *l) { return ((const dense *)l->cfg)->rows == 1; }

const graft_layer_ops graft_dense_ops = {
    .aux_floats = aux_floats,
    .splits_rows = splits_rows,
    .class_name = "Dense",
    .build = build,
    .forward = forward,
    .backward = backward,
    .scratch_floats = scratch_floats,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_dense(graft_model *m, graft_layer *in, graft_dense_cfg cfg)
{
    dense d = {.cfg = cfg, .threads = 1, .rows = 1};
    d.cfg.name = NULL;
    return graft_model_add_unary(m, &graft_dense_ops, cfg.name, "dense", &d, sizeof d, in);
}
