/* GEMM through oneDNN's dnnl_sgemm. Not OpenBLAS: Debian's OpenBLAS 0.3.21
 * picks its SSE3 "Prescott" kernels on CPUs it does not recognise by model
 * number (virtual Xeons among them), while oneDNN chooses its JIT kernels from
 * the CPUID feature bits (docs/PERFORMANCE.md). */
#include "kernels.h"

#include "core/core.h"

#include <dnnl.h>
#include <stdlib.h>
#include <string.h>

void graft_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    /* dnnl_sgemm is row-major; it only fails on invalid arguments, which callers rule out. */
    (void)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta,
                     C, ldc);
}

/*
 * dnnl_sgemm's AVX2 kernels round a row of C differently depending on M and
 * on how M is split among threads: M = 2, 3, 7, 8, 9, 13, ... give other bits
 * for the same rows than M = 300 (measured with oneDNN 2.6; its AVX-512
 * kernels do not). A frozen layer's outputs are cached per sample (the
 * feature cache) and must equal the recomputed ones, whatever batch a sample
 * comes in. Calls of a fixed M, a multiple of GRAFT_GEMM_ROWS, on one thread
 * compute every row alike wherever it lies in the block (tested at K from 6
 * to 82944), so the rows go in such blocks, the last one padded with zeros.
 */
void graft_gemm_rows_here(int M, int block, int N, int K, const float *A, int lda, const float *B,
                          int ldb, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    const int R = block;
    int full = M / R, tail = M - full * R;
    for (int b = 0; b < full; b++)
        (void)dnnl_sgemm('N', 'N', R, N, K, 1.0f, A + (size_t)b * R * lda, lda, B, ldb, 0.0f,
                         C + (size_t)b * R * ldc, ldc);
    if (tail <= 0) return;
    const float *At = A + (size_t)full * R * lda;
    float *Ct = C + (size_t)full * R * ldc;
    float *pa = calloc((size_t)R * (size_t)K + (size_t)R * (size_t)N, sizeof(float));
    if (!pa) { /* no room to pad: the right product, possibly other last bits */
        (void)dnnl_sgemm('N', 'N', tail, N, K, 1.0f, At, lda, B, ldb, 0.0f, Ct, ldc);
        return;
    }
    float *pc = pa + (size_t)R * K;
    for (int r = 0; r < tail; r++)
        memcpy(pa + (size_t)r * K, At + (size_t)r * lda, (size_t)K * sizeof(float));
    (void)dnnl_sgemm('N', 'N', R, N, K, 1.0f, pa, K, B, ldb, 0.0f, pc, N);
    for (int r = 0; r < tail; r++)
        memcpy(Ct + (size_t)r * ldc, pc + (size_t)r * N, (size_t)N * sizeof(float));
    free(pa);
}

void graft_gemm_rows(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                     float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    const int R = GRAFT_GEMM_ROWS;
    const long blocks = (M + R - 1) / R;
    /* Inside a parallel region each dnnl_sgemm runs on its thread alone. */
#pragma omp parallel for schedule(static) num_threads(graft_threads())
    for (long b = 0; b < blocks; b++) {
        int m = M - (int)b * R < R ? M - (int)b * R : R;
        graft_gemm_rows_here(m, R, N, K, A + (size_t)b * R * lda, lda, B, ldb,
                             C + (size_t)b * R * ldc, ldc);
    }
}
