/* predict: forward passes in inference mode over batches of the caller's array. */
#include "internal.h"

#include <string.h>

#define PREDICT_BATCH 32

graft_status graft_model_predict(graft_model *m, const float *x, int n, float *out)
{
    if (!m || !x || !out || n < 0) return graft_fail(GRAFT_EINVAL, "predict: missing argument");
    if (n == 0) return GRAFT_OK;
    const graft_layer *in = m->n_layers ? m->layers[0] : NULL;
    graft_status s = graft_model_prepare(m, n < PREDICT_BATCH ? n : PREDICT_BATCH, false);
    if (s != GRAFT_OK) return s;
    const graft_layer *o = graft_model_output(m);
    size_t xs = graft_shape_size(&in->out_shape), ys = graft_shape_size(&o->out_shape);
    for (int b0 = 0; b0 < n; b0 += PREDICT_BATCH) {
        int nb = n - b0 < PREDICT_BATCH ? n - b0 : PREDICT_BATCH;
        s = graft_model_forward(m, x + (size_t)b0 * xs, nb, false);
        if (s != GRAFT_OK) return s;
        memcpy(out + (size_t)b0 * ys, o->out, (size_t)nb * ys * sizeof(float));
    }
    return GRAFT_OK;
}
