/* Conv2D through oneDNN's convolution primitives (kernels/conv_onednn.c),
 * with im2col + GEMM (a direct GEMM for 1x1 stride-1 kernels) where oneDNN
 * can not, and for input gradients that add into what another consumer of
 * the input wrote (oneDNN would need a whole extra input-sized buffer). */
#include "core/colsum.h"
#include "kernels/kernels.h"
#include "layers/config_json.h"
#include "layers/layer.h"
#include "layers/conv_plain.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* A kernel's fingerprint (kernel_print): 16 words for each of its parts. */
#define PRINT_PARTS 4
#define PRINT_WORDS (16 * PRINT_PARTS)

/* A kernel in another form, kept between inference calls with the
 * fingerprint of the kernel it was made from (kept_stale). */
typedef struct {
    float *data;
    uint32_t print[PRINT_WORDS];
    bool valid;
    uint64_t promise; /* the weights' promise it was last checked under */
} kept_form;

typedef struct {
    graft_conv2d_cfg cfg;
    graft_conv_geom g;
    int chunk;              /* samples per im2col block, to bound the scratch */
    graft_onednn_conv *dnn; /* NULL: im2col + GEMM only */
    bool winograd;          /* forward and input gradient by Winograd F(4x4, 3x3) */
    bool winograd_batched;  /* inference of many images too (graft_winograd_fits_batched) */
    /* The Winograd kernel transform of rowwise passes (rowwise_pass),
     * remade when the weights change; a 1x1 layer's kernel in
     * graft_pw_gemm's panels, kept the same way for the fused steps of a
     * depth-first run (packed_wide: the panel width it was made for). */
    kept_form wino, packed;
    bool packed_wide;
    bool plain;             /* dilation_rate or groups: layers/conv_plain.c does everything, */
    bool dw;                /* but kernels/depthwise.c for groups = channels = filters */
    graft_plain_conv pc;
    /* What scratch_floats last returned: the model's scratch holds at least
     * that much for the batches of the current plan. */
    size_t scratch_lent;
} conv2d;

/* Patch matrices stay under this many floats (32 MiB) per block. */
#define COL_BUDGET (8u << 20)

/* Whether a pass computes each image's outputs apart from the rest of the
 * batch, by graft_pw_gemm's FMA chains, from the kernel's kept forms: a
 * frozen layer's every pass (its outputs may be cached per sample), and
 * every layer's inference, so that predict on a model that can still train
 * runs as fast as on a frozen one and gives the fused steps' bits. A
 * layer's training pass instead drops those forms: the step that follows
 * changes its weights, and they would hold memory for a stale kernel. */
static bool rowwise_pass(const graft_layer *l, bool training) { return !l->trains || !training; }

static bool pointwise(const conv2d *c)
{
    const graft_conv_geom *g = &c->g;
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1;
}

/* A strided 1x1 window: every sh-th row's every sw-th pixel (TensorFlow
 * pads a 1x1 window with nothing, 'same' or 'valid'). */
static bool strided_pointwise(const conv2d *c)
{
    return c->g.kh == 1 && c->g.kw == 1 && !pointwise(c);
}

/* A pointwise convolution over a small image (MobileNet's last blocks: 4x4
 * at 150x150) has its gradients computed faster as two plain GEMMs over all
 * rows than by oneDNN's 1x1 backward primitives, whose setup per call does
 * not pay on so few rows (docs/PERFORMANCE.md). */
static bool small_pointwise(const conv2d *c)
{
    return pointwise(c) && c->g.oh * c->g.ow <= 100;
}

static graft_status build(graft_layer *l, const graft_shape *in)
{
    conv2d *c = l->cfg;
    graft_conv2d_cfg *k = &c->cfg;
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE, "layer '%s' (Conv2D): expects a 3-D input (H, W, C), got rank %d",
                          l->name, in[0].rank);
    if (k->filters <= 0 || k->kernel_size[0] <= 0 || k->kernel_size[1] <= 0 || k->strides[0] <= 0 ||
        k->strides[1] <= 0)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Conv2D): filters, kernel_size and strides must be positive",
                          l->name);
    if (k->dilation_rate[0] != 1 || k->dilation_rate[1] != 1 || k->groups != 1) {
        graft_status s = graft_plain_conv_init(&c->pc, l->name, "Conv2D", &in[0], k->kernel_size,
                                               k->strides, k->dilation_rate, k->padding, k->groups,
                                               k->filters);
        if (s != GRAFT_OK) return s;
        c->plain = true;
        /* ConvNeXt's 7x7: a depthwise convolution, whose kernel (kh, kw, 1, C)
         * is a DepthwiseConv2D's (kh, kw, C, 1) in the same memory order. */
        c->dw = k->groups == in[0].dim[2] && k->filters == k->groups &&
                k->dilation_rate[0] == 1 && k->dilation_rate[1] == 1 &&
                k->kernel_size[0] <= GRAFT_DW_MAX_KH;
        if (c->dw) graft_conv_geom_init(&c->g, &in[0], k->kernel_size, k->strides, k->padding);
        l->out_shape = graft_shape3(c->pc.oh, c->pc.ow, k->filters);
        graft_shape ks = {4, {k->kernel_size[0], k->kernel_size[1], in[0].dim[2] / k->groups,
                              k->filters}};
        s = graft_layer_add_weight(l, "kernel", ks, true, GRAFT_INIT_GLOROT_UNIFORM);
        if (s == GRAFT_OK && !k->no_bias)
            s = graft_layer_add_weight(l, "bias", graft_shape1(k->filters), true, GRAFT_INIT_ZEROS);
        return s;
    }
    graft_conv_geom *g = &c->g;
    graft_conv_geom_init(g, &in[0], k->kernel_size, k->strides, k->padding);
    l->out_shape = graft_shape3(g->oh, g->ow, k->filters);
    size_t row = (size_t)g->oh * g->ow * g->kh * g->kw * g->c;
    c->chunk = row ? (int)(COL_BUDGET / row) : 1;
    if (c->chunk < 1) c->chunk = 1;
    graft_shape ks = {4, {g->kh, g->kw, g->c, k->filters}};
    graft_status s = graft_layer_add_weight(l, "kernel", ks, true, GRAFT_INIT_GLOROT_UNIFORM);
    if (s == GRAFT_OK && !k->no_bias)
        s = graft_layer_add_weight(l, "bias", graft_shape1(k->filters), true, GRAFT_INIT_ZEROS);
    /* NULL when oneDNN can not start: im2col + GEMM then does everything. */
    if (s == GRAFT_OK)
        c->dnn = graft_onednn_conv_new(g, k->filters, !k->no_bias, k->activation == GRAFT_RELU);
    /* GRAFT_NO_WINOGRAD=1: direct convolution only (to compare numerics). */
    const bool wino_on = !graft_env_on(GRAFT_ENV_NO_WINOGRAD);
    c->winograd = graft_winograd_fits(g, k->filters) && wino_on;
    c->winograd_batched = graft_winograd_fits_batched(g, k->filters) && wino_on;
    return s;
}

/* Floats of scratch for the bias gradient's per-thread double sums. */
static size_t bias_scratch_floats(const conv2d *c)
{
    return c->cfg.no_bias ? 0 : (size_t)2 * c->cfg.filters * graft_threads();
}

static size_t gemm_scratch_floats(const conv2d *c, int n)
{
    const graft_conv_geom *g = &c->g;
    int chunk = c->chunk < n ? c->chunk : n;
    return pointwise(c) ? 0 : (size_t)chunk * g->oh * g->ow * g->kh * g->kw * g->c;
}

/* The im2col room stays reserved for the fallbacks; pages nobody touches
 * cost address space, not memory. */
static size_t scratch_floats(const graft_layer *l, int n)
{
    conv2d *c = l->cfg; /* the layer's own state, not its description */
    if (c->dw) return graft_dw_backward_scratch_floats(&c->g, 1, n);
    if (c->plain) return 0;
    size_t need = gemm_scratch_floats(c, n);
    if (bias_scratch_floats(c) > need) need = bias_scratch_floats(c);
    if (c->dnn) {
        size_t d = graft_onednn_conv_scratch_floats(c->dnn, n);
        if (d > need) need = d;
    }
    if (c->winograd || c->winograd_batched) {
        size_t w = graft_winograd_scratch_floats(&c->g, c->cfg.filters, n, c->winograd);
        if (w > need) need = w;
    }
    c->scratch_lent = need;
    return need;
}

static void add_bias(float *out, const float *bias, size_t rows, int cols)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) out[r * cols + j] += bias[j];
}

static void gemm_forward(const conv2d *c, int n, const float *x, const float *W, const float *bias,
                         float *y, float *col)
{
    const graft_conv_geom *g = &c->g;
    const int F = c->cfg.filters, K = g->kh * g->kw * g->c;
    const size_t in_sz = (size_t)g->h * g->w * g->c, out_sz = (size_t)g->oh * g->ow * F;
    for (int b0 = 0; b0 < n; b0 += c->chunk) {
        int nb = n - b0 < c->chunk ? n - b0 : c->chunk;
        const float *A = x + b0 * in_sz;
        if (!pointwise(c)) {
            graft_im2col(g, A, nb, col);
            A = col;
        }
        graft_gemm(false, false, nb * g->oh * g->ow, F, K, 1.0f, A, K, W, F, 0.0f, y + b0 * out_sz, F);
    }
    if (bias) add_bias(y, bias, (size_t)n * g->oh * g->ow, F);
}

static void gemm_backward_weights(const conv2d *c, int n, const float *x, const float *dz,
                                  float *dW, float *col)
{
    const graft_conv_geom *g = &c->g;
    const int F = c->cfg.filters, K = g->kh * g->kw * g->c;
    const size_t in_sz = (size_t)g->h * g->w * g->c, out_sz = (size_t)g->oh * g->ow * F;
    int chunk = c->chunk < n ? c->chunk : n;
    for (int b0 = 0; b0 < n; b0 += chunk) {
        int nb = n - b0 < chunk ? n - b0 : chunk;
        const float *X = x + b0 * in_sz;
        if (!pointwise(c)) {
            graft_im2col(g, X, nb, col);
            X = col;
        }
        graft_gemm(true, false, K, F, nb * g->oh * g->ow, 1.0f, X, K, dz + b0 * out_sz, F,
                   b0 == 0 ? 0.0f : 1.0f, dW, F);
    }
}

/* dz = dout * act'(y) in place and db = the column sums of dz, in one pass
 * over dz for ReLU. The sums run in one part of the rows per thread, each
 * with F doubles in `scratch` (2 * F floats: scratch_floats reserves them for
 * graft_threads() threads, so at least one fits); the parts add up in order,
 * so the bits depend on the thread count only. */
static void activation_bias_backward(graft_activation act, const float *x, const float *y,
                                     float *dz, size_t rows, int F, float *db, float *scratch,
                                     size_t scratch_floats)
{
    bool relu = act == GRAFT_RELU;
    if (!relu) graft_activation_backward_x(act, x, y, dz, dz, rows, (size_t)F, false);
    double *part = (double *)(void *)scratch;
    size_t fit = scratch_floats / (2 * (size_t)F);
    int parts = graft_threads();
    if ((size_t)parts > fit) parts = fit > 1 ? (int)fit : 1;
    graft_colsums(relu ? GRAFT_COLSUM_RELU : GRAFT_COLSUM_PLAIN, dz, y, NULL, dz, rows, F, parts,
                  part);
    for (int j = 0; j < F; j++) db[j] = (float)part[j];
}

static void gemm_backward_data(const conv2d *c, int n, const float *dz, const float *W, float *dx,
                               bool accumulate, float *col)
{
    const graft_conv_geom *g = &c->g;
    const int F = c->cfg.filters, K = g->kh * g->kw * g->c;
    const size_t in_sz = (size_t)g->h * g->w * g->c, out_sz = (size_t)g->oh * g->ow * F;
    if (!accumulate && !pointwise(c)) memset(dx, 0, (size_t)n * in_sz * sizeof(float));
    int chunk = c->chunk < n ? c->chunk : n;
    for (int b0 = 0; b0 < n; b0 += chunk) {
        int nb = n - b0 < chunk ? n - b0 : chunk, M = nb * g->oh * g->ow;
        if (pointwise(c)) {
            graft_gemm(false, true, M, K, F, 1.0f, dz + b0 * out_sz, F, W, F,
                       accumulate ? 1.0f : 0.0f, dx + b0 * in_sz, K);
        } else {
            graft_gemm(false, true, M, K, F, 1.0f, dz + b0 * out_sz, F, W, F, 0.0f, col, K);
            graft_col2im(g, col, nb, dx + b0 * in_sz);
        }
    }
}

/* A 1x1 convolution is a GEMM of the NHWC rows with the (C, F) kernel; with
 * a stride, of every sh-th row's every sw-th pixel (rows sw * C floats apart,
 * no padding for a 1x1 window). Blocks of rows are multiplied on one thread
 * each and finished (bias, ReLU, the step's epilogue: a folded
 * BatchNormalization and clamp) while they are in cache, instead of in passes
 * of their own over the whole output; no kernel reorder either: faster than
 * oneDNN's 1x1 primitive followed by the epilogue pass (docs/PERFORMANCE.md).
 * A strided layer's training pass goes to oneDNN instead (forward). */
static void pointwise_forward(graft_layer *l, const graft_fwd *f, const float *W,
                              const float *bias, bool relu)
{
    const conv2d *c = l->cfg;
    const graft_conv_geom *g = &c->g;
    const int C = g->c, F = c->cfg.filters;
    const bool strided = !pointwise(c);
    const size_t rows = (size_t)f->n * g->oh * g->ow;
    const graft_epilogue *e = f->epi;
    const bool epi = graft_epilogue_active(e) && F <= GRAFT_EPILOGUE_MAX_C;
    /* About 64 KiB of output per block, at least 4 blocks per thread, but
     * never so few rows that the GEMM runs short; strided, one output row. */
    size_t block = (size_t)16384 / (size_t)F;
    size_t per_thread = rows / (4 * (size_t)graft_threads());
    const bool rowwise = rowwise_pass(l, f->training);
    if (block > per_thread) block = per_thread;
    if (block < 64) block = 64;
    if (strided) block = (size_t)g->ow;
    const long n_blocks = (long)((rows + block - 1) / block);
#pragma omp parallel for schedule(static)
    for (long k = 0; k < n_blocks; k++) {
        const size_t r0 = (size_t)k * block, nr = rows - r0 < block ? rows - r0 : block;
        float *y = f->out + r0 * F;
        /* dnnl_sgemm runs on this thread alone inside a parallel region.
         * A frozen layer's rows must not depend on the batch, and inference
         * must give the fused steps' bits (POINTWISE, DW_BLOCK): those of
         * graft_pw_gemm, whose every output is one FMA chain over the
         * channels on either ISA (dnnl_sgemm's AVX2 kernels, and oneDNN's
         * AVX2 strided 1x1 convolution, sum in another order). */
        if (strided) {
            const size_t img = (size_t)k / (size_t)g->oh, oy = (size_t)k % (size_t)g->oh;
            const float *a = f->in[0] + ((img * g->h + oy * g->sh) * g->w) * C;
            graft_pw_gemm((int)nr, F, C, a, (size_t)g->sw * C, W, (size_t)F, y, (size_t)F, NULL,
                          NULL, 0, graft_kernels_avx512());
        } else if (rowwise) {
            graft_pw_gemm((int)nr, F, C, f->in[0] + r0 * C, (size_t)C, W, (size_t)F, y, (size_t)F,
                          NULL, NULL, 0, graft_kernels_avx512());
        } else {
            graft_gemm(false, false, (int)nr, F, C, 1.0f, f->in[0] + r0 * C, C, W, F, 0.0f, y, F);
        }
        for (size_t r = 0; r < nr; r++) {
            float *o = y + r * F;
            if (bias) {
#pragma omp simd
                for (int j = 0; j < F; j++) o[j] += bias[j];
            }
            if (relu) {
#pragma omp simd
                for (int j = 0; j < F; j++) o[j] = o[j] < 0 ? 0.0f : o[j]; /* NaN stays */
            }
        }
        if (epi) graft_epilogue_rows(e, y, nr, F);
    }
}

/* A fingerprint of the kernel's bytes: PRINT_PARTS parts of the kernel,
 * each folded into 16 lanes: each of 4 x 16 lanes folds every 64th 32-bit
 * word of the part in as h = (h ^ w) * odd, and the 4 fold into the part's
 * 16 the same way. Each fold is one-to-one in h and in w, so changing any
 * one word always changes its lane's result (a changed kernel slipping
 * through needs several changed words in one lane that cancel, about one
 * chance in 2^32); a copy of the kernel would be exact but costs its size
 * again. One read of the kernel, no copy; the parts on all threads and 4
 * chains in each, since a single chain of multiplies read 10 GB/s, which
 * at a batch of one was a large part of the call. */
static void kernel_print(const float *W, size_t n, uint32_t h[PRINT_WORDS])
{
    const size_t part = (n / PRINT_PARTS + 63) / 64 * 64;
#pragma omp parallel for schedule(static) num_threads(graft_threads()) if (n >= 65536)
    for (int p = 0; p < PRINT_PARTS; p++) {
        uint32_t a[4][16];
        for (int c = 0; c < 4; c++)
            for (int j = 0; j < 16; j++)
                a[c][j] = 2u * (uint32_t)(j + 16 * (c + 4 * p)) + 1u;
        const size_t lo = (size_t)p * part, hi = lo + part;
        const size_t end = p == PRINT_PARTS - 1 || hi > n ? n : hi;
        size_t i = lo < n ? lo : n;
#ifdef __AVX512F__
        /* the same folds with the chains in registers: through the array
         * on the stack each step waited for a store to come back */
        __m512i chain[4];
        const __m512i odd = _mm512_set1_epi32((int)0x9E3779B1u);
        for (int c = 0; c < 4; c++) chain[c] = _mm512_loadu_si512(a[c]);
        for (; i + 64 <= end; i += 64)
            for (int c = 0; c < 4; c++)
                chain[c] = _mm512_mullo_epi32(
                    _mm512_xor_si512(chain[c], _mm512_loadu_si512(W + i + 16 * c)), odd);
        for (int c = 0; c < 4; c++) _mm512_storeu_si512(a[c], chain[c]);
#endif
        for (; i + 64 <= end; i += 64) {
            uint32_t w[4][16];
            memcpy(w, W + i, sizeof w);
            for (int c = 0; c < 4; c++)
                for (int j = 0; j < 16; j++)
                    a[c][j] = (a[c][j] ^ w[c][j]) * 0x9E3779B1u;
        }
        for (; i < end; i++) {
            uint32_t w;
            memcpy(&w, W + i, sizeof w);
            a[0][i % 16] = (a[0][i % 16] ^ w) * 0x9E3779B1u;
        }
        uint32_t *hp = h + 16 * p;
        for (int j = 0; j < 16; j++) {
            uint32_t v = a[0][j];
            for (int c = 1; c < 4; c++)
                v = (v ^ a[c][j]) * 0x9E3779B1u;
            hp[j] = v;
        }
    }
}

/* Whether k must be made (again) from the n floats of W: k->data is to be
 * allocated (floats; false when there is no memory, k->data then NULL), or
 * W's fingerprint differs from the one k was made from (then recorded: the
 * caller remakes k->data before using it). `promise`: the promise in force
 * that the weights are constant (0: none); a k checked under it is taken as
 * it is: the fingerprint reads the whole kernel, at a batch of one as long
 * as reading it for the GEMM. */
static bool kept_stale(kept_form *k, const float *W, size_t n, size_t floats, uint64_t promise,
                       bool *ok)
{
    if (!k->data) {
        k->data = malloc(floats * sizeof(float));
        k->valid = false;
    }
    *ok = k->data != NULL;
    if (!*ok || (promise && k->valid && k->promise == promise)) return false;
    k->promise = promise;
    uint32_t print[PRINT_WORDS];
    kernel_print(W, n, print);
    if (k->valid && memcmp(print, k->print, sizeof print) == 0) return false;
    memcpy(k->print, print, sizeof print);
    k->valid = true;
    return true;
}

static void kept_free(kept_form *k)
{
    free(k->data);
    k->data = NULL;
    k->valid = false;
}

/* The transformed kernel a call of n images reads, kept between rowwise
 * passes (checked once under each `promise` of constant weights, at every
 * call without one: kept_stale). NULL for a training pass, for a call
 * that transforms it block by block (graft_winograd_fused), and where there
 * is no room: the forward pass then transforms into its scratch, with the
 * same bits. */
static const float *winograd_u(conv2d *c, const float *W, bool rowwise, int n, uint64_t promise)
{
    if (!rowwise || graft_winograd_fused(&c->g, c->cfg.filters, n)) return NULL;
    bool ok;
    if (kept_stale(&c->wino, W, (size_t)9 * c->g.c * c->cfg.filters,
                   graft_winograd_u_floats(&c->g, c->cfg.filters), promise, &ok))
        graft_winograd_transform(&c->g, c->cfg.filters, W, c->wino.data);
    return ok ? c->wino.data : NULL;
}

/* Patch rows: an inference call of at most ROWS_MAX output pixels (a batch
 * of one at 7x7) with a kernel of at least ROWS_MIN_FLOATS (1 MiB, more
 * than L2 holds: it comes from memory each call), where Winograd does not
 * run, with AVX-512 (as graft_winograd_pays, whose choice it follows). On
 * two threads oneDNN's direct convolution was as fast until the stream
 * kernel's first tile copied its blocks (docs/PERFORMANCE.md). rows_fit: all
 * but the last condition. */
#define ROWS_MAX 64
#define ROWS_MIN_FLOATS (256u * 1024u)

static bool rows_fit(const conv2d *c, bool training, int n)
{
    const graft_conv_geom *g = &c->g;
    return !training && !c->plain && !pointwise(c) && n <= c->chunk &&
           (size_t)n * g->oh * g->ow <= ROWS_MAX &&
           (size_t)g->kh * g->kw * g->c * c->cfg.filters >= ROWS_MIN_FLOATS &&
           graft_kernels_avx512();
}

/* Whether a pass of n images runs by Winograd: training passes wherever the
 * geometry fits (their bits must not depend on the batch), inference where
 * the call has enough tiles as well (graft_winograd_pays), and for
 * geometries of few tiles an image where the call has many
 * (graft_winograd_batch_pays) and is not patch rows: at ResNet's 5x5 layers
 * (150x150 input) two images ran faster as patch rows (docs/PERFORMANCE.md). */
static bool winograd_for(const conv2d *c, bool training, int n)
{
    if (training) return c->winograd;
    return c->winograd ? graft_winograd_pays(&c->g, n)
                       : c->winograd_batched && graft_winograd_batch_pays(&c->g, n) &&
                             !rows_fit(c, training, n);
}

static bool rows_for(const conv2d *c, bool training, int n)
{
    return rows_fit(c, training, n) && !winograd_for(c, training, n);
}

/* The kernel W (HWIO: kh kw c rows of F, the GEMM's K x F) in
 * graft_pw_gemm's panels for `wide`, kept between calls (kept_stale). NULL
 * where there is no memory. */
static const float *packed_kernel(conv2d *c, const float *W, bool wide, uint64_t promise)
{
    const int K = c->g.kh * c->g.kw * c->g.c, F = c->cfg.filters;
    if (c->packed_wide != wide) kept_free(&c->packed);
    c->packed_wide = wide;
    bool ok;
    if (kept_stale(&c->packed, W, (size_t)K * F, graft_pw_pack_floats(K, F, wide), promise, &ok))
        graft_pw_pack(K, F, W, (size_t)F, c->packed.data, wide);
    return ok ? c->packed.data : NULL;
}

/* One GEMM of the call's patch rows (im2col into `col`) with the kernel,
 * the threads sharing its columns. With constant weights (`promise`) the
 * GEMM reads the kernel's packed copy, kept and trusted, in order: faster
 * than streaming it in place for ResNet50's 7x7 3x3s (4608 x 512) at batch
 * 1 (docs/PERFORMANCE.md). Without, it reads the kernel in place, once,
 * ahead of use (graft_pw_gemm_stream): a kept copy would cost a second read
 * of the kernel to check it. On one thread oneDNN's direct convolution read
 * ResNet50's 9.4 MB 7x7 kernels far below the memory's speed. Each output
 * is one FMA chain over the patch in kernel order, the same bits either
 * way, on any number of threads. */
static void rows_forward(conv2d *c, int n, const float *x, const float *W, const float *bias,
                         bool relu, float *y, float *col, uint64_t promise)
{
    const graft_conv_geom *g = &c->g;
    const int M = n * g->oh * g->ow, K = g->kh * g->kw * g->c, F = c->cfg.filters;
    const float *packed = promise ? packed_kernel(c, W, true, promise) : NULL;
    graft_im2col(g, x, n, col);
    const graft_kernel_epi e = {.bias = bias, .clamp = relu, .lo = 0, .hi = INFINITY};
#pragma omp parallel num_threads(graft_threads())
    {
        int c0, c1;
        graft_pw_share(F, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        if (packed)
            graft_pw_gemm_cols(M, c0, c1 - c0, K, col, (size_t)K, packed, 0, y, (size_t)F, &e,
                               NULL, 0, true);
        else
            graft_pw_gemm_stream(M, c0, c1 - c0, K, col, (size_t)K, W, (size_t)F, y, (size_t)F,
                                 &e, NULL, 0);
    }
}

const float *graft_conv2d_packed_kernel(graft_layer *l, bool wide, uint64_t promise)
{
    if (strcmp(l->ops->class_name, "Conv2D") != 0) return NULL;
    conv2d *c = l->cfg;
    if (c->g.kh != 1 || c->g.kw != 1 || c->plain) return NULL;
    return packed_kernel(c, l->weights[0].data, wide, promise);
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    conv2d *c = l->cfg;
    const graft_conv_geom *g = &c->g;
    const float *W = l->weights[0].data, *bias = c->cfg.no_bias ? NULL : l->weights[1].data;
    size_t rows = (size_t)f->n * g->oh * g->ow;
    graft_activation act = c->cfg.activation;
    if (c->plain) {
        rows = (size_t)f->n * c->pc.oh * c->pc.ow;
        if (c->dw) graft_dw_forward(g, f->n, f->in[0], W, bias, f->out);
        else graft_plain_conv_forward(&c->pc, f->n, f->in[0], W, bias, f->out);
        if (f->aux) memcpy(f->aux, f->out, rows * (size_t)c->cfg.filters * sizeof(float));
        graft_activation_forward(act, f->out, rows, (size_t)c->cfg.filters);
        graft_epilogue_apply(f->epi, f->out, rows, c->cfg.filters);
        return;
    }
    /* The same path in fit as in predict, so that cached features equal
     * recomputed ones. */
    const bool rowwise = rowwise_pass(l, f->training);
    if ((pointwise(c) || (strided_pointwise(c) && rowwise)) &&
        (act == GRAFT_RELU || act == GRAFT_LINEAR)) {
        pointwise_forward(l, f, W, bias, act == GRAFT_RELU);
        return;
    }
    if (!rowwise) kept_free(&c->wino);
    if (winograd_for(c, f->training, f->n) && (act == GRAFT_RELU || act == GRAFT_LINEAR)) {
        const float *u = winograd_u(c, W, rowwise, f->n, f->promise);
        graft_winograd_forward(g, c->cfg.filters, f->n, f->in[0], W, u, bias, act == GRAFT_RELU,
                               f->epi, f->out, rowwise, f->scratch);
        return;
    }
    if (rows_for(c, f->training, f->n)) {
        rows_forward(c, f->n, f->in[0], W, bias, act == GRAFT_RELU, f->out, f->scratch, f->promise);
        if (act == GRAFT_RELU) act = GRAFT_LINEAR; /* fused */
    } else if (c->dnn && graft_onednn_conv_forward(c->dnn, f->n, f->in[0], W, bias, f->out,
                                                   f->scratch, c->scratch_lent)) {
        if (act == GRAFT_RELU) act = GRAFT_LINEAR; /* fused */
    } else {
        gemm_forward(c, f->n, f->in[0], W, bias, f->out, f->scratch);
    }
    /* swish, gelu, ...: backward needs the pre-activation. */
    if (f->aux) memcpy(f->aux, f->out, rows * (size_t)c->cfg.filters * sizeof(float));
    graft_activation_forward(act, f->out, rows, (size_t)c->cfg.filters);
    graft_epilogue_apply(f->epi, f->out, rows, c->cfg.filters); /* a folded BN and ReLU */
}

void graft_conv2d_forward_pool(graft_layer *l, const graft_fwd *f, float *pooled, uint8_t *codes)
{
    conv2d *c = l->cfg;
    const float *W = l->weights[0].data, *bias = c->cfg.no_bias ? NULL : l->weights[1].data;
    const bool rowwise = rowwise_pass(l, f->training);
    const float *u = winograd_u(c, W, rowwise, f->n, f->promise);
    graft_winograd_forward_pool(&c->g, c->cfg.filters, f->n, f->in[0], W, u, bias, pooled, codes,
                                rowwise, f->scratch);
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const conv2d *c = l->cfg;
    const graft_conv_geom *g = &c->g;
    /* dL/d(pre-activation), in place: dout is ours to overwrite. */
    float *dz = b->dout;
    const int F = c->cfg.filters;
    if (c->plain) {
        const size_t prow = (size_t)b->n * c->pc.oh * c->pc.ow;
        graft_activation_backward_x(c->cfg.activation, b->aux, b->out, dz, dz, prow, (size_t)F,
                                    false);
        if (c->dw) {
            graft_dw_backward(g, 1, b->n, b->in[0], dz, l->weights[0].data,
                              b->param_grads ? l->weights[0].grad : NULL,
                              b->param_grads && !c->cfg.no_bias ? l->weights[1].grad : NULL,
                              b->din[0], b->din_accumulate[0], b->scratch);
            return;
        }
        if (b->param_grads)
            graft_plain_conv_backward_weights(&c->pc, b->n, b->in[0], dz, l->weights[0].grad,
                                              c->cfg.no_bias ? NULL : l->weights[1].grad);
        if (b->din[0])
            graft_plain_conv_backward_data(&c->pc, b->n, dz, l->weights[0].data, b->din[0],
                                           b->din_accumulate[0]);
        return;
    }
    const size_t rows = (size_t)b->n * g->oh * g->ow;
    if (b->param_grads && !c->cfg.no_bias)
        activation_bias_backward(c->cfg.activation, b->aux, b->out, dz, rows, F,
                                 l->weights[1].grad, b->scratch, c->scratch_lent);
    else
        graft_activation_backward_x(c->cfg.activation, b->aux, b->out, dz, dz, rows, (size_t)F,
                                    false);
    graft_conv2d_backward_dz(l, b);
}

void graft_conv2d_backward_dz(graft_layer *l, const graft_bwd *b)
{
    const conv2d *c = l->cfg;
    const graft_conv_geom *g = &c->g;
    const float *dz = b->dout;
    const int F = c->cfg.filters;
    const float *W = l->weights[0].data;
    if (b->param_grads) {
        float *dW = l->weights[0].grad;
        if (c->winograd)
            graft_winograd_backward_weights(g, F, b->n, b->in[0], dz, dW, b->scratch);
        else if (small_pointwise(c))
            gemm_backward_weights(c, b->n, b->in[0], dz, dW, b->scratch);
        else if (!c->dnn || !graft_onednn_conv_backward_weights(c->dnn, b->n, b->in[0], dz, dW,
                                                                b->scratch, c->scratch_lent))
            gemm_backward_weights(c, b->n, b->in[0], dz, dW, b->scratch);
    }
    float *dx = b->din[0];
    if (!dx) return; /* the input needs no gradient (the first layer) */
    bool acc = b->din_accumulate[0];
    if (!acc && c->winograd) {
        graft_winograd_backward_data(g, F, b->n, dz, W, dx, b->scratch);
        return;
    }
    if (acc || !c->dnn || small_pointwise(c) ||
        !graft_onednn_conv_backward_data(c->dnn, b->n, dz, W, dx, b->scratch, c->scratch_lent))
        gemm_backward_data(c, b->n, dz, W, dx, acc, b->scratch);
}

bool graft_conv2d_has_relu(const graft_layer *l)
{
    return strcmp(l->ops->class_name, "Conv2D") == 0 && !((const conv2d *)l->cfg)->plain &&
           ((const conv2d *)l->cfg)->cfg.activation == GRAFT_RELU;
}

const char *graft_conv2d_algorithm(const graft_layer *l, bool training, int n)
{
    if (strcmp(l->ops->class_name, "Conv2D") != 0) return NULL;
    const conv2d *c = l->cfg;
    if (c->plain) return c->dw ? "depthwise (groups = channels)" : "direct (dilation or groups)";
    if (pointwise(c)) return "1x1 GEMM";
    if (strided_pointwise(c) && rowwise_pass(l, training)) return "1x1 GEMM, strided rows";
    if (winograd_for(c, training, n)) {
        if (!rowwise_pass(l, training)) return "Winograd F(4x4,3x3)";
        return graft_winograd_fused(&c->g, c->cfg.filters, n)
                   ? "Winograd F(4x4,3x3), kernel transformed block by block"
                   : "Winograd F(4x4,3x3), kernel transform kept";
    }
    if (rows_for(c, training, n))
        return "patch rows, kernel kept packed with constant weights, else streamed in place";
    if (c->winograd) return c->dnn ? "oneDNN direct (too few Winograd tiles)" : "im2col + GEMM";
    return c->dnn ? "oneDNN direct" : "im2col + GEMM";
}

bool graft_conv2d_winograd_relu(const graft_layer *l, bool training, int n)
{
    return graft_conv2d_has_relu(l) && winograd_for(l->cfg, training, n);
}

bool graft_conv2d_pool_geom(const graft_layer *l, graft_conv_geom *g, int *filters)
{
    if (!graft_conv2d_has_relu(l)) return false;
    const conv2d *c = l->cfg;
    if (!graft_conv_pool_fits(&c->g, c->cfg.filters)) return false;
    if (g) *g = c->g;
    if (filters) *filters = c->cfg.filters;
    return true;
}

bool graft_conv2d_args(const graft_layer *l, graft_conv_geom *g, int *filters, const float **kernel,
                       const float **bias, graft_activation *act)
{
    if (strcmp(l->ops->class_name, "Conv2D") != 0) return false;
    const conv2d *c = l->cfg;
    if (c->plain) return false; /* dilation or groups: not in the geometry the steps compute */
    *g = c->g;
    *filters = c->cfg.filters;
    *kernel = l->weights[0].data;
    *bias = c->cfg.no_bias ? NULL : l->weights[1].data;
    *act = c->cfg.activation;
    return true;
}

/* Keras 2's Conv2D.get_config(). */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const graft_conv2d_cfg *k = &((const conv2d *)l->cfg)->cfg;
    bool ok = cJSON_AddNumberToObject(o, "filters", k->filters) &&
              graft_config_add_conv_common(o, k->kernel_size, k->strides, k->padding,
                                           k->dilation_rate, k->groups, k->activation,
                                           k->no_bias) &&
              graft_config_add_initializer(o, "kernel_initializer", "GlorotUniform") &&
              graft_config_add_initializer(o, "bias_initializer", "Zeros") &&
              GRAFT_CONFIG_NULLS(o, "kernel_regularizer", "bias_regularizer",
                                 "activity_regularizer", "kernel_constraint", "bias_constraint");
    return graft_config_done(l, ok);
}

static size_t aux_floats(const graft_layer *l, int n)
{
    const conv2d *c = l->cfg;
    if (!graft_activation_needs_input(c->cfg.activation)) return 0;
    return (size_t)n * graft_shape_size(&l->out_shape);
}

static void destroy(graft_layer *l)
{
    conv2d *c = l->cfg;
    graft_onednn_conv_free(c->dnn);
    c->dnn = NULL;
    kept_free(&c->wino);
    kept_free(&c->packed);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_conv2d_cfg k = {.name = c->name};
    bool use_bias = true;
    graft_status s = graft_config_int(c, cfg, "filters", 0, 1, &k.filters);
    if (s == GRAFT_OK && !k.filters) s = graft_config_refuse(c, GRAFT_EFORMAT, "no 'filters'");
    if (s == GRAFT_OK)
        s = graft_config_conv_window(c, cfg, k.kernel_size, k.strides, &k.padding, k.dilation_rate);
    if (s == GRAFT_OK) s = graft_config_int(c, cfg, "groups", 1, 1, &k.groups);
    if (s == GRAFT_OK) s = graft_config_activation(c, cfg, "activation", &k.activation);
    if (s == GRAFT_OK) s = graft_config_bool(c, cfg, "use_bias", true, &use_bias);
    k.no_bias = !use_bias;
    if (s == GRAFT_OK) *out = graft_conv2d(c->m, c->in[0], k);
    return s;
}

const graft_layer_ops graft_conv2d_ops = {
    .aux_floats = aux_floats,
    .class_name = "Conv2D",
    .build = build,
    .forward = forward,
    .backward = backward,
    .scratch_floats = scratch_floats,
    .get_config = get_config,
    .destroy = destroy,
    .from_config = from_config,
};

graft_layer *graft_conv2d(graft_model *m, graft_layer *in, graft_conv2d_cfg cfg)
{
    if (!cfg.strides[0]) cfg.strides[0] = 1;
    if (!cfg.strides[1]) cfg.strides[1] = 1;
    if (!cfg.dilation_rate[0]) cfg.dilation_rate[0] = 1;
    if (!cfg.dilation_rate[1]) cfg.dilation_rate[1] = 1;
    if (!cfg.groups) cfg.groups = 1;
    conv2d c = {.cfg = cfg};
    c.cfg.name = NULL; /* the layer keeps its own copy of the name */
    return graft_model_add_unary(m, &graft_conv2d_ops, cfg.name, "conv2d", &c, sizeof c, in);
}
