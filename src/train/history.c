/* Keras's History: per-epoch metrics that grow across continued fits. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

void graft_history_init(graft_history *h) { memset(h, 0, sizeof *h); }

void graft_history_free(graft_history *h)
{
    free(h->epoch);
    free(h->loss);
    free(h->accuracy);
    free(h->val_loss);
    free(h->val_accuracy);
    free(h->lr);
    free(h->seconds);
    graft_history_init(h);
}

static bool grow(double **p, int cap)
{
    double *g = realloc(*p, (size_t)cap * sizeof(double));
    if (!g) return false;
    *p = g;
    return true;
}

graft_status graft_history_append(graft_history *h, int epoch, double loss, double acc,
                                  double val_loss, double val_acc, double lr, double seconds)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        int *e = realloc(h->epoch, (size_t)cap * sizeof(int));
        if (!e) return graft_fail(GRAFT_ENOMEM, "out of memory growing the history");
        h->epoch = e;
        if (!grow(&h->loss, cap) || !grow(&h->accuracy, cap) || !grow(&h->val_loss, cap) ||
            !grow(&h->val_accuracy, cap) || !grow(&h->lr, cap) || !grow(&h->seconds, cap))
            return graft_fail(GRAFT_ENOMEM, "out of memory growing the history");
        h->cap = cap;
    }
    int i = h->n++;
    h->epoch[i] = epoch;
    h->loss[i] = loss;
    h->accuracy[i] = acc;
    h->val_loss[i] = val_loss;
    h->val_accuracy[i] = val_acc;
    h->lr[i] = lr;
    h->seconds[i] = seconds;
    return GRAFT_OK;
}
