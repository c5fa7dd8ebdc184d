/*
 * ONNX converters of the layer kinds beyond the first sixteen (listed in
 * onnx_table.c): merges, per-channel affine layers, normalisations,
 * activation layers with options, transposed and separable convolutions,
 * resampling and axis shuffles. Layers that work per element or per channel
 * keep their input in the layout it is held in; the others ask for one.
 */
#include "export/onnx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

/* Where Keras axis a (1..3, batch 0) of a rank-3 tensor lies in NCHW. */
static int nchw_axis(int a) { return a == 3 ? 1 : a + 1; }

/* Keras's axis (negative counts from the end, the batch is 0) as 1..rank. */
static int keras_axis(int a, int rank) { return a < 0 ? a + rank + 1 : a; }

/* A constant that broadcasts n values (n == 1: a scalar) along Keras axis
 * `axis` (1..rank) of a rank-`rank` tensor held in `layout`. */
static const char *axis_const(onnx_ctx *x, const graft_layer *l, const char *what, const float *v,
                              int n, int axis, int rank, onnx_layout layout)
{
    if (n == 1) return onnx_scalar(x, onnx_name(x, l, what), v[0]);
    int pos = rank == 3 && layout == ONNX_NCHW ? nchw_axis(axis) : axis;
    int64_t dims[GRAFT_MAX_RANK + 1];
    int r = rank + 1 - pos; /* trailing dims from pos on */
    dims[0] = n;
    for (int d = 1; d < r; d++) dims[d] = 1;
    return onnx_const_f32(x, onnx_name(x, l, what), v, dims, r);
}

/* A number or a list of numbers from the config into v (at most cap). */
static int cfg_values(const cJSON *cfg, const char *key, float dflt, float *v, int cap)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsNumber(j)) {
        v[0] = (float)j->valuedouble;
        return 1;
    }
    if (!cJSON_IsArray(j)) {
        v[0] = dflt;
        return 1;
    }
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (n >= cap || !cJSON_IsNumber(e)) return -1;
        v[n++] = (float)e->valuedouble;
    }
    return n;
}

static const char *binary(onnx_ctx *x, const graft_layer *l, const char *op, const char *a,
                          const char *b, const char *what)
{
    const char *out = onnx_name(x, l, what);
    return onnx_add_node(x, op, (const char *[]){a, b}, 2, out) ? out : NULL;
}

/* ------------------------------------------------------------ merges */

graft_status onnx_concatenate(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    int rank = l->out_shape.rank;
    int a = keras_axis((int)onnx_cfg_num(cfg, "axis", -1), rank);
    if (a < 1 || a > rank) return onnx_fail(x, l, GRAFT_EFORMAT, "axis %d is not an axis of the inputs", a);
    onnx_layout layout = rank == 3 ? ONNX_NCHW : ONNX_KERAS;
    const char **ins = calloc((size_t)l->n_inputs, sizeof *ins);
    if (!ins) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    for (int i = 0; i < l->n_inputs; i++) ins[i] = onnx_input(x, l, i, layout);
    const char *out = onnx_name(x, l, "concat");
    onnx_attr_int(x, onnx_add_node(x, "Concat", ins, l->n_inputs, out), "axis",
                  layout == ONNX_NCHW ? nchw_axis(a) : a);
    free(ins);
    onnx_set_output(x, l, out, layout);
    return onnx_status(x);
}

/* Inputs of one rank whose sizes agree or are 1: ONNX's broadcasting, in
 * either layout as long as all inputs share it. */
static graft_status fold_inputs(onnx_ctx *x, const graft_layer *l, const char *op, float times)
{
    onnx_layout layout = l->out_shape.rank == 3 ? ONNX_NCHW : ONNX_KERAS;
    const char *acc = onnx_input(x, l, 0, layout);
    for (int i = 1; i < l->n_inputs; i++) {
        char what[32];
        snprintf(what, sizeof what, "%s_%d", op, i);
        acc = binary(x, l, op, acc, onnx_input(x, l, i, layout), what);
    }
    if (times != 1.0f) acc = binary(x, l, "Mul", acc, onnx_scalar(x, onnx_name(x, l, "inv_n"), times), "mean");
    onnx_set_output(x, l, acc, layout);
    return onnx_status(x);
}

graft_status onnx_multiply(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    return fold_inputs(x, l, "Mul", 1.0f);
}

graft_status onnx_subtract(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    return fold_inputs(x, l, "Sub", 1.0f);
}

graft_status onnx_average(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    return fold_inputs(x, l, "Add", 1.0f / (float)l->n_inputs);
}

graft_status onnx_maximum(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    return fold_inputs(x, l, "Max", 1.0f);
}

graft_status onnx_minimum(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    return fold_inputs(x, l, "Min", 1.0f);
}

/* ------------------------------------------------------------ per-channel affine layers */

#define MAX_VALUES 4096

graft_status onnx_rescaling(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    float *v = malloc(2 * MAX_VALUES * sizeof *v);
    if (!v) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    int ns = cfg_values(cfg, "scale", 1.0f, v, MAX_VALUES);
    int no = cfg_values(cfg, "offset", 0.0f, v + MAX_VALUES, MAX_VALUES);
    if (ns < 1 || no < 1) {
        free(v);
        return onnx_fail(x, l, GRAFT_EFORMAT, "scale and offset must be numbers or lists of numbers");
    }
    int rank = l->out_shape.rank;
    onnx_layout layout;
    const char *y = onnx_input_held(x, l, 0, &layout);
    if (ns > 1 || v[0] != 1.0f)
        y = binary(x, l, "Mul", y, axis_const(x, l, "scale", v, ns, rank, rank, layout), "scaled");
    if (no > 1 || v[MAX_VALUES] != 0.0f)
        y = binary(x, l, "Add", y, axis_const(x, l, "offset", v + MAX_VALUES, no, rank, rank, layout), "shifted");
    free(v);
    onnx_set_output(x, l, y, layout);
    return onnx_status(x);
}

/* y = (x - mean) / max(sqrt(variance), 1e-7) along one axis, or inverted
 * y = x * max(sqrt(variance), 1e-7) + mean, the statistics from the config
 * (constants) or the weights (after adapt). */
graft_status onnx_normalization(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    int rank = l->out_shape.rank;
    int a = keras_axis((int)onnx_cfg_num(cfg, "axis", -1), rank);
    if (a < 1 || a > rank) return onnx_fail(x, l, GRAFT_EFORMAT, "axis %d is not an axis of the input", a);
    int dim = l->out_shape.dim[a - 1];
    float *v = malloc(2 * (size_t)dim * sizeof *v);
    if (!v) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    float *mean = v, *sd = v + dim;
    int n = cfg_values(cfg, "mean", NAN, mean, dim);
    int nv = cfg_values(cfg, "variance", NAN, sd, dim);
    if (n == 1 && isnan(mean[0])) { /* adapted: the weights */
        graft_shape ms, vs;
        const float *wm = onnx_weight(l, "mean", &ms), *wv = onnx_weight(l, "variance", &vs);
        if (!wm || !wv || (int)graft_shape_size(&ms) != dim || (int)graft_shape_size(&vs) != dim) {
            free(v);
            return onnx_fail(x, l, GRAFT_EFORMAT, "no mean and variance of %d values", dim);
        }
        memcpy(mean, wm, (size_t)dim * sizeof *mean);
        memcpy(sd, wv, (size_t)dim * sizeof *sd);
        n = nv = dim;
    }
    if (n < 1 || n != nv) {
        free(v);
        return onnx_fail(x, l, GRAFT_EFORMAT, "mean and variance are not lists of one length");
    }
    for (int k = 0; k < n; k++) sd[k] = fmaxf(sqrtf(sd[k]), 1e-7f);
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout);
    const char *m = axis_const(x, l, "mean", mean, n, a, rank, layout);
    const char *s = axis_const(x, l, "sd", sd, n, a, rank, layout);
    free(v);
    const char *y;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "invert")))
        y = binary(x, l, "Add", binary(x, l, "Mul", in, s, "scaled"), m, "norm");
    else
        y = binary(x, l, "Div", binary(x, l, "Sub", in, m, "centered"), s, "norm");
    onnx_set_output(x, l, y, layout);
    return onnx_status(x);
}

graft_status onnx_layer_scale(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    graft_shape gs;
    const float *g = onnx_weight(l, "gamma", &gs);
    int rank = l->out_shape.rank;
    if (!g || gs.rank != 1 || gs.dim[0] != l->out_shape.dim[rank - 1])
        return onnx_fail(x, l, GRAFT_EFORMAT, "no gamma of one value per channel");
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout);
    const char *y = binary(x, l, "Mul", in, axis_const(x, l, "gamma", g, gs.dim[0], rank, rank, layout), "scaled");
    onnx_set_output(x, l, y, layout);
    return onnx_status(x);
}

/* Over the trailing axes from the config's first: LayerNormalization from
 * opset 17, else its decomposition (variance as the mean squared deviation). */
graft_status onnx_layer_norm(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    int rank = l->out_shape.rank, first = rank;
    const cJSON *ax = cJSON_GetObjectItemCaseSensitive(cfg, "axis"), *e;
    if (cJSON_IsNumber(ax)) {
        first = keras_axis(ax->valueint, rank);
    } else if (cJSON_IsArray(ax) && cJSON_GetArraySize(ax) > 0) {
        cJSON_ArrayForEach(e, ax) if (cJSON_IsNumber(e) && keras_axis(e->valueint, rank) < first) first =
            keras_axis(e->valueint, rank);
    }
    if (first < 1 || first > rank) return onnx_fail(x, l, GRAFT_EFORMAT, "axis is not an axis of the input");
    float eps = (float)onnx_cfg_num(cfg, "epsilon", 1e-3);
    graft_shape gs = {0, {0}};
    const float *gamma = onnx_weight(l, "gamma", &gs), *beta = onnx_weight(l, "beta", &gs);
    gs.rank = rank - first + 1;
    for (int d = 0; d < gs.rank; d++) gs.dim[d] = l->out_shape.dim[first - 1 + d];
    size_t count = graft_shape_size(&gs);
    int64_t pd[GRAFT_MAX_RANK];
    for (int d = 0; d < gs.rank; d++) pd[d] = gs.dim[d];
    const char *in = onnx_input(x, l, 0, ONNX_KERAS), *y;
    const char *g = gamma ? onnx_const_f32(x, onnx_name(x, l, "gamma"), gamma, pd, gs.rank) : NULL;
    const char *b = beta ? onnx_const_f32(x, onnx_name(x, l, "beta"), beta, pd, gs.rank) : NULL;
    if (onnx_opset(x) >= 17) {
        if (!g) {
            float *ones = malloc(count * sizeof *ones);
            if (!ones) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
            for (size_t i = 0; i < count; i++) ones[i] = 1.0f;
            g = onnx_const_f32(x, onnx_name(x, l, "gamma"), ones, pd, gs.rank);
            free(ones);
        }
        y = onnx_name(x, l, "ln");
        onnx_node *n = onnx_add_node(x, "LayerNormalization", (const char *[]){in, g, b}, b ? 3 : 2, y);
        onnx_attr_int(x, n, "axis", first);
        onnx_attr_float(x, n, "epsilon", eps);
    } else {
        int64_t axes[GRAFT_MAX_RANK];
        for (int d = 0; d < gs.rank; d++) axes[d] = first + d;
        const char *mean = onnx_name(x, l, "mean"), *var = onnx_name(x, l, "var");
        onnx_node *n = onnx_add_node(x, "ReduceMean", &in, 1, mean);
        onnx_attr_ints(x, n, "axes", axes, gs.rank);
        onnx_attr_int(x, n, "keepdims", 1);
        const char *d = binary(x, l, "Sub", in, mean, "centered");
        const char *d2 = binary(x, l, "Mul", d, d, "sq");
        n = onnx_add_node(x, "ReduceMean", &d2, 1, var);
        onnx_attr_ints(x, n, "axes", axes, gs.rank);
        onnx_attr_int(x, n, "keepdims", 1);
        const char *ve = binary(x, l, "Add", var, onnx_scalar(x, onnx_name(x, l, "epsilon"), eps), "var_eps");
        const char *sd = onnx_name(x, l, "sd");
        onnx_add_node(x, "Sqrt", &ve, 1, sd);
        y = binary(x, l, "Div", d, sd, "normed");
        if (g) y = binary(x, l, "Mul", y, g, "scaled");
        if (b) y = binary(x, l, "Add", y, b, "shifted");
    }
    onnx_set_output(x, l, y, ONNX_KERAS);
    return onnx_status(x);
}

/* ------------------------------------------------------------ activation layers */

static graft_status alpha_op(onnx_ctx *x, const graft_layer *l, const cJSON *cfg, const char *op,
                             const char *key, double dflt)
{
    float a = (float)onnx_cfg_num(cfg, key, dflt);
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout), *out = onnx_name(x, l, "act");
    onnx_attr_float(x, onnx_add_node(x, op, &in, 1, out), "alpha", a);
    onnx_set_output(x, l, out, layout);
    return onnx_status(x);
}

graft_status onnx_leaky_relu(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    const char *key = cJSON_GetObjectItemCaseSensitive(cfg, "negative_slope") ? "negative_slope" : "alpha";
    return alpha_op(x, l, cfg, "LeakyRelu", key, 0.3);
}

graft_status onnx_elu(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    return alpha_op(x, l, cfg, "Elu", "alpha", 1.0);
}

/* alpha is shaped as the input with 1 on the shared axes: ONNX's PRelu
 * broadcasts it as it is in Keras order, or permuted to CHW. */
graft_status onnx_prelu(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    (void)cfg;
    graft_shape as;
    const float *a = onnx_weight(l, "alpha", &as);
    if (!a || as.rank != l->out_shape.rank) return onnx_fail(x, l, GRAFT_EFORMAT, "no alpha of the input's rank");
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout);
    size_t n = graft_shape_size(&as);
    float *t = malloc(n * sizeof *t);
    if (!t) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    int64_t dims[GRAFT_MAX_RANK];
    for (int d = 0; d < as.rank; d++) dims[d] = as.dim[d];
    if (as.rank == 3 && layout == ONNX_NCHW) {
        int H = as.dim[0], W = as.dim[1], C = as.dim[2];
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                for (int c = 0; c < C; c++) t[((size_t)c * H + h) * W + w] = a[((size_t)h * W + w) * C + c];
        dims[0] = C;
        dims[1] = H;
        dims[2] = W;
    } else {
        memcpy(t, a, n * sizeof *t);
    }
    const char *slope = onnx_const_f32(x, onnx_name(x, l, "alpha"), t, dims, as.rank);
    free(t);
    onnx_set_output(x, l, binary(x, l, "PRelu", in, slope, "act"), layout);
    return onnx_status(x);
}

/* Softmax before opset 13 flattens from its axis on, so along any axis but
 * the last it is written out: exp(x - max) / sum. */
graft_status onnx_softmax(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    int rank = l->out_shape.rank;
    int a = keras_axis((int)onnx_cfg_num(cfg, "axis", -1), rank);
    if (a < 1 || a > rank) return onnx_fail(x, l, GRAFT_EFORMAT, "axis %d is not an axis of the input", a);
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout), *out = onnx_name(x, l, "softmax");
    int pos = rank == 3 && layout == ONNX_NCHW ? nchw_axis(a) : a;
    if (pos == rank || onnx_opset(x) >= 13) {
        onnx_attr_int(x, onnx_add_node(x, "Softmax", &in, 1, out), "axis", pos);
    } else {
        const int64_t axes[1] = {pos};
        const char *mx = onnx_name(x, l, "max"), *sum = onnx_name(x, l, "sum"), *e = onnx_name(x, l, "exp");
        onnx_node *n = onnx_add_node(x, "ReduceMax", &in, 1, mx);
        onnx_attr_ints(x, n, "axes", axes, 1);
        const char *d = binary(x, l, "Sub", in, mx, "shifted");
        onnx_add_node(x, "Exp", &d, 1, e);
        n = onnx_add_node(x, "ReduceSum", &e, 1, sum);
        onnx_attr_ints(x, n, "axes", axes, 1);
        onnx_add_node(x, "Div", (const char *[]){e, sum}, 2, out);
    }
    onnx_set_output(x, l, out, layout);
    return onnx_status(x);
}

/* ------------------------------------------------------------ convolutions */

/* A Conv node on NCHW `in` with TF's padding over an input of (h, w). */
static const char *conv_node(onnx_ctx *x, const graft_layer *l, const cJSON *cfg, const char *in, int h,
                             int w, const char *wname, const char *bname, int kh, int kw, int group,
                             bool strided, const char *what)
{
    int s[2] = {1, 1}, d[2] = {1, 1};
    if (strided) onnx_cfg_pair(cfg, "strides", s);
    onnx_cfg_pair(cfg, "dilation_rate", d);
    if (!strided) d[0] = d[1] = 1;
    int pt = 0, pb = 0, pl = 0, pr = 0;
    if (strided) {
        const char *padding = onnx_cfg_str(cfg, "padding");
        onnx_same_pads(padding, h, (kh - 1) * d[0] + 1, s[0], &pt, &pb);
        onnx_same_pads(padding, w, (kw - 1) * d[1] + 1, s[1], &pl, &pr);
    }
    const char *out = onnx_name(x, l, what);
    onnx_node *n = onnx_add_node(x, "Conv", (const char *[]){in, wname, bname}, bname ? 3 : 2, out);
    onnx_attr_ints(x, n, "kernel_shape", (const int64_t[]){kh, kw}, 2);
    onnx_attr_ints(x, n, "strides", (const int64_t[]){s[0], s[1]}, 2);
    onnx_attr_ints(x, n, "dilations", (const int64_t[]){d[0], d[1]}, 2);
    onnx_attr_ints(x, n, "pads", (const int64_t[]){pt, pl, pb, pr}, 4);
    onnx_attr_int(x, n, "group", group);
    return out;
}

/* Depthwise (depth_multiplier, strides, dilation, padding; no bias), then
 * a 1x1 Conv to the filters with the bias, then the activation. */
graft_status onnx_separable_conv2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    graft_shape ds, ps;
    const float *dk = onnx_weight(l, "depthwise_kernel", &ds), *pk = onnx_weight(l, "pointwise_kernel", &ps);
    const float *bias = onnx_weight(l, "bias", NULL);
    if (!dk || ds.rank != 4 || !pk || ps.rank != 4)
        return onnx_fail(x, l, GRAFT_EFORMAT, "no 4-D depthwise_kernel and pointwise_kernel");
    int kh = ds.dim[0], kw = ds.dim[1], ci = ds.dim[2], dm = ds.dim[3], mid = ps.dim[2], co = ps.dim[3];
    if (mid != ci * dm) return onnx_fail(x, l, GRAFT_EFORMAT, "pointwise_kernel does not take %d channels", ci * dm);
    float *w = calloc(graft_shape_size(&ds) + graft_shape_size(&ps), sizeof *w);
    if (!w) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    float *pw = w + graft_shape_size(&ds);
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
            for (int c = 0; c < ci; c++)
                for (int m = 0; m < dm; m++)
                    w[(((size_t)c * dm + m) * kh + i) * kw + j] = dk[(((size_t)i * kw + j) * ci + c) * dm + m];
    for (int c = 0; c < mid; c++)
        for (int o = 0; o < co; o++) pw[(size_t)o * mid + c] = pk[(size_t)c * co + o];
    const int64_t dd[4] = {(int64_t)ci * dm, 1, kh, kw}, pd[4] = {co, mid, 1, 1}, bd[1] = {co};
    const char *dwn = onnx_const_f32(x, onnx_name(x, l, "depthwise_W"), w, dd, 4);
    const char *pwn = onnx_const_f32(x, onnx_name(x, l, "pointwise_W"), pw, pd, 4);
    free(w);
    const char *bn = bias ? onnx_const_f32(x, onnx_name(x, l, "B"), bias, bd, 1) : NULL;
    graft_shape in = onnx_input_shape(x, l, 0);
    const char *y = conv_node(x, l, cfg, onnx_input(x, l, 0, ONNX_NCHW), in.dim[0], in.dim[1], dwn, NULL, kh, kw,
                              ci, true, "depthwise");
    y = conv_node(x, l, cfg, y, 0, 0, pwn, bn, 1, 1, 1, false, "pointwise");
    onnx_layout layout = ONNX_NCHW;
    y = onnx_activation(x, l, onnx_cfg_str(cfg, "activation"), y, &layout, 3);
    onnx_set_output(x, l, y, layout);
    return onnx_status(x);
}

/* Keras's output size (deconv_output_length), reached from ConvTranspose's
 * full output (in - 1) * s + k by cropping what the forward convolution of
 * that size would pad before, and the rest after (output_padding where the
 * output is longer: zeros and the bias). */
static void deconv_geometry(const char *padding, bool has_op, int op, int in, int k, int s, int *begin,
                            int *end, int *extra)
{
    bool same = !strcmp(padding, "same");
    int out;
    if (!has_op)
        out = same ? in * s : in * s + (k > s ? k - s : 0);
    else
        out = (in - 1) * s + k - 2 * (same ? k / 2 : 0) + op;
    int before, after;
    onnx_same_pads(padding, out, k, s, &before, &after);
    (void)after;
    int full = (in - 1) * s + k;
    *begin = before;
    *end = full - before - out;
    *extra = 0;
    if (*end < 0) {
        *extra = -*end;
        *end = 0;
    }
}

graft_status onnx_conv2d_transpose(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    graft_shape ks;
    const float *k = onnx_weight(l, "kernel", &ks), *bias = onnx_weight(l, "bias", NULL);
    if (!k || ks.rank != 4) return onnx_fail(x, l, GRAFT_EFORMAT, "no 4-D kernel");
    int kh = ks.dim[0], kw = ks.dim[1], co = ks.dim[2], ci = ks.dim[3];
    int s[2] = {1, 1}, d[2] = {1, 1}, op[2] = {0, 0};
    onnx_cfg_pair(cfg, "strides", s);
    onnx_cfg_pair(cfg, "dilation_rate", d);
    bool has_op = onnx_cfg_pair(cfg, "output_padding", op);
    float *w = calloc(graft_shape_size(&ks), sizeof *w);
    if (!w) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
            for (int o = 0; o < co; o++)
                for (int c = 0; c < ci; c++)
                    w[(((size_t)c * co + o) * kh + i) * kw + j] = k[(((size_t)i * kw + j) * co + o) * ci + c];
    const int64_t wd[4] = {ci, co, kh, kw}, bd[1] = {co};
    const char *wn = onnx_const_f32(x, onnx_name(x, l, "W"), w, wd, 4);
    free(w);
    graft_shape in = onnx_input_shape(x, l, 0);
    const char *padding = onnx_cfg_str(cfg, "padding");
    int b[2], e[2], ex[2];
    for (int a = 0; a < 2; a++)
        deconv_geometry(padding, has_op, op[a], in.dim[a], (a ? kw - 1 : kh - 1) * d[a] + 1, s[a], &b[a], &e[a],
                        &ex[a]);
    const char *ins[3] = {onnx_input(x, l, 0, ONNX_NCHW), wn,
                          bias ? onnx_const_f32(x, onnx_name(x, l, "B"), bias, bd, 1) : NULL};
    const char *out = onnx_name(x, l, "deconv");
    onnx_node *n = onnx_add_node(x, "ConvTranspose", ins, bias ? 3 : 2, out);
    onnx_attr_ints(x, n, "kernel_shape", (const int64_t[]){kh, kw}, 2);
    onnx_attr_ints(x, n, "strides", (const int64_t[]){s[0], s[1]}, 2);
    onnx_attr_ints(x, n, "dilations", (const int64_t[]){d[0], d[1]}, 2);
    onnx_attr_ints(x, n, "pads", (const int64_t[]){b[0], b[1], e[0], e[1]}, 4);
    if (ex[0] || ex[1]) onnx_attr_ints(x, n, "output_padding", (const int64_t[]){ex[0], ex[1]}, 2);
    onnx_layout layout = ONNX_NCHW;
    const char *y = onnx_activation(x, l, onnx_cfg_str(cfg, "activation"), out, &layout, 3);
    onnx_set_output(x, l, y, layout);
    return onnx_status(x);
}

/* ------------------------------------------------------------ resampling, cropping, axes */

/* Nearest: each cell repeated sh x sw times (a Reshape and an Expand, exact);
 * bilinear: Resize with TF2's half-pixel centres. */
graft_status onnx_upsampling2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    int sz[2] = {2, 2};
    onnx_cfg_pair(cfg, "size", sz);
    graft_shape is = onnx_input_shape(x, l, 0);
    int H = is.dim[0], W = is.dim[1], C = is.dim[2];
    const char *in = onnx_input(x, l, 0, ONNX_NCHW), *out = onnx_name(x, l, "up");
    if (!strcmp(onnx_cfg_str(cfg, "interpolation"), "bilinear")) {
        static const float roi[8] = {0, 0, 0, 0, 1, 1, 1, 1};
        const float scales[4] = {1, 1, (float)sz[0], (float)sz[1]};
        const int64_t n4 = 4, n8 = 8;
        const char *ins[3] = {in, onnx_const_f32(x, onnx_name(x, l, "roi"), roi, &n8, 1),
                              onnx_const_f32(x, onnx_name(x, l, "scales"), scales, &n4, 1)};
        onnx_node *n = onnx_add_node(x, "Resize", ins, 3, out);
        onnx_attr_str(x, n, "mode", "linear");
        onnx_attr_str(x, n, "coordinate_transformation_mode", "half_pixel");
    } else {
        const int64_t d6 = 6, d4 = 4;
        const int64_t split[6] = {0, C, H, 1, W, 1}, rep[6] = {1, 1, 1, sz[0], 1, sz[1]},
                      shape[4] = {0, C, (int64_t)H * sz[0], (int64_t)W * sz[1]};
        const char *r = onnx_name(x, l, "split"), *e = onnx_name(x, l, "repeated");
        onnx_add_node(x, "Reshape", (const char *[]){in, onnx_const_i64(x, onnx_name(x, l, "split_shape"), split, &d6, 1)},
                      2, r);
        onnx_add_node(x, "Expand", (const char *[]){r, onnx_const_i64(x, onnx_name(x, l, "reps"), rep, &d6, 1)}, 2, e);
        onnx_add_node(x, "Reshape", (const char *[]){e, onnx_const_i64(x, onnx_name(x, l, "shape"), shape, &d4, 1)}, 2,
                      out);
    }
    onnx_set_output(x, l, out, ONNX_NCHW);
    return onnx_status(x);
}

graft_status onnx_cropping2d(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cfg, "cropping");
    int rows[2], cols[2];
    const cJSON *r = cJSON_GetArrayItem(p, 0), *c = cJSON_GetArrayItem(p, 1);
    if (!cJSON_IsArray(r) || !cJSON_IsArray(c) || cJSON_GetArraySize(r) != 2 || cJSON_GetArraySize(c) != 2)
        return onnx_fail(x, l, GRAFT_EFORMAT, "cropping is not ((top, bottom), (left, right))");
    rows[0] = cJSON_GetArrayItem(r, 0)->valueint;
    rows[1] = cJSON_GetArrayItem(r, 1)->valueint;
    cols[0] = cJSON_GetArrayItem(c, 0)->valueint;
    cols[1] = cJSON_GetArrayItem(c, 1)->valueint;
    graft_shape is = onnx_input_shape(x, l, 0);
    const int64_t n2 = 2, starts[2] = {rows[0], cols[0]}, ends[2] = {is.dim[0] - rows[1], is.dim[1] - cols[1]},
                  axes[2] = {2, 3};
    const char *ins[4] = {onnx_input(x, l, 0, ONNX_NCHW), onnx_const_i64(x, onnx_name(x, l, "starts"), starts, &n2, 1),
                          onnx_const_i64(x, onnx_name(x, l, "ends"), ends, &n2, 1),
                          onnx_const_i64(x, onnx_name(x, l, "axes"), axes, &n2, 1)};
    const char *out = onnx_name(x, l, "crop");
    onnx_add_node(x, "Slice", ins, 4, out);
    onnx_set_output(x, l, out, ONNX_NCHW);
    return onnx_status(x);
}

/* Keras's dims (a permutation of 1..rank) from the layout the input is held
 * in; the output is in Keras order. */
graft_status onnx_permute(onnx_ctx *x, const graft_layer *l, const cJSON *cfg)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(cfg, "dims"), *e;
    int rank = l->out_shape.rank, n = 0;
    int64_t perm[GRAFT_MAX_RANK + 1] = {0};
    onnx_layout layout;
    const char *in = onnx_input_held(x, l, 0, &layout);
    cJSON_ArrayForEach(e, d)
    {
        if (n >= rank || !cJSON_IsNumber(e) || e->valueint < 1 || e->valueint > rank)
            return onnx_fail(x, l, GRAFT_EFORMAT, "dims is not a permutation of 1..%d", rank);
        perm[++n] = rank == 3 && layout == ONNX_NCHW ? nchw_axis(e->valueint) : e->valueint;
    }
    if (n != rank) return onnx_fail(x, l, GRAFT_EFORMAT, "dims is not a permutation of 1..%d", rank);
    const char *out = onnx_name(x, l, "permute");
    onnx_attr_ints(x, onnx_add_node(x, "Transpose", &in, 1, out), "perm", perm, rank + 1);
    onnx_set_output(x, l, out, ONNX_KERAS);
    return onnx_status(x);
}
