/* Add: the elementwise sum of two or more inputs of one shape. */
#include "layers/layer.h"
#include "layers/config_json.h"

#include <string.h>

#define PARALLEL_MIN 32768

static graft_status build(graft_layer *l, const graft_shape *in)
{
    for (int i = 1; i < l->n_inputs; i++) {
        bool same = in[i].rank == in[0].rank;
        for (int d = 0; same && d < in[0].rank; d++)
            same = in[i].dim[d] == in[0].dim[d];
        if (!same) {
            char a[96], b[96];
            graft_shape_format(&in[0], a, sizeof a);
            graft_shape_format(&in[i], b, sizeof b);
            return graft_fail(GRAFT_ESHAPE,
                              "layer '%s' (Add): inputs must have one shape, but input 0 is %s "
                              "and input %d is %s",
                              l->name, a, i, b);
        }
    }
    l->out_shape = in[0];
    return GRAFT_OK;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const long n = (long)((size_t)f->n * graft_shape_size(&l->out_shape));
    const float *a = f->in[0], *b = f->in[1];
    float *y = f->out;
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
    for (long i = 0; i < n; i++)
        y[i] = a[i] + b[i];
    for (int k = 2; k < l->n_inputs; k++) {
        const float *x = f->in[k];
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
        for (long i = 0; i < n; i++)
            y[i] += x[i];
    }
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const long n = (long)((size_t)b->n * graft_shape_size(&l->out_shape));
    const float *g = b->dout;
    /* Add(x, x) hands one buffer twice: the first write, then an accumulate. */
    for (int k = 0; k < l->n_inputs; k++) {
        float *d = b->din[k];
        if (!d) continue;
        if (b->din_accumulate[k]) {
#pragma omp parallel for simd schedule(static) if (n >= PARALLEL_MIN)
            for (long i = 0; i < n; i++)
                d[i] += g[i];
        } else {
            memcpy(d, g, (size_t)n * sizeof(float));
        }
    }
}

/* Keras's Add has no options beyond name, trainable and dtype. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    (void)l;
    (void)o;
    return GRAFT_OK;
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    *out = graft_add(c->m, c->name, c->n_in, c->in);
    return GRAFT_OK;
}

const graft_layer_ops graft_add_ops = {
    .class_name = "Add",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
    .merge = true,
};

graft_layer *graft_add(graft_model *m, const char *name, int n, graft_layer *const *inputs)
{
    if (!m) {
        graft_fail(GRAFT_EINVAL, "no model given");
        return NULL;
    }
    if (n < 2 || !inputs) {
        if (graft_model_status(m) == GRAFT_OK)
            graft_model_set_error(m, GRAFT_EINVAL,
                                  "layer '%s' (Add): needs a list of at least 2 inputs (got %d)",
                                  name ? name : "add", inputs ? n : 0);
        return NULL;
    }
    return graft_model_add_layer(m, &graft_add_ops, name, "add", NULL, 0, n, inputs);
}
