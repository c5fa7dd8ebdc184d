/* Keras's losses and accuracy. Probabilities are clipped to [eps, 1-eps] with
 * eps = 1e-7 exactly as keras.backend does; the clip has zero gradient outside. */
#include "internal.h"

#include <math.h>

#define EPS 1e-7f

static double sigmoid_ce_logits(float z, float y)
{
    /* max(z,0) - z*y + log(1 + exp(-|z|)): TensorFlow's stable form. */
    return (z > 0 ? z : 0) - (double)z * y + log1p(exp(-fabs((double)z)));
}

static int argmax(const float *v, int dim)
{
    int best = 0;
    for (int j = 1; j < dim; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

/* The loss summed over the n samples; writes dL/d(pred) of the mean over a
 * batch of 1/inv_n samples (n, or a larger batch split over ranks) when
 * dpred is not NULL. */
static double loss_impl(graft_loss_kind kind, int from_logits, const float *pred, const float *y,
                        int n, int dim, double inv_n, float *dpred)
{
    if (n <= 0 || dim <= 0) return NAN;
    double total = 0;
    for (int r = 0; r < n; r++) {
        const float *p = pred + (size_t)r * dim;
        float *d = dpred ? dpred + (size_t)r * dim : NULL;
        switch (kind) {
        case GRAFT_BINARY_CROSSENTROPY: {
            const float *t = y + (size_t)r * dim;
            double sum = 0;
            for (int j = 0; j < dim; j++) {
                if (from_logits) {
                    sum += sigmoid_ce_logits(p[j], t[j]);
                    if (d) {
                        double s = 1.0 / (1.0 + exp(-(double)p[j]));
                        d[j] = (float)((s - t[j]) * inv_n / dim);
                    }
                    continue;
                }
                float c = p[j] < EPS ? EPS : (p[j] > 1 - EPS ? 1 - EPS : p[j]);
                sum -= t[j] * log((double)c + EPS) + (1 - t[j]) * log(1 - (double)c + EPS);
                if (d) {
                    bool inside = p[j] >= EPS && p[j] <= 1 - EPS;
                    double g = -(t[j] / ((double)c + EPS)) + (1 - t[j]) / (1 - (double)c + EPS);
                    d[j] = inside ? (float)(g * inv_n / dim) : 0.0f;
                }
            }
            total += sum / dim;
            break;
        }
        case GRAFT_CATEGORICAL_CROSSENTROPY:
        case GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY: {
            float onehot_label = -1;
            const float *t = NULL;
            if (kind == GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY) onehot_label = y[r];
            else t = y + (size_t)r * dim;
#define TARGET(j) (t ? t[j] : ((float)(j) == onehot_label ? 1.0f : 0.0f))
            if (from_logits) {
                float mx = p[argmax(p, dim)];
                double se = 0, ty = 0, tsum = 0;
                for (int j = 0; j < dim; j++) {
                    se += exp((double)p[j] - mx);
                    ty += TARGET(j) * (double)p[j];
                    tsum += TARGET(j);
                }
                /* cppcheck-suppress invalidFunctionArg ; se >= 1: the arg max adds exp(0) */
                double lse = mx + log(se);
                total += lse * tsum - ty;
                if (d)
                    for (int j = 0; j < dim; j++)
                        d[j] = (float)((exp((double)p[j] - lse) * tsum - TARGET(j)) * inv_n);
            } else if (kind == GRAFT_CATEGORICAL_CROSSENTROPY) {
                /* Keras divides by the row sum first, then clips. */
                double S = 0;
                for (int j = 0; j < dim; j++) S += p[j];
                double l = 0, gq = 0;
                for (int j = 0; j < dim; j++) {
                    double q = p[j] / S, c = q < EPS ? EPS : (q > 1 - EPS ? 1 - EPS : q);
                    l -= TARGET(j) * log(c);
                    if (d) {
                        double g = (q >= EPS && q <= 1 - EPS) ? -TARGET(j) / c : 0;
                        d[j] = (float)g; /* d/dq for now */
                        gq += g * q;
                    }
                }
                total += l;
                if (d)
                    for (int j = 0; j < dim; j++) d[j] = (float)((d[j] - gq) / S * inv_n);
            } else {
                /* Sparse on probabilities: log of the clipped values as logits. */
                double cs = 0;
                int lab = (int)onehot_label;
                if (lab < 0 || lab >= dim || lab != onehot_label) return NAN; /* fit checks labels first */
                for (int j = 0; j < dim; j++) {
                    double c = p[j] < EPS ? EPS : (p[j] > 1 - EPS ? 1 - EPS : p[j]);
                    cs += c;
                }
                double cy = p[lab] < EPS ? EPS : (p[lab] > 1 - EPS ? 1 - EPS : p[lab]);
                total += -log(cy) + log(cs);
                if (d)
                    for (int j = 0; j < dim; j++) {
                        bool inside = p[j] >= EPS && p[j] <= 1 - EPS;
                        double g = 1.0 / cs - (j == lab ? 1.0 / cy : 0.0);
                        d[j] = inside ? (float)(g * inv_n) : 0.0f;
                    }
            }
#undef TARGET
            break;
        }
        }
    }
    return total;
}

double graft_loss_value(graft_loss_kind kind, int from_logits, const float *pred, const float *y,
                        int n, int dim)
{
    const double inv_n = 1.0 / n;
    return loss_impl(kind, from_logits, pred, y, n, dim, inv_n, NULL) * inv_n;
}

double graft_loss_grad(graft_loss_kind kind, int from_logits, const float *pred, const float *y,
                       int n, int dim, float *dpred)
{
    const double inv_n = 1.0 / n;
    return loss_impl(kind, from_logits, pred, y, n, dim, inv_n, dpred) * inv_n;
}

double graft_loss_grad_part(graft_loss_kind kind, int from_logits, const float *pred,
                            const float *y, int n, long n_total, int dim, float *dpred)
{
    if (n == 0) return 0;
    return loss_impl(kind, from_logits, pred, y, n, dim, 1.0 / (double)n_total, dpred);
}

double graft_accuracy_value(graft_loss_kind kind, const float *pred, const float *y, int n, int dim)
{
    double hits = 0;
    for (int r = 0; r < n; r++) {
        const float *p = pred + (size_t)r * dim;
        switch (kind) {
        case GRAFT_BINARY_CROSSENTROPY: {
            /* Keras binary_accuracy: threshold 0.5, mean over the last axis. */
            double h = 0;
            for (int j = 0; j < dim; j++) h += ((p[j] > 0.5f) ? 1.0f : 0.0f) == y[(size_t)r * dim + j];
            hits += h / dim;
            break;
        }
        case GRAFT_CATEGORICAL_CROSSENTROPY:
            hits += argmax(p, dim) == argmax(y + (size_t)r * dim, dim);
            break;
        case GRAFT_SPARSE_CATEGORICAL_CROSSENTROPY: hits += argmax(p, dim) == (int)y[r]; break;
        }
    }
    return n ? hits / n : 0;
}
