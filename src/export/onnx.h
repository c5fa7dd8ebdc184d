/*
 * ONNX export: the graph builder the per-kind converters share.
 *
 * The driver (onnx.c) walks the model in layer order and calls, for each
 * layer, the converter its Keras class has in the table (onnx_table.c). A
 * converter reads the layer's options from its Keras config (the get_config
 * op's JSON, as a Keras file stores it) and its weights, asks for its inputs
 * in the layout it wants, adds nodes and initializers, and names its output.
 *
 * Layouts: graft's activations are NHWC; ONNX's Conv and pools take NCHW.
 * Each rank-3 layer output is held in whichever layout its converter made
 * it, and the other is made (by one Transpose, kept for further readers)
 * when a reader asks for it. Outputs of other ranks are held in Keras order.
 *
 * Errors are sticky, as in the model builder: a failed allocation records
 * ENOMEM in the context and the builder calls return NULL from then on; a
 * converter may check once, at its end, with onnx_status().
 */
#ifndef GRAFT_EXPORT_ONNX_H
#define GRAFT_EXPORT_ONNX_H

#include "internal.h"

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct onnx_ctx onnx_ctx;
typedef struct Onnx__NodeProto onnx_node;

typedef enum { ONNX_KERAS = 0, ONNX_NHWC = 0, ONNX_NCHW = 1 } onnx_layout;

/* A converter: adds the nodes computing layer l (options in cfg, its Keras
 * config) and sets its output with onnx_set_output. */
typedef graft_status (*onnx_convert_fn)(onnx_ctx *x, const graft_layer *l, const cJSON *cfg);

typedef struct {
    const char *class_name;
    onnx_convert_fn convert;
    /* A linear BatchNormalization right after it (its only reader) is folded
     * into its weights: the converter applies onnx_folded_bn. */
    bool folds_bn;
} onnx_kind;

/* The table (onnx_table.c): the kind for a Keras class, or NULL. */
const onnx_kind *onnx_find_kind(const char *class_name);

/* --------------------------------------------------------- inputs and outputs */

/* The tensor of input i of l in `want` layout (ONNX_KERAS for inputs that
 * are not rank 3, where layouts are all the same). */
const char *onnx_input(onnx_ctx *x, const graft_layer *l, int i, onnx_layout want);
/* The tensor of input i of l in whichever layout it is held (for layers that
 * work in either), the layout in *layout. */
const char *onnx_input_held(onnx_ctx *x, const graft_layer *l, int i, onnx_layout *layout);
/* The per-sample shape of input i (graft's, NHWC). */
graft_shape onnx_input_shape(const onnx_ctx *x, const graft_layer *l, int i);
/* The layer's output is tensor `name`, in `layout` (for rank-3 outputs). */
void onnx_set_output(onnx_ctx *x, const graft_layer *l, const char *name, onnx_layout layout);
/* The graph's input for an InputLayer (in the layout the export asked for,
 * preprocessing applied when asked). */
graft_status onnx_graph_input(onnx_ctx *x, const graft_layer *l);

/* --------------------------------------------------------- building */

graft_status onnx_status(const onnx_ctx *x);
/* A fresh tensor name "<layer>/<what>" (the layer's name alone when what is NULL). */
const char *onnx_name(onnx_ctx *x, const graft_layer *l, const char *what);
/* A node op(in[0..n_in)) -> out; NULL after a failure. */
onnx_node *onnx_add_node(onnx_ctx *x, const char *op, const char *const *in, int n_in,
                         const char *out);
void onnx_attr_int(onnx_ctx *x, onnx_node *n, const char *key, int64_t v);
void onnx_attr_ints(onnx_ctx *x, onnx_node *n, const char *key, const int64_t *v, int count);
void onnx_attr_float(onnx_ctx *x, onnx_node *n, const char *key, float v);
void onnx_attr_str(onnx_ctx *x, onnx_node *n, const char *key, const char *v);
/* Initializers (the data is copied): float32 and int64 tensors of the given dims. */
const char *onnx_const_f32(onnx_ctx *x, const char *name, const float *data, const int64_t *dims,
                           int rank);
const char *onnx_const_i64(onnx_ctx *x, const char *name, const int64_t *data, const int64_t *dims,
                           int rank);
/* A float32 scalar initializer. */
const char *onnx_scalar(onnx_ctx *x, const char *name, float v);
/* An initializer of ONNX data type `dtype` (TensorProto.DataType) whose
 * elements are elem_bytes each, little-endian. */
const char *onnx_const_raw(onnx_ctx *x, const char *name, const void *data, size_t elem_bytes,
                           int dtype, const int64_t *dims, int rank);
int onnx_opset(const onnx_ctx *x);

/* --------------------------------------------------------- the int8 run (onnx_int8.c) */

/* Layer i's output in `want` layout (a Transpose made once where it is held
 * in the other). */
const char *onnx_layer_output(onnx_ctx *x, int i, onnx_layout want);
/* Layer l by its kind's converter (as the driver's walk does). */
graft_status onnx_convert_layer(onnx_ctx *x, const graft_layer *l);
/* graft_onnx_opts.int8: converts the layers of m's int8 run (from the
 * input) in QDQ form and sets *first_float to the first layer after it,
 * which the driver's walk converts as usual. GRAFT_ESTATE where m holds no
 * int8 run. */
graft_status onnx_int8_run(onnx_ctx *x, const graft_model *m, int *first_float);

/* --------------------------------------------------------- helpers for converters */

/* The Keras class of the layer that computes l's input i. */
const char *onnx_input_class(const onnx_ctx *x, const graft_layer *l, int i);
/* A weight of l by Keras name ("kernel", ...), its data and shape; NULL if absent. */
const float *onnx_weight(const graft_layer *l, const char *name, graft_shape *shape);
/* The per-channel y = x * scale + shift of the BatchNormalization folded into
 * l (scale and shift hold `channels` floats each, owned by the context), or
 * false when none is. */
bool onnx_folded_bn(onnx_ctx *x, const graft_layer *l, const float **scale, const float **shift);
/* Keras's activation `name` on tensor `in` (held in *layout, which softmax
 * may change to NHWC) for layer l; returns the result (in itself for
 * "linear"), or NULL with a failure naming the layer for an unknown one. */
const char *onnx_activation(onnx_ctx *x, const graft_layer *l, const char *name, const char *in,
                            onnx_layout *layout, int rank);
/* TF's 'same'/'valid' geometry: the padding before and after for an input
 * of `size`, window k and stride s. */
void onnx_same_pads(const char *padding, int size, int k, int s, int *before, int *after);
/* Config readers: a 2-tuple such as kernel_size (false if absent or not two
 * numbers), a string ("" if absent), a number (dflt if absent or null). */
bool onnx_cfg_pair(const cJSON *cfg, const char *key, int out[2]);
const char *onnx_cfg_str(const cJSON *cfg, const char *key);
double onnx_cfg_num(const cJSON *cfg, const char *key, double dflt);
/* A failure naming the layer and its class: "layer 'x' (Conv2D): why". */
graft_status onnx_fail(onnx_ctx *x, const graft_layer *l, graft_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
