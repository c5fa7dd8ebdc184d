/*
 * TFOpLambda, Keras 2's record of a TensorFlow operator applied to Keras
 * tensors in a functional model ("inputs + x" in Keras Applications'
 * ConvNeXt saves as TFOpLambda "tf.__operators__.add"). graft reads the
 * elementwise sums, differences and products of two tensors as the merge
 * layer that computes them (written back as that layer's class); other
 * functions, and operands that are constants, are refused by name. Its
 * inputs come from keras_config.c, which reads the tensor the operator was
 * called on and the ones among its keyword arguments ("y").
 */
#include "layers/config_json.h"
#include "layers/layer.h"

#include <string.h>

static graft_status from_config(const graft_config_in *c, const cJSON *cfg, graft_layer **out)
{
    const char *fn = graft_config_str(cfg, "function");
    if (!fn) return graft_config_refuse(c, GRAFT_EFORMAT, "no 'function'");
    static const char *const adds[] = {"__operators__.add", "math.add"},
                             *const subs[] = {"math.subtract", "__operators__.sub"},
                             *const muls[] = {"math.multiply", "__operators__.mul"};
    int kind = -1;
    for (int i = 0; i < 2; i++) {
        if (!strcmp(fn, adds[i])) kind = 0;
        if (!strcmp(fn, subs[i])) kind = 1;
        if (!strcmp(fn, muls[i])) kind = 2;
    }
    if (kind < 0)
        return graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                   "function '%s' is not supported (graft reads tf.math.add, "
                                   "subtract and multiply of two tensors)",
                                   fn);
    if (c->n_in != 2)
        return graft_config_refuse(c, GRAFT_EUNSUPPORTED,
                                   "'%s' of %d tensor%s; graft reads it of two tensors, not of a "
                                   "tensor and a constant",
                                   fn, c->n_in, c->n_in == 1 ? "" : "s");
    if (kind == 0) *out = graft_add(c->m, c->name, 2, c->in);
    else if (kind == 1) *out = graft_subtract(c->m, c->name, c->in[0], c->in[1]);
    else *out = graft_multiply(c->m, c->name, 2, c->in);
    return GRAFT_OK;
}

const graft_layer_ops graft_tf_op_lambda_ops = {
    .class_name = "TFOpLambda",
    .from_config = from_config,
    .merge = true,
};
