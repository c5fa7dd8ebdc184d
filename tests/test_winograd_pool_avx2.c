/* tests/test_winograd_pool.c with oneDNN capped at AVX2, whatever this CPU
 * has: a Winograd convolution's training forward (dnnl_sgemm) and predict
 * (graft_pw_gemm) sum in orders that differ there, which AVX-512's kernels
 * had hidden. oneDNN reads the variable at its first use, which comes after
 * main() starts. */
#include <stdlib.h>

int winograd_pool_main(void);
#define main winograd_pool_main
#include "test_winograd_pool.c"
#undef main

int main(void)
{
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    return winograd_pool_main();
}
