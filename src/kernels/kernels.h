/* The hot loops, behind one small interface so a backend can be swapped. */
#ifndef GRAFT_KERNELS_H
#define GRAFT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major (a BLAS call). */
void graft_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* A convolution's geometry, NHWC input, HWIO kernel. */
typedef struct {
    int h, w, c;         /* input */
    int kh, kw;          /* kernel */
    int sh, sw;          /* strides */
    int pad_top, pad_left;
    int oh, ow;          /* output */
} graft_conv_geom;

/* Rows of the patch matrix for `n` samples: (n*oh*ow) x (kh*kw*c), zeros in the padding. */
void graft_im2col(const graft_conv_geom *g, const float *x, int n, float *col);
/* The adjoint: scatter-adds the patch matrix back into dx (which it does not zero). */
void graft_col2im(const graft_conv_geom *g, const float *col, int n, float *dx);

#endif
