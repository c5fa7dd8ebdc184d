/*
 * ONNX export of a model's int8 run (graft_onnx_opts.int8): the layers
 * graft_model_quantize_int8 runs in 8 bits, in ONNX's QDQ form with graft's
 * own quantization, so that ONNX Runtime runs the same quantized model.
 *
 *   input -> Q -> DQ                          (graft's scale of the input)
 *   conv step:  DQ'd input, DQ(int8 kernel, per-channel scale, axis 0),
 *               DQ(int32 bias at s_in * s_w) -> Conv [-> Add(DQ'd residual)]
 *               [-> Relu | Clip] -> Q -> DQ     (the step's output scale)
 *   pool step:  DQ'd input -> MaxPool -> Q -> DQ (the input's scale again)
 *
 * Every Q/DQ has zero point 0 and is uint8 where graft holds the tensor in
 * u8, else int8. The kernels are graft's s8 ones (BatchNormalization folded
 * in, quant/int8.c), moved from HWIO (depthwise HWC) to ONNX's OIHW (one
 * group per channel). A ZeroPadding2D joins the convolution's or pool's
 * pads, as in graft's step (a padded pool only reads a clamped, non-negative
 * tensor, where padding with zeros and ignoring the padding agree).
 *
 * graft adds the bias in float in the accumulator's units; the int32 bias
 * rounds it to a whole unit: at most half a unit of s_in * s_w, a small
 * fraction of an output step, which tips a few values by one step
 * (tests/test_export_onnx_int8.c).
 *
 * What ONNX Runtime (1.30, CPU, all optimisations) makes of it:
 * QLinearConv for most convolutions; in float (FusedConv, Conv, over the
 * dequantized tensors) those ending in an Add, which none of its int8
 * kernels takes, and MobileNetV2's next to an int8 block output that an Add
 * reads too (one of their input and output uint8, the other int8; the same
 * tensors as uint8 with zero point 128, the same values, fuse).
 */
#include "export/onnx.h"
#include "quant/int8.h"

#include "onnx.pb-c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* QuantizeLinear then DequantizeLinear of float tensor `in` at (scale, u8):
 * the dequantized tensor. */
static const char *qdq(onnx_ctx *x, const graft_layer *l, const char *in, float scale, bool u8)
{
    const uint8_t zero = 0;
    const char *s = onnx_scalar(x, onnx_name(x, l, "q_scale"), scale);
    const char *z = onnx_const_raw(
        x, onnx_name(x, l, "q_zero_point"), &zero, 1,
        u8 ? ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 : ONNX__TENSOR_PROTO__DATA_TYPE__INT8, NULL, 0);
    const char *qi[3] = {in, s, z};
    const char *qn = onnx_name(x, l, "quantized");
    if (!onnx_add_node(x, "QuantizeLinear", qi, 3, qn)) return NULL;
    const char *di[3] = {qn, s, z};
    const char *dn = onnx_name(x, l, "dequantized");
    return onnx_add_node(x, "DequantizeLinear", di, 3, dn) ? dn : NULL;
}

/* Per-channel DequantizeLinear (axis 0) of initializer `q` (n channels). */
static const char *dq_channels(onnx_ctx *x, const graft_layer *l, const char *q, const float *scale,
                               int n, int dtype, size_t elem_bytes, const char *what)
{
    char sn[64], zn[64];
    snprintf(sn, sizeof sn, "%s_scale", what);
    snprintf(zn, sizeof zn, "%s_zero_point", what);
    const int64_t d = n;
    void *zeros = calloc((size_t)n, elem_bytes);
    if (!zeros) return NULL;
    const char *ins[3] = {q, onnx_const_f32(x, onnx_name(x, l, sn), scale, &d, 1),
                          onnx_const_raw(x, onnx_name(x, l, zn), zeros, elem_bytes, dtype, &d, 1)};
    free(zeros);
    const char *out = onnx_name(x, l, what);
    onnx_node *node = onnx_add_node(x, "DequantizeLinear", ins, 3, out);
    onnx_attr_int(x, node, "axis", 0);
    return node ? out : NULL;
}

static graft_status missing(const graft_model *m, int layer, const char *what)
{
    return graft_fail(GRAFT_EUNSUPPORTED, "int8 ONNX export of model '%s': layer '%s' (%s): %s",
                      m->name, m->layers[layer]->name, m->layers[layer]->ops->class_name, what);
}

static bool is_class(const graft_layer *l, const char *cls)
{
    return strcmp(l->ops->class_name, cls) == 0;
}

/* The kernel shape, strides and pads of a step's window on node n. */
static void window_attrs(onnx_ctx *x, onnx_node *n, const graft_int8_step *st)
{
    const int64_t pads[4] = {st->pads[0], st->pads[1], st->pads[2], st->pads[3]};
    onnx_attr_ints(x, n, "kernel_shape", (const int64_t[]){st->kh, st->kw}, 2);
    onnx_attr_ints(x, n, "strides", (const int64_t[]){st->sh, st->sw}, 2);
    onnx_attr_ints(x, n, "pads", pads, 4);
}

/* A convolution step: its layers' outputs are set as they are made. */
static graft_status conv_step(onnx_ctx *x, const graft_model *m, const graft_int8 *q,
                              const graft_int8_step *c)
{
    const int last = c->layers[c->n_layers - 1];
    const graft_layer *ll = m->layers[last];
    /* The convolution: the step's first layer, or second after a padding. */
    const graft_layer *cl = m->layers[c->layers[is_class(m->layers[c->layers[0]], "ZeroPadding2D")]];
    float s_in, s_out;
    bool u8_in, u8_out;
    if (!graft_int8_tensor(q, c->in, &s_in, &u8_in) || !graft_int8_tensor(q, last, &s_out, &u8_out))
        return missing(m, cl->index, "the int8 run holds no scale for its input or output");
    const bool dw = c->kind == GRAFT_INT8_DEPTHWISE;
    const int co = c->filters, cig = dw ? 1 : c->c, kh = c->kh, kw = c->kw;
    size_t per = (size_t)cig * kh * kw;
    int8_t *w = malloc((size_t)co * per);
    int32_t *bq = malloc((size_t)co * sizeof *bq);
    float *bs = malloc((size_t)co * sizeof *bs);
    if (!w || !bq || !bs) {
        free(w);
        free(bq);
        free(bs);
        return graft_fail(GRAFT_ENOMEM, "out of memory exporting layer '%s' to ONNX", cl->name);
    }
    /* graft's HWIO (depthwise HWC: one output channel per input channel). */
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
            for (int ci = 0; ci < cig; ci++)
                for (int o = 0; o < co; o++) {
                    size_t from = dw ? ((size_t)i * kw + j) * co + o
                                     : (((size_t)i * kw + j) * cig + ci) * co + o;
                    w[(((size_t)o * cig + ci) * kh + i) * kw + j] = c->kernel[from];
                }
    for (int o = 0; o < co; o++) {
        bs[o] = s_in * c->scale[o];
        double v = nearbyint((double)c->bias[o] / bs[o]);
        bq[o] = (int32_t)(v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : v);
    }
    const int64_t wd[4] = {co, cig, kh, kw}, bd = co;
    const char *wq = onnx_const_raw(x, onnx_name(x, cl, "W_int8"), w, 1,
                                    ONNX__TENSOR_PROTO__DATA_TYPE__INT8, wd, 4);
    const char *bqn = onnx_const_raw(x, onnx_name(x, cl, "B_int32"), bq, sizeof *bq,
                                     ONNX__TENSOR_PROTO__DATA_TYPE__INT32, &bd, 1);
    const char *ins[3] = {
        onnx_layer_output(x, c->in, ONNX_NCHW),
        dq_channels(x, cl, wq, c->scale, co, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, 1, "W"),
        dq_channels(x, cl, bqn, bs, co, ONNX__TENSOR_PROTO__DATA_TYPE__INT32, sizeof(int32_t),
                    "B")};
    free(w);
    free(bq);
    free(bs);
    const char *y = onnx_name(x, cl, "conv");
    onnx_node *n = onnx_add_node(x, "Conv", ins, 3, y);
    window_attrs(x, n, c);
    onnx_attr_int(x, n, "group", dw ? co : 1);
    /* [pad,] conv [, BN] [, Add] [, clamp]: the Add as a float Add, the
     * clamp (the last layer's, or the convolution's own ReLU) after it;
     * each layer holds what has been made when it is reached. */
    for (int k = 0; k < c->n_layers; k++) {
        const graft_layer *l = m->layers[c->layers[k]];
        if (is_class(l, "Add") && c->residual >= 0) {
            const char *sum = onnx_name(x, l, "sum");
            const char *ai[2] = {y, onnx_layer_output(x, c->residual, ONNX_NCHW)};
            y = onnx_add_node(x, "Add", ai, 2, sum) ? sum : NULL;
        }
        if (k < c->n_layers - 1 && !is_class(l, "ZeroPadding2D"))
            onnx_set_output(x, l, y, ONNX_NCHW);
    }
    if (c->clamp) {
        const char *out = onnx_name(x, ll, "clamp");
        if (c->lo == 0 && isinf(c->hi)) {
            onnx_add_node(x, "Relu", &y, 1, out);
        } else {
            const char *ci[3] = {
                y, onnx_scalar(x, onnx_name(x, ll, "clip_min"), c->lo),
                isinf(c->hi) ? NULL : onnx_scalar(x, onnx_name(x, ll, "clip_max"), c->hi)};
            onnx_add_node(x, "Clip", ci, isinf(c->hi) ? 2 : 3, out);
        }
        y = out;
    }
    onnx_set_output(x, ll, qdq(x, ll, y, s_out, u8_out), ONNX_NCHW);
    return onnx_status(x);
}

/* [ZeroPadding2D ->] MaxPooling2D: one MaxPool over the DQ'd input,
 * quantized again at the same scale. */
static graft_status pool_step(onnx_ctx *x, const graft_model *m, const graft_int8 *q,
                              const graft_int8_step *st)
{
    const int p = st->layers[st->n_layers - 1];
    const graft_layer *pl = m->layers[p];
    float scale;
    bool u8;
    if (!graft_int8_tensor(q, p, &scale, &u8))
        return missing(m, p, "the int8 run holds no scale for its output");
    const char *in = onnx_layer_output(x, st->in, ONNX_NCHW), *out = onnx_name(x, pl, "pool");
    window_attrs(x, onnx_add_node(x, "MaxPool", &in, 1, out), st);
    onnx_set_output(x, pl, qdq(x, pl, out, scale, u8), ONNX_NCHW);
    return onnx_status(x);
}

graft_status onnx_int8_run(onnx_ctx *x, const graft_model *m, int *first_float)
{
    if (graft_model_int8_layers(m, NULL) < 1)
        return graft_fail(GRAFT_ESTATE,
                          "int8 ONNX export: model '%s' holds no int8 run (quantize it first: "
                          "graft_model_quantize_int8, or graft export --int8 DIR)",
                          m->name);
    if (onnx_opset(x) < 13)
        return graft_fail(
            GRAFT_EINVAL,
            "int8 ONNX export: opset %d; per-channel DequantizeLinear needs 13 or later",
            onnx_opset(x));
    const graft_int8 *q = m->int8;
    const int b = graft_int8_boundary(q), n_steps = graft_int8_steps(q);
    /* Per layer below the boundary: 1 + the step that starts at it, -1 for
     * a step's later layers, 0 for a layer that hands its input on. */
    int *step_at = calloc((size_t)b, sizeof *step_at);
    if (!step_at)
        return graft_fail(GRAFT_ENOMEM, "out of memory exporting model '%s' to ONNX", m->name);
    graft_int8_step st;
    for (int k = 0; k < n_steps; k++) {
        graft_int8_step_at(q, k, &st);
        for (int j = 0; j < st.n_layers; j++) step_at[st.layers[j]] = j ? -1 : k + 1;
    }
    graft_status s = onnx_convert_layer(x, m->layers[0]);
    float scale;
    bool u8;
    if (s == GRAFT_OK && !graft_int8_tensor(q, 0, &scale, &u8))
        s = missing(m, 0, "no scale for the input");
    if (s == GRAFT_OK) {
        const char *in = onnx_layer_output(x, 0, ONNX_NCHW);
        onnx_set_output(x, m->layers[0], qdq(x, m->layers[0], in, scale, u8), ONNX_NCHW);
        s = onnx_status(x);
    }
    /* In graph order, as the float walk goes: a step at its first layer. */
    for (int i = 1; i < b && s == GRAFT_OK; i++) {
        if (step_at[i] < 0) continue;
        if (step_at[i] == 0) {
            s = onnx_convert_layer(x, m->layers[i]); /* Dropout and the like */
            continue;
        }
        graft_int8_step_at(q, step_at[i] - 1, &st);
        s = st.kind == GRAFT_INT8_MAX_POOL ? pool_step(x, m, q, &st) : conv_step(x, m, q, &st);
    }
    free(step_at);
    *first_float = b;
    return s;
}
