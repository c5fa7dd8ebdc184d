/*
 * ONNX converters, one function per Keras layer class (listed in
 * onnx_table.c). Each reads its options from the layer's Keras config and
 * its weights in Keras layouts (Conv2D kernel HWIO, DepthwiseConv2D HWC1,
 * Dense IO), and writes ONNX's (OIHW, grouped OIHW, Gemm's KxN).
 */
#include "export/onnx.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ convolutions */

/* Conv with weights w (ONNX OIHW: co x cin/group x kh x kw, modified: a
 * folded BatchNormalization scales it), bias b (NULL: none), then the
 * layer's activation. */
static graft_status conv_common(onnx_ctx *x, const graft_layer *l, const cJSON *cfg, float *w,
                                int co, int cig, int kh, int kw, int group, const float *b)
{
    int strides[2] = {1, 1}, dil[2] = {1, 1};
    onnx_cfg_pair(cfg, "strides", strides);
    onnx_cfg_pair(cfg, "dilation_rate", dil);
    const float *scale, *shift;
    float *bias = NULL;
    bool folded = onnx_folded_bn(x, l, &scale, &shift);
    if (b || folded) {
        bias = malloc((size_t)co * sizeof *bias);
        if (!bias) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
        size_t per = (size_t)cig * kh * kw;
        for (int o = 0; o < co; o++) {
            float b0 = b ? b[o] : 0.0f;
            if (folded) {
                for (size_t k = 0; k < per; k++) w[o * per + k] *= scale[o];
                b0 = b0 * scale[o] + shift[o];
            }
            bias[o] = b0;
        }
    }
    graft_shape in = onnx_input_shape(x, l, 0);
    int pt, pb, pl, pr;
    const char *padding = onnx_cfg_str(cfg, "padding");
    onnx_same_pads(padding, in.dim[0], (kh - 1) * dil[0] + 1, strides[0], &pt, &pb);
    onnx_same_pads(padding, in.dim[1], (kw - 1) * dil[1] + 1, strides[1], &pl, &pr);
    const int64_t wd[4] = {co, cig, kh, kw}, bd[1] = {co};
    const char *ins[3] = {onnx_input(x, l, 0, ONNX_NCHW),
                          onnx_const_f32(x, onnx_name(x, l, "W"), w, wd, 4),
                          bias ? onnx_const_f32(x, onnx_name(x, l, "B"), bias, bd, 1) : NULL};
    int n_in = bias ? 3 : 2;
    free(bias);
    const char *out = onnx_name(x, l, "conv");
    onnx_node *n = onnx_add_node(x, "Conv", ins, n_in, out);
    onnx_attr_ints(x, n, "kernel_shape", (const int64_t[]){kh, kw}, 2);
    onnx_attr_ints(x, n, "strides", (const int64_t[]){strides[0], strides[1]}, 2);
    onnx_attr_ints(x, n, "dilations", (const int64_t[]){dil[0], dil[1]}, 2);
    onnx_attr_ints(x, n, "pads", (const int64_t[]){pt, pl, pb, pr}, 4);
    onnx_attr_int(x, n, "group", group);
    onnx_layout layout = ONNX_NCHW;
    const char *y = onnx_activation(x, l, onnx_cfg_str(cfg, "activation"), out, &layout, 3);
    onnx_set_output(x, l, y, layout);
    return onnx_status(x);
}

graft_status onnx_conv2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    graft_shape ks;
    const float *k = onnx_weight(l, "kernel", &ks);
    if (!k || ks.rank != 4) return onnx_fail(x, l, GRAFT_EFORMAT, "no 4-D kernel");
    int groups = (int)onnx_cfg_num(cfg, "groups", 1);
    int kh = ks.dim[0], kw = ks.dim[1], ci = ks.dim[2], co = ks.dim[3];
    float *w = calloc(graft_shape_size(&ks), sizeof *w); /* calloc: the analyzer cannot see the loops fill it */
    if (!w) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
            for (int c = 0; c < ci; c++)
                for (int o = 0; o < co; o++)
                    w[(((size_t)o * ci + c) * kh + i) * kw + j] = k[(((size_t)i * kw + j) * ci + c) * co + o];
    /* A grouped kernel's input axis holds cin / groups channels: ONNX's layout too. */
    graft_status s = conv_common(x, l, cfg, w, co, ci, kh, kw, groups, onnx_weight(l, "bias", NULL));
    free(w);
    return s;
}

/* A grouped Conv with one group per input channel: output channel c * M + m
 * reads input channel c, as Keras orders DepthwiseConv2D's outputs. */
graft_status onnx_depthwise_conv2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    graft_shape ks;
    const float *k = onnx_weight(l, "depthwise_kernel", &ks);
    if (!k || ks.rank != 4) return onnx_fail(x, l, GRAFT_EFORMAT, "no 4-D depthwise_kernel");
    int kh = ks.dim[0], kw = ks.dim[1], ci = ks.dim[2], dm = ks.dim[3];
    float *w = calloc(graft_shape_size(&ks), sizeof *w);
    if (!w) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
            for (int c = 0; c < ci; c++)
                for (int m = 0; m < dm; m++)
                    w[(((size_t)c * dm + m) * kh + i) * kw + j] = k[(((size_t)i * kw + j) * ci + c) * dm + m];
    graft_status s = conv_common(x, l, cfg, w, ci * dm, 1, kh, kw, ci, onnx_weight(l, "bias", NULL));
    free(w);
    return s;
}

graft_status onnx_dense(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    graft_shape ks;
    const float *k = onnx_weight(l, "kernel", &ks), *b = onnx_weight(l, "bias", NULL);
    if (!k || ks.rank != 2) return onnx_fail(x, l, GRAFT_EFORMAT, "no 2-D kernel");
    const int64_t kd[2] = {ks.dim[0], ks.dim[1]}, bd[1] = {ks.dim[1]};
    graft_shape in = onnx_input_shape(x, l, 0);
    const char *ins[3] = {onnx_input(x, l, 0, ONNX_KERAS),
                          onnx_const_f32(x, onnx_name(x, l, "W"), k, kd, 2),
                          b ? onnx_const_f32(x, onnx_name(x, l, "B"), b, bd, 1) : NULL};
    const char *out = onnx_name(x, l, "dense");
    if (in.rank == 1) {
        onnx_add_node(x, "Gemm", ins, b ? 3 : 2, out);
    } else { /* Keras applies Dense to the last axis */
        const char *mm = b ? onnx_name(x, l, "matmul") : out;
        onnx_add_node(x, "MatMul", ins, 2, mm);
        if (b) onnx_add_node(x, "Add", (const char *[]){mm, ins[2]}, 2, out);
    }
    onnx_layout layout = ONNX_KERAS;
    onnx_set_output(x, l, onnx_activation(x, l, onnx_cfg_str(cfg, "activation"), out, &layout, l->out_shape.rank),
                    layout);
    return onnx_status(x);
}

/* ------------------------------------------------------------ normalisation, activations */

/* Not folded into a convolution: y = x * scale + shift per channel (the last Keras axis). */
graft_status onnx_batch_norm(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    int c = l->out_shape.dim[l->out_shape.rank - 1];
    float *v = malloc(3 * (size_t)c * sizeof *v);
    if (!v) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    float *mean = v, *scale = v + c, *shift = v + 2 * c;
    if (!graft_batch_norm_inference(l, mean, scale, shift)) {
        free(v);
        return onnx_fail(x, l, GRAFT_EUNSUPPORTED, "no inference transform");
    }
    for (int k = 0; k < c; k++) shift[k] -= mean[k] * scale[k];
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout);
    bool nchw = l->out_shape.rank == 3 && layout == ONNX_NCHW;
    const int64_t d_nchw[3] = {c, 1, 1}, d_last[1] = {c};
    const char *sc = onnx_const_f32(x, onnx_name(x, l, "scale"), scale, nchw ? d_nchw : d_last, nchw ? 3 : 1);
    const char *sh = onnx_const_f32(x, onnx_name(x, l, "shift"), shift, nchw ? d_nchw : d_last, nchw ? 3 : 1);
    free(v);
    const char *mul = onnx_name(x, l, "mul"), *out = onnx_name(x, l, "bn");
    onnx_add_node(x, "Mul", (const char *[]){in, sc}, 2, mul);
    onnx_add_node(x, "Add", (const char *[]){mul, sh}, 2, out);
    onnx_set_output(x, l, out, layout);
    return onnx_status(x);
}

graft_status onnx_activation_layer(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout);
    const char *y = onnx_activation(x, l, onnx_cfg_str(cfg, "activation"), in, &layout, l->out_shape.rank);
    onnx_set_output(x, l, y, layout);
    return onnx_status(x);
}

/* Keras's ReLU: max_value where x >= max_value, x where threshold <= x,
 * negative_slope * (x - threshold) below. */
graft_status onnx_relu(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(cfg, "max_value");
    float maxv = cJSON_IsNumber(mv) ? (float)mv->valuedouble : INFINITY;
    float slope = (float)onnx_cfg_num(cfg, "negative_slope", 0);
    float thr = (float)onnx_cfg_num(cfg, "threshold", 0);
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout), *out = onnx_name(x, l, "relu");
    if (slope == 0 && thr == 0) {
        if (isinf(maxv)) {
            onnx_add_node(x, "Relu", &in, 1, out);
        } else {
            const char *ins[3] = {in, onnx_scalar(x, onnx_name(x, l, "zero"), 0.0f),
                                  onnx_scalar(x, onnx_name(x, l, "max_value"), maxv)};
            onnx_add_node(x, "Clip", ins, 3, out);
        }
    } else if (thr == 0 && isinf(maxv)) {
        onnx_attr_float(x, onnx_add_node(x, "LeakyRelu", &in, 1, out), "alpha", slope);
    } else {
        const char *t = onnx_scalar(x, onnx_name(x, l, "threshold"), thr);
        const char *pos = in;
        if (!isinf(maxv)) {
            pos = onnx_name(x, l, "capped");
            onnx_add_node(x, "Min", (const char *[]){in, onnx_scalar(x, onnx_name(x, l, "max_value"), maxv)}, 2, pos);
        }
        const char *d = onnx_name(x, l, "below"), *neg = onnx_name(x, l, "negative"),
                   *lt = onnx_name(x, l, "is_below");
        onnx_add_node(x, "Sub", (const char *[]){in, t}, 2, d);
        onnx_add_node(x, "Mul", (const char *[]){d, onnx_scalar(x, onnx_name(x, l, "slope"), slope)}, 2, neg);
        onnx_add_node(x, "Less", (const char *[]){in, t}, 2, lt);
        onnx_add_node(x, "Where", (const char *[]){lt, neg, pos}, 3, out);
    }
    onnx_set_output(x, l, out, layout);
    return onnx_status(x);
}

/* ------------------------------------------------------------ shape and pooling */

static bool pair_of(const cJSON *a, int out[2])
{
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2) return false;
    const cJSON *u = cJSON_GetArrayItem(a, 0), *v = cJSON_GetArrayItem(a, 1);
    if (!cJSON_IsNumber(u) || !cJSON_IsNumber(v)) return false;
    out[0] = u->valueint;
    out[1] = v->valueint;
    return true;
}

graft_status onnx_zero_padding2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cfg, "padding");
    int rows[2], cols[2];
    const cJSON *r = cJSON_GetArrayItem(p, 0), *c = cJSON_GetArrayItem(p, 1);
    if (!cJSON_IsArray(p) || !pair_of(r, rows) || !pair_of(c, cols))
        return onnx_fail(x, l, GRAFT_EFORMAT, "padding is not ((top, bottom), (left, right))");
    const int64_t pads[8] = {0, 0, rows[0], cols[0], 0, 0, rows[1], cols[1]}, n8 = 8;
    const char *ins[2] = {onnx_input(x, l, 0, ONNX_NCHW), onnx_const_i64(x, onnx_name(x, l, "pads"), pads, &n8, 1)};
    const char *out = onnx_name(x, l, "pad");
    onnx_add_node(x, "Pad", ins, 2, out);
    onnx_set_output(x, l, out, ONNX_NCHW);
    return onnx_status(x);
}

/* Max and average pooling share TF's window geometry; padded cells never
 * count (ONNX AveragePool's count_include_pad = 0, its default). */
static graft_status pool2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg, const char *op)
{
    int k[2], s[2];
    if (!onnx_cfg_pair(cfg, "pool_size", k)) return onnx_fail(x, l, GRAFT_EFORMAT, "no pool_size");
    if (!onnx_cfg_pair(cfg, "strides", s)) memcpy(s, k, sizeof s);
    graft_shape in = onnx_input_shape(x, l, 0);
    int pt, pb, pl, pr;
    const char *padding = onnx_cfg_str(cfg, "padding");
    onnx_same_pads(padding, in.dim[0], k[0], s[0], &pt, &pb);
    onnx_same_pads(padding, in.dim[1], k[1], s[1], &pl, &pr);
    const char *in_name = onnx_input(x, l, 0, ONNX_NCHW), *out = onnx_name(x, l, "pool");
    /* ONNX Runtime (1.30, optimisation 'basic' and up) fuses a Pad into the
     * MaxPool reading it and then pads with -inf, not Keras's zeros: wrong
     * wherever a window over the padding holds only negative values
     * (ResNetV2's stem). Max(x, -FLT_MAX), the identity, keeps them apart. */
    const char *from = onnx_input_class(x, l, 0);
    if (strcmp(op, "MaxPool") == 0 && from && strcmp(from, "ZeroPadding2D") == 0) {
        const char *ins[2] = {in_name, onnx_scalar(x, onnx_name(x, l, "lowest"), -FLT_MAX)};
        const char *kept = onnx_name(x, l, "kept_zeros");
        onnx_add_node(x, "Max", ins, 2, kept);
        in_name = kept;
    }
    onnx_node *n = onnx_add_node(x, op, &in_name, 1, out);
    onnx_attr_ints(x, n, "kernel_shape", (const int64_t[]){k[0], k[1]}, 2);
    onnx_attr_ints(x, n, "strides", (const int64_t[]){s[0], s[1]}, 2);
    onnx_attr_ints(x, n, "pads", (const int64_t[]){pt, pl, pb, pr}, 4);
    onnx_set_output(x, l, out, ONNX_NCHW);
    return onnx_status(x);
}

graft_status onnx_max_pooling2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    return pool2d(x, l, cfg, "MaxPool");
}

graft_status onnx_average_pooling2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    return pool2d(x, l, cfg, "AveragePool");
}

static graft_status global_pool(onnx_ctx *x, const graft_layer *l, const cJSON *cfg, const char *op)
{
    const char *in = onnx_input(x, l, 0, ONNX_NCHW), *pooled = onnx_name(x, l, "pool");
    onnx_add_node(x, op, &in, 1, pooled);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "keepdims"))) {
        onnx_set_output(x, l, pooled, ONNX_NCHW); /* (N, C, 1, 1) */
    } else {
        const char *out = onnx_name(x, l, "flat");
        onnx_attr_int(x, onnx_add_node(x, "Flatten", &pooled, 1, out), "axis", 1);
        onnx_set_output(x, l, out, ONNX_KERAS);
    }
    return onnx_status(x);
}

graft_status onnx_global_average_pooling2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    return global_pool(x, l, cfg, "GlobalAveragePool");
}

graft_status onnx_global_max_pooling2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    return global_pool(x, l, cfg, "GlobalMaxPool");
}

/* Keras flattens in its own (NHWC) order. */
graft_status onnx_flatten(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    const char *in = onnx_input(x, l, 0, ONNX_KERAS), *out = onnx_name(x, l, "flat");
    onnx_attr_int(x, onnx_add_node(x, "Flatten", &in, 1, out), "axis", 1);
    onnx_set_output(x, l, out, ONNX_KERAS);
    return onnx_status(x);
}

graft_status onnx_reshape(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    int64_t shape[GRAFT_MAX_RANK + 1] = {-1}, rank = l->out_shape.rank + 1;
    for (int d = 0; d < l->out_shape.rank; d++) shape[d + 1] = l->out_shape.dim[d];
    const char *ins[2] = {onnx_input(x, l, 0, ONNX_KERAS),
                          onnx_const_i64(x, onnx_name(x, l, "shape"), shape, &rank, 1)};
    const char *out = onnx_name(x, l, "reshape");
    onnx_add_node(x, "Reshape", ins, 2, out);
    onnx_set_output(x, l, out, ONNX_KERAS);
    return onnx_status(x);
}

/* ------------------------------------------------------------ the rest */

graft_status onnx_input_layer(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    return onnx_graph_input(x, l);
}

/* Inference: the identity. */
graft_status onnx_dropout(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout);
    onnx_set_output(x, l, in, layout);
    return onnx_status(x);
}

graft_status onnx_add(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    onnx_layout layout = ONNX_NCHW;
    const char *acc = onnx_input(x, l, 0, layout);
    for (int i = 1; i < l->n_inputs; i++) {
        char what[32];
        snprintf(what, sizeof what, "add_%d", i);
        const char *out = onnx_name(x, l, what);
        onnx_add_node(x, "Add", (const char *[]){acc, onnx_input(x, l, i, layout)}, 2, out);
        acc = out;
    }
    onnx_set_output(x, l, acc, layout);
    return onnx_status(x);
}
