/*
 * ONNX export: the driver (the walk over the layers, folding BatchNormalization
 * into convolutions, the graph's input and output, metadata) and the graph
 * builder the per-kind converters use (onnx.h). Messages are protobuf-c
 * structs from the compiled ONNX schema; everything they point to lives in
 * one arena freed at the end, and the file is written by packing the model
 * straight into the output file.
 */
#include "export/onnx.h"
#include "export/export_meta.h"

#include "onnx.pb-c.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_OPSET 13
#define MIN_OPSET 11
#define MAX_OPSET 17 /* what the ONNX 1.12 schema (IR version 8) defines */

typedef struct {
    const char *name[2]; /* the output in NHWC (Keras order) and NCHW; either may be NULL */
} tensor_rec;

struct onnx_ctx {
    const graft_model *m;
    const graft_onnx_opts *o;
    int opset;
    graft_status status;
    void **blocks; /* the arena: every allocation, freed together */
    size_t n_blocks, cap_blocks;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    Onnx__ValueInfoProto *input;
    tensor_rec *t;   /* per layer */
    int *folded_bn;  /* per layer: the BatchNormalization folded into it, or -1 */
    bool *skip;      /* per layer: folded away (its output is its input's) */
    int *readers;    /* per layer: how many layer inputs read it */
    int cur;         /* the layer being converted */
};

static const graft_layer *layer_at(const onnx_ctx *x, int i);

/* ------------------------------------------------------------ the arena */

static void *ar_alloc(onnx_ctx *x, size_t bytes)
{
    if (x->status != GRAFT_OK) return NULL;
    if (x->n_blocks == x->cap_blocks) {
        size_t cap = x->cap_blocks ? 2 * x->cap_blocks : 256;
        void **b = realloc(x->blocks, cap * sizeof *b);
        if (!b) goto oom;
        x->blocks = b;
        x->cap_blocks = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) goto oom;
    x->blocks[x->n_blocks++] = p;
    return p;
oom:
    x->status = graft_fail(GRAFT_ENOMEM, "out of memory exporting model '%s' to ONNX", x->m->name);
    return NULL;
}

static char *ar_strdup(onnx_ctx *x, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ar_alloc(x, n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Appends p to a growing array of pointers (kept in the heap, not the arena). */
static bool push(onnx_ctx *x, void ***arr, size_t *n, size_t *cap, void *p)
{
    if (x->status != GRAFT_OK || !p) return false;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        void **a = realloc(*arr, c * sizeof *a);
        if (!a) {
            x->status = graft_fail(GRAFT_ENOMEM, "out of memory exporting model '%s' to ONNX",
                                   x->m->name);
            return false;
        }
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = p;
    return true;
}

/* ------------------------------------------------------------ builder */

graft_status onnx_status(const onnx_ctx *x) { return x->status; }
int onnx_opset(const onnx_ctx *x) { return x->opset; }

graft_status onnx_fail(onnx_ctx *x, const graft_layer *l, graft_status s, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (x->status == GRAFT_OK)
        x->status = graft_fail(s, "layer '%s' (%s): %s", l->name, l->ops->class_name, why);
    return x->status;
}

const char *onnx_name(onnx_ctx *x, const graft_layer *l, const char *what)
{
    if (!what) return ar_strdup(x, l->name);
    size_t n = strlen(l->name) + strlen(what) + 2;
    char *p = ar_alloc(x, n);
    if (p) snprintf(p, n, "%s/%s", l->name, what);
    return p;
}

onnx_node *onnx_add_node(onnx_ctx *x, const char *op, const char *const *in, int n_in,
                         const char *out)
{
    Onnx__NodeProto *n = ar_alloc(x, sizeof *n);
    char **ins = ar_alloc(x, (size_t)(n_in > 0 ? n_in : 1) * sizeof *ins);
    char **outs = ar_alloc(x, sizeof *outs);
    if (!n || !ins || !outs || !out) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < n_in; i++) {
        /* A converter that asked for a tensor nobody made: never write a broken graph. */
        if (!in[i]) {
            if (x->status == GRAFT_OK)
                x->status = graft_fail(GRAFT_EUNSUPPORTED, "layer '%s' (%s): input %d of its %s node is missing",
                                       layer_at(x, x->cur)->name, layer_at(x, x->cur)->ops->class_name, i, op);
            return NULL;
        }
        ins[i] = (char *)in[i];
    }
    outs[0] = (char *)out;
    n->n_input = (size_t)n_in;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    n->op_type = ar_strdup(x, op);
    n->name = (char *)out;
    if (!n->op_type || !push(x, (void ***)&x->nodes, &x->n_nodes, &x->cap_nodes, n)) return NULL;
    return n;
}

static Onnx__AttributeProto *add_attr(onnx_ctx *x, onnx_node *n, const char *key)
{
    if (!n) return NULL;
    Onnx__AttributeProto *a = ar_alloc(x, sizeof *a);
    Onnx__AttributeProto **list = ar_alloc(x, (n->n_attribute + 1) * sizeof(Onnx__AttributeProto *));
    if (!a || !list) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ar_strdup(x, key);
    if (n->n_attribute) memcpy(list, n->attribute, n->n_attribute * sizeof(Onnx__AttributeProto *));
    list[n->n_attribute] = a;
    n->attribute = list;
    n->n_attribute++;
    a->has_type = 1;
    return a;
}

void onnx_attr_int(onnx_ctx *x, onnx_node *n, const char *key, int64_t v)
{
    Onnx__AttributeProto *a = add_attr(x, n, key);
    if (!a) return;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

void onnx_attr_float(onnx_ctx *x, onnx_node *n, const char *key, float v)
{
    Onnx__AttributeProto *a = add_attr(x, n, key);
    if (!a) return;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
}

void onnx_attr_str(onnx_ctx *x, onnx_node *n, const char *key, const char *v)
{
    Onnx__AttributeProto *a = add_attr(x, n, key);
    size_t len = strlen(v);
    char *copy = ar_alloc(x, len + 1);
    if (!a || !copy) return;
    memcpy(copy, v, len + 1);
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.len = len;
    a->s.data = (uint8_t *)copy;
}

void onnx_attr_ints(onnx_ctx *x, onnx_node *n, const char *key, const int64_t *v, int count)
{
    Onnx__AttributeProto *a = add_attr(x, n, key);
    int64_t *copy = ar_alloc(x, (size_t)count * sizeof *copy);
    if (!a || !copy) return;
    memcpy(copy, v, (size_t)count * sizeof *copy);
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)count;
    a->ints = copy;
}

const char *onnx_const_raw(onnx_ctx *x, const char *name, const void *data, size_t elem_bytes,
                           int dtype, const int64_t *dims, int rank)
{
    Onnx__TensorProto *t = ar_alloc(x, sizeof *t);
    int64_t *d = ar_alloc(x, (size_t)(rank ? rank : 1) * sizeof *d);
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= (size_t)dims[i];
    /* Raw data is little-endian, as graft's weights are on the machines it builds for. */
    void *raw = ar_alloc(x, count * elem_bytes);
    if (!t || !d || !raw || !name) return NULL;
    onnx__tensor_proto__init(t);
    if (rank) memcpy(d, dims, (size_t)rank * sizeof *d);
    memcpy(raw, data, count * elem_bytes);
    t->name = (char *)name;
    t->n_dims = (size_t)rank;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->has_raw_data = 1;
    t->raw_data.len = count * elem_bytes;
    t->raw_data.data = raw;
    return push(x, (void ***)&x->inits, &x->n_inits, &x->cap_inits, t) ? name : NULL;
}

const char *onnx_const_f32(onnx_ctx *x, const char *name, const float *data, const int64_t *dims,
                           int rank)
{
    return onnx_const_raw(x, name, data, sizeof(float), ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, rank);
}

const char *onnx_const_i64(onnx_ctx *x, const char *name, const int64_t *data, const int64_t *dims,
                           int rank)
{
    return onnx_const_raw(x, name, data, sizeof(int64_t), ONNX__TENSOR_PROTO__DATA_TYPE__INT64, dims,
                     rank);
}

const char *onnx_scalar(onnx_ctx *x, const char *name, float v)
{
    return onnx_const_raw(x, name, &v, sizeof v, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, NULL, 0);
}

/* ------------------------------------------------------------ layouts */

static const graft_layer *layer_at(const onnx_ctx *x, int i) { return x->m->layers[i]; }

/* Layer i's output in `want`, transposing (once) when it is held in the other. */
static const char *tensor_of(onnx_ctx *x, int i, onnx_layout want)
{
    tensor_rec *r = &x->t[i];
    if (layer_at(x, i)->out_shape.rank != 3) return r->name[ONNX_KERAS];
    if (r->name[want]) return r->name[want];
    const char *have = r->name[!want];
    if (!have) return NULL;
    static const int64_t to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};
    const char *out = onnx_name(x, layer_at(x, i), want == ONNX_NCHW ? "nchw" : "nhwc");
    onnx_node *n = onnx_add_node(x, "Transpose", &have, 1, out);
    onnx_attr_ints(x, n, "perm", want == ONNX_NCHW ? to_nchw : to_nhwc, 4);
    r->name[want] = n ? out : NULL;
    return r->name[want];
}

const char *onnx_layer_output(onnx_ctx *x, int i, onnx_layout want) { return tensor_of(x, i, want); }

const char *onnx_input(onnx_ctx *x, const graft_layer *l, int i, onnx_layout want)
{
    if (i < 0 || i >= l->n_inputs) return NULL;
    return tensor_of(x, l->inputs[i], want);
}

const char *onnx_input_held(onnx_ctx *x, const graft_layer *l, int i, onnx_layout *layout)
{
    if (i < 0 || i >= l->n_inputs) return NULL;
    const tensor_rec *r = &x->t[l->inputs[i]];
    *layout = r->name[ONNX_NCHW] && layer_at(x, l->inputs[i])->out_shape.rank == 3 ? ONNX_NCHW
                                                                                   : ONNX_NHWC;
    return r->name[*layout];
}

const char *onnx_input_class(const onnx_ctx *x, const graft_layer *l, int i)
{
    return i >= 0 && i < l->n_inputs ? layer_at(x, l->inputs[i])->ops->class_name : NULL;
}

graft_shape onnx_input_shape(const onnx_ctx *x, const graft_layer *l, int i)
{
    return layer_at(x, l->inputs[i])->out_shape;
}

void onnx_set_output(onnx_ctx *x, const graft_layer *l, const char *name, onnx_layout layout)
{
    tensor_rec *r = &x->t[l->index];
    r->name[0] = r->name[1] = NULL;
    r->name[l->out_shape.rank == 3 ? layout : ONNX_KERAS] = name;
}

/* ------------------------------------------------------------ helpers for converters */

const float *onnx_weight(const graft_layer *l, const char *name, graft_shape *shape)
{
    for (int k = 0; k < l->n_weights; k++)
        if (!strcmp(l->weights[k].name, name)) {
            if (shape) *shape = l->weights[k].shape;
            return l->weights[k].data;
        }
    return NULL;
}

bool onnx_folded_bn(onnx_ctx *x, const graft_layer *l, const float **scale, const float **shift)
{
    int b = x->folded_bn[l->index];
    if (b < 0) return false;
    const graft_layer *bn = layer_at(x, b);
    size_t c = (size_t)bn->out_shape.dim[bn->out_shape.rank - 1];
    float *mean = ar_alloc(x, c * sizeof(float)), *sc = ar_alloc(x, c * sizeof(float)),
          *sh = ar_alloc(x, c * sizeof(float));
    if (!mean || !sc || !sh || !graft_batch_norm_inference(bn, mean, sc, sh)) return false;
    /* (z - mean) * scale + shift = z * scale + (shift - mean * scale) */
    for (size_t k = 0; k < c; k++) sh[k] -= mean[k] * sc[k];
    *scale = sc;
    *shift = sh;
    return true;
}

void onnx_same_pads(const char *padding, int size, int k, int s, int *before, int *after)
{
    *before = *after = 0;
    if (strcmp(padding, "same") != 0) return;
    int out = (size + s - 1) / s;
    int total = (out - 1) * s + k - size;
    if (total < 0) total = 0;
    *before = total / 2; /* TF puts the odd cell after */
    *after = total - *before;
}

bool onnx_cfg_pair(const cJSON *cfg, const char *key, int out[2])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsNumber(v)) {
        out[0] = out[1] = v->valueint;
        return true;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2) return false;
    const cJSON *a = cJSON_GetArrayItem(v, 0), *b = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b)) return false;
    out[0] = a->valueint;
    out[1] = b->valueint;
    return true;
}

const char *onnx_cfg_str(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

double onnx_cfg_num(const cJSON *cfg, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* y = op(x) for an elementwise op without attributes. */
static const char *unary(onnx_ctx *x, const graft_layer *l, const char *op, const char *in,
                         const char *what)
{
    const char *out = onnx_name(x, l, what);
    return onnx_add_node(x, op, &in, 1, out) ? out : NULL;
}

static const char *clip(onnx_ctx *x, const graft_layer *l, const char *in, float lo, float hi,
                        const char *what)
{
    const char *ins[3] = {in, onnx_scalar(x, onnx_name(x, l, "clip_min"), lo),
                          onnx_scalar(x, onnx_name(x, l, "clip_max"), hi)};
    const char *out = onnx_name(x, l, what);
    return onnx_add_node(x, "Clip", ins, 3, out) ? out : NULL;
}

static const char *hard_sigmoid(onnx_ctx *x, const graft_layer *l, const char *in, const char *what)
{
    const char *out = onnx_name(x, l, what);
    onnx_node *n = onnx_add_node(x, "HardSigmoid", &in, 1, out);
    onnx_attr_float(x, n, "alpha", 1.0f / 6.0f);
    onnx_attr_float(x, n, "beta", 0.5f);
    return n ? out : NULL;
}

/* Gelu is an operator only from opset 20: exact 0.5 x (1 + erf(x / sqrt 2)),
 * or (approximate) 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))). */
static const char *gelu(onnx_ctx *x, const graft_layer *l, const char *in, bool approximate,
                        const char *what)
{
    const char *inner;
    if (approximate) {
        const char *x2 = onnx_name(x, l, "gelu_x2"), *x3 = onnx_name(x, l, "gelu_x3"),
                   *k3 = onnx_name(x, l, "gelu_kx3"), *sum = onnx_name(x, l, "gelu_sum"),
                   *arg = onnx_name(x, l, "gelu_arg");
        onnx_add_node(x, "Mul", (const char *[]){in, in}, 2, x2);
        onnx_add_node(x, "Mul", (const char *[]){x2, in}, 2, x3);
        onnx_add_node(x, "Mul", (const char *[]){x3, onnx_scalar(x, onnx_name(x, l, "gelu_k"), 0.044715f)}, 2, k3);
        onnx_add_node(x, "Add", (const char *[]){in, k3}, 2, sum);
        onnx_add_node(x, "Mul", (const char *[]){sum, onnx_scalar(x, onnx_name(x, l, "gelu_c"), 0.7978845608028654f)},
                      2, arg);
        inner = unary(x, l, "Tanh", arg, "gelu_tanh");
    } else {
        const char *arg = onnx_name(x, l, "gelu_arg");
        onnx_add_node(x, "Mul", (const char *[]){in, onnx_scalar(x, onnx_name(x, l, "gelu_c"), 0.7071067811865476f)},
                      2, arg);
        inner = unary(x, l, "Erf", arg, "gelu_erf");
    }
    const char *one = onnx_name(x, l, "gelu_1p"), *half = onnx_name(x, l, "gelu_half"), *out = onnx_name(x, l, what);
    onnx_add_node(x, "Add", (const char *[]){inner, onnx_scalar(x, onnx_name(x, l, "gelu_one"), 1.0f)}, 2, one);
    onnx_add_node(x, "Mul", (const char *[]){in, onnx_scalar(x, onnx_name(x, l, "gelu_h"), 0.5f)}, 2, half);
    return onnx_add_node(x, "Mul", (const char *[]){half, one}, 2, out) ? out : NULL;
}

const char *onnx_activation(onnx_ctx *x, const graft_layer *l, const char *name, const char *in,
                            onnx_layout *layout, int rank)
{
    if (!*name || !strcmp(name, "linear")) return in;
    const char *what = "act";
    if (!strcmp(name, "relu")) return unary(x, l, "Relu", in, what);
    if (!strcmp(name, "relu6")) return clip(x, l, in, 0.0f, 6.0f, what);
    if (!strcmp(name, "sigmoid")) return unary(x, l, "Sigmoid", in, what);
    if (!strcmp(name, "tanh")) return unary(x, l, "Tanh", in, what);
    if (!strcmp(name, "elu")) return unary(x, l, "Elu", in, what);
    if (!strcmp(name, "selu")) return unary(x, l, "Selu", in, what);
    if (!strcmp(name, "softplus")) return unary(x, l, "Softplus", in, what);
    if (!strcmp(name, "softsign")) return unary(x, l, "Softsign", in, what);
    if (!strcmp(name, "exponential")) return unary(x, l, "Exp", in, what);
    if (!strcmp(name, "swish") || !strcmp(name, "silu")) {
        const char *ins[2] = {in, unary(x, l, "Sigmoid", in, "sigmoid")};
        const char *out = onnx_name(x, l, what);
        return onnx_add_node(x, "Mul", ins, 2, out) ? out : NULL;
    }
    if (!strcmp(name, "hard_sigmoid")) /* Keras 3's, as graft computes it: clip(x / 6 + 0.5, 0, 1) */
        return hard_sigmoid(x, l, in, what);
    if (!strcmp(name, "hard_swish") || !strcmp(name, "hard_silu")) {
        if (onnx_opset(x) >= 14) return unary(x, l, "HardSwish", in, what);
        const char *ins[2] = {in, hard_sigmoid(x, l, in, "hard_sigmoid")};
        const char *out = onnx_name(x, l, what);
        return onnx_add_node(x, "Mul", ins, 2, out) ? out : NULL;
    }
    if (!strcmp(name, "gelu") || !strcmp(name, "gelu_approximate") || !strcmp(name, "gelu_new"))
        return gelu(x, l, in, strcmp(name, "gelu") != 0, what);
    if (!strcmp(name, "leaky_relu")) { /* Keras 3's activations.leaky_relu: slope 0.2 */
        const char *out = onnx_name(x, l, what);
        onnx_node *n = onnx_add_node(x, "LeakyRelu", &in, 1, out);
        onnx_attr_float(x, n, "alpha", 0.2f);
        return n ? out : NULL;
    }
    if (!strcmp(name, "softmax")) {
        /* Over the last Keras axis; on a rank-3 output that is NHWC's last. */
        if (rank == 3 && *layout == ONNX_NCHW) {
            static const int64_t to_nhwc[4] = {0, 2, 3, 1};
            const char *t = onnx_name(x, l, "pre_softmax_nhwc");
            onnx_attr_ints(x, onnx_add_node(x, "Transpose", &in, 1, t), "perm", to_nhwc, 4);
            in = t;
        }
        *layout = ONNX_NHWC;
        const char *out = onnx_name(x, l, what);
        onnx_node *n = onnx_add_node(x, "Softmax", &in, 1, out);
        onnx_attr_int(x, n, "axis", rank);
        return n ? out : NULL;
    }
    onnx_fail(x, l, GRAFT_EUNSUPPORTED, "activation '%s' has no ONNX conversion", name);
    return NULL;
}

/* ------------------------------------------------------------ graph input, preprocessing */

static Onnx__ValueInfoProto *value_info(onnx_ctx *x, const char *name, const int64_t *dims, int rank)
{
    Onnx__ValueInfoProto *v = ar_alloc(x, sizeof *v);
    Onnx__TypeProto *t = ar_alloc(x, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ar_alloc(x, sizeof *tt);
    Onnx__TensorShapeProto *sh = ar_alloc(x, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **d = ar_alloc(x, (size_t)rank * sizeof(Onnx__TensorShapeProto__Dimension *));
    if (!v || !t || !tt || !sh || !d) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < rank; i++) {
        if (!(d[i] = ar_alloc(x, sizeof **d))) return NULL;
        onnx__tensor_shape_proto__dimension__init(d[i]);
        if (dims[i] > 0) {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[i]->dim_value = dims[i];
        } else {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[i]->dim_param = "N";
        }
    }
    sh->n_dim = (size_t)rank;
    sh->dim = d;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->name = (char *)name;
    v->type = t;
    return name ? v : NULL;
}

/* The preprocessing as y[c] = x[perm[c]] * scale[c] + shift[c], from
 * probing graft's own preprocess_input (so the two never disagree). */
static graft_status preprocess_affine(onnx_ctx *x, const graft_layer *l, int perm[3],
                                      float scale[3], float shift[3])
{
    const char *name = x->o->meta.preprocess;
    float px[4][3] = {{0}};
    for (int k = 0; k < 3; k++) px[k + 1][k] = 255.0f;
    if (!strcmp(name, "rescale")) {
        for (int c = 0; c < 3; c++) {
            perm[c] = c;
            scale[c] = 1.0f / 255.0f;
            shift[c] = 0.0f;
        }
        return GRAFT_OK;
    }
    graft_status s = graft_preprocess_input(name, &px[0][0], 4);
    if (s != GRAFT_OK) return onnx_fail(x, l, s, "preprocessing '%s': %s", name, graft_last_error());
    for (int c = 0; c < 3; c++) {
        shift[c] = px[0][c];
        perm[c] = -1;
        for (int k = 0; k < 3; k++) {
            float a = (px[k + 1][c] - px[0][c]) / 255.0f;
            if (fabsf(a) < 1e-9f) continue;
            if (perm[c] >= 0)
                return onnx_fail(x, l, GRAFT_EUNSUPPORTED,
                                 "preprocessing '%s' mixes channels; it has no ONNX form", name);
            perm[c] = k;
            scale[c] = a;
        }
        if (perm[c] < 0)
            return onnx_fail(x, l, GRAFT_EUNSUPPORTED, "preprocessing '%s' drops a channel", name);
    }
    return GRAFT_OK;
}

static const char *add_preprocessing(onnx_ctx *x, const graft_layer *l, const char *in, bool nchw)
{
    int perm[3] = {0, 1, 2};
    float scale[3] = {1, 1, 1}, shift[3] = {0, 0, 0};
    if (preprocess_affine(x, l, perm, scale, shift) != GRAFT_OK) return NULL;
    const int64_t cdims_nchw[3] = {3, 1, 1}, cdims_nhwc[1] = {3};
    const int64_t *cd = nchw ? cdims_nchw : cdims_nhwc;
    int crank = nchw ? 3 : 1;
    if (perm[0] != 0 || perm[1] != 1 || perm[2] != 2) {
        const int64_t idx[3] = {perm[0], perm[1], perm[2]}, n3 = 3;
        const char *ins[2] = {in, onnx_const_i64(x, onnx_name(x, l, "pre_channels"), idx, &n3, 1)};
        const char *out = onnx_name(x, l, "pre_gather");
        onnx_attr_int(x, onnx_add_node(x, "Gather", ins, 2, out), "axis", nchw ? 1 : 3);
        in = out;
    }
    if (scale[0] != 1.0f || scale[1] != 1.0f || scale[2] != 1.0f) {
        const char *ins[2] = {in, onnx_const_f32(x, onnx_name(x, l, "pre_scale"), scale, cd, crank)};
        const char *out = onnx_name(x, l, "pre_mul");
        if (!onnx_add_node(x, "Mul", ins, 2, out)) return NULL;
        in = out;
    }
    const char *ins[2] = {in, onnx_const_f32(x, onnx_name(x, l, "pre_shift"), shift, cd, crank)};
    const char *out = onnx_name(x, l, "preprocessed");
    return onnx_add_node(x, "Add", ins, 2, out) ? out : NULL;
}

graft_status onnx_graph_input(onnx_ctx *x, const graft_layer *l)
{
    if (x->input)
        return onnx_fail(x, l, GRAFT_EUNSUPPORTED, "a second model input; graft exports one");
    const graft_shape *s = &l->out_shape;
    bool nchw = x->o->nchw && s->rank == 3;
    int64_t dims[GRAFT_MAX_RANK + 1] = {x->o->batch > 0 ? x->o->batch : -1};
    for (int d = 0; d < s->rank; d++) dims[d + 1] = s->dim[d];
    if (nchw) {
        dims[1] = s->dim[2];
        dims[2] = s->dim[0];
        dims[3] = s->dim[1];
    }
    const char *name = onnx_name(x, l, NULL);
    x->input = value_info(x, name, dims, s->rank + 1);
    if (x->o->include_preprocessing) {
        if (s->rank != 3 || s->dim[2] != 3)
            return onnx_fail(x, l, GRAFT_EUNSUPPORTED,
                             "--include-preprocessing needs an RGB image input (H, W, 3)");
        name = add_preprocessing(x, l, name, nchw);
    }
    onnx_set_output(x, l, name, nchw ? ONNX_NCHW : ONNX_NHWC);
    return x->status;
}

/* ------------------------------------------------------------ the walk */

/* BatchNormalization layers that are exactly a per-channel affine map of a
 * convolution's output that nothing else reads: folded into its weights. */
static void plan_folds(onnx_ctx *x)
{
    const graft_model *m = x->m;
    int out = graft_model_output_index(m);
    for (int i = 0; i < m->n_layers; i++) {
        x->folded_bn[i] = -1;
        for (int j = 0; j < m->layers[i]->n_inputs; j++) x->readers[m->layers[i]->inputs[j]]++;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const graft_layer *bn = m->layers[i];
        if (strcmp(bn->ops->class_name, "BatchNormalization") != 0 || bn->n_inputs != 1) continue;
        int c = bn->inputs[0];
        const graft_layer *conv = m->layers[c];
        const onnx_kind *k = onnx_find_kind(conv->ops->class_name);
        if (!k || !k->folds_bn || x->readers[c] != 1 || c == out || x->folded_bn[c] >= 0) continue;
        if (conv->out_shape.rank != 3 || bn->out_shape.rank != 3) continue;
        /* Only a linear convolution: BN after its activation is not affine in its weights. */
        cJSON *cfg = cJSON_CreateObject();
        bool linear = cfg && conv->ops->get_config && conv->ops->get_config(conv, cfg) == GRAFT_OK &&
                      (!*onnx_cfg_str(cfg, "activation") ||
                       !strcmp(onnx_cfg_str(cfg, "activation"), "linear"));
        cJSON_Delete(cfg);
        graft_clear_error();
        if (!linear) continue;
        x->folded_bn[c] = i;
        x->skip[i] = true;
    }
}

graft_status onnx_convert_layer(onnx_ctx *x, const graft_layer *l)
{
    x->cur = l->index;
    if (x->skip[l->index]) { /* a folded BatchNormalization: its input already is its output */
        x->t[l->index] = x->t[l->inputs[0]];
        return GRAFT_OK;
    }
    const onnx_kind *k = onnx_find_kind(l->ops->class_name);
    if (!k)
        return onnx_fail(x, l, GRAFT_EUNSUPPORTED,
                         "this layer kind has no ONNX converter (src/export/onnx_table.c)");
    cJSON *cfg = cJSON_CreateObject();
    if (!cfg) return onnx_fail(x, l, GRAFT_ENOMEM, "out of memory");
    graft_status s = l->ops->get_config ? l->ops->get_config(l, cfg) : GRAFT_OK;
    if (s == GRAFT_OK) s = k->convert(x, l, cfg);
    cJSON_Delete(cfg);
    if (s == GRAFT_OK) s = x->status;
    if (s == GRAFT_OK && !x->t[l->index].name[0] && !x->t[l->index].name[1])
        s = onnx_fail(x, l, GRAFT_EUNSUPPORTED, "its converter produced no output");
    if (s != GRAFT_OK && x->status == GRAFT_OK) x->status = s;
    return s;
}

static Onnx__StringStringEntryProto *prop(onnx_ctx *x, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *p = ar_alloc(x, sizeof *p);
    if (!p || !value) return NULL;
    onnx__string_string_entry_proto__init(p);
    p->key = ar_strdup(x, key);
    p->value = ar_strdup(x, value);
    return p;
}

/* Writes the packed model through the crash-safe file writer. */
typedef struct {
    ProtobufCBuffer base;
    FILE *f;
    bool failed;
} file_buffer;

static void file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    file_buffer *fb = (file_buffer *)b;
    if (!fb->failed && len && fwrite(data, 1, len, fb->f) != len) fb->failed = true;
}

typedef struct {
    const Onnx__ModelProto *model;
    const char *path;
} write_job;

static graft_status write_model(FILE *f, void *ctx)
{
    const write_job *j = ctx;
    file_buffer fb = {.base = {.append = file_append}, .f = f};
    protobuf_c_message_pack_to_buffer(&j->model->base, &fb.base);
    return fb.failed ? graft_fail(GRAFT_EIO, "%s: write failed", j->path) : GRAFT_OK;
}

static int64_t ir_version_for(int opset)
{
    return opset <= 11 ? 6 : opset <= 14 ? 7 : 8;
}

graft_status graft_export_onnx(const graft_model *m, const char *path, const graft_onnx_opts *o)
{
    static const graft_onnx_opts defaults = {0};
    if (!o) o = &defaults;
    if (!m || !path) return graft_fail(GRAFT_EINVAL, "graft_export_onnx: model and path are required");
    if (m->status != GRAFT_OK)
        return graft_fail(m->status, "model '%s' was not built: %s", m->name, m->error);
    if (m->n_layers == 0) return graft_fail(GRAFT_ESTATE, "model '%s' has no layers", m->name);
    int opset = o->opset ? o->opset : DEFAULT_OPSET;
    if (opset < MIN_OPSET || opset > MAX_OPSET)
        return graft_fail(GRAFT_EINVAL, "ONNX opset %d: graft writes opsets %d to %d", opset,
                          MIN_OPSET, MAX_OPSET);
    if (o->batch < 0) return graft_fail(GRAFT_EINVAL, "ONNX batch size %d: must be positive (0: dynamic)", o->batch);
    if (o->include_preprocessing && (!o->meta.preprocess || !*o->meta.preprocess))
        return graft_fail(GRAFT_EINVAL, "include_preprocessing: no preprocessing named (meta.preprocess)");

    onnx_ctx x = {.m = m, .o = o, .opset = opset, .status = GRAFT_OK};
    int n = m->n_layers;
    x.t = calloc((size_t)n, sizeof *x.t);
    x.folded_bn = calloc((size_t)n, sizeof *x.folded_bn);
    x.skip = calloc((size_t)n, sizeof *x.skip);
    x.readers = calloc((size_t)n, sizeof *x.readers);
    graft_status s = GRAFT_OK;
    if (!x.t || !x.folded_bn || !x.skip || !x.readers) {
        s = graft_fail(GRAFT_ENOMEM, "out of memory exporting model '%s' to ONNX", m->name);
        goto fail;
    }
    plan_folds(&x);
    int first = 0;
    if (o->int8) s = onnx_int8_run(&x, m, &first);
    for (int i = first; i < n && s == GRAFT_OK; i++) s = onnx_convert_layer(&x, m->layers[i]);
    if (s != GRAFT_OK) goto fail;
    if (!x.input) {
        s = graft_fail(GRAFT_EUNSUPPORTED, "model '%s' has no InputLayer to export", m->name);
        goto fail;
    }

    /* The graph's output in Keras order, named after the output layer. */
    const graft_layer *ol = graft_model_output(m);
    const graft_shape *os = &ol->out_shape;
    const char *last = tensor_of(&x, ol->index, ONNX_KERAS);
    const char *out_name = onnx_name(&x, ol, "output");
    onnx_add_node(&x, "Identity", &last, 1, out_name);
    int64_t odims[GRAFT_MAX_RANK + 1] = {o->batch > 0 ? o->batch : -1};
    for (int d = 0; d < os->rank; d++) odims[d + 1] = os->dim[d];
    Onnx__ValueInfoProto *output = value_info(&x, out_name, odims, os->rank + 1);

    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.name = (char *)m->name;
    graph.n_node = x.n_nodes;
    graph.node = x.nodes;
    graph.n_initializer = x.n_inits;
    graph.initializer = x.inits;
    graph.n_input = 1;
    graph.input = &x.input;
    graph.n_output = 1;
    graph.output = &output;

    Onnx__OperatorSetIdProto opset_id = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets = &opset_id;
    opset_id.domain = "";
    opset_id.has_version = 1;
    opset_id.version = opset;

    char *classes = export_classes_json(&o->meta);
    Onnx__StringStringEntryProto *props[4];
    int n_props = 0;
    props[n_props++] = prop(&x, "classes", classes ? classes : "[]");
    props[n_props++] = prop(&x, "input_layout", o->nchw ? "NCHW" : "NHWC");
    /* "mobilenet" (feed preprocessed input) or "mobilenet, in the graph: feed RGB 0..255". */
    char pre[160];
    snprintf(pre, sizeof pre, "%s%s", o->meta.preprocess ? o->meta.preprocess : "none",
             o->include_preprocessing ? ", in the graph: feed RGB 0..255" : "");
    props[n_props++] = prop(&x, "preprocessing", pre);
    if (o->int8)
        props[n_props++] = prop(&x, "quantization",
                                "int8 QDQ: graft_model_quantize_int8's scales and s8 kernels");
    free(classes);

    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = ir_version_for(opset);
    model.n_opset_import = 1;
    model.opset_import = &opsets;
    model.producer_name = "graft";
    model.producer_version = GRAFT_VERSION;
    model.graph = &graph;
    model.n_metadata_props = (size_t)n_props;
    model.metadata_props = props;
    if (x.status != GRAFT_OK || !output) {
        s = x.status != GRAFT_OK ? x.status : graft_fail(GRAFT_ENOMEM, "out of memory exporting to ONNX");
        goto fail;
    }
    write_job job = {&model, path};
    s = graft_file_write_atomic(path, write_model, &job);

fail:
    for (size_t i = 0; i < x.n_blocks; i++) free(x.blocks[i]);
    free(x.blocks);
    free(x.nodes);
    free(x.inits);
    free(x.t);
    free(x.folded_bn);
    free(x.skip);
    free(x.readers);
    return s;
}
