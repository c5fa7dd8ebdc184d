/* Per-channel affine maps over whole tensors (kernels.h): Rescaling's and
 * Normalization's forward passes. The channel of a float repeats with a
 * period of a few floats (3 for an image's RGB), so the per-channel values
 * are laid out once over a stretch that is a whole number of periods and of
 * vectors, and the tensor is mapped stretch by stretch: one straight loop
 * the compiler vectorises, instead of a loop of a few channels per pixel. */
#include "kernels/kernels.h"

#include <stddef.h>

/* Stretches are at most this many floats (two of them on the stack). */
#define STRETCH_MAX 4096

void graft_affine_periodic(const float *x, float *y, size_t n, const float *a, const float *b,
                           size_t period, bool sub_div)
{
    if (n == 0 || period == 0) return;
    /* 16 periods (whole vectors whatever the period), or else one period,
     * which is then long enough to vectorise on its own. */
    size_t L = period;
    float ra[STRETCH_MAX], rb[STRETCH_MAX];
    const float *pa = a, *pb = b;
    if (period <= STRETCH_MAX / 16) {
        L = 16 * period;
        for (size_t j = 0; j < L; j++) {
            ra[j] = a[j % period];
            rb[j] = b[j % period];
        }
        pa = ra;
        pb = rb;
    }
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t o = 0; o < n; o += L) {
        const size_t k = n - o < L ? n - o : L;
        const float *xs = x + o;
        float *ys = y + o;
        if (sub_div) {
#pragma omp simd
            for (size_t j = 0; j < k; j++) ys[j] = (xs[j] - pa[j]) / pb[j];
        } else {
#pragma omp simd
            for (size_t j = 0; j < k; j++) ys[j] = xs[j] * pa[j] + pb[j];
        }
    }
}
