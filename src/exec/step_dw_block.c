/*
 * Inference through a MobileNet block as one step: [1x1 expand -> BN ->
 * activation ->] [ZeroPadding2D ->] depthwise -> BN -> activation -> 1x1
 * project -> BN [-> clamp] [-> Add of the block's input] (MobileNetV2's
 * inverted residual blocks; MobileNet's depthwise + pointwise pairs without
 * the expansion; Xception's SeparableConv2D -> BN [-> ReLU], whose layer is
 * the depthwise and the 1x1 at once). Unfused, each layer is a pass over a
 * tensor that does not fit in cache (the expanded one is six times the
 * block's input); here each image goes a few output rows at a time: the
 * expanded rows they read are computed into a ring that keeps the rows the
 * next chunk shares, the depthwise rows into a small buffer, and the
 * project GEMM writes the block's output with the normalisation and
 * residual in its epilogue. The padding is never written: the depthwise
 * kernel skips taps outside the image.
 *
 * Where the depthwise output is not read by a 1x1 alone (EfficientNet's
 * and MobileNetV3's squeeze-and-excitation average it before the
 * projection can start), the step ends there: the depthwise rows go
 * straight to the step's output, and only the expanded tensor, the block's
 * largest, stays in cache. The activations are clamps (ReLU, ReLU6), done
 * in the kernels' epilogues, or any other element-wise one (swish), run
 * over each part's rows right after them.
 *
 * Bits: the kernels compute every output as one FMA chain in a fixed order
 * (kernels/pointwise.c, depthwise.c), so the result does not depend on the
 * chunking, on the bands a batch of one is split into, nor on the batch or
 * thread count. It differs from the unfused layers' in the last bits (other
 * GEMMs); GRAFT_NO_FUSED_INFERENCE=1 runs those.
 */
#include "exec/plan.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

/* Rows of the project GEMM per chunk: enough for its tiles, few enough that
 * the expanded and depthwise rows stay in L2. */
#define CHUNK_PIXELS 96
/* Images of at most SMALL_PIXELS outputs go several at a time (about
 * GROUP_PIXELS rows per GEMM): one image's rows would stream the whole 1x1
 * kernel (up to 1024 x 1024 floats) from L3 for 25 rows of work. */
#define SMALL_PIXELS 128
#define GROUP_PIXELS 384
/* A batch smaller than the thread team, over images of at most
 * SHARED_PIXELS outputs: the threads share each image, splitting the 1x1
 * GEMMs by columns and the depthwise by rows, so that each thread reads only
 * its part of the 1x1 kernels (up to 1024 x 1024 floats, from L3) instead
 * of all of them for a band of a few rows, and the work splits evenly
 * (7 rows in two bands do not). A single image on one thread goes the same
 * way, whole, where the block has no expansion: its one GEMM streams the
 * 1x1 kernel once instead of once per band (with an expansion, the bands'
 * ring keeps the expanded rows in cache, which measured as fast or faster;
 * docs/PERFORMANCE.md). */
#define SHARED_PIXELS 256

static bool is(const graft_layer *l, const char *cls) { return strcmp(l->ops->class_name, cls) == 0; }

bool graft_step_act_clamp(const graft_layer *l, float *lo, float *hi)
{
    return graft_relu_clamp(l, lo, hi) || graft_activation_clamp(l, lo, hi);
}

bool graft_step_conv_act(graft_activation a, bool *clamp, float *lo, float *hi)
{
    *clamp = a == GRAFT_RELU;
    *lo = 0;
    *hi = __builtin_inff();
    return a == GRAFT_LINEAR || a == GRAFT_RELU;
}

bool graft_step_bn_frozen(const graft_layer *l, bool training)
{
    return is(l, "BatchNormalization") && !l->requires_grad && (!training || !l->trains);
}

int graft_step_take_bn_clamp(const graft_model *m, graft_step *s, int j, bool training,
                             bool conv_relu, int *bn, bool *clamp, float *lo, float *hi)
{
    *bn = -1;
    if (conv_relu) return j;
    int r = graft_model_sole_reader(m, j);
    if (r > 0 && graft_step_bn_frozen(m->layers[r], training)) {
        *bn = r;
        s->layer[s->n++] = r;
        j = r;
        r = graft_model_sole_reader(m, j);
    }
    if (r > 0 && !m->layers[r]->requires_grad && graft_step_act_clamp(m->layers[r], lo, hi)) {
        *clamp = true;
        s->layer[s->n++] = r;
        j = r;
    }
    return j;
}

/* A 1x1 stride-1 Conv2D with a linear or ReLU activation. */
static bool pointwise_at(const graft_model *m, int j, bool *clamp, float *lo, float *hi)
{
    graft_conv_geom g;
    int f;
    const float *k, *b;
    graft_activation a;
    const graft_layer *l = m->layers[j];
    return !l->requires_grad && graft_conv2d_args(l, &g, &f, &k, &b, &a) && g.kh == 1 &&
           g.kw == 1 && g.sh == 1 && g.sw == 1 && f <= GRAFT_EPILOGUE_MAX_C &&
           graft_step_conv_act(a, clamp, lo, hi);
}

int graft_step_take_act(const graft_model *m, graft_step *s, int j, graft_activation *act)
{
    const int r = graft_model_sole_reader(m, j);
    if (r <= 0 || m->layers[r]->requires_grad || !graft_activation_elementwise(m->layers[r], act))
        return j;
    s->layer[s->n++] = r;
    return r;
}

bool graft_step_dw_block_match(const graft_model *m, int i, bool training, graft_step *s)
{
    if (graft_env_on(GRAFT_ENV_NO_FUSED_INFERENCE)) return false;
    graft_step f = {.kind = GRAFT_STEP_DW_BLOCK, .n = 0, .bn = -1};
    graft_dw_block *b = &f.blk;
    b->expand = b->expand_bn = b->pad = b->dw = b->dw_bn = b->project = b->project_bn = b->add = -1;
    b->residual = b->sep = -1;
    int j = i;
    const int x_in = m->layers[i]->n_inputs == 1 ? m->layers[i]->inputs[0] : -1;
    if (x_in < 0) return false;
    if (pointwise_at(m, j, &b->expand_clamp, &b->expand_lo, &b->expand_hi)) {
        b->expand = j;
        f.layer[f.n++] = j;
        j = graft_step_take_bn_clamp(m, &f, j, training, b->expand_clamp, &b->expand_bn, &b->expand_clamp,
                          &b->expand_lo, &b->expand_hi);
        j = graft_step_take_act(m, &f, j, &b->expand_act);
        j = graft_model_sole_reader(m, j);
        if (j <= 0) return false;
    }
    int t, bo, le, ri;
    if (!m->layers[j]->requires_grad && graft_zero_padding2d_pads(m->layers[j], &t, &bo, &le, &ri)) {
        b->pad = j;
        f.layer[f.n++] = j;
        j = graft_model_sole_reader(m, j);
        if (j <= 0) return false;
    }
    graft_conv_geom g;
    int filters;
    const float *k, *pk, *bias;
    graft_activation a;
    if (m->layers[j]->requires_grad) return false;
    if (graft_separable_conv2d_args(m->layers[j], &g, &filters, &k, &pk, &bias, &a)) {
        if (g.c > GRAFT_EPILOGUE_MAX_C || filters > GRAFT_EPILOGUE_MAX_C || g.kh > 16 ||
            !graft_step_conv_act(a, &b->project_clamp, &b->project_lo, &b->project_hi))
            return false;
        b->sep = b->dw = b->project = j;
        f.layer[f.n++] = j;
    } else {
        if (!graft_depthwise_conv2d_args(m->layers[j], &g, &filters, &k, &bias, &a) ||
            filters != g.c || filters > GRAFT_EPILOGUE_MAX_C || g.kh > 16 ||
            !graft_step_conv_act(a, &b->dw_clamp, &b->dw_lo, &b->dw_hi))
            return false;
        b->dw = j;
        f.layer[f.n++] = j;
        j = graft_step_take_bn_clamp(m, &f, j, training, b->dw_clamp, &b->dw_bn, &b->dw_clamp,
                                     &b->dw_lo, &b->dw_hi);
        j = graft_step_take_act(m, &f, j, &b->dw_act);
        const int p = graft_model_sole_reader(m, j);
        if (p <= 0 || !pointwise_at(m, p, &b->project_clamp, &b->project_lo, &b->project_hi)) {
            /* The step ends at the depthwise output: worth it for the
             * expanded tensor it keeps in cache, not otherwise. */
            b->project_clamp = false;
            if (b->expand < 0) return false;
            *s = f;
            return true;
        }
        b->project = j = p;
        f.layer[f.n++] = j;
    }
    j = graft_step_take_bn_clamp(m, &f, j, training, b->project_clamp, &b->project_bn, &b->project_clamp,
                      &b->project_lo, &b->project_hi);
    /* The residual: Add(block input, this), same shapes (stride 1). */
    int r = graft_model_sole_reader(m, j);
    if (r > 0) {
        const graft_layer *add = m->layers[r];
        if (is(add, "Add") && !add->requires_grad && add->n_inputs == 2) {
            int other = add->inputs[0] == j ? add->inputs[1] : add->inputs[0];
            if (other == x_in && add->inputs[0] != add->inputs[1] &&
                graft_shape_size(&m->layers[x_in]->out_shape) == graft_shape_size(&add->out_shape) &&
                m->layers[x_in]->out_shape.dim[2] == add->out_shape.dim[2]) {
                b->add = r;
                f.layer[f.n++] = r;
            }
        }
    }
    /* Only from the block's start: a block without expansion starts at its
     * pad or depthwise layer. */
    if (f.layer[0] != i) return false;
    *s = f;
    return true;
}

/* ------------------------------------------------------------ sizes */

typedef struct {
    int n;                 /* batch */
    int H, W, Cin;         /* block input */
    int Ce;                /* expanded (depthwise) channels */
    int OH, OW, Cout;      /* block output */
    int kh, kw, sh, sw;    /* depthwise */
    int pt, pl;            /* depthwise padding over the unpadded expanded tensor */
    int R;                 /* output rows per chunk */
    int G;                 /* images per group (1: an image, or a band of one, at a time) */
    bool shared;           /* the threads share each image (SHARED_PIXELS) */
    size_t shared_e, shared_d; /* then its expanded and depthwise tensors */
    size_t group_e, group_d; /* a group's expanded and depthwise tensors */
    int NR;                /* ring rows of the expanded tensor (0: no expansion) */
    bool project;          /* else the step ends at the depthwise output */
    size_t ring_floats, dbuf_floats, per_thread;
    size_t pack_e, pack_p; /* the packed expand and project kernels, ahead of the threads' parts */
} geom;

static size_t r16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The depthwise part's geometry, kernel and bias (NULL: none), and the 1x1's
 * kernel and bias (NULL where there is no 1x1). */
static void block_args(const graft_model *m, const graft_dw_block *b, graft_conv_geom *g,
                       const float **Wd, const float **dw_bias, const float **Wp,
                       const float **pw_bias)
{
    int filters;
    graft_activation a;
    graft_conv_geom pg;
    if (b->sep >= 0) {
        graft_separable_conv2d_args(m->layers[b->sep], g, &filters, Wd, Wp, pw_bias, &a);
        *dw_bias = NULL;
        return;
    }
    graft_depthwise_conv2d_args(m->layers[b->dw], g, &filters, Wd, dw_bias, &a);
    *Wp = *pw_bias = NULL;
    if (b->project >= 0) graft_conv2d_args(m->layers[b->project], &pg, &filters, Wp, pw_bias, &a);
}

static void block_geom(const graft_model *m, const graft_step *s, int n, geom *o)
{
    const graft_dw_block *b = &s->blk;
    graft_conv_geom g;
    const float *k, *bias, *pk, *pb;
    block_args(m, b, &g, &k, &bias, &pk, &pb);
    const graft_layer *first = m->layers[s->layer[0]];
    const graft_shape *in = &m->layers[first->inputs[0]]->out_shape;
    const graft_shape *out = &m->layers[s->layer[s->n - 1]]->out_shape;
    o->n = n;
    o->H = in->dim[0], o->W = in->dim[1], o->Cin = in->dim[2];
    o->Ce = g.c;
    o->OH = out->dim[0], o->OW = out->dim[1], o->Cout = out->dim[2];
    o->kh = g.kh, o->kw = g.kw, o->sh = g.sh, o->sw = g.sw;
    o->pt = g.pad_top, o->pl = g.pad_left;
    int t = 0, bo, le = 0, ri;
    if (b->pad >= 0) graft_zero_padding2d_pads(m->layers[b->pad], &t, &bo, &le, &ri);
    o->pt += t, o->pl += le;
    o->R = (CHUNK_PIXELS + o->OW - 1) / o->OW;
    if (o->R > o->OH) o->R = o->OH;
    o->NR = b->expand >= 0 ? (o->R - 1) * o->sh + o->kh : 0;
    o->project = b->project >= 0;
    o->ring_floats = r16((size_t)o->NR * o->W * o->Ce);
    o->dbuf_floats = o->project ? r16((size_t)o->R * o->OW * o->Ce) : 0;
    o->per_thread = o->ring_floats + o->dbuf_floats;
    o->G = 1;
    o->group_e = o->group_d = 0;
    const int px = o->OH * o->OW, th = graft_threads();
    if (px <= SMALL_PIXELS && n >= 2 * th) {
        int G = (GROUP_PIXELS + px - 1) / px;
        if (G > n / th) G = n / th; /* every thread keeps work */
        o->G = G;
        o->group_e = b->expand >= 0 ? r16((size_t)G * o->H * o->W * o->Ce) : 0;
        o->group_d = o->project ? r16((size_t)G * px * o->Ce) : 0;
        if (o->group_e + o->group_d > o->per_thread) o->per_thread = o->group_e + o->group_d;
    }
    o->shared = px <= SHARED_PIXELS && (n < th || (n == 1 && b->expand < 0));
    o->shared_e = o->shared && b->expand >= 0 ? r16((size_t)o->H * o->W * o->Ce) : 0;
    o->shared_d = o->shared && o->project ? r16((size_t)px * o->Ce) : 0;
    if (o->shared) o->per_thread = 0;
    else o->per_thread = graft_thread_slot_floats(o->per_thread);
    o->pack_e = b->expand >= 0 ? r16(graft_pw_pack_floats(o->Cin, o->Ce, true)) : 0;
    o->pack_p = o->project ? r16(graft_pw_pack_floats(o->Ce, o->Cout, true)) : 0;
}

size_t graft_step_dw_block_param_floats(const graft_model *m, const graft_step *s)
{
    geom g;
    block_geom(m, s, 1, &g);
    return 3 * ((size_t)2 * g.Ce + (size_t)g.Cout);
}

static size_t scratch_at(const graft_model *m, const graft_step *s, int n)
{
    geom g;
    block_geom(m, s, n, &g);
    return g.pack_e + g.pack_p + g.shared_e + g.shared_d + (size_t)graft_threads() * g.per_thread;
}

/* The plan sizes the scratch for its capacity n, and a call may bring
 * fewer images: a batch smaller than the threads (or one image on one
 * thread) then takes each small image whole, whose buffers can be larger
 * than the bands' or groups' for n. */
size_t graft_step_dw_block_scratch_floats(const graft_model *m, const graft_step *s, int n)
{
    size_t need = scratch_at(m, s, n);
    if (n > 1) {
        size_t one = scratch_at(m, s, 1);
        if (one > need) need = one;
    }
    return need;
}

/* Bands per image: one when the batch keeps every thread busy; a batch
 * smaller than the team splits its images' rows (the expanded rows at a
 * band's edge are computed by both bands, to the same bits). */
static int bands_per_image(const geom *g)
{
    const int th = graft_threads();
    int nb = g->n >= th ? 1 : (th + g->n - 1) / g->n;
    return nb > g->OH ? g->OH : nb;
}

void graft_step_dw_block_describe(const graft_model *m, const graft_step *s, int n, char *buf,
                                  size_t size)
{
    geom g;
    block_geom(m, s, n, &g);
    const graft_dw_block *b = &s->blk;
    char how[96];
    if (g.shared && graft_threads() == 1)
        snprintf(how, sizeof how, "each image (%d px) whole", g.OH * g.OW);
    else if (g.shared)
        snprintf(how, sizeof how, "each image (%d px) shared by the threads: 1x1 by columns, "
                 "depthwise by rows", g.OH * g.OW);
    else
        snprintf(how, sizeof how, "%s%d output rows (%d px) at a time, %d band(s) per image",
                 g.G > 1 ? "groups of images, " : "", g.G > 1 ? g.G * g.OH : g.R,
                 g.G > 1 ? g.G * g.OH * g.OW : g.R * g.OW, g.G > 1 ? 1 : bands_per_image(&g));
    char kernels[80] = "";
    if (b->expand >= 0)
        snprintf(kernels, sizeof kernels, "expand kernel %s",
                 graft_step_pw_how(m->layers[b->expand], (size_t)n * g.H * g.W, true,
                                   s->in_run, m->weights_constant != 0));
    char project[24] = " (the step's output)";
    if (b->project >= 0) {
        const size_t k = strlen(kernels);
        snprintf(kernels + k, sizeof kernels - k, "%s%s kernel %s", k ? ", " : "",
                 b->expand >= 0 ? "project" : "1x1",
                 graft_step_pw_how(m->layers[b->project], (size_t)n * g.OH * g.OW, true,
                                   s->in_run, m->weights_constant != 0));
        snprintf(project, sizeof project, " -> 1x1 %d", g.Cout);
    }
    char ea[24] = "", da[24] = "";
    if (b->expand_act != GRAFT_LINEAR)
        snprintf(ea, sizeof ea, " + %s", graft_activation_name(b->expand_act));
    if (b->dw_act != GRAFT_LINEAR)
        snprintf(da, sizeof da, " + %s", graft_activation_name(b->dw_act));
    snprintf(buf, size, "%s%s%s%s%s%dx%d/%d depthwise %d ch%s%s%s; %s, %s, %s",
             b->sep >= 0 ? "separable: " : "", b->expand >= 0 ? "1x1 expand" : "", ea,
             b->expand >= 0 ? " -> " : "", b->pad >= 0 ? "pad -> " : "", g.kh, g.kw, g.sh, g.Ce,
             da, project,
             b->add >= 0 ? " + residual" : "", how, kernels,
             graft_kernels_avx512() ? "AVX-512" : "AVX2");
}

/* ------------------------------------------------------------ forward */

typedef struct {
    const float *We, *Wd, *Wp; /* expand (Cin x Ce), depthwise (kh x kw x Ce), project (Ce x Cout) */
    size_t lde, ldp;           /* their row strides; 0: packed (graft_pw_pack) */
    bool stream_e, stream_p;   /* in place, streamed (graft_step_pw_kernel) */
    graft_kernel_epi ee, ed, ep;
    graft_activation ea, da; /* after the expansion's and the depthwise's epilogues */
    bool residual; /* the project's epilogue adds the block input */
    bool wide;     /* AVX-512 kernels */
} weights;

void graft_step_bn_epi(const graft_model *m, int bn, float *params, int C, graft_kernel_epi *e)
{
    if (bn < 0) return;
    if (!graft_batch_norm_inference(m->layers[bn], params, params + C, params + 2 * C)) return;
    e->mean = params;
    e->scale = params + C;
    e->shift = params + 2 * C;
}

/* Output rows [y0, y1) of image x (its block input) into out (its output). */
static void run_band(const geom *g, const weights *w, const float *x, float *out, int y0, int y1,
                     float *scratch)
{
    float *ring = scratch, *dbuf = scratch + g->ring_floats;
    const size_t erow = (size_t)g->W * g->Ce, xrow = (size_t)g->W * g->Cin;
    const size_t orow = (size_t)g->OW * g->Cout, drow = (size_t)g->OW * g->Ce;
    int have = -1; /* expanded rows below this are in the ring (or past) */
    const float *in[16];
    for (int oy = y0; oy < y1; oy += g->R) {
        const int r = y1 - oy < g->R ? y1 - oy : g->R;
        if (g->NR) {
            int lo = oy * g->sh - g->pt, hi = (oy + r - 1) * g->sh - g->pt + g->kh;
            if (lo < 0) lo = 0;
            if (hi > g->H) hi = g->H;
            if (have > lo) lo = have;
            while (lo < hi) { /* runs of rows up to the ring's wrap */
                const int slot = lo % g->NR;
                const int run = hi - lo < g->NR - slot ? hi - lo : g->NR - slot;
                float *e = ring + (size_t)slot * erow;
                graft_step_pw_gemm_cols(run * g->W, 0, g->Ce, g->Cin, x + (size_t)lo * xrow,
                                        (size_t)g->Cin, w->We, w->lde, e, (size_t)g->Ce, &w->ee,
                                        NULL, 0, w->wide, w->stream_e);
                graft_activation_rows(w->ea, e, (size_t)run * g->W, (size_t)g->Ce, (size_t)g->Ce);
                lo += run;
            }
            if (hi > have) have = hi;
        }
        /* the depthwise rows: for the project GEMM, or the step's output */
        float *d = g->project ? dbuf : out + (size_t)oy * drow;
        for (int q = 0; q < r; q++) {
            for (int ky = 0; ky < g->kh; ky++) {
                const int row = (oy + q) * g->sh - g->pt + ky;
                in[ky] = row < 0 || row >= g->H ? NULL
                         : g->NR ? ring + (size_t)(row % g->NR) * erow
                                 : x + (size_t)row * xrow;
            }
            /* the ring's rows were just written; the block input's come
             * from memory, all of them after the 1x1 of the rows before */
            graft_dw_row(in, g->W, g->Ce, g->kh, g->kw, g->sw, g->pl, g->OW, w->Wd, &w->ed,
                         d + (size_t)q * drow, w->wide,
                         g->NR ? g->kh : graft_dw_fresh(g->kh, g->sh, q == 0));
            graft_activation_rows(w->da, d + (size_t)q * drow, (size_t)g->OW, (size_t)g->Ce,
                                  (size_t)g->Ce);
        }
        if (!g->project) continue;
        /* The residual (stride 1, same shape): the block input's same pixels. */
        graft_step_pw_gemm_cols(r * g->OW, 0, g->Cout, g->Ce, dbuf, (size_t)g->Ce, w->Wp, w->ldp,
                                out + (size_t)oy * orow, (size_t)g->Cout, &w->ep,
                                w->residual ? x + (size_t)oy * orow : NULL, (size_t)g->Cin,
                                w->wide, w->stream_p);
    }
}

/* Images [0, count) from x (their block inputs) into out: the whole of each,
 * with the 1x1 GEMMs over all of the group's rows. */
static void run_group(const geom *g, const weights *w, const float *x, float *out, int count,
                      float *scratch)
{
    float *E = scratch, *D = g->project ? scratch + g->group_e : out;
    const size_t hw = (size_t)g->H * g->W, ohw = (size_t)g->OH * g->OW;
    const float *src = x; /* the depthwise's input: expanded, or the block's input */
    if (g->NR) {
        graft_step_pw_gemm_cols(count * (int)hw, 0, g->Ce, g->Cin, x, (size_t)g->Cin, w->We,
                                w->lde, E, (size_t)g->Ce, &w->ee, NULL, 0, w->wide, w->stream_e);
        graft_activation_rows(w->ea, E, (size_t)count * hw, (size_t)g->Ce, (size_t)g->Ce);
        src = E;
    }
    const float *in[16];
    for (int q = 0; q < count; q++)
        for (int oy = 0; oy < g->OH; oy++) {
            for (int ky = 0; ky < g->kh; ky++) {
                const int row = oy * g->sh - g->pt + ky;
                in[ky] = row < 0 || row >= g->H ? NULL : src + ((size_t)q * hw + (size_t)row * g->W) * g->Ce;
            }
            float *d = D + ((size_t)q * ohw + (size_t)oy * g->OW) * g->Ce;
            graft_dw_row(in, g->W, g->Ce, g->kh, g->kw, g->sw, g->pl, g->OW, w->Wd, &w->ed, d,
                         w->wide, graft_dw_fresh(g->kh, g->sh, oy == 0));
            graft_activation_rows(w->da, d, (size_t)g->OW, (size_t)g->Ce, (size_t)g->Ce);
        }
    if (!g->project) return;
    graft_step_pw_gemm_cols(count * (int)ohw, 0, g->Cout, g->Ce, D, (size_t)g->Ce, w->Wp, w->ldp,
                            out, (size_t)g->Cout, &w->ep, w->residual ? x : NULL, (size_t)g->Cin,
                            w->wide, w->stream_p);
}

/* Thread t's part of a GEMM over M rows and N columns that nt threads
 * share: its panels of columns where they split evenly, else its rows
 * (graft_pw_share_even). */
static void share(int M, int N, int t, int nt, int *r0, int *r1, int *c0, int *c1)
{
    if (graft_pw_share_even(N, nt)) {
        graft_pw_share(N, t, nt, c0, c1);
        *r0 = 0, *r1 = M;
    } else {
        *c0 = 0, *c1 = N;
        *r0 = (int)((long)M * t / nt), *r1 = (int)((long)M * (t + 1) / nt);
    }
}

/* One image x into out by thread t of the nt in the calling parallel
 * region (all of them call it): the expand and project GEMMs' columns (or
 * rows: share) and the depthwise's rows split among them, E and D (the
 * expanded and depthwise tensors) shared. */
static void run_shared(const geom *g, const weights *w, const float *x, float *out, float *E,
                       float *D, int t, int nt)
{
    const float *src = x;
    int c0, c1, r0, r1;
    if (g->NR) {
        share(g->H * g->W, g->Ce, t, nt, &r0, &r1, &c0, &c1);
        if (c1 > c0 && r1 > r0) {
            graft_step_pw_gemm_cols(r1 - r0, c0, c1 - c0, g->Cin, x + (size_t)r0 * g->Cin,
                                    (size_t)g->Cin, w->We, w->lde, E + (size_t)r0 * g->Ce,
                                    (size_t)g->Ce, &w->ee, NULL, 0, w->wide, w->stream_e);
            graft_activation_rows(w->ea, E + (size_t)r0 * g->Ce + c0, (size_t)(r1 - r0),
                                  (size_t)(c1 - c0), (size_t)g->Ce);
        }
        src = E;
#pragma omp barrier
    }
    const float *in[16];
    const int oy0 = g->OH * t / nt;
    for (int oy = oy0; oy < g->OH * (t + 1) / nt; oy++) {
        for (int ky = 0; ky < g->kh; ky++) {
            const int row = oy * g->sh - g->pt + ky;
            in[ky] = row < 0 || row >= g->H ? NULL : src + (size_t)row * g->W * g->Ce;
        }
        float *d = (g->project ? D : out) + (size_t)oy * g->OW * g->Ce;
        graft_dw_row(in, g->W, g->Ce, g->kh, g->kw, g->sw, g->pl, g->OW, w->Wd, &w->ed, d, w->wide,
                     graft_dw_fresh(g->kh, g->sh, oy == oy0));
        graft_activation_rows(w->da, d, (size_t)g->OW, (size_t)g->Ce, (size_t)g->Ce);
    }
#pragma omp barrier
    if (!g->project) return; /* that barrier frees E for the next image */
    share(g->OH * g->OW, g->Cout, t, nt, &r0, &r1, &c0, &c1);
    if (c1 > c0 && r1 > r0)
        graft_step_pw_gemm_cols(r1 - r0, c0, c1 - c0, g->Ce, D + (size_t)r0 * g->Ce,
                                (size_t)g->Ce, w->Wp, w->ldp, out + (size_t)r0 * g->Cout,
                                (size_t)g->Cout, &w->ep,
                                w->residual ? x + (size_t)r0 * g->Cin : NULL, (size_t)g->Cin,
                                w->wide, w->stream_p);
    /* E and D are the next image's: everyone done with them first */
#pragma omp barrier
}

void graft_step_dw_block_forward(graft_model *m, graft_step *s, const graft_fwd *f)
{
    const graft_dw_block *b = &s->blk;
    geom g;
    block_geom(m, s, f->n, &g);
    weights w = {.wide = graft_kernels_avx512()};
    graft_conv_geom cg;
    int filters;
    const float *bias;
    graft_activation a;
    float *params = s->bn_params;
    if (b->expand >= 0) {
        graft_conv2d_args(m->layers[b->expand], &cg, &filters, &w.We, &bias, &a);
        w.ee.bias = bias;
        graft_step_bn_epi(m, b->expand_bn, params, g.Ce, &w.ee);
        w.ee.clamp = b->expand_clamp, w.ee.lo = b->expand_lo, w.ee.hi = b->expand_hi;
        w.ea = b->expand_act;
    }
    params += 3 * (size_t)g.Ce;
    const float *dw_bias, *pw_bias;
    block_args(m, b, &cg, &w.Wd, &dw_bias, &w.Wp, &pw_bias);
    w.ed.bias = dw_bias;
    graft_step_bn_epi(m, b->dw_bn, params, g.Ce, &w.ed);
    w.ed.clamp = b->dw_clamp, w.ed.lo = b->dw_lo, w.ed.hi = b->dw_hi;
    w.da = b->dw_act;
    params += 3 * (size_t)g.Ce;
    w.ep.bias = pw_bias;
    graft_step_bn_epi(m, b->project_bn, params, g.Cout, &w.ep);
    w.ep.clamp = b->project_clamp, w.ep.lo = b->project_lo, w.ep.hi = b->project_hi;
    w.residual = b->add >= 0;

    /* The 1x1 kernels in the GEMM's panels: packed into the scratch, shared
     * by the threads, where the batch is large enough for it to pay; the
     * layers' kept packed copies in a depth-first run or with constant
     * weights; else in place, streamed where they are large
     * (graft_step_pw_kernel). */
    float *packed = f->scratch;
    if (b->expand >= 0)
        w.We = graft_step_pw_kernel(m->layers[b->expand], (size_t)f->n * g.H * g.W, w.wide, true,
                                    s->in_run, f->promise, packed, &w.lde, &w.stream_e);
    if (b->project >= 0)
        w.Wp = graft_step_pw_kernel(m->layers[b->project], (size_t)f->n * g.OH * g.OW, w.wide, true,
                                    s->in_run, f->promise, packed + g.pack_e, &w.ldp,
                                    &w.stream_p);
    float *E = f->scratch + g.pack_e + g.pack_p, *D = E + g.shared_e;
    float *threads_scratch = D + g.shared_d;
    const float *x = f->in[0];
    float *out = m->layers[s->layer[s->n - 1]]->out;
    const int nb = bands_per_image(&g);
    /* read by the omp pragmas, which the analyzer does not see */
    // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores)
    const int th = graft_threads();
    const long items = (long)f->n * nb;
    const size_t in_img = (size_t)g.H * g.W * g.Cin, out_img = (size_t)g.OH * g.OW * g.Cout;
    if (g.shared) {
#pragma omp parallel num_threads(th)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            for (int img = 0; img < f->n; img++)
                run_shared(&g, &w, x + (size_t)img * in_img, out + (size_t)img * out_img, E, D, t, nt);
        }
        return;
    }
    if (g.G > 1) {
        /* Each thread its even share of the images, in as few groups of at
         * most G as hold them: whole groups of G dealt out to the threads
         * left one thread 20 images of 32 and the other 12. */
#pragma omp parallel num_threads(th)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int i0 = (int)((long)f->n * t / nt), count = (int)((long)f->n * (t + 1) / nt) - i0;
            const int groups = (count + g.G - 1) / g.G;
            float *scratch = threads_scratch + (size_t)t * g.per_thread;
            for (int q = 0; q < groups; q++) {
                const int lo = i0 + (int)((long)count * q / groups);
                const int hi = i0 + (int)((long)count * (q + 1) / groups);
                run_group(&g, &w, x + (size_t)lo * in_img, out + (size_t)lo * out_img, hi - lo,
                          scratch);
            }
        }
        return;
    }
#pragma omp parallel num_threads(th)
    {
        float *scratch = threads_scratch + (size_t)omp_get_thread_num() * g.per_thread;
#pragma omp for schedule(static)
        for (long it = 0; it < items; it++) {
            const int img = (int)(it / nb), band = (int)(it % nb);
            const int y0 = (int)((long)g.OH * band / nb), y1 = (int)((long)g.OH * (band + 1) / nb);
            run_band(&g, &w, x + (size_t)img * in_img, out + (size_t)img * out_img, y0, y1, scratch);
        }
    }
}
