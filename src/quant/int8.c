/*
 * int8 inference: which layers the 8-bit run takes (plan_run, take_conv,
 * take_pool), their calibration (float primitives over the folded
 * kernels), and the run itself, a oneDNN primitive per step over one arena
 * of 8-bit tensors.
 *
 * A step is one of
 *   CONV  [ZeroPadding2D ->] Conv2D or DepthwiseConv2D (depth multiplier 1)
 *         [-> BatchNormalization] [-> Add of a tensor an earlier step made]
 *         [-> ReLU / relu6]: the padding as the convolution's, the
 *         normalisation folded into the kernel and bias, the Add as
 *         oneDNN's sum post-op into the output buffer that already holds
 *         the other tensor (the other tensor's own buffer where nothing
 *         reads it later), the clamp as an eltwise post-op;
 *   POOL  [ZeroPadding2D ->] MaxPooling2D: 8-bit in and out at one scale;
 *         a padding only over a clamped (non-negative) tensor, where its
 *         zeros never win a max.
 * Layers that hand their input on (Dropout) take no step. Each layer of a
 * chain is the sole reader of the one before, as in Keras Applications'
 * bases; steps run in the order of their first layers.
 */
#include "quant/int8.h"

#include "core/core.h"
#include "kernels/kernels.h"

#include <dnnl.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { Q_CONV, Q_DW, Q_POOL } qkind;

typedef struct {
    qkind kind;
    int first, last;   /* its first and last layers; its output tensor is last's */
    int n;             /* its layers, in graph order */
    int layer[8];
    int in;            /* the tensor it reads (a layer index; 0: the input) */
    int residual;      /* the Add's other tensor (-1: none) */
    int c, h, w;       /* input */
    int oc, oh, ow;    /* output */
    int kh, kw, sh, sw, pt, pb, pl, pr;
    float *kernel;     /* folded: HWIO (Q_DW: HWC) */
    float *bias;       /* folded, one per output channel */
    float *wscale;     /* the s8 kernel's scale per output channel */
    int8_t *qkernel;   /* the s8 kernel, laid out as `kernel` */
    bool clamp;
    float lo, hi;
} qstep;

typedef struct {
    size_t elems;    /* per image */
    float min, max;  /* over the calibration images */
    bool u8;         /* no negative value seen: u8, else s8 */
    float scale;     /* x = scale * q */
    int made, last_read; /* steps (-1: the input; n_steps: read after the run) */
} qtensor;

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, bias, dst, scratch;
    float *bias_data;
    bool inplace; /* the Add's other tensor is already in the output buffer */
} qprim;

typedef struct {
    int n; /* images; 0: unused slot */
    bool f32;
    qprim *p; /* per step */
    /* The input's quantization and the output's dequantization. */
    dnnl_primitive_t in_reorder, out_reorder;
    dnnl_memory_t in_src, in_dst, out_src, out_dst;
    size_t *off; /* per layer: its tensor's byte offset in the arena */
    unsigned char *arena;
    void *scratchpad;
    size_t scratchpad_bytes;
} qset;

#define N_SETS 4

struct graft_int8 {
    graft_model *m;
    int boundary, out;
    int n_steps;
    qstep *steps;
    qtensor *t;     /* per layer; used where tensor_of[i] == i */
    int *tensor_of; /* per layer: the layer whose tensor is its output */
    bool vnni;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    qset sets[N_SETS];
    int next;
    int chunk; /* images a run takes at a time */
};

#define L(i) (q->m->layers[(i)])

/* ------------------------------------------------------------- the run's steps */

static int next_reader(const graft_model *m, int j) { return graft_model_sole_reader(m, j); }

static bool is_class(const graft_layer *l, const char *cls)
{
    return strcmp(l->ops->class_name, cls) == 0;
}

static int alias_of(const graft_model *m, int i)
{
    const graft_layer *l = m->layers[i];
    if (l->n_inputs != 1 || !l->ops->passes_through || !l->ops->passes_through(l, false))
        return -1;
    const graft_layer *src = m->layers[l->inputs[0]];
    if (graft_shape_size(&l->out_shape) != graft_shape_size(&src->out_shape) ||
        l->out_shape.rank != 3 || src->out_shape.rank != 3)
        return -1;
    return l->inputs[0];
}

static void step_free(qstep *s)
{
    free(s->kernel);
    free(s->bias);
    free(s->wscale);
    free(s->qkernel);
}

static bool take_clamp(const graft_model *m, qstep *s, int *j)
{
    int r = next_reader(m, *j);
    float lo, hi;
    if (r < 0 || !(graft_relu_clamp(m->layers[r], &lo, &hi) ||
                   graft_activation_clamp(m->layers[r], &lo, &hi)))
        return false;
    s->clamp = true;
    s->lo = lo;
    s->hi = hi;
    *j = r;
    s->layer[s->n++] = r;
    return true;
}

/* The window geometry g over an input padded by `pad` (top, bottom, left,
 * right; a ZeroPadding2D's) in oneDNN's terms: the unpadded input, the
 * padding before it, and after it what the last window reaches past it. */
static void set_window(qstep *s, const graft_conv_geom *g, const int pad[4])
{
    s->c = g->c;
    s->h = g->h - pad[0] - pad[1];
    s->w = g->w - pad[2] - pad[3];
    s->oh = g->oh;
    s->ow = g->ow;
    s->kh = g->kh;
    s->kw = g->kw;
    s->sh = g->sh;
    s->sw = g->sw;
    s->pt = pad[0] + g->pad_top;
    s->pl = pad[2] + g->pad_left;
    s->pb = (s->oh - 1) * s->sh + s->kh - s->h - s->pt;
    s->pr = (s->ow - 1) * s->sw + s->kw - s->w - s->pl;
    if (s->pb < 0) s->pb = 0;
    if (s->pr < 0) s->pr = 0;
}

/* [pad ->] conv [-> BN] [-> Add] [-> clamp] from layer i. */
static graft_status take_conv(graft_int8 *q, int i, qstep *s, bool *taken)
{
    graft_model *m = q->m;
    int pad[4] = {0, 0, 0, 0}, c = i;
    if (graft_zero_padding2d_pads(L(i), &pad[0], &pad[1], &pad[2], &pad[3])) {
        c = next_reader(m, i);
        if (c < 0) return GRAFT_OK;
    }
    graft_conv_geom g;
    int filters;
    const float *kernel, *bias;
    graft_activation act;
    if (graft_conv2d_args(L(c), &g, &filters, &kernel, &bias, &act))
        s->kind = Q_CONV;
    else if (graft_depthwise_conv2d_args(L(c), &g, &filters, &kernel, &bias, &act) &&
             filters == g.c)
        s->kind = Q_DW;
    else
        return GRAFT_OK;
    if (act != GRAFT_LINEAR && act != GRAFT_RELU) return GRAFT_OK;
    s->first = i;
    s->n = 0;
    s->layer[s->n++] = i;
    if (c != i) s->layer[s->n++] = c;
    s->in = q->tensor_of[L(i)->inputs[0]];
    s->residual = -1;
    set_window(s, &g, pad);
    s->oc = filters;
    size_t kn = (size_t)g.kh * g.kw * g.c * (s->kind == Q_CONV ? (size_t)filters : 1);
    s->kernel = malloc(kn * sizeof(float));
    s->bias = calloc((size_t)filters, sizeof(float));
    s->wscale = calloc((size_t)filters, sizeof(float));
    float *bn = malloc(3 * (size_t)filters * sizeof(float));
    if (!s->kernel || !s->bias || !s->wscale || !bn) {
        free(bn);
        step_free(s);
        return graft_fail(GRAFT_ENOMEM, "int8: out of memory for layer '%s'", L(c)->name);
    }
    memcpy(s->kernel, kernel, kn * sizeof(float));
    if (bias) memcpy(s->bias, bias, (size_t)filters * sizeof(float));
    int j = c;
    if (act == GRAFT_RELU) {
        s->clamp = true;
        s->lo = 0;
        s->hi = INFINITY;
    } else {
        int r = next_reader(m, j);
        float *mean = bn, *scale = bn + filters, *shift = bn + 2 * filters;
        if (r > 0 && is_class(L(r), "BatchNormalization") &&
            L(r)->out_shape.dim[L(r)->out_shape.rank - 1] == filters &&
            graft_batch_norm_inference(L(r), mean, scale, shift)) {
            for (size_t e = 0; e < kn; e++) s->kernel[e] *= scale[e % (size_t)filters];
            for (int f = 0; f < filters; f++)
                s->bias[f] = (s->bias[f] - mean[f]) * scale[f] + shift[f];
            j = r;
            s->layer[s->n++] = r;
        }
        r = next_reader(m, j);
        if (r > 0 && is_class(L(r), "Add") && L(r)->n_inputs == 2) {
            int other = q->tensor_of[L(r)->inputs[0] == j ? L(r)->inputs[1] : L(r)->inputs[0]];
            /* The other tensor must exist when the step runs: made by an
             * earlier step, or the input. */
            bool made = other == 0;
            for (int k = 0; k < q->n_steps && !made; k++) made = q->steps[k].last == other;
            if (made &&
                graft_shape_size(&L(other)->out_shape) == graft_shape_size(&L(r)->out_shape)) {
                s->residual = other;
                j = r;
                s->layer[s->n++] = r;
            }
        }
        take_clamp(m, s, &j);
    }
    free(bn);
    s->last = j;
    *taken = true;
    return GRAFT_OK;
}

/* [pad ->] MaxPooling2D from layer i. */
static bool take_pool(graft_int8 *q, int i, qstep *s)
{
    int pad[4] = {0, 0, 0, 0}, p = i;
    if (graft_zero_padding2d_pads(L(i), &pad[0], &pad[1], &pad[2], &pad[3])) {
        p = next_reader(q->m, i);
        if (p < 0) return false;
    }
    graft_conv_geom g;
    if (!graft_max_pool_geom(L(p), &g)) return false;
    int in = q->tensor_of[L(i)->inputs[0]];
    bool padded = pad[0] || pad[1] || pad[2] || pad[3];
    if (padded) { /* zeros may join a max only over a clamped tensor */
        const qstep *made = NULL;
        for (int k = 0; k < q->n_steps; k++)
            if (q->steps[k].last == in) made = &q->steps[k];
        if (!made || !made->clamp || made->lo < 0) return false;
    }
    *s = (qstep){.kind = Q_POOL, .first = i, .last = p, .in = in, .residual = -1, .n = 1,
                 .layer = {i, p}};
    s->n = p == i ? 1 : 2;
    set_window(s, &g, pad);
    s->oc = g.c;
    return true;
}

/* Whether the float plan may start at b: its layers read, of the layers
 * below b, only the run's output tensor (b - 1's). */
static bool boundary_ok(const graft_int8 *q, int b)
{
    const graft_model *m = q->m;
    int out = q->tensor_of[b - 1];
    if (graft_model_output_index(m) < b - 1) return false;
    for (int j = b; j < m->n_layers; j++)
        for (int k = 0; k < m->layers[j]->n_inputs; k++) {
            int t = m->layers[j]->inputs[k];
            if (t < b && q->tensor_of[t] != out) return false;
        }
    return true;
}

static int highest_layer(const graft_int8 *q)
{
    int h = 0;
    for (int k = 0; k < q->n_steps; k++)
        if (q->steps[k].last > h) h = q->steps[k].last;
    return h;
}

static graft_status plan_run(graft_int8 *q)
{
    graft_model *m = q->m;
    q->steps = calloc((size_t)m->n_layers, sizeof(qstep));
    q->tensor_of = malloc((size_t)m->n_layers * sizeof(int));
    q->t = calloc((size_t)m->n_layers, sizeof(qtensor));
    if (!q->steps || !q->tensor_of || !q->t)
        return graft_fail(GRAFT_ENOMEM, "int8: out of memory for model '%s'", m->name);
    for (int i = 0; i < m->n_layers; i++) q->tensor_of[i] = i;
    const graft_shape *is = &m->layers[0]->out_shape;
    if (m->n_layers < 2 || is->rank != 3)
        return graft_fail(GRAFT_EUNSUPPORTED,
                          "int8: model '%s' does not take images (its input is not (H, W, C))",
                          m->name);
    /* Steps in the order of their first layers; a chain's later layers may
     * lie past other steps' layers (Keras orders ResNet's shortcut and main
     * path convolutions alternately). */
    bool *taken_by = calloc((size_t)m->n_layers, sizeof(bool));
    if (!taken_by) return graft_fail(GRAFT_ENOMEM, "int8: out of memory for model '%s'", m->name);
    int i = 1;
    for (; i < m->n_layers; i++) {
        if (taken_by[i]) continue;
        int a = alias_of(m, i);
        if (a >= 0) {
            q->tensor_of[i] = q->tensor_of[a];
            continue;
        }
        qstep s = {0};
        bool taken = false;
        graft_status st = take_conv(q, i, &s, &taken);
        if (st != GRAFT_OK) {
            free(taken_by);
            return st;
        }
        if (!taken) taken = take_pool(q, i, &s);
        if (!taken) break;
        for (int j = 0; j < s.n; j++) taken_by[s.layer[j]] = true;
        q->steps[q->n_steps++] = s;
    }
    free(taken_by);
    /* Back off to a boundary the float plan can start at: below it, every
     * layer in a step (or handing its input on), none above. */
    int b = i;
    while (q->n_steps > 0 && (highest_layer(q) >= b || !boundary_ok(q, b))) {
        qstep *s = &q->steps[--q->n_steps];
        if (s->first < b) b = s->first;
        step_free(s);
        memset(s, 0, sizeof *s);
    }
    if (q->n_steps == 0) {
        const graft_layer *l = m->layers[i < m->n_layers ? i : 1];
        return graft_fail(GRAFT_EUNSUPPORTED,
                          "int8: model '%s': layer '%s' (%s) right after the input has no "
                          "8-bit form (graft quantizes convolutions, their BatchNormalization, "
                          "ReLU and Add, zero paddings and max pools)",
                          m->name, l->name, l->ops->class_name);
    }
    q->boundary = b;
    q->out = q->tensor_of[b - 1];
    return GRAFT_OK;
}

/* ------------------------------------------------------------- tensors and their scales */

static void tensors_init(graft_int8 *q)
{
    for (int i = 0; i < q->m->n_layers; i++) q->t[i].made = q->t[i].last_read = -2;
    q->t[0].elems = graft_shape_size(&L(0)->out_shape);
    q->t[0].made = -1;
    q->t[0].min = INFINITY;
    q->t[0].max = -INFINITY;
    for (int k = 0; k < q->n_steps; k++) {
        qstep *s = &q->steps[k];
        qtensor *o = &q->t[s->last];
        o->elems = (size_t)s->oh * s->ow * s->oc;
        o->made = k;
        o->min = INFINITY;
        o->max = -INFINITY;
        q->t[s->in].last_read = k;
        if (s->residual >= 0) q->t[s->residual].last_read = k;
    }
    q->t[q->out].last_read = q->n_steps;
}

static void range_of(const float *x, size_t n, float *lo, float *hi)
{
    float a = *lo, b = *hi;
#pragma omp parallel for reduction(min : a) reduction(max : b) schedule(static)
    for (size_t i = 0; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

static void scales_from_ranges(graft_int8 *q)
{
    /* A pool keeps its input's scale: its 8-bit values are its input's. */
    for (int k = 0; k < q->n_steps; k++)
        if (q->steps[k].kind == Q_POOL) {
            q->t[q->steps[k].last].min = q->t[q->steps[k].in].min;
            q->t[q->steps[k].last].max = q->t[q->steps[k].in].max;
        }
    for (int i = 0; i < q->m->n_layers; i++) {
        qtensor *t = &q->t[i];
        if (t->made < -1) continue;
        t->u8 = t->min >= 0;
        float mag = t->u8 ? t->max : fmaxf(-t->min, t->max);
        t->scale = mag > 0 && isfinite(mag) ? mag / (t->u8 ? 255.0f : 127.0f) : 1.0f;
    }
}

/* s8 kernel per output channel: symmetric, 127 levels each way with VNNI;
 * 63 without, where oneDNN's u8 x s8 pairs add in 16 bits and could
 * saturate (its documentation asks for 7-bit kernels there). */
static bool quantize_kernel(graft_int8 *q, qstep *s)
{
    size_t per = (size_t)s->kh * s->kw * (s->kind == Q_CONV ? (size_t)s->c : 1);
    size_t stride = (size_t)s->oc;
    float levels = q->vnni ? 127.0f : 63.0f;
    for (int f = 0; f < s->oc; f++) {
        float mag = 0;
        for (size_t e = 0; e < per; e++) mag = fmaxf(mag, fabsf(s->kernel[e * stride + f]));
        s->wscale[f] = mag > 0 ? mag / levels : 1.0f;
    }
    s->qkernel = malloc(per * stride > 0 ? per * stride : 1);
    if (!s->qkernel) return false;
    for (size_t i = 0; i < per * stride; i++) {
        float v = nearbyintf(s->kernel[i] / s->wscale[i % stride]);
        s->qkernel[i] = (int8_t)(v > levels ? levels : v < -levels ? -levels : v);
    }
    return true;
}

/* ------------------------------------------------------------- oneDNN primitives */

static dnnl_data_type_t dtype(const qset *S, const qtensor *t)
{
    return S->f32 ? dnnl_f32 : t->u8 ? dnnl_u8 : dnnl_s8;
}

static graft_status dnnl_failed(dnnl_status_t e, const graft_int8 *q, int layer, const char *what)
{
    return graft_fail(GRAFT_EUNSUPPORTED, "int8: oneDNN refused %s for layer '%s' of model '%s' (status %d)",
                      what, L(layer)->name, q->m->name, (int)e);
}

#define DN(call, layer, what)                                                              \
    do {                                                                                   \
        dnnl_status_t e_ = (call);                                                         \
        if (e_ != dnnl_success) return dnnl_failed(e_, q, (layer), (what));                \
    } while (0)

static graft_status act_desc(const graft_int8 *q, const qset *S, int layer, int n, int c, int h,
                             int w, dnnl_data_type_t dt, dnnl_memory_desc_t *d)
{
    (void)S;
    dnnl_dims_t dims = {n, c, h, w};
    DN(dnnl_memory_desc_init_by_tag(d, 4, dims, dt, dnnl_nhwc), layer, "a tensor's layout");
    return GRAFT_OK;
}

static graft_status attr_new(const graft_int8 *q, int layer, dnnl_primitive_attr_t *a)
{
    DN(dnnl_primitive_attr_create(a), layer, "attributes");
    DN(dnnl_primitive_attr_set_scratchpad_mode(*a, dnnl_scratchpad_mode_user), layer,
       "a user scratchpad");
    return GRAFT_OK;
}

static graft_status finish_prim(graft_int8 *q, qset *S, qprim *P, int layer,
                                dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t bytes = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (bytes > S->scratchpad_bytes) S->scratchpad_bytes = bytes;
    if (sp) DN(dnnl_memory_create(&P->scratch, sp, q->engine, DNNL_MEMORY_NONE), layer, "a scratchpad");
    DN(dnnl_primitive_create(&P->prim, pd), layer, "the primitive");
    return GRAFT_OK;
}

static graft_status build_conv(graft_int8 *q, qset *S, int k)
{
    qstep *s = &q->steps[k];
    qprim *P = &S->p[k];
    const qtensor *ti = &q->t[s->in], *to = &q->t[s->last];
    int layer = s->last;
    dnnl_memory_desc_t src, dst, wei, bias, wuser;
    graft_status st = act_desc(q, S, layer, S->n, s->c, s->h, s->w, dtype(S, ti), &src);
    if (st == GRAFT_OK)
        st = act_desc(q, S, layer, S->n, s->oc, s->oh, s->ow, dtype(S, to), &dst);
    if (st != GRAFT_OK) return st;
    dnnl_dims_t bd = {s->oc};
    DN(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_a), layer, "the bias");
    dnnl_data_type_t wdt = S->f32 ? dnnl_f32 : dnnl_s8;
    if (s->kind == Q_CONV) {
        dnnl_dims_t wd = {s->oc, s->c, s->kh, s->kw};
        DN(dnnl_memory_desc_init_by_tag(&wei, 4, wd, wdt, dnnl_format_tag_any), layer, "the kernel");
        DN(dnnl_memory_desc_init_by_tag(&wuser, 4, wd, wdt, dnnl_hwio), layer, "the kernel");
    } else {
        dnnl_dims_t wd = {s->c, 1, 1, s->kh, s->kw};
        DN(dnnl_memory_desc_init_by_tag(&wei, 5, wd, wdt, dnnl_format_tag_any), layer, "the kernel");
        DN(dnnl_memory_desc_init_by_tag(&wuser, 5, wd, wdt, dnnl_hwigo), layer, "the kernel");
    }
    dnnl_dims_t strides = {s->sh, s->sw}, pl = {s->pt, s->pl}, pr = {s->pb, s->pr};
    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                          &src, &wei, &bias, &dst, strides, pl, pr),
       layer, "the convolution");
    dnnl_primitive_attr_t attr;
    st = attr_new(q, layer, &attr);
    if (st != GRAFT_OK) return st;
    float so = S->f32 ? 1.0f : to->scale, si = S->f32 ? 1.0f : ti->scale;
    float *osc = malloc((size_t)s->oc * sizeof(float));
    P->bias_data = malloc((size_t)s->oc * sizeof(float));
    if (!osc || !P->bias_data) {
        free(osc);
        dnnl_primitive_attr_destroy(attr);
        return graft_fail(GRAFT_ENOMEM, "int8: out of memory for layer '%s'", L(layer)->name);
    }
    /* oneDNN's int8 convolution: dst = oscale * (acc + bias), so the bias
     * is in the accumulator's units. */
    for (int f = 0; f < s->oc; f++) {
        float acc_unit = S->f32 ? 1.0f : si * s->wscale[f];
        osc[f] = acc_unit / so;
        P->bias_data[f] = s->bias[f] / acc_unit;
    }
    dnnl_post_ops_t po;
    dnnl_status_t e = dnnl_post_ops_create(&po);
    if (e == dnnl_success && s->residual >= 0) {
        const qtensor *tr = &q->t[s->residual];
        e = dnnl_post_ops_append_sum_v2(po, S->f32 ? 1.0f : tr->scale / so, dtype(S, tr));
    }
    if (e == dnnl_success && s->clamp)
        e = isinf(s->hi) ? dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0)
                         : dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip,
                                                        s->lo / so, s->hi / so);
    if (e == dnnl_success) e = dnnl_primitive_attr_set_post_ops(attr, po);
    if (e == dnnl_success && !S->f32) e = dnnl_primitive_attr_set_output_scales(attr, s->oc, 1 << 1, osc);
    free(osc);
    dnnl_primitive_desc_t pd = NULL;
    if (e == dnnl_success) e = dnnl_primitive_desc_create(&pd, &cd, attr, q->engine, NULL);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    if (e != dnnl_success) return dnnl_failed(e, q, layer, "the convolution's primitive");
    /* The kernel, in 8 bits or float, reordered once into the primitive's layout. */
    size_t kn = (size_t)s->kh * s->kw * s->c * (s->kind == Q_CONV ? (size_t)s->oc : 1);
    void *user = malloc(kn * (S->f32 ? sizeof(float) : 1));
    if (!user) {
        dnnl_primitive_desc_destroy(pd);
        return graft_fail(GRAFT_ENOMEM, "int8: out of memory for layer '%s'", L(layer)->name);
    }
    memcpy(user, S->f32 ? (const void *)s->kernel : (const void *)s->qkernel,
           kn * (S->f32 ? sizeof(float) : 1));
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_memory_t mu = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    e = dnnl_memory_create(&P->wei, wq, q->engine, DNNL_MEMORY_ALLOCATE);
    if (e == dnnl_success) e = dnnl_memory_create(&mu, &wuser, q->engine, user);
    if (e == dnnl_success)
        e = dnnl_reorder_primitive_desc_create(&rpd, &wuser, q->engine, wq, q->engine, NULL);
    if (e == dnnl_success) e = dnnl_primitive_create(&r, rpd);
    if (e == dnnl_success) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, mu}, {DNNL_ARG_TO, P->wei}};
        e = dnnl_primitive_execute(r, q->stream, 2, a);
        if (e == dnnl_success) e = dnnl_stream_wait(q->stream);
    }
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (mu) dnnl_memory_destroy(mu);
    free(user);
    if (e == dnnl_success) e = dnnl_memory_create(&P->bias, &bias, q->engine, P->bias_data);
    if (e == dnnl_success) e = dnnl_memory_create(&P->src, &src, q->engine, DNNL_MEMORY_NONE);
    if (e == dnnl_success) e = dnnl_memory_create(&P->dst, &dst, q->engine, DNNL_MEMORY_NONE);
    if (e != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        return dnnl_failed(e, q, layer, "the kernel's reorder");
    }
    st = finish_prim(q, S, P, layer, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static graft_status build_pool(graft_int8 *q, qset *S, int k)
{
    qstep *s = &q->steps[k];
    qprim *P = &S->p[k];
    int layer = s->last;
    dnnl_memory_desc_t src, dst;
    graft_status st = act_desc(q, S, layer, S->n, s->c, s->h, s->w, dtype(S, &q->t[s->in]), &src);
    if (st == GRAFT_OK)
        st = act_desc(q, S, layer, S->n, s->oc, s->oh, s->ow, dtype(S, &q->t[s->last]), &dst);
    if (st != GRAFT_OK) return st;
    dnnl_dims_t strides = {s->sh, s->sw}, kernel = {s->kh, s->kw}, pl = {s->pt, s->pl},
                pr = {s->pb, s->pr};
    dnnl_pooling_desc_t d;
    DN(dnnl_pooling_forward_desc_init(&d, dnnl_forward_inference, dnnl_pooling_max, &src, &dst,
                                      strides, kernel, pl, pr),
       layer, "the pool");
    dnnl_primitive_attr_t attr;
    st = attr_new(q, layer, &attr);
    if (st != GRAFT_OK) return st;
    dnnl_primitive_desc_t pd;
    dnnl_status_t e = dnnl_primitive_desc_create(&pd, &d, attr, q->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (e != dnnl_success) return dnnl_failed(e, q, layer, "the pool's primitive");
    e = dnnl_memory_create(&P->src, &src, q->engine, DNNL_MEMORY_NONE);
    if (e == dnnl_success) e = dnnl_memory_create(&P->dst, &dst, q->engine, DNNL_MEMORY_NONE);
    if (e != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        return dnnl_failed(e, q, layer, "the pool's tensors");
    }
    st = finish_prim(q, S, P, layer, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

/* The input's float -> 8 bits (or float) and the output's back: reorders
 * with a scale. */
static graft_status build_reorder(graft_int8 *q, qset *S, int layer, bool input,
                                  dnnl_primitive_t *prim, dnnl_memory_t *from, dnnl_memory_t *to)
{
    const qtensor *t = &q->t[layer];
    const graft_shape *sh = &L(layer)->out_shape;
    dnnl_memory_desc_t f32, qd;
    graft_status st = act_desc(q, S, layer, S->n, sh->dim[2], sh->dim[0], sh->dim[1], dnnl_f32, &f32);
    if (st == GRAFT_OK)
        st = act_desc(q, S, layer, S->n, sh->dim[2], sh->dim[0], sh->dim[1], dtype(S, t), &qd);
    if (st != GRAFT_OK) return st;
    const dnnl_memory_desc_t *a = input ? &f32 : &qd, *b = input ? &qd : &f32;
    dnnl_primitive_attr_t attr;
    DN(dnnl_primitive_attr_create(&attr), layer, "attributes");
    float scale = S->f32 ? 1.0f : input ? 1.0f / t->scale : t->scale;
    dnnl_status_t e = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale);
    dnnl_primitive_desc_t pd = NULL;
    if (e == dnnl_success) e = dnnl_reorder_primitive_desc_create(&pd, a, q->engine, b, q->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    if (e == dnnl_success) e = dnnl_primitive_create(prim, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (e == dnnl_success) e = dnnl_memory_create(from, a, q->engine, DNNL_MEMORY_NONE);
    if (e == dnnl_success) e = dnnl_memory_create(to, b, q->engine, DNNL_MEMORY_NONE);
    if (e != dnnl_success) return dnnl_failed(e, q, layer, input ? "the input's reorder" : "the output's reorder");
    return GRAFT_OK;
}

static void set_free(graft_int8 *q, qset *S)
{
    if (S->p)
        for (int k = 0; k < q->n_steps; k++) {
            qprim *P = &S->p[k];
            if (P->prim) dnnl_primitive_destroy(P->prim);
            dnnl_memory_t mems[5] = {P->src, P->wei, P->bias, P->dst, P->scratch};
            for (int j = 0; j < 5; j++)
                if (mems[j]) dnnl_memory_destroy(mems[j]);
            free(P->bias_data);
        }
    if (S->in_reorder) dnnl_primitive_destroy(S->in_reorder);
    if (S->out_reorder) dnnl_primitive_destroy(S->out_reorder);
    dnnl_memory_t mems[4] = {S->in_src, S->in_dst, S->out_src, S->out_dst};
    for (int j = 0; j < 4; j++)
        if (mems[j]) dnnl_memory_destroy(mems[j]);
    free(S->p);
    free(S->off);
    graft_free(S->arena);
    graft_free(S->scratchpad);
    memset(S, 0, sizeof *S);
}

/* Byte offsets of the tensors in one arena: each takes the lowest free gap
 * among those alive at the step that makes it; an Add's output takes its
 * other tensor's place where that is read no later (in place). */
typedef struct {
    size_t off, size;
    int end; /* the last step that reads it */
} block;

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

static bool lay_out(graft_int8 *q, qset *S, size_t *total)
{
    int nl = q->m->n_layers, nb = 0;
    block *live = malloc((size_t)(q->n_steps + 2) * sizeof(block));
    if (!live) return false;
    size_t unit = S->f32 ? sizeof(float) : 1, top = 0;
    for (int k = -1; k < q->n_steps; k++) {
        int t = k < 0 ? 0 : q->steps[k].last;
        size_t size = align64(q->t[t].elems * (size_t)S->n * unit);
        /* Forget what no step from k on reads. */
        int w = 0;
        for (int j = 0; j < nb; j++)
            if (live[j].end >= k) live[w++] = live[j];
        nb = w;
        int r = k >= 0 ? q->steps[k].residual : -1;
        if (r >= 0 && q->t[r].last_read == k && r != 0) {
            S->p[k].inplace = true;
            S->off[t] = S->off[r];
            for (int j = 0; j < nb; j++)
                if (live[j].off == S->off[r]) live[j].end = q->t[t].last_read;
            continue;
        }
        size_t at = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < nb; j++)
                if (at < live[j].off + live[j].size && live[j].off < at + size) {
                    at = live[j].off + live[j].size;
                    moved = true;
                }
        }
        S->off[t] = at;
        live[nb++] = (block){at, size, q->t[t].last_read};
        if (at + size > top) top = at + size;
    }
    (void)nl;
    free(live);
    *total = top;
    return true;
}

static graft_status set_build(graft_int8 *q, qset *S, int n, bool f32)
{
    S->n = n;
    S->f32 = f32;
    S->p = calloc((size_t)q->n_steps, sizeof(qprim));
    S->off = calloc((size_t)q->m->n_layers, sizeof(size_t));
    if (!S->p || !S->off)
        return graft_fail(GRAFT_ENOMEM, "int8: out of memory for model '%s'", q->m->name);
    graft_status st = GRAFT_OK;
    for (int k = 0; k < q->n_steps && st == GRAFT_OK; k++)
        st = q->steps[k].kind == Q_POOL ? build_pool(q, S, k) : build_conv(q, S, k);
    if (st == GRAFT_OK) st = build_reorder(q, S, 0, true, &S->in_reorder, &S->in_src, &S->in_dst);
    if (st == GRAFT_OK)
        st = build_reorder(q, S, q->out, false, &S->out_reorder, &S->out_src, &S->out_dst);
    if (st != GRAFT_OK) return st;
    size_t bytes;
    if (!lay_out(q, S, &bytes) || !(S->arena = graft_alloc(bytes ? bytes : 64)) ||
        (S->scratchpad_bytes && !(S->scratchpad = graft_alloc(S->scratchpad_bytes))))
        return graft_fail(GRAFT_ENOMEM, "int8: out of memory for %d images of model '%s'", n,
                          q->m->name);
    return GRAFT_OK;
}

static graft_status set_for(graft_int8 *q, int n, bool f32, qset **out)
{
    for (int j = 0; j < N_SETS; j++)
        if (q->sets[j].n == n && q->sets[j].f32 == f32) {
            *out = &q->sets[j];
            return GRAFT_OK;
        }
    qset *S = &q->sets[q->next];
    q->next = (q->next + 1) % N_SETS;
    set_free(q, S);
    graft_status st = set_build(q, S, n, f32);
    if (st != GRAFT_OK) {
        set_free(q, S);
        return st;
    }
    *out = S;
    return GRAFT_OK;
}

/* ------------------------------------------------------------- running */

static graft_status exec(graft_int8 *q, dnnl_primitive_t p, int n_args, const dnnl_exec_arg_t *a,
                         int layer)
{
    DN(dnnl_primitive_execute(p, q->stream, n_args, a), layer, "to run");
    return GRAFT_OK;
}

/* ranges: calibration (f32 sets only) widens each tensor's range. */
static graft_status run(graft_int8 *q, qset *S, const float *x, float *out, bool ranges)
{
    unsigned char *A = S->arena;
    dnnl_memory_set_data_handle(S->in_src, (void *)x);
    dnnl_memory_set_data_handle(S->in_dst, A + S->off[0]);
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, S->in_src}, {DNNL_ARG_TO, S->in_dst}};
    graft_status st = exec(q, S->in_reorder, 2, ra, 0);
    if (st != GRAFT_OK) return st;
    if (ranges) range_of((const float *)(A + S->off[0]), q->t[0].elems * S->n, &q->t[0].min, &q->t[0].max);
    for (int k = 0; k < q->n_steps; k++) {
        const qstep *s = &q->steps[k];
        qprim *P = &S->p[k];
        void *dst = A + S->off[s->last];
        if (s->residual >= 0 && !P->inplace)
            memcpy(dst, A + S->off[s->residual],
                   q->t[s->residual].elems * S->n * (S->f32 ? sizeof(float) : 1));
        dnnl_memory_set_data_handle(P->src, A + S->off[s->in]);
        dnnl_memory_set_data_handle(P->dst, dst);
        dnnl_exec_arg_t a[6];
        int na = 0;
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, P->src};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, P->dst};
        if (P->wei) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, P->wei};
        if (P->bias) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, P->bias};
        if (P->scratch) {
            dnnl_memory_set_data_handle(P->scratch, S->scratchpad);
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, P->scratch};
        }
        st = exec(q, P->prim, na, a, s->last);
        if (st != GRAFT_OK) return st;
        if (ranges)
            range_of((const float *)dst, q->t[s->last].elems * S->n, &q->t[s->last].min,
                     &q->t[s->last].max);
    }
    dnnl_memory_set_data_handle(S->out_src, A + S->off[q->out]);
    dnnl_memory_set_data_handle(S->out_dst, out);
    dnnl_exec_arg_t oa[2] = {{DNNL_ARG_FROM, S->out_src}, {DNNL_ARG_TO, S->out_dst}};
    st = exec(q, S->out_reorder, 2, oa, q->out);
    if (st == GRAFT_OK && dnnl_stream_wait(q->stream) != dnnl_success)
        st = graft_fail(GRAFT_EUNSUPPORTED, "int8: oneDNN's stream failed for model '%s'", q->m->name);
    return st;
}

static graft_status forward(graft_int8 *q, const float *x, int n, float *out, bool f32)
{
    if (!q || !x || !out || n < 1) return graft_fail(GRAFT_EINVAL, "int8 forward: missing argument");
    qset *S;
    graft_status st = set_for(q, n, f32, &S);
    return st == GRAFT_OK ? run(q, S, x, out, false) : st;
}

graft_status graft_int8_forward(graft_int8 *q, const float *x, int n, float *out)
{
    /* A few images at a time: the 8-bit tensors of a chunk stay in cache
     * from one primitive to the next, where a whole batch's go to memory
     * (docs/PERFORMANCE.md). */
    int chunk = q->chunk;
    size_t xs = q->t[0].elems, ys = q->t[q->out].elems;
    graft_status st = GRAFT_OK;
    for (int c0 = 0; c0 < n && st == GRAFT_OK; c0 += chunk)
        st = forward(q, x + (size_t)c0 * xs, n - c0 < chunk ? n - c0 : chunk, out + (size_t)c0 * ys,
                     false);
    return st;
}

graft_status graft_int8_forward_float(graft_int8 *q, const float *x, int n, float *out)
{
    return forward(q, x, n, out, true);
}

bool graft_int8_tensor(const graft_int8 *q, int layer, float *scale, bool *u8)
{
    if (layer < 0 || layer >= q->boundary) return false;
    const qtensor *t = &q->t[q->tensor_of[layer]];
    if (t->made < -1) return false;
    *scale = t->scale;
    *u8 = t->u8;
    return true;
}

int graft_int8_steps(const graft_int8 *q) { return q->n_steps; }

void graft_int8_step_at(const graft_int8 *q, int k, graft_int8_step *out)
{
    static const graft_int8_kind kind[] = {[Q_CONV] = GRAFT_INT8_CONV,
                                           [Q_DW] = GRAFT_INT8_DEPTHWISE,
                                           [Q_POOL] = GRAFT_INT8_MAX_POOL};
    const qstep *s = &q->steps[k];
    *out = (graft_int8_step){.kind = kind[s->kind], .n_layers = s->n, .in = s->in, .kh = s->kh,
                             .kw = s->kw, .sh = s->sh, .sw = s->sw,
                             .pads = {s->pt, s->pl, s->pb, s->pr}, .kernel = s->qkernel,
                             .scale = s->wscale, .bias = s->bias, .c = s->c, .filters = s->oc,
                             .residual = s->residual, .clamp = s->clamp, .lo = s->lo,
                             .hi = s->hi};
    memcpy(out->layers, s->layer, sizeof s->layer);
}

static const char *type_name(const qtensor *t) { return t->u8 ? "u8" : "s8"; }

void graft_int8_describe(const graft_int8 *q, FILE *f)
{
    static const char *const kind[] = {"conv", "depthwise", "max pool"};
    fprintf(f, "  int8 run: layers '%s' .. '%s' as %d oneDNN int8 steps, %d images at a time;%s%s%s\n",
            L(1)->name, L(q->boundary - 1)->name, q->n_steps, q->chunk,
            q->boundary < q->m->n_layers ? " the plan's steps from '" : " the whole model",
            q->boundary < q->m->n_layers ? L(q->boundary)->name : "",
            q->boundary < q->m->n_layers ? "'" : "");
    for (int k = 0; k < q->n_steps; k++) {
        const qstep *s = &q->steps[k];
        const qtensor *ti = &q->t[s->in], *to = &q->t[s->last];
        fprintf(f, "    int8 %-3d %-9s %s .. %s (%d layers): %dx%d/%d, %s x %.3g -> %s x %.3g%s%s\n", k,
                kind[s->kind], L(s->first)->name, L(s->last)->name, s->n, s->kh, s->kw, s->sh,
                type_name(ti), (double)ti->scale, type_name(to), (double)to->scale,
                s->residual >= 0 ? ", + " : "", s->residual >= 0 ? L(s->residual)->name : "");
    }
}

int graft_int8_boundary(const graft_int8 *q) { return q->boundary; }
int graft_int8_output_layer(const graft_int8 *q) { return q->out; }

void graft_int8_free(graft_int8 *q)
{
    if (!q) return;
    for (int j = 0; j < N_SETS; j++) set_free(q, &q->sets[j]);
    if (q->steps)
        for (int k = 0; k < q->n_steps; k++) step_free(&q->steps[k]);
    free(q->steps);
    free(q->t);
    free(q->tensor_of);
    if (q->stream) dnnl_stream_destroy(q->stream);
    if (q->engine) dnnl_engine_destroy(q->engine);
    free(q);
}

/* Images a call's 8-bit run takes at a time: ResNet50 at 224, batch 32,
 * 178 ms a call in chunks of 8 against 217 whole, MobileNetV2 31 against
 * 33 (docs/PERFORMANCE.md). */
#define INT8_CHUNK 8

/* Calibration batches: a few images at a time bound the float arena. */
#define CALIBRATION_BATCH 8

graft_status graft_int8_new(graft_model *m, const float *images, int n, graft_int8 **out)
{
    *out = NULL;
    graft_int8 *q = calloc(1, sizeof *q);
    if (!q) return graft_fail(GRAFT_ENOMEM, "int8: out of memory");
    q->m = m;
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    q->vnni = (isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
              (isa & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
    graft_status st = plan_run(q);
    if (st == GRAFT_OK && (dnnl_engine_create(&q->engine, dnnl_cpu, 0) != dnnl_success ||
                           dnnl_stream_create(&q->stream, q->engine, dnnl_stream_default_flags) !=
                               dnnl_success))
        st = graft_fail(GRAFT_EUNSUPPORTED, "int8: oneDNN has no CPU engine");
    if (st == GRAFT_OK) {
        tensors_init(q);
        size_t out_elems = q->t[q->out].elems;
        float *sink = malloc((size_t)CALIBRATION_BATCH * out_elems * sizeof(float));
        size_t xs = q->t[0].elems;
        if (!sink) st = graft_fail(GRAFT_ENOMEM, "int8: out of memory for calibration");
        for (int b0 = 0; b0 < n && st == GRAFT_OK; b0 += CALIBRATION_BATCH) {
            int nb = n - b0 < CALIBRATION_BATCH ? n - b0 : CALIBRATION_BATCH;
            qset *S;
            st = set_for(q, nb, true, &S);
            if (st == GRAFT_OK) st = run(q, S, images + (size_t)b0 * xs, sink, true);
        }
        free(sink);
        /* The float sets served calibration; the 8-bit ones need the scales. */
        for (int j = 0; j < N_SETS; j++) set_free(q, &q->sets[j]);
        q->next = 0;
    }
    if (st == GRAFT_OK) {
        for (int i = 0; i < m->n_layers; i++)
            if (q->t[i].made >= -1 && !(isfinite(q->t[i].min) && isfinite(q->t[i].max))) {
                st = graft_fail(GRAFT_ENAN,
                                "int8: calibration of model '%s' saw no finite range for "
                                "layer '%s'",
                                m->name, m->layers[i]->name);
                break;
            }
    }
    if (st != GRAFT_OK) {
        graft_int8_free(q);
        return st;
    }
    scales_from_ranges(q);
    q->chunk = INT8_CHUNK;
    for (int k = 0; k < q->n_steps; k++)
        if (q->steps[k].kind != Q_POOL && !quantize_kernel(q, &q->steps[k])) {
            graft_int8_free(q);
            return graft_fail(GRAFT_ENOMEM, "int8: out of memory for model '%s'", m->name);
        }
    *out = q;
    return GRAFT_OK;
}
