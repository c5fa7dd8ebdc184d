/*
 * Through a 1x1 Conv2D of any stride -> [BatchNormalization] -> [clamp] ->
 * [Add of a tensor an earlier step computed] -> [clamp] as one GEMM
 * (kernels/pointwise.c) whose epilogue applies the rest while each output
 * is in a register: ResNet50's bottlenecks end in 1x1 -> BN -> Add -> ReLU,
 * which unfused are three more passes over the block's largest tensor, and
 * its strided 1x1 convolutions (the first of each stage and the projection
 * shortcuts) become a GEMM over every other input pixel instead of a oneDNN
 * convolution followed by an epilogue pass.
 *
 * A pre-activation in front, [BatchNormalization ->] [clamp ->] read only by
 * the 1x1 (DenseNet's BN -> ReLU -> 1x1 over the growing concatenation,
 * ResNetV2's preact), becomes the GEMM's prologue: each block of input rows
 * is normalised and clamped into a per-thread buffer in cache, which the
 * GEMM then reads once per panel of columns; unfused these are two passes
 * that each read and write the whole input. Squeeze-and-excitation's
 * Multiply of the map by each image's channel gate, read only by a stride-1
 * 1x1 (EfficientNet's projections), is a prologue the same way: unfused, a
 * pass that reads the block's expanded map and writes it again.
 *
 * The first block of a ResNet stage adds a projection shortcut, a linear
 * 1x1 (strided in all stages but the first) -> BN, to its last 1x1 -> BN.
 * The step takes both: for each block of output pixels the shortcut's
 * columns go to a buffer in cache, and the last 1x1's epilogue adds them
 * from there; unfused, the shortcut's whole output went to memory for the
 * next step to read back.
 *
 * The step runs wherever none of its layers needs a gradient: inference,
 * and the frozen layers below a training pass's first trained one (where a
 * BatchNormalization normalises with its moving statistics too).
 *
 * Blocks of rows go to the threads; every output's bits are one FMA chain,
 * whatever the block, batch, thread count or ISA, and the prologue's are the
 * unfused layers'. GRAFT_NO_FUSED_INFERENCE=1 runs the layers apart.
 */
#include "exec/plan.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

/* The AVX-512 tile's rows (kernels/pointwise.c), and output pixels per
 * block of a stride-1 GEMM: a multiple of them, a few blocks per thread on
 * the smallest images. */
#define TILE_ROWS 12
#define BLOCK_PIXELS (8 * TILE_ROWS)
/* Columns per pass of a strided band (a multiple of both tiles' widths). */
#define STRIDED_COLS 64
/* Rows a call may have for a streamed kernel to go in one block of rows. */
#define STREAM_ROWS 256

static bool one_by_one(const graft_model *m, int i, graft_conv_geom *g, int *F, bool *clamp,
                       float *lo, float *hi)
{
    const float *k, *b;
    graft_activation a;
    const graft_layer *l = m->layers[i];
    return !l->requires_grad && graft_conv2d_args(l, g, F, &k, &b, &a) && g->kh == 1 &&
           g->kw == 1 && g->pad_top == 0 && g->pad_left == 0 && *F <= GRAFT_EPILOGUE_MAX_C &&
           graft_step_conv_act(a, clamp, lo, hi);
}

static bool is_bn(const graft_layer *l) { return !strcmp(l->ops->class_name, "BatchNormalization"); }

/* A frozen BatchNormalization over NHWC rows (graft_step_bn_frozen). */
static bool frozen_bn(const graft_layer *l, bool training)
{
    return graft_step_bn_frozen(l, training) && l->out_shape.rank == 3;
}

/* The prologue starting at layer i: [BN ->] [clamp ->], each read only by
 * the next; returns the layer that reads it (-1: none, or i when there is
 * no prologue). */
static int take_prologue(const graft_model *m, int i, bool training, graft_step *f)
{
    graft_dw_block *b = &f->blk;
    int j = i;
    if (is_bn(m->layers[i])) {
        if (!frozen_bn(m->layers[i], training)) return -1;
        b->pre_bn = i;
        f->layer[f->n++] = i;
        if ((j = graft_model_sole_reader(m, i)) <= 0) return -1;
    }
    const graft_layer *a = m->layers[j];
    if (!a->requires_grad && a->out_shape.rank == 3 && graft_step_act_clamp(a, &b->pre_lo, &b->pre_hi)) {
        b->pre_clamp = true;
        f->layer[f->n++] = j;
        if ((j = graft_model_sole_reader(m, j)) <= 0) return -1;
    }
    return j;
}

/* Layer r as an Add of two different tensors that nothing needs the gradient of. */
static bool two_input_add(const graft_model *m, int r)
{
    const graft_layer *add = m->layers[r];
    return strcmp(add->ops->class_name, "Add") == 0 && !add->requires_grad && add->n_inputs == 2 &&
           add->inputs[0] != add->inputs[1];
}

/* The branch ending at j: a linear 1x1 (any stride; without one_by_one's
 * clamp) [-> inference BN], each read only by the next and the last only by
 * layer `add`. Returns the convolution (-1: not such a branch), with its
 * geometry and filters, and its BN in *bn (-1: none). */
static int linear_branch(const graft_model *m, int j, int add, bool training, graft_conv_geom *g,
                         int *F, int *bn)
{
    bool clamp = false;
    float lo, hi;
    int c = j;
    *bn = -1;
    if (is_bn(m->layers[j])) {
        if (!frozen_bn(m->layers[j], training)) return -1;
        *bn = j;
        c = m->layers[j]->inputs[0];
    }
    const bool ok = c > 0 && one_by_one(m, c, g, F, &clamp, &lo, &hi) && !clamp &&
                    graft_model_sole_reader(m, c) == (*bn >= 0 ? *bn : add) &&
                    (*bn < 0 || graft_model_sole_reader(m, *bn) == add);
    return ok ? c : -1;
}

/* The first block of a ResNet stage: its projection shortcut, a linear 1x1
 * of any stride at i [-> BN], and the block's last 1x1, linear and stride 1
 * after i [-> BN], both read only by an Add [-> clamp]. One step computes
 * both a block of output pixels at a time, the shortcut's columns first
 * into the thread's buffer, where the last 1x1's epilogue adds them: unfused,
 * the shortcut's output went to memory (102 MB for ResNet50's conv2 at
 * 224, batch 32) only for the next step to read it back. The last 1x1's
 * input must be computed before i (the step runs at i's place). */
static bool shortcut_match(const graft_model *m, int i, bool training, graft_step *f)
{
    graft_dw_block *b = &f->blk;
    graft_conv_geom g0 = {0}, g = {0};
    int F0 = 0, F = 0, bn0 = -1, bn = -1;
    int end = i, j = graft_model_sole_reader(m, i); /* end: the shortcut's last layer */
    if (j > 0 && is_bn(m->layers[j])) {
        end = j;
        j = graft_model_sole_reader(m, j);
    }
    if (j <= 0 || !two_input_add(m, j)) return false;
    const int add = j, *in = m->layers[add]->inputs, other = in[0] == end ? in[1] : in[0];
    if (linear_branch(m, end, add, training, &g0, &F0, &bn0) != i) return false;
    const int conv = linear_branch(m, other, add, training, &g, &F, &bn);
    if (conv <= i || m->layers[conv]->inputs[0] >= i || g.sh != 1 || g.sw != 1 || F != F0 ||
        g.oh != g0.oh || g.ow != g0.ow)
        return false;
    b->shortcut = i;
    b->shortcut_bn = bn0;
    b->project = conv;
    b->project_bn = bn;
    b->add = add;
    b->residual = end;
    int taken[6] = {i, bn0, conv, bn, add, -1}, n = 5;
    const int c = graft_model_sole_reader(m, add);
    if (c > 0 && !m->layers[c]->requires_grad &&
        graft_step_act_clamp(m->layers[c], &b->add_lo, &b->add_hi)) {
        b->add_clamp = true;
        taken[n++] = c;
    }
    /* in graph order, the absent BNs (-1) dropped: i first, the step's place */
    for (int k = 0; k < n; k++)
        for (int q = k + 1; q < n; q++)
            if (taken[q] < taken[k]) {
                const int t = taken[k];
                taken[k] = taken[q];
                taken[q] = t;
            }
    for (int k = 0; k < n; k++)
        if (taken[k] >= 0) f->layer[f->n++] = taken[k];
    return true;
}

bool graft_step_pointwise_match(const graft_model *m, int i, bool training, const int *step_of,
                                graft_step *s)
{
    if (graft_env_on(GRAFT_ENV_NO_FUSED_INFERENCE)) return false;
    graft_step f = {.kind = GRAFT_STEP_POINTWISE, .n = 0, .bn = -1};
    graft_dw_block *b = &f.blk;
    b->expand = b->expand_bn = b->pad = b->dw = b->dw_bn = b->project_bn = b->add = -1;
    b->residual = b->pre_bn = b->excite = -1;
    if (shortcut_match(m, i, training, &f)) {
        *s = f;
        return true;
    }
    const graft_layer *first = m->layers[i];
    int conv;
    if (!first->requires_grad && first->out_shape.rank == 3 &&
        graft_multiply_gate(first, &b->excite_gate)) {
        b->excite = i;
        f.layer[f.n++] = i;
        conv = graft_model_sole_reader(m, i);
    } else {
        conv = take_prologue(m, i, training, &f);
    }
    if (conv <= 0) return false;
    b->project = conv;
    f.layer[f.n++] = conv;
    graft_conv_geom g;
    int F;
    if (!one_by_one(m, conv, &g, &F, &b->project_clamp, &b->project_lo, &b->project_hi)) return false;
    if (b->excite >= 0 && (g.sh != 1 || g.sw != 1)) return false;
    int j = graft_step_take_bn_clamp(m, &f, conv, training, b->project_clamp, &b->project_bn,
                                     &b->project_clamp, &b->project_lo, &b->project_hi);
    /* An activation runs on each block after the GEMM's epilogue: no residual then. */
    const int a = graft_step_take_act(m, &f, j, &f.epi.act);
    int r = a == j ? graft_model_sole_reader(m, j) : -1;
    /* A linear 1x1/1 whose only reader is a 2x2/2 average pool (DenseNet's
     * transitions): the pool is linear too, so it goes first, over the
     * prologue's rows, and the GEMM runs over a quarter of the pixels. */
    if (r > 0 && j == conv && !b->project_clamp && b->excite < 0 && g.sh == 1 && g.sw == 1 &&
        !m->layers[r]->requires_grad && graft_avg_pool_2x2(m->layers[r])) {
        b->avg_pool = r;
        f.layer[f.n++] = r;
        *s = f;
        return true;
    }
    if (r > 0) {
        const graft_layer *add = m->layers[r];
        if (two_input_add(m, r)) {
            int other = add->inputs[0] == j ? add->inputs[1] : add->inputs[0];
            const graft_shape *os = &m->layers[other]->out_shape;
            if (step_of[other] >= 0 && m->layers[other]->out_shape.rank == 3 &&
                graft_shape_size(os) == graft_shape_size(&add->out_shape) &&
                os->dim[2] == add->out_shape.dim[2]) {
                b->add = r;
                b->residual = other;
                f.layer[f.n++] = r;
                int c = graft_model_sole_reader(m, r);
                if (c > 0 && !m->layers[c]->requires_grad &&
                    graft_step_act_clamp(m->layers[c], &b->add_lo, &b->add_hi)) {
                    b->add_clamp = true;
                    f.layer[f.n++] = c;
                }
            }
        }
    }
    *s = f;
    return true;
}

/* Output rows of a strided band at most: about BLOCK_PIXELS pixels. */
static int band_rows(const graft_conv_geom *g)
{
    return g->ow >= BLOCK_PIXELS ? 1 : BLOCK_PIXELS / g->ow;
}

/* Output rows a thread's prologue buffer holds: a stride-1 block, or a
 * strided band's rows (which are gathered there with or without a prologue). */
static size_t prologue_rows(const graft_conv_geom *g)
{
    if (g->sh == 1 && g->sw == 1) return BLOCK_PIXELS;
    return (size_t)band_rows(g) * g->ow;
}

/* Floats of one thread's prologue buffer. */
static size_t prologue_floats(const graft_conv_geom *g)
{
    return graft_thread_slot_floats(prologue_rows(g) * g->c);
}

/* Floats of a thread's buffer in a step that takes a shortcut: the block's
 * shortcut outputs (a row of F each), then its input rows, gathered where
 * the shortcut is strided. */
static size_t shortcut_floats(const graft_conv_geom *g0, int F)
{
    const size_t gather = g0->sh == 1 && g0->sw == 1 ? 0 : (size_t)BLOCK_PIXELS * g0->c;
    return graft_thread_slot_floats((size_t)BLOCK_PIXELS * F + gather);
}

/* Rows of the step's GEMM for n images: the 1x1's output pixels, or the
 * average pool's where it is taken first. */
static size_t gemm_rows(const graft_model *m, const graft_step *s, const graft_conv_geom *g, int n)
{
    if (s->blk.avg_pool <= 0) return (size_t)n * g->oh * g->ow;
    const graft_shape *o = &m->layers[s->blk.avg_pool]->out_shape;
    return (size_t)n * o->dim[0] * o->dim[1];
}

/* The 1x1 convolution at layer l (matched by one_by_one: the step's, or its
 * shortcut's): its geometry and filters, and its kernel and bias (NULL:
 * none) where W and bias are not NULL. */
static void conv_geom(const graft_model *m, int l, graft_conv_geom *g, int *F, const float **W,
                      const float **bias)
{
    const float *k, *b;
    graft_activation a;
    graft_conv2d_args(m->layers[l], g, F, &k, &b, &a);
    if (W) *W = k;
    if (bias) *bias = b;
}

/* A 1x1 Conv2D's kernel (K x F), or a SeparableConv2D's 1x1 part's (DW_BLOCK). */
static const float *pw_shape(const graft_layer *l, int *K, int *F)
{
    graft_conv_geom g;
    const float *W, *bias, *dw;
    graft_activation a;
    if (!graft_conv2d_args(l, &g, F, &W, &bias, &a))
        graft_separable_conv2d_args(l, &g, F, &dw, &W, &bias, &a);
    *K = g.c;
    return W;
}

size_t graft_step_pw_stream_min_floats(void)
{
    return graft_kernels_avx512() ? GRAFT_PW_STREAM_MIN_FLOATS_512 : GRAFT_PW_STREAM_MIN_FLOATS_256;
}

/* plan.h has why and where. */
bool graft_step_pw_streamed(const graft_layer *l, size_t rows, bool may_stream)
{
    int K, F;
    pw_shape(l, &K, &F);
    return may_stream && rows < GRAFT_PW_PACK_MIN_ROWS &&
           (size_t)K * F >= graft_step_pw_stream_min_floats();
}

/* Whether the kernel's kept packed copy is read: in a depth-first run, and
 * with constant weights wherever it would be packed each call or streamed
 * from beyond L2 (a packed copy read in order beat the stream by 12-20% at
 * 49 rows of a 1024 x 1024 kernel; docs/PERFORMANCE.md). */
static bool reads_kept(const graft_layer *l, size_t rows, bool in_run, bool constant)
{
    if (strcmp(l->ops->class_name, "Conv2D") != 0) return false;
    int K, F;
    pw_shape(l, &K, &F);
    return in_run || (constant && (rows >= GRAFT_PW_PACK_MIN_ROWS ||
                                   (size_t)K * F >= GRAFT_PW_KEEP_MIN_FLOATS));
}

const char *graft_step_pw_how(const graft_layer *l, size_t rows, bool may_stream, bool in_run,
                              bool constant)
{
    if (reads_kept(l, rows, in_run, constant))
        return in_run ? "kept packed (depth first)" : "kept packed (constant weights)";
    if (rows >= GRAFT_PW_PACK_MIN_ROWS) return "packed each call";
    return graft_step_pw_streamed(l, rows, may_stream) ? "streamed in place" : "read in place";
}

bool graft_step_pointwise_streams(void) { return graft_kernels_avx512(); }

const float *graft_step_pw_kernel(graft_layer *l, size_t rows, bool wide, bool may_stream,
                                  bool in_run, uint64_t promise, float *scratch, size_t *ldb,
                                  bool *stream)
{
    int K, F;
    const float *W = pw_shape(l, &K, &F);
    *ldb = 0;
    *stream = false;
    if (reads_kept(l, rows, in_run, promise != 0)) {
        const float *kept = graft_conv2d_packed_kernel(l, wide, promise);
        if (kept) return kept;
    }
    /* K * F copies against `rows` times as many multiply-adds. */
    if (rows >= GRAFT_PW_PACK_MIN_ROWS) {
        graft_pw_pack(K, F, W, (size_t)F, scratch, wide);
        return scratch;
    }
    *ldb = (size_t)F;
    *stream = graft_step_pw_streamed(l, rows, may_stream);
    return W;
}

void graft_step_pw_gemm_cols(int M, int c0, int nc, int K, const float *A, size_t lda,
                             const float *W, size_t ldb, float *C, size_t ldc,
                             const graft_kernel_epi *e, const float *R, size_t ldr, bool wide,
                             bool stream)
{
    if (stream)
        graft_pw_gemm_stream(M, c0, nc, K, A, lda, W, ldb, C, ldc, e, R, ldr);
    else
        graft_pw_gemm_cols(M, c0, nc, K, A, lda, W, ldb, C, ldc, e, R, ldr, wide);
}

/* Whether the step's 1x1 kernel streams at some call (a small one). */
static bool streams_at_all(const graft_model *m, const graft_step *s)
{
    return graft_step_pw_streamed(m->layers[s->blk.project], 1, graft_step_pointwise_streams());
}

size_t graft_step_pointwise_scratch_floats(const graft_model *m, const graft_step *s)
{
    const graft_dw_block *b = &s->blk;
    graft_conv_geom g;
    int F;
    conv_geom(m, s->blk.project, &g, &F, NULL, NULL);
    size_t n = graft_pw_pack_floats(g.c, F, true);
    if (b->shortcut > 0) {
        graft_conv_geom g0;
        int f0;
        conv_geom(m, b->shortcut, &g0, &f0, NULL, NULL);
        return n + graft_pw_pack_floats(g0.c, F, true) +
               (size_t)graft_threads() * shortcut_floats(&g0, F);
    }
    if (b->pre_bn >= 0 || b->pre_clamp || b->excite >= 0 || b->avg_pool > 0 || g.sh != 1 ||
        g.sw != 1) {
        const size_t per = (size_t)graft_threads() * prologue_floats(&g);
        /* a streamed kernel's single block of up to STREAM_ROWS rows, made once */
        const size_t one = g.sh == 1 && g.sw == 1 && b->avg_pool <= 0 && streams_at_all(m, s)
                               ? ((size_t)STREAM_ROWS * g.c + 15) & ~(size_t)15
                               : 0;
        n += per > one ? per : one;
    }
    return n;
}

size_t graft_step_pointwise_param_floats(const graft_model *m, const graft_step *s)
{
    const graft_layer *l = m->layers[s->blk.project];
    const int K = m->layers[l->inputs[0]]->out_shape.dim[2];
    const size_t F = (size_t)l->out_shape.dim[2];
    return 3 * F + (s->blk.pre_bn >= 0 ? 3 * (size_t)K : 0) + (s->blk.shortcut > 0 ? 3 * F : 0);
}

void graft_step_pointwise_describe(const graft_model *m, const graft_step *s, int n, char *buf,
                                   size_t size)
{
    const graft_dw_block *b = &s->blk;
    graft_conv_geom g;
    int F;
    conv_geom(m, s->blk.project, &g, &F, NULL, NULL);
    char bands[64] = "", pre[32] = "";
    if (g.sh != 1 || g.sw != 1)
        snprintf(bands, sizeof bands, ", bands of up to %d output rows, %d columns a pass",
                 band_rows(&g), STRIDED_COLS);
    if (b->excite >= 0)
        snprintf(pre, sizeof pre, "excite -> ");
    else if (b->pre_bn >= 0 || b->pre_clamp)
        snprintf(pre, sizeof pre, "%s%s%s -> ", b->pre_bn >= 0 ? "BN" : "",
                 b->pre_bn >= 0 && b->pre_clamp ? " + " : "", b->pre_clamp ? "clamp" : "");
    char res[96] = "";
    if (b->shortcut > 0) {
        graft_conv_geom g0;
        int f0;
        conv_geom(m, b->shortcut, &g0, &f0, NULL, NULL);
        snprintf(res, sizeof res, " + shortcut 1x1/%d %d -> %d%s (its output never exists)", g0.sh,
                 g0.c, F, b->shortcut_bn >= 0 ? " + BN" : "");
    } else if (b->add >= 0) {
        snprintf(res, sizeof res, " + residual");
    }
    snprintf(buf, size, "%s1x1/%d %d -> %d%s%s%s%s%s, kernel %s, %s", pre, g.sh, g.c, F,
             b->project_bn >= 0 ? " + BN" : "", b->project_clamp ? " + clamp" : "", res,
             b->add_clamp ? " + clamp" : "",
             b->avg_pool > 0 ? ", 2x2 average pool taken first" : bands,
             graft_step_pw_how(m->layers[b->project], gemm_rows(m, s, &g, n),
                               graft_step_pointwise_streams(), s->in_run, m->weights_constant != 0),
             graft_kernels_avx512() ? "AVX-512" : "AVX2");
    if (s->epi.act != GRAFT_LINEAR)
        snprintf(buf + strlen(buf), size - strlen(buf), " + %s", graft_activation_name(s->epi.act));
}

/* Columns [c0, c0 + nc) of rows C[0, M) (ldc and ldr F): the kernel's and
 * the epilogue's parameters from column c0 on (packed: its panel starts at
 * c0 * K, c0 a multiple of the panel width); then the step's activation over
 * the block while it is in cache. */
static void gemm_cols(int M, int c0, int nc, int K, const float *A, size_t lda, const float *W,
                      size_t ldb, int F, float *C, const graft_kernel_epi *e, const float *R, bool wide,
                      bool stream, graft_activation act)
{
    graft_step_pw_gemm_cols(M, c0, nc, K, A, lda, W, ldb, C, (size_t)F, e, R, (size_t)F, wide,
                            stream);
    graft_activation_rows(act, C + c0, (size_t)M, (size_t)nc, (size_t)F);
}

/* Rows p0.. of the map A (K channels) times their image's gate (K per
 * image; `image` pixels an image) into buf: the Multiply's products. */
static void excite_rows(int rows, int K, const float *A, size_t p0, size_t image,
                        const float *gate, float *buf)
{
    for (int r = 0; r < rows; r++) {
        const float *restrict a = A + (size_t)r * K,
                              *restrict s = gate + (p0 + (size_t)r) / image * (size_t)K;
        float *restrict o = buf + (size_t)r * K;
#pragma omp simd
        for (int k = 0; k < K; k++) o[k] = a[k] * s[k];
    }
}

/* v rounded up to a multiple of m. */
static long round_up(long v, int m) { return (v + m - 1) / m * m; }

/* Groups of 32-column panels each of `row_items` items of rows is split
 * into: one where there are two items a thread or more, else enough for
 * every thread to have work (a batch of one), each thread then reading only
 * its part of the kernel. */
static int column_groups(long row_items, int th, int panels)
{
    int groups = row_items >= 2 * th ? 1 : (int)((2 * th + row_items - 1) / row_items);
    return groups > panels ? panels : groups;
}

/* A step's work items: items of rows times groups of 32-column panels of
 * its F columns (column_groups). */
typedef struct {
    long items;
    int groups, panels, F;
} col_work;

static col_work split_cols(long row_items, int F)
{
    const int panels = (F + 31) / 32, groups = column_groups(row_items, graft_threads(), panels);
    return (col_work){row_items * groups, groups, panels, F};
}

/* Work item `it`: its rows' item, and its columns [*c0, *c0 + *nc). */
static long item_cols(long it, const col_work *w, int *c0, int *nc)
{
    const int gi = (int)(it % w->groups);
    const int a = w->panels * gi / w->groups * 32, b = w->panels * (gi + 1) / w->groups * 32;
    *c0 = a;
    *nc = (b < w->F ? b : w->F) - a;
    return it / w->groups;
}

/* Blocks of a GEMM over P rows: about `per` rows each, as many as a
 * multiple of the threads where there is one for each (196 pixels went 96 +
 * 96 + 4, one of two threads doing twice the other's work); fewer share
 * their columns instead (column_groups). */
static long even_blocks(size_t P, int th, int per)
{
    long blocks = (long)((P + per - 1) / per);
    return blocks >= th ? round_up(blocks, th) : blocks;
}

/* Rows [*p0, *p1) of block bi of `blocks` over P rows: whole tiles, the
 * last one partial. */
static void unit_rows(size_t P, long blocks, long bi, size_t *p0, size_t *p1)
{
    const size_t tiles = (P + TILE_ROWS - 1) / TILE_ROWS;
    *p0 = tiles * (size_t)bi / (size_t)blocks * TILE_ROWS;
    *p1 = tiles * (size_t)(bi + 1) / (size_t)blocks * TILE_ROWS;
    if (*p1 > P) *p1 = P;
}

/* Output pixels of a block of a pooled step: seven tiles, and the window's
 * four prologue rows after them in the thread's buffer (BLOCK_PIXELS rows). */
#define POOL_BLOCK (7 * TILE_ROWS)

/* A step whose 2x2/2 average pool goes first (b->avg_pool): each output
 * pixel's window of prologue rows (input rows C floats apart) averaged as
 * the pool layer does (the four summed in row order from 0, times 1/4) into
 * a row of the thread's buffer, then the GEMM over those rows. Blocks of
 * output pixels go to the threads, their columns shared where there are
 * too few blocks, as in the stride-1 path. */
static void pooled_forward(const graft_model *m, const graft_step *s, const graft_conv_geom *g,
                           int F, int n, const float *x, size_t C, const graft_kernel_epi *pre,
                           const float *W, size_t ldb, const graft_kernel_epi *e, float *bufs,
                           size_t buf_floats, float *out, bool wide, bool stream)
{
    const int K = g->c;
    const graft_shape *o = &m->layers[s->blk.avg_pool]->out_shape;
    const int oh = o->dim[0], ow = o->dim[1];
    const size_t P = gemm_rows(m, s, g, n);
    const int th = graft_threads();
    const long blocks = even_blocks(P, th, POOL_BLOCK);
    const col_work cw = split_cols(blocks, F);
#pragma omp parallel for schedule(static) num_threads(th)
    for (long it = 0; it < cw.items; it++) {
        int c0, nc;
        const long bi = item_cols(it, &cw, &c0, &nc);
        const size_t q0 = P * (size_t)bi / (size_t)blocks, q1 = P * (size_t)(bi + 1) / (size_t)blocks;
        float *buf = bufs + (size_t)omp_get_thread_num() * buf_floats;
        float *win = buf + (size_t)POOL_BLOCK * K; /* the window's four rows */
        for (size_t q = q0; q < q1; q++) {
            const size_t img = q / ((size_t)oh * ow), r = q % ((size_t)oh * ow);
            const size_t top = (img * g->h + 2 * (r / ow)) * g->w + 2 * (r % ow);
            graft_pw_prologue(2, K, x + top * C, C, pre, win);
            graft_pw_prologue(2, K, x + (top + g->w) * C, C, pre, win + 2 * (size_t)K);
            float *restrict y = buf + (q - q0) * K;
            const float *restrict w = win;
#pragma omp simd
            for (int k = 0; k < K; k++)
                y[k] = (((0.0f + w[k]) + w[K + k]) + w[2 * K + k]) + w[3 * K + k];
#pragma omp simd
            for (int k = 0; k < K; k++) y[k] *= 0.25f;
        }
        gemm_cols((int)(q1 - q0), c0, nc, K, buf, (size_t)K, W, ldb, F, out + q0 * F, e, NULL, wide,
                  stream, s->epi.act);
    }
}

/* Columns of the shortcut computed at a time before the last 1x1 adds
 * them: its outputs and the 1x1's input rows of a block stay in L2. */
#define SHORTCUT_COLS 256

/* A step that takes the projection shortcut (shortcut_match): for each
 * block of output pixels, the shortcut's 1x1 [-> BN] over the block's input
 * pixels into the thread's buffer, SHORTCUT_COLS columns at a time, then
 * the step's 1x1 over those columns, whose epilogue adds them as its
 * residual. The bits are those of the two 1x1 steps apart: each output one
 * FMA chain of the same kernel, the Add the sum of the same two floats. The
 * step's own 1x1 is stride 1: its input rows are A's from p0 on (lda apart). */
static void shortcut_forward(graft_model *m, const graft_step *s, size_t P, const float *A,
                             size_t lda, int K, const float *W, size_t ldb, bool stream, int F,
                             const graft_kernel_epi *e, float *scratch, float *out, bool wide,
                             const float *x, uint64_t promise)
{
    const graft_dw_block *b = &s->blk;
    graft_layer *sl = m->layers[b->shortcut];
    graft_conv_geom g;
    int f0;
    const float *bias;
    conv_geom(m, b->shortcut, &g, &f0, NULL, &bias);
    const int K0 = g.c;
    graft_kernel_epi e0 = {.bias = bias};
    graft_step_bn_epi(m, b->shortcut_bn, s->bn_params + 3 * (size_t)F, F, &e0);
    size_t ldb0;
    bool stream0;
    /* scratch: the shortcut's packed kernel, then the threads' buffers */
    const float *W0 = graft_step_pw_kernel(sl, P, wide, graft_step_pointwise_streams(), s->in_run,
                                           promise, scratch, &ldb0, &stream0);
    float *const bufs = scratch + graft_pw_pack_floats(K0, F, true);
    const size_t buf_floats = shortcut_floats(&g, F);
    const size_t Cx = graft_plan_row_floats(m, sl->inputs[0]); /* floats from pixel to pixel */
    const bool strided = g.sh != 1 || g.sw != 1;
    const size_t image = (size_t)g.oh * g.ow;
    const int th = graft_threads();
    const long blocks = even_blocks(P, th, BLOCK_PIXELS);
    const col_work cw = split_cols(blocks, F);
#pragma omp parallel for schedule(static) num_threads(th)
    for (long it = 0; it < cw.items; it++) {
        int c0, nc;
        const long bi = item_cols(it, &cw, &c0, &nc);
        size_t p0, p1;
        unit_rows(P, blocks, bi, &p0, &p1);
        const int rows = (int)(p1 - p0);
        float *S = bufs + (size_t)omp_get_thread_num() * buf_floats, *X = S + (size_t)BLOCK_PIXELS * F;
        const float *x0 = x + p0 * Cx;
        size_t ldx = Cx;
        if (strided) {
            for (int r = 0; r < rows; r++) {
                const size_t p = p0 + (size_t)r, img = p / image, q = p % image;
                const size_t src = (img * g.h + q / g.ow * g.sh) * g.w + q % g.ow * g.sw;
                memcpy(X + (size_t)r * K0, x + src * Cx, (size_t)K0 * sizeof(float));
            }
            x0 = X;
            ldx = (size_t)K0;
        }
        for (int cc = c0; cc < c0 + nc; cc += SHORTCUT_COLS) {
            const int w = c0 + nc - cc < SHORTCUT_COLS ? c0 + nc - cc : SHORTCUT_COLS;
            graft_step_pw_gemm_cols(rows, cc, w, K0, x0, ldx, W0, ldb0, S, (size_t)F, &e0, NULL, 0,
                                    wide, stream0);
            graft_step_pw_gemm_cols(rows, cc, w, K, A + p0 * lda, lda, W, ldb, out + p0 * F,
                                    (size_t)F, e, S, (size_t)F, wide, stream);
        }
    }
}

void graft_step_pointwise_forward(graft_model *m, graft_step *s, const graft_fwd *f)
{
    const graft_dw_block *b = &s->blk;
    graft_conv_geom g;
    int F;
    const float *W, *bias;
    conv_geom(m, s->blk.project, &g, &F, &W, &bias);
    const int K = g.c;
    graft_kernel_epi e = {.bias = bias,
                          .clamp = b->project_clamp,
                          .lo = b->project_lo,
                          .hi = b->project_hi,
                          .res_clamp = b->add_clamp,
                          .res_lo = b->add_lo,
                          .res_hi = b->add_hi};
    graft_step_bn_epi(m, b->project_bn, s->bn_params, F, &e);
    graft_kernel_epi pre = {.clamp = b->pre_clamp, .lo = b->pre_lo, .hi = b->pre_hi};
    graft_step_bn_epi(m, b->pre_bn, s->bn_params + 3 * (size_t)F, K, &pre);
    const bool prologue = b->pre_bn >= 0 || b->pre_clamp, excite = b->excite >= 0;
    const bool wide = graft_kernels_avx512();
    size_t ldb;
    const size_t P = gemm_rows(m, s, &g, f->n);
    bool stream;
    W = graft_step_pw_kernel(m->layers[b->project], P, wide, graft_step_pointwise_streams(),
                             s->in_run, f->promise, f->scratch, &ldb, &stream);
    /* Each thread's buffer (the prologue's rows, or a strided band's), after the packed kernel. */
    float *const bufs = f->scratch + graft_pw_pack_floats(K, F, true);
    const size_t buf_floats = prologue_floats(&g);
    const int xi = excite ? 1 - b->excite_gate : 0;
    const float *x = f->in[xi], *gate = excite ? f->in[b->excite_gate] : NULL,
                *res = b->add >= 0 ? m->layers[b->residual]->out : NULL;
    const size_t image = (size_t)g.h * g.w; /* pixels; stride 1 where there is a gate */
    float *out = m->layers[s->layer[s->n - 1]]->out;
    /* Floats from one input pixel to the next: K, or a CONCAT_APPEND
     * chain's width where the input is a prefix of its rows. */
    const size_t C = graft_plan_row_floats(m, m->layers[s->layer[0]]->inputs[xi]);
    if (b->avg_pool > 0) {
        pooled_forward(m, s, &g, F, f->n, x, C, &pre, W, ldb, &e, bufs, buf_floats, out, wide,
                       stream);
        return;
    }
    if (b->shortcut > 0) {
        const int a = m->layers[b->project]->inputs[0];
        shortcut_forward(m, s, P, m->layers[a]->out, graft_plan_row_floats(m, a), K, W, ldb, stream,
                         F, &e, bufs, out, wide, x, f->promise);
        return;
    }
    /* Work items: blocks of output pixels (stride 1: any run of them, the
     * input's pixels being the output's; strided: a band of output rows,
     * each reading every sw-th pixel of input row oy * sh) times groups of
     * 32 columns when there are too few blocks for the threads (a batch of
     * one). A band goes STRIDED_COLS columns at a time through its rows, so
     * that this part of the kernel serves the band's pixels from L2, as a
     * stride-1 block's does, instead of the whole kernel being read again
     * from memory for each output row (7 pixels in ResNet50's last stage). */
    const bool unit = g.sh == 1 && g.sw == 1;
    const int band = unit ? 1 : band_rows(&g);
    const int th = graft_threads();
    /* Blocks (even_blocks) and bands cut evenly, as many as a multiple of
     * the threads where there is one for each (14 rows went 6 + 6 + 2);
     * fewer share their columns instead, each thread reading only its part
     * of the kernel. A streamed kernel takes a small call's rows in one
     * block, so that it is read once in all, not once a block, unless its
     * columns do not split evenly among the threads (graft_pw_share_even):
     * then it takes blocks of rows as a kernel read in place does (a call of
     * at most BLOCK_PIXELS rows is still one block, its columns shared). */
    const long blocks = stream && P <= STREAM_ROWS && graft_pw_share_even(F, th)
                            ? 1
                            : even_blocks(P, th, BLOCK_PIXELS);
    long bands = (g.oh + band - 1) / band;
    if (bands >= th && round_up(bands, th) <= g.oh) bands = round_up(bands, th);
    const col_work cw = split_cols(unit ? blocks : (long)f->n * bands, F);
    /* One block (a small call), its columns shared: its prologue's or
     * excitation's rows, which every item reads, are made once, by all
     * threads, in the buffers' space (sized for them by
     * graft_step_pointwise_scratch_floats). Made by each item into its
     * thread's buffer, a streamed kernel's block (up to STREAM_ROWS rows)
     * ran past that buffer's BLOCK_PIXELS rows into the next one's. */
    const bool shared = unit && blocks == 1 && (prologue || excite);
    /* Rows [p0, p0 + rows) of the GEMM's input through the prologue or the
     * excitation into dst. */
#define MAKE_ROWS(rows, p0, dst)                                                                \
    do {                                                                                    \
        if (prologue) graft_pw_prologue(rows, K, x + (p0) * C, C, &pre, dst);               \
        if (excite) excite_rows(rows, K, x + (p0) * C, p0, image, gate, dst);               \
    } while (0)
    if (shared) {
#pragma omp parallel for schedule(static) num_threads(th)
        for (long r0 = 0; r0 < (long)P; r0 += TILE_ROWS) {
            const int rows = P - (size_t)r0 < TILE_ROWS ? (int)(P - (size_t)r0) : TILE_ROWS;
            MAKE_ROWS(rows, (size_t)r0, bufs + (size_t)r0 * K);
        }
    }
#pragma omp parallel for schedule(static) num_threads(th)
    for (long it = 0; it < cw.items; it++) {
        int c0, nc;
        const long ri = item_cols(it, &cw, &c0, &nc);
        float *buf = bufs + (size_t)omp_get_thread_num() * buf_floats;
        if (unit) {
            size_t p0, p1;
            unit_rows(P, blocks, ri, &p0, &p1);
            const int rows = (int)(p1 - p0);
            const float *A = x + p0 * C;
            if (shared) buf = bufs;
            else MAKE_ROWS(rows, p0, buf);
            gemm_cols(rows, c0, nc, K, prologue || excite ? buf : A, prologue || excite ? (size_t)K : C, W, ldb, F,
                      out + p0 * F, &e, res ? res + p0 * F : NULL, wide, stream, s->epi.act);
            continue;
        }
        const int img = (int)(ri / bands), bi = (int)(ri % bands);
        const int oy0 = (int)(g.oh * (long)bi / bands), oy1 = (int)(g.oh * (long)(bi + 1) / bands);
        /* The band's input pixels, sw apart in rows sh apart, gathered
         * (through the prologue, if any) into rows in a row: one GEMM over
         * the band, which gives the kernel's copying to L1 (graft_pw_gemm)
         * rows enough to pay, instead of one per output row. */
        for (int oy = oy0; oy < oy1; oy++)
            graft_pw_prologue(g.ow, K, x + (((size_t)img * g.h + (size_t)oy * g.sh) * g.w) * C,
                              g.sw * C, &pre, buf + (size_t)(oy - oy0) * g.ow * K);
        const size_t p0 = ((size_t)img * g.oh + oy0) * g.ow;
        for (int cc = c0; cc < c0 + nc; cc += STRIDED_COLS) {
            const int w = c0 + nc - cc < STRIDED_COLS ? c0 + nc - cc : STRIDED_COLS;
            gemm_cols((oy1 - oy0) * g.ow, cc, w, K, buf, (size_t)K, W, ldb, F, out + p0 * F, &e,
                      res ? res + p0 * F : NULL, wide, stream, s->epi.act);
        }
    }
#undef MAKE_ROWS
}
