/*
 * MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D
 * on NHWC activations. They share TensorFlow's window geometry: 'same' pads
 * so that ceil(in / stride) windows fit, the odd cell going after; padded
 * cells never win a max and never count towards an average (TF divides by
 * the number of real cells in each window).
 *
 * Backward gathers, for each input row, from the windows that cover it, so
 * every input cell is written by one thread even when windows overlap. Max
 * pooling whose windows tile the input (pool no larger than stride, the
 * usual 2x2 stride 2) has a path of its own: each input cell then has at
 * most one window, found by a division, and full 2x2 windows are compared
 * in registers.
 * Max pooling records the winning cell of each window during training (the
 * first maximum in window order), so ties route the gradient exactly where
 * the forward value came from.
 * The plan's fused steps use three more entry points (layers/layer.h): a
 * backward that also applies the derivative of the ReLU convolution below
 * (exec/step_relu_pool.c), and one that routes by the code bytes a fused
 * convolution's pass wrote instead of argmax indices
 * (exec/step_winograd_pool.c).
 */
#include "core/colsum.h"
#include "kernels/kernels.h"
#include "layers/config_json.h"
#include "layers/layer.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

_Static_assert(sizeof(int32_t) == sizeof(float), "argmax indices live in a float buffer");

typedef enum { POOL_MAX, POOL_AVG } pool_kind;

typedef struct {
    pool_kind kind;
    int kh, kw, sh, sw;
    graft_padding padding;
    int h, w, c;
    int pt, pl, oh, ow;
} pool2d;

/* Argmax indices are int32 cells of one sample's H x W plane. */
static graft_status check_plane(const graft_layer *l, const graft_shape *in)
{
    if (in[0].rank != 3)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (%s): expects a 3-D input (H, W, C), got rank %d", l->name,
                          l->ops->class_name, in[0].rank);
    if ((long long)in[0].dim[0] * in[0].dim[1] > INT32_MAX)
        return graft_fail(GRAFT_EUNSUPPORTED, "layer '%s' (%s): an input of %d x %d is too large",
                          l->name, l->ops->class_name, in[0].dim[0], in[0].dim[1]);
    return GRAFT_OK;
}

static graft_status build_pool2d(graft_layer *l, const graft_shape *in)
{
    pool2d *p = l->cfg;
    const char *cls = l->ops->class_name;
    graft_status s = check_plane(l, in);
    if (s != GRAFT_OK) return s;
    if (p->kh <= 0 || p->kw <= 0 || p->sh <= 0 || p->sw <= 0)
        return graft_fail(
            GRAFT_EINVAL,
            "layer '%s' (%s): pool_size (%d, %d) and strides (%d, %d) must be positive", l->name,
            cls, p->kh, p->kw, p->sh, p->sw);
    if (p->padding != GRAFT_VALID && p->padding != GRAFT_SAME)
        return graft_fail(GRAFT_EINVAL, "layer '%s' (%s): padding must be 'valid' or 'same'",
                          l->name, cls);
    p->h = in[0].dim[0];
    p->w = in[0].dim[1];
    p->c = in[0].dim[2];
    if (p->padding == GRAFT_VALID && (p->kh > p->h || p->kw > p->w))
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (%s): pool_size (%d, %d) is larger than its input (%d, %d) "
                          "with padding 'valid'",
                          l->name, cls, p->kh, p->kw, p->h, p->w);
    p->oh = graft_conv_out_size(p->h, p->kh, p->sh, p->padding, &p->pt);
    p->ow = graft_conv_out_size(p->w, p->kw, p->sw, p->padding, &p->pl);
    l->out_shape = graft_shape3(p->oh, p->ow, p->c);
    return GRAFT_OK;
}

/* Max pooling only: the argmax of every output. */
static size_t pool2d_aux_floats(const graft_layer *l, int n)
{
    return (size_t)n * graft_shape_size(&l->out_shape);
}

size_t graft_max_pool_code_floats(const graft_layer *l, int n)
{
    return ((size_t)n * graft_shape_size(&l->out_shape) + 3) / 4;
}

bool graft_max_pool_2x2(const graft_layer *l)
{
    if (strcmp(l->ops->class_name, "MaxPooling2D") != 0) return false;
    const pool2d *p = l->cfg;
    return p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && p->padding == GRAFT_VALID;
}

bool graft_max_pool_geom(const graft_layer *l, graft_conv_geom *g)
{
    if (strcmp(l->ops->class_name, "MaxPooling2D") != 0) return false;
    const pool2d *p = l->cfg;
    *g = (graft_conv_geom){.h = p->h, .w = p->w, .c = p->c, .kh = p->kh, .kw = p->kw,
                           .sh = p->sh, .sw = p->sw, .pad_top = p->pt, .pad_left = p->pl,
                           .oh = p->oh, .ow = p->ow};
    return true;
}

bool graft_avg_pool_2x2(const graft_layer *l)
{
    if (strcmp(l->ops->class_name, "AveragePooling2D") != 0) return false;
    const pool2d *p = l->cfg;
    return p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && p->padding == GRAFT_VALID;
}

/* The real cells [lo, hi) of window o along one axis. */
static void window(int o, int stride, int pad, int k, int size, int *lo, int *hi)
{
    int a = o * stride - pad, b = a + k;
    *lo = a > 0 ? a : 0;
    *hi = b < size ? b : size;
}

/* The windows [lo, hi) along one axis that cover cell i. */
static void covering(int i, int stride, int pad, int k, int n_out, int *lo, int *hi)
{
    int first = i + pad - k + 1; /* the lowest window start that still reaches i */
    *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    int last = (i + pad) / stride + 1;
    *hi = last < n_out ? last : n_out;
}

/* One full 2x2 window: the same comparisons in the same order as the
 * general loop below (first maximum in window order, NaN never replaces),
 * with the running maximum in registers instead of memory. */
static void max_window_2x2(const float *x, size_t row, int C, int32_t cell, int W, float *o,
                           int32_t *a)
{
    const float *v0 = x, *v1 = x + C, *v2 = x + row, *v3 = x + row + C;
    if (a) {
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float m = v0[c];
            int32_t k = cell;
            k = v1[c] > m ? cell + 1 : k;
            m = v1[c] > m ? v1[c] : m;
            k = v2[c] > m ? cell + W : k;
            m = v2[c] > m ? v2[c] : m;
            k = v3[c] > m ? cell + W + 1 : k;
            m = v3[c] > m ? v3[c] : m;
            o[c] = m;
            a[c] = k;
        }
    } else {
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float m = v0[c];
            m = v1[c] > m ? v1[c] : m;
            m = v2[c] > m ? v2[c] : m;
            o[c] = v3[c] > m ? v3[c] : m;
        }
    }
}

/* The max pool over x, or over x as ZeroPadding2D would have padded it
 * (pad: its top, bottom, left and right; the pool's input is the padded
 * tensor, x its inner part): a padding cell reads as 0.0f, in the same
 * comparisons in the same order as over the padded tensor, so the bits are
 * those of the two layers apart. arg (NULL: none) gets the winning cells
 * of the pool's input plane. */
static void max_forward_over(const pool2d *p, const int pad[4], int n, const float *x_in,
                             float *out, int32_t *arg)
{
    const int H = p->h, W = p->w, C = p->c, OH = p->oh, OW = p->ow;
    const int t = pad[0], le = pad[2], h = H - pad[0] - pad[1], w = W - pad[2] - pad[3];
    const long rows = (long)n * OH;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *x = x_in + (size_t)(r / OH) * h * w * C;
        int y0, y1;
        window((int)(r % OH), p->sh, p->pt, p->kh, H, &y0, &y1);
        for (int ox = 0; ox < OW; ox++) {
            int x0, x1;
            window(ox, p->sw, p->pl, p->kw, W, &x0, &x1);
            size_t o_off = ((size_t)r * OW + ox) * C;
            float *o = out + o_off;
            int32_t *a = arg ? arg + o_off : NULL;
            const bool inside = y0 >= t && y1 <= t + h && x0 >= le && x1 <= le + w;
            if (inside && y1 - y0 == 2 && x1 - x0 == 2) {
                max_window_2x2(x + ((size_t)(y0 - t) * w + (x0 - le)) * C, (size_t)w * C, C,
                               y0 * W + x0, W, o, a);
                continue;
            }
            for (int y = y0; y < y1; y++) {
                for (int xx = x0; xx < x1; xx++) {
                    const bool real = y >= t && y < t + h && xx >= le && xx < le + w;
                    const float *v = real ? x + ((size_t)(y - t) * w + (xx - le)) * C : NULL;
                    const int32_t cell = y * W + xx;
                    if (y == y0 && xx == x0) {
                        if (v) memcpy(o, v, (size_t)C * sizeof(float));
                        else memset(o, 0, (size_t)C * sizeof(float));
                        if (a)
                            for (int c = 0; c < C; c++) a[c] = cell;
                    } else if (!v) {
                        for (int c = 0; c < C; c++) {
                            bool gt = 0.0f > o[c];
                            o[c] = gt ? 0.0f : o[c];
                            if (a) a[c] = gt ? cell : a[c];
                        }
                    } else if (a) {
#pragma omp simd
                        for (int c = 0; c < C; c++) {
                            bool gt = v[c] > o[c];
                            o[c] = gt ? v[c] : o[c];
                            a[c] = gt ? cell : a[c];
                        }
                    } else {
#pragma omp simd
                        for (int c = 0; c < C; c++)
                            o[c] = v[c] > o[c] ? v[c] : o[c];
                    }
                }
            }
        }
    }
}

static void max_forward(const pool2d *p, const graft_fwd *f)
{
    static const int none[4] = {0, 0, 0, 0};
    /* cppcheck-suppress invalidPointerCast ; aux is untyped memory: int32 in, int32 out */
    max_forward_over(p, none, f->n, f->in[0], f->out, f->training ? (int32_t *)f->aux : NULL);
}

bool graft_max_pool_over_padding(const graft_layer *l, const int pad[4])
{
    if (strcmp(l->ops->class_name, "MaxPooling2D") != 0) return false;
    const pool2d *p = l->cfg;
    return pad[0] >= 0 && pad[1] >= 0 && pad[2] >= 0 && pad[3] >= 0 &&
           p->h - pad[0] - pad[1] > 0 && p->w - pad[2] - pad[3] > 0;
}

void graft_max_pool_forward_padded(const graft_layer *l, const int pad[4], int n, const float *x,
                                   float *out)
{
    max_forward_over(l->cfg, pad, n, x, out, NULL);
}

static void avg_forward(const pool2d *p, const graft_fwd *f)
{
    const int H = p->h, W = p->w, C = p->c, OH = p->oh, OW = p->ow;
    const long rows = (long)f->n * OH;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *x = f->in[0] + (size_t)(r / OH) * H * W * C;
        int y0, y1;
        window((int)(r % OH), p->sh, p->pt, p->kh, H, &y0, &y1);
        for (int ox = 0; ox < OW; ox++) {
            int x0, x1;
            window(ox, p->sw, p->pl, p->kw, W, &x0, &x1);
            float *o = f->out + ((size_t)r * OW + ox) * C;
            memset(o, 0, (size_t)C * sizeof(float));
            for (int y = y0; y < y1; y++) {
                for (int xx = x0; xx < x1; xx++) {
                    const float *v = x + ((size_t)y * W + xx) * C;
#pragma omp simd
                    for (int c = 0; c < C; c++)
                        o[c] += v[c];
                }
            }
            const float inv = 1.0f / (float)((y1 - y0) * (x1 - x0));
#pragma omp simd
            for (int c = 0; c < C; c++)
                o[c] *= inv;
        }
    }
}

static void pool2d_forward(graft_layer *l, const graft_fwd *f)
{
    const pool2d *p = l->cfg;
    if (p->kind == POOL_MAX)
        max_forward(p, f);
    else
        avg_forward(p, f);
}

/* Max pooling's backward when windows tile the input: cell i along an axis
 * lies in window (i + pad) / stride if it falls within that window's first
 * k cells, else in none (the rows and columns 'valid' drops, the gaps of a
 * stride larger than the pool). Every input cell is written once, in order. */
static void max_backward_tiled(const pool2d *p, const graft_bwd *b, float *dx, bool relu_below)
{
    const int H = p->h, W = p->w, C = p->c, OH = p->oh, OW = p->ow;
    /* cppcheck-suppress invalidPointerCast ; aux is untyped memory: int32 in, int32 out */
    const int32_t *arg = (const int32_t *)b->aux;
    const bool acc = b->din_accumulate[0], relu = relu_below;
    const long rows = (long)b->n * H;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const size_t s = (size_t)(r / H);
        const int y = (int)(r % H), oy = (y + p->pt) / p->sh;
        float *d = dx + (size_t)r * W * C;
        if (oy >= OH || y + p->pt - oy * p->sh >= p->kh) {
            if (!acc) memset(d, 0, (size_t)W * C * sizeof(float));
            continue;
        }
        const size_t row_off = (s * OH + oy) * OW * C;
        int ox = p->pl / p->sw, off = p->pl % p->sw; /* cell xx's window and place in it */
        for (int xx = 0; xx < W; xx++, d += C) {
            if (ox >= OW || off >= p->kw) {
                if (!acc) memset(d, 0, (size_t)C * sizeof(float));
            } else {
                const float *g = b->dout + row_off + (size_t)ox * C;
                const float *o = b->out + row_off + (size_t)ox * C;
                const int32_t *a = arg + row_off + (size_t)ox * C, cell = y * W + xx;
                if (acc) {
#pragma omp simd
                    for (int c = 0; c < C; c++)
                        d[c] += a[c] == cell && (!relu || o[c] > 0) ? g[c] : 0.0f;
                } else {
#pragma omp simd
                    for (int c = 0; c < C; c++)
                        d[c] = a[c] == cell && (!relu || o[c] > 0) ? g[c] : 0.0f;
                }
            }
            if (++off == p->sw) {
                off = 0;
                ox++;
            }
        }
    }
}

/* One pooled output's C channels routed to its window's four cells (d0:
 * its top-left cell, d1: the cell below) by the codes, +0 where a cell did
 * not win; with acc, what passes (code 0..3: the pooled value was positive)
 * added to it. Intrinsics: GCC's vectorised select here stored the zeros
 * through masked stores, slower than the separate layers' loops. */
static void route_codes(const float *g, const uint8_t *k, float *d0, float *d1, int C, float *acc)
{
    int c = 0;
#ifdef __AVX512F__
    for (; c + 16 <= C; c += 16) {
        const __m512 v = _mm512_loadu_ps(g + c);
        const __m512i kc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(k + c)));
        float *dst[4] = {d0 + c, d0 + C + c, d1 + c, d1 + C + c};
        for (int i = 0; i < 4; i++) {
            __mmask16 won = _mm512_cmpeq_epi32_mask(kc, _mm512_set1_epi32(i));
            _mm512_storeu_ps(dst[i], _mm512_maskz_mov_ps(won, v));
        }
        if (acc) { /* + (+0) where nothing passes, as graft_colsums adds */
            __mmask16 pass = _mm512_cmpneq_epi32_mask(kc, _mm512_set1_epi32(4));
            __m512 sum = _mm512_add_ps(_mm512_loadu_ps(acc + c), _mm512_maskz_mov_ps(pass, v));
            _mm512_storeu_ps(acc + c, sum);
        }
    }
#endif
#ifdef __AVX2__
    for (; c + 8 <= C; c += 8) {
        const __m256 v = _mm256_loadu_ps(g + c);
        const __m256i kc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)(k + c)));
        float *dst[4] = {d0 + c, d0 + C + c, d1 + c, d1 + C + c};
        for (int i = 0; i < 4; i++) {
            __m256 won = _mm256_castsi256_ps(_mm256_cmpeq_epi32(kc, _mm256_set1_epi32(i)));
            _mm256_storeu_ps(dst[i], _mm256_and_ps(won, v));
        }
        if (acc) {
            __m256 lost = _mm256_castsi256_ps(_mm256_cmpeq_epi32(kc, _mm256_set1_epi32(4)));
            __m256 sum = _mm256_add_ps(_mm256_loadu_ps(acc + c), _mm256_andnot_ps(lost, v));
            _mm256_storeu_ps(acc + c, sum);
        }
    }
#endif
    for (; c < C; c++) {
        const float v = g[c];
        const int kc = k[c];
        d0[c] = kc == 0 ? v : 0.0f;
        d0[C + c] = kc == 1 ? v : 0.0f;
        d1[c] = kc == 2 ? v : 0.0f;
        d1[C + c] = kc == 3 ? v : 0.0f;
        if (acc) acc[c] += kc != 4 ? v : 0.0f;
    }
}

/* Codes: dL/d(convolution's output) from the pooled gradient and
 * the code bytes of the convolution's pass: each window's gradient goes to
 * the cell its code names, none for code 4 (the ReLU's derivative is 0
 * there), zeros elsewhere, the row and column 'valid' drops included. The
 * same values as max_backward_tiled with relu_below (argmax == cell and the
 * pooled value positive), without reading int32 indices or the pooled
 * output. With db, the convolution's bias gradient in the same pass: the
 * sums relu_bias_grad takes, in graft_colsums's parts and blocks of rows
 * and its order, so the same bits. dx is the sole reader's gradient: never
 * accumulated into. */
static void max_backward_codes(const pool2d *p, const graft_bwd *b, float *dx, float *db)
{
    const int H = p->h, W = p->w, C = p->c, OH = p->oh, OW = p->ow;
    const uint8_t *code = (const uint8_t *)(const void *)b->aux;
    const size_t row = (size_t)W * C, pixels = (size_t)b->n * OH * OW;
    const int parts = graft_threads();
    double *part = (double *)(void *)b->scratch;
    float *block = (float *)(void *)(part + (size_t)parts * C); /* a float row of sums per part */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < parts; t++) {
        double *s0 = part + (size_t)t * C;
        float *acc = block + (size_t)t * C;
        if (db) memset(s0, 0, (size_t)C * sizeof(double));
        const size_t begin = pixels * (size_t)t / (size_t)parts;
        const size_t end = pixels * (size_t)(t + 1) / (size_t)parts;
        /* The first pooled output's place; then counted on, not divided. */
        size_t s = begin / ((size_t)OH * OW);
        int oy = (int)(begin / (size_t)OW % (size_t)OH), ox = (int)(begin % (size_t)OW) - 1;
        for (size_t q0 = begin; q0 < end; q0 += 32) {
            const size_t q1 = end - q0 < 32 ? end : q0 + 32; /* colsum's BLOCK_ROWS */
            if (db) memset(acc, 0, (size_t)C * sizeof(float));
            for (size_t q = q0; q < q1; q++) {
                if (++ox == OW) {
                    ox = 0;
                    if (++oy == OH) {
                        oy = 0;
                        s++;
                    }
                }
                float *d0 = dx + ((s * H + 2 * (size_t)oy) * W + 2 * (size_t)ox) * C,
                      *d1 = d0 + row;
                route_codes(b->dout + q * C, code + q * C, d0, d1, C, db ? acc : NULL);
                const bool last_col = W % 2 && ox == OW - 1; /* the column 'valid' drops */
                if (last_col) {
                    memset(d0 + 2 * C, 0, (size_t)C * sizeof(float));
                    memset(d1 + 2 * C, 0, (size_t)C * sizeof(float));
                }
                if (H % 2 && oy == OH - 1) /* and the row */
                    memset(d1 + row, 0, (size_t)(last_col ? 3 : 2) * C * sizeof(float));
            }
            if (db)
                for (int c = 0; c < C; c++)
                    s0[c] += acc[c];
        }
    }
    if (!db) return;
    for (int t = 1; t < parts; t++)
        for (int c = 0; c < C; c++)
            part[c] += part[(size_t)t * C + c];
    for (int c = 0; c < C; c++)
        db[c] = (float)part[c];
}

/* With the ReLU below: the bias gradient of the ReLU convolution below,
 * the sum of its dL/d(pre-activation), which is nonzero only at the cells
 * the pool routes to: the sum over this pool's outputs of g where the pooled
 * value is positive. The masked g is written back in place (the routing
 * below masks it the same way), one part of the rows per thread. */
static void relu_bias_grad(const pool2d *p, const graft_bwd *b, float *db)
{
    const int C = p->c;
    double *part = (double *)(void *)b->scratch;
    graft_colsums(GRAFT_COLSUM_RELU, b->dout, b->out, NULL, b->dout, (size_t)b->n * p->oh * p->ow,
                  C, graft_threads(), part);
    for (int c = 0; c < C; c++)
        db[c] = (float)part[c];
}

static size_t pool2d_scratch_floats(const graft_layer *l, int n)
{
    (void)n;
    const int C = ((const pool2d *)l->cfg)->c;
    return 2 * graft_colsum_doubles(GRAFT_COLSUM_RELU, graft_threads(), C);
}

size_t graft_max_pool_codes_scratch_floats(const graft_layer *l)
{
    const int C = ((const pool2d *)l->cfg)->c;
    return pool2d_scratch_floats(l, 0) + (size_t)graft_threads() * C; /* and the float sums */
}

void graft_max_pool_backward_codes(const graft_layer *l, const graft_bwd *b, float *dbias)
{
    if (b->din[0]) max_backward_codes(l->cfg, b, b->din[0], dbias);
}

/* relu: the ReLU convolution below's derivative too, and with dbias its bias gradient. */
static void backward_impl(const graft_layer *l, const graft_bwd *b, bool relu, float *dbias)
{
    const pool2d *p = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    if (dbias) relu_bias_grad(p, b, dbias);
    if (p->kind == POOL_MAX && p->kh <= p->sh && p->kw <= p->sw) {
        max_backward_tiled(p, b, dx, relu);
        return;
    }
    const int H = p->h, W = p->w, C = p->c, OH = p->oh, OW = p->ow;
    /* cppcheck-suppress invalidPointerCast ; aux is untyped memory: int32 in, int32 out */
    const int32_t *arg = (const int32_t *)b->aux;
    const bool acc = b->din_accumulate[0];
    const long rows = (long)b->n * H;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const size_t s = (size_t)(r / H);
        const int y = (int)(r % H);
        int oy0, oy1;
        covering(y, p->sh, p->pt, p->kh, OH, &oy0, &oy1);
        for (int xx = 0; xx < W; xx++) {
            float *d = dx + ((size_t)r * W + xx) * C;
            if (!acc) memset(d, 0, (size_t)C * sizeof(float));
            int ox0, ox1;
            covering(xx, p->sw, p->pl, p->kw, OW, &ox0, &ox1);
            const int32_t cell = y * W + xx;
            for (int oy = oy0; oy < oy1; oy++) {
                int wy0, wy1;
                window(oy, p->sh, p->pt, p->kh, H, &wy0, &wy1);
                for (int ox = ox0; ox < ox1; ox++) {
                    size_t o_off = ((s * OH + oy) * OW + ox) * C;
                    const float *g = b->dout + o_off;
                    if (p->kind == POOL_MAX) {
                        const int32_t *a = arg + o_off;
                        const float *o = b->out + o_off;
#pragma omp simd
                        for (int c = 0; c < C; c++)
                            d[c] += a[c] == cell && (!relu || o[c] > 0) ? g[c] : 0.0f;
                    } else {
                        int wx0, wx1;
                        window(ox, p->sw, p->pl, p->kw, W, &wx0, &wx1);
                        const float inv = 1.0f / (float)((wy1 - wy0) * (wx1 - wx0));
#pragma omp simd
                        for (int c = 0; c < C; c++)
                            d[c] += g[c] * inv;
                    }
                }
            }
        }
    }
}

static void pool2d_backward(graft_layer *l, const graft_bwd *b) { backward_impl(l, b, false, NULL); }

void graft_max_pool_backward_relu(const graft_layer *l, const graft_bwd *b, float *dbias)
{
    backward_impl(l, b, true, dbias);
}

/* Keras 2's Pooling2D.get_config(), strides always explicit as a built layer has them. */
static graft_status pool2d_config(const graft_layer *l, cJSON *o)
{
    const pool2d *p = l->cfg;
    bool ok = graft_config_add_pair(o, "pool_size", p->kh, p->kw) &&
              graft_config_add_padding(o, p->padding) &&
              graft_config_add_pair(o, "strides", p->sh, p->sw) &&
              cJSON_AddStringToObject(o, "data_format", "channels_last");
    return graft_config_done(l, ok);
}

static graft_status pool2d_read(const graft_config_in *c, const cJSON *cfg, graft_pool2d_cfg *k)
{
    *k = (graft_pool2d_cfg){.name = c->name};
    graft_status s = graft_config_pair(c, cfg, "pool_size", 2, k->pool_size);
    if (s == GRAFT_OK) s = graft_config_pair(c, cfg, "strides", 0, k->strides);
    if (s == GRAFT_OK) s = graft_config_padding(c, cfg, &k->padding);
    return s;
}

static graft_status max_from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_pool2d_cfg k;
    graft_status s = pool2d_read(c, cfg, &k);
    if (s == GRAFT_OK) *out = graft_max_pooling2d(c->m, c->in[0], k);
    return s;
}

static graft_status avg_from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    graft_pool2d_cfg k;
    graft_status s = pool2d_read(c, cfg, &k);
    if (s == GRAFT_OK) *out = graft_average_pooling2d(c->m, c->in[0], k);
    return s;
}

const graft_layer_ops graft_max_pooling2d_ops = {
    .class_name = "MaxPooling2D",
    .build = build_pool2d,
    .forward = pool2d_forward,
    .backward = pool2d_backward,
    .aux_floats = pool2d_aux_floats,
    .scratch_floats = pool2d_scratch_floats,
    .get_config = pool2d_config,
    .from_config = max_from_config,
};



const graft_layer_ops graft_average_pooling2d_ops = {
    .class_name = "AveragePooling2D",
    .build = build_pool2d,
    .forward = pool2d_forward,
    .backward = pool2d_backward,
    .get_config = pool2d_config,
    .from_config = avg_from_config,
};

static graft_layer *add_pool2d(graft_model *m, graft_layer *in, graft_pool2d_cfg cfg,
                               pool_kind kind, const graft_layer_ops *ops, const char *prefix)
{
    pool2d p = {
        .kind = kind,
        .kh = cfg.pool_size[0] ? cfg.pool_size[0] : 2,
        .kw = cfg.pool_size[1] ? cfg.pool_size[1] : 2,
        .padding = cfg.padding,
    };
    p.sh = cfg.strides[0] ? cfg.strides[0] : p.kh;
    p.sw = cfg.strides[1] ? cfg.strides[1] : p.kw;
    return graft_model_add_unary(m, ops, cfg.name, prefix, &p, sizeof p, in);
}

graft_layer *graft_max_pooling2d(graft_model *m, graft_layer *in, graft_pool2d_cfg cfg)
{
    return add_pool2d(m, in, cfg, POOL_MAX, &graft_max_pooling2d_ops, "max_pooling2d");
}

graft_layer *graft_average_pooling2d(graft_model *m, graft_layer *in, graft_pool2d_cfg cfg)
{
    return add_pool2d(m, in, cfg, POOL_AVG, &graft_average_pooling2d_ops, "average_pooling2d");
}

/* ------------------------------------------------------------ global pooling */

typedef struct {
    pool_kind kind;
    bool keepdims; /* (1, 1, C) instead of (C,): the same floats */
    int hw, c;
} global_pool;

static graft_status build_global(graft_layer *l, const graft_shape *in)
{
    global_pool *g = l->cfg;
    graft_status s = check_plane(l, in);
    if (s != GRAFT_OK) return s;
    g->hw = in[0].dim[0] * in[0].dim[1];
    g->c = in[0].dim[2];
    l->out_shape = g->keepdims ? graft_shape3(1, 1, g->c) : graft_shape1(g->c);
    return GRAFT_OK;
}

static size_t global_aux_floats(const graft_layer *l, int n)
{
    const global_pool *g = l->cfg;
    return (size_t)n * g->c;
}

static void global_forward(graft_layer *l, const graft_fwd *f)
{
    const global_pool *g = l->cfg;
    const int HW = g->hw, C = g->c;
    /* cppcheck-suppress invalidPointerCast ; aux is untyped memory: int32 in, int32 out */
    int32_t *arg = f->training ? (int32_t *)f->aux : NULL;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < f->n; s++) {
        const float *x = f->in[0] + (size_t)s * HW * C;
        float *o = f->out + (size_t)s * C;
        int32_t *a = arg ? arg + (size_t)s * C : NULL;
        memcpy(o, x, (size_t)C * sizeof(float));
        if (a) memset(a, 0, (size_t)C * sizeof(int32_t));
        for (int q = 1; q < HW; q++) {
            const float *v = x + (size_t)q * C;
            if (g->kind == POOL_AVG) {
#pragma omp simd
                for (int c = 0; c < C; c++)
                    o[c] += v[c];
            } else if (a) {
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    bool gt = v[c] > o[c];
                    o[c] = gt ? v[c] : o[c];
                    a[c] = gt ? q : a[c];
                }
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++)
                    o[c] = v[c] > o[c] ? v[c] : o[c];
            }
        }
        if (g->kind == POOL_AVG) {
            const float inv = 1.0f / (float)HW;
#pragma omp simd
            for (int c = 0; c < C; c++)
                o[c] *= inv;
        }
    }
}

static void global_backward(graft_layer *l, const graft_bwd *b)
{
    const global_pool *g = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const int HW = g->hw, C = g->c;
    /* cppcheck-suppress invalidPointerCast ; aux is untyped memory: int32 in, int32 out */
    const int32_t *arg = (const int32_t *)b->aux;
    const bool acc = b->din_accumulate[0];
    const float inv = 1.0f / (float)HW;
    const long rows = (long)b->n * HW;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const size_t s = (size_t)(r / HW);
        const int32_t q = (int32_t)(r % HW);
        const float *dy = b->dout + s * C;
        float *d = dx + (size_t)r * C;
        if (g->kind == POOL_AVG) {
            if (acc)
                for (int c = 0; c < C; c++)
                    d[c] += dy[c] * inv;
            else
                for (int c = 0; c < C; c++)
                    d[c] = dy[c] * inv;
        } else {
            const int32_t *a = arg + s * C;
            if (acc)
                for (int c = 0; c < C; c++)
                    d[c] += a[c] == q ? dy[c] : 0.0f;
            else
                for (int c = 0; c < C; c++)
                    d[c] = a[c] == q ? dy[c] : 0.0f;
        }
    }
}

/* Keras 2's GlobalPooling2D.get_config(). */
static graft_status global_config(const graft_layer *l, cJSON *o)
{
    const global_pool *g = l->cfg;
    bool ok = cJSON_AddStringToObject(o, "data_format", "channels_last") &&
              cJSON_AddBoolToObject(o, "keepdims", g->keepdims);
    return graft_config_done(l, ok);
}

static graft_status gap_from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    bool keepdims;
    graft_status s = graft_config_bool(c, cfg, "keepdims", false, &keepdims);
    if (s == GRAFT_OK)
        *out = keepdims ? graft_global_average_pooling2d_keepdims(c->m, c->in[0], c->name)
                        : graft_global_average_pooling2d(c->m, c->in[0], c->name);
    return s;
}

static graft_status gmp_from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    bool keepdims;
    graft_status s = graft_config_bool(c, cfg, "keepdims", false, &keepdims);
    if (s == GRAFT_OK)
        *out = keepdims ? graft_global_max_pooling2d_keepdims(c->m, c->in[0], c->name)
                        : graft_global_max_pooling2d(c->m, c->in[0], c->name);
    return s;
}

const graft_layer_ops graft_global_average_pooling2d_ops = {
    .class_name = "GlobalAveragePooling2D",
    .build = build_global,
    .forward = global_forward,
    .backward = global_backward,
    .get_config = global_config,
    .from_config = gap_from_config,
};



const graft_layer_ops graft_global_max_pooling2d_ops = {
    .class_name = "GlobalMaxPooling2D",
    .build = build_global,
    .forward = global_forward,
    .backward = global_backward,
    .aux_floats = global_aux_floats,
    .get_config = global_config,
    .from_config = gmp_from_config,
};

graft_layer *graft_global_average_pooling2d(graft_model *m, graft_layer *in, const char *name)
{
    global_pool g = {.kind = POOL_AVG};
    return graft_model_add_unary(m, &graft_global_average_pooling2d_ops, name, "global_average_pooling2d", &g, sizeof g, in);
}

graft_layer *graft_global_max_pooling2d(graft_model *m, graft_layer *in, const char *name)
{
    global_pool g = {.kind = POOL_MAX};
    return graft_model_add_unary(m, &graft_global_max_pooling2d_ops, name, "global_max_pooling2d", &g, sizeof g, in);
}

graft_layer *graft_global_average_pooling2d_keepdims(graft_model *m, graft_layer *in,
                                                     const char *name)
{
    global_pool g = {.kind = POOL_AVG, .keepdims = true};
    return graft_model_add_unary(m, &graft_global_average_pooling2d_ops, name,
                                 "global_average_pooling2d", &g, sizeof g, in);
}

graft_layer *graft_global_max_pooling2d_keepdims(graft_model *m, graft_layer *in, const char *name)
{
    global_pool g = {.kind = POOL_MAX, .keepdims = true};
    return graft_model_add_unary(m, &graft_global_max_pooling2d_ops, name, "global_max_pooling2d",
                                 &g, sizeof g, in);
}
