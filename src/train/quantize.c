/* graft_model_quantize_int8 and its companions (include/graft/model.h): the
 * model holds the int8 run, and the float plan keeps a boundary where the
 * run ends, so that the plan's steps start there (exec/passes.c). */
#include "exec/exec.h"
#include "quant/int8.h"

graft_status graft_model_quantize_int8(graft_model *m, const float *images, int n)
{
    if (!m || !images || n < 1)
        return graft_fail(GRAFT_EINVAL, "graft_model_quantize_int8: no model or no images");
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' is invalid: %s", m->name, m->error);
    graft_model_drop_int8(m);
    graft_int8 *q;
    graft_status st = graft_int8_new(m, images, n, &q);
    if (st != GRAFT_OK) return st;
    int b = graft_int8_boundary(q);
    if (b < m->n_layers && !graft_plan_keep_split(m, b)) {
        graft_int8_free(q);
        return graft_fail(GRAFT_ESTATE,
                          "int8: model '%s' keeps too many boundaries already to end the 8-bit "
                          "run at layer '%s'",
                          m->name, m->layers[b]->name);
    }
    graft_status s = graft_model_set_weights_constant(m, 1);
    if (s != GRAFT_OK) {
        graft_int8_free(q);
        return s;
    }
    m->int8 = q;
    m->int8_free = graft_int8_free;
    m->int8_promise = m->weights_constant;
    return GRAFT_OK;
}

void graft_model_drop_int8(graft_model *m)
{
    if (!m) return;
    graft_int8_free(m->int8); /* NULL: nothing */
    m->int8 = NULL;
    m->int8_promise = 0;
}

int graft_model_int8_layers(const graft_model *m, const char **first_float)
{
    if (first_float) *first_float = NULL;
    if (!m || !m->int8 || m->weights_constant != m->int8_promise) return 0;
    int b = graft_int8_boundary(m->int8);
    if (first_float && b < m->n_layers) *first_float = m->layers[b]->name;
    return b - 1;
}
