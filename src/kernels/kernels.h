/* The hot loops, behind one small interface so a backend can be swapped. */
#ifndef GRAFT_KERNELS_H
#define GRAFT_KERNELS_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major (a BLAS call). */
void graft_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Floats of one thread's slot in a scratch a team shares: whole 4 KiB pages
 * and one more, so that no page holds two threads' slots. Slots packed end
 * to end let the prefetcher of the thread writing one slot's end pull in
 * the lines its neighbour is writing (docs/PERFORMANCE.md). */
static inline size_t graft_thread_slot_floats(size_t floats)
{
    return ((floats + 1023) & ~(size_t)1023) + 1024;
}

/* A convolution's geometry, NHWC input, HWIO kernel. */
typedef struct graft_conv_geom {
    int h, w, c;         /* input */
    int kh, kw;          /* kernel */
    int sh, sw;          /* strides */
    int pad_top, pad_left;
    int oh, ow;          /* output */
} graft_conv_geom;

/* The geometry of a convolution over an (H, W, C) input, TensorFlow padding. */
void graft_conv_geom_init(graft_conv_geom *g, const graft_shape *in, const int kernel[2],
                          const int strides[2], graft_padding padding);

/* Rows of the patch matrix for `n` samples: (n*oh*ow) x (kh*kw*c), zeros in the padding. */
void graft_im2col(const graft_conv_geom *g, const float *x, int n, float *col);
/* The adjoint: scatter-adds the patch matrix back into dx (which it does not zero). */
void graft_col2im(const graft_conv_geom *g, const float *col, int n, float *dx);

/* A convolution through oneDNN (conv_onednn.c): NHWC activations, HWIO kernel,
 * `filters` outputs, optionally a bias and a fused ReLU in the forward pass.
 * Each call takes a batch size n and lends `scratch` (scratch_floats floats)
 * as work area. A call returns false when oneDNN can not do it; the caller
 * then computes the result another way, overwriting whatever was written.
 * For a fixed n and thread count the results are the same run to run. */
typedef struct graft_onednn_conv graft_onednn_conv;
graft_onednn_conv *graft_onednn_conv_new(const graft_conv_geom *g, int filters, bool bias,
                                         bool relu); /* NULL: no oneDNN, or GRAFT_NO_ONEDNN=1 */
void graft_onednn_conv_free(graft_onednn_conv *c);
/* Work area the calls for a batch of n use at most (0 also when oneDNN can not do them). */
size_t graft_onednn_conv_scratch_floats(graft_onednn_conv *c, int n);
bool graft_onednn_conv_forward(graft_onednn_conv *c, int n, const float *x, const float *kernel,
                               const float *bias, float *y, float *scratch, size_t scratch_floats);
/* dx = dL/dx, overwritten. */
bool graft_onednn_conv_backward_data(graft_onednn_conv *c, int n, const float *dy,
                                     const float *kernel, float *dx, float *scratch,
                                     size_t scratch_floats);
/* dkernel (HWIO), overwritten; the bias gradient is the caller's. */
bool graft_onednn_conv_backward_weights(graft_onednn_conv *c, int n, const float *x,
                                        const float *dy, float *dkernel, float *scratch,
                                        size_t scratch_floats);

/* 3x3 stride-1 convolution by Winograd's F(4x4, 3x3) (winograd.c), forward
 * and both gradients: about 2.25-4x fewer multiplications than direct convolution,
 * with a few ulps more rounding. y = epilogue(relu?(conv(x) + bias)), where
 * `epi` (may be NULL) is the step's epilogue. `scratch` holds
 * graft_winograd_scratch_floats floats. Off with GRAFT_NO_WINOGRAD=1. */
#define GRAFT_WINOGRAD_MIN_C 16 /* fewer channels: the GEMMs are too short to pay */
bool graft_winograd_fits(const graft_conv_geom *g, int filters);
/* Whether a call over n images has enough tiles for Winograd to beat direct
 * convolution, which does 4 times the multiplications: with AVX-512, at
 * least 16 tiles a call (VGG16's and ResNet50's 14x14 layers at batch 1;
 * their 7x7 layers, 4 tiles an image, go direct or by patch rows); always
 * at AVX2's width. Inference only: training passes take Winograd whatever
 * the batch, so that cached features equal recomputed ones. */
bool graft_winograd_pays(const graft_conv_geom *g, int n);
/* A geometry of at least 256 channels and filters that graft_winograd_fits
 * refuses only for AVX-512's few tiles an image (ResNet's 7x7 3x3s: 4) or
 * for outputs of 6-8 a tile (ResNet's 5x5 3x3s at 150), which inference
 * calls of several images run by Winograd all the same
 * (graft_winograd_batch_pays: at least 8 tiles a call) unless they run as
 * patch rows (layers/conv2d.c: at most 64 output pixels, faster there).
 * Faster than oneDNN's direct convolution for ResNet50's and InceptionV3's
 * such layers (docs/PERFORMANCE.md); narrower layers were not measured.
 * Training passes keep to graft_winograd_fits. */
bool graft_winograd_fits_batched(const graft_conv_geom *g, int filters);
bool graft_winograd_batch_pays(const graft_conv_geom *g, int n);
/* Whether a rowwise call over n images transforms the kernel block by block
 * as its products need it, keeping nothing (u unused): fewer than 32
 * tiles, where each element of a kept transform would serve few products
 * and be read from memory at every call, and a transform of 16 MiB or more
 * (512 x 512 channels: 38 MB) that would hold that much memory besides;
 * filters a multiple of 32, at least 32 a thread. The same bits as with a
 * kept transform. */
bool graft_winograd_fused(const graft_conv_geom *g, int filters, int n);
/* Tiles a round of a frozen layer's forward pass over n images takes, the
 * threads sharing each round (0: none, the threads take chunks of their own;
 * winograd.c). */
size_t graft_winograd_round_tiles(const graft_conv_geom *g, int filters, int n);
/* backward: room for graft_winograd_backward_data too. */
size_t graft_winograd_scratch_floats(const graft_conv_geom *g, int filters, int n, bool backward);
/* rowwise: each image's outputs independent of the rest of the batch, the
 * thread count and the ISA (a frozen layer: the products by graft_pw_gemm).
 * u (rowwise only; NULL: transformed here, into scratch): the kernel as
 * graft_winograd_transform left it, for a frozen layer to keep between
 * calls (not read where graft_winograd_fused); graft_winograd_u_floats
 * floats. */
size_t graft_winograd_u_floats(const graft_conv_geom *g, int filters);
void graft_winograd_transform(const graft_conv_geom *g, int filters, const float *kernel,
                              float *u);
void graft_winograd_forward(const graft_conv_geom *g, int filters, int n, const float *x,
                            const float *kernel, const float *u, const float *bias, bool relu,
                            const graft_epilogue *epi, float *y, bool rowwise,
                            float *scratch);
/* The same with relu, no epilogue, and a 2x2 stride-2 'valid' max pool of
 * the result taken while each tile is in cache: y gets the n x (oh/2) x
 * (ow/2) x filters pooled outputs, bit for bit those of MaxPooling2D over
 * graft_winograd_forward's output, and code (NULL in inference) one byte per
 * pooled output as graft_conv_pool_forward writes them (0..3: the winning
 * cell in row order; 4: the maximum was not positive, no gradient passes).
 * The convolution's own output is never written. Same scratch. */
void graft_winograd_forward_pool(const graft_conv_geom *g, int filters, int n, const float *x,
                                 const float *kernel, const float *u, const float *bias, float *y,
                                 uint8_t *code, bool rowwise, float *scratch);
/* dkernel = dL/dkernel (HWIO, overwritten) from the input x and dy = dL/dy. */
void graft_winograd_backward_weights(const graft_conv_geom *g, int filters, int n, const float *x,
                                     const float *dy, float *dkernel, float *scratch);
/* dx = dL/dx (overwritten) from dy = dL/dy for the same geometry. */
void graft_winograd_backward_data(const graft_conv_geom *g, int filters, int n, const float *dy,
                                  const float *kernel, float *dx, float *scratch);

/* Conv2D (stride 1, few input channels) + ReLU + MaxPooling2D(2x2, stride 2,
 * 'valid') in one pass (conv_pool.c): the convolution's output is never
 * written. y: n x (oh/2) x (ow/2) x filters pooled outputs. code (NULL in
 * inference): one byte per output, the cell of its window that won (0..3 in
 * row order), or 4 where the maximum was not positive (no gradient passes).
 * `scratch` holds graft_conv_pool_scratch_floats floats, 64-byte aligned. */
#define GRAFT_CONV_POOL_MAX_C 4
#define GRAFT_CONV_POOL_MAX_F 256
#define GRAFT_CONV_POOL_MAX_K (11 * 11 * GRAFT_CONV_POOL_MAX_C)
bool graft_conv_pool_fits(const graft_conv_geom *g, int filters);
/* Whether the AVX-512 loops run (the CPU has them and ONEDNN_MAX_CPU_ISA
 * allows them; filters a multiple of 16), else AVX2. */
bool graft_conv_pool_avx512(void);
size_t graft_conv_pool_scratch_floats(const graft_conv_geom *g, int filters);
void graft_conv_pool_forward(const graft_conv_geom *g, int filters, int n, const float *x,
                             const float *kernel, const float *bias, float *y, uint8_t *code,
                             float *scratch);
/* dkernel (HWIO) and dbias (may be NULL) = their gradients (overwritten),
 * from the input x, dy = dL/d(pooled output) and the forward pass's codes. */
void graft_conv_pool_backward_weights(const graft_conv_geom *g, int filters, int n, const float *x,
                                      const float *dy, const uint8_t *code, float *dkernel,
                                      float *dbias, float *scratch);

/* ------------------------------------------------------------ fused inference steps' kernels */

/* Whether the AVX-512 loops should run: the CPU has them and
 * ONEDNN_MAX_CPU_ISA (ISA=avx2 in the benchmarks) does not cap below them.
 * Callers ask once per pass and hand the answer (`wide`) to the kernels
 * below, which take the AVX2 loops without it. */
bool graft_kernels_avx512(void);

/* What a fused step's kernel applies to each output n before storing it, in
 * the order of the layers it replaces: v += bias[n]; a folded inference
 * BatchNormalization v = (v - mean[n]) * scale[n] + shift[n]; a clamp to
 * [lo, hi]; a residual add v = res[n] + v; a clamp to [res_lo, res_hi].
 * NULL pointers and false flags skip their part (NaN passes the clamps). */
typedef struct graft_kernel_epi {
    const float *bias;
    const float *mean, *scale, *shift;
    bool clamp;
    float lo, hi;
    bool res_clamp;
    float res_lo, res_hi;
} graft_kernel_epi;

/* C[M,N] = epilogue(A[M,K] B[K,N]) on the calling thread (pointwise.c), row
 * strides lda, ldb, ldc; R (may be NULL; row stride ldr) is the residual
 * the epilogue adds. Each output is one FMA chain over k in order, so its
 * bits do not depend on M, on where the row lies, nor on the ISA. */
void graft_pw_gemm(int M, int N, int K, const float *A, size_t lda, const float *B, size_t ldb,
                   float *C, size_t ldc, const graft_kernel_epi *e, const float *R, size_t ldr,
                   bool wide);
/* C[M,N] = A[M,K] B[K,N] over one block of a longer K, B packed as
 * graft_pw_pack packs K rows (panels of 32 columns with `wide` AVX-512, of
 * 16 otherwise) and N a multiple of 32: with `more`, the chains go on from
 * the partial sums in C (as graft_pw_gemm's own blocks of k do), else they
 * start at zero. Called over K's blocks in order, each output has
 * graft_pw_gemm's bits. No epilogue. */
void graft_pw_gemm_part(int M, int N, int K, const float *A, size_t lda, const float *B, float *C,
                        size_t ldc, bool more, bool wide);
/* Columns [c0, c0 + nc) of graft_pw_gemm's C[M,N] (B packed when ldb is 0,
 * c0 then a multiple of the panel width): B's, C's, R's and the epilogue's
 * parameters from column c0 on. Same bits as those columns of the whole. */
void graft_pw_gemm_cols(int M, int c0, int nc, int K, const float *A, size_t lda, const float *B,
                        size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e, const float *R,
                        size_t ldr, bool wide);
/* graft_pw_gemm_cols with B read in place (ldb > 0) once, a panel of
 * columns at a time (B's rows in order for at most GRAFT_PW_FEW_ROWS rows),
 * ahead of its use: for few rows (a small batch), where a packed copy kept
 * between calls costs a second read of B to check it and B's size again,
 * and was no faster (docs/PERFORMANCE.md). AVX-512 or AVX2; the same bits. */
/* Columns [*c0, *c1) of N for thread t of nt: whole panels of 32 (both
 * tiles' widths), as even as they come. */
void graft_pw_share(int N, int t, int nt, int *c0, int *c1);
/* Whether graft_pw_share gives nt threads the same columns each (N a
 * multiple of 32 * nt). Where it does not (MobileNetV2's 96-, 160- and
 * 24-column projections), the fused steps split a small call's rows
 * instead, each thread reading the whole of a kernel with few columns. */
bool graft_pw_share_even(int N, int nt);
/* Rows a call may have for graft_pw_gemm_stream to read B's rows in order. */
#define GRAFT_PW_FEW_ROWS 4
void graft_pw_gemm_stream(int M, int c0, int nc, int K, const float *A, size_t lda, const float *B,
                          size_t ldb, float *C, size_t ldc, const graft_kernel_epi *e,
                          const float *R, size_t ldr);
/* B (K x N, row stride ldb) in the panels graft_pw_gemm reads fastest (the
 * columns in blocks of the tile's width, each block's K rows contiguous,
 * the last one padded with zeros): graft_pw_gemm then takes ldb = 0 and the
 * same `wide`. Same bits as unpacked; packed holds graft_pw_pack_floats. */
size_t graft_pw_pack_floats(int K, int N, bool wide);
/* Whether packing pays for a GEMM of M rows in all: below, the copy costs
 * more than the strided reads of B it saves (a batch of one). */
#define GRAFT_PW_PACK_MIN_ROWS 512
void graft_pw_pack(int K, int N, const float *B, size_t ldb, float *packed, bool wide);
/* The prologue of a pointwise GEMM over pre-activated inputs (DenseNet's
 * BN -> ReLU -> 1x1): out[m][k] = clamp((A[m][k] - mean[k]) * scale[k] +
 * shift[k]) for rows [0, M) of A (row stride lda) into out (row stride K),
 * p's mean/scale/shift and clamp as in graft_kernel_epi (bias and residual
 * parts unused), in the unfused layers' order: their bits. */
void graft_pw_prologue(int M, int K, const float *A, size_t lda, const graft_kernel_epi *p,
                       float *out);

/* One output row of a depthwise convolution (depth multiplier 1) over C
 * channels (depthwise.c), on the calling thread: in[ky] (ky < kh) is the
 * input row tap row ky reads, w pixels of C floats, or NULL where it lies in
 * the padding; kernel kh x kw x C; ow outputs, output ox reading input
 * columns ox * sw - pad_left + kx (those outside [0, w) are padding). The
 * epilogue's residual parts are not used. Each output is one FMA chain over
 * the taps in (ky, kx) order: the same bits on every ISA. Rows in[fresh ..]
 * are asked for from memory first (graft_dw_fresh). */
void graft_dw_row(const float *const *in, int w, int C, int kh, int kw, int sw, int pad_left,
                  int ow, const float *kernel, const graft_kernel_epi *e, float *out, bool wide,
                  int fresh);
/* graft_dw_row's fresh: the first of its input rows that the output row
 * before it in the same image did not read (first: no such row before it,
 * so all are fresh). Those rows it asks for, line by line, before the row
 * starts; the others are in cache from the row before (kh: all are). */
int graft_dw_fresh(int kh, int sh, bool first);

/* Kernel heights graft_dw_forward takes (its rows' pointers live on the stack). */
#define GRAFT_DW_MAX_KH 16

/* A whole depthwise convolution (depth multiplier 1, kernel (kh, kw, C)) of
 * n samples, y = conv(x) + bias (bias may be NULL), by graft_dw_row on all
 * threads: each output's bits depend on neither the batch nor the threads. */
void graft_dw_forward(const graft_conv_geom *g, int n, const float *x, const float *kernel,
                      const float *bias, float *y);
/* The same, each output row then through the activation act and the
 * epilogue epi (may be NULL) while in cache: DepthwiseConv2D's forward
 * without a pre-activation to keep, and the PAD_DW step's. */
void graft_dw_forward_act(const graft_conv_geom *g, int n, const float *x, const float *kernel,
                          const float *bias, graft_activation act, const graft_epilogue *epi,
                          float *y);
/* Its output row oy of one sample (img: that sample's input), on the
 * calling thread; first: as for graft_dw_fresh. */
void graft_dw_forward_row(const graft_conv_geom *g, const float *img, const float *kernel,
                          const float *bias, int oy, float *out, bool wide, bool first);
/* Its gradients for depth multiplier dm (kernel (kh, kw, C, dm)) from dz:
 * the kernel's and bias' written where dkernel / dbias are not NULL, summed
 * in blocks of rows whose order does not depend on the threads; dx written,
 * or added (accumulate), where not NULL. scratch holds
 * graft_dw_backward_scratch_floats when dkernel is not NULL. */
size_t graft_dw_backward_scratch_floats(const graft_conv_geom *g, int dm, int n);
void graft_dw_backward(const graft_conv_geom *g, int dm, int n, const float *x, const float *dz,
                       const float *kernel, float *dkernel, float *dbias, float *dx,
                       bool accumulate, float *scratch);

/* y = (x - a) / b (sub_div) or y = x * a + b over n floats (y may be x),
 * where a float's a and b are a[i % period], b[i % period]: a per-channel
 * affine map over a tensor whose channels repeat every `period` floats.
 * Each float as that one expression alone (no fused multiply-add), so the
 * bits are those of the plain loop; the threads share the floats. */
void graft_affine_periodic(const float *x, float *y, size_t n, const float *a, const float *b,
                           size_t period, bool sub_div);
/* The longest period its callers lay out per-channel values for on the stack. */
#define GRAFT_AFFINE_MAX_PERIOD 4096

#endif
