/* The feature-cache tests with oneDNN capped at AVX2, whatever this CPU has:
 * the reference machine's kernels (graft's fused kernels follow the cap),
 * where dnnl_sgemm rounds a row differently with the other rows of its call.
 * oneDNN reads the variable at its first use, which comes after main()
 * starts. */
#include <stdlib.h>

int feature_cache_main(void);
#define main feature_cache_main
#include "test_feature_cache.c"
#undef main

int main(void)
{
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    return feature_cache_main();
}
