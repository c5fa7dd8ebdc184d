/*
 * DepthwiseConv2D as direct kernels over NHWC rows. im2col would copy each
 * input value kh*kw times only for a GEMM with one column per channel, so a
 * direct loop is both smaller and faster here. Channels are contiguous, so
 * every tap is a channel-wise multiply-add the compiler vectorises.
 *
 * Depth multiplier 1 runs kernels/depthwise.c's passes (as a Conv2D with
 * groups = channels = filters does); the loops here take the others.
 * Backward is kernels/depthwise.c's for every depth multiplier.
 *
 * Output channel c*dm + m comes from input channel c and kernel slice
 * [:, :, c, m], as in Keras/TensorFlow; the kernel (kh, kw, C, dm) read
 * flat has one row of C*dm floats per tap, in output channel order.
 */
#include "layers/layer.h"
#include "layers/conv_plain.h"
#include "kernels/kernels.h"
#include "layers/config_json.h"

#include <string.h>

typedef struct {
    graft_depthwise_conv2d_cfg cfg;
    graft_conv_geom g;
    int dm;
    bool plain; /* dilation_rate: layers/conv_plain.c does everything */
    graft_plain_conv pc;
} dwconv;

/* Eight floats, any alignment, aliasing the float arrays they view. */
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static graft_status build(graft_layer *l, const graft_shape *in)
{
    dwconv *d = l->cfg;
    const graft_depthwise_conv2d_cfg *k = &d->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (DepthwiseConv2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (k->kernel_size[0] <= 0 || k->kernel_size[1] <= 0 || k->strides[0] <= 0 ||
        k->strides[1] <= 0 || k->depth_multiplier <= 0)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (DepthwiseConv2D): kernel_size, strides and depth_multiplier "
                          "must be positive",
                          l->name);
    graft_conv_geom *g = &d->g;
    graft_conv_geom_init(g, &in[0], k->kernel_size, k->strides, k->padding);
    d->dm = k->depth_multiplier;
    if (k->dilation_rate[0] != 1 || k->dilation_rate[1] != 1) {
        long f = (long)in[0].dim[2] * d->dm;
        if (f > INT32_MAX)
            return graft_fail(GRAFT_EINVAL, "layer '%s' (DepthwiseConv2D): too many output channels",
                              l->name);
        graft_status s = graft_plain_conv_init(&d->pc, l->name, "DepthwiseConv2D", &in[0],
                                               k->kernel_size, k->strides, k->dilation_rate,
                                               k->padding, in[0].dim[2], (int)f);
        if (s != GRAFT_OK) return s;
        d->plain = true;
        g->oh = d->pc.oh;
        g->ow = d->pc.ow;
    }
    size_t cd;
    if (!graft_mul_ok((size_t)g->c, (size_t)d->dm, &cd) || cd > (size_t)INT32_MAX)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (DepthwiseConv2D): too many output channels",
                          l->name);
    l->out_shape = graft_shape3(g->oh, g->ow, (int)cd);
    graft_shape ks = {4, {g->kh, g->kw, g->c, d->dm}};
    graft_status s =
        graft_layer_add_weight(l, "depthwise_kernel", ks, true, GRAFT_INIT_GLOROT_UNIFORM);
    if (s == GRAFT_OK && !k->no_bias)
        s = graft_layer_add_weight(l, "bias", graft_shape1((int)cd), true, GRAFT_INIT_ZEROS);
    return s;
}

static size_t rows_out(const dwconv *d, int n) { return (size_t)n * d->g.oh; }

static size_t dz_floats(const graft_layer *l, int n)
{
    const dwconv *d = l->cfg;
    if (d->cfg.activation == GRAFT_LINEAR) return 0;
    return round16((size_t)n * graft_shape_size(&l->out_shape));
}

static size_t scratch_floats(const graft_layer *l, int n)
{
    const dwconv *d = l->cfg;
    if (d->plain) return 0;
    return dz_floats(l, n) + graft_dw_backward_scratch_floats(&d->g, d->dm, n);
}

/* ------------------------------------------------------------ forward */

/* Row oy of one sample. The taps that fall into the padding are skipped
 * rather than multiplied by zeros. */
static void forward_row(const dwconv *d, const float *img, const float *kernel, const float *bias,
                        int oy, float *orow)
{
    const graft_conv_geom *g = &d->g;
    const int C = g->c, dm = d->dm, cd = C * dm;
    const int iy0 = oy * g->sh - g->pad_top;
    const int ky0 = imax(0, -iy0), ky1 = imin(g->kh, g->h - iy0);
    for (int ox = 0; ox < g->ow; ox++) {
        float *restrict o = orow + (size_t)ox * cd;
        const int ix0 = ox * g->sw - g->pad_left;
        const int kx0 = imax(0, -ix0), kx1 = imin(g->kw, g->w - ix0);
        int c0 = 0;
        if (dm == 1) {
            /* Blocks of 32 channels summed over all taps in four vector
             * registers, stored once. */
            for (; c0 + 32 <= C; c0 += 32) {
                v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                if (bias) {
                    const v8 *bv = (const v8 *)(bias + c0);
                    a0 = bv[0], a1 = bv[1], a2 = bv[2], a3 = bv[3];
                }
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *xrow = img + (size_t)(iy0 + ky) * g->w * C + c0;
                    const float *krow = kernel + (size_t)ky * g->kw * cd + c0;
                    for (int kx = kx0; kx < kx1; kx++) {
                        const v8 *x = (const v8 *)(xrow + (size_t)(ix0 + kx) * C);
                        const v8 *k = (const v8 *)(krow + (size_t)kx * cd);
                        a0 += x[0] * k[0];
                        a1 += x[1] * k[1];
                        a2 += x[2] * k[2];
                        a3 += x[3] * k[3];
                    }
                }
                v8 *ov = (v8 *)(o + c0);
                ov[0] = a0, ov[1] = a1, ov[2] = a2, ov[3] = a3;
            }
            if (c0 == C) continue;
        }
        /* The remaining channels (all of them when dm > 1). */
        const size_t tail = (size_t)(C - c0) * dm;
        if (bias) memcpy(o + (size_t)c0 * dm, bias + (size_t)c0 * dm, tail * sizeof(float));
        else memset(o + (size_t)c0 * dm, 0, tail * sizeof(float));
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xrow = img + (size_t)(iy0 + ky) * g->w * C;
            const float *krow = kernel + (size_t)ky * g->kw * cd;
            for (int kx = kx0; kx < kx1; kx++) {
                const float *restrict x = xrow + (size_t)(ix0 + kx) * C;
                const float *restrict k = krow + (size_t)kx * cd;
                if (dm == 1) {
#pragma omp simd
                    for (int c = c0; c < C; c++) o[c] += x[c] * k[c];
                } else {
                    for (int c = c0; c < C; c++)
                        for (int m = 0; m < dm; m++) o[c * dm + m] += x[c] * k[c * dm + m];
                }
            }
        }
    }
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const dwconv *d = l->cfg;
    const graft_conv_geom *g = &d->g;
    const size_t in_sz = (size_t)g->h * g->w * g->c;
    const size_t row_sz = (size_t)g->ow * g->c * d->dm;
    const float *kernel = l->weights[0].data;
    const float *bias = d->cfg.no_bias ? NULL : l->weights[1].data;
    const long rows = (long)rows_out(d, f->n);
    const int cd = g->c * d->dm;
    /* A folded BatchNormalization and ReLU run on each row while it is in cache. */
    const bool epi = graft_epilogue_active(f->epi);
    if (d->plain) {
        const size_t all = (size_t)rows * g->ow;
        graft_plain_conv_forward(&d->pc, f->n, f->in[0], kernel, bias, f->out);
        if (f->aux) memcpy(f->aux, f->out, all * cd * sizeof(float));
        graft_activation_forward(d->cfg.activation, f->out, all, (size_t)cd);
        graft_epilogue_apply(f->epi, f->out, all, cd);
        return;
    }
    const bool dw = d->dm == 1 && g->kh <= GRAFT_DW_MAX_KH;
    if (dw && !f->aux) {
        graft_dw_forward_act(g, f->n, f->in[0], kernel, bias, d->cfg.activation, f->epi, f->out);
        return;
    }
    const bool wide = graft_kernels_avx512();
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / g->oh), oy = (int)(r % g->oh);
        float *orow = f->out + (size_t)r * row_sz;
        if (dw)
            graft_dw_forward_row(g, f->in[0] + (size_t)b * in_sz, kernel, bias, oy, orow, wide,
                                 oy == 0);
        else forward_row(d, f->in[0] + (size_t)b * in_sz, kernel, bias, oy, orow);
        /* swish, gelu, ...: backward needs the pre-activation. */
        if (f->aux) memcpy(f->aux + (size_t)r * row_sz, orow, row_sz * sizeof(float));
        graft_activation_rows(d->cfg.activation, orow, (size_t)g->ow, (size_t)cd, (size_t)cd);
        if (epi) graft_epilogue_rows(f->epi, orow, (size_t)g->ow, cd);
    }
}

/* ------------------------------------------------------------ backward */

static void backward(graft_layer *l, const graft_bwd *b)
{
    const dwconv *d = l->cfg;
    const graft_conv_geom *g = &d->g;
    const size_t cd = (size_t)g->c * d->dm;
    const size_t row_sz = (size_t)g->ow * cd;
    const long rows = (long)rows_out(d, b->n);
    if (d->plain) {
        float *pz = b->dout; /* ours to overwrite */
        graft_activation_backward_x(d->cfg.activation, b->aux, b->out, pz, pz,
                                    (size_t)rows * g->ow, cd, false);
        if (b->param_grads)
            graft_plain_conv_backward_weights(&d->pc, b->n, b->in[0], pz, l->weights[0].grad,
                                              d->cfg.no_bias ? NULL : l->weights[1].grad);
        if (b->din[0])
            graft_plain_conv_backward_data(&d->pc, b->n, pz, l->weights[0].data, b->din[0],
                                           b->din_accumulate[0]);
        return;
    }

    const float *dz = b->dout;
    if (d->cfg.activation != GRAFT_LINEAR) {
        float *buf = b->scratch;
#pragma omp parallel for schedule(static)
        for (long r = 0; r < rows; r++)
            graft_activation_backward_x(d->cfg.activation,
                                        b->aux ? b->aux + (size_t)r * row_sz : NULL,
                                        b->out + (size_t)r * row_sz, b->dout + (size_t)r * row_sz,
                                        buf + (size_t)r * row_sz, (size_t)g->ow, cd, false);
        dz = buf;
    }

    const bool has_bias = !d->cfg.no_bias;
    graft_dw_backward(g, d->dm, b->n, b->in[0], dz, l->weights[0].data,
                      b->param_grads ? l->weights[0].grad : NULL,
                      b->param_grads && has_bias ? l->weights[1].grad : NULL, b->din[0],
                      b->din_accumulate[0], b->scratch + dz_floats(l, b->n));
}

bool graft_depthwise_conv2d_args(const graft_layer *l, graft_conv_geom *g, int *filters,
                                 const float **kernel, const float **bias, graft_activation *act)
{
    if (strcmp(l->ops->class_name, "DepthwiseConv2D") != 0) return false;
    const dwconv *d = l->cfg;
    if (d->plain) return false; /* dilation: not in the geometry the steps compute */
    *g = d->g;
    *filters = d->g.c * d->dm;
    *kernel = l->weights[0].data;
    *bias = d->cfg.no_bias ? NULL : l->weights[1].data;
    *act = d->cfg.activation;
    return true;
}

/* Keras 2's DepthwiseConv2D.get_config(): Conv2D's without filters and the
 * kernel_* entries, with depth_multiplier and the depthwise_* entries. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_depthwise_conv2d_cfg *k = &((const dwconv *)l->cfg)->cfg;
    bool ok =
        graft_config_add_conv_common(o, k->kernel_size, k->strides, k->padding, k->dilation_rate, 1,
                                     k->activation, k->no_bias) &&
        graft_config_add_initializer(o, "bias_initializer", "Zeros") &&
        GRAFT_CONFIG_NULLS(o, "bias_regularizer", "activity_regularizer", "bias_constraint") &&
        cJSON_AddNumberToObject(o, "depth_multiplier", k->depth_multiplier) &&
        graft_config_add_initializer(o, "depthwise_initializer", "GlorotUniform") &&
        GRAFT_CONFIG_NULLS(o, "depthwise_regularizer", "depthwise_constraint");
    return graft_config_done(l, ok);
}

static size_t aux_floats(const graft_layer *l, int n)
{
    const dwconv *d = l->cfg;
    if (!graft_activation_needs_input(d->cfg.activation)) return 0;
    return rows_out(d, n) * (size_t)d->g.ow * d->g.c * d->dm;
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_depthwise_conv2d_cfg k = {.name = c->name};
    bool use_bias = true;
    graft_status s = graft_config_conv_window(c, cfg, k.kernel_size, k.strides, &k.padding,
                                              k.dilation_rate);
    if (s == GRAFT_OK) s = graft_config_int(c, cfg, "depth_multiplier", 1, 1, &k.depth_multiplier);
    if (s == GRAFT_OK) s = graft_config_activation(c, cfg, "activation", &k.activation);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "use_bias", true, &use_bias);
    k.no_bias = !use_bias;
    if (s == GRAFT_OK) *out = graft_depthwise_conv2d(c->m, c->in[0], k);
    return s;
}

const graft_layer_ops graft_depthwise_conv2d_ops = {
    .aux_floats = aux_floats,
    .class_name = "DepthwiseConv2D",
    .build = build,
    .forward = forward,
    .backward = backward,
    .scratch_floats = scratch_floats,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_depthwise_conv2d(graft_model *m, graft_layer *in,
                                    graft_depthwise_conv2d_cfg cfg)
{
    if (!cfg.strides[0]) cfg.strides[0] = 1;
    if (!cfg.strides[1]) cfg.strides[1] = 1;
    if (!cfg.depth_multiplier) cfg.depth_multiplier = 1;
    if (!cfg.dilation_rate[0]) cfg.dilation_rate[0] = 1;
    if (!cfg.dilation_rate[1]) cfg.dilation_rate[1] = 1;
    dwconv d = {.cfg = cfg};
    d.cfg.name = NULL; /* the layer keeps its own copy of the name */
    return graft_model_add_unary(m, &graft_depthwise_conv2d_ops, cfg.name, "depthwise_conv2d", &d, sizeof d, in);
}
