/* tests/test_plan_shortcut.c with oneDNN capped at AVX2, whatever this CPU
 * has: an unfused strided 1x1 Conv2D in inference must give the POINTWISE
 * step's bits, which oneDNN's AVX2 direct convolution (another summation
 * order) did not. oneDNN reads the variable at its first use, which comes
 * after main() starts. */
#include <stdlib.h>

int plan_shortcut_main(void);
#define main plan_shortcut_main
#include "test_plan_shortcut.c"
#undef main

int main(void)
{
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    return plan_shortcut_main();
}
