/* One thread count for graft's OpenMP loops and oneDNN (which runs on OpenMP too). */
#include "core/core.h"

#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif
#include <time.h>
#include <unistd.h>

static int n_threads;

void graft_threads_set(int n)
{
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    n_threads = n;
    omp_set_num_threads(n);
}

int graft_threads_get(void) { return n_threads ? n_threads : omp_get_max_threads(); }

int graft_threads(void) { return graft_threads_get(); }

size_t graft_last_cache_bytes(void)
{
    long l3 = -1, l2 = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return l3 > 0 ? (size_t)l3 : l2 > 0 ? (size_t)l2 : (size_t)32 << 20;
}

void graft_flush_denormals(void)
{
    /* Gradients of a model that has (over)fit its data shrink into the
     * denormal range, where x86 arithmetic runs one to two orders of magnitude
     * slower (docs/PERFORMANCE.md: the lesson's CNN). TensorFlow runs its kernels with
     * flush-to-zero and denormals-are-zero; so does graft, on every thread of
     * the OpenMP team (oneDNN's too) and the caller's. The MXCSR is per thread
     * and the team's threads persist, so setting it at each fit is cheap. */
#if defined(__x86_64__) || defined(__i386__)
    const unsigned ftz_daz = 0x8040;
    _mm_setcsr(_mm_getcsr() | ftz_daz);
#pragma omp parallel
    _mm_setcsr(_mm_getcsr() | ftz_daz);
#endif
}

double graft_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
