/*
 * Flatten and Reshape. NHWC is Keras's channels_last order, so both are a
 * plain copy of the data under a new shape.
 */
#include "layers/layer.h"
#include "layers/config_json.h"

#include <string.h>

static graft_status build_flatten(graft_layer *l, const graft_shape *in)
{
    size_t n = graft_shape_size(&in[0]);
    if (n > INT32_MAX)
        return graft_fail(GRAFT_EUNSUPPORTED, "layer '%s' (Flatten): %zu features are too many",
                          l->name, n);
    l->out_shape = graft_shape1((int)n);
    return GRAFT_OK;
}

/* Keras's Reshape: one dimension may be -1, inferred from the element count. */
static graft_status build_reshape(graft_layer *l, const graft_shape *in)
{
    const graft_shape *target = l->cfg;
    char from[96], to[96];
    graft_shape_format(&in[0], from, sizeof from);
    graft_shape_format(target, to, sizeof to);
    if (target->rank < 1 || target->rank > GRAFT_MAX_RANK)
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (Reshape): target shape %s has rank %d; 1 to %d is supported",
                          l->name, to, target->rank, GRAFT_MAX_RANK);
    int unknown = -1;
    size_t known = 1, total = graft_shape_size(&in[0]);
    for (int d = 0; d < target->rank; d++) {
        int v = target->dim[d];
        if (v == -1 && unknown < 0) {
            unknown = d;
        } else if (v <= 0) {
            return graft_fail(GRAFT_ESHAPE,
                              "layer '%s' (Reshape): target shape %s may hold positive "
                              "dimensions and at most one -1",
                              l->name, to);
        } else {
            known *= (size_t)v;
        }
    }
    graft_shape out = *target;
    if (unknown >= 0) {
        if (total % known != 0 || total / known > INT32_MAX)
            return graft_fail(GRAFT_ESHAPE,
                              "layer '%s' (Reshape): cannot reshape an input of shape %s (%zu "
                              "elements) to %s: %zu is not a multiple of %zu",
                              l->name, from, total, to, total, known);
        out.dim[unknown] = (int)(total / known);
    } else if (known != total) {
        return graft_fail(GRAFT_ESHAPE,
                          "layer '%s' (Reshape): cannot reshape an input of shape %s (%zu "
                          "elements) to %s (%zu elements); the element count must not change",
                          l->name, from, total, to, known);
    }
    l->out_shape = out;
    return GRAFT_OK;
}

/* Copies in blocks on all threads: one thread's memcpy leaves half the
 * memory bandwidth unused (a batch of the lesson's CNN flattens 10 MiB). */
#define BLOCK 16384
#define PAR_MIN 65536

static void copy(float *dst, const float *src, size_t n)
{
    const size_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t k = 0; k < blocks; k++) {
        size_t i = k * BLOCK, len = n - i < BLOCK ? n - i : BLOCK;
        memcpy(dst + i, src + i, len * sizeof(float));
    }
}

static bool passes_through(const graft_layer *l, bool training)
{
    (void)l;
    (void)training;
    return true;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    copy(f->out, f->in[0], (size_t)f->n * graft_shape_size(&l->out_shape));
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    float *dx = b->din[0];
    if (!dx) return;
    size_t n = (size_t)b->n * graft_shape_size(&l->out_shape);
    if (b->din_accumulate[0]) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++)
            dx[i] += b->dout[i];
    } else {
        copy(dx, b->dout, n);
    }
}

static graft_status flatten_config(const graft_layer *l, cJSON *o)
{
    return graft_config_done(l, cJSON_AddStringToObject(o, "data_format", "channels_last") != NULL);
}

/* target_shape as given, a -1 included, as Keras keeps it. */
static graft_status reshape_config(const graft_layer *l, cJSON *o)
{
    const graft_shape *t = l->cfg;
    cJSON *dims = cJSON_CreateIntArray(t->dim, t->rank);
    bool ok = dims && cJSON_AddItemToObject(o, "target_shape", dims);
    if (!ok) cJSON_Delete(dims);
    return graft_config_done(l, ok);
}

static graft_status flatten_from_config(const graft_config_in *c, const cJSON *cfg,
                                        graft_layer **out)
{
    *out = graft_flatten(c->m, c->in[0], c->name);
    return GRAFT_OK;
}

const graft_layer_ops graft_flatten_ops = {
    .class_name = "Flatten",
    .build = build_flatten,
    .forward = forward,
    .passes_through = passes_through,
    .backward = backward,
    .get_config = flatten_config,
    .from_config = flatten_from_config,
};

/* A -1 in target_shape stays: build infers it (and checks the sizes agree),
 * and writing the model back keeps the target as Keras had it. */
static graft_status reshape_from_config(const graft_config_in *c, const cJSON *cfg,
                                        graft_layer **out)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "target_shape");
    int n = cJSON_IsArray(t) ? cJSON_GetArraySize(t) : 0;
    graft_shape target = {n, {0}};
    if (n < 1 || n > GRAFT_MAX_RANK)
        return graft_config_refuse(c, GRAFT_EFORMAT, "'target_shape' is not a list of 1 to %d sizes",
                                   GRAFT_MAX_RANK);
    int d = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, t)
    {
        if (cJSON_IsNumber(e) && e->valuedouble == -1)
            target.dim[d] = -1;
        else if (!graft_config_small_int(e, 1, &target.dim[d]))
            return graft_config_refuse(c, GRAFT_EFORMAT, "'target_shape' entry %d is not a size", d);
        d++;
    }
    *out = graft_reshape(c->m, c->in[0], c->name, target);
    return GRAFT_OK;
}

const graft_layer_ops graft_reshape_ops = {
    .class_name = "Reshape",
    .build = build_reshape,
    .forward = forward,
    .passes_through = passes_through,
    .backward = backward,
    .get_config = reshape_config,
    .from_config = reshape_from_config,
};

graft_layer *graft_flatten(graft_model *m, graft_layer *in, const char *name)
{
    return graft_model_add_unary(m, &graft_flatten_ops, name, "flatten", NULL, 0, in);
}

graft_layer *graft_reshape(graft_model *m, graft_layer *in, const char *name, graft_shape target)
{
    return graft_model_add_unary(m, &graft_reshape_ops, name, "reshape", &target, sizeof target, in);
}
