/*
 * Conv2D + ReLU + MaxPooling2D(2x2, stride 2, 'valid') as one pass, for
 * convolutions over a few input channels: the first layer of most small CNNs,
 * reading the RGB image. Its output is the largest tensor of such a network
 * (the lesson's: 32 x 148 x 148 x 32 floats, 90 MB per batch) and only the
 * pool reads it, so it is never written: the four outputs of each 2x2 window
 * are computed in registers and pooled there. For the backward pass the pool
 * keeps one byte per output naming the cell of its window that won (4 when
 * the maximum was not positive: the ReLU then passes no gradient), and the
 * kernel gradient is summed from the pooled gradient directly, without the
 * 4x larger, mostly zero, gradient of the convolution's output.
 *
 * oneDNN's kernels are built for many input channels; with three, each
 * output vector costs kh*kw*3 broadcast-FMAs however it is arranged, and the
 * direct loop here keeps the FMA units busy without the output's memory
 * traffic. Needs AVX2 and FMA (graft_conv_pool_fits says no without).
 *
 * The pass is four files by what they do: this one says whether a
 * convolution fits, which loops run and how much scratch they need;
 * conv_pool_forward.c computes and pools the outputs; conv_pool_backward.c
 * sums the kernel and bias gradients, and conv_pool_backward_sel.c is its
 * faster path for rows whose inputs are all finite. conv_pool.h holds what
 * they share.
 */
#include "kernels/conv_pool.h"

#include <strings.h>

bool graft_conv_pool_fits(const graft_conv_geom *g, int filters)
{
#ifdef __AVX2__
    return g->c <= GRAFT_CONV_POOL_MAX_C && g->sh == 1 && g->sw == 1 && filters % 8 == 0 &&
           filters <= GRAFT_CONV_POOL_MAX_F && g->oh >= 2 && g->ow >= 2 && g->kh <= 11 &&
           g->kw <= 11;
#else
    (void)g;
    (void)filters;
    return false;
#endif
}

#ifdef __AVX2__

/* The AVX-512 loops: the same as the AVX2 ones on 16-float vectors, for the CPUs that have them (oneDNN
 * uses them there too): twice the work per instruction, and 32 registers,
 * so two windows at a time in forward and up to 12 kernel rows in backward.
 * Chosen at run time; ONEDNN_MAX_CPU_ISA below AVX512 keeps AVX2 here too. */

bool graft_conv_pool_avx512(void)
{
    if (!__builtin_cpu_supports("avx512f")) return false;
    const char *cap = graft_env(GRAFT_ENV_ONEDNN_MAX_CPU_ISA);
    return !cap || !*cap || strncasecmp(cap, "AVX512", 6) == 0 || strcasecmp(cap, "ALL") == 0;
}

size_t graft_conv_pool_scratch_floats(const graft_conv_geom *g, int filters)
{
    return (size_t)graft_threads() * per_thread_floats(g, filters) +
           (size_t)sum_blocks(g, filters) * sums_floats(g, filters);
}

#else /* no AVX2: graft_conv_pool_fits is false and these are never called */

bool graft_conv_pool_avx512(void)
{
    return false;
}

size_t graft_conv_pool_scratch_floats(const graft_conv_geom *g, int filters)
{
    (void)g;
    (void)filters;
    return 0;
}
void graft_conv_pool_forward(const graft_conv_geom *g, int filters, int n, const float *x,
                             const float *kernel, const float *bias, float *y, uint8_t *code,
                             float *scratch)
{
}
void graft_conv_pool_backward_weights(const graft_conv_geom *g, int filters, int n, const float *x,
                                      const float *dy, const uint8_t *code, float *dkernel,
                                      float *dbias, float *scratch)
{
}

#endif
