/* 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
 * the forward pass, and the input gradient, which is one such convolution too.
 *
 * Each 4x4 block of outputs comes from a 6x6 block of inputs with 36
 * multiplications per input/output channel pair instead of 144: the input
 * block and the kernel are taken into a 6x6 "transformed" space (V = B'dB,
 * U = GgG'), multiplied point by point and summed over input channels there,
 * which for a batch of blocks is 36 independent GEMMs, and taken back
 * (Y = A'MA). Direct convolution on this machine's JIT kernels already runs
 * near the FMA peak, so this is the one way to do markedly less work. The
 * price is rounding: the transforms add a few ulps of error on top of the
 * GEMM's (measured by the tests against the direct path).
 *
 * NHWC suits it: every transform works on whole channel vectors, so the
 * inner loops run over contiguous channels. The blocks ("tiles") are worked
 * in chunks small enough for a core's cache, one chunk per thread at a time:
 * input transform, 36 GEMMs, output transform with the bias, ReLU and the
 * layer's epilogue (a folded BatchNormalization) applied while the outputs
 * are in cache; or, for a ReLU convolution read only by a 2x2 max pool,
 * with that pool taken there instead of writing the output at all
 * (graft_winograd_forward_pool). Which thread takes a chunk does not change
 * its result. */
#include "core/core.h"
#include "kernels.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#define T 6     /* input tile side: m + r - 1 */
#define M_OUT 4 /* output tile side */
#define WINOGRAD_MIN_TILES 8 /* per image, with AVX-512 */
/* per image for a bottleneck's narrow 3x3 (at most WINOGRAD_NARROW
 * filters, from at least twice as many channels), with AVX-512 and AVX2 */
#define WINOGRAD_NARROW_MIN_TILES 25
#define WINOGRAD_NARROW_MIN_TILES_AVX2 16
#define WINOGRAD_NARROW 64
#define WINOGRAD_MIN_CALL_TILES 16 /* per inference call, with AVX-512 */
#define WINOGRAD_BATCHED_MIN_TILES 8 /* per call: graft_winograd_batch_pays */
#define WINOGRAD_BATCHED_MIN_C 256   /* channels and filters: graft_winograd_fits_batched */
#define WINOGRAD_ROUND_MIN_U ((size_t)4 << 20) /* bytes of U: graft_winograd_round_tiles */
#define WINOGRAD_ROUND_BYTES ((size_t)48 << 20) /* V and M of a round, at most */
#define NXI (T * T)
#define CB 16 /* channels transformed at once: two AVX2 vectors */
/* An inference call of fewer tiles than this, whose kernel's transform
 * would be at least WINOGRAD_FUSED_MIN_U bytes, transforms its kernel block
 * by block as the products need it (graft_winograd_fused), keeping nothing. */
#define WINOGRAD_KEEP_TILES 32
#define WINOGRAD_FUSED_MIN_U ((size_t)16 << 20)
#define FUSED_COLS 32     /* filters of such a block */
#define FUSED_CHANNELS 32 /* channels of such a block */
#define FUSED_PAD 16      /* floats past a copied kernel row (copy_kernel_rows) */
#define FUSED_SPREAD ((size_t)1 << 18) /* floats between threads' blocks: 1 MiB */
/* Floats from one xi's part of a block to the next: 192 bytes past a
 * multiple of 4 KiB, so that the 36 parts' rows a transform writes at once
 * do not all fall in the same L1 set. */
#define FUSED_XI (FUSED_COLS * FUSED_CHANNELS + 48)

/* graft_winograd_fits, and with `batched` graft_winograd_fits_batched:
 * without AVX-512's least tiles an image for all but narrow layers, and
 * with outputs down to 6 a tile (Winograd's multiplications two thirds of
 * direct convolution's: a 5x5 map's 4 tiles) rather than 8 (a half). */
static bool fits(const graft_conv_geom *g, int filters, bool batched)
{
    if (g->kh != 3 || g->kw != 3 || g->sh != 1 || g->sw != 1 || g->c < GRAFT_WINOGRAD_MIN_C ||
        filters < GRAFT_WINOGRAD_MIN_C || g->oh <= 0 || g->ow <= 0)
        return false;
    /* The tiles cover the image in whole 4x4 blocks: where less than half of
     * what they compute is output (a 5x5 image takes 2x2 tiles, 39% of
     * them), direct convolution is faster; so it is with AVX-512 where an
     * image has so few tiles that the kernel's transform (4x the kernel) is
     * read for little work (7x7: 4 tiles), but not at AVX2's width, where
     * the direct convolution's 2.25x the multiply-adds cost more
     * (docs/PERFORMANCE.md). A bottleneck's narrow 3x3 (DenseNet's, 128
     * channels to 32) needs more tiles still: its transforms and short GEMMs
     * cost more than the multiply-adds they save below 17x17 with AVX-512
     * (9x9 to 14x14 ran 1.3-2.2x slower than oneDNN's direct convolution,
     * 19x19 about as fast) and below 13x13 with AVX2 (9x9 1.3x slower, 14x14
     * 1.1x faster; docs/PERFORMANCE.md, "December 6"). */
    const size_t th = (size_t)(g->oh + M_OUT - 1) / M_OUT, tw = (size_t)(g->ow + M_OUT - 1) / M_OUT;
    const bool wide = graft_kernels_avx512(), narrow = filters <= WINOGRAD_NARROW && g->c >= 2 * filters;
    const size_t least = narrow ? (wide ? WINOGRAD_NARROW_MIN_TILES : WINOGRAD_NARROW_MIN_TILES_AVX2)
                                : (wide && !batched ? WINOGRAD_MIN_TILES : 0);
    return th * tw >= least && (size_t)g->oh * (size_t)g->ow >= (batched ? 6 : 8) * th * tw;
}

bool graft_winograd_fits(const graft_conv_geom *g, int filters) { return fits(g, filters, false); }

bool graft_winograd_fits_batched(const graft_conv_geom *g, int filters)
{
    return graft_kernels_avx512() && g->c >= WINOGRAD_BATCHED_MIN_C &&
           filters >= WINOGRAD_BATCHED_MIN_C && !fits(g, filters, false) && fits(g, filters, true);
}

/* Tiles per chunk: V and M of a chunk (36 * tiles * (C + F) floats) within a
 * few MiB, but never so few that the GEMMs get short, or that the kernel's
 * transform U (36 * C * F floats, read whole by every chunk) dominates the
 * traffic. Measured on VGG16's layers: 64-128 tiles at 256-512 channels. */
static int chunk_tiles(int c, int filters)
{
    const size_t budget = (size_t)4 << 20; /* bytes */
    size_t per_tile = (size_t)NXI * (size_t)(c + filters) * sizeof(float);
    size_t t = budget / per_tile;
    if (t < 64) t = 64;
    if (t > 256) t = 256;
    /* Rounded down to a multiple of 48, as when it was measured (frozen
     * layers' products then ran in blocks of 48 rows). */
    return (int)(t / 48 * 48);
}

static size_t tiles_of(const graft_conv_geom *g, int n)
{
    return (size_t)n * (size_t)((g->oh + M_OUT - 1) / M_OUT) *
           (size_t)((g->ow + M_OUT - 1) / M_OUT);
}

bool graft_winograd_pays(const graft_conv_geom *g, int n)
{
    return !graft_kernels_avx512() || tiles_of(g, n) >= WINOGRAD_MIN_CALL_TILES;
}

bool graft_winograd_batch_pays(const graft_conv_geom *g, int n)
{
    return tiles_of(g, n) >= WINOGRAD_BATCHED_MIN_TILES;
}

bool graft_winograd_fused(const graft_conv_geom *g, int filters, int n)
{
    return tiles_of(g, n) < WINOGRAD_KEEP_TILES && filters % FUSED_COLS == 0 &&
           filters / FUSED_COLS >= graft_threads() &&
           (size_t)NXI * g->c * filters * sizeof(float) >= WINOGRAD_FUSED_MIN_U;
}

/* A thread's part of a fused call's scratch: its block of U, then its
 * copy of the kernel's rows for its filters (copy_kernel_rows). */
static size_t fused_thread_floats(int filters)
{
    const int nth = graft_threads(), blocks = filters / FUSED_COLS;
    const size_t n = (size_t)NXI * FUSED_XI +
                     (size_t)9 * FUSED_CHANNELS * (FUSED_COLS * ((blocks + nth - 1) / nth) + FUSED_PAD);
    /* At least FUSED_SPREAD from one thread's blocks to the next's: closer,
     * on this machine's two cores, one of them transformed at a third of
     * the other's speed (docs/PERFORMANCE.md). The gap is address space,
     * never touched. */
    return n + FUSED_SPREAD;
}

/* A fused call's scratch: the threads' parts, then V and M of all the
 * call's tiles, then a zero bias. */
static size_t fused_floats(const graft_conv_geom *g, int filters, int n)
{
    return (size_t)graft_threads() * fused_thread_floats(filters) +
           (size_t)NXI * tiles_of(g, n) * (size_t)(g->c + filters) + (size_t)filters;
}

/* Columns of U's rows as stored: packed into panels of up to 32 columns
 * for graft_pw_gemm (the last panel padded with zeros). */
static size_t u_cols(int filters) { return ((size_t)filters + 31) / 32 * 32; }

/* Where a frozen layer's U, 36 * C * F floats, is more than a few MiB (9.4 MB
 * for ResNet's 256 x 256 channels), each thread's chunk reading all of it
 * reads it from memory again and again: 6 times a call for ResNet101's
 * 10x10 layers at a batch of 32, 12 for VGG16's 14x14 x 512 at 224. Such a
 * layer's tiles go in rounds instead, shared by the threads: the round's
 * input transforms, then its 36 GEMMs over all of its tiles, a thread taking
 * whole GEMMs and so reading each part of U once a round, then its output
 * transforms. V and M then go through memory, up to WINOGRAD_ROUND_BYTES a
 * round (docs/PERFORMANCE.md, "December 5, late night"). */
static size_t round_most(const graft_conv_geom *g, int filters)
{
    size_t most = WINOGRAD_ROUND_BYTES / ((size_t)NXI * (size_t)(g->c + filters) * sizeof(float));
    return most < 1 ? 1 : most;
}

/* Tiles a round of a frozen layer's batch of n takes (0: no rounds, each
 * thread takes chunks of its own): all of them where one chunk would leave
 * the other threads idle (a batch of one: ResNet50's 7x7 layers have 4
 * tiles), or, where U is large, as many as the budget takes, as even as
 * they come. */
size_t graft_winograd_round_tiles(const graft_conv_geom *g, int filters, int n)
{
    const size_t tiles = tiles_of(g, n), chunk = (size_t)chunk_tiles(g->c, filters);
    const int nth = graft_threads();
    if (tiles <= chunk) return nth > 1 ? tiles : 0;
    const size_t u_bytes = (size_t)NXI * g->c * u_cols(filters) * sizeof(float);
    if (u_bytes < WINOGRAD_ROUND_MIN_U || tiles <= (size_t)nth * chunk) return 0;
    const size_t most = round_most(g, filters), rounds = (tiles + most - 1) / most;
    return (tiles + rounds - 1) / rounds;
}

/* The most tiles a round takes in a batch of up to n images. */
static size_t round_room(const graft_conv_geom *g, int filters, int n)
{
    const size_t round = graft_winograd_round_tiles(g, filters, n);
    if (!round) return 0;
    size_t room = round_most(g, filters);
    if (room > tiles_of(g, n)) room = tiles_of(g, n);
    return room > round ? room : round; /* a batch of one's round is all of its tiles */
}

static size_t run_scratch_floats(const graft_conv_geom *g, int filters, int n)
{
    size_t tiles = tiles_of(g, n), chunk = (size_t)chunk_tiles(g->c, filters);
    if (chunk > tiles) chunk = tiles;
    size_t u = (size_t)NXI * g->c * u_cols(filters);
    size_t work = (size_t)graft_threads() * (size_t)NXI * chunk * (size_t)(g->c + filters);
    size_t shared = (size_t)NXI * round_room(g, filters, n) * (size_t)(g->c + filters);
    size_t most = u + (shared > work ? shared : work) + (size_t)filters; /* + a zero bias */
    /* a call of fewer images may be a fused one: at most this many */
    const size_t per_image = tiles_of(g, 1);
    const int few = per_image ? (int)((WINOGRAD_KEEP_TILES - 1) / per_image) : 0;
    const int most_fused = few < n ? few : n;
    if (most_fused > 0 && graft_winograd_fused(g, filters, most_fused) &&
        fused_floats(g, filters, most_fused) > most)
        most = fused_floats(g, filters, most_fused);
    return most;
}

/* The input gradient of a 3x3 stride-1 convolution is itself one: dy padded
 * by 2 - pad on each side, correlated with the kernel turned by 180 degrees
 * and with its input and output channels swapped. */
static graft_conv_geom backward_geom(const graft_conv_geom *g, int filters)
{
    graft_conv_geom b = *g;
    b.h = g->oh;
    b.w = g->ow;
    b.c = filters;
    b.oh = g->h;
    b.ow = g->w;
    b.pad_top = g->kh - 1 - g->pad_top;
    b.pad_left = g->kw - 1 - g->pad_left;
    return b;
}

/* Per thread: a chunk's V and transformed dy, and its own sum of dU. */
static size_t weights_scratch_floats(const graft_conv_geom *g, int filters, int n)
{
    size_t tiles = tiles_of(g, n), chunk = (size_t)chunk_tiles(g->c, filters);
    if (chunk > tiles) chunk = tiles;
    size_t du = (size_t)NXI * g->c * filters;
    return (size_t)graft_threads() * ((size_t)NXI * chunk * (size_t)(g->c + filters) + du);
}

size_t graft_winograd_scratch_floats(const graft_conv_geom *g, int filters, int n, bool backward)
{
    size_t f = run_scratch_floats(g, filters, n);
    if (backward) {
        graft_conv_geom b = backward_geom(g, filters);
        size_t bd = (size_t)9 * g->c * filters + run_scratch_floats(&b, g->c, n);
        size_t bw = weights_scratch_floats(g, filters, n);
        if (bd > f) f = bd;
        if (bw > f) f = bw;
    }
    return f;
}

/* U[xi][c][f] = G g G' for the 3x3 kernel of every (c, f), HWIO in. pw 0:
 * each U[xi] a C x F matrix; pw 16 or 32: in graft_pw_pack's panels of pw
 * columns (pw_slab(C, F, pw) floats per xi). */
static size_t pw_slab(int C, int F, int pw) { return ((size_t)F + pw - 1) / pw * pw * C; }

static inline size_t u_at(int xi, int c, int f, int C, int F, int pw)
{
    if (!pw) return ((size_t)xi * C + c) * F + f;
    return xi * pw_slab(C, F, pw) + ((size_t)(f / pw) * C + c) * pw + f % pw;
}

/* CB floats as one value of GCC's vector extension: the kernel transform
 * below then stays in registers (as arrays the compiler kept it on the
 * stack, and a block cost twice as much). */
typedef float cb_vec __attribute__((vector_size(CB * sizeof(float))));

/* G x for the three values x0..x2 of a column or row of 3 into o0..o5,
 * the last two rows sharing their three quotients; each row as the
 * transform always computed it, so that U keeps its bits. */
#define G_OF_3(x0, x1, x2, o0, o1, o2, o3, o4, o5)                                                 \
    do {                                                                                           \
        const cb_vec q0_ = (x0) / 24.0f, q1_ = (x1) / 12.0f, q2_ = (x2) / 6.0f;                    \
        o0 = (x0) / 4.0f;                                                                          \
        o1 = -((x0) + (x1) + (x2)) / 6.0f;                                                         \
        o2 = -((x0) - (x1) + (x2)) / 6.0f;                                                         \
        o3 = q0_ + q1_ + q2_;                                                                      \
        o4 = q0_ - q1_ + q2_;                                                                      \
        o5 = (x2);                                                                                 \
    } while (0)

/* One row i of the second pass: G along the row of t, into xi = 6i..6i+5
 * (u + xi * us). */
#define G_ROW(i, x0, x1, x2)                                                                       \
    do {                                                                                           \
        cb_vec o0_, o1_, o2_, o3_, o4_, o5_;                                                       \
        G_OF_3(x0, x1, x2, o0_, o1_, o2_, o3_, o4_, o5_);                                          \
        float *r_ = u + (size_t)(i) * T * us;                                                      \
        memcpy(r_, &o0_, sizeof(cb_vec));                                                          \
        memcpy(r_ + us, &o1_, sizeof(cb_vec));                                                     \
        memcpy(r_ + 2 * us, &o2_, sizeof(cb_vec));                                                 \
        memcpy(r_ + 3 * us, &o3_, sizeof(cb_vec));                                                 \
        memcpy(r_ + 4 * us, &o4_, sizeof(cb_vec));                                                 \
        memcpy(r_ + 5 * us, &o5_, sizeof(cb_vec));                                                 \
    } while (0)

/* G g G' for CB filters: tap k of the 3x3 kernel (row-major) at g + k *
 * tap; the CB values of xi go to u + xi * us. In straight code that keeps
 * the block in registers: where the transform runs at every call
 * (forward_fused), the arrays the compiler kept on the stack, and the
 * pointers to the 36 rows, were most of its cost. */
static inline __attribute__((always_inline)) void kernel_cb(const float *g, size_t tap, float *u,
                                                            size_t us)
{
    cb_vec g0, g1, g2, g3, g4, g5, g6, g7, g8;
    memcpy(&g0, g, sizeof g0);
    memcpy(&g1, g + tap, sizeof g1);
    memcpy(&g2, g + 2 * tap, sizeof g2);
    memcpy(&g3, g + 3 * tap, sizeof g3);
    memcpy(&g4, g + 4 * tap, sizeof g4);
    memcpy(&g5, g + 5 * tap, sizeof g5);
    memcpy(&g6, g + 6 * tap, sizeof g6);
    memcpy(&g7, g + 7 * tap, sizeof g7);
    memcpy(&g8, g + 8 * tap, sizeof g8);
    /* G along the kernel's columns (t[i][kx]), then along the rows. */
    cb_vec t00, t10, t20, t30, t40, t50, t01, t11, t21, t31, t41, t51, t02, t12, t22, t32, t42, t52;
    G_OF_3(g0, g3, g6, t00, t10, t20, t30, t40, t50);
    G_OF_3(g1, g4, g7, t01, t11, t21, t31, t41, t51);
    G_OF_3(g2, g5, g8, t02, t12, t22, t32, t42, t52);
    G_ROW(0, t00, t01, t02);
    G_ROW(1, t10, t11, t12);
    G_ROW(2, t20, t21, t22);
    G_ROW(3, t30, t31, t32);
    G_ROW(4, t40, t41, t42);
    G_ROW(5, t50, t51, t52);
}

/* G g G' for the 3x3 kernels of channel c and the nf <= CB filters from f0
 * (HWIO, C channels of F filters): the nf values of xi go to u + xi * us. */
static inline __attribute__((always_inline)) void kernel_block(const float *kernel, int C, int F,
                                                               int c, int f0, int nf, float *u,
                                                               size_t us)
{
    const size_t tap = (size_t)C * F;
    const float *g = kernel + (size_t)c * F + f0;
    if (nf == CB) {
        kernel_cb(g, tap, u, us);
        return;
    }
    /* the last filters: through a whole block, zeros past nf */
    float in[9][CB] = {{0}}, out[NXI][CB];
    for (int k = 0; k < 9; k++) memcpy(in[k], g + k * tap, (size_t)nf * sizeof(float));
    kernel_cb(in[0], CB, out[0], CB);
    for (int xi = 0; xi < NXI; xi++) memcpy(u + xi * us, out[xi], (size_t)nf * sizeof(float));
}

static void transform_kernel(const float *kernel, int C, int F, float *U, int pw)
{
    if (pw && F % pw) memset(U, 0, NXI * pw_slab(C, F, pw) * sizeof(float));
    const int nfb = (F + CB - 1) / CB;
    const long items = (long)C * nfb;
    /* In the order of U's rows, so that each of the 36 outputs is written
     * as one sequential stream: filter blocks within a channel, or in
     * panels, channels within a panel's block. */
#pragma omp parallel for schedule(static)
    for (long it = 0; it < items; it++) {
        const int c = pw ? (int)(it % C) : (int)(it / nfb);
        const int f0 = CB * (pw ? (int)(it / C) : (int)(it % nfb));
        const int nf = F - f0 < CB ? F - f0 : CB;
        float *u = U + u_at(0, c, f0, C, F, pw);
        const size_t us = u_at(1, c, f0, C, F, pw) - u_at(0, c, f0, C, F, pw);
        kernel_block(kernel, C, F, c, f0, nf, u, us);
    }
}

/* Rows [c0, c0 + cc) of the kernel's 9 taps, columns [f0, f0 + nc), into
 * W as cc x 9 rows of nc, FUSED_PAD floats apart (a row's 9 taps then fall
 * in different L1 sets): a row's columns are read in order, which the
 * prefetchers follow (a block's 32 columns alone, rows F floats apart in 9
 * streams, were read at a fraction of the memory's speed), and the row two
 * channels on is asked for meanwhile. */
static void copy_kernel_rows(const float *kernel, int C, int F, int c0, int cc, int f0, int nc,
                             float *W)
{
    for (int kk = 0; kk < 9; kk++)
        for (int c = c0; c < c0 + cc; c++) {
            const float *src = kernel + ((size_t)kk * C + c) * F + f0;
            if (c + 2 < C)
                for (int j = 0; j < nc; j += 16) __builtin_prefetch(src + 2 * (size_t)F + j);
            memcpy(W + ((size_t)(c - c0) * 9 + kk) * (nc + FUSED_PAD), src,
                   (size_t)nc * sizeof(float));
        }
}

/* The block of U for the cc channels and FUSED_COLS filters from column
 * f0 of copy_kernel_rows' W (nc columns), into U: for each xi (FUSED_XI
 * floats apart) cc rows in panels of pw columns, what graft_pw_gemm_part
 * reads as a packed B of cc rows; transform_kernel's values. */
static void transform_kernel_block(const float *W, int cc, int nc, int f0, int pw, float *U)
{
    const size_t row = (size_t)nc + FUSED_PAD;
    for (int c = 0; c < cc; c++)
        for (int b0 = 0; b0 < FUSED_COLS; b0 += CB)
            kernel_cb(W + (size_t)c * 9 * row + f0 + b0, row,
                      U + ((size_t)(b0 / pw) * cc + c) * pw + b0 % pw, FUSED_XI);
}

typedef struct {
    const graft_conv_geom *g;
    int F, tiles_h, tiles_w;
} tiling;

static void tile_origin(const tiling *tl, size_t tile, int *img, int *y0, int *x0)
{
    int per_img = tl->tiles_h * tl->tiles_w;
    *img = (int)(tile / (size_t)per_img);
    int r = (int)(tile % (size_t)per_img);
    *y0 = (r / tl->tiles_w) * M_OUT;
    *x0 = (r % tl->tiles_w) * M_OUT;
}

/* B' d B for one block of nc channels: src[i][j] points at the input pixel
 * (i, j) of the tile (a zero vector outside the image), dst[xi] at where
 * the transformed value xi goes. Inlined with nc = CB for whole blocks, so
 * that the channel loops become straight vector code. */
static inline __attribute__((always_inline)) void input_block(const float *const src[T][T],
                                                              float *const dst[NXI], int nc)
{
    float t[T][T][CB];
    /* B' along the columns (over i), then B along the rows (over j). */
    for (int j = 0; j < T; j++) {
#pragma omp simd
        for (int q = 0; q < nc; q++) {
            float d0 = src[0][j][q], d1 = src[1][j][q], d2 = src[2][j][q], d3 = src[3][j][q],
                  d4 = src[4][j][q], d5 = src[5][j][q];
            t[0][j][q] = 4 * d0 - 5 * d2 + d4;
            t[1][j][q] = -4 * d1 - 4 * d2 + d3 + d4;
            t[2][j][q] = 4 * d1 - 4 * d2 - d3 + d4;
            t[3][j][q] = -2 * d1 - d2 + 2 * d3 + d4;
            t[4][j][q] = 2 * d1 - d2 - 2 * d3 + d4;
            t[5][j][q] = 4 * d1 - 5 * d3 + d5;
        }
    }
    for (int i = 0; i < T; i++) {
        float *const *v = dst + i * T;
#pragma omp simd
        for (int q = 0; q < nc; q++) {
            float d0 = t[i][0][q], d1 = t[i][1][q], d2 = t[i][2][q], d3 = t[i][3][q],
                  d4 = t[i][4][q], d5 = t[i][5][q];
            v[0][q] = 4 * d0 - 5 * d2 + d4;
            v[1][q] = -4 * d1 - 4 * d2 + d3 + d4;
            v[2][q] = 4 * d1 - 4 * d2 - d3 + d4;
            v[3][q] = -2 * d1 - d2 + 2 * d3 + d4;
            v[4][q] = 2 * d1 - d2 - 2 * d3 + d4;
            v[5][q] = 4 * d1 - 5 * d3 + d5;
        }
    }
}

static const float zeros[CB];

/* V[xi][k][c] = B' d B for the tiles k = k0..k1-1 of a chunk of nk tiles
 * from tile t0. */
static void transform_input(const tiling *tl, const float *x, size_t t0, int k0, int k1, int nk,
                            float *V)
{
    const graft_conv_geom *g = tl->g;
    const int C = g->c;
    for (int k = k0; k < k1; k++) {
        int img, y0, x0;
        tile_origin(tl, t0 + (size_t)k, &img, &y0, &x0);
        const int iy0 = y0 - g->pad_top, ix0 = x0 - g->pad_left;
        const float *base = x + (size_t)img * g->h * g->w * C;
        const float *pix[T][T]; /* NULL: outside the image */
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) {
                int iy = iy0 + i, ix = ix0 + j;
                bool in = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w;
                pix[i][j] = in ? base + ((size_t)iy * g->w + ix) * C : NULL;
            }
        for (int c0 = 0; c0 < C; c0 += CB) {
            const float *src[T][T];
            float *dst[NXI];
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++)
                    src[i][j] = pix[i][j] ? pix[i][j] + c0 : zeros;
            for (int xi = 0; xi < NXI; xi++)
                dst[xi] = V + ((size_t)xi * nk + k) * C + c0;
            if (C - c0 >= CB)
                input_block(src, dst, CB);
            else
                input_block(src, dst, C - c0);
        }
    }
}

typedef struct {
    const float *bias;
    bool relu;
    const graft_epilogue *epi; /* NULL: none */
} finish;

/* A' m A for one block of nf filters, plus the bias: src[xi] points at the
 * GEMM result xi, out[i][j] receives output (i, j) of the tile. Inlined with
 * nf = CB for whole blocks. */
static inline __attribute__((always_inline)) void
output_block(const float *const src[NXI], const float *bias, float out[M_OUT][M_OUT][CB], int nf)
{
    float t[M_OUT][T][CB];
    /* A' along the columns (over i). */
    for (int j = 0; j < T; j++) {
#pragma omp simd
        for (int q = 0; q < nf; q++) {
            float m0 = src[j][q], m1 = src[T + j][q], m2 = src[2 * T + j][q],
                  m3 = src[3 * T + j][q], m4 = src[4 * T + j][q], m5 = src[5 * T + j][q];
            t[0][j][q] = m0 + m1 + m2 + m3 + m4;
            t[1][j][q] = m1 - m2 + 2 * m3 - 2 * m4;
            t[2][j][q] = m1 + m2 + 4 * m3 + 4 * m4;
            t[3][j][q] = m1 - m2 + 8 * m3 - 8 * m4 + m5;
        }
    }
    /* A along the rows (over j), and the bias. */
    for (int i = 0; i < M_OUT; i++) {
#pragma omp simd
        for (int q = 0; q < nf; q++) {
            float m0 = t[i][0][q], m1 = t[i][1][q], m2 = t[i][2][q], m3 = t[i][3][q],
                  m4 = t[i][4][q], m5 = t[i][5][q];
            float b = bias[q];
            out[i][0][q] = m0 + m1 + m2 + m3 + m4 + b;
            out[i][1][q] = m1 - m2 + 2 * m3 - 2 * m4 + b;
            out[i][2][q] = m1 + m2 + 4 * m3 + 4 * m4 + b;
            out[i][3][q] = m1 - m2 + 8 * m3 - 8 * m4 + m5 + b;
        }
    }
}

/* y = A' M A for the tiles k0..k1-1 of the chunk, then bias, ReLU and the
 * epilogue on the outputs inside the image. */
static void transform_output(const tiling *tl, const float *Mx, size_t t0, int k0, int k1, int nk,
                             const finish *fin, float *y)
{
    const graft_conv_geom *g = tl->g;
    const int F = tl->F;
    for (int k = k0; k < k1; k++) {
        int img, y0, x0;
        tile_origin(tl, t0 + (size_t)k, &img, &y0, &x0);
        const int rows = g->oh - y0 < M_OUT ? g->oh - y0 : M_OUT;
        const int cols = g->ow - x0 < M_OUT ? g->ow - x0 : M_OUT;
        float *out = y + (size_t)img * g->oh * g->ow * F;
        for (int f0 = 0; f0 < F; f0 += CB) {
            const int nf = F - f0 < CB ? F - f0 : CB;
            const float *src[NXI];
            for (int xi = 0; xi < NXI; xi++)
                src[xi] = Mx + ((size_t)xi * nk + k) * F + f0;
            float o[M_OUT][M_OUT][CB];
            if (nf == CB)
                output_block(src, fin->bias + f0, o, CB);
            else
                output_block(src, fin->bias + f0, o, nf);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) {
                    float *dst = out + ((size_t)(y0 + i) * g->ow + x0 + j) * F + f0;
                    if (fin->relu) {
#pragma omp simd
                        for (int q = 0; q < nf; q++)
                            dst[q] = o[i][j][q] < 0 ? 0.0f : o[i][j][q]; /* NaN stays */
                    } else {
#pragma omp simd
                        for (int q = 0; q < nf; q++)
                            dst[q] = o[i][j][q];
                    }
                }
        }
        /* The epilogue runs per output row of the tile while it is in cache. */
        if (fin->epi)
            for (int i = 0; i < rows; i++)
                graft_epilogue_rows(fin->epi, out + ((size_t)(y0 + i) * g->ow + x0) * F,
                                    (size_t)cols, F);
    }
}

/* ReLU (NaN stays) and the maximum of one 2x2 window of a tile, nf
 * channels: max_window_2x2's comparisons in its order (layers/pooling.c:
 * the first maximum in window order wins, a NaN never replaces), so the
 * pooled values are those of the two layers run apart; the code as
 * kernels/conv_pool.c writes it. Inlined with nf = CB for whole blocks. */
static inline __attribute__((always_inline)) void pool_window(const float *v0, const float *v1,
                                                              const float *v2, const float *v3,
                                                              float *dst, uint8_t *code, int nf)
{
    float kf[CB]; /* the codes as floats: one type keeps the loop in vector registers */
#pragma omp simd
    for (int q = 0; q < nf; q++) {
        float a = v0[q] < 0 ? 0.0f : v0[q], b = v1[q] < 0 ? 0.0f : v1[q];
        float c = v2[q] < 0 ? 0.0f : v2[q], d = v3[q] < 0 ? 0.0f : v3[q];
        float m = a, k = 0.0f;
        k = b > m ? 1.0f : k;
        m = b > m ? b : m;
        k = c > m ? 2.0f : k;
        m = c > m ? c : m;
        k = d > m ? 3.0f : k;
        m = d > m ? d : m;
        dst[q] = m;
        kf[q] = m > 0 ? k : 4.0f; /* not positive, or NaN: the ReLU passes nothing */
    }
    if (code)
#pragma omp simd
        for (int q = 0; q < nf; q++)
            code[q] = (uint8_t)(int)kf[q];
}

/* y = A' M A for the chunk's tiles with the bias, then ReLU and the 2x2
 * max pool of the windows inside the output, into the pool's output and
 * codes. A tile starts at even coordinates, so its windows are whole
 * windows of the pool; a partial tile at the edge holds an odd last row or
 * column only where the output size is odd, which 'valid' drops. */
static void transform_output_pool(const tiling *tl, const float *Mx, size_t t0, int k0, int k1,
                                  int nk, const float *bias, float *y, uint8_t *code)
{
    const graft_conv_geom *g = tl->g;
    const int F = tl->F, PH = g->oh / 2, PW = g->ow / 2;
    for (int k = k0; k < k1; k++) {
        int img, y0, x0;
        tile_origin(tl, t0 + (size_t)k, &img, &y0, &x0);
        const int wy = (g->oh - y0 < M_OUT ? g->oh - y0 : M_OUT) / 2; /* windows down */
        const int wx = (g->ow - x0 < M_OUT ? g->ow - x0 : M_OUT) / 2; /* and across */
        if (wy == 0 || wx == 0) continue;
        for (int f0 = 0; f0 < F; f0 += CB) {
            const int nf = F - f0 < CB ? F - f0 : CB;
            const float *src[NXI];
            for (int xi = 0; xi < NXI; xi++)
                src[xi] = Mx + ((size_t)xi * nk + k) * F + f0;
            float o[M_OUT][M_OUT][CB];
            if (nf == CB)
                output_block(src, bias + f0, o, CB);
            else
                output_block(src, bias + f0, o, nf);
            for (int a = 0; a < wy; a++)
                for (int b = 0; b < wx; b++) {
                    size_t off = (((size_t)img * PH + y0 / 2 + a) * PW + x0 / 2 + b) * F + f0;
                    const float *v0 = o[2 * a][2 * b], *v1 = o[2 * a][2 * b + 1];
                    const float *v2 = o[2 * a + 1][2 * b], *v3 = o[2 * a + 1][2 * b + 1];
                    uint8_t *c = code ? code + off : NULL;
                    if (nf == CB)
                        pool_window(v0, v1, v2, v3, y + off, c, CB);
                    else
                        pool_window(v0, v1, v2, v3, y + off, c, nf);
                }
        }
    }
}

/* Without a bias, F zeros at zb stand in for one: the output loops stay
 * branch-free. */
static void bias_or_zero(finish *fin, float *zb, int F)
{
    if (fin->bias) return;
    memset(zb, 0, (size_t)F * sizeof(float));
    fin->bias = zb;
}

/* A fused call (graft_winograd_fused): all of its tiles' input transforms;
 * then, each thread taking whole blocks of FUSED_COLS filters, the kernel's
 * transform for FUSED_CHANNELS channels of the block at a time, into a
 * block of U that stays in L2, and the 36 products' partial sums over those
 * channels (graft_pw_gemm_part: the chains go on from one block of
 * channels to the next, so each output has the kept transform's bits);
 * then the output transforms. The kernel is read once, and nothing of
 * four times its size is stored: at a batch of one, a kept U (VGG16's 14x14
 * layers: 38 MB each) was read from memory at every call, and held the
 * memory besides (docs/PERFORMANCE.md). */
static void forward_fused(const tiling *tl, int n, const float *x, const float *kernel,
                          const finish *fin_in, float *y, bool pooled, uint8_t *code,
                          float *scratch)
{
    const graft_conv_geom *g = tl->g;
    const int C = g->c, F = tl->F, nth = graft_threads(), nk = (int)tiles_of(g, n);
    const bool wide = graft_kernels_avx512();
    const int pw = wide ? 32 : 16, blocks = F / FUSED_COLS;
    const size_t per = fused_thread_floats(F);
    float *V = scratch + (size_t)nth * per, *Mx = V + (size_t)NXI * nk * C;
    finish fin = *fin_in;
    bias_or_zero(&fin, Mx + (size_t)NXI * nk * F, F);
#pragma omp parallel num_threads(nth)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *U = scratch + (size_t)t * per, *W = U + (size_t)NXI * FUSED_XI;
#pragma omp for schedule(static)
        for (int k = 0; k < nk; k++)
            transform_input(tl, x, 0, k, k + 1, nk, V);
        /* this thread's blocks of filters, whole */
        const int b0 = (int)((long)blocks * t / nt), b1 = (int)((long)blocks * (t + 1) / nt);
        const int f0 = b0 * FUSED_COLS, nc = (b1 - b0) * FUSED_COLS;
        for (int c0 = 0; c0 < C && nc > 0; c0 += FUSED_CHANNELS) {
            const int cc = C - c0 < FUSED_CHANNELS ? C - c0 : FUSED_CHANNELS;
            copy_kernel_rows(kernel, C, F, c0, cc, f0, nc, W);
            for (int j = 0; j < nc; j += FUSED_COLS) {
                transform_kernel_block(W, cc, nc, j, pw, U);
                for (int xi = 0; xi < NXI; xi++)
                    graft_pw_gemm_part(nk, FUSED_COLS, cc, V + (size_t)xi * nk * C + c0, (size_t)C,
                                       U + (size_t)xi * FUSED_XI,
                                       Mx + (size_t)xi * nk * F + f0 + j, (size_t)F, c0 > 0, wide);
            }
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int k = 0; k < nk; k++) {
            if (pooled)
                transform_output_pool(tl, Mx, 0, k, k + 1, nk, fin.bias, y, code);
            else
                transform_output(tl, Mx, 0, k, k + 1, nk, &fin, y);
        }
    }
}

/* The forward pass; with `pooled`, the output transform pools (y and code
 * are the pool's) instead of writing the convolution's output.
 *
 * rowwise (a frozen layer): the transform-domain products go through
 * graft_pw_gemm, whose every output is one FMA chain over the channels, so
 * a tile's bits depend neither on the chunk it lies in, nor on the batch,
 * the thread count or the ISA; U is stored in its panels. That frees the
 * chunks to be cut evenly among the threads, and where there are fewer
 * chunks than threads (batch 1: ResNet50's 7x7 layers have 4 tiles) the
 * one chunk runs as a round (graft_winograd_round_tiles), in three phases,
 * the 36 products shared among the threads instead of one thread doing them
 * all; so do the tiles of a layer whose U is large. A call of few tiles
 * transforms the kernel as it goes instead (forward_fused), u unused.
 * Otherwise (training) dnnl_sgemm. */
static void forward_run(const graft_conv_geom *g, int F, int n, const float *x, const float *kernel,
                        const float *u, const float *bias, bool relu, const graft_epilogue *epi,
                        float *y, bool pooled, uint8_t *code, bool rowwise, float *scratch)
{
    const int C = g->c, nth = graft_threads();
    tiling tl = {g, F, (g->oh + M_OUT - 1) / M_OUT, (g->ow + M_OUT - 1) / M_OUT};
    finish fin = {bias, relu, NULL};
    if (graft_epilogue_active(epi) && F <= GRAFT_EPILOGUE_MAX_C) fin.epi = epi;
    if (rowwise && graft_winograd_fused(g, F, n)) {
        forward_fused(&tl, n, x, kernel, &fin, y, pooled, code, scratch);
        return;
    }
    const size_t tiles = tiles_of(g, n);
    size_t chunk = (size_t)chunk_tiles(C, F);
    if (chunk > tiles) chunk = tiles;
    long n_chunks = (long)((tiles + chunk - 1) / chunk);
    const bool wide = graft_kernels_avx512();
    const int pw = rowwise ? (wide ? 32 : 16) : 0;
    const size_t slab = pw ? pw_slab(C, F, pw) : (size_t)C * F;
    if (rowwise && n_chunks >= nth) { /* whole rounds of even chunks */
        n_chunks = (n_chunks + nth - 1) / nth * nth;
        chunk = (tiles + (size_t)n_chunks - 1) / (size_t)n_chunks;
        n_chunks = (long)((tiles + chunk - 1) / chunk);
    }
    const size_t round = rowwise ? graft_winograd_round_tiles(g, F, n) : 0;
    const float *U = u;
    float *work = scratch + (size_t)NXI * C * u_cols(F);
    const size_t per_thread = (size_t)NXI * chunk * (size_t)(C + F);
    const size_t shared = (size_t)NXI * round * (size_t)(C + F);
    if (!u || !rowwise) {
        transform_kernel(kernel, C, F, scratch, pw);
        U = scratch;
    }

    bias_or_zero(&fin, work + (shared > nth * per_thread ? shared : nth * per_thread), F);
    if (round) {
        float *V = work;
        for (size_t t0 = 0; t0 < tiles; t0 += round) {
            const int nk = (int)(tiles - t0 < round ? tiles - t0 : round);
            float *Mx = V + (size_t)NXI * nk * C;
#pragma omp parallel num_threads(nth)
            {
#pragma omp for schedule(static)
                for (int k = 0; k < nk; k++)
                    transform_input(&tl, x, t0, k, k + 1, nk, V);
#pragma omp for schedule(static)
                for (int xi = 0; xi < NXI; xi++)
                    graft_pw_gemm(nk, F, C, V + (size_t)xi * nk * C, (size_t)C, U + xi * slab, 0,
                                  Mx + (size_t)xi * nk * F, (size_t)F, NULL, NULL, 0, wide);
#pragma omp for schedule(static)
                for (int k = 0; k < nk; k++) {
                    if (pooled)
                        transform_output_pool(&tl, Mx, t0, k, k + 1, nk, fin.bias, y, code);
                    else
                        transform_output(&tl, Mx, t0, k, k + 1, nk, &fin, y);
                }
            }
        }
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        float *V = work + (size_t)omp_get_thread_num() * per_thread;
        float *Mx = V + (size_t)NXI * chunk * C;
#pragma omp for schedule(dynamic, 1)
        for (long ci = 0; ci < n_chunks; ci++) {
            size_t t0 = (size_t)ci * chunk;
            int nk = (int)(tiles - t0 < chunk ? tiles - t0 : chunk);
            transform_input(&tl, x, t0, 0, nk, nk, V);
            /* Both GEMMs run on this thread alone inside a parallel region. */
            for (int xi = 0; xi < NXI; xi++) {
                const float *v = V + (size_t)xi * nk * C, *ux = U + xi * slab;
                float *mx = Mx + (size_t)xi * nk * F;
                if (rowwise)
                    graft_pw_gemm(nk, F, C, v, (size_t)C, ux, 0, mx, (size_t)F, NULL, NULL, 0, wide);
                else
                    graft_gemm(false, false, nk, F, C, 1.0f, v, C, ux, F, 0.0f, mx, F);
            }
            if (pooled)
                transform_output_pool(&tl, Mx, t0, 0, nk, nk, fin.bias, y, code);
            else
                transform_output(&tl, Mx, t0, 0, nk, nk, &fin, y);
        }
    }
}

size_t graft_winograd_u_floats(const graft_conv_geom *g, int filters)
{
    return (size_t)NXI * g->c * u_cols(filters);
}

void graft_winograd_transform(const graft_conv_geom *g, int filters, const float *kernel, float *u)
{
    transform_kernel(kernel, g->c, filters, u, graft_kernels_avx512() ? 32 : 16);
}

void graft_winograd_forward(const graft_conv_geom *g, int F, int n, const float *x,
                            const float *kernel, const float *u, const float *bias, bool relu,
                            const graft_epilogue *epi, float *y, bool rowwise, float *scratch)
{
    forward_run(g, F, n, x, kernel, u, bias, relu, epi, y, false, NULL, rowwise, scratch);
}

void graft_winograd_forward_pool(const graft_conv_geom *g, int F, int n, const float *x,
                                 const float *kernel, const float *u, const float *bias, float *y,
                                 uint8_t *code, bool rowwise, float *scratch)
{
    forward_run(g, F, n, x, kernel, u, bias, true, NULL, y, true, code, rowwise, scratch);
}

void graft_winograd_backward_data(const graft_conv_geom *g, int F, int n, const float *dy,
                                  const float *kernel, float *dx, float *scratch)
{
    const int C = g->c;
    graft_conv_geom b = backward_geom(g, F);
    /* The turned kernel, HWIO with I = F and O = C: W'[ky][kx][f][c] = W[2-ky][2-kx][c][f]. */
    float *turned = scratch;
#pragma omp parallel for collapse(2) schedule(static)
    for (int k = 0; k < 9; k++)
        for (int f = 0; f < F; f++) {
            const float *src = kernel + (size_t)(8 - k) * C * F + f;
            float *dst = turned + ((size_t)k * F + f) * C;
            for (int c = 0; c < C; c++)
                dst[c] = src[(size_t)c * F];
        }
    graft_winograd_forward(&b, C, n, dy, turned, NULL, NULL, false, NULL, dx, false,
                           scratch + (size_t)9 * C * F);
}

/* D[xi][k][f] = A dy A' for the chunk's tiles: the gradient reaching the
 * product in the transformed space (forward: y = A'(U.V)A). Outputs past the
 * image's edge were never produced: their gradient is zero. */
static void transform_dy(const tiling *tl, const float *dy, size_t t0, int nk, float *D)
{
    const graft_conv_geom *g = tl->g;
    const int F = tl->F;
    for (int k = 0; k < nk; k++) {
        int img, y0, x0;
        tile_origin(tl, t0 + (size_t)k, &img, &y0, &x0);
        const float *base = dy + (size_t)img * g->oh * g->ow * F;
        const float *pix[M_OUT][M_OUT];
        for (int i = 0; i < M_OUT; i++)
            for (int j = 0; j < M_OUT; j++) {
                bool in = y0 + i < g->oh && x0 + j < g->ow;
                pix[i][j] = in ? base + ((size_t)(y0 + i) * g->ow + x0 + j) * F : NULL;
            }
        for (int f0 = 0; f0 < F; f0 += CB) {
            const int nf = F - f0 < CB ? F - f0 : CB;
            float t[T][M_OUT][CB];
            /* A along the columns (over i), then A' along the rows (over j). */
            for (int j = 0; j < M_OUT; j++) {
                const float *m[M_OUT];
                for (int i = 0; i < M_OUT; i++)
                    m[i] = pix[i][j] ? pix[i][j] + f0 : zeros;
#pragma omp simd
                for (int q = 0; q < nf; q++) {
                    float m0 = m[0][q], m1 = m[1][q], m2 = m[2][q], m3 = m[3][q];
                    t[0][j][q] = m0;
                    t[1][j][q] = m0 + m1 + m2 + m3;
                    t[2][j][q] = m0 - m1 + m2 - m3;
                    t[3][j][q] = m0 + 2 * m1 + 4 * m2 + 8 * m3;
                    t[4][j][q] = m0 - 2 * m1 + 4 * m2 - 8 * m3;
                    t[5][j][q] = m3;
                }
            }
            for (int i = 0; i < T; i++) {
                float *d[T];
                for (int j = 0; j < T; j++)
                    d[j] = D + ((size_t)(i * T + j) * nk + k) * F + f0;
#pragma omp simd
                for (int q = 0; q < nf; q++) {
                    float m0 = t[i][0][q], m1 = t[i][1][q], m2 = t[i][2][q], m3 = t[i][3][q];
                    d[0][q] = m0;
                    d[1][q] = m0 + m1 + m2 + m3;
                    d[2][q] = m0 - m1 + m2 - m3;
                    d[3][q] = m0 + 2 * m1 + 4 * m2 + 8 * m3;
                    d[4][q] = m0 - 2 * m1 + 4 * m2 - 8 * m3;
                    d[5][q] = m3;
                }
            }
        }
    }
}

/* dW = G' dU G for every (c, f): the gradient of U = G g G' taken back to
 * the 3x3 kernel, HWIO out. */
static void untransform_kernel(const float *dU, int C, int F, float *dkernel)
{
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        for (int f0 = 0; f0 < F; f0 += CB) {
            const int nf = F - f0 < CB ? F - f0 : CB;
            float t[3][T][CB];
            for (int j = 0; j < T; j++) {
                const float *u[T];
                for (int i = 0; i < T; i++)
                    u[i] = dU + ((size_t)(i * T + j) * C + c) * F + f0;
#pragma omp simd
                for (int q = 0; q < nf; q++) {
                    float u0 = u[0][q], u1 = u[1][q], u2 = u[2][q], u3 = u[3][q], u4 = u[4][q],
                          u5 = u[5][q];
                    t[0][j][q] = u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24;
                    t[1][j][q] = (u2 - u1) / 6 + (u3 - u4) / 12;
                    t[2][j][q] = -(u1 + u2) / 6 + (u3 + u4) / 6 + u5;
                }
            }
            for (int ky = 0; ky < 3; ky++) {
                float *w[3];
                for (int kx = 0; kx < 3; kx++)
                    w[kx] = dkernel + ((size_t)(ky * 3 + kx) * C + c) * F + f0;
#pragma omp simd
                for (int q = 0; q < nf; q++) {
                    float u0 = t[ky][0][q], u1 = t[ky][1][q], u2 = t[ky][2][q], u3 = t[ky][3][q],
                          u4 = t[ky][4][q], u5 = t[ky][5][q];
                    w[0][q] = u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24;
                    w[1][q] = (u2 - u1) / 6 + (u3 - u4) / 12;
                    w[2][q] = -(u1 + u2) / 6 + (u3 + u4) / 6 + u5;
                }
            }
        }
    }
}

void graft_winograd_backward_weights(const graft_conv_geom *g, int F, int n, const float *x,
                                     const float *dy, float *dkernel, float *scratch)
{
    const int C = g->c;
    tiling tl = {g, F, (g->oh + M_OUT - 1) / M_OUT, (g->ow + M_OUT - 1) / M_OUT};
    const size_t tiles = tiles_of(g, n);
    size_t chunk = (size_t)chunk_tiles(C, F);
    if (chunk > tiles) chunk = tiles;
    const size_t du = (size_t)NXI * C * F;
    const size_t per_thread = (size_t)NXI * chunk * (size_t)(C + F) + du;
    const long n_chunks = (long)((tiles + chunk - 1) / chunk);
    int nth = graft_threads();
    /* Read by num_threads below, a clause the analyzer does not look into. */
    // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores)
    if (nth > n_chunks) nth = (int)n_chunks;
        /* Thread t sums chunks t, t + nth, ... into its own dU, and the sums add
         * up in thread order: the bits depend on the thread count only. */
#pragma omp parallel num_threads(nth)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        float *dU = scratch + (size_t)t * per_thread;
        float *V = dU + du, *D = V + (size_t)NXI * chunk * C;
        bool first = true;
        for (long ci = t; ci < n_chunks; ci += used) {
            size_t t0 = (size_t)ci * chunk;
            int nk = (int)(tiles - t0 < chunk ? tiles - t0 : chunk);
            transform_input(&tl, x, t0, 0, nk, nk, V);
            transform_dy(&tl, dy, t0, nk, D);
            for (int xi = 0; xi < NXI; xi++)
                graft_gemm(true, false, C, F, nk, 1.0f, V + (size_t)xi * nk * C, C,
                           D + (size_t)xi * nk * F, F, first ? 0.0f : 1.0f, dU + (size_t)xi * C * F,
                           F);
            first = false;
        }
        if (first) memset(dU, 0, du * sizeof(float));
#pragma omp barrier
        /* Each thread adds the others' sums into thread 0's for its share. */
        size_t lo = du * (size_t)t / (size_t)used, hi = du * (size_t)(t + 1) / (size_t)used;
        for (int o = 1; o < used; o++) {
            const float *src = scratch + (size_t)o * per_thread;
#pragma omp simd
            for (size_t e = lo; e < hi; e++)
                scratch[e] += src[e];
        }
    }
    untransform_kernel(scratch, C, F, dkernel);
}
