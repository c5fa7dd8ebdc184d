/* One thread count for graft's OpenMP loops and oneDNN (which runs on OpenMP too). */
#include "internal.h"

#include <omp.h>
#include <unistd.h>

static int n_threads;

void graft_set_num_threads(int n)
{
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    n_threads = n;
    omp_set_num_threads(n);
}

int graft_get_num_threads(void) { return n_threads ? n_threads : omp_get_max_threads(); }

int graft_threads(void) { return graft_get_num_threads(); }
