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
