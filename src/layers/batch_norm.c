/*
 * BatchNormalization over the last axis, with Keras 2's semantics:
 * - training mode (fit, and the layer trains) normalises with the batch mean
 *   and biased batch variance over every position of the batch, and moves
 *   the moving statistics: moving = moving * momentum + batch * (1 - momentum);
 * - inference mode (predict/evaluate, or a frozen layer even inside fit, as
 *   Keras 2 does for `trainable = False`) uses the moving statistics.
 *
 * Which variance moves moving_variance follows which TensorFlow path Keras
 * takes (tensorflow/python/keras/layers/normalization/batch_normalization.py):
 * 4-D and 5-D batches (per-sample rank 3 or 4) take the fused kernel, whose
 * updated running variance is the batch variance times rest/(rest-1)
 * (Bessel's correction, `rest_size_adjust` in
 * tensorflow/core/kernels/fused_batch_norm_op.cc, also when the kernel does
 * the moving average itself through `exponential_avg_factor`). Keras does
 * not undo it: `_maybe_add_or_remove_bessels_correction` returns the
 * variance unchanged because `_bessels_correction_test_only` is True. Other
 * ranks take `nn.moments`, whose variance is biased. The fused path also
 * raises epsilon to at least 1.001e-5 (nn_impl.fused_batch_norm, a cuDNN
 * requirement).
 */
#include "core/colsum.h"
#include "layers/layer.h"
#include "layers/config_json.h"

#include <math.h>
#include <string.h>

typedef struct {
    graft_batch_norm_cfg cfg;
    int c;              /* channels: the last axis */
    size_t positions;   /* per sample: the product of the other axes */
    bool fused;         /* Keras's fused path: Bessel-corrected variance update */
    float epsilon;      /* in effect */
    int gamma, beta, mean, var; /* weight indices; -1 when absent */
} bnorm;

/* Reductions split the rows (positions of the batch) into at most this many
 * blocks whose partial sums are added in block order: the result does not
 * depend on the number of threads. */
#define BLOCKS 64

/* aux layout: mean[c], inv_std[c], then one flag: 1 when forward used the
 * batch statistics (so backward differentiates through them). */
static size_t aux_floats(const graft_layer *l, int n)
{
    (void)n;
    const bnorm *bn = l->cfg;
    return 2 * (size_t)bn->c + 1;
}

static int blocks_for(size_t rows) { return rows < 1 ? 1 : rows < BLOCKS ? (int)rows : BLOCKS; }

/* Scratch: per-block partial sums (2 doubles per channel and block; the
 * totals s0, s1 end up in the first block's), then three per-channel float
 * vectors. */
typedef struct {
    double *partials, *s0, *s1;
    float *scale, *shift, *slope;
} bn_scratch;

static bn_scratch carve(const bnorm *bn, float *scratch, size_t rows)
{
    const size_t C = (size_t)bn->c;
    bn_scratch s;
    s.partials = (double *)(void *)scratch;
    s.s0 = s.partials;
    s.s1 = s.partials + C;
    s.scale = (float *)(void *)(s.partials + (size_t)blocks_for(rows) * 2 * C);
    s.shift = s.scale + C;
    s.slope = s.shift + C;
    return s;
}

static size_t scratch_floats(const graft_layer *l, int n)
{
    const bnorm *bn = l->cfg;
    const size_t rows = (size_t)n * bn->positions, C = (size_t)bn->c;
    const size_t per_double = sizeof(double) / sizeof(float);
    return (size_t)blocks_for(rows) * 2 * C * per_double + 3 * C;
}

static graft_status build(graft_layer *l, const graft_shape *in)
{
    bnorm *bn = l->cfg;
    const graft_batch_norm_cfg *k = &bn->cfg;
    if (in[0].rank < 1)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (BatchNormalization): the input has no axis",
                          l->name);
    if (!(k->momentum >= 0 && k->momentum <= 1))
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (BatchNormalization): momentum must be in [0, 1] (got %g)",
                          l->name, (double)k->momentum);
    if (!(k->epsilon > 0) || isinf(k->epsilon))
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (BatchNormalization): epsilon must be positive (got %g)",
                          l->name, (double)k->epsilon);
    bn->c = in[0].dim[in[0].rank - 1];
    bn->positions = graft_shape_size(&in[0]) / (size_t)bn->c;
    bn->fused = in[0].rank == 3 || in[0].rank == 4;
    bn->epsilon = bn->fused && k->epsilon < 1.001e-5f ? 1.001e-5f : k->epsilon;
    l->out_shape = in[0];
    graft_shape ps = graft_shape1(bn->c);
    graft_status s = GRAFT_OK;
    bn->gamma = bn->beta = -1;
    if (!k->no_scale) {
        bn->gamma = l->n_weights;
        s = graft_layer_add_weight(l, "gamma", ps, true, GRAFT_INIT_ONES);
    }
    if (s == GRAFT_OK && !k->no_center) {
        bn->beta = l->n_weights;
        s = graft_layer_add_weight(l, "beta", ps, true, GRAFT_INIT_ZEROS);
    }
    if (s == GRAFT_OK) {
        bn->mean = l->n_weights;
        s = graft_layer_add_weight(l, "moving_mean", ps, false, GRAFT_INIT_ZEROS);
    }
    if (s == GRAFT_OK) {
        bn->var = l->n_weights;
        s = graft_layer_add_weight(l, "moving_variance", ps, false, GRAFT_INIT_ONES);
    }
    return s;
}


static bool stochastic(const graft_layer *l) { return l->trains; }

/* Per channel c over `rows` rows of C values: s0[c] = sum(y) and
 * s1[c] = sum((x - center) * y); with y NULL, s0 = sum(x - center) and
 * s1 = sum((x - center)^2). */
static void channel_sums(const float *x, const float *y, const float *center, size_t rows,
                         int C, const bn_scratch *s)
{
    graft_colsums(y ? GRAFT_COLSUM_PRODUCT : GRAFT_COLSUM_MOMENTS, x, y, center, NULL, rows, C,
                  blocks_for(rows), s->partials);
}

/* y = (x - mean) * scale + shift, per channel. */
static void affine(const float *x, const float *mean, const float *scale, const float *shift,
                   size_t rows, int C, float *out)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * C;
        float *restrict o = out + r * C;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (xr[c] - mean[c]) * scale[c] + shift[c];
    }
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    bnorm *bn = l->cfg;
    const int C = bn->c;
    const size_t rows = (size_t)f->n * bn->positions;
    const bool batch_stats = f->training && l->trains;
    const float *gamma = bn->gamma >= 0 ? l->weights[bn->gamma].data : NULL;
    const float *beta = bn->beta >= 0 ? l->weights[bn->beta].data : NULL;
    float *mmean = l->weights[bn->mean].data, *mvar = l->weights[bn->var].data;
    float *mean = f->aux, *inv_std = f->aux + C;
    bn_scratch s = carve(bn, f->scratch, rows);
    f->aux[2 * C] = batch_stats ? 1.0f : 0.0f;

    if (batch_stats) {
        /* Two passes: the sum, then squares around the (float) mean, with
         * the mean of the residuals corrected for exactly. */
        const double M = (double)rows;
        for (int c = 0; c < C; c++) mean[c] = 0;
        channel_sums(f->in[0], NULL, mean, rows, C, &s);
        for (int c = 0; c < C; c++) mean[c] = (float)(s.s0[c] / M);
        channel_sums(f->in[0], NULL, mean, rows, C, &s);
        const double m = bn->cfg.momentum;
        for (int c = 0; c < C; c++) {
            double d = s.s0[c] / M, var = s.s1[c] / M - d * d;
            if (var < 0) var = 0;
            double batch_mean = (double)mean[c] + d;
            mean[c] = (float)batch_mean;
            inv_std[c] = (float)(1.0 / sqrt(var + bn->epsilon));
            double moving_var = bn->fused && rows > 1 ? var * M / (M - 1) : var;
            mmean[c] = (float)(m * mmean[c] + (1 - m) * batch_mean);
            mvar[c] = (float)(m * mvar[c] + (1 - m) * moving_var);
        }
    } else {
        for (int c = 0; c < C; c++) {
            mean[c] = mmean[c];
            inv_std[c] = (float)(1.0 / sqrt((double)mvar[c] + bn->epsilon));
        }
    }
    for (int c = 0; c < C; c++) {
        s.scale[c] = gamma ? gamma[c] * inv_std[c] : inv_std[c];
        s.shift[c] = beta ? beta[c] : 0.0f;
    }
    affine(f->in[0], mean, s.scale, s.shift, rows, C, f->out);
}

bool graft_batch_norm_inference(const graft_layer *l, float *mean, float *scale, float *shift)
{
    if (strcmp(l->ops->class_name, "BatchNormalization") != 0) return false;
    const bnorm *bn = l->cfg;
    const float *gamma = bn->gamma >= 0 ? l->weights[bn->gamma].data : NULL;
    const float *beta = bn->beta >= 0 ? l->weights[bn->beta].data : NULL;
    const float *mmean = l->weights[bn->mean].data, *mvar = l->weights[bn->var].data;
    /* Exactly forward()'s inference arithmetic, so folding changes no bit. */
    for (int c = 0; c < bn->c; c++) {
        float inv_std = (float)(1.0 / sqrt((double)mvar[c] + bn->epsilon));
        mean[c] = mmean[c];
        scale[c] = gamma ? gamma[c] * inv_std : inv_std;
        shift[c] = beta ? beta[c] : 0.0f;
    }
    return true;
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    bnorm *bn = l->cfg;
    const int C = bn->c;
    const size_t rows = (size_t)b->n * bn->positions;
    const bool batch_stats = b->aux[2 * C] != 0.0f;
    const float *gamma = bn->gamma >= 0 ? l->weights[bn->gamma].data : NULL;
    const float *mean = b->aux, *inv_std = b->aux + C;
    const bool want_params = b->param_grads && (bn->gamma >= 0 || bn->beta >= 0);
    float *dx = b->din[0];
    if (!dx && !want_params) return;
    bn_scratch s = carve(bn, b->scratch, rows);

    /* s0 = sum(dy), s1 = sum((x - mean) * dy); dgamma = s1 * inv_std. */
    if (batch_stats || want_params) channel_sums(b->in[0], b->dout, mean, rows, C, &s);
    if (want_params) {
        if (bn->gamma >= 0) {
            float *dg = l->weights[bn->gamma].grad;
            for (int c = 0; c < C; c++) dg[c] = (float)(s.s1[c] * inv_std[c]);
        }
        if (bn->beta >= 0) {
            float *db = l->weights[bn->beta].grad;
            for (int c = 0; c < C; c++) db[c] = (float)s.s0[c];
        }
    }
    if (!dx) return;

    /* Training: dx = g*inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)),
     * i.e. dx = k * (dy - a - (x - mean) * q) per channel; inference drops
     * the two batch terms. */
    float *k = s.scale, *a = s.shift, *q = s.slope;
    const double M = (double)rows;
    for (int c = 0; c < C; c++) {
        double is = inv_std[c];
        k[c] = (float)((gamma ? gamma[c] : 1.0f) * is);
        if (batch_stats) {
            double av = s.s0[c] / M, qv = s.s1[c] * is * is / M;
            a[c] = (float)av;
            q[c] = (float)qv;
        } else {
            a[c] = 0;
            q[c] = 0;
        }
    }
    const bool acc = b->din_accumulate[0];
    const float *x = b->in[0], *dy = b->dout;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * C, *restrict dyr = dy + r * C;
        float *restrict d = dx + r * C;
        if (acc) {
#pragma omp simd
            for (int c = 0; c < C; c++) d[c] += k[c] * (dyr[c] - a[c] - (xr[c] - mean[c]) * q[c]);
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) d[c] = k[c] * (dyr[c] - a[c] - (xr[c] - mean[c]) * q[c]);
        }
    }
}

/* Keras 2's BatchNormalization.get_config(). A built Keras layer holds its
 * axis as a list of non-negative indices ([3] for NHWC), and so writes it. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_batch_norm_cfg *k = &((const bnorm *)l->cfg)->cfg;
    const int axis = l->out_shape.rank;
    cJSON *axes = cJSON_CreateIntArray(&axis, 1);
    bool ok = axes && cJSON_AddItemToObject(o, "axis", axes);
    if (!ok) cJSON_Delete(axes);
    ok = ok && graft_config_add_float(o, "momentum", k->momentum) &&
         graft_config_add_float(o, "epsilon", k->epsilon) &&
         cJSON_AddBoolToObject(o, "center", !k->no_center) &&
         cJSON_AddBoolToObject(o, "scale", !k->no_scale) &&
         graft_config_add_initializer(o, "beta_initializer", "Zeros") &&
         graft_config_add_initializer(o, "gamma_initializer", "Ones") &&
         graft_config_add_initializer(o, "moving_mean_initializer", "Zeros") &&
         graft_config_add_initializer(o, "moving_variance_initializer", "Ones") &&
         GRAFT_CONFIG_NULLS(o, "beta_regularizer", "gamma_regularizer", "beta_constraint",
                            "gamma_constraint");
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_batch_norm_cfg k = {.name = c->name};
    double mom, eps;
    bool center, scale;
    int rank = graft_layer_output_shape(c->in[0]).rank, axis;
    graft_status s = graft_config_axis(c, cfg, "axis", -1, rank, &axis);
    if (s == GRAFT_OK && axis != rank - 1)
        s = graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                "axis=%d is not supported (only the last axis, -1)", axis + 1);
    if (s == GRAFT_OK) s = graft_config_num(c, cfg, "momentum", 0.99, &mom);
    if (s == GRAFT_OK) s = graft_config_num(c, cfg, "epsilon", 1e-3, &eps);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "center", true, &center);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "scale", true, &scale);
    if (s != GRAFT_OK) return s;
    k.momentum = (float)mom;
    k.epsilon = (float)eps;
    k.no_center = !center;
    k.no_scale = !scale;
    *out = graft_batch_norm(c->m, c->in[0], k);
    return GRAFT_OK;
}

const graft_layer_ops graft_batch_norm_ops = {
    .class_name = "BatchNormalization",
    .build = build,
    .forward = forward,
    .backward = backward,
    .aux_floats = aux_floats,
    .scratch_floats = scratch_floats,
    .stochastic = stochastic,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_batch_norm(graft_model *m, graft_layer *in, graft_batch_norm_cfg cfg)
{
    if (cfg.momentum == 0) cfg.momentum = 0.99f;
    if (cfg.epsilon == 0) cfg.epsilon = 1e-3f;
    bnorm bn = {.cfg = cfg};
    bn.cfg.name = NULL; /* the layer keeps its own copy of the name */
    return graft_model_add_unary(m, &graft_batch_norm_ops, cfg.name, "batch_normalization", &bn, sizeof bn, in);
}
