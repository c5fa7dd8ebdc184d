/*
 * The ONNX converter of each Keras layer class. Adding a layer kind's export
 * is one converter function (in any src/export/onnx_*.c file, the signature
 * of onnx_convert_fn) and one line here. A model holding a class missing
 * here fails to export with a message naming the layer and its class.
 *
 *   X(class_name, converter, folds_bn): folds_bn is true for kinds whose
 *   converter applies a BatchNormalization folded into it (onnx_folded_bn).
 */
#include "export/onnx.h"

#include <string.h>

#define ONNX_KINDS(X)                                                                              \
    X("InputLayer", onnx_input_layer, false)                                                       \
    X("Conv2D", onnx_conv2d, true)                                                                 \
    X("DepthwiseConv2D", onnx_depthwise_conv2d, true)                                              \
    X("Dense", onnx_dense, false)                                                                  \
    X("BatchNormalization", onnx_batch_norm, false)                                                \
    X("Activation", onnx_activation_layer, false)                                                  \
    X("ReLU", onnx_relu, false)                                                                    \
    X("ZeroPadding2D", onnx_zero_padding2d, false)                                                 \
    X("MaxPooling2D", onnx_max_pooling2d, false)                                                   \
    X("AveragePooling2D", onnx_average_pooling2d, false)                                           \
    X("GlobalAveragePooling2D", onnx_global_average_pooling2d, false)                              \
    X("GlobalMaxPooling2D", onnx_global_max_pooling2d, false)                                      \
    X("Flatten", onnx_flatten, false)                                                              \
    X("Reshape", onnx_reshape, false)                                                              \
    X("Dropout", onnx_dropout, false)                                                              \
    X("Add", onnx_add, false)                                                                      \
    X("Concatenate", onnx_concatenate, false)                                                      \
    X("Multiply", onnx_multiply, false)                                                            \
    X("Subtract", onnx_subtract, false)                                                            \
    X("Average", onnx_average, false)                                                              \
    X("Maximum", onnx_maximum, false)                                                              \
    X("Minimum", onnx_minimum, false)                                                              \
    X("Rescaling", onnx_rescaling, false)                                                          \
    X("Normalization", onnx_normalization, false)                                                  \
    X("LayerNormalization", onnx_layer_norm, false)                                                \
    X("LayerScale", onnx_layer_scale, false)                                                       \
    X("SeparableConv2D", onnx_separable_conv2d, false)                                             \
    X("LeakyReLU", onnx_leaky_relu, false)                                                         \
    X("PReLU", onnx_prelu, false)                                                                  \
    X("ELU", onnx_elu, false)                                                                      \
    X("Softmax", onnx_softmax, false)                                                              \
    X("Conv2DTranspose", onnx_conv2d_transpose, false)                                             \
    X("UpSampling2D", onnx_upsampling2d, false)                                                    \
    X("Cropping2D", onnx_cropping2d, false)                                                        \
    X("Permute", onnx_permute, false)                                                              \
    X("SpatialDropout2D", onnx_dropout, false)                                                     \
    X("GaussianNoise", onnx_dropout, false)                                                        \
    X("GaussianDropout", onnx_dropout, false)

#define DECLARE(cls, fn, folds) graft_status fn(onnx_ctx *x, const graft_layer *l, const cJSON *cfg);
ONNX_KINDS(DECLARE)

#define ENTRY(cls, fn, folds) {cls, fn, folds},
static const onnx_kind kinds[] = {ONNX_KINDS(ENTRY)};

const onnx_kind *onnx_find_kind(const char *class_name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(kinds[i].class_name, class_name)) return &kinds[i];
    return NULL;
}
