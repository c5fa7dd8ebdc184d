/*
 * Multiply, Subtract, Average, Maximum, Minimum: elementwise merges of two
 * or more inputs (Subtract: exactly two) with Keras's broadcasting: inputs
 * of one rank whose sizes agree or are 1 on each axis, so a
 * squeeze-and-excitation gate (1, 1, C) scales a (H, W, C) map. An input
 * that is broadcast gets the sum of the gradients of the outputs it fed.
 * Maximum and Minimum pass the gradient to the first input holding the
 * winning value, as TensorFlow's pairwise reduction does (x wins ties).
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <string.h>

#define MERGE_MAX 64

typedef enum { MUL, SUB, AVG, MAX, MIN } merge_op;

typedef struct {
    merge_op op;
    int od[4];                   /* the output's per-sample shape, padded in front with 1s */
    size_t st[MERGE_MAX][4];     /* input k's stride on each axis, 0 where broadcast */
    size_t in_size[MERGE_MAX];   /* input k's per-sample size */
    int gate;                    /* Multiply of a map by a (1, .., 1, C) gate: the gate's input; else -1 */
} merge;

static graft_status build(graft_layer *l, const graft_shape *in)
{
    merge *g = l->cfg;
    const char *cls = l->ops->class_name;
    if (l->n_inputs < 2 || l->n_inputs > MERGE_MAX || (g->op == SUB && l->n_inputs != 2))
        return graft_fail(GRAFT_EINVAL, "layer '%s' (%s): takes %s inputs, got %d", l->name, cls,
                          g->op == SUB ? "exactly 2" : "2 to 64", l->n_inputs);
    const int r = in[0].rank;
    graft_shape out = in[0];
    for (int k = 1; k < l->n_inputs; k++) {
        bool ok = in[k].rank == r;
        for (int d = 0; ok && d < r; d++) {
            int a = out.dim[d], b = in[k].dim[d];
            ok = a == b || a == 1 || b == 1;
            if (ok && b != 1) out.dim[d] = b;
        }
        if (!ok) {
            char a[96], b[96];
            graft_shape_format(&in[0], a, sizeof a);
            graft_shape_format(&in[k], b, sizeof b);
            return graft_fail(GRAFT_ESHAPE,
                              "layer '%s' (%s): input 0 is %s and input %d is %s; the shapes "
                              "must agree on each axis or be 1 there (broadcasting)",
                              l->name, cls, a, k, b);
        }
    }
    for (int d = 0; d < 4; d++) g->od[d] = d < 4 - r ? 1 : out.dim[d - (4 - r)];
    for (int k = 0; k < l->n_inputs; k++) {
        size_t stride = 1;
        for (int d = 3; d >= 0; d--) {
            int size = d < 4 - r ? 1 : in[k].dim[d - (4 - r)];
            g->st[k][d] = size == 1 ? 0 : stride;
            stride *= (size_t)size;
        }
        g->in_size[k] = graft_shape_size(&in[k]);
    }
    /* A squeeze-and-excitation scaling: x (.., C) times g (1, .., 1, C). */
    g->gate = -1;
    for (int k = 0; k < 2 && g->op == MUL && l->n_inputs == 2; k++)
        if (g->in_size[k] == (size_t)g->od[3] && g->st[k][3] == 1 &&
            g->in_size[1 - k] == graft_shape_size(&out))
            g->gate = k;
    l->out_shape = out;
    return GRAFT_OK;
}

/* Runs BODY for every output cell of sample s: `o` its index in the
 * sample's output, `p[k]` input k's (within the sample). */
#define FOR_CELLS(g, nk, BODY)                                                                     \
    do {                                                                                           \
        size_t o = 0, p[MERGE_MAX] = {0};                                                                \
        for (int a0 = 0; a0 < (g)->od[0]; a0++)                                                    \
            for (int a1 = 0; a1 < (g)->od[1]; a1++)                                                \
                for (int a2 = 0; a2 < (g)->od[2]; a2++)                                            \
                    for (int a3 = 0; a3 < (g)->od[3]; a3++, o++) {                                 \
                        for (int k = 0; k < (nk); k++)                                             \
                            p[k] = a0 * (g)->st[k][0] + a1 * (g)->st[k][1] +                       \
                                   a2 * (g)->st[k][2] + a3 * (g)->st[k][3];                        \
                        BODY;                                                                      \
                    }                                                                              \
    } while (0)

static void forward(graft_layer *l, const graft_fwd *f)
{
    const merge *g = l->cfg;
    const int nk = l->n_inputs;
    const size_t osz = graft_shape_size(&l->out_shape);
    const float inv = 1.0f / (float)nk;
    if (nk < 2) return; /* build refuses fewer */
#pragma omp parallel for schedule(static)
    for (int s = 0; s < f->n; s++) {
        const float *x[MERGE_MAX] = {0};
        for (int k = 0; k < nk; k++) x[k] = f->in[k] + (size_t)s * g->in_size[k];
        float *y = f->out + (size_t)s * osz;
        if (g->gate >= 0) { /* row by row instead of an index per cell: the same products */
            const float *gate = x[g->gate], *map = x[1 - g->gate];
            const size_t C = (size_t)g->od[3];
            for (size_t r = 0; r < osz / C; r++) {
#pragma omp simd
                for (size_t c = 0; c < C; c++) y[r * C + c] = map[r * C + c] * gate[c];
            }
            continue;
        }
        FOR_CELLS(g, nk, {
            float v = x[0][p[0]];
            for (int k = 1; k < nk; k++) {
                float u = x[k][p[k]];
                switch (g->op) {
                case MUL: v *= u; break;
                case SUB: v -= u; break;
                case AVG: v += u; break;
                case MAX: v = u > v ? u : v; break;
                case MIN: v = u < v ? u : v; break;
                }
            }
            y[o] = g->op == AVG ? v * inv : v;
        });
    }
}

bool graft_multiply_gate(const graft_layer *l, int *gate)
{
    if (l->ops->forward != forward || ((const merge *)l->cfg)->gate < 0) return false;
    *gate = ((const merge *)l->cfg)->gate;
    return true;
}

static void backward(graft_layer *l, const graft_bwd *b)
{
    const merge *g = l->cfg;
    const int nk = l->n_inputs;
    const size_t osz = graft_shape_size(&l->out_shape);
    const float inv = 1.0f / (float)nk;
    /* A broadcast input sums over the cells it fed: clear what is not accumulated. */
    for (int k = 0; k < nk; k++)
        if (b->din[k] && !b->din_accumulate[k])
            memset(b->din[k], 0, (size_t)b->n * g->in_size[k] * sizeof(float));
    /* The same buffer may be handed for two inputs (Multiply(x, x)): each sample's
     * cells are written by one thread, and the inputs are read from `in`. */
#pragma omp parallel for schedule(static)
    for (int s = 0; s < b->n; s++) {
        const float *x[MERGE_MAX] = {0};
        float *dx[MERGE_MAX] = {0};
        for (int k = 0; k < nk; k++) {
            x[k] = b->in[k] + (size_t)s * g->in_size[k];
            dx[k] = b->din[k] ? b->din[k] + (size_t)s * g->in_size[k] : NULL;
        }
        const float *dy = b->dout + (size_t)s * osz, *y = b->out + (size_t)s * osz;
        if (g->gate >= 0) { /* row by row, the cells in the same order: the same sums */
            const int k = g->gate;
            const float *gate = x[k], *map = x[1 - k];
            float *dgate = dx[k], *dmap = dx[1 - k];
            const size_t C = (size_t)g->od[3];
            for (size_t r = 0; r < osz / C; r++) {
                const float *d = dy + r * C, *mr = map + r * C;
                if (dmap) {
#pragma omp simd
                    for (size_t c = 0; c < C; c++) dmap[r * C + c] += d[c] * gate[c];
                }
                if (dgate) {
#pragma omp simd
                    for (size_t c = 0; c < C; c++) dgate[c] += d[c] * mr[c];
                }
            }
            continue;
        }
        FOR_CELLS(g, nk, {
            const float d = dy[o];
            int win = -1;
            if (g->op == MAX || g->op == MIN)
                for (int k = 0; k < nk && win < 0; k++)
                    if (x[k][p[k]] == y[o]) win = k;
            for (int k = 0; k < nk; k++) {
                if (!dx[k]) continue;
                float gk;
                switch (g->op) {
                case MUL:
                    gk = d;
                    for (int j = 0; j < nk; j++)
                        if (j != k) gk *= x[j][p[j]];
                    break;
                case SUB: gk = k == 0 ? d : -d; break;
                case AVG: gk = d * inv; break;
                default: gk = k == win ? d : 0.0f; break;
                }
                dx[k][p[k]] += gk;
            }
        });
    }
}

/* Keras's merges have no options beyond name, trainable and dtype. */
static graft_status get_config(const graft_layer *l, cJSON *o)
{
    (void)l;
    (void)o;
    return GRAFT_OK;
}

static graft_layer *add_merge(graft_model *m, const graft_layer_ops *ops, merge_op op,
                              const char *name, const char *prefix, int n,
                              graft_layer *const *inputs)
{
    merge g = {.op = op};
    return graft_model_add_layer(m, ops, name, prefix, &g, sizeof g, n, inputs);
}

#define MERGE_KIND(kind, cls, op, prefix)                                                          \
    static graft_status kind##_from_config(const graft_config_in *c, const cJSON *cfg,             \
                                           graft_layer **out)                                      \
    {                                                                                              \
        *out = add_merge(c->m, &graft_##kind##_ops, op, c->name, prefix, c->n_in, c->in);          \
        return GRAFT_OK;                                                                           \
    }                                                                                              \
    const graft_layer_ops graft_##kind##_ops = {                                                   \
        .class_name = cls,                                                                         \
        .build = build,                                                                            \
        .forward = forward,                                                                        \
        .backward = backward,                                                                      \
        .get_config = get_config,                                                                  \
        .from_config = kind##_from_config,                                                         \
        .merge = true,                                                                             \
    };                                                                                             \
    graft_layer *graft_##kind(graft_model *m, const char *name, int n, graft_layer *const *inputs) \
    {                                                                                              \
        return add_merge(m, &graft_##kind##_ops, op, name, prefix, n, inputs);                     \
    }

extern const graft_layer_ops graft_multiply_ops, graft_average_ops, graft_maximum_ops,
    graft_minimum_ops, graft_subtract_ops;

MERGE_KIND(multiply, "Multiply", MUL, "multiply")
MERGE_KIND(average, "Average", AVG, "average")
MERGE_KIND(maximum, "Maximum", MAX, "maximum")
MERGE_KIND(minimum, "Minimum", MIN, "minimum")

static graft_status subtract_from_config(const graft_config_in *c, const cJSON *cfg,
                                         graft_layer **out)
{
    *out = add_merge(c->m, &graft_subtract_ops, SUB, c->name, "subtract", c->n_in, c->in);
    return GRAFT_OK;
}

const graft_layer_ops graft_subtract_ops = {
    .class_name = "Subtract",
    .build = build,
    .forward = forward,
    .backward = backward,
    .get_config = get_config,
    .from_config = subtract_from_config,
    .merge = true,
};

graft_layer *graft_subtract(graft_model *m, const char *name, graft_layer *a, graft_layer *b)
{
    graft_layer *pair[2] = {a, b};
    return add_merge(m, &graft_subtract_ops, SUB, name, "subtract", 2, pair);
}
