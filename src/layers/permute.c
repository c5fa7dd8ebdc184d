/* Permute(dims): the per-sample axes reordered (dims a permutation of 1..rank, Keras's). */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <string.h>

typedef struct {
    int n, dims[GRAFT_MAX_RANK];
    size_t in_st[GRAFT_MAX_RANK]; /* input stride of output axis k */
} permute;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    permute *z = l->cfg;
    const int r = in[0].rank;
    unsigned seen = 0;
    bool ok = z->n == r;
    for (int k = 0; ok && k < r; k++) {
        ok = z->dims[k] >= 1 && z->dims[k] <= r && !(seen >> z->dims[k] & 1);
        if (ok) seen |= 1u << z->dims[k];
    }
    if (!ok)
        return graft_fail(GRAFT_EINVAL,
                          "layer '%s' (Permute): dims must be a permutation of 1..%d (the input's "
                          "axes after the batch)",
                          l->name, r);
    size_t st[GRAFT_MAX_RANK], s = 1;
    for (int d = r - 1; d >= 0; d--) {
        st[d] = s;
        s *= (size_t)in[0].dim[d];
    }
    l->out_shape.rank = r;
    for (int k = 0; k < r; k++) {
        l->out_shape.dim[k] = in[0].dim[z->dims[k] - 1];
        z->in_st[k] = st[z->dims[k] - 1];
    }
    return GRAFT_OK;
}

/* The input index of output element i of a sample. */
static size_t source(const permute *z, const graft_shape *out, size_t i)
{
    size_t src = 0;
    for (int k = out->rank - 1; k >= 0; k--) {
        src += (i % (size_t)out->dim[k]) * z->in_st[k];
        i /= (size_t)out->dim[k];
    }
    return src;
}

static void forward(graft_layer *l, const graft_fwd *f)
{
    const permute *z = l->cfg;
    const size_t per = graft_shape_size(&l->out_shape);
#pragma omp parallel for schedule(static)
    for (int s = 0; s < f->n; s++)
        for (size_t i = 0; i < per; i++)
            f->out[(size_t)s * per + i] = f->in[0][(size_t)s * per + source(z, &l->out_shape, i)];
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const permute *z = l->cfg;
    float *dx = b->din[0];
    if (!dx) return;
    const size_t per = graft_shape_size(&l->out_shape);
    const bool acc = b->din_accumulate[0];
#pragma omp parallel for schedule(static)
    for (int s = 0; s < b->n; s++)
        for (size_t i = 0; i < per; i++) {
            float *d = dx + (size_t)s * per + source(z, &l->out_shape, i);
            float g = b->dout[(size_t)s * per + i];
            *d = acc ? *d + g : g;
        }
}

static graft_status get_config(const graft_layer *l, cJSON *o)
{
    const permute *z = l->cfg;
    cJSON *d = cJSON_CreateIntArray(z->dims, z->n);
    bool ok = d && cJSON_AddItemToObject(o, "dims", d);
    if (!ok) cJSON_Delete(d);
    return graft_config_done(l, ok);
}

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(cfg, "dims");
    int n = cJSON_IsArray(d) ? cJSON_GetArraySize(d) : 0, dims[GRAFT_MAX_RANK];
    if (n < 1 || n > GRAFT_MAX_RANK)
        return graft_config_refuse(c, GRAFT_EFORMAT, "'dims' is not a list of 1 to %d axes",
                                   GRAFT_MAX_RANK);
    for (int i = 0; i < n; i++)
        if (!graft_config_small_int(cJSON_GetArrayItem(d, i), 1, &dims[i]))
            return graft_config_refuse(c, GRAFT_EFORMAT, "'dims' entry %d is not an axis", i);
    *out = graft_permute(c->m, c->in[0], c->name, n, dims);
    return GRAFT_OK;
}

const graft_layer_ops graft_permute_ops = {
    .class_name = "Permute",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = from_config,
};

graft_layer *graft_permute(graft_model *m, graft_layer *in, const char *name, int n,
                           const int *dims)
{
    permute z = {.n = n < 0 || n > GRAFT_MAX_RANK ? -1 : n};
    for (int k = 0; k < z.n; k++) z.dims[k] = dims[k];
    return graft_model_add_unary(m, &graft_permute_ops, name, "permute", &z, sizeof z, in);
}
