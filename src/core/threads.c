/* One thread count for graft's OpenMP loops and oneDNN (which runs on OpenMP too). */
#include "core/core.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The kernel's figure for the highest-level cache cpu0 sees (sysfs reads
 * CPUID's per-instance leaves): 0 where sysfs has no cache entries, as in
 * some VMs. */
static size_t sysfs_last_cache(void)
{
    size_t best = 0;
    int best_level = 0;
    for (int i = 0; i < 16; i++) {
        char path[96], text[32];
        int level = 0;
        size_t kib = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        const bool ok = fscanf(f, "%d", &level) == 1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if (!(f = fopen(path, "r"))) continue;
        const bool code = fgets(text, sizeof text, f) && strncmp(text, "Instruction", 11) == 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!ok || code || !(f = fopen(path, "r"))) continue;
        if (fscanf(f, "%zuK", &kib) == 1 && level > best_level && kib > 0) {
            best_level = level;
            best = kib << 10;
        }
        fclose(f);
    }
    return best;
}

graft_status graft_last_cache(graft_cache *c)
{
    const char *env = graft_env(GRAFT_ENV_CACHE_MIB);
    if (env) {
        char *end;
        errno = 0;
        const unsigned long mib = strtoul(env, &end, 10);
        if (end == env || *end || errno || env[0] == '-' || mib < 1 || mib > 65536)
            return graft_fail(GRAFT_EINVAL, "GRAFT_CACHE_MIB: '%s' is not a size in MiB (1 to 65536)",
                              env);
        *c = (graft_cache){(size_t)mib << 20, 0, "GRAFT_CACHE_MIB"};
        return GRAFT_OK;
    }
    size_t bytes = sysfs_last_cache();
    const char *from = "sysfs";
    if (!bytes) {
        long l3 = -1, l2 = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
        l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
        l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        bytes = l3 > 0 ? (size_t)l3 : l2 > 0 ? (size_t)l2 : 0;
        from = "sysconf";
    }
    if (!bytes) {
        *c = (graft_cache){GRAFT_CACHE_ASSUMED, 0, "assumed: the system gives none"};
        return GRAFT_OK;
    }
    /* A figure past GRAFT_CACHE_CREDIBLE is a whole socket's, shared by
     * more cores than a process's few threads run on; one VM here reported
     * 508 MiB (CPUID 0x80000006, no sysfs entries) where its reads slow
     * down past 24-32 MiB (docs/PERFORMANCE.md). */
    *c = bytes > GRAFT_CACHE_CREDIBLE ? (graft_cache){GRAFT_CACHE_ASSUMED, bytes, from}
                                      : (graft_cache){bytes, 0, from};
    return GRAFT_OK;
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
