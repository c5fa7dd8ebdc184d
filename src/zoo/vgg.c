/* VGG16 and VGG19 as tf.keras.applications builds them: five blocks of 3x3
 * 'same' ReLU convolutions (VGG19 has four, not three, in blocks 3 to 5),
 * each closed by 2x2 max pooling; the top is flatten, fc1, fc2 (4096 ReLU
 * units) and the softmax `predictions`. */
#include "zoo.h"

#include <stdio.h>

void graft_zoo_vgg(graft_model *m, graft_layer *in, const zoo_spec *s)
{
    int deep = s->arch->variant == 19 ? 1 : 0;
    static const struct {
        int filters, convs;
    } blocks[5] = {{64, 2}, {128, 2}, {256, 3}, {512, 3}, {512, 3}};
    graft_layer *x = in;
    for (int b = 0; b < 5; b++) {
        char name[32];
        for (int k = 1; k <= blocks[b].convs + (b >= 2 ? deep : 0); k++) {
            snprintf(name, sizeof name, "block%d_conv%d", b + 1, k);
            x = graft_conv2d(m, x, (graft_conv2d_cfg){.name = name, .filters = blocks[b].filters,
                                                      .kernel_size = {3, 3},
                                                      .padding = GRAFT_SAME,
                                                      .activation = GRAFT_RELU});
        }
        snprintf(name, sizeof name, "block%d_pool", b + 1);
        x = graft_max_pooling2d(m, x, (graft_pool2d_cfg){.name = name, .pool_size = {2, 2},
                                                         .strides = {2, 2}});
    }
    const graft_zoo_cfg *c = &s->cfg;
    if (!c->include_top) {
        graft_zoo_pooling(m, x, c->pooling, "global_average_pooling2d", "global_max_pooling2d");
        return;
    }
    x = graft_flatten(m, x, "flatten");
    x = graft_dense(m, x, (graft_dense_cfg){.name = "fc1", .units = 4096, .activation = GRAFT_RELU});
    x = graft_dense(m, x, (graft_dense_cfg){.name = "fc2", .units = 4096, .activation = GRAFT_RELU});
    graft_dense(m, x, (graft_dense_cfg){.name = "predictions", .units = c->classes,
                                        .activation = GRAFT_SOFTMAX});
}
