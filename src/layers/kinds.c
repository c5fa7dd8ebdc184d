/*
 * The layer kinds a Keras model config may name: one line per kind. A new
 * kind adds its line here, its file (with the ops and its constructor) and
 * its constructor in include/graft/model.h; nothing else names it.
 */
#include "layers/layer.h"

#include <stdio.h>
#include <string.h>

#define KINDS(X)                                                                                   \
    X(conv2d)                                                                                      \
    X(depthwise_conv2d)                                                                            \
    X(batch_norm)                                                                                  \
    X(activation)                                                                                  \
    X(relu)                                                                                        \
    X(zero_padding2d)                                                                              \
    X(max_pooling2d)                                                                               \
    X(average_pooling2d)                                                                           \
    X(global_average_pooling2d)                                                                    \
    X(global_max_pooling2d)                                                                        \
    X(flatten)                                                                                     \
    X(reshape)                                                                                     \
    X(dense)                                                                                       \
    X(dropout)                                                                                     \
    X(add)                                                                                         \
    X(concatenate)                                                                                 \
    X(multiply)                                                                                    \
    X(subtract)                                                                                    \
    X(average)                                                                                     \
    X(maximum)                                                                                     \
    X(minimum)                                                                                     \
    X(rescaling)                                                                                   \
    X(normalization)                                                                               \
    X(separable_conv2d)                                                                            \
    X(layer_norm)                                                                                  \
    X(layer_scale)                                                                                 \
    X(leaky_relu)                                                                                  \
    X(prelu)                                                                                       \
    X(elu)                                                                                         \
    X(softmax)                                                                                     \
    X(conv2d_transpose)                                                                            \
    X(upsampling2d)                                                                                \
    X(cropping2d)                                                                                  \
    X(permute)                                                                                     \
    X(spatial_dropout2d)                                                                           \
    X(gaussian_noise)                                                                              \
    X(gaussian_dropout)                                                                            \
    X(tf_op_lambda)

#define DECLARE(kind) extern const graft_layer_ops graft_##kind##_ops;
KINDS(DECLARE)

static const graft_layer_ops *const kinds[] = {
#define ENTRY(kind) &graft_##kind##_ops,
    KINDS(ENTRY) NULL,
};

const graft_layer_ops *graft_layer_kind(const char *class_name)
{
    for (size_t i = 0; kinds[i]; i++)
        if (strcmp(kinds[i]->class_name, class_name) == 0) return kinds[i];
    return NULL;
}

void graft_layer_kind_names(char *buf, size_t cap)
{
    size_t len = 0;
    if (cap) buf[0] = 0;
    for (size_t i = 0; kinds[i] && len < cap; i++) {
        int k = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", kinds[i]->class_name);
        if (k < 0) break;
        len += (size_t)k;
    }
}
