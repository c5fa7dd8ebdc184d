/* The fused-step tests with oneDNN capped at AVX2, whatever this CPU has: an
 * unfused 1x1 Conv2D in inference must give the fused steps' bits, which
 * dnnl_sgemm's AVX2 kernels (another summation order) did not. oneDNN reads
 * the variable at its first use, which comes after main() starts. */
#include <stdlib.h>

int plan_inference_main(void);
#define main plan_inference_main
#include "test_plan_inference.c"
#undef main

int main(void)
{
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    return plan_inference_main();
}
